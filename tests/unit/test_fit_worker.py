"""Retrains in a worker process: the same model as in the detector's own process, the
stream's model swapped as before, and a worker that never outlives the detector."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from services.detector.fit_worker import FitWorker, FitWorkerGone
from services.detector.model import OnlineModel, SmallNet
from tests.unit.test_model import examples


def gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_a_fit_in_the_worker_gives_the_network_a_fit_here_gives() -> None:
    matrix, labels = examples(400)
    here = SmallNet()
    here.fit(matrix, labels)
    worker = FitWorker()
    try:
        there = worker.fit(SmallNet, matrix, labels, None)
        assert np.allclose(there.proba(matrix), here.proba(matrix))
        resumed = worker.fit(SmallNet, matrix, labels, there)  # from another's weights
        stepped = worker.step(resumed, matrix[:50], labels[:50])
        assert stepped.proba(matrix).shape == (400,)
    finally:
        worker.close()
    assert worker.pid is not None and gone(worker.pid, 3)


def test_a_fit_that_fails_in_the_worker_says_why_and_the_worker_serves_on() -> None:
    matrix, labels = examples(200)
    worker = FitWorker()
    try:
        with pytest.raises(RuntimeError, match="hidden_layer_sizes"):
            worker.fit(functools.partial(SmallNet, hidden=(0,)), matrix, labels, None)
        pid = worker.pid
        assert worker.fit(SmallNet, matrix, labels, None).proba(matrix).shape == (200,)
        assert worker.pid == pid  # the same worker
    finally:
        worker.close()
    with pytest.raises(FitWorkerGone):
        worker.fit(SmallNet, matrix, labels, None)


def test_the_model_retrains_in_the_worker_and_swaps_as_from_a_thread() -> None:
    model = OnlineModel(min_examples=100, retrain_every=10**9, fit_in_process=True)
    try:
        matrix, labels = examples(400)
        model.learn(matrix, labels)  # the first model, fitted in the worker
        assert model.wait(60) and model.version == 1 and model.failures == 0
        first = model.score(matrix)
        assert model.fitter is not None and model.fitter.pid is not None
        assert model.retrain()
        late, late_labels = examples(50, seed=2)
        model.learn(late, late_labels)  # may come while the worker fits
        assert model.wait(60) and model.version == 2 and model.failures == 0
        assert model.status()["examples"] == 450
        assert not np.allclose(model.score(matrix), first)
    finally:
        model.close()


def test_closing_the_model_ends_a_fit_under_way_quietly() -> None:
    model = OnlineModel(min_examples=100, retrain_every=10**9, fit_in_process=True)
    matrix, labels = examples(20_000)
    model.learn(matrix, labels)  # a first fit of some seconds
    model.close()
    assert model.wait(10)
    assert model.version == 0 and model.failures == 0  # abandoned, not failed
    assert not model.retrain()


def test_the_worker_ends_when_its_parent_is_killed_outright() -> None:
    script = textwrap.dedent("""
        import sys, time
        from services.detector.fit_worker import FitWorker
        from services.detector.model import SmallNet
        from tests.unit.test_model import examples
        worker = FitWorker()
        worker.fit(SmallNet, *examples(200), None)
        print(worker.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              cwd=os.getcwd())
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert not gone(pid, 0.2)
        parent.send_signal(signal.SIGKILL)
        assert gone(pid, 5), "the fit worker outlived its parent"
    finally:
        parent.kill()
        parent.wait()
