"""The one place that builds Kafka clients.

Everything above this module is plain Python: it gets ready clients with the shared
librdkafka options (logging into Python's logging, idempotent producers, manual
commits) and never spells a librdkafka property itself.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic

from services import security
from services.config import DEFAULT_FETCH_WAIT_MS, ConfigError, fetch_wait_ms

log = logging.getLogger("fraud.kafka")

# librdkafka speaks through this logger so its lines share our format and level.
_client_log = logging.getLogger("fraud.librdkafka")
# A probe of a cluster that may be down would print a connection error every second;
# the caller reports the outcome in one line instead.
_quiet_log = logging.getLogger("fraud.librdkafka.probe")
_quiet_log.addHandler(logging.NullHandler())
_quiet_log.propagate = False

MAX_MESSAGE_BYTES = 1_048_588
Headers = list[tuple[str, str | bytes | None]]  # as Producer.produce takes them


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
        # Apache Kafka's default max.message.bytes of a topic: a record the cluster took
        # in (a 1 MB dead letter, say) can be written out again with its headers.
        "message.max.bytes": MAX_MESSAGE_BYTES,
    }
    config.update(extra or {})
    return Producer(_config(bootstrap, config))


def transactional_producer(
    bootstrap: str, transactional_id: str, extra: Mapping[str, Any] | None = None
) -> Producer:
    """A producer whose records become visible to ``read_committed`` readers only when
    its transaction commits (see ``checkpoint.ExactlyOnceCheckpoint``).

    ``transactional_id`` must be the same for the same instance across restarts: a
    restarted instance then fences its predecessor and aborts what it left open at
    once. A process that dies and does not come back leaves its open transaction to be
    aborted by the cluster after ``transaction.timeout.ms``; until then
    ``read_committed`` readers of the partitions it wrote to wait, so the timeout is
    short (the default is a minute), yet far longer than a checkpoint (one second).
    """
    config = {"transactional.id": transactional_id, "transaction.timeout.ms": 20_000}
    config.update(extra or {})
    return producer(bootstrap, config)


def consumer(bootstrap: str, group: str, extra: Mapping[str, Any] | None = None,
             instance: str | None = None, on_path: bool = False) -> Consumer:
    """A group member that commits only what the caller says is done.

    ``instance`` makes it a static member (``group.instance.id``): on Apache Kafka a
    restarted process with the same instance takes its partitions back at once, with
    no rebalance and no wait for the old session to expire. The session timeout is
    then how long the partitions of an instance that died for good stay unread.

    ``on_path``: a reader on a transaction's way from the generator to a person (the
    detector's input, the console's and fraud-tail's readers), whose fetch waits add
    to the latency of every fraud shown. It waits ``KAFKA_FETCH_WAIT_MS``; other
    readers (commands, labels, heartbeats, the evaluator) wait at least the default,
    since a shorter wait costs an idle cluster more fetches and buys them nothing.
    """
    wait = fetch_wait_ms()
    config = {
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        # How long the broker may hold a fetch that finds nothing. Apache Kafka answers
        # it as soon as records arrive, so there it only paces idle fetches: a long
        # wait costs no latency (compose.yml sets 100 ms). The embedded broker holds
        # an empty fetch for the whole wait, records arriving meanwhile included
        # (rd_kafka_mock_handle_Fetch): every hop then adds up to the wait, so
        # fraud-console sets 1 ms for it (services/broker.py, CLIENT_TUNING).
        "fetch.wait.max.ms": wait if on_path else max(wait, DEFAULT_FETCH_WAIT_MS),
        "allow.auto.create.topics": True,
        # A member that vanished holds its partitions until its session expires, and a
        # broker that ignores LeaveGroup and static membership (the embedded one does)
        # makes even a restart wait that long: 6 s (the least Apache Kafka allows by
        # default) instead of 45 s bounds the stall; a restarted detector resumes within
        # two sessions and a rebalance on that broker, at once with static membership.
        "session.timeout.ms": 6_000,
        "heartbeat.interval.ms": 1_000,
        # A rebalance waits this long for a member that stopped polling; the loops poll
        # every 100 ms and block at most a few seconds on a commit.
        "max.poll.interval.ms": 30_000,
        # Incremental rebalances: only the partitions that move are revoked, and they
        # are revoked once the group is stable again, so the offsets committed then are
        # stored everywhere (the embedded broker refuses commits while members join).
        "partition.assignment.strategy": "cooperative-sticky",
    }
    if instance is not None:
        config["group.instance.id"] = instance
    config.update(extra or {})
    return Consumer(_config(bootstrap, config))


def consume_batch(consumer: Consumer, size: int, timeout: float,
                  before_wait: Callable[[], object] | None = None) -> list[Message]:
    """Up to ``size`` records, returned as soon as there is one.

    ``Consumer.consume(size, timeout)`` waits the whole timeout for a full batch when
    traffic is light, which adds that timeout to every record's latency. Taking what
    is already fetched first and waiting only while there is nothing keeps batches
    large under load and latency low when quiet. ``before_wait`` runs when nothing
    fetched is waiting, before the wait: the caller has caught up with its input.
    """
    messages = consumer.consume(size, 0)
    if messages:
        return messages
    if before_wait is not None:
        before_wait()
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(size - 1, 0)] if size > 1 else [first]


def read_partition(bootstrap: str, topic: str, partition: int, timeout: float = 30.0,
                   last: int | None = None) -> list[tuple[bytes, bytes | None]]:
    """Every committed keyed ``(key, value)`` of one partition, oldest first, up to its
    end as of now; with ``last``, only those among its ``last`` newest offsets."""
    reader = consumer(bootstrap, f"{topic}-restore", {"enable.partition.eof": True})
    try:
        tp = TopicPartition(topic, partition)
        low, high = reader.get_watermark_offsets(tp, timeout=timeout)
        if high <= low:
            return []
        start = OFFSET_BEGINNING if last is None else max(low, high - last)
        reader.assign([TopicPartition(topic, partition, start)])
        out: list[tuple[bytes, bytes | None]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # consume() returns once it has all it asked for or its time is up: a short
            # time, or a partition of fewer records would wait all of it at its end.
            for message in reader.consume(10_000, 0.02):
                error, offset = message.error(), message.offset()
                if error is None:
                    key = message.key()
                    if key is not None:
                        out.append((key, message.value()))
                    if offset is not None and offset + 1 >= high:
                        return out
                elif error.code() == KafkaError._PARTITION_EOF:
                    return out  # read_committed: the end can lie before ``high``
        raise TimeoutError(f"{topic}[{partition}] not read to its end within {timeout:g} s")
    finally:
        reader.close()


def produce_when_room(producer: Producer, topic: str, key: bytes | None,
                      value: bytes | None, headers: Headers | None = None,
                      partition: int | None = None) -> None:
    """``produce``, waiting while the local queue is full instead of failing; to
    ``partition`` when given, else to the one the key hashes to.

    Hot loops call ``producer.produce`` directly and come here only on BufferError.
    """
    where: dict[str, Any] = {} if partition is None else {"partition": partition}
    while True:
        try:
            producer.produce(topic, value, key, headers=headers, **where)
            return
        except BufferError:
            producer.poll(0.05)  # let librdkafka send, then try again


def produce_dead_letter(producer: Producer, topic: str, key: bytes | None,
                        value: bytes | None, headers: Headers) -> None:
    """A dead letter, with its original bytes when they fit in a record.

    A value beyond ``message.max.bytes`` cannot be written again; the dead letter
    then goes without it, its reason saying so, and its origin headers point at the
    record, which stays in the input topic for its retention time. The detector keeps
    going either way.
    """
    try:
        produce_when_room(producer, topic, key, value, headers)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE:
            raise
        size = len(value or b"") + len(key or b"")
        # A dead letter's headers are bytes (routing.dead_letter_headers).
        reason = cast(bytes, next((v for k, v in headers if k == "dlq.reason"), b""))
        headers = [(k, v) for k, v in headers if k != "dlq.reason"]
        headers.append(("dlq.reason", reason + f"; record of {size} bytes too large to "
                        "copy, see its origin".encode()))
        produce_when_room(producer, topic, key, None, headers)


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


def partition_counts(bootstrap: str, topics: Iterable[str],
                     timeout: float = 10.0) -> dict[str, int]:
    """How many partitions each of ``topics`` has, as the cluster says now (0 for one
    it does not know)."""
    metadata = wait_for_broker(bootstrap, timeout)
    return {name: len(metadata.topics[name].partitions) if name in metadata.topics else 0
            for name in topics}


def ensure_topics(
    bootstrap: str, wanted: Mapping[str, int], timeout: float = 10.0,
    compacted: Iterable[str] = (), configs: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Create the topics that are missing, ``{name: partitions}``; those named in
    ``compacted`` keep the newest record of each key (changelogs, settings), and
    ``configs`` holds other topic settings by topic.

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
        compact = set(compacted)
        settings = {name: {**({"cleanup.policy": "compact"} if name in compact else {}),
                           **(configs or {}).get(name, {})} for name in missing}
        missing = _create_with_admin(bootstrap, missing, len(metadata.brokers), timeout,
                                     settings)
    if missing:
        _create_by_metadata(bootstrap, missing, timeout)


def _create_with_admin(
    bootstrap: str, missing: Mapping[str, int], brokers: int, timeout: float,
    settings: Mapping[str, Mapping[str, str]],
) -> dict[str, int]:
    """Returns the topics that still need another way to be created."""
    replication = min(3, max(1, brokers))
    new = [NewTopic(name, num_partitions=n, replication_factor=replication,
                    config=dict(settings[name])) for name, n in missing.items()]
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


class ClusterWatch:
    """Says when the cluster stops answering, and when it answers again.

    It is the delivery callback of a producer that reports every delivery and writes a
    few records a second (heartbeats): a record left unacknowledged for ``after``
    seconds means the cluster is unreachable or stalled, even while the connections
    stay open (a stopped broker process keeps its sockets, and librdkafka would wait a
    minute for a request to time out before saying anything).
    """

    def __init__(self, name: str, after: float = 3.0) -> None:
        self.after = after
        self.failures = 0
        self.outage_since: float | None = None
        self._answered = time.monotonic()
        self._log = logging.getLogger(f"fraud.{name}")

    def __call__(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            self.failures += 1
            return
        now = time.monotonic()
        self._answered = now
        if self.outage_since is not None:
            self._log.warning("the cluster answers again, after %.0f s",
                              now - self.outage_since)
            self.outage_since = None

    def check(self, producer: Producer) -> None:
        """Call from the loop: reports an outage once, when it starts."""
        now = time.monotonic()
        if (self.outage_since is None and now - self._answered >= self.after
                and len(producer) > 0):
            self.outage_since = self._answered
            self._log.warning("no answer from the cluster for %.0f s (is the broker "
                              "reachable?); retrying", now - self._answered)


def status_producer(bootstrap: str, name: str) -> tuple[Producer, ClusterWatch]:
    """A producer for heartbeats and command answers, outside any transaction, and the
    watch its deliveries feed; call ``watch.check(producer)`` and ``producer.poll(0)``
    each turn of the loop."""
    watch = ClusterWatch(name)
    return producer(bootstrap, {"on_delivery": watch, "delivery.report.only.error": False,
                                "linger.ms": 0}), watch
