"""The pipeline as child processes of the console, and the promise that none outlives it.

Children run in their own process group (a terminal's Ctrl+C reaches the console
only, which then stops them in order), write to log files (not over the screen), and
on Linux ask the kernel to SIGTERM them when the console dies, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child between fork and exec."""
    # Without libc (not Linux) the console still stops its children on every normal exit.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 8) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Children:
    def __init__(self, log_dir: Path | None = None) -> None:
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="fraud-console-"))
        self.children: list[Child] = []

    def start(self, name: str, module: str, args: list[str],
              env: Mapping[str, str] | None = None, stdout_pipe: bool = False) -> Child:
        log = self.log_dir / f"{name}.log"
        with open(log, "ab") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                stdout=subprocess.PIPE if stdout_pipe else sink, stderr=sink,
                stdin=subprocess.DEVNULL, env=dict(env or os.environ),
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        child = Child(name, process, log)
        self.children.append(child)
        return child

    def start_broker(self, timeout: float = 20.0) -> str:
        """Start fraud-broker and return the bootstrap address it prints."""
        child = self.start("broker", "services.broker", [], stdout_pipe=True)
        assert child.process.stdout is not None
        ready, _, _ = select.select([child.process.stdout], [], [], timeout)
        line = child.process.stdout.readline().decode().strip() if ready else ""
        if not line:
            self.stop_all()
            raise RuntimeError(f"the embedded broker did not start:\n{child.tail()}")
        return line

    def first_death(self) -> str | None:
        """Why the console must stop: the first child that is no longer running."""
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                return f"{child.name} exited with code {code}; its last lines:\n{child.tail()}"
        return None

    def refused_settings(self) -> str | None:
        """The one-line error of the first child that refused its settings (exit code 2,
        as every service does for a bad setting), if one did."""
        for child in self.children:
            if child.process.poll() == 2:
                lines = child.tail().strip().splitlines()
                return lines[-1] if lines else f"{child.name} refused its settings"
        return None

    def stop_all(self, timeout: float = 5.0) -> None:
        """SIGTERM in reverse start order (producers before the broker), then SIGKILL."""
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
                try:
                    child.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    child.process.kill()
                    child.process.wait(timeout)
            if child.process.stdout is not None:
                child.process.stdout.close()

    def pids(self) -> list[int]:
        return [child.process.pid for child in self.children]

