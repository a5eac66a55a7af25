"""Security settings for real clusters come from the environment, reach every client,
and a mistake is one line that never shows a secret."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from services import kafka
from services.security import (
    Redact,
    Secret,
    SecurityError,
    client_security,
    control_secret,
    redact_in,
)

PASSWORD = "pa55-w0rd-never-shown"


def test_nothing_set_means_plaintext_as_before() -> None:
    assert client_security({}).librdkafka() == {"security.protocol": "PLAINTEXT"}


def test_sasl_over_tls_with_a_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = client_security({
        "KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_SASL_MECHANISM": "scram-sha-512",
        "KAFKA_SASL_USERNAME": "fraud", "KAFKA_SASL_PASSWORD": PASSWORD,
        "KAFKA_SSL_CA_LOCATION": str(ca),
    })
    assert settings.librdkafka() == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "fraud", "sasl.password": PASSWORD, "ssl.ca.location": str(ca)}
    assert PASSWORD not in repr(settings)


def test_mutual_tls_with_an_encrypted_key(tmp_path: Path) -> None:
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    settings = client_security({
        "KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_LOCATION": "probe",
        "KAFKA_SSL_CERTIFICATE_LOCATION": str(tmp_path / "cert.pem"),
        "KAFKA_SSL_KEY_LOCATION": str(tmp_path / "key.pem"), "KAFKA_SSL_KEY_PASSWORD": PASSWORD,
    })
    assert settings.librdkafka() == {
        "security.protocol": "SSL", "ssl.ca.location": "probe",
        "ssl.certificate.location": str(tmp_path / "cert.pem"),
        "ssl.key.location": str(tmp_path / "key.pem"), "ssl.key.password": PASSWORD}


def test_credentials_the_protocol_does_not_use_are_not_handed_out() -> None:
    settings = client_security({"KAFKA_SASL_USERNAME": "fraud", "KAFKA_SASL_PASSWORD": PASSWORD})
    assert settings.librdkafka() == {"security.protocol": "PLAINTEXT"}


@pytest.mark.parametrize(("env", "said"), [
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL: 'TLS' is not one of"),
    ({"KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM: 'GSSAPI' is not one of"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_PASSWORD": PASSWORD},
     "SASL_SSL needs KAFKA_SASL_USERNAME"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "fraud"},
     "needs KAFKA_SASL_PASSWORD"),
    ({"KAFKA_SSL_CA_LOCATION": "/no/such/ca.pem", "KAFKA_SASL_PASSWORD": PASSWORD},
     "KAFKA_SSL_CA_LOCATION: /no/such/ca.pem does not exist"),
    ({"KAFKA_SSL_CERTIFICATE_LOCATION": "/etc/hostname"}, "go together"),
    ({"KAFKA_SSL_KEY_LOCATION": "/etc", "KAFKA_SSL_KEY_PASSWORD": PASSWORD}, "is not a file"),
])
def test_a_bad_setting_is_named_and_no_secret_shown(env: dict[str, str], said: str) -> None:
    with pytest.raises(SecurityError, match=said) as caught:
        client_security(env)
    assert PASSWORD not in str(caught.value)


def test_every_client_gets_the_security_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "fraud")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", PASSWORD)
    config = kafka._config("broker:9092", {"group.id": "g"})
    assert config["security.protocol"] == "SASL_PLAINTEXT"
    assert config["sasl.password"] == PASSWORD and config["group.id"] == "g"


def test_librdkafka_log_lines_never_carry_a_secret(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redaction")
    redact_in(logger, [PASSWORD])
    redact_in(logger, [PASSWORD, "other-secret"])  # once, however often asked
    assert sum(isinstance(f, Redact) for f in logger.filters) == 1
    with caplog.at_level(logging.INFO, logger="test.redaction"):
        logger.info("FAIL %s: auth with %s failed", "broker-1", PASSWORD)
    assert caplog.messages == ["FAIL broker-1: auth with *** failed"]


def test_the_control_secret_is_long_enough_and_hidden() -> None:
    assert control_secret({}) is None
    secret = control_secret({"CONTROL_SECRET": "x" * 16})
    assert isinstance(secret, Secret) and secret.reveal() == "x" * 16
    assert "x" not in repr(secret) + str(secret)
    with pytest.raises(SecurityError, match="too short") as caught:
        control_secret({"CONTROL_SECRET": "abc123"})
    assert "abc123" not in str(caught.value)
