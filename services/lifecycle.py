"""Process life: logging, graceful stop on SIGINT/SIGTERM, config errors as one line."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from services.config import ConfigError, fail


class Shutdown:
    """Set by SIGINT or SIGTERM; service loops check it each turn and then finish
    their work (flush, commit) instead of dying mid-batch."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def install(self) -> Shutdown:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        logging.getLogger("fraud").info("%s received, stopping", signal.Signals(signum).name)
        self._event.set()

    def set(self) -> None:
        self._event.set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)

    @property
    def requested(self) -> bool:
        return self._event.is_set()


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-5s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_service(prog: str, body: Callable[[], int | None]) -> int:
    """Run a service's main body; a ConfigError becomes one line and exit code 2."""
    try:
        return body() or 0
    except ConfigError as exc:
        fail(prog, str(exc))
