"""The console's own embedded pipeline ignores security settings meant for a cluster."""

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
