"""Run a Python module as a child process that stops when its parent dies.

    python -m bench.child PARENT_PID MODULE [ARG ...]

A benchmark stops its children in ``finally``; this covers what ``finally`` cannot,
the benchmark being killed outright. On Linux the kernel then sends the child SIGTERM,
which the services answer with their graceful stop. The module replaces this process
(same pid, exec), so what /proc says about the pid is the module's own.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> bool:
    """False if the parent is already gone (it died before the request took effect)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    return os.getppid() == parent


def main(argv: list[str]) -> int:
    parent, module, *args = argv
    if sys.platform.startswith("linux") and not die_with_parent(int(parent)):
        return 1
    os.execv(sys.executable, [sys.executable, "-m", module, *args])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
