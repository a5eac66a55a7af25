"""Detection rules. Pure.

A rule looks at one decoded transaction, with what it remembers of earlier ones, and
says why it is suspicious, or nothing. Each stateful rule also yields the figure it
judged by (a count, a z-score), so a verdict can show it and a model can learn from it.

State is keyed so that it can live with the records that feed it: velocity and the
amount anomaly by source (the transactions topic's key, so one detector instance sees
all of a source's records); fan-in by target, which needs the records re-keyed by
target first when several instances share the work.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from services.detector.windows import KeyedEvents, SlidingWindow


@dataclass
class RuleSettings:
    """The stateful rules' parameters, shared by every partition's rules, so a change on
    the control topic (same names) applies everywhere at once."""

    velocity_count: int = 8
    velocity_window_s: float = 60.0
    fan_in_sources: int = 20
    fan_in_window_s: float = 3600.0
    anomaly_ratio: float = 5.0
    anomaly_z: float = 4.0

    def values(self) -> dict[str, float]:
        return dict(self.__dict__)


GRACE_MS = 10_000  # how late a record may be for the windows: a generous network delay


class Hit(NamedTuple):
    """A rule that fired, and why, in words for the verdict."""

    rule: str
    reason: str


@dataclass(frozen=True)
class AmountThreshold:
    """The classic rule: an amount at or above the threshold is fraud."""

    threshold: float = 900.0
    name: str = "amount_threshold"

    @property
    def reason(self) -> str:
        return f"amount >= {self.threshold:g}"

    def fires(self, tx: Any) -> bool:
        return tx.amount >= self.threshold


class Velocity:
    """At least ``velocity_count`` transactions from one source within a window of event
    time: card testing and bursts of spending look like this."""

    name = "velocity"

    def __init__(self, settings: RuleSettings | None = None) -> None:
        self.settings = settings or RuleSettings()
        self.events = KeyedEvents(self._window())

    def _window(self) -> SlidingWindow:
        return SlidingWindow(round(self.settings.velocity_window_s * 1000), GRACE_MS)

    def configure(self) -> None:
        """Take up changed settings; events already past a shortened window are kept
        until they age out, and a widened one cannot bring back what was dropped."""
        self.events.window = self._window()

    def evaluate(self, source: str, ts: int) -> tuple[int, Hit | None]:
        """``(transactions from source in the window, hit)``; 0 for a late record."""
        seen = self.events.add(source, ts)
        n = 0 if seen is None else len(seen)
        if n >= self.settings.velocity_count:
            seconds = self.events.window.length_ms / 1000
            return n, Hit(self.name, f"{n} transactions from the source within {seconds:g} s")
        return n, None


class FanIn:
    """At least ``fan_in_sources`` distinct accounts paying one target within a window of
    event time: money mules collecting look like this."""

    name = "fan_in"

    def __init__(self, settings: RuleSettings | None = None) -> None:
        self.settings = settings or RuleSettings()
        self.events = KeyedEvents(self._window())

    def _window(self) -> SlidingWindow:
        return SlidingWindow(round(self.settings.fan_in_window_s * 1000), GRACE_MS)

    def configure(self) -> None:
        self.events.window = self._window()

    def evaluate(self, target: str, source: str, ts: int) -> tuple[int, Hit | None]:
        """``(distinct sources paying target in the window, hit)``; 0 for a late record."""
        seen = self.events.add(target, ts, source)
        n = 0 if seen is None else len(set(seen))
        if n >= self.settings.fan_in_sources:
            minutes = self.events.window.length_ms / 60_000
            return n, Hit(self.name, f"{n} distinct sources paid the target within "
                                     f"{minutes:g} min")
        return n, None


@dataclass
class _History:
    """An account's amounts so far, summarised (Welford's running mean and variance)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, amount: float) -> None:
        self.count += 1
        delta = amount - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (amount - self.mean)

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 0.0


class AmountAnomaly:
    """An amount far above what the source usually spends: at least ``anomaly_ratio``
    times its mean and ``anomaly_z`` standard deviations above it, once it has
    ``history`` transactions. A takeover's first large transfer looks like this.

    The account's own transaction is judged against its history before it joins it.
    Accounts are forgotten oldest first beyond ``max_accounts``, which bounds memory.
    """

    name = "amount_anomaly"

    def __init__(self, settings: RuleSettings | None = None, history: int = 5,
                 max_accounts: int = 200_000) -> None:
        self.settings = settings or RuleSettings()
        self.history = history
        self.max_accounts = max_accounts
        self._accounts: dict[str, _History] = {}
        self._changed: set[str] = set()

    def evaluate(self, source: str, amount: float) -> tuple[float, Hit | None]:
        """``(z-score of amount against the source's history, hit)``; 0 without one."""
        account = self._accounts.get(source)
        if account is None:
            if len(self._accounts) >= self.max_accounts:
                oldest = next(iter(self._accounts))
                del self._accounts[oldest]
                self._changed.add(oldest)
            account = self._accounts[source] = _History()
        hit = None
        score = 0.0
        if account.count >= self.history:
            # A floor under the spread: an account that always spends the same amount
            # would otherwise make any other amount infinitely unusual.
            spread = max(account.std, 0.05 * account.mean, 0.01)
            score = (amount - account.mean) / spread
            settings = self.settings
            if score >= settings.anomaly_z and amount >= settings.anomaly_ratio * account.mean:
                hit = Hit(self.name, f"amount {amount:g} is {amount / account.mean:.1f}x "
                                     f"the account's mean of {account.mean:.2f}")
        account.add(amount)
        self._changed.add(source)
        return score, hit

    def changes(self) -> Iterator[tuple[str, Any]]:
        """``(account, [count, mean, m2])`` of every account changed since the last call,
        ``None`` for one forgotten. JSON-ready."""
        for source in self._changed:
            account = self._accounts.get(source)
            yield source, None if account is None else [account.count, account.mean,
                                                         account.m2]
        self._changed.clear()

    def restore(self, source: str, state: Any) -> None:
        if state is None:
            self._accounts.pop(source, None)
        else:
            self._accounts[source] = _History(*state)


class _Payees:
    """What a source's novelty rests on: its recent counterparties, most recent last (a
    dict as an ordered set), and its rate of new ones, decayed, as of event time ``at``."""

    __slots__ = ("at", "new_rate", "recent")

    def __init__(self) -> None:
        self.recent: dict[str, None] = {}
        self.new_rate = 0.0
        self.at = 0


class CounterpartyNovelty:
    """Whether a source pays a target it has not paid recently, and how many new
    payees it has paid lately: a takeover's first transfer goes to a new payee, card
    testing and velocity bursts go to one new payee after another; everyday payments
    mostly go to a few usual counterparties, and a new one now and then.

    Not a rule (a new payee alone is ordinary), figures for the model. "Lately" is a
    count of new payees that decays by half every ``half_life_ms`` of event time, so it
    needs no window of events. Memory is bounded twice: each source remembers its
    ``memory`` most recent counterparties, and sources are forgotten oldest first
    beyond ``max_accounts``. A source it has never seen, or forgotten, pays only new
    counterparties.
    """

    name = "novelty"

    def __init__(self, memory: int = 16, half_life_ms: int = 120_000,
                 max_accounts: int = 200_000) -> None:
        if memory < 1 or max_accounts < 1 or half_life_ms <= 0:
            raise ValueError(f"invalid novelty memory: {memory} per source, half-life "
                             f"{half_life_ms} ms, {max_accounts} sources")
        self.memory = memory
        self.half_life_ms = half_life_ms
        self.max_accounts = max_accounts
        self._sources: dict[str, _Payees] = {}
        self._changed: set[str] = set()

    def __len__(self) -> int:
        """How many sources it remembers."""
        return len(self._sources)

    def evaluate(self, source: str, target: str, ts: int) -> tuple[float, float]:
        """``(novel, new payees lately)``: novel is 1.0 if ``target`` is not among
        ``source``'s recent counterparties, else 0.0; new payees lately counts this one.
        Either way, ``target`` becomes the source's most recent counterparty."""
        payees = self._sources.get(source)
        if payees is None:
            if len(self._sources) >= self.max_accounts:
                oldest = next(iter(self._sources))
                del self._sources[oldest]
                self._changed.add(oldest)
            payees = self._sources[source] = _Payees()
            payees.at = ts
        recent = payees.recent
        if target in recent:
            del recent[target]  # to move it to the end
            novel = 0.0
        else:
            novel = 1.0
            if len(recent) >= self.memory:
                del recent[next(iter(recent))]
        recent[target] = None
        if ts > payees.at:  # a record out of order counts at the newest time seen
            payees.new_rate *= 0.5 ** ((ts - payees.at) / self.half_life_ms)
            payees.at = ts
        payees.new_rate += novel
        self._changed.add(source)
        return novel, payees.new_rate

    def changes(self) -> Iterator[tuple[str, Any]]:
        """``(source, [recent payees, new rate, at])`` of every source changed since the
        last call, ``None`` for one forgotten. JSON-ready."""
        for source in self._changed:
            payees = self._sources.get(source)
            yield source, None if payees is None else [list(payees.recent),
                                                        payees.new_rate, payees.at]
        self._changed.clear()

    def restore(self, source: str, state: Any) -> None:
        if state is None:
            self._sources.pop(source, None)
            return
        payees = self._sources[source] = _Payees()
        payees.recent = dict.fromkeys(state[0])
        payees.new_rate, payees.at = state[1], state[2]


RULE_NAMES = ("velocity", "fan_in", "amount_anomaly")
SOURCE_RULES = ("velocity", "amount_anomaly")  # state keyed by the paying account
TARGET_RULES = ("fan_in",)  # state keyed by the account paid


class _RuleSet:
    """Rules that share a key, with their state as one changelog of ``"rule/key"`` keys."""

    def __init__(self, stores: dict[str, Any]) -> None:
        self.stores = stores

    def changes(self) -> Iterator[tuple[str, Any]]:
        for name, store in self.stores.items():
            for key, state in store.changes():
                yield f"{name}/{key}", state

    def restore(self, key: str, state: Any) -> None:
        name, _, inner = key.partition("/")
        store = self.stores.get(name)
        if store is not None:  # a rule no longer run leaves its old state behind
            store.restore(inner, state)


class SourceRules(_RuleSet):
    """Velocity, the amount anomaly and, for a model, counterparty novelty: what one
    source did, where its records are."""

    def __init__(self, settings: RuleSettings | None = None,
                 names: tuple[str, ...] = SOURCE_RULES, novelty: bool = False) -> None:
        settings = settings or RuleSettings()
        self.velocity = Velocity(settings) if "velocity" in names else None
        self.anomaly = AmountAnomaly(settings) if "amount_anomaly" in names else None
        self.novelty = CounterpartyNovelty() if novelty else None
        stores: dict[str, Any] = {}
        if self.velocity is not None:
            stores[self.velocity.name] = self.velocity.events
        if self.anomaly is not None:
            stores[self.anomaly.name] = self.anomaly
        if self.novelty is not None:
            stores[self.novelty.name] = self.novelty
        super().__init__(stores)

    def configure(self) -> None:
        if self.velocity is not None:
            self.velocity.configure()

    def evaluate(self, source: str, target: str, amount: float, ts: int,
                 hits: list[Hit], features: dict[str, float]) -> None:
        """Adds this transaction's hits and features to ``hits`` and ``features``."""
        if self.velocity is not None:
            features["velocity"], hit = self.velocity.evaluate(source, ts)
            if hit:
                hits.append(hit)
        if self.anomaly is not None:
            z, hit = self.anomaly.evaluate(source, amount)
            features["amount_z"] = round(z, 2)
            if hit:
                hits.append(hit)
        if self.novelty is not None:
            novel, lately = self.novelty.evaluate(source, target, ts)
            features["novelty"] = novel
            features["new_payees"] = round(lately, 2)


class TargetRules(_RuleSet):
    """Fan-in: who paid one target, where the target's records are."""

    def __init__(self, settings: RuleSettings | None = None,
                 names: tuple[str, ...] = TARGET_RULES) -> None:
        self.fan_in = FanIn(settings) if "fan_in" in names else None
        super().__init__({} if self.fan_in is None else {self.fan_in.name: self.fan_in.events})

    def configure(self) -> None:
        if self.fan_in is not None:
            self.fan_in.configure()

    def evaluate(self, target: str, source: str, ts: int,
                 hits: list[Hit], features: dict[str, float]) -> None:
        if self.fan_in is not None:
            features["fan_in"], hit = self.fan_in.evaluate(target, source, ts)
            if hit:
                hits.append(hit)


class StatefulRules:
    """Every rule beyond the threshold in one process: for a single detector, tests and
    benchmarks. Several instances split them by key instead (``stages``)."""

    def __init__(self, settings: RuleSettings | None = None,
                 names: tuple[str, ...] = RULE_NAMES, novelty: bool = False) -> None:
        unknown = set(names) - set(RULE_NAMES)
        if unknown:
            raise ValueError(f"unknown rules: {', '.join(sorted(unknown))}")
        self.names = names
        self.settings = settings or RuleSettings()
        self.by_source = SourceRules(self.settings, names, novelty)
        self.by_target = TargetRules(self.settings, names)

    def configure(self) -> None:
        self.by_source.configure()
        self.by_target.configure()

    def evaluate(self, source: str, target: str, amount: float,
                 ts: int) -> tuple[list[Hit], dict[str, float]]:
        hits: list[Hit] = []
        features: dict[str, float] = {}
        self.by_source.evaluate(source, target, amount, ts, hits, features)
        self.by_target.evaluate(target, source, ts, hits, features)
        return hits, features
