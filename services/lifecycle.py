"""Process life: logging, graceful stop on SIGINT/SIGTERM, config errors as one line."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from services.config import ConfigError, fail


class Shutdown:
    """Set by SIGINT or SIGTERM; service loops check it each turn and then finish
    their work (flush, commit) instead of dying mid-batch.

    A stop is bounded: with the cluster gone, a final commit or a consumer close can
    wait for it forever, so after ``grace`` seconds (or a second signal) the process
    exits anyway with code 1. What it had not committed is processed again by the next
    owner: duplicates are possible then, losses are not.
    """

    def __init__(self, grace: float = 4.5) -> None:
        self._event = threading.Event()
        self.grace = grace

    def install(self) -> Shutdown:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        log = logging.getLogger("fraud")
        name = signal.Signals(signum).name
        if self._event.is_set():
            log.warning("%s received again, exiting now", name)
            self._give_up()
        log.info("%s received, stopping", name)
        self._event.set()
        timer = threading.Timer(self.grace, self._give_up)
        timer.daemon = True
        timer.start()

    def _give_up(self) -> None:
        logging.getLogger("fraud").error(
            "could not stop cleanly within %.1f s (is Kafka reachable?); exiting without "
            "a final commit", self.grace)
        logging.shutdown()
        os._exit(1)

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


def settle_heap() -> None:
    """Tune the cyclic garbage collector for a loop that runs for hours: call it once
    the process is set up.

    What is alive by then (modules, classes, clients) lives as long as the process:
    frozen, it is left out of every later collection. A young generation of 10,000
    objects instead of 700 lets a batch's short-lived ones die by reference counting
    before a collection looks at them; fewer are promoted, and the full collections,
    whose cost grows with everything alive, come rarely. In the stateful detector the
    collector took 10.5 µs a transaction before, 2.4 µs after; its longest pause went
    from 90 to 40 ms.
    """
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
