"""The console's embedded pipeline: what it takes from the environment, and what not."""

from __future__ import annotations

import pytest

from tui import launcher


def test_the_embedded_pipeline_keeps_the_control_secret_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "fraud")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "cluster-password")
    monkeypatch.setenv("KAFKA_SSL_CA_LOCATION", "probe")
    monkeypatch.setenv("CONTROL_SECRET", "a-control-secret-of-length")
    args = launcher.parse_args([])
    launcher.forget_cluster_security()
    env = launcher.service_env("127.0.0.1:9092", args)
    assert not [name for name in env if name.startswith("KAFKA_") and name != "KAFKA_BROKER_URL"]
    assert env["CONTROL_SECRET"] == "a-control-secret-of-length"
    assert args.control_secret.reveal() == "a-control-secret-of-length"


def test_the_services_own_variables_set_the_starting_rate_and_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRANSACTIONS_PER_SECOND", "250")
    monkeypatch.setenv("FRAUD_THRESHOLD", "700")
    args = launcher.parse_args([])
    assert (args.tps, args.threshold) == (250.0, 700.0)
    assert launcher.parse_args(["--tps", "5"]).tps == 5.0  # a flag still wins
