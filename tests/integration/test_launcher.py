"""fraud-console with no cluster given: it runs the whole pipeline, and nothing outlives it.

The console runs as a user runs it, in a terminal (a pseudo-terminal here), and its
children are found the way an administrator would: by parent process id.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.kafka_helpers import read_topic, wait_for_quality

ROOT = Path(__file__).resolve().parents[2]


class Terminal:
    """``fraud-console`` in a 160x48 pseudo-terminal, its screen output drained."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 48, 160, 0, 0))
        env = {**{k: v for k, v in os.environ.items() if k != "KAFKA_BROKER_URL"},
               **(env or {}), "TERM": "xterm-256color"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tui.launcher", *args], cwd=ROOT, env=env,
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        )
        os.close(slave)
        self.master = master
        self.screen = bytearray()
        # A terminal that is not read from blocks the app once its buffer is full.
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.screen += chunk

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        with contextlib.suppress(OSError):  # a story that closed the terminal itself
            os.close(self.master)


def children_of(pid: int) -> dict[int, str]:
    """Running processes whose parent is ``pid``: their pid and command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry.name)] = cmdline
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def console() -> Iterator[Terminal]:
    terminal = Terminal("--tps", "50")
    yield terminal
    terminal.close()


def started_pipeline(console: Terminal) -> dict[int, str]:
    """The four children and the detector's model-fitting worker (its own child), once
    the generator's records reach its broker."""
    expected = ["services.broker", "services.detector.service",
                "services.evaluator.service", "services.generator.service"]
    # Until each has been started: between fork and exec a child still reads as the
    # console (tui.launcher).
    wait_for(lambda: modules(children_of(console.process.pid)) == expected, 30,
             "the four children")
    children = children_of(console.process.pid)
    detector = next(pid for pid, cmd in children.items() if "detector" in cmd)
    wait_for(lambda: any("spawn_main" in cmd for cmd in children_of(detector).values()),
             30, "the detector's fit worker")
    workers = children_of(detector)  # and multiprocessing's resource tracker
    generator = next(pid for pid, cmd in children.items() if "generator" in cmd)
    assert read_topic(bootstrap_of(generator), "streaming.transactions.legit", 5, timeout=30,
                      settle=0)
    return {**children, **workers}


def modules(children: dict[int, str]) -> list[str]:
    """The module each child runs (``python -m MODULE``), sorted."""
    return sorted(cmd.split(" -m ")[1].split()[0] for cmd in children.values()
                  if " -m " in cmd)


def bootstrap_of(pid: int) -> str:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next(v.split(b"=", 1)[1].decode() for v in environ
                if v.startswith(b"KAFKA_BROKER_URL="))


def test_quit_stops_every_child(console: Terminal) -> None:
    children = started_pipeline(console)
    # The embedded generator streams labelled scenarios, so the evaluator has figures.
    evaluator = next(pid for pid, cmd in children.items() if "services.evaluator" in cmd)
    quality = wait_for_quality(bootstrap_of(evaluator), "monitoring.status",
                               lambda q: q.joined > 0)
    assert quality.window_seconds == 60
    console.type(b"q")
    assert console.process.wait(20) == 0
    wait_for(lambda: not any(alive(pid) for pid in children), 10, "children to stop")


def test_a_closed_terminal_stops_the_console_and_every_child(console: Terminal) -> None:
    children = started_pipeline(console)
    os.close(console.master)  # the window closed: the terminal is gone, and says so
    console.process.send_signal(signal.SIGHUP)
    console.process.wait(20)
    wait_for(lambda: not any(alive(pid) for pid in children), 15, "children to stop")


def test_a_killed_console_takes_its_children_with_it(console: Terminal) -> None:
    children = started_pipeline(console)
    console.process.send_signal(signal.SIGKILL)
    console.process.wait(10)
    wait_for(lambda: not any(alive(pid) for pid in children), 15, "orphans to stop")


def test_a_dying_child_stops_the_console_and_the_others(console: Terminal) -> None:
    children = started_pipeline(console)
    generator = next(pid for pid, cmd in children.items() if "generator" in cmd)
    os.kill(generator, signal.SIGKILL)
    assert console.process.wait(20) == 1
    wait_for(lambda: not any(alive(pid) for pid in children), 10, "children to stop")
    wait_for(lambda: b"stopped because the generator exited" in console.screen, 5,
             "the reason on the terminal")


def test_a_child_that_refuses_its_settings_ends_the_console_with_its_line() -> None:
    console = Terminal(env={"DETECTOR_BATCH_SIZE": "lots"})
    try:
        assert console.process.wait(60) == 2
        wait_for(lambda: b"fraud-console: error: fraud-detector: error: --batch-size "
                         b"(DETECTOR_BATCH_SIZE): 'lots'" in console.screen, 5,
                 "the detector's line")
        # Found before anything started: the line alone, no screen drawn and taken away.
        assert b"\x1b[?1049h" not in console.screen, "the console drew its screen first"
    finally:
        console.close()
