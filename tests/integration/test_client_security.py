"""SASL against the embedded broker: librdkafka's mock cluster has no SASL handshake,
so a real handshake cannot succeed here; what can be tested is that the client really
attempts it, and that the refusal is one line, at once, without the password."""

from __future__ import annotations

import time

import pytest

from tests.integration.test_config_errors import run

PASSWORD = "sasl-pa55word-under-test"


@pytest.mark.parametrize("module", ["generator", "tail"])
def test_a_cluster_that_refuses_sasl_is_reported_at_once(broker: str, module: str) -> None:
    started = time.monotonic()
    result = run(module, {"KAFKA_BROKER_URL": broker, "KAFKA_CONNECT_TIMEOUT": "30",
                          "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                          "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
                          "KAFKA_SASL_USERNAME": "fraud", "KAFKA_SASL_PASSWORD": PASSWORD},
                 *(["some.topic"] if module == "tail" else []))
    assert result.returncode == 2
    assert time.monotonic() - started < 15  # not the 30 s allowed for an absent cluster
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"fraud-{module}: error: Kafka at {broker} refused this client")
    assert "SASL Handshake not supported by broker" in lines[0]
    assert PASSWORD not in result.stderr + result.stdout
