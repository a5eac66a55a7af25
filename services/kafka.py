"""The one place that builds Kafka clients.

Everything above this module is plain Python: it gets ready clients with the shared
librdkafka options (logging into Python's logging, idempotent producers, manual
commits) and never spells a librdkafka property itself.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic

from services import security
from services.config import ConfigError

log = logging.getLogger("fraud.kafka")

# librdkafka speaks through this logger so its lines share our format and level.
_client_log = logging.getLogger("fraud.librdkafka")
# A probe of a cluster that may be down would print a connection error every second;
# the caller reports the outcome in one line instead.
_quiet_log = logging.getLogger("fraud.librdkafka.probe")
_quiet_log.addHandler(logging.NullHandler())
_quiet_log.propagate = False


def instance_id(service: str) -> str:
    """A name for this process that stays readable in heartbeats and headers."""
    import os

    return f"{service}-{socket.gethostname()}-{os.getpid()}"


def _config(bootstrap: str, extra: Mapping[str, Any] | None, quiet: bool = False) -> dict:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "logger": _quiet_log if quiet else _client_log,
        # Without this a broker that went away is retried every 100 ms.
        "reconnect.backoff.max.ms": 2000,
        **_security(),
    }
    config.update(extra or {})
    return config


def _security() -> dict[str, str]:
    """TLS and SASL properties from the environment (checked at start by config.parse),
    the same for every client; librdkafka's logger gets a filter that hides the secrets."""
    settings = security.client_security()
    for logger in (_client_log, _quiet_log):
        security.redact_in(logger, settings.secrets())
    return settings.librdkafka()


def producer(bootstrap: str, extra: Mapping[str, Any] | None = None) -> Producer:
    """An idempotent producer (acks=all): retries never duplicate or reorder a record."""
    config = {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
        # Only failures come back through the callback: successes cost nothing per record.
        "delivery.report.only.error": True,
    }
    config.update(extra or {})
    return Producer(_config(bootstrap, config))


def consumer(bootstrap: str, group: str, extra: Mapping[str, Any] | None = None) -> Consumer:
    """A group member that commits only what the caller says is done."""
    config = {
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "fetch.wait.max.ms": 50,
        "allow.auto.create.topics": True,
        # A member that vanished holds its partitions until its session expires, and a
        # broker that ignores LeaveGroup (the embedded one does) makes even a clean
        # restart wait that long: 10 s instead of the default 45 s bounds the stall.
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 1_000,
    }
    config.update(extra or {})
    return Consumer(_config(bootstrap, config))


def consume_batch(consumer: Consumer, size: int, timeout: float) -> list[Message]:
    """Up to ``size`` records, returned as soon as there is one.

    ``Consumer.consume(size, timeout)`` waits the whole timeout for a full batch when
    traffic is light, which adds that timeout to every record's latency. Taking what
    is already fetched first and waiting only while there is nothing keeps batches
    large under load and latency low when quiet.
    """
    messages = consumer.consume(size, 0)
    if messages:
        return messages
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(size - 1, 0)] if size > 1 else [first]


def produce_when_room(producer: Producer, topic: str, key: bytes | None,
                      value: bytes | None, headers: list[tuple[str, bytes]] | None = None,
                      ) -> None:
    """``produce``, waiting while the local queue is full instead of failing.

    Hot loops call ``producer.produce`` directly and come here only on BufferError.
    """
    while True:
        try:
            producer.produce(topic, value, key, headers=headers)
            return
        except BufferError:
            producer.poll(0.05)  # let librdkafka send, then try again


def admin(bootstrap: str, quiet: bool = False) -> AdminClient:
    return AdminClient(_config(bootstrap, None, quiet=quiet))


def wait_for_broker(bootstrap: str, timeout: float) -> ClusterMetadata:
    """Cluster metadata once the cluster answers, or ConfigError after ``timeout``; at
    once when the cluster turns the client away (a wrong password, an untrusted
    certificate), saying so."""
    errors: list[KafkaError] = []  # what librdkafka said while trying, newest last

    def on_error(error: KafkaError) -> None:
        if error.code() != KafkaError._ALL_BROKERS_DOWN:  # says nothing about why
            errors[:] = [*errors[-9:], error]

    try:
        client = AdminClient(_config(bootstrap, {"error_cb": on_error}, quiet=True))
    except KafkaException as exc:  # a TLS file librdkafka cannot load, say
        raise ConfigError(f"cannot set up a Kafka client: {exc.args[0].str()}") from None
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            return client.list_topics(timeout=max(0.5, min(left, 2.0)))
        except KafkaException:
            client.poll(0)  # serves on_error
            refused = [e for e in errors
                       if e.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL)]
            if refused:
                raise ConfigError(f"Kafka at {bootstrap} refused this client: "
                                  f"{refused[-1].str()}") from None
            if time.monotonic() >= deadline:
                said = f"; last error: {errors[-1].str()}" if errors else ""
                raise ConfigError(
                    f"cannot reach Kafka at {bootstrap} within {timeout:g} s "
                    f"(is the broker running? set KAFKA_BROKER_URL or --bootstrap){said}"
                ) from None


def ensure_topics(
    bootstrap: str, wanted: Mapping[str, int], timeout: float = 10.0
) -> None:
    """Create the topics that are missing, ``{name: partitions}``.

    The admin API is used where the cluster names a controller to serve it; otherwise
    (librdkafka's embedded mock cluster names none) the topics are created by asking for their
    metadata, which a broker with ``auto.create.topics.enable`` answers by creating them.
    """
    metadata = wait_for_broker(bootstrap, timeout)
    missing = {name: n for name, n in wanted.items() if name not in metadata.topics}
    if not missing:
        return
    # Admin requests go to the controller the metadata names; a cluster that names none
    # among its brokers cannot serve them.
    if metadata.controller_id in metadata.brokers:
        missing = _create_with_admin(bootstrap, missing, len(metadata.brokers), timeout)
    if missing:
        _create_by_metadata(bootstrap, missing, timeout)


def _create_with_admin(
    bootstrap: str, missing: Mapping[str, int], brokers: int, timeout: float
) -> dict[str, int]:
    """Returns the topics that still need another way to be created."""
    replication = min(3, max(1, brokers))
    new = [NewTopic(name, num_partitions=n, replication_factor=replication)
           for name, n in missing.items()]
    left: dict[str, int] = {}
    client = admin(bootstrap)  # kept alive until the futures resolve
    futures = client.create_topics(
        new, request_timeout=min(timeout, 5.0), operation_timeout=min(timeout, 5.0)
    )
    for name, future in futures.items():
        try:
            future.result()
            log.info("created topic %s (%d partitions)", name, missing[name])
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                log.info("admin API could not create %s (%s); trying auto-creation",
                         name, error.str())
                left[name] = missing[name]
    return left


def _create_by_metadata(bootstrap: str, missing: Iterable[str], timeout: float) -> None:
    probe = Producer(_config(bootstrap, {"allow.auto.create.topics": True}))
    for name in missing:
        deadline = time.monotonic() + timeout
        while True:
            topic = probe.list_topics(name, timeout=timeout).topics.get(name)
            if topic is not None and topic.error is None and topic.partitions:
                log.info("topic %s auto-created (%d partitions)", name, len(topic.partitions))
                break
            if time.monotonic() >= deadline:
                raise ConfigError(
                    f"topic {name} does not exist and the cluster would not create it "
                    "(create it, or enable auto.create.topics.enable)"
                )
            time.sleep(0.2)


class DeliveryFailures:
    """Counts records the producer gave up on, and says so in the log.

    Used as the producer's ``on_delivery`` callback; with ``delivery.report.only.error``
    it runs only for failures, inside ``poll()``/``flush()``.
    """

    def __init__(self, name: str) -> None:
        self.count = 0
        self._log = logging.getLogger(f"fraud.{name}")
        self._last_logged = 0.0

    def __call__(self, error: KafkaError | None, message: Any) -> None:
        if error is None:
            return
        self.count += 1
        now = time.monotonic()
        if now - self._last_logged >= 1.0:
            self._last_logged = now
            self._log.error("delivery to %s failed: %s (%d failures so far)",
                            message.topic(), error.str(), self.count)
