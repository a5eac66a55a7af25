"""How long readers let the broker hold a fetch that finds nothing: short on a
transaction's path for the embedded broker, which holds it whole, and never shorter
than the default for readers whose records are not waited for."""

from __future__ import annotations

from typing import Any

import pytest

from services import broker, config, kafka


class FakeConsumer:
    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings


def wait_of(monkeypatch: pytest.MonkeyPatch, on_path: bool) -> int:
    monkeypatch.setattr(kafka, "Consumer", FakeConsumer)
    reader: Any = kafka.consumer("kafka:9092", "g", on_path=on_path)
    return reader.settings["fetch.wait.max.ms"]


def test_readers_wait_the_default_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_FETCH_WAIT_MS", raising=False)
    assert wait_of(monkeypatch, on_path=True) == wait_of(monkeypatch, on_path=False) == 5


def test_a_short_wait_is_for_readers_on_the_path_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_FETCH_WAIT_MS", "1")
    assert wait_of(monkeypatch, on_path=True) == 1
    assert wait_of(monkeypatch, on_path=False) == 5  # commands, labels, heartbeats


def test_a_long_wait_is_for_every_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_FETCH_WAIT_MS", "100")  # Apache Kafka answers at once
    assert wait_of(monkeypatch, on_path=True) == wait_of(monkeypatch, on_path=False) == 100


@pytest.mark.parametrize("text", ["soon", "0", "-1", "10001", "2.5"])
def test_a_bad_wait_is_refused_with_its_variable(text: str) -> None:
    with pytest.raises(config.ConfigError, match="KAFKA_FETCH_WAIT_MS"):
        config.fetch_wait_ms({"KAFKA_FETCH_WAIT_MS": text})


def test_the_embedded_brokers_clients_wait_1_ms_unless_told_otherwise() -> None:
    untold: dict[str, str] = {}
    broker.tune_clients(untold)
    assert config.fetch_wait_ms(untold) == 1
    told = {"KAFKA_FETCH_WAIT_MS": "3"}
    broker.tune_clients(told)
    assert config.fetch_wait_ms(told) == 3
