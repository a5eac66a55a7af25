"""Security settings from the environment: TLS and SASL for real clusters, and the
secret that signs control commands. Pure (no Kafka client import).

These are environment variables only, never flags: a command line is visible to every
user of the machine (``ps``), an environment is not. Every problem is reported as one
line that names the variable and never its secret value.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# The mechanisms that authenticate with a user name and a password.
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
MIN_CONTROL_SECRET = 16  # characters; a short secret is guessed offline from one signature

# (variable, what it is) for ``--help``; values are never shown.
VARIABLES = (
    ("KAFKA_SECURITY_PROTOCOL", f"{', '.join(PROTOCOLS)} (default PLAINTEXT)"),
    ("KAFKA_SASL_MECHANISM", f"{', '.join(MECHANISMS)} (default PLAIN)"),
    ("KAFKA_SASL_USERNAME", "SASL user"),
    ("KAFKA_SASL_PASSWORD", "SASL password"),
    ("KAFKA_SSL_CA_LOCATION", "CA certificate file or folder (or 'probe')"),
    ("KAFKA_SSL_CERTIFICATE_LOCATION", "client certificate file (mutual TLS)"),
    ("KAFKA_SSL_KEY_LOCATION", "client private key file (mutual TLS)"),
    ("KAFKA_SSL_KEY_PASSWORD", "password of the private key"),
    ("CONTROL_SECRET", f"signs control commands (HMAC-SHA256, {MIN_CONTROL_SECRET}+ characters)"),
)


# The variables that say how to reach a real cluster (all but CONTROL_SECRET).
CLIENT_VARIABLES = tuple(name for name, _ in VARIABLES if name.startswith("KAFKA_"))


class SecurityError(ValueError):
    """A security setting that cannot be used; the message never holds a secret."""


@dataclass(frozen=True)
class Secret:
    """A value that must not be printed: its repr and str hide it."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "***"

    def __repr__(self) -> str:
        return "Secret('***')"


@dataclass(frozen=True)
class ClientSecurity:
    """How every Kafka client of a process authenticates and encrypts."""

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: Secret | None = None
    ca_location: str | None = None
    certificate_location: str | None = None
    key_location: str | None = None
    key_password: Secret | None = None

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol.endswith("SSL")

    def librdkafka(self) -> dict[str, str]:
        """The librdkafka properties, nothing set that the protocol does not use."""
        config = {"security.protocol": self.protocol}
        if self.sasl:
            assert self.mechanism and self.username and self.password
            config.update({"sasl.mechanism": self.mechanism, "sasl.username": self.username,
                           "sasl.password": self.password.reveal()})
        if self.tls:
            for prop, value in (("ssl.ca.location", self.ca_location),
                                ("ssl.certificate.location", self.certificate_location),
                                ("ssl.key.location", self.key_location)):
                if value:
                    config[prop] = value
            if self.key_password is not None:
                config["ssl.key.password"] = self.key_password.reveal()
        return config

    def secrets(self) -> tuple[str, ...]:
        return tuple(s.reveal() for s in (self.password, self.key_password) if s is not None)


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _secret(env: Mapping[str, str], name: str) -> Secret | None:
    value = env.get(name, "")  # taken as given: spaces may be part of a password
    return Secret(value) if value else None


def client_security(env: Mapping[str, str] | None = None) -> ClientSecurity:
    """The client security the environment asks for, or SecurityError saying what is wrong."""
    env = os.environ if env is None else env
    protocol = (_get(env, "KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper()
    if protocol not in PROTOCOLS:
        raise SecurityError(f"KAFKA_SECURITY_PROTOCOL: {env['KAFKA_SECURITY_PROTOCOL']!r} is "
                            f"not one of {', '.join(PROTOCOLS)}")
    mechanism_set = _get(env, "KAFKA_SASL_MECHANISM")
    mechanism = (mechanism_set or "PLAIN").upper()
    if mechanism not in MECHANISMS:
        raise SecurityError(f"KAFKA_SASL_MECHANISM: {mechanism_set!r} is not one of "
                            f"{', '.join(MECHANISMS)}")
    username = _get(env, "KAFKA_SASL_USERNAME")
    password = _secret(env, "KAFKA_SASL_PASSWORD")
    if protocol.startswith("SASL_") and (username is None or password is None):
        missing = " and ".join(name for name, value in (("KAFKA_SASL_USERNAME", username),
                                                         ("KAFKA_SASL_PASSWORD", password))
                               if value is None)
        raise SecurityError(f"KAFKA_SECURITY_PROTOCOL={protocol} needs {missing}")
    files = {name: _get(env, name) for name in (
        "KAFKA_SSL_CA_LOCATION", "KAFKA_SSL_CERTIFICATE_LOCATION", "KAFKA_SSL_KEY_LOCATION")}
    for name, path in files.items():
        if path is None or (name == "KAFKA_SSL_CA_LOCATION" and path == "probe"):
            continue
        is_folder_ok = name == "KAFKA_SSL_CA_LOCATION"  # librdkafka takes a folder of CAs
        if not (os.path.isfile(path) or (is_folder_ok and os.path.isdir(path))):
            raise SecurityError(f"{name}: {path} does not exist or is not a file")
    certificate, key = files["KAFKA_SSL_CERTIFICATE_LOCATION"], files["KAFKA_SSL_KEY_LOCATION"]
    if (certificate is None) != (key is None):
        raise SecurityError("KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION go "
                            "together (mutual TLS needs both)")
    return ClientSecurity(
        protocol=protocol, mechanism=mechanism if protocol.startswith("SASL_") else None,
        username=username, password=password, ca_location=files["KAFKA_SSL_CA_LOCATION"],
        certificate_location=certificate, key_location=key,
        key_password=_secret(env, "KAFKA_SSL_KEY_PASSWORD"),
    )


def control_secret(env: Mapping[str, str] | None = None) -> Secret | None:
    """The secret that signs control commands (``CONTROL_SECRET``), None when unset."""
    env = os.environ if env is None else env
    secret = _secret(env, "CONTROL_SECRET")
    if secret is not None and len(secret.reveal()) < MIN_CONTROL_SECRET:
        raise SecurityError(f"CONTROL_SECRET is too short: use at least {MIN_CONTROL_SECRET} "
                            "characters")
    return secret


class Redact(logging.Filter):
    """Replaces secrets in the records of the logger it is attached to (librdkafka's).

    librdkafka already prints sensitive properties as ``[redacted]`` in its own
    configuration dumps; this guards every other line it may write."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(s in message for s in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
        return True


def redact_in(logger: logging.Logger, secrets: Iterable[str]) -> None:
    """Attach (once) a filter that keeps ``secrets`` out of ``logger``'s records."""
    wanted = tuple(s for s in secrets if s)
    if not wanted:
        return
    for existing in logger.filters:
        if isinstance(existing, Redact):
            existing.secrets = tuple(dict.fromkeys((*existing.secrets, *wanted)))
            return
    logger.addFilter(Redact(wanted))
