"""Model fits in a process of their own, so that the stream never waits for one.

A retrain is seconds of numerical Python. In a thread of the detector's process it
takes turns with the loop for the interpreter lock, and the loop waits up to a switch
interval (5 ms) at every turn: at 10,000 transactions a second of labelled traffic
the detector fell a few hundred milliseconds behind during each retrain. In a worker
process the fit runs on another core; the detector's retrain thread only sends the
examples, waits without the lock, and gets the fitted learner back. The worker runs
at a lower priority (nice 10): the fit yields the cores to the stream.

The worker is started with "spawn" (a fresh interpreter: forking a process that runs
librdkafka's threads is unsafe) by ``start`` or the first fit, serves one request at
a time, and ends with its parent however that ends: ``close``, the pipe closing, or
the parent gone (it watches for that, since a parent killed outright closes nothing).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

log = logging.getLogger("fraud.detector.model")

Learner = Any  # model.Learner; not imported here, to keep the worker's imports short


class FitWorkerGone(RuntimeError):
    """The worker process ended (closed, or killed) before it answered."""


class FitWorker:
    """A process that fits learners: ``fit`` and ``step`` block their caller (a retrain
    thread) until the worker answers, and release the interpreter lock meanwhile."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # one request at a time, and start/close
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._closed = False

    def start(self) -> None:
        """Start the worker now rather than at the first fit: its start (a fresh
        interpreter importing scikit-learn) then overlaps the detector's own."""
        with self._lock:
            self._connection()

    def fit(self, new_learner: Callable[[], Learner], matrix: np.ndarray,
            labels: np.ndarray, start: Learner | None) -> Learner:
        """``new_learner()`` fitted to the examples (from ``start``'s weights, if the
        learner can resume), as the learner's own ``fit`` does it."""
        return self._call("fit", new_learner, matrix, labels, start)

    def step(self, learner: Learner, matrix: np.ndarray, labels: np.ndarray) -> Learner:
        """``learner`` after an online step on the examples."""
        return self._call("step", learner, matrix, labels)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def close(self) -> None:
        """End the worker, and any fit under way (its caller gets ``FitWorkerGone``)."""
        self._closed = True
        process, conn = self._process, self._conn
        if process is not None and process.is_alive():
            process.terminate()
            process.join(2)
        if conn is not None:
            conn.close()

    def _call(self, *request: Any) -> Learner:
        with self._lock:
            conn = self._connection()
            try:
                conn.send(request)
                ok, answer = conn.recv()
            except (EOFError, OSError) as exc:
                raise FitWorkerGone("the model's fit worker ended") from exc
        if not ok:
            raise RuntimeError(f"the fit failed in the worker:\n{answer}")
        return answer

    def _connection(self) -> Connection:
        if self._closed:
            raise FitWorkerGone("the model's fit worker is closed")
        if self._process is None or not self._process.is_alive():
            context = multiprocessing.get_context("spawn")
            ours, theirs = context.Pipe()
            process = context.Process(target=serve, args=(theirs, os.getpid()),
                                      name="model-fit", daemon=True)
            process.start()
            theirs.close()
            if self._process is not None:
                log.warning("the model's fit worker had ended; started a new one")
            self._process, self._conn = process, ours
            if self._closed:  # closed while it started: close saw no process to end
                self.close()
                raise FitWorkerGone("the model's fit worker is closed")
        assert self._conn is not None
        return self._conn


def serve(conn: Connection, parent: int) -> None:
    """The worker's loop: a request in, ``(True, learner)`` or ``(False, traceback)``
    out, until the pipe closes or the parent is gone."""
    from threadpoolctl import threadpool_limits

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl+C is the parent's
    # The stream first: on cores it shares with the detector (and, here, the broker), a
    # fit takes what they leave, and takes longer under load rather than slow them.
    os.nice(10)
    threadpool_limits(1)  # as in the detector: small products, cores shared
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    while True:
        try:
            kind, *args = conn.recv()
        except (EOFError, OSError):
            return
        try:
            if kind == "fit":
                new_learner, matrix, labels, start = args
                learner = new_learner()
                learner.fit(matrix, labels, start)
            else:
                learner, matrix, labels = args
                learner.partial_fit(matrix, labels)
            answer: tuple[bool, Any] = (True, learner)
        except Exception:  # the caller logs it; the worker serves on
            answer = (False, traceback.format_exc())
        try:
            conn.send(answer)
        except (EOFError, OSError):
            return


def _exit_with(parent: int) -> None:
    """A parent killed outright (SIGKILL) closes no pipe in time: watch for it."""
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(0)
