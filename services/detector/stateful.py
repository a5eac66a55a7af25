"""The Kafka side of the two-stage detector (``stages``): its internal topics, state
restored when partitions are assigned, state changes written before every commit, and
the labels that teach the model.

Internal topics are named after the consumer group, as Kafka Streams names them after
the application, so that detectors of one group share them and another group's do not:

- ``<group>-by-target-repartition``: transactions re-keyed by target, between stages;
- ``<group>-source-state-changelog`` and ``<group>-target-state-changelog``: each
  stage's state changes, one changelog partition per input partition (compacted on a
  real cluster, so a restore reads the newest state of each key).

State is *restored*, not rebuilt: an instance given a partition reads that partition's
changelog to its end before it processes a record of it. With exactly-once the changes
are written in the same transaction as the outputs and the offsets, so the restored
state is exactly what the committed offsets have seen. With at-least-once they are
written before the offsets are committed: after a crash, records since the last commit
are processed again and counted twice in the windows that saw them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import compress
from typing import TYPE_CHECKING, Any

from confluent_kafka import OFFSET_END, Consumer, Message, Producer, TopicPartition

from services import kafka
from services.detector import distinct_columns, kernels
from services.detector.event_time import NEVER
from services.detector.labels import Examples, LabelJoin
from services.detector.repartition import FRAME_KEY, by_rows, offset_of
from services.detector.routing import Headers, Routed
from services.detector.rules import RuleSettings, SourceRules, TargetRules
from services.detector.snapshots import ModelSnapshots
from services.detector.stages import SourceStage, TargetStage
from services.detector.trust import ModelTrust

if TYPE_CHECKING:  # scikit-learn loads only when a model is asked for
    from services.detector.model import OnlineModel

log = logging.getLogger("fraud.detector.state")

# What the service does with a batch: (topic, key, value, headers, partition or None).
Output = tuple[str, bytes | None, bytes | None, Headers | None, int | None]


@dataclass(frozen=True)
class InternalTopics:
    repartition: str
    source_changelog: str
    target_changelog: str
    model_snapshots: str  # its partition 0 only (``snapshots``)

    @classmethod
    def of(cls, group: str) -> InternalTopics:
        return cls(f"{group}-by-target-repartition", f"{group}-source-state-changelog",
                   f"{group}-target-state-changelog", f"{group}-model-snapshots")

    def partitioned(self) -> tuple[str, str, str]:
        """The topics with a partition per input partition: state moves with it."""
        return self.repartition, self.source_changelog, self.target_changelog


class StatefulDetector:
    """Feeds consumed records to the stage that owns their topic, keeps each stage's
    state in step with the partitions this instance owns, and teaches the model."""

    def __init__(self, bootstrap: str, transactions: str, internal: InternalTopics,
                 source: SourceStage, target: TargetStage, settings: RuleSettings,
                 labels: LabelFeed | None = None,
                 snapshots: ModelSnapshots | None = None,
                 repartitions: int | None = None, batch_size: int = 1000) -> None:
        self.bootstrap = bootstrap
        self.batch_size = batch_size  # forwards the second stage judges at once, at most
        # Partitions of the repartition topic, each sent the first stage's progress
        # markers (``event_time``); None sends none (the second stage then takes records
        # as they come: ``TargetStage.upstream``).
        self.repartitions = repartitions
        self.transactions = transactions
        self.internal = internal
        self.source = source
        self.target = target
        self.settings = settings
        self.labels = labels
        self.snapshots = snapshots
        self.join = LabelJoin()
        # The model decides once it beats the rules on the labels of what it scored;
        # until then its score is shown and the rules decide.
        self.trust = ModelTrust()
        target.model_decides = target.model is None
        self.restored = 0  # changelog records read back, for the heartbeat
        self.too_large = 0  # state changes too large for a record, left out

    @classmethod
    def build(cls, bootstrap: str, transactions: str, labels_topic: str, group: str,
              instance: str, rules: tuple[str, ...], model: bool,
              threshold: float, idle_after: float = 2.0,
              batch_size: int = 1000) -> StatefulDetector:
        """The detector with ``rules`` and, if asked, a model learning from labels,
        which starts as the group's newest snapshot of it where there is one. Event
        time is merged across the transactions topic's partitions, as many as the
        cluster says it has; a partition silent for ``idle_after`` seconds holds no
        one back until it speaks again."""
        settings = RuleSettings()
        kernels.warm()  # compiled (or loaded from the cache) now, not in the first batch
        distinct_columns.warm()
        internal = InternalTopics.of(group)
        online: OnlineModel | None = None
        snapshots: ModelSnapshots | None = None
        if model:
            from services.detector.model import OnlineModel

            online = OnlineModel(fit_in_process=True)
            snapshots = ModelSnapshots(bootstrap, internal.model_snapshots, instance)
            snapshots.restore(online)
        counts = kafka.partition_counts(bootstrap, (transactions, internal.repartition))
        source = SourceStage(lambda: SourceRules(settings, rules, novelty=model), instance,
                             idle_after)
        target = TargetStage(lambda: TargetRules(settings, rules, novelty=model), instance,
                             threshold, online, upstream=counts[transactions] or None)
        feed = LabelFeed(bootstrap, labels_topic, instance) if model else None
        return cls(bootstrap, transactions, internal, source, target, settings, feed,
                   snapshots, counts[internal.repartition] or None, batch_size)

    def values(self) -> dict[str, float]:
        """The live settings this detector obeys besides the threshold, as they are."""
        values = self.settings.values()
        if self.target.model is not None:
            values.update(model_cutoff=self.target.cutoff, model_veto=self.target.veto)
        return values

    def apply(self, setting: str, value: float) -> None:
        """A setting changed on the control topic."""
        if setting == "threshold":
            self.target.set_threshold(value)
        elif setting == "model_cutoff":
            self.target.cutoff = value
        elif setting == "model_veto":
            self.target.veto = value
        elif hasattr(self.settings, setting):
            setattr(self.settings, setting, value)
            self.source.configure()
            self.target.configure()

    def remember(self, routed: Routed) -> None:
        """Keep a scored batch's figures for its labels; learn from those already here."""
        if self.target.model is not None and routed.features is not None:
            self._learn(self.join.remember(routed.features))

    def poll_labels(self) -> None:
        """Learn from the labels that came since the last call; never blocks."""
        if self.target.model is None or self.labels is None:
            return
        values = self.labels.poll()
        if values:
            self.take_labels(values)

    def take_labels(self, values: list[bytes | None]) -> None:
        """Labels (the topic's record values): grade and learn from those joined."""
        self._learn(self.join.labels(values))

    def _learn(self, examples: Examples) -> None:
        """Grade the verdicts of labelled transactions, then learn from them."""
        model, target = self.target.model, self.target
        if model is None or not len(examples):
            return
        if examples.hits is not None and examples.scores is not None:
            self.trust.grade(examples.labels, examples.hits, examples.scores,
                             target.cutoff, target.veto)
            target.model_decides = self.trust.trusted
            target.model_alone = self.trust.alone
        model.learn(examples.matrix, examples.labels)

    def save_model(self, producer: Producer, force: bool = False) -> None:
        """A snapshot of the model when it changed (``ModelSnapshots.save``)."""
        if self.target.model is not None and self.snapshots is not None:
            self.snapshots.save(self.target.model, producer, force)

    def counters(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.target.counters.as_dict(),
                               "dlq": self.target.counters.dlq + self.source.dead_letters,
                               "state_restored": self.restored,
                               "state_too_large": self.too_large,
                               # Past window_grace_s: judged without changing a window.
                               "late": sum(rules.late() for stage in (self.source, self.target)
                                           for rules in stage.state.partitions.values()),
                               "event_time": self.event_time()}
        if self.target.model is not None:
            out["model"] = {**self.target.model.status(), **self.trust.status()}
            if self.snapshots is not None:
                out["model"]["snapshots"] = self.snapshots.saved
                out["model"]["snapshot_failures"] = self.snapshots.failed
            out["labels"] = self.join.counters()
        return out

    def event_time(self) -> dict[str, Any]:
        """Where event time stands in the second stage, for the heartbeat: its lowest
        watermark over the partitions this instance owns, which source partition holds
        it there, which are idle, and how many records wait for the watermark."""
        lowest: int | None = None
        holder: int | None = None
        idle: set[int] = set()
        waiting = behind = forced = 0
        for merge in self.target.state.clocks.values():
            mark = merge.watermark()
            if mark is not None and (lowest is None or mark < lowest):
                lowest, holder = mark, merge.holding()
            idle |= merge.idle
            waiting += len(merge)
            behind += merge.behind
            forced += merge.forced
        return {"watermark": None if lowest == NEVER else lowest,
                "held_by": None if holder is None else f"{self.transactions}[{holder}]",
                "idle": [f"{self.transactions}[{p}]" for p in sorted(idle)],
                "waiting": waiting, "behind": behind, "forced": forced}

    def holds(self) -> dict[tuple[str, int], int]:
        """The repartition partitions' offsets that a commit may not pass: records from
        there on still wait for the watermark, and a restart must read them again."""
        out: dict[tuple[str, int], int] = {}
        for partition, merge in self.target.state.clocks.items():
            oldest = merge.oldest_position()
            if oldest is not None:
                out[(self.internal.repartition, partition)] = offset_of(oldest)
        return out

    def reload(self) -> None:
        """Processing went back to the last commit: state built since is stale, so every
        owned partition's state is read back from its changelog."""
        self.assign([TopicPartition(self.transactions, p) for p in self.source.state.owned()]
                    + [TopicPartition(self.internal.repartition, p)
                       for p in self.target.state.owned()])

    def close(self) -> None:
        if self.labels is not None:
            self.labels.close()
        if self.target.model is not None:
            self.target.model.close()

    def inputs(self) -> list[str]:
        return [self.transactions, self.internal.repartition]

    def _stage_of(self, topic: str) -> tuple[SourceStage | TargetStage, str] | None:
        if topic == self.transactions:
            return self.source, self.internal.source_changelog
        if topic == self.internal.repartition:
            return self.target, self.internal.target_changelog
        return None

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Restore the state of newly owned partitions from their changelogs."""
        for tp in partitions:
            owner = self._stage_of(tp.topic)
            if owner is None:
                continue
            stage, changelog = owner
            started = time.monotonic()
            records = kafka.read_partition(self.bootstrap, changelog, tp.partition)
            applied = stage.state.assign(tp.partition, records)
            self.restored += applied
            log.info("partition %s[%d]: state restored from %d changelog records in %.2f s",
                     tp.topic, tp.partition, applied, time.monotonic() - started)

    def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the state of partitions no longer owned (after their last commit)."""
        for tp in partitions:
            owner = self._stage_of(tp.topic)
            if owner is not None:
                owner[0].state.revoke(tp.partition)

    def process(self, records: list[Message], legit: str, fraud: str,
                dlq: str) -> list[Output]:
        """A batch through whichever stage each record belongs to: the outputs to
        produce (the second stage's figures kept for their labels meanwhile)."""
        repartition = self.internal.repartition
        topics = [record.topic() for record in records]  # each record's, asked once
        if topics.count(self.transactions) == len(records):  # the usual batch under load
            firsts, seconds = records, []
        else:
            firsts = list(compress(records, [t == self.transactions for t in topics]))
            seconds = list(compress(records, [t == repartition for t in topics]))
        outputs: list[Output] = []
        if firsts:
            if self.repartitions is None:  # one record a forward, keyed by its target
                forwards, dead = self.source.process(firsts)
                outputs.extend((repartition, key, value, headers, None)
                               for key, value, headers in forwards)
            else:  # a record a partition (``repartition``)
                framed, dead = self.source.process_framed(firsts, self.repartitions)
                outputs.extend((repartition, FRAME_KEY, value, None, partition)
                               for partition, value in framed)
            outputs.extend((dlq, key, value, headers, None) for key, value, headers in dead)
        outputs.extend(self.progress())
        # The second stage judges as many forwards at once as a batch of the input
        # holds, however many framed records came together; the model remembers each
        # run's figures for their labels, and learns, before the next run is scored.
        for run in by_rows(seconds, self.batch_size):
            routed = self.target.process(run)
            outputs.extend((legit, key, value, None, None) for key, value in routed.legit)
            outputs.extend((fraud, key, value, None, None) for key, value in routed.fraud)
            outputs.extend((dlq, key, value, headers, None)
                           for key, value, headers in routed.dlq)
            self.remember(routed)
        return outputs

    def progress(self) -> list[Output]:
        """The first stage's progress marker, to every repartition partition, when there
        is news (a partition got further, or went idle): the records of the marker's
        partitions that wait in the second stage may then go."""
        if self.repartitions is None:
            return []
        marker = self.source.progress()
        if marker is None:
            return []
        return [(self.internal.repartition, None, marker, None, partition)
                for partition in range(self.repartitions)]

    def state_too_large(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """A state change larger than the client may send (a target paid by tens of
        thousands within fan-in's window): left out of its changelog, said in the log
        and counted in the heartbeat, rather than stopping the detector at every commit.
        A restart then has the key's last state that fitted, or none."""
        self.too_large += 1
        log.error("state of %s is %d bytes, more than a record may hold: left out of %s; "
                  "a restart will not have it", (key or b"").decode(errors="replace"),
                  len(value or b""), topic)

    def changes(self) -> list[Output]:
        """The state changes since the last call, as changelog records."""
        out: list[Output] = []
        for stage, changelog in ((self.source, self.internal.source_changelog),
                                 (self.target, self.internal.target_changelog)):
            out.extend((changelog, key, value, None, partition)
                       for partition, key, value in stage.state.changes())
        return out


class LabelFeed:
    """Labels, from their topic's newest records on, for the model to learn from.

    Labels are keyed by transaction id and transactions by source, so a label seldom
    lands on a partition this instance reads: every instance reads every label partition
    and the join keeps those of the transactions it scored (the rest age out, counted).
    """

    def __init__(self, bootstrap: str, topic: str, instance: str) -> None:
        self._consumer: Consumer = kafka.consumer(bootstrap, f"{instance}-labels")
        metadata = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
        partitions = [] if metadata is None or metadata.error else list(metadata.partitions)
        self._consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in partitions])
        self.partitions = len(partitions)

    def poll(self, most: int = 10_000) -> list[bytes | None]:
        """What arrived since the last call; never blocks."""
        return [m.value() for m in self._consumer.consume(most, 0) if m.error() is None]

    def close(self) -> None:
        self._consumer.close()
