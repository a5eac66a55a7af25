"""Shared fixtures: one embedded broker per test session, fresh topic names per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.broker import tune_clients
from services.config import Topics
from tests.kafka_helpers import BrokerProcess, ServiceProcess

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The embedded broker (fraud-broker) in its own process: its bootstrap address."""
    with BrokerProcess(tmp_path_factory.mktemp("broker") / "broker.log") as bootstrap:
        yield bootstrap


@pytest.fixture
def topics() -> Topics:
    """Topic names of this test alone, so tests sharing the broker never see each other."""
    tag = uuid.uuid4().hex[:8]
    return Topics(**{name: f"{default}.{tag}" for name, default in Topics().__dict__.items()})


@pytest.fixture
def service_env(broker: str, topics: Topics) -> dict[str, str]:
    """The environment a service needs to join this test's pipeline."""
    env = dict(os.environ)
    env.update({
        "KAFKA_BROKER_URL": broker,
        "TRANSACTIONS_TOPIC": topics.transactions,
        "LEGIT_TOPIC": topics.legit,
        "FRAUD_TOPIC": topics.fraud,
        "DLQ_TOPIC": topics.dlq,
        "CONTROL_TOPIC": topics.control,
        "STATUS_TOPIC": topics.status,
        "LABELS_TOPIC": topics.labels,
        "DETECTOR_GROUP": f"detector-{topics.transactions}",
        # The classic rule alone unless a test asks for more: most stories here are
        # about moving records, and a threshold makes every verdict predictable.
        "DETECTOR_RULES": "threshold",
    })
    tune_clients(env)  # as fraud-console tunes the clients of its embedded broker
    return env


@pytest.fixture
def services(service_env: dict[str, str]) -> Iterator[list[ServiceProcess]]:
    """Service processes started by a test; whatever is still running at its end is killed."""
    started: list[ServiceProcess] = []
    yield started
    for service in started:
        service.kill()
