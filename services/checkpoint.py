"""Commit consumed offsets only together with, or after, the outputs they produced.

A checkpoint collects the next offset of every partition a loop has processed and,
when due (by interval or by count), commits in named steps. Two guarantees:

``AtLeastOnceCheckpoint``: 1. flush the producer, 2. check that nothing is left
unsent and no delivery failed, 3. commit the offsets. A failed delivery means no
commit and a rewind to the last commit: records may be processed twice, never lost.

``ExactlyOnceCheckpoint``: the outputs and the offsets go into one Kafka transaction.
``begin`` opens it before a batch's outputs are produced; then 1. flush, 2. check,
3. send the offsets to the transaction, 4. commit the transaction, 5. commit the same
offsets to the group directly (see ``_confirm``). An abortable error aborts the
transaction and rewinds to the committed offsets, so its outputs, never visible to a
``read_committed`` reader, are produced again. A fatal error (this instance fenced
by a newer one with the same ``transactional.id``) raises ``KafkaException`` with a
fatal error: the process must exit and be restarted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from services.kafka import DeliveryFailures

log = logging.getLogger("fraud.checkpoint")

AT_LEAST_ONCE = "at_least_once"
EXACTLY_ONCE = "exactly_once"
GUARANTEES = (EXACTLY_ONCE, AT_LEAST_ONCE)
CALL_TIMEOUT = 0.5  # seconds a transactional call may block the loop (and signals)
REWIND_WAIT = 60.0  # seconds a rewind asks for the committed offsets before it stops
T = TypeVar("T")


def abortable(error: KafkaError) -> bool:
    """Whether a transactional error asks for an abort, the records since the last
    commit then processed again: one that says so, or a ``produce()`` the client
    refused because the transaction is already in such an error (``_STATE``: a gap in
    the producer's sequence after an outage, say; a fatal error says ``_FATAL``)."""
    return bool(error.txn_requires_abort()) or error.code() == KafkaError._STATE


def _timed_out(error: KafkaError) -> bool:
    return error.code() == KafkaError._TIMED_OUT


class Checkpoint:
    """What both guarantees share: tracking offsets, deciding when to commit, rewinding."""

    def __init__(
        self,
        consumer: Consumer,
        producer: Producer,
        failures: DeliveryFailures,
        interval: float = 1.0,
        max_records: int = 100_000,
        flush_timeout: float = 3.0,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.failures = failures
        self.interval = interval
        self.max_records = max_records
        self.flush_timeout = flush_timeout
        self._offsets: dict[tuple[str, int], int] = {}
        self._records = 0
        self._failures_seen = failures.count
        self._opened = time.monotonic()
        self._warned = 0.0
        self.commits = 0
        self.rewinds = 0
        # Step 0 of a commit, for outputs that belong with it (state changes for a
        # changelog); and what to do once processing goes back to the last commit
        # (state built from records that will be processed again is stale).
        self.before_commit: Callable[[], None] | None = None
        self.after_rewind: Callable[[], None] | None = None
        # Offsets a commit may not pass, by (topic, partition): records from there on
        # were read but wait to be processed (the stateful detector's event-time merge).
        self.holds: Callable[[], dict[tuple[str, int], int]] | None = None

    def begin(self) -> None:
        """Called before a batch's outputs are produced."""

    def track(self, messages: Sequence[Any]) -> None:
        """Mark ``messages`` processed (their outputs produced, not yet delivered).

        A batch holds each partition's records in offset order, so its last record of
        each is what counts: one pass that keeps it (its offset asked for once a
        partition, not once a record), then a check per partition.
        """
        if not messages:
            return
        if not self._records:
            # The interval runs from the oldest record not yet committed: a burst after
            # a quiet spell would otherwise commit (and flush) after its first batch.
            self._opened = time.monotonic()
        newest = {(m.topic(), m.partition()): m for m in messages}
        offsets = self._offsets
        for tp, message in newest.items():
            offset = message.offset()
            if offset + 1 < offsets.get(tp, -1):
                raise ValueError(f"offset of {tp} goes backwards: {offset + 1}")
            offsets[tp] = offset + 1
        self._records += len(messages)

    def due(self) -> bool:
        return (bool(self._offsets) or self._pending()) and (
            self._records >= self.max_records
            or time.monotonic() - self._opened >= self.interval
        )

    def _pending(self) -> bool:
        """Outputs produced that no commit has made visible yet, with no offset to
        go with them (the stateful detector's progress markers and state changes
        while its input is quiet): they too are committed once the interval is up."""
        return False

    def commit(self) -> bool:
        """Commit what is tracked; False if it could not be (see the subclasses)."""
        raise NotImplementedError

    def close(self) -> bool:
        """The final commit when the loop stops."""
        return self.commit()

    def abandon(self) -> None:
        """Give up what is not committed: it is processed again from the last commit."""
        self._rewind()

    def give_up(self, exc: KafkaException) -> None:
        """``abandon``, for an ``abortable`` error; any other is raised again (fatal,
        or no answer in time: the process exits, and its restart resumes from the
        last commit)."""
        error: KafkaError = exc.args[0]
        if not abortable(error):
            raise exc
        log.warning("transaction failed: %s; reprocessing from the last commit",
                    error.str())
        self.abandon()

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._offsets.pop((tp.topic, tp.partition), None)

    def _prepare(self) -> None:
        """0. whatever must be written with this commit."""
        if self.before_commit is not None:
            self.before_commit()

    def _positions(self) -> list[TopicPartition]:
        holds = {} if self.holds is None else self.holds()
        return [TopicPartition(t, p, min(o, holds.get((t, p), o)))
                for (t, p), o in self._offsets.items()]

    def _new_failures(self) -> int:
        failed = self.failures.count - self._failures_seen
        self._failures_seen = self.failures.count
        return failed

    def _committed(self) -> None:
        self._offsets.clear()
        self._records = 0
        self.commits += 1

    def _rewind(self) -> None:
        """Back to the last committed offsets: what was processed since is done again."""
        positions = [TopicPartition(t, p) for t, p in self._offsets]
        self._offsets.clear()
        self._records = 0
        self.rewinds += 1
        try:
            for tp in self._committed_offsets(positions):
                # An unset offset means "never committed": start from the beginning.
                offset = max(tp.offset, 0)
                self.consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
                log.info("rewound %s [%d] to offset %d at %.6f", tp.topic, tp.partition,
                         offset, time.time())
        except KafkaException as exc:
            if _timed_out(exc.args[0]):
                # Going on from here would skip what was given up: stop instead, and
                # the restart resumes from the last commit.
                raise
            log.error("rewind failed: %s", exc.args[0].str())  # (a partition gone)
        if self.after_rewind is not None:
            self.after_rewind()

    def _committed_offsets(self, positions: list[TopicPartition]) -> list[TopicPartition]:
        """The group's committed offsets of ``positions``, asked again while the
        cluster does not answer (just back from an outage, a group rejoining), for up
        to ``REWIND_WAIT`` seconds."""
        return self._again(lambda timeout: self.consumer.committed(positions, timeout=timeout),
                           "the committed offsets", REWIND_WAIT, 2.0, _timed_out)

    def _again(self, call: Callable[[float], T], name: str, wait: float, timeout: float,
               retry: Callable[[KafkaError], bool]) -> T:
        """``call(timeout)`` until it succeeds, for up to ``wait`` seconds, again while
        its error is one ``retry`` passes (nothing decided yet). The calls are short
        because a signal is handled only between them: a SIGTERM must not wait for
        the cluster."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return call(timeout)
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if not retry(error) or time.monotonic() >= deadline:
                    raise
                self._warn("%s not answered yet (%s; is the broker reachable?); retrying",
                           name, error.str())

    def _warn(self, message: str, *args: Any) -> None:
        """A warning at most every five seconds: an outage must not flood the log."""
        now = time.monotonic()
        if now - self._warned >= 5.0:
            self._warned = now
            log.warning(message, *args)


class AtLeastOnceCheckpoint(Checkpoint):
    """Outputs first, offsets after: a crash in between means duplicates, never loss."""

    def commit(self) -> bool:
        self._opened = time.monotonic()
        if not self._offsets:
            return True
        self._prepare()
        # 1. flush: every produced output delivered or failed
        unsent = self.producer.flush(self.flush_timeout)
        # 2. check: nothing still queued, no failed delivery since the last commit
        failed = self._new_failures()
        if unsent or failed:
            log.error("not committing: %d outputs unsent, %d failed; reprocessing from the "
                      "last commit", unsent, failed)
            self._rewind()
            return False
        # 3. commit the offsets
        try:
            self.consumer.commit(offsets=self._positions(), asynchronous=False)
        except KafkaException as exc:
            # Outputs are in Kafka, so a failed commit means duplicates later, never loss.
            log.warning("offset commit failed (records may be processed again): %s",
                        exc.args[0].str())
            return False
        self._committed()
        return True


class ExactlyOnceCheckpoint(Checkpoint):
    """Outputs and offsets in one transaction: both become visible, or neither.

    The producer must be transactional (``kafka.transactional_producer``); creating
    the checkpoint initialises its transactions, which fences any earlier process with
    the same ``transactional.id`` and aborts what that one left open.
    """

    def __init__(
        self,
        consumer: Consumer,
        producer: Producer,
        failures: DeliveryFailures,
        interval: float = 1.0,
        max_records: int = 100_000,
        flush_timeout: float = 3.0,
        txn_timeout: float = 10.0,
        open_limit: float = 20.0,  # the producer's transaction.timeout.ms
    ) -> None:
        super().__init__(consumer, producer, failures, interval, max_records, flush_timeout)
        self.txn_timeout = txn_timeout
        self.open_limit = open_limit
        self.aborts = 0
        self._open = False
        self._began = 0.0
        self._retry(producer.init_transactions, "init_transactions")

    def begin(self) -> None:
        if not self._open:
            self.producer.begin_transaction()
            self._open = True
            self._began = time.monotonic()

    def _pending(self) -> bool:
        return self._open

    def commit(self) -> bool:
        self._opened = time.monotonic()
        if not self._open:
            return True
        try:
            self._prepare()  # it produces, which a transaction in error refuses
        except KafkaException as exc:
            self.give_up(exc)
            return False
        # 1. flush: every output of the transaction delivered or failed
        unsent = self.producer.flush(self.flush_timeout)
        if unsent:
            # The broker is slow or away. The transaction stays open and grows; it
            # commits when the broker answers again, or the broker aborts it after
            # transaction.timeout.ms and step 4 reports that (then: abort and rewind).
            self._warn("transaction not committed yet: %d outputs undelivered after "
                       "%.0f s (is the broker reachable?)", unsent, self.flush_timeout)
            if time.monotonic() - self._began > self.open_limit:
                # Beyond transaction.timeout.ms the cluster has aborted it, or has lost
                # it (an in-memory broker started again): a fresh process resumes from
                # the last commit.
                raise KafkaException(KafkaError(
                    KafkaError._TIMED_OUT,
                    f"transaction still open after {self.open_limit:.0f} s"))
            return False
        # 2. check: no output failed (step 4 would refuse such a transaction anyway)
        failed = self._new_failures()
        if failed:
            log.error("aborting the transaction: %d outputs failed; reprocessing from "
                      "the last commit", failed)
            return self._abort()
        try:
            # 3. the offsets, into the transaction
            if self._offsets:
                positions, group = self._positions(), self.consumer.consumer_group_metadata()
                self._retry(lambda timeout: self.producer.send_offsets_to_transaction(
                    positions, group, timeout), "send_offsets_to_transaction")
            # 4. commit: outputs and offsets visible together
            self._retry(self.producer.commit_transaction, "commit_transaction")
        except KafkaException as exc:
            self.give_up(exc)  # fatal (fenced), or no answer for txn_timeout: raised
            return False
        self._open = False
        positions = self._positions()
        self._committed()
        self._confirm(positions)
        return True

    def close(self) -> bool:
        """The final commit at a stop; what cannot be committed is aborted."""
        if self.commit():
            return True
        if self._open:
            self._abort()
        return False

    def abandon(self) -> None:
        if self._open:
            self._abort()
        else:
            self._rewind()

    def _confirm(self, positions: list[TopicPartition]) -> None:
        """5. The committed offsets once more, as a plain group commit.

        On Apache Kafka step 3 already stored them with the transaction and this writes
        the same values again (rejected, harmlessly, if the group has moved on). The
        embedded broker (librdkafka's mock cluster) accepts step 3 but does not store
        the offsets: without this a restarted detector there would start over from the
        beginning of its partitions.
        """
        if not positions:
            return
        try:
            self.consumer.commit(offsets=positions, asynchronous=False)
        except KafkaException as exc:
            log.info("plain offset commit after the transaction refused: %s",
                     exc.args[0].str())

    def _abort(self) -> bool:
        self._retry(self.producer.abort_transaction, "abort_transaction")
        self._open = False
        self.aborts += 1
        self._new_failures()  # the aborted outputs' failures are settled by the abort
        self._rewind()
        return False

    def _retry(self, call: Callable[[float], None], name: str) -> None:
        """``call(timeout)`` until it succeeds, for up to ``txn_timeout`` seconds: a
        retriable error (a timeout: nothing decided yet) means the same call again,
        as librdkafka asks."""
        self._again(call, name, self.txn_timeout, CALL_TIMEOUT, KafkaError.retriable)

def for_guarantee(guarantee: str, consumer: Consumer, producer: Producer,
                  failures: DeliveryFailures) -> Checkpoint:
    if guarantee == EXACTLY_ONCE:
        return ExactlyOnceCheckpoint(consumer, producer, failures)
    return AtLeastOnceCheckpoint(consumer, producer, failures)
