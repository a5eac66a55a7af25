"""A bad setting ends a service with one readable line and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
    ("detector", {"KAFKA_FETCH_WAIT_MS": "soon"}, [], "KAFKA_FETCH_WAIT_MS: 'soon'"),
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


def test_a_bad_value_is_said_with_its_flag_and_variable_once() -> None:
    result = run("generator", {"TRANSACTIONS_PER_SECOND": "fast"})
    assert result.stderr.strip() == \
        "fraud-generator: error: --tps (TRANSACTIONS_PER_SECOND): 'fast' is not a number"


@pytest.mark.parametrize("module", ["generator", "detector"])
def test_unreachable_broker_after_a_bounded_wait(module: str) -> None:
    # Port 9 (discard) on loopback: nothing listens there.
    result = run(module, {"KAFKA_BROKER_URL": "127.0.0.1:9", "KAFKA_CONNECT_TIMEOUT": "1"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot reach Kafka at 127.0.0.1:9 within 1 s" in lines[0]


PASSWORD = "s3cret-pa55word-xyz"


@pytest.mark.parametrize(("module", "env", "said"), [
    ("generator", {"KAFKA_SECURITY_PROTOCOL": "SASL_TLS"},
     "KAFKA_SECURITY_PROTOCOL: 'SASL_TLS' is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
    ("detector", {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "KERBEROS"},
     "KAFKA_SASL_MECHANISM: 'KERBEROS' is not one of"),
    ("tail", {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": ""},
     "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_USERNAME"),
    ("detector", {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_LOCATION": "/no/ca.pem"},
     "KAFKA_SSL_CA_LOCATION: /no/ca.pem does not exist"),
    ("generator", {"KAFKA_SSL_KEY_LOCATION": "/no/key.pem", "KAFKA_SSL_KEY_PASSWORD": PASSWORD},
     "KAFKA_SSL_KEY_LOCATION: /no/key.pem does not exist"),
    ("generator", {"CONTROL_SECRET": "short-" + PASSWORD[:4]}, "CONTROL_SECRET is too short"),
])
def test_bad_security_settings_never_show_a_secret(
    module: str, env: dict[str, str], said: str
) -> None:
    result = run(module, {"KAFKA_SASL_PASSWORD": PASSWORD, **env}, "topic" if module == "tail"
                 else "--verbose")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"fraud-{module}: error: ") and said in lines[0]
    assert PASSWORD not in result.stderr + result.stdout
    assert PASSWORD[:4] not in result.stderr + result.stdout


def test_a_tls_file_librdkafka_cannot_load_is_one_line(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate")
    result = run("tail", {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_LOCATION": str(ca),
                          "KAFKA_SSL_KEY_PASSWORD": PASSWORD}, "topic")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fraud-tail: error: cannot set up a Kafka client: ")
    assert "ssl.ca.location" in lines[0] and PASSWORD not in result.stderr


def test_help_lists_the_security_variables_but_no_value() -> None:
    result = run("detector", {"KAFKA_SASL_PASSWORD": PASSWORD, "CONTROL_SECRET": PASSWORD * 2},
                 "--help")
    assert result.returncode == 0
    for name in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_KEY_LOCATION",
                 "CONTROL_SECRET"):
        assert name in result.stdout
    assert PASSWORD not in result.stdout
