"""What the console knows, as immutable snapshots, built from batches of records. Pure.

The feed worker hands an ``Aggregator`` counts and a few raw records per batch; a few
times a second it takes a ``Snapshot``, which is all the UI ever sees. Time comes from
an injected clock, so tests and screenshots are deterministic.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice, repeat
from typing import Any

import orjson

from services.config import Topics
from services.control import parse_status
from services.evaluator import report
from services.evaluator.report import Quality
from tui.recent import RecentRecords, Seen
from tui.record_filter import RecordFilter

HISTORY_SECONDS = 300  # sparklines cover the last five minutes
ROWS = 40  # rows kept per feed pane
# Records kept per output topic, undecoded, for an account's recent transactions in
# the drill-down (and the rows a new filter starts with); labels kept likewise.
RECENT = 10_000
LABELS_KEPT = 100_000
DOWN_AFTER = 5.0  # a service silent this long is shown as down
LATENCY_WINDOW = 10  # seconds the latency percentiles cover
# Sorting the window's samples (20,000 at 50,000/s) takes milliseconds: a snapshot taken
# for a key press reuses percentiles this young.
LATENCY_EVERY = 0.2
STREAMS = ("in", "legit", "fraud")


@dataclass(frozen=True)
class Row:
    """One transaction as a feed pane shows it."""

    ts: int
    source: str
    target: str
    amount: float
    currency: str
    reasons: str = ""
    # Where the verdict was read and when: for the drill-down.
    topic: str = ""
    partition: int = -1
    offset: int = -1
    arrived_ms: int = 0
    raw: bytes = field(default=b"", repr=False)
    id: str = ""

    @property
    def latency_ms(self) -> int | None:
        """From the transaction's event time to this console reading its verdict."""
        return self.arrived_ms - self.ts if self.arrived_ms and self.ts else None

    def detail(self) -> dict[str, Any]:
        """The whole record, decoded (only for the one row a person opens)."""
        try:
            body = orjson.loads(self.raw)
        except orjson.JSONDecodeError:
            return {}
        return body if isinstance(body, dict) else {}


@dataclass(frozen=True)
class TxLabel:
    """The ground truth for one transaction, as the generator labelled it."""

    fraud: bool
    scenario: str | None


@dataclass(frozen=True)
class ServiceHealth:
    service: str
    instance: str
    age: float  # seconds since the last heartbeat
    settings: Mapping[str, Any]
    counters: Mapping[str, Any]

    @property
    def up(self) -> bool:
        return self.age <= DOWN_AFTER


@dataclass(frozen=True)
class Request:
    """A command this console sent, and what became of it."""

    setting: str
    value: Any
    id: str
    state: str = "pending"  # pending, applied, refused
    reason: str = ""


@dataclass(frozen=True)
class Snapshot:
    now: float  # wall clock, seconds since epoch
    connected: bool = True
    outage_since: float | None = None
    bootstrap: str = ""
    legit_rows: tuple[Row, ...] = ()
    fraud_rows: tuple[Row, ...] = ()
    history: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    rates: Mapping[str, float] = field(default_factory=dict)
    totals: Mapping[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    lag: int | None = None
    latency_p50: float | None = None
    latency_p99: float | None = None
    services: tuple[ServiceHealth, ...] = ()
    requests: Mapping[str, Request] = field(default_factory=dict)
    events: tuple[str, ...] = ()
    # The newest quality message of an evaluator, and how old it is in seconds; None
    # when no evaluator was heard from (the console works without one).
    quality: Quality | None = None
    quality_age: float | None = None
    # The filter the feeds show, and per feed what matched of what arrived since it
    # was applied.
    filter: RecordFilter | None = None
    matched: Mapping[str, int] = field(default_factory=dict)
    arrived: Mapping[str, int] = field(default_factory=dict)

    @property
    def fraud_ratio(self) -> float | None:
        seen = self.totals.get("legit", 0) + self.totals.get("fraud", 0)
        return self.totals.get("fraud", 0) / seen if seen else None

    def applied(self, setting: str) -> Any:
        """The value in force as the owning service reports it (None when unknown)."""
        for health in self.services:
            if health.up and setting in health.settings:
                return health.settings[setting]
        return None


def shown(value: Any) -> str:
    """A setting's value as a person reads it: 950, not 950.0; 2,500.5; paused."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return str(value)


def row_of(raw: bytes | None, topic: str = "", partition: int = -1, offset: int = -1,
           arrived_ms: int = 0) -> Row | None:
    """The row for one output record; None for what cannot be shown."""
    try:
        tx = orjson.loads(raw) if raw is not None else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(tx, dict):
        return None
    rules = (tx.get("detection") or {}).get("rules") or []
    reasons = ", ".join(str(r.get("reason", r.get("rule", ""))) for r in rules
                        if isinstance(r, dict))
    try:
        return Row(int(tx.get("ts") or 0), str(tx.get("source", "?")),
                   str(tx.get("target", "?")), float(tx.get("amount", 0.0)),
                   str(tx.get("currency", "")), reasons, topic, partition, offset,
                   arrived_ms, raw or b"", str(tx.get("id", "")))
    except (TypeError, ValueError):
        return None


class Aggregator:
    """Counts, rates, latencies and service status from what the feed consumed."""

    def __init__(self, clock: Callable[[], float], bootstrap: str = "",
                 topics: Topics | None = None) -> None:
        self.clock = clock
        self.bootstrap = bootstrap
        topics = topics or Topics()
        self.topic_names = {"legit": topics.legit, "fraud": topics.fraud}
        self.reset()
        self._services: dict[str, dict[str, Any]] = {}
        self._requests: dict[str, Request] = {}
        self._events: deque[str] = deque(maxlen=6)
        self.connected = True
        self.outage_since: float | None = None
        self.lag: int | None = None
        self._in_total: int | None = None  # last high-watermark sum of the input topic
        self._quality: Quality | None = None
        self._quality_seen = 0.0
        self._labels: deque[bytes] = deque(maxlen=LABELS_KEPT)

    def reset(self) -> None:
        """Forget counters and history (the reset key); service status is kept."""
        start = int(self.clock())
        self._buckets: dict[str, deque[int]] = {
            s: deque([0] * HISTORY_SECONDS, maxlen=HISTORY_SECONDS) for s in STREAMS}
        self._bucket_second = start
        self._totals = dict.fromkeys(STREAMS, 0)
        self._dead = 0
        self._recent = {s: RecentRecords(RECENT) for s in ("legit", "fraud")}
        self.set_filter(getattr(self, "filter", None))
        # Latencies in ms of sampled records, and the second of each: percentiles
        # cover the last LATENCY_WINDOW seconds, so a start-up backlog does not haunt
        # them for long. Two flat columns: sorting floats runs in C.
        self._latencies: deque[float] = deque(maxlen=20_000)
        self._latency_seconds: deque[int] = deque(maxlen=20_000)
        self._percentiles: tuple[float | None, float | None] = (None, None)
        self._percentiles_at: float | None = None

    # -- input from the feed worker ---------------------------------------------

    def _advance(self) -> None:
        second = int(self.clock())
        gap = min(second - self._bucket_second, HISTORY_SECONDS)
        if gap > 0:
            for bucket in self._buckets.values():
                bucket.extend([0] * gap)
            self._bucket_second = second

    def add_output(self, stream: str, values: Sequence[bytes | None],
                   partitions: Sequence[int] | None = None,
                   offsets: Sequence[int] | None = None) -> None:
        """Records from the legit or fraud topic, counted without decoding (unless a
        filter must judge them); ``partitions`` and ``offsets`` say where each was read."""
        self._advance()
        self._buckets[stream][-1] += len(values)
        self._totals[stream] += len(values)
        arrived = int(self.clock() * 1000)
        if partitions is None or offsets is None:
            partitions = offsets = [-1] * len(values)
        self._recent[stream].add(values, partitions, offsets, arrived)
        shown = self._shown[stream]
        if self.filter is not None and shown is not None:
            self._arrived[stream] += len(values)
            matches = self.filter.matches
            found = [i for i, value in enumerate(values) if matches(value)]
            self._matched[stream] += len(found)
            shown.extend(Seen(value, partitions[i], offsets[i], arrived)
                         for i in found[-ROWS:] if (value := values[i]) is not None)

    def set_filter(self, record_filter: RecordFilter | None) -> None:
        """Show and count only what ``record_filter`` matches (None: everything). It
        starts from the recent records kept: the panes show the newest that match, and
        the counts begin with how many of those match."""
        self.filter = record_filter
        self._matched = {"legit": 0, "fraud": 0}
        self._arrived = {"legit": 0, "fraud": 0}
        # Oldest first, as they arrived, per feed; None: the feed shows its newest.
        self._shown: dict[str, deque[Seen] | None] = {}
        for stream, recent in self._recent.items():
            if record_filter is None:
                self._shown[stream] = None
                continue
            matches = record_filter.matches
            found = [seen for seen in recent.newest() if matches(seen.value)]
            self._matched[stream], self._arrived[stream] = len(found), len(recent)
            self._shown[stream] = deque(reversed(found[:ROWS]), maxlen=ROWS)

    def add_labels(self, values: Iterable[bytes | None]) -> None:
        """Records of the labels topic, kept undecoded for the drill-down."""
        self._labels.extend(v for v in values if v is not None)

    def recent(self) -> dict[str, RecentRecords]:
        """Copies of the records kept, by topic, to be searched away from the feed's
        lock (flat copies: a fraction of a millisecond)."""
        return {self.topic_names[s]: r.copy() for s, r in self._recent.items()}

    def labels(self) -> tuple[bytes, ...]:
        """A copy of the labels kept, likewise."""
        return tuple(self._labels)

    def add_dead_letters(self, count: int) -> None:
        self._dead += count

    def add_input_watermark(self, total: int) -> None:
        """The input topic's end offsets, summed: their growth is the input rate."""
        self._advance()
        if self._in_total is not None and total > self._in_total:
            grown = total - self._in_total
            self._buckets["in"][-1] += grown
            self._totals["in"] += grown
        self._in_total = total

    def add_latencies(self, samples_ms: Iterable[float]) -> None:
        second = int(self.clock())
        samples = list(samples_ms)
        self._latencies.extend(samples)
        self._latency_seconds.extend(repeat(second, len(samples)))

    def add_status(self, values: Iterable[bytes | None]) -> None:
        now = self.clock()
        for raw in values:
            quality = report.parse(raw)
            if quality is not None:
                # Several evaluators say the same; the newest word counts.
                if self._quality is None or quality.ts >= self._quality.ts:
                    self._quality, self._quality_seen = quality, now
                continue
            status = parse_status(raw)
            if status is None:
                continue
            if status["kind"] == "heartbeat":
                self._services[status["instance"]] = {**status, "seen": now}
            else:
                self._answer(status)

    def _answer(self, ack: Mapping[str, Any]) -> None:
        ref = ack.get("ref") or {}
        known = self._services.get(str(ack.get("instance")))
        if ack.get("applied") and ack.get("setting") and known is not None:
            # As true as a heartbeat, and earlier: without it a second key press would
            # step from the value before the first.
            known["settings"] = {**(known.get("settings") or {}),
                                 ack["setting"]: ack.get("value")}
        mine: Request | None = None
        for setting, request in self._requests.items():
            if request.id and request.id == ref.get("id"):
                mine = request
                if ack.get("applied"):
                    self._requests[setting] = Request(setting, request.value, request.id,
                                                      "applied")
                else:
                    self._requests[setting] = Request(setting, request.value, request.id,
                                                      "refused", str(ack.get("reason", "")))
        if not ack.get("applied"):
            # A command refused before it was read (a bad signature, say) is named by
            # its id alone: this console's own request says what it was.
            what = f"{ack.get('setting')} = {shown(ack.get('value'))}" if ack.get("setting") else (
                f"{mine.setting} = {shown(mine.value)}" if mine is not None else
                f"command at offset {ref.get('offset')}")
            self.event(f"{ack['service']} refused {what}: {ack.get('reason', '?')}")
        elif ack.get("setting"):
            self.event(f"{ack['service']} applied {ack['setting']} = {shown(ack.get('value'))}")

    def requested(self, setting: str, value: Any, command_id: str) -> None:
        self._requests[setting] = Request(setting, value, command_id)

    def refused_locally(self, setting: str, value: Any, reason: str) -> None:
        self._requests[setting] = Request(setting, value, "", "refused", reason)
        self.event(f"not sent {setting} = {shown(value)}: {reason}")

    def event(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(self.clock()))
        self._events.append(f"{stamp}  {text}")

    def set_connected(self, connected: bool) -> None:
        if connected:
            self.outage_since = None
        elif self.connected:
            self.outage_since = self.clock()
        self.connected = connected

    # -- output to the UI ---------------------------------------------------------

    def _latency_percentiles(self, now: float) -> tuple[float | None, float | None]:
        if self._percentiles_at is None or not 0 <= now - self._percentiles_at < LATENCY_EVERY:
            since = int(now) - LATENCY_WINDOW
            seconds = self._latency_seconds
            while seconds and seconds[0] < since:
                seconds.popleft()
                self._latencies.popleft()
            latencies = sorted(self._latencies)
            self._percentiles = (_percentile(latencies, 0.50), _percentile(latencies, 0.99))
            self._percentiles_at = now
        return self._percentiles

    def _rows(self, stream: str) -> tuple[Row, ...]:
        shown = self._shown[stream]
        newest = (self._recent[stream].newest(ROWS) if shown is None
                  else islice(reversed(shown), ROWS))
        return _decoded(self.topic_names[stream], newest)

    def snapshot(self) -> Snapshot:
        self._advance()
        now = self.clock()
        # The current second is still filling: rates come from the last full seconds.
        history = {s: tuple(map(float, islice(b, HISTORY_SECONDS - 1)))
                   for s, b in self._buckets.items()}
        rates = {s: sum(h[-3:]) / 3 for s, h in history.items()}
        latency_p50, latency_p99 = self._latency_percentiles(now)
        return Snapshot(
            now=now,
            connected=self.connected,
            outage_since=self.outage_since,
            bootstrap=self.bootstrap,
            legit_rows=self._rows("legit"),
            fraud_rows=self._rows("fraud"),
            history=history,
            rates=rates,
            totals=dict(self._totals),
            dead_letters=self._dead,
            lag=self.lag,
            latency_p50=latency_p50,
            latency_p99=latency_p99,
            services=tuple(
                ServiceHealth(s["service"], instance, max(0.0, now - s["seen"]),
                              s.get("settings") or {}, s.get("counters") or {})
                for instance, s in sorted(self._services.items(),
                                          key=lambda kv: (kv[1]["service"], kv[0]))),
            requests=dict(self._requests),
            events=tuple(self._events),
            quality=self._quality,
            quality_age=(max(0.0, now - self._quality_seen)
                         if self._quality is not None else None),
            filter=self.filter,
            matched=dict(self._matched),
            arrived=dict(self._arrived),
        )


def _decoded(topic: str, newest_first: Iterable[Seen]) -> tuple[Row, ...]:
    """Newest first (by event time: partitions arrive interleaved); only these few
    records are ever decoded."""
    rows = [row for seen in newest_first
            if (row := row_of(seen.value, topic, seen.partition, seen.offset,
                              seen.arrived_ms)) is not None]
    return tuple(sorted(rows, key=lambda row: row.ts, reverse=True))


def account_history(account: str, recent: Mapping[str, RecentRecords],
                    limit: int = 50) -> tuple[Row, ...]:
    """``account``'s transactions among the records kept (by topic), as source or as
    target, newest first. Records are decoded only when their bytes name the account."""
    needle = account.encode()
    rows = []
    for topic, kept in recent.items():
        for seen in kept.newest():
            if needle in seen.value:
                row = row_of(seen.value, topic, seen.partition, seen.offset, seen.arrived_ms)
                if row is not None and account in (row.source, row.target):
                    rows.append(row)
    rows.sort(key=lambda row: (row.ts, row.offset), reverse=True)
    return tuple(rows[:limit])


def label_of(tx_id: str, labels: Sequence[bytes]) -> TxLabel | None:
    """The newest label kept for ``tx_id``, or None when none has come (yet)."""
    needle = orjson.dumps(tx_id)
    for raw in reversed(labels):
        if needle in raw:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(body, dict) and body.get("id") == tx_id:
                scenario = body.get("scenario")
                return TxLabel(bool(body.get("fraud")),
                               str(scenario) if scenario else None)
    return None


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]
