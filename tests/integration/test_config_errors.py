"""A bad setting ends a service with one readable line and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.kafka_helpers import MODULES, ROOT


def run(module: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", MODULES[module], *args], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize(("module", "env", "args", "said"), [
    ("generator", {"TRANSACTIONS_PER_SECOND": "fast"}, [], "'fast' is not a number"),
    ("generator", {"TRANSACTIONS_PER_SECOND": "-5"}, [], "out of range"),
    ("generator", {}, ["--tps", "0"], "out of range"),
    ("detector", {"FRAUD_THRESHOLD": "lots"}, [], "'lots' is not a number"),
    ("detector", {"KAFKA_BROKER_URL": "nohostport"}, [], "is not HOST:PORT"),
    ("generator", {"TRANSACTIONS_TOPIC": "bad topic!"}, [], "not a valid topic name"),
    ("detector", {}, ["--no-such-flag"], "unrecognized arguments"),
    ("tail", {}, [], "required: topic"),
])
def test_bad_configuration(module: str, env: dict[str, str], args: list[str], said: str) -> None:
    result = run(module, env, *args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert said in lines[0]
    assert lines[0].startswith(f"fraud-{module}: error: ")


@pytest.mark.parametrize("module", ["generator", "detector"])
def test_unreachable_broker_after_a_bounded_wait(module: str) -> None:
    # Port 9 (discard) on loopback: nothing listens there.
    result = run(module, {"KAFKA_BROKER_URL": "127.0.0.1:9", "KAFKA_CONNECT_TIMEOUT": "1"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot reach Kafka at 127.0.0.1:9 within 1 s" in lines[0]
