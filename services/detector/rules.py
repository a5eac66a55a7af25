"""Detection rules. Pure.

A rule looks at one decoded transaction, with what it remembers of earlier ones, and
says why it is suspicious, or nothing. Each stateful rule also yields the figure it
judged by (a count, a z-score), so a verdict can show it and a model can learn from it.

State is keyed so that it can live with the records that feed it: velocity, card
testing and the amount anomaly by source (the transactions topic's key, so one
detector instance sees all of a source's records); fan-in by target, which needs the
records re-keyed by target first when several instances share the work. Fan-in reads
what the first stage found of the payer (new to the detector? paying far above its
habit?) from the figures forwarded with the record.
"""

from __future__ import annotations

import math
from bisect import bisect_right, insort
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import itemgetter
from sys import intern
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np
from scipy.special import betainc

from services.detector.store import ChangeTracking, decode_state, encode_state, forget_oldest
from services.detector.windows import KeyedEvents, KeyedTimes, SlidingWindow

if TYPE_CHECKING:  # the columns load numba: only a detector with stateful rules needs it
    from services.detector.columns import MixColumns, Slots
    from services.detector.distinct_columns import DistinctColumns, PayerTable


def rounded(values: np.ndarray, digits: int) -> list[float]:
    """``[round(value, digits) for value in values]``, twenty times faster
    (``rounded_array``)."""
    result: list[float] = rounded_array(values, digits).tolist()
    return result


def rounded_array(values: np.ndarray, digits: int) -> np.ndarray:
    """``round(value, digits)`` of each value, as an array of the same doubles. Scaling,
    rounding half to even and scaling back gives Python's correctly rounded answer,
    except where the scaled value lands within a hair of a half (the scaling itself
    rounded) or is too big to have a fraction: those few are Python's own."""
    scale = 10.0 ** digits
    # Infinities and NaN: numpy's answer is Python's; a value too big to scale is doubtful.
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = values * scale
        out = np.rint(scaled) / scale
        doubtful = (np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6) | \
            (np.abs(scaled) >= 2.0 ** 52)
    if doubtful.any():
        for i in np.flatnonzero(doubtful).tolist():
            out[i] = round(float(values[i]), digits)
    return out


@dataclass
class RuleSettings:
    """The stateful rules' parameters, shared by every partition's rules, so a change on
    the control topic (same names) applies everywhere at once."""

    velocity_count: int = 8
    velocity_window_s: float = 60.0
    velocity_ratio: float = 4.0
    fan_in_sources: int = 20
    fan_in_window_s: float = 3600.0
    # A burst's payments are held back from the source's habit (its pace) for up to
    # this long: a burst never becomes its own baseline, a pace kept up for longer
    # than any burst is the account's new habit.
    velocity_hold_s: float = 2700.0
    # A source's count in the window must also be beyond chance at its own pace, as
    # its past and the stream's traffic tell it: below this probability.
    velocity_alpha: float = 0.001
    # An account first seen less than this long ago, by a detector that had watched its
    # partition at least this long before, is new (figure ``new_account``).
    new_account_s: float = 3600.0
    # Card testing: at least ``card_test_payees`` distinct payees paid at most
    # ``card_test_amount`` each by one source within ``card_test_window_s`` ...
    card_test_amount: float = 10.0
    card_test_payees: int = 8
    card_test_window_s: float = 1800.0
    # ... and those payees at least this share of its tiny payments in the window: a
    # card is tested on a new payee each time, a customer's small payments go back to
    # the same few.
    card_test_distinct_share: float = 0.75
    # Fan-in counts the payers that look like a mule's: new to the detector, or paying
    # at least ``fan_in_payer_ratio`` times their mean amount; they must make at least
    # ``fan_in_mule_share`` of the target's payers (a merchant paid by hundreds an hour
    # is paid by a few new accounts too).
    fan_in_payer_ratio: float = 5.0
    fan_in_mule_share: float = 0.5
    # Fan-in of new accounts, gathered slowly: at least ``fan_in_new_payers`` distinct
    # new accounts paying one target within ``fan_in_new_window_s``, making at least
    # ``fan_in_mule_share`` of what the target was paid lately.
    fan_in_new_payers: int = 5
    fan_in_new_window_s: float = 21_600.0
    anomaly_ratio: float = 5.0
    anomaly_z: float = 4.0
    anomaly_history: int = 5
    # How late a record may be for the windows: a generous network delay. A record
    # later than that is judged without changing any window (and counted as late).
    window_grace_s: float = 10.0

    def values(self) -> dict[str, float]:
        return dict(self.__dict__)

    @property
    def grace_ms(self) -> int:
        return round(self.window_grace_s * 1000)

NO_GAP_S = 86_400.0  # the time since the previous payment of a source with none: a day
LN2 = math.log(2)


class Hit(NamedTuple):
    """A rule that fired, and why, in words for the verdict."""

    rule: str
    reason: str


class Judged(NamedTuple):
    """A batch's verdicts from the rules, in columns: each figure's values, one a
    record, in the order a verdict lists them, and the hits of the records where a rule
    fired (by their place in the batch; a record no rule fired on has no entry). No
    object a record: the model's matrix and the verdicts' bytes are made from columns."""

    figures: dict[str, np.ndarray]
    hits: dict[int, list[Hit]]

    def records(self, count: int) -> list[tuple[list[Hit], dict[str, float]]]:
        """Each record's hits and figures, as ``evaluate`` gives them: for what reads
        or forwards them a record at a time."""
        figures = self.figures
        if tuple(figures)[:len(_SOURCE_FIGURES)] == _SOURCE_FIGURES:
            # Every rule about sources on, the detector's case: a dict display a record.
            rows = [{"velocity": count, "velocity_usual": usual, "gap_s": gap,
                     "new_account": new, "amount_z": z, "amount_log_z": log_z,
                     "amount_ratio": ratio, "history": history, "tiny_payees": tiny}
                    for count, usual, gap, new, z, log_z, ratio, history, tiny in zip(
                        *(figures[name].tolist() for name in _SOURCE_FIGURES), strict=True)]
            names: Iterable[str] = tuple(figures)[len(_SOURCE_FIGURES):]
        else:
            rows = [{} for _ in range(count)]
            names = figures
        for name in names:
            for row, value in zip(rows, figures[name].tolist(), strict=True):
                row[name] = value
        hits: list[list[Hit]] = [[] for _ in range(count)]
        for i, found in self.hits.items():
            hits[i] = found
        return list(zip(hits, rows, strict=True))


def _hit_at(hits: dict[int, list[Hit]], at: int, hit: Hit) -> None:
    """Add ``hit`` to the hits of the batch's ``at``-th record, after those before."""
    found = hits.get(at)
    if found is None:
        hits[at] = [hit]
    else:
        found.append(hit)


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


class _Pace:
    """One source's payments counted with exponential decay, since it was first seen,
    and the stream's count, decayed alike, when it was (``base``): what the stream paid
    over the source's own past follows from it. None in the state of older detectors."""

    __slots__ = ("at", "base", "burst_since", "count", "first", "held")

    def __init__(self, ts: int, base: float | None) -> None:
        self.first = self.at = ts
        self.count = 0.0
        self.base = base
        # Since when the source's payments have been flagged as a burst (None: not in
        # one), and those payments, decayed as ``count`` is, held back from it.
        self.burst_since: int | None = None
        self.held = 0.0


# Payments assumed at the stream's long-run rate when comparing its recent rate with
# it: a stream of a few payments a minute cannot tell a change of rate from chance.
PRIOR_PAYMENTS = 20.0
# Past assumed without a payment when a new account's habit is judged: a rate over a
# few minutes of past is half believed at this much, so a new account's first minutes
# (a burst's own, most often) never make a pace it is then judged by.
PRIOR_PAST_MS = 15 * 60_000


class _Traffic:
    """All sources' payments together, counted with decay over a long half-life (the
    sources' own) and a short one: how busy the stream is lately against the past the
    sources' paces come from. And its payments per second of event time over the
    velocity window, ``[second, payments]`` oldest first, with their sum (``window``),
    all of them since ``counted_from``."""

    __slots__ = ("at", "counted_from", "first", "long", "seconds", "short", "window")

    def __init__(self, ts: int) -> None:
        self.first = self.at = self.counted_from = ts
        self.long = self.short = 0.0
        self.seconds: deque[list[int]] = deque()
        self.window = 0

    def whole(self, window_ms: int) -> bool:
        """Whether ``window`` holds every payment of the last ``window_ms``: counted for
        that long, or since the stream's first payment (a stream younger than a window
        has all of its payments in it). Counting starts over only where restored state
        is older than the seconds."""
        return self.counted_from == self.first or self.at - self.counted_from >= window_ms

    def add(self, window_ms: int) -> None:
        """A payment, in the newest second seen (a late one too), the seconds beyond
        the window dropped."""
        second, seconds = self.at // 1000, self.seconds
        if seconds and seconds[-1][0] == second:
            seconds[-1][1] += 1
        else:
            seconds.append([second, 1])
        self.window += 1
        oldest = (self.at - window_ms) // 1000
        while seconds[0][0] <= oldest:
            self.window -= seconds.popleft()[1]


class AccountPace(ChangeTracking):
    """How often each source pays, by its own past: an exponentially weighted rate over
    event time (half-life ``half_life_ms``), so a busy account's minute is judged by
    its own habit, and the same rule means the same at 100 and at 10,000 transactions
    per second (at a higher rate each account pays more often per minute of event time).

    The stream's own rate can change faster than an hour of habit follows: raised
    tenfold, it would make every account pay ten times its pace at once. So a source's
    habit is its share of the traffic, not its count: what it paid before the window
    against what the whole stream paid over the same past, times what the stream paid
    within the window. A source the stream saw before it got busier learnt its share
    at the old rate and is judged at the new one, however young the stream. One stream
    is one partition of the transactions (these rules are per partition); its counts
    are the partition's state under the key ``""``.

    Memory is bounded: sources are forgotten oldest first beyond ``max_accounts``.
    """

    name = "pace"

    def __init__(self, half_life_ms: int = 3_600_000, max_accounts: int = 200_000,
                 recent_half_life_ms: int = 30_000) -> None:
        if half_life_ms <= 0 or max_accounts < 1 or \
                not 0 < recent_half_life_ms <= half_life_ms:
            raise ValueError(f"invalid pace: half-life {half_life_ms} ms (recent "
                             f"{recent_half_life_ms} ms), {max_accounts} sources")
        self.half_life_ms = half_life_ms
        self.recent_half_life_ms = recent_half_life_ms
        self.max_accounts = max_accounts
        self._sources: dict[str, _Pace] = {}
        self._traffic: _Traffic | None = None
        self._changed: set[str] = set()

    def busier(self, ts: int) -> float:
        """How much busier the stream is at ``ts`` than over the past the paces come
        from: 1.0 when steady.

        The recent count is held against what the long-run rate would have put in the
        same span, each with ``PRIOR_PAYMENTS`` added: a sparse stream, whose recent
        count is mostly chance, reads as steady.
        """
        return self._busier(self._traffic_at(ts))

    def _busier(self, traffic: _Traffic) -> float:
        age = traffic.at - traffic.first
        if age <= 0:
            return 1.0
        steady = traffic.long / _span(self.half_life_ms, age) * \
            _span(self.recent_half_life_ms, age)
        return (traffic.short + PRIOR_PAYMENTS) / (steady + PRIOR_PAYMENTS)

    def _traffic_at(self, ts: int) -> _Traffic:
        """The stream's counts, decayed to ``ts`` (to the newest time seen, for one out
        of order)."""
        traffic = self._traffic
        if traffic is None:
            traffic = self._traffic = _Traffic(ts)
        elif ts > traffic.at:
            traffic.long *= 0.5 ** ((ts - traffic.at) / self.half_life_ms)
            traffic.short *= 0.5 ** ((ts - traffic.at) / self.recent_half_life_ms)
            traffic.at = ts
        return traffic

    def observe(self, source: str, ts: int, window_ms: int, recent: int
                ) -> tuple[float, float]:
        """``(expected, gap)``, then this payment joins the count. ``expected``: the
        payments the source's habit predicts within ``window_ms``, not counting the
        ``recent`` ones already in the window (a burst must not raise its own bar), 0
        for a source with no past yet. ``gap``: seconds since the source's previous
        payment, ``NO_GAP_S`` for a source with no past (or forgotten), 0 for one out
        of order."""
        expected, gap, *_ = self.expect(source, ts, window_ms, recent)
        self.settle(source, ts, flagged=False, hold_ms=0)
        return expected, gap

    def expect(self, source: str, ts: int, window_ms: int, recent: int, new_ms: int = 0
               ) -> tuple[float, float, bool, bool, bool, int, float, float]:
        """``observe``'s ``(expected, gap)`` but for counting the payment, which
        ``settle`` does once the rule has judged it (the stream's counts take it at
        once); and whether it came at the very instant of the source's previous one,
        whether the source was in a burst, whether it is a new account (first seen
        less than ``new_ms`` ago, by a stream watched at least ``new_ms`` before: until
        then every account is one not seen yet, not a new one; False without
        ``new_ms``), how long it has been seen paying, ms, its payments before the
        window (decayed), and the window's share of the stream's payments since it
        was first seen (-1 where the counts cannot say). A new account's habit is
        drawn towards none while its past is short: nothing known of it says it pays
        often."""
        pace = self._sources.get(source)
        traffic = self._traffic_at(ts)
        if pace is None:
            if len(self._sources) >= self.max_accounts:
                forget_oldest(self._sources, self.max_accounts, self._changed)
            pace = self._sources[source] = _Pace(ts, traffic.long)
            gap, instant, in_burst = NO_GAP_S, False, False
        else:
            gap = (ts - pace.at) / 1000 if ts > pace.at else 0.0
            instant, in_burst = ts == pace.at, pace.burst_since is not None
        half = self.half_life_ms
        at = pace.at
        if ts > at:  # one out of order counts at the newest time seen
            decay = 0.5 ** ((ts - at) / half)
            pace.count *= decay
            pace.held *= decay
            pace.at = at = ts
        expected = 0.0
        watched = at - pace.first
        new = new_ms > 0 and watched < new_ms <= pace.first - traffic.first
        span = _span(half, watched)
        # The window's payments held back as a burst's are not in the count.
        past = pace.count - max(recent - pace.held, 0.0)
        if span > window_ms and past > 0.0:
            expected = self._expected(traffic, pace, past, span, window_ms, recent)
            if new:
                lasting = span - window_ms
                expected *= lasting / (lasting + PRIOR_PAST_MS)
        # The window's share of the stream's payments since the source was first
        # seen: what share of its own payments the window should hold, if it keeps
        # its pace (``Velocity.surprising``); -1 where the stream's counts cannot say.
        share = -1.0
        if pace.base is not None and traffic.whole(window_ms):
            seen = traffic.long - pace.base * 0.5 ** ((traffic.at - pace.first) / half)
            share = min(traffic.window / seen, 1.0) if seen > 0.0 else 1.0
        traffic.long += 1.0  # this payment joins the stream's counts
        traffic.short += 1.0
        traffic.add(window_ms)
        self._changed.add(source)
        self._changed.add("")
        return expected, gap, instant, in_burst, new, watched, max(past, 0.0), share

    def settle(self, source: str, ts: int, flagged: bool, hold_ms: int) -> None:
        """The payment ``expect`` judged joins the source's count, unless it was
        ``flagged`` as part of a burst that began less than ``hold_ms`` ago: then it is
        held back, so that a burst never raises its own bar. A burst kept up longer is
        the source's habit: what was held back joins the count. A burst that ends
        sooner never does."""
        pace = self._sources[source]
        if not flagged:
            pace.burst_since, pace.held = None, 0.0
        elif pace.burst_since is None:
            pace.burst_since = ts
        if flagged and ts - pace.burst_since < hold_ms:  # type: ignore[operator]
            pace.held += 1.0
            return
        pace.count += 1.0 + pace.held
        pace.held = 0.0

    def in_burst(self, source: str) -> bool:
        """Whether the source's latest payment was flagged as part of a burst."""
        pace = self._sources.get(source)
        return pace is not None and pace.burst_since is not None

    def _expected(self, traffic: _Traffic, pace: _Pace, past: float, span: float,
                  window_ms: int, recent: int) -> float:
        """The payments ``past`` (the source's, before the window, over ``span`` of
        decayed past) predicts within the window, by its share of the stream's."""
        before = -1.0
        if pace.base is not None and traffic.whole(window_ms):
            # The stream's payments since the source was first seen, but for the
            # window's, decayed as the source's own count is.
            before = traffic.long - traffic.window - pace.base * 0.5 ** (
                (traffic.at - pace.first) / self.half_life_ms)
        # Older state, a window not counted in full yet, or the stream's counts started
        # over since the source was first seen: the stream's rates alone.
        if before <= 0.0:
            return past / span * window_ms * self._busier(traffic)
        lasting = span - window_ms  # the weight of the past before the window
        others = traffic.window - recent  # a burst must not raise its own bar
        # past / before * others, with PRIOR_PAYMENTS on either side of the ratio of
        # rates, as in ``busier``: in a sparse stream the source's own pace decides.
        return past / lasting * window_ms * (others + PRIOR_PAYMENTS) / (
            before / lasting * window_ms + PRIOR_PAYMENTS)

    def state_of(self, source: str) -> Any:
        """``[first, at, count, base, burst since, held]`` of a source; ``[first, at,
        long, short, seconds]`` of the stream's counts for ``""``."""
        if source == "":
            traffic = self._traffic
            return None if traffic is None else [traffic.first, traffic.at, traffic.long,
                                                 traffic.short, list(traffic.seconds)]
        pace = self._sources.get(source)
        if pace is None:
            return None
        state = [pace.first, pace.at, pace.count, pace.base]
        if pace.burst_since is not None:  # the older, shorter state otherwise
            state += [pace.burst_since, pace.held]
        return state

    def restore(self, source: str, state: Any) -> None:
        if source == "":
            # Anything else under "" comes from a detector older than the stream's
            # counts (None, or [first, at, count] of a source named ""), which may
            # share the group with this one during an upgrade: the counts start over.
            if isinstance(state, list) and len(state) in (4, 5):
                traffic = self._traffic = _Traffic(state[0])
                traffic.at, traffic.long, traffic.short = state[1], state[2], state[3]
                if len(state) == 5:
                    traffic.seconds = deque([second, n] for second, n in state[4])
                    traffic.window = sum(n for _, n in traffic.seconds)
                else:  # written before there were seconds: counted again from now
                    traffic.counted_from = traffic.at
            return
        if state is None:
            self._sources.pop(source, None)
            return
        # Without a base (older state), a source is judged by the whole stream's rate.
        pace = self._sources[source] = _Pace(state[0], state[3] if len(state) > 3 else None)
        pace.at, pace.count = state[1], state[2]
        if len(state) > 5:  # older state has no burst under way
            pace.burst_since, pace.held = state[4], state[5]


def _span(half_life_ms: float, age_ms: float) -> float:
    """The weight the decay gives to ``age_ms`` of past, in ms: a rate over one hour of
    past is as sound as the hour allows, not diluted by a day."""
    return half_life_ms / LN2 * (1.0 - 0.5 ** (age_ms / half_life_ms))


class VelocitySettings:
    """What ``Velocity`` and its columns (``columns.BatchVelocity``) read of the
    settings: the window, how young a new account is, how long a burst is held back."""

    settings: RuleSettings
    events: Any  # a keyed window of event times

    def _window(self) -> SlidingWindow:
        return SlidingWindow(round(self.settings.velocity_window_s * 1000),
                             self.settings.grace_ms)

    def configure(self) -> None:
        """Take up changed settings; events already past a shortened window are kept
        until they age out, and a widened one cannot bring back what was dropped."""
        self.events.window = self._window()
        self._new_ms = round(self.settings.new_account_s * 1000)
        self._hold_ms = round(self.settings.velocity_hold_s * 1000)


class Velocity(VelocitySettings):
    """At least ``velocity_count`` transactions from one source within a window of event
    time, and at least ``velocity_ratio`` times what the source's own pace predicts for
    the window, a count beyond chance at that pace (``surprising``): card testing and
    bursts of spending look like this, a busy account's ordinary minute does not. A
    burst's payments do not join the pace it is judged by (``AccountPace.settle``),
    and a payroll's bulk run, booked at one instant, is no burst."""

    name = "velocity"

    def __init__(self, settings: RuleSettings | None = None) -> None:
        self.settings = settings or RuleSettings()
        self.events = KeyedTimes(self._window())
        self.pace = AccountPace()
        self.new = False  # whether the source of the payment last judged is a new account
        # (False for a late one: a figure of a record says nothing of another's source,
        # or a restart, which forgets the last, would change it)
        self.configure()

    def evaluate(self, source: str, ts: int) -> tuple[int, Hit | None]:
        """``(transactions from source in the window, hit)``; 0 for a late record."""
        n, _, _, hit = self.judge(source, ts)
        return n, hit

    def judge(self, source: str, ts: int) -> tuple[int, float, float, Hit | None]:
        """``(transactions from source in the window, how many its pace predicts,
        seconds since its previous payment, hit)``; 0, 0 and ``NO_GAP_S`` for a late
        record."""
        n = self.events.count(source, ts)
        if n is None:  # judged without its window: nothing known of it is new either
            self.new = False
            return 0, 0.0, NO_GAP_S, None
        window_ms = self.events.window.length_ms
        settings, new_ms = self.settings, self._new_ms
        expected, gap, bulk, in_burst, new, watched, past, share = self.pace.expect(
            source, ts, window_ms, n - 1, new_ms)
        self.new = new
        # A burst under way lasts while the source keeps half the pace that began it:
        # a burst at about the count's own pace must not flicker in and out. A bulk run
        # (a payroll) books its payments at one instant; a spender, person or script,
        # pays one after the other: a payment at the very instant of the source's
        # previous one is part of a bulk run, not of a burst.
        count = settings.velocity_count / 2 if in_burst else settings.velocity_count
        fires = not bulk and n >= count and n >= settings.velocity_ratio * expected \
            and (new or self.surprising(n, past, share))
        # A burst is held back from the habit only where the habit before it is known:
        # a new account has none, an account watched for long enough has its own. One
        # the detector merely has not watched long (a young stream) learns from all it
        # pays, or a busy account caught once at the start would stay caught.
        self.pace.settle(source, ts, fires and (new or watched >= new_ms), self._hold_ms)
        if fires:
            reason = f"{n} transactions from the source within {window_ms / 1000:g} s"
            if expected >= 0.1:
                reason += f", its pace predicts {expected:.1f}"
            return n, expected, gap, Hit(self.name, reason)
        return n, expected, gap, None

    def surprising(self, n: int, past: float, share: float) -> bool:
        """Whether ``n`` payments in the window, after ``past`` before it, are too many
        for chance (below ``velocity_alpha``) at the source's own pace, whatever that
        pace is: of its ``past + n`` payments since it was first seen, each fell in the
        window as often as the stream's did (``share``), if its pace held. This is
        the ratio's check on itself where the source's past is thin: a pace from a
        few payments (or none, for a source the detector has watched for less than a
        window) is a guess, and when the whole stream pays ten times as often so
        does every source, which no few payments of the past can foretell; at 1,000/s,
        thousands of sources a minute pay twice a minute, and by chance alone a few
        of them pay eight times. A new account is not asked (its burst must never
        become its own baseline), nor a source the stream's counts cannot place
        (``share`` < 0)."""
        if share < 0.0:
            return True
        # P(at least n of the past + n payments in the window) for a binomial: the
        # regularised incomplete beta, which takes the decayed (fractional) past.
        return float(betainc(n, past + 1.0, share)) < self.settings.velocity_alpha


_first = itemgetter(0)  # an event's time: a key in C for the bisections


class CardTesting(ChangeTracking):
    """Tiny payments from one source to many distinct payees within a window of event
    time: at least ``card_test_payees`` payees paid at most ``card_test_amount`` each
    within ``card_test_window_s``, nearly one payee a payment (``card_test_distinct_share``).
    A stolen card is checked this way, on a new payee each time; a customer's coffee
    and bus fares are tiny too, but go back to a few usual payees, and a payroll pays
    many payees, but not tiny amounts.

    Only tiny payments are kept, a source's oldest first, each as ``[ts, payee]``, and
    only while they can still fall in a window: sources with none left are swept, and
    sources beyond ``max_accounts`` are forgotten oldest first.
    """

    name = "card_testing"

    def __init__(self, settings: RuleSettings | None = None,
                 max_accounts: int = 200_000) -> None:
        self.settings = settings or RuleSettings()
        self.max_accounts = max_accounts
        self._sources: dict[str, list[list[Any]]] = {}
        self._newest = 0
        self._swept_at = 0
        self._changed: set[str] = set()
        self.configure()

    def configure(self) -> None:
        """Take up a changed window; what a shortened one dropped does not come back."""
        self._window_ms = round(self.settings.card_test_window_s * 1000)

    def judge(self, source: str, target: str, amount: float, ts: int
              ) -> tuple[int, Hit | None]:
        """``(distinct payees the source paid tiny amounts within the window, this one
        included when it is tiny, hit)``."""
        settings, window_ms = self.settings, self._window_ms
        tiny = amount <= settings.card_test_amount
        held = self._sources.get(source)
        if ts > self._newest:
            self._newest = ts
        if tiny:
            if held is None:
                if len(self._sources) >= self.max_accounts:
                    forget_oldest(self._sources, self.max_accounts, self._changed)
                held = self._sources[source] = []
            insort(held, [ts, intern(target)])  # kept: one copy of each payee's name
            self._changed.add(source)
        if self._newest - self._swept_at > window_ms:
            self._sweep(self._newest - window_ms)
        if not held:
            return 0, None
        kept_from = held[-1][0] - window_ms  # no window of a newer payment sees older
        if held[0][0] <= kept_from:
            del held[:bisect_right(held, kept_from, key=_first)]
            self._changed.add(source)
        window = held[bisect_right(held, ts - window_ms, key=_first):
                      bisect_right(held, ts, key=_first)]
        n = len({payee for _, payee in window})
        if tiny and n >= settings.card_test_payees and \
                n >= settings.card_test_distinct_share * len(window):
            return n, Hit(self.name, f"{n} distinct payees paid at most "
                                     f"{settings.card_test_amount:g} within "
                                     f"{window_ms / 60_000:g} min")
        return n, None

    def judge_batch(self, sources: list[str], targets: list[str], amounts: list[float],
                    times: list[int]) -> list[tuple[int, Hit | None]]:
        """``judge`` of each record in turn."""
        payees, fired = self.judge_columns(sources, targets, amounts, times)
        out: list[tuple[int, Hit | None]] = list(zip(payees.tolist(), repeat(None)))
        for i, hit in fired:
            out[i] = (out[i][0], hit)
        return out

    def judge_columns(self, sources: list[str], targets: list[str], amounts: list[float],
                      times: list[int], *, amounts_of: np.ndarray | None = None,
                      ts: np.ndarray | None = None) -> tuple[np.ndarray, list[tuple[int, Hit]]]:
        """``judge_batch`` in columns: each record's distinct payees, and the hits by
        the record's place in the batch. Most records are not tiny, from a source that
        holds none: those only move the newest time on, and sweep where that is due,
        which a batch's running maximum of times says for all of them at once; only
        the others are judged, one at a time. ``amounts_of`` and ``ts``: the amounts
        and times as arrays, when the caller has them."""
        count = len(sources)
        payees = np.zeros(count, np.int64)
        fired: list[tuple[int, Hit]] = []
        if not count:
            return payees, fired
        judge, held_by = self.judge, self._sources
        tiny_at = self.settings.card_test_amount
        tiny = (np.array(amounts, np.float64) if amounts_of is None else amounts_of) <= tiny_at
        # Who may hold tiny payments when its record comes: a source that holds some
        # now, or that pays a tiny amount in this batch. The others hold none.
        judged = tiny | np.fromiter(map(held_by.__contains__, sources), np.bool_, count)
        paying_tiny = set(compress(sources, tiny.tolist()))
        if paying_tiny:
            judged |= np.fromiter(map(paying_tiny.__contains__, sources), np.bool_, count)
        # The newest time after each record, whichever way it goes.
        newest = np.maximum.accumulate(np.maximum(
            np.array(times, np.int64) if ts is None else ts, self._newest))
        sweeps = self._sweeps_due(newest)
        stops = judged.copy()
        stops[sweeps] = True
        # Python's numbers: the loop reads them a few hundred times a batch.
        to_judge, newest_of = judged.tolist(), newest.tolist()
        for i in np.flatnonzero(stops).tolist():
            source, amount = sources[i], amounts[i]
            if to_judge[i] and (amount <= tiny_at or source in held_by):
                if i:  # as the records before left it: ``judge`` moves it on
                    self._newest = newest_of[i - 1]
                n, hit = judge(source, targets[i], amount, times[i])
                payees[i] = n
                if hit is not None:
                    fired.append((i, hit))
            else:
                self._newest = newest_of[i]
                if self._newest - self._swept_at > self._window_ms:
                    self._sweep(self._newest - self._window_ms)
        self._newest = newest_of[-1]
        return payees, fired

    def _sweeps_due(self, newest: np.ndarray) -> list[int]:
        """Where a batch's records sweep, by the newest time after each (which never
        goes back): each time it has gone a window past the last sweep."""
        due: list[int] = []
        swept = self._swept_at
        while True:
            at = int(np.searchsorted(newest, swept + self._window_ms, side="right"))
            if at == len(newest):
                return due
            due.append(at)
            swept = int(newest[at])

    def _sweep(self, horizon: int) -> None:
        self._swept_at = self._newest
        stale = [source for source, held in self._sources.items() if held[-1][0] <= horizon]
        for source in stale:
            del self._sources[source]
        self._changed.update(stale)

    def state_of(self, source: str) -> Any:
        """``[[ts, payee], ...]``, oldest first."""
        return self._sources.get(source)

    def restore(self, source: str, state: Any) -> None:
        if state is None:
            self._sources.pop(source, None)
        else:
            self._sources[source] = [list(event) for event in state]
            self._newest = max(self._newest, state[-1][0]) if state else self._newest


class FanIn:
    """Many distinct accounts paying one target within a window of event time, when they
    look like a mule's payers: money mules collecting look like this, a merchant or a
    new shop paid by its customers does not (``judge``). The figure ``fan_in`` counts
    every distinct payer in the window, mule-like or not."""

    name = "fan_in"

    def __init__(self, settings: RuleSettings | None = None,
                 mix: PayerMix | MixColumns | None = None, slots: Slots | None = None) -> None:
        """``slots``: the windows in columns (``distinct_columns``), over those slots,
        judged a batch at once (``judge_columns``); else ``KeyedEvents``, a record at a
        time, the reference."""
        self.settings = settings or RuleSettings()
        self.events: KeyedEvents | DistinctColumns
        self.suspects: KeyedEvents | DistinctColumns
        self.newcomers: KeyedEvents | DistinctColumns
        self.payers: PayerTable | None = None
        if slots is None:
            self.events = KeyedEvents(self._window())
            # The payers that look like a mule's, and the new accounts among them, each
            # in its own window: a few of all the payers, so a longer window costs little.
            self.suspects = KeyedEvents(self._window())
            self.newcomers = KeyedEvents(self._new_window())
        else:
            from services.detector.distinct_columns import DistinctColumns, PayerTable

            self.payers = PayerTable()  # the three windows' payers, by number
            self.events = DistinctColumns(slots, self._window(), self.payers)
            self.suspects = DistinctColumns(slots, self._window(), self.payers)
            self.newcomers = DistinctColumns(slots, self._new_window(), self.payers)
        # The payer mix: ``PayerMix`` a record at a time (``judge`` adds to it), or the
        # columns ``TargetRules`` add a batch to first (``judge`` is given the share).
        self.mix = mix if mix is not None else PayerMix(
            round(self.settings.fan_in_new_window_s * 1000))

    def _window(self) -> SlidingWindow:
        return SlidingWindow(round(self.settings.fan_in_window_s * 1000),
                             self.settings.grace_ms)

    def _new_window(self) -> SlidingWindow:
        return SlidingWindow(round(self.settings.fan_in_new_window_s * 1000),
                             self.settings.grace_ms)

    def configure(self) -> None:
        self.events.window = self.suspects.window = self._window()
        self.newcomers.window = self._new_window()
        self.mix.half_life_ms = round(self.settings.fan_in_new_window_s * 1000)

    def evaluate(self, target: str, source: str, ts: int,
                 order: int | None = None) -> tuple[int, Hit | None]:
        """``(distinct sources paying target in the window, hit)``; 0 for a late record.
        Every payer counts as a mule's here: nothing is known of them."""
        n, _, _, hit = self.judge(target, source, ts, None, order)
        return n, hit

    def judge(self, target: str, source: str, ts: int, payer: dict[str, float] | None,
              order: int | None = None, share: float | None = None
              ) -> tuple[int, int, float, Hit | None]:
        """``(distinct sources paying target in the window, distinct new accounts paying
        it in the longer window, the share of its payments lately that came from new
        accounts, hit)``, by what the first stage found of the payer (``payer``: its
        figures; None when there are none, and every payer counts as a mule's).

        A mule's payer is a new account, or one paying far above its habit: a shop's
        customers, however many, pay it what they usually spend, and have paid others
        before. The longer window catches a ring of new accounts gathered slowly, as
        long as they make most of what the target is paid.

        With ``order`` (``event_time``), payments of the same order do not count each
        other, in any of the windows or in the mix. ``share``: the mix's share for this
        record, where it was added to the mix already (``TargetRules``).
        """
        [judged] = self.judge_batch([target], [source], [ts], [payer], [order],
                                    None if share is None else [share])
        return judged

    def judge_batch(self, targets: list[str], sources: list[str], times: list[int],
                    payers: Sequence[dict[str, float] | None], orders: Sequence[int | None],
                    shares: list[float] | None = None
                    ) -> list[tuple[int, int, float, Hit | None]]:
        """``judge`` of each record in turn, the windows ``KeyedEvents``."""
        assert isinstance(self.events, KeyedEvents) and \
            isinstance(self.suspects, KeyedEvents) and isinstance(self.newcomers, KeyedEvents)
        counted, suspected = self.events.distinct, self.suspects.distinct
        newly = self.newcomers.distinct
        all_n, all_m, all_fresh, all_shares = [], [], [], []
        for i, (target, source, ts, payer, order) in enumerate(zip(
                targets, sources, times, payers, orders, strict=True)):
            # Distinct payers: counted per window, where a slice of it a record was
            # O(window) for a target paid often. None (late) counts none.
            all_n.append(counted(target, ts, source, order) or 0)
            new = self._new(payer)
            all_m.append((suspected(target, ts, source, order) or 0)
                         if self._suspect(payer, new) else 0)
            all_shares.append(shares[i] if shares is not None else
                              self.mix.add(target, ts, new, order))  # type: ignore[union-attr]
            all_fresh.append((newly(target, ts, source, order) or 0) if new else 0)
        return self.judged(all_n, all_m, all_fresh, all_shares)

    @staticmethod
    def _new(payer: dict[str, float] | None) -> bool:
        return bool(payer and payer.get("new_account"))

    def _suspect(self, payer: dict[str, float] | None, new: bool) -> bool:
        """Whether a payer looks like a mule's (see ``judge``)."""
        if payer is None or "history" not in payer:
            return True
        return new or payer["history"] == 0 or \
            payer.get("amount_ratio", 1.0) >= self.settings.fan_in_payer_ratio

    def mule_like(self, payers: Sequence[dict[str, float] | None],
                  new: np.ndarray) -> np.ndarray:
        """``_suspect`` of each payer, from its figures; ``new``: ``_new`` of each."""
        return np.array([self._suspect(payer, fresh) for payer, fresh in
                         zip(payers, new.tolist(), strict=True)], np.bool_)

    def mule_like_columns(self, figures: dict[str, np.ndarray],
                          new: np.ndarray) -> np.ndarray:
        """``mule_like`` from the payers' figures in columns (``Judged``)."""
        history = figures.get("history")
        if history is None:
            return np.ones(len(new), np.bool_)
        ratio = figures.get("amount_ratio")
        above = ratio >= self.settings.fan_in_payer_ratio if ratio is not None else \
            np.full(len(new), self.settings.fan_in_payer_ratio <= 1.0)
        suspect: np.ndarray = new | (history == 0) | above
        return suspect

    def judge_columns(self, slots: np.ndarray, sources: list[str], times: np.ndarray,
                      suspect: np.ndarray, new: np.ndarray, orders: np.ndarray | None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The windows' part of ``judge`` for a batch, the windows in columns: each
        record's distinct payers in the window, suspects among them and new accounts
        in the longer window (``judged`` makes the verdicts); ``suspect`` and ``new``:
        whether each payer looks like a mule's (``mule_like``) and is a new account
        (``_new``). Before the slots settle: a slot freed in this batch may not be taken
        again yet."""
        events, suspects, newcomers = (cast("DistinctColumns", store) for store in (
            self.events, self.suspects, self.newcomers))
        assert self.payers is not None
        numbers = self.payers.numbers(sources)
        # None (late) counts none: -1 from the columns.
        n = np.maximum(events.distinct_batch(slots, times, orders, numbers), 0)
        m, fresh = np.zeros(len(slots), np.int64), np.zeros(len(slots), np.int64)
        for store, mask, out in ((suspects, suspect, m), (newcomers, new, fresh)):
            if mask.any():
                out[mask] = np.maximum(store.distinct_batch(
                    slots[mask], times[mask], None if orders is None else orders[mask],
                    numbers[mask]), 0)
        self.payers.settle()
        # A late record's payer, numbered for it, may be held by no event at all.
        unheld = numbers[self.payers.refs[numbers] == 0]
        if len(unheld):
            self.payers.release(np.unique(unheld).tolist())
        return n, m, fresh

    def judged(self, all_n: list[int], all_m: list[int], all_fresh: list[int],
               shares: list[float]) -> list[tuple[int, int, float, Hit | None]]:
        """``judge``'s answers from the windows' counts and the mix's shares."""
        fired = dict(self.judged_columns(np.array(all_n, np.int64), np.array(all_m, np.int64),
                                         np.array(all_fresh, np.int64),
                                         np.array(shares, np.float64)))
        return [(n, fresh, share, fired.get(i)) for i, (n, fresh, share) in
                enumerate(zip(all_n, all_fresh, shares, strict=True))]

    def judged_columns(self, n: np.ndarray, m: np.ndarray, fresh: np.ndarray,
                       shares: np.ndarray) -> list[tuple[int, Hit]]:
        """The hits ``judged`` finds, by the record's place in the batch."""
        settings = self.settings
        mule_share = settings.fan_in_mule_share
        many = (m >= settings.fan_in_sources) & (m >= mule_share * n)
        gathered = ~many & (fresh >= settings.fan_in_new_payers) & (shares >= mule_share)
        fired: list[tuple[int, Hit]] = []
        for i in np.flatnonzero(many | gathered).tolist():
            count, suspected, share = int(n[i]), int(m[i]), float(shares[i])
            if many[i]:
                minutes = self.events.window.length_ms / 60_000
                reason = f"{count} distinct sources paid the target within {minutes:g} min" \
                    if suspected == count else f"{suspected} of the {count} distinct " \
                    f"sources that paid the target within {minutes:g} min are new or paid " \
                    "far above their habit"
            else:
                hours = self.newcomers.window.length_ms / 3_600_000
                reason = f"{int(fresh[i])} new accounts paid the target within {hours:g} h, " \
                    f"{share:.0%} of its payments lately"
            fired.append((i, Hit(self.name, reason)))
        return fired


class PayerMix(ChangeTracking):
    """How many payments each target received lately, and how many of them came from
    new accounts, both halving every ``half_life_ms`` of event time: a mule is paid by
    new accounts mostly, a shop by its customers, new accounts among them.

    Memory is bounded: targets are forgotten oldest first beyond ``max_accounts``.
    """

    name = "payer_mix"

    def __init__(self, half_life_ms: int, max_accounts: int = 500_000) -> None:
        self.half_life_ms = half_life_ms
        self.max_accounts = max_accounts
        self._targets: dict[str, list[float]] = {}  # target -> [payments, from new, at]
        self._changed: set[str] = set()

    def add(self, target: str, ts: int, new: bool, order: int | None = None) -> float:
        """This payment counted; the share of the target's payments lately from new
        accounts, this one included.

        With ``order`` (``event_time``), payments of the same order are held apart and
        do not count each other, so they may come in any order; time is the order, and
        a payment older than its order weighs as old as it is."""
        at = ts if order is None else order
        state = self._targets.get(target)
        if state is None:
            if len(self._targets) >= self.max_accounts:
                forget_oldest(self._targets, self.max_accounts, self._changed)
            # [payments, from new, at, payments at ``at``, from new at ``at``]
            state = self._targets[target] = [0.0, 0.0, at, 0.0, 0.0]
        if at > state[2]:
            decay = 0.5 ** ((at - state[2]) / self.half_life_ms)
            state[0] = (state[0] + state[3]) * decay
            state[1] = (state[1] + state[4]) * decay
            state[2], state[3], state[4] = at, 0.0, 0.0
        newest = state[2]
        weight = 0.5 ** ((newest - ts) / self.half_life_ms) if ts < newest else 1.0
        self._changed.add(target)
        if at < newest:  # behind the newest order (a partition back from idleness)
            state[0] += weight
            state[1] += weight * new
            return _share(state[1] + state[4], state[0] + state[3], new)
        share = _share(state[1] + weight * new, state[0] + weight, new)
        state[3] += weight
        state[4] += weight * new
        return share

    def state_of(self, target: str) -> Any:
        """``[payments, from new accounts, at, payments at it, from new at it]``."""
        state = self._targets.get(target)
        return None if state is None else list(state)

    def restore(self, target: str, state: Any) -> None:
        if state is None:
            self._targets.pop(target, None)
        else:
            ties = [float(state[3]), float(state[4])] if len(state) > 4 else [0.0, 0.0]
            self._targets[target] = [float(state[0]), float(state[1]), state[2], *ties]


def _share(part: float, whole: float, new: bool) -> float:
    """``part / whole``; for a payment so old that it weighs nothing against a target
    with nothing else counted, what the payment itself was."""
    return part / whole if whole > 0.0 else float(new)


# The log-space habit (``AmountAnomaly.judge``): its spread before the account has shown
# its own, and how many payments' worth of weight that prior carries.
PRIOR_LOG_SPREAD = 0.5
PRIOR_WEIGHT = 2.0
# A payment moves the log-space habit by at most this many spreads from its mean, once
# the account has ``HABIT_FIRM`` payments: a takeover's first large transfer must not
# make the next one look usual.
HABIT_CLIP = 3.0
HABIT_FIRM = 1


class _History:
    """An account's amounts so far, summarised (Welford's running mean and variance),
    twice: of the amounts, for the rule's figures in money, and of their logarithms,
    robustly, for the model (``AmountAnomaly.judge``'s log z)."""

    __slots__ = ("count", "log_m2", "log_mean", "m2", "mean")

    def __init__(self, count: int = 0, mean: float = 0.0, m2: float = 0.0,
                 log_mean: float = 0.0, log_m2: float = 0.0) -> None:
        self.count, self.mean, self.m2 = count, mean, m2
        self.log_mean, self.log_m2 = log_mean, log_m2

    def add(self, amount: float, log: float) -> None:
        """One more payment: ``amount``, and the logarithm it counts with in the log
        habit (``AmountAnomaly.judge`` clips an outlier's)."""
        count = self.count = self.count + 1
        mean = self.mean
        delta = amount - mean
        mean = self.mean = mean + delta / count
        self.m2 += delta * (amount - mean)
        log_mean = self.log_mean
        delta = log - log_mean
        log_mean = self.log_mean = log_mean + delta / count
        self.log_m2 += delta * (log - log_mean)

    @classmethod
    def of_amounts(cls, count: int, mean: float, m2: float) -> _History:
        """A history known only in money: its log habit as a log-normal with that mean
        and spread would have it."""
        history = cls(count, mean, m2)
        if count and mean > 0:
            spread2 = math.log1p(history.std ** 2 / mean ** 2)  # variance of the log
            history.log_mean = math.log(mean) - spread2 / 2
            history.log_m2 = spread2 * (count - 1)
        return history

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 0.0

    def state(self) -> list[float]:
        return [self.count, self.mean, self.m2, self.log_mean, self.log_m2]


# The prior's share of the log habit's sum of squares (``PRIOR_WEIGHT`` payments at
# ``PRIOR_LOG_SPREAD``), and the logarithm of the smallest amount it tells apart.
PRIOR_M2 = PRIOR_WEIGHT * PRIOR_LOG_SPREAD ** 2
LOG_FLOOR = math.log(0.01)


class AmountAnomaly(ChangeTracking):
    """An amount far above what the source usually spends: at least ``anomaly_ratio``
    times its mean and ``anomaly_z`` standard deviations above it, once it has
    ``anomaly_history`` transactions. A takeover's first large transfer looks like this.

    The account's own transaction is judged against its history before it joins it.
    Accounts are forgotten oldest first beyond ``max_accounts``, which bounds memory.
    """

    name = "amount_anomaly"

    def __init__(self, settings: RuleSettings | None = None,
                 max_accounts: int = 200_000) -> None:
        self.settings = settings or RuleSettings()
        self.max_accounts = max_accounts
        self._accounts: dict[str, _History] = {}
        self._changed: set[str] = set()

    def evaluate(self, source: str, amount: float) -> tuple[float, Hit | None]:
        """``(z-score of amount against the source's history, hit)``; 0 without one."""
        score, _, _, _, hit = self.judge(source, amount)
        return score, hit

    def judge(self, source: str, amount: float
              ) -> tuple[float, float, float, int, Hit | None]:
        """``(z-score, z-score of the logarithm, amount / the source's mean amount,
        payments it is judged against, hit)``: z needs ``anomaly_history`` payments and is 0
        before; the log z and the ratio need one, and are 0 and 1 before."""
        account = self._accounts.get(source)
        if account is None:
            if len(self._accounts) >= self.max_accounts:
                forget_oldest(self._accounts, self.max_accounts, self._changed)
            account = self._accounts[source] = _History()
        hit = None
        score = 0.0
        count, mean = account.count, account.mean
        log = math.log(amount) if amount > 0.01 else LOG_FLOOR
        habitual: float | None = None  # what joins the habit in money, when not clipped
        if count:
            ratio = amount / mean if mean > 0 else 1.0
            # How many spreads the amount's logarithm lies from the account's habit.
            # Amounts are about log-normal, so a tenth and ten times the usual are as
            # far; the spread is drawn towards a prior while there are few payments
            # (two of 40.00 do not make 41.00 unusual).
            log_mean, log_m2 = account.log_mean, account.log_m2
            log_z = (log - log_mean) / math.sqrt((log_m2 + PRIOR_M2) / (count - 1 + PRIOR_WEIGHT))
            if count >= HABIT_FIRM:  # an outlier moves the habit a few spreads at most
                reach = HABIT_CLIP * math.sqrt((log_m2 + PRIOR_M2) / (count + PRIOR_WEIGHT))
                if log > log_mean + reach:
                    log = log_mean + reach
                elif log < log_mean - reach:
                    log = log_mean - reach
                else:
                    habitual = amount
        else:
            ratio, log_z = 1.0, 0.0
            habitual = amount
        if count >= self.settings.anomaly_history:
            # A floor under the spread: an account that always spends the same amount
            # would otherwise make any other amount infinitely unusual.
            spread = max(account.std, 0.05 * mean, 0.01)
            score = (amount - mean) / spread
            settings = self.settings
            if score >= settings.anomaly_z and amount >= settings.anomaly_ratio * mean:
                hit = Hit(self.name, f"amount {amount:g} is {amount / mean:.1f}x "
                                     f"the account's mean of {mean:.2f}")
        # In money as in logs: a takeover's first large transfer must not make the next
        # ones look usual, so an outlier joins the habit as the most the habit allows.
        account.add(habitual if habitual is not None else math.exp(log), log)
        self._changed.add(source)
        return score, log_z, ratio, count, hit

    def state_of(self, source: str) -> Any:
        """``[count, mean, m2, log mean, log m2]``."""
        account = self._accounts.get(source)
        return None if account is None else account.state()

    def restore(self, source: str, state: Any) -> None:
        if state is None:
            self._accounts.pop(source, None)
        elif len(state) < 5:  # an older changelog: the log habit from the one in money
            self._accounts[source] = _History.of_amounts(*state[:3])
        else:
            self._accounts[source] = _History(*state)


class _Payees:
    """What a source's novelty rests on: its recent counterparties, most recent last (a
    plain list: a few names, searched about as fast as a dict finds them, in half the
    room or less), and its rate of new ones, decayed, as of event time ``at``."""

    __slots__ = ("at", "new_rate", "recent", "streak")

    def __init__(self) -> None:
        self.recent: list[str] = []
        self.new_rate = 0.0
        self.at = 0
        self.streak = 0  # payments in a row to new payees, up to this one


class CounterpartyNovelty(ChangeTracking):
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
        novel, lately, _ = self.judge(source, target, ts)
        return novel, lately

    def judge(self, source: str, target: str, ts: int) -> tuple[float, float, int]:
        """``evaluate``, and how many payments in a row, this one included, went to new
        payees: one in ten everyday payments goes to a new payee, so a run of three is
        one in a thousand, whatever the rate; a burst to new payees makes one long run."""
        payees = self._sources.get(source)
        if payees is None:
            if len(self._sources) >= self.max_accounts:
                forget_oldest(self._sources, self.max_accounts, self._changed)
            payees = self._sources[source] = _Payees()
            payees.at = ts
        recent = payees.recent
        if target in recent:
            recent.append(recent.pop(recent.index(target)))  # to the end, the copy held
            novel = 0.0
        else:
            novel = 1.0
            if len(recent) >= self.memory:
                del recent[0]
            recent.append(intern(target))  # one copy of a name, however many hold it
        if ts > payees.at:  # a record out of order counts at the newest time seen
            payees.new_rate *= 0.5 ** ((ts - payees.at) / self.half_life_ms)
            payees.at = ts
        payees.new_rate += novel
        payees.streak = payees.streak + 1 if novel else 0
        self._changed.add(source)
        return novel, payees.new_rate, payees.streak

    def state_of(self, source: str) -> Any:
        """``[recent payees, new rate, at, streak]``."""
        payees = self._sources.get(source)
        return None if payees is None else [list(payees.recent), payees.new_rate,
                                            payees.at, payees.streak]

    def restore(self, source: str, state: Any) -> None:
        if state is None:
            self._sources.pop(source, None)
            return
        payees = self._sources[source] = _Payees()
        payees.recent = list(map(intern, state[0]))
        payees.new_rate, payees.at = state[1], state[2]
        payees.streak = state[3] if len(state) > 3 else 0  # older changelogs lack it


class PayeeHistory(ChangeTracking):
    """How many payments each account has received lately (halving every
    ``half_life_ms`` of event time), before this one. Not a rule, a figure for the
    model: a takeover or a mule pays into an account nobody paid before, while an
    everyday payee has been paid by others. Keyed by target, like fan-in.

    With orders (``event_time``), "before" means of a lower order: payments of the same
    order are held apart (``tie``) and do not count each other, whatever order they are
    taken in. Without, a payment's order is its time.

    Memory is bounded: accounts are forgotten oldest first beyond ``max_accounts``; a
    forgotten one reads as never paid.
    """

    name = "payee"

    def __init__(self, half_life_ms: int = 6 * 3_600_000, max_accounts: int = 500_000) -> None:
        if half_life_ms <= 0 or max_accounts < 1:
            raise ValueError(f"invalid payee history: half-life {half_life_ms} ms, "
                             f"{max_accounts} accounts")
        self.half_life_ms = half_life_ms
        self.max_accounts = max_accounts
        # target -> [received before the newest order, that order, received at it]
        self._targets: dict[str, list[float]] = {}
        self._changed: set[str] = set()

    def evaluate(self, target: str, ts: int, order: int | None = None) -> float:
        """Payments ``target`` received before this one, decayed; then this one counts."""
        at = ts if order is None else order
        state = self._targets.get(target)
        if state is None:
            if len(self._targets) >= self.max_accounts:
                forget_oldest(self._targets, self.max_accounts, self._changed)
            state = self._targets[target] = [0.0, at, 0.0]
        if at > state[1]:
            state[0] = (state[0] + state[2]) * 0.5 ** ((at - state[1]) / self.half_life_ms)
            state[1] = at
            state[2] = 0.0
            before = state[0]
        elif at == state[1]:
            before = state[0]
        else:  # behind the newest order (a partition back from idleness)
            before = state[0] + state[2]
        state[2] += 1.0
        self._changed.add(target)
        return before

    def state_of(self, target: str) -> Any:
        """``[received before, at, received at]``."""
        state = self._targets.get(target)
        return None if state is None else list(state)

    def restore(self, target: str, state: Any) -> None:
        if state is None:
            self._targets.pop(target, None)
        else:  # ``[received, at]`` from older detectors: all of it before ``at``
            self._targets[target] = [float(state[0]), state[1],
                                     float(state[2]) if len(state) > 2 else 0.0]


RULE_NAMES = ("velocity", "fan_in", "amount_anomaly", "card_testing")
SOURCE_RULES = ("velocity", "amount_anomaly", "card_testing")  # keyed by the paying account
TARGET_RULES = ("fan_in",)  # state keyed by the account paid


# Each store's number in a changelog record: a record names every store of its key,
# so a number of one byte where a name took up to 17. Never reuse a number.
STORE_CODES = {"velocity": 1, "pace": 2, "amount_anomaly": 3, "card_testing": 4,
               "novelty": 5, "fan_in": 6, "fan_in_suspects": 7, "fan_in_new": 8,
               "payer_mix": 9, "payee": 10}
STORE_NAMES = {code: name for name, code in STORE_CODES.items()}
STATES_AT_ONCE = 2048  # keys whose states are written together for the changelog


class _RuleSet:
    """Rules that share a key, with their state as one changelog: a record per key
    (``"/" + key``) that holds every store's state of it, ``{store: state}``, each
    store by its number (``STORE_CODES``), in MessagePack (``store.encode_state``).

    A key changed in one store is written with the others' states too: compaction keeps
    only the newest record of a key, so each record must be the whole of it. That makes
    one record of what were up to four (one a store), and a tombstone (None) only once
    no store holds the key. Changelogs written a record per store (``"store/key"``), or
    in JSON with the stores by name, are read as well. A long fan-in window's settled
    events have a record of their own (``"store+/key"``, ``DistinctColumns
    .changelog_at``), written before the key's record that holds the events since.
    """

    def __init__(self, stores: dict[str, ChangeTracking], slots: Slots) -> None:
        self.stores = stores
        # The column stores (``encoded_at``) share one table of slots, ``slots``: they
        # say which slots changed and write the states at them; the others, by key.
        self.slots = slots
        self._columns = [store for store in stores.values() if hasattr(store, "encoded_at")]
        # The stores that write a long window as a settled record and the events since
        # (``distinct_columns.DistinctColumns.changelog_at``), by name.
        self._settling: list[tuple[str, Any]] = [
            (name, store) for name, store in stores.items() if hasattr(store, "take_settled")]
        if any(getattr(store, "slots", None) is not slots for store in self._columns):
            raise ValueError("column stores of one rule set with tables of slots apart")
        # A record's stores by number (ours) or by name (older detectors').
        self._by_either: dict[int | str, ChangeTracking] = {}
        for name, store in stores.items():
            self._by_either[name] = self._by_either[STORE_CODES[name]] = store

    def late(self) -> int:
        """Records that came too late for a window of these rules (once per window)."""
        return sum(store.late for store in self.stores.values())

    def changes(self) -> Iterator[tuple[str, Any]]:
        """``(key, state)`` of every key changed since the last call: ``{store: state}``,
        the stores by name, or None for a key no store holds any longer."""
        for key, value in self.encoded_changes():
            state = None if value is None else decode_state(value)
            if not key.startswith(b"/"):  # a settled record (``changelog_at``), as it is
                yield key.decode(), state
                continue
            yield key.decode(), None if state is None else {
                STORE_NAMES[code]: held for code, held in state.items()}

    def encoded_changes(self) -> list[tuple[bytes, bytes | None]]:
        """``changes`` as changelog records: each key's states written at once for a few
        thousand keys, by kernels where a store has its states in columns
        (``encoded_at``, ``msgpack_columns``)."""
        from services.detector import msgpack_columns  # beside the columns, as they are

        # The column stores say which slots changed: the keys' slots, without a lookup
        # of their names.
        listed: list[np.ndarray] = []
        named: set[str] = set()
        for store in self.stores.values():
            if store in self._columns:
                changed_slots, forgotten = store.take_changed_slots()  # type: ignore[attr-defined]
                listed.append(changed_slots)
                named |= forgotten
            else:
                named |= store.take_changed()
        out: list[tuple[bytes, bytes | None]] = []
        if "" in named:  # the stores' own scalars, read one by one
            named.discard("")
            states = {STORE_CODES[name]: store.state_of("")
                      for name, store in self.stores.items()}
            self._add(out, "", encode_state(states) if any(
                state is not None for state in states.values()) else None)
        changed_keys: list[str] = []
        slots_of = np.empty(0, np.int64)
        if any(map(len, listed)):
            slots_of = np.unique(np.concatenate(listed)).astype(np.int64)
            found = list(map(self.slots.names.__getitem__, slots_of.tolist()))
            if None in found:  # slots freed since: their names went with them
                kept = [key is not None for key in found]
                slots_of = slots_of[np.array(kept, np.bool_)]
                found = list(compress(found, kept))
            changed_keys = cast("list[str]", found)
            named.difference_update(changed_keys)
        if named:
            others = list(named)
            changed_keys += others
            slots_of = np.concatenate([slots_of, self.slots.known(others)])
        codes = [STORE_CODES[name] for name in self.stores]
        add = out.append
        for start in range(0, len(changed_keys), STATES_AT_ONCE):
            keys = changed_keys[start:start + STATES_AT_ONCE]
            slots = slots_of[start:start + STATES_AT_ONCE]
            encoded = [store.changelog_at(slots) if store in self._columns  # type: ignore[attr-defined]
                       else msgpack_columns.joined([
                           None if (state := store.state_of(key)) is None else
                           encode_state(state) for key in keys])
                       for store in self.stores.values()]
            # A long window's settled records go before the keys' records that follow
            # them: a restore reads a settled record first.
            for name, store in self._settling:
                out.extend((f"{name}+/{key}".encode(), value)
                           for key, value in store.take_settled())
            raw, ends, held = msgpack_columns.values(codes, encoded)
            begin = 0
            for key, end, holds in zip(keys, ends.tolist(), held.tolist(), strict=True):
                if holds:
                    add((f"/{key}".encode(), raw[begin:end]))
                else:
                    self._add(out, key, None)
                begin = end
        return out

    def _add(self, out: list[tuple[bytes, bytes | None]], key: str,
             value: bytes | None) -> None:
        out.append((f"/{key}".encode(), value))
        if value is None:
            # Once compaction has dropped that tombstone, a record an older detector
            # wrote for the key would be all that is left of it: delete those too.
            out.extend((f"{name}/{key}".encode(), None) for name in self.stores)
            for name, store in self._settling:  # and its settled records
                if key in store.settled_names:
                    store.settled_names.discard(key)
                    out.append((f"{name}+/{key}".encode(), None))

    def flush(self) -> None:
        """Put what was restored in the column stores now (they take it at their first
        read otherwise): the decoded states go."""
        for store in self.stores.values():
            flush = getattr(store, "end_restore", None) or getattr(store, "flush", None)
            if flush is not None:
                flush()

    def restore(self, key: str, state: Any) -> None:
        """Take back a record (``state`` decoded: ``{store: state}``, by number or by
        name, or None)."""
        if key.startswith("/"):
            inner = intern(key[1:])  # one copy of a name in every store
            if state is None:  # no store holds the key
                for store in self.stores.values():
                    store.restore(inner, None)
                return
            stores = self._by_either
            for name, held in state.items():
                store = stores.get(name)  # type: ignore[assignment]  # None is checked next
                if store is not None:  # one this detector does not run: left out
                    store.restore(inner, held)
            return
        name, _, inner = key.partition("/")  # a changelog of a record per store
        if name.endswith("+"):  # a long window's settled record (``changelog_at``)
            settling = self.stores.get(name[:-1])
            if settling is not None and hasattr(settling, "restore_settled"):
                settling.restore_settled(intern(inner), state)
            return
        store = self.stores.get(name)  # type: ignore[assignment]  # None is checked next
        if store is not None:  # a rule no longer run leaves its old state behind
            store.restore(inner, state)

    def restore_batch(self, keys: list[str], states: list[Any]) -> None:
        """``restore`` of each record in turn, each store handed its keys and states
        together (``restore_many``): a call a store a chunk, not a call a store a key."""
        every = list(self.stores.values())
        stores = self._by_either
        by_store: dict[ChangeTracking, tuple[list[str], list[Any]]] = {
            store: ([], []) for store in every}
        for key, state in zip(keys, states, strict=True):
            if not key.startswith("/"):  # a record per store: after those before it
                self._restore_grouped(by_store)
                self.restore(key, state)
                continue
            inner = intern(key[1:])  # one copy of a name in every store
            if state is None:  # no store holds the key
                for store in every:
                    held_keys, held = by_store[store]
                    held_keys.append(inner)
                    held.append(None)
                continue
            for name, value in state.items():
                store = stores.get(name)  # type: ignore[assignment]  # None is checked next
                if store is not None:  # one this detector does not run: left out
                    held_keys, held = by_store[store]
                    held_keys.append(inner)
                    held.append(value)
        self._restore_grouped(by_store)

    @staticmethod
    def _restore_grouped(by_store: dict[ChangeTracking, tuple[list[str], list[Any]]]
                         ) -> None:
        for store, (keys, states) in by_store.items():
            if keys:
                store.restore_many(keys, states)
                keys.clear()
                states.clear()


class SourceRules(_RuleSet):
    """Velocity (with the source's pace), the amount anomaly and, for a model,
    counterparty novelty: what one source did, where its records are.

    A batch is judged at once (``evaluate_batch``): the sources get dense slots, and the
    velocity window, the pace, the habits and the recent payees, held in columns by
    slot, and card testing's tiny payments (``card_columns``), go through compiled
    kernels. ``Velocity``, ``AmountAnomaly``, ``CounterpartyNovelty`` and
    ``CardTesting`` are the reference the columns are held to, a record at a time."""

    def __init__(self, settings: RuleSettings | None = None,
                 names: tuple[str, ...] = SOURCE_RULES, novelty: bool = False) -> None:
        # Here, not at the top: every service reads RuleSettings, few run the rules.
        from services.detector.card_columns import CardColumns
        from services.detector.columns import (
            BatchVelocity,
            HabitColumns,
            NoveltyColumns,
            Slots,
        )
        from services.detector.kernels import rounded_array as compiled_rounding

        self._rounded = compiled_rounding

        settings = settings or RuleSettings()
        self.slots = Slots()
        self.velocity = BatchVelocity(settings, self.slots) if "velocity" in names else None
        self.anomaly = HabitColumns(self.slots, settings) \
            if "amount_anomaly" in names else None
        self.card_testing = CardColumns(self.slots, settings) \
            if "card_testing" in names else None
        self.novelty = NoveltyColumns(self.slots) if novelty else None
        stores: dict[str, Any] = {}
        if self.velocity is not None:
            stores[self.velocity.name] = self.velocity.events
            stores[self.velocity.pace.name] = self.velocity.pace
        if self.anomaly is not None:
            stores[self.anomaly.name] = self.anomaly
        if self.card_testing is not None:
            stores[self.card_testing.name] = self.card_testing
        if self.novelty is not None:
            stores[self.novelty.name] = self.novelty
        super().__init__(stores, self.slots)

    def configure(self) -> None:
        if self.velocity is not None:
            self.velocity.configure()
        if self.card_testing is not None:
            self.card_testing.configure()

    def evaluate(self, source: str, target: str, amount: float, ts: int,
                 hits: list[Hit], features: dict[str, float]) -> None:
        """Adds this transaction's hits and features to ``hits`` and ``features``."""
        [(found, figures)] = self.evaluate_batch([source], [target], [amount], [ts])
        hits.extend(found)
        features.update(figures)

    def evaluate_batch(self, sources: list[str], targets: list[str], amounts: list[float],
                       times: list[int]) -> list[tuple[list[Hit], dict[str, float]]]:
        """Each transaction's hits and features, in order, as if judged one by one."""
        return self.judge_columns(sources, targets, amounts, times).records(len(sources))

    def judge_columns(self, sources: list[str], targets: list[str], amounts: list[float],
                      times: list[int], *, amounts_of: np.ndarray | None = None,
                      ts: np.ndarray | None = None) -> Judged:
        """``evaluate_batch``'s hits and figures, in columns; ``amounts_of`` and ``ts``:
        the amounts and times as arrays, when the caller has them."""
        # Names are kept as the stores first saw them (a dict keeps its first key): only
        # what a store holds as a value, the payees, is interned, where it is kept.
        velocity, anomaly, novelty = self.velocity, self.anomaly, self.novelty
        card_testing = self.card_testing
        columns = velocity is not None or anomaly is not None or novelty is not None \
            or card_testing is not None
        if columns:
            slots = self.slots.of(sources)
        if ts is None:
            ts = np.array(times, np.int64)
        if amounts_of is None:
            amounts_of = np.array(amounts, np.float64)
        figures: dict[str, np.ndarray] = {}
        hits: dict[int, list[Hit]] = {}
        if velocity is not None:
            counts, expected, gaps, new, fires = velocity.judge_batch(slots, ts)
            figures["velocity"] = counts
            figures["velocity_usual"] = self._rounded(expected, 2)
            figures["gap_s"] = self._rounded(gaps, 1)
            figures["new_account"] = new.astype(np.float64)
            self._velocity_hits(hits, np.flatnonzero(fires).tolist(), counts, expected)
        if anomaly is not None:
            z, log_z, ratio, history, fired, means = anomaly.judge_batch(
                slots, amounts_of)
            figures["amount_z"] = self._rounded(z, 2)
            figures["amount_log_z"] = self._rounded(log_z, 2)
            figures["amount_ratio"] = self._rounded(ratio, 3)
            figures["history"] = history
            for i in np.flatnonzero(fired).tolist():
                amount, mean = amounts[i], float(means[i])
                _hit_at(hits, i, Hit("amount_anomaly", f"amount {amount:g} is "
                                     f"{amount / mean:.1f}x the account's mean of {mean:.2f}"))
        if novelty is not None:
            novel, lately, streak = novelty.judge_batch(slots, targets, ts)
        if card_testing is not None:
            tiny_payees, card_hits = card_testing.judge_columns(slots, targets, amounts_of, ts)
            figures["tiny_payees"] = tiny_payees
            for i, hit in card_hits:
                _hit_at(hits, i, hit)
        if columns:
            self.slots.settle()
        if novelty is not None:
            figures["novelty"] = novel
            figures["new_payees"] = self._rounded(lately, 2)
            figures["new_streak"] = streak
        return Judged(figures, hits)

    def _velocity_hits(self, hits: dict[int, list[Hit]], fired: list[int],
                       counts: np.ndarray, expected: np.ndarray) -> None:
        """The velocity rule's hits, the first of their records'."""
        assert self.velocity is not None
        window_s = f"{self.velocity.events.window.length_ms / 1000:g}"
        for i in fired:
            reason = f"{int(counts[i])} transactions from the source within {window_s} s"
            pace = float(expected[i])
            if pace >= 0.1:
                reason += f", its pace predicts {pace:.1f}"
            hits[i] = [Hit("velocity", reason)]


_VELOCITY_FIGURES = ("velocity", "velocity_usual", "gap_s", "new_account")
_ANOMALY_FIGURES = ("amount_z", "amount_log_z", "amount_ratio", "history")
# The figures of every rule about sources, as ``SourceRules`` writes them.
_SOURCE_FIGURES = (*_VELOCITY_FIGURES, *_ANOMALY_FIGURES, "tiny_payees")


class TargetRules(_RuleSet):
    """Fan-in and, for a model (``novelty``), how often the target was paid lately:
    who paid one target, where the target's records are.

    A batch at once (``evaluate_batch``): the targets get dense slots, and the payer
    mix, the payee history and the fan-in windows (``distinct_columns``), in columns,
    go through kernels."""

    def __init__(self, settings: RuleSettings | None = None,
                 names: tuple[str, ...] = TARGET_RULES, novelty: bool = False) -> None:
        from services.detector.columns import MixColumns, PayeeColumns, Slots  # as above
        from services.detector.kernels import rounded_array as compiled_rounding

        self._rounded = compiled_rounding

        settings = settings or RuleSettings()
        self.slots = Slots()
        self.mix = MixColumns(self.slots, round(settings.fan_in_new_window_s * 1000)) \
            if "fan_in" in names else None
        self.fan_in = FanIn(settings, self.mix, self.slots) if "fan_in" in names else None
        self.payees = PayeeColumns(self.slots) if novelty else None
        stores: dict[str, Any] = {}
        if self.fan_in is not None:
            stores[self.fan_in.name] = self.fan_in.events
            stores["fan_in_suspects"] = self.fan_in.suspects
            stores["fan_in_new"] = self.fan_in.newcomers
            stores["payer_mix"] = self.mix
        if self.payees is not None:
            stores[self.payees.name] = self.payees
        super().__init__(stores, self.slots)

    def configure(self) -> None:
        if self.fan_in is not None:
            self.fan_in.configure()

    def evaluate(self, target: str, source: str, ts: int,
                 hits: list[Hit], features: dict[str, float],
                 order: int | None = None) -> None:
        """Adds this transaction's hits and features; ``order`` as ``FanIn.evaluate``."""
        self.evaluate_batch([target], [source], [ts], [hits], [features],
                            None if order is None else [order])

    def evaluate_batch(self, targets: list[str], sources: list[str], times: list[int],
                       hits: list[list[Hit]], features: list[dict[str, float]],
                       orders: list[int] | None = None) -> None:
        """Adds each transaction's hits and features, in order, as if judged one by
        one; ``orders`` as ``FanIn.evaluate`` (None: each record's order is its time)."""
        if self.fan_in is None and self.payees is None:
            return
        # Whether each payer is new (``FanIn._new``), for the mix and the windows.
        new = np.array([figures.get("new_account", 0.0) for figures in features],
                       np.float64) != 0.0
        suspect = None if self.fan_in is None else self.fan_in.mule_like(features, new)
        judged = self.judge_columns(targets, sources, times, new, suspect, orders)
        for name, column in judged.figures.items():
            for figures, value in zip(features, column.tolist(), strict=True):
                figures[name] = value
        for i, found in judged.hits.items():
            hits[i].extend(found)

    def judge_payers(self, targets: list[str], sources: list[str], times: list[int],
                     payers: dict[str, np.ndarray], *, ts: np.ndarray | None = None) -> Judged:
        """``judge_columns`` with what the first stage found of each payer in columns
        (``SourceRules.judge_columns``'s figures)."""
        new_account = payers.get("new_account")
        new = np.zeros(len(targets), np.bool_) if new_account is None else new_account != 0.0
        suspect = None if self.fan_in is None else \
            self.fan_in.mule_like_columns(payers, new)
        return self.judge_columns(targets, sources, times, new, suspect, ts=ts)

    def judge_columns(self, targets: list[str], sources: list[str], times: list[int],
                      new: np.ndarray, suspect: np.ndarray | None,
                      orders: list[int] | None = None, *, ts: np.ndarray | None = None
                      ) -> Judged:
        """``evaluate_batch``'s figures and hits, in columns, from whether each payer is
        new and looks like a mule's (``FanIn.mule_like``)."""
        # Each record brings its names anew: the payers' table keeps one copy of each
        # (``PayerTable``); targets are keys, kept as first seen.
        fan_in, mix, payees = self.fan_in, self.mix, self.payees
        figures: dict[str, np.ndarray] = {}
        hits: dict[int, list[Hit]] = {}
        if fan_in is None and payees is None:
            return Judged(figures, hits)
        slots = self.slots.of(targets)
        if ts is None:
            ts = np.array(times, np.int64)
        by_order = None if orders is None else np.array(orders, np.int64)
        ordered = ts if by_order is None else by_order
        if fan_in is not None and mix is not None:
            assert suspect is not None
            shares = mix.add_batch(slots, ts, ordered, new)
            # The payers' figures came from the first stage, with the records.
            n, m, fresh = fan_in.judge_columns(slots, sources, ts, suspect, new, by_order)
        if payees is not None:
            paid = payees.evaluate_batch(slots, ordered)
        self.slots.settle()
        if fan_in is not None:
            figures["fan_in"] = n
            figures["fan_in_new"] = fresh
            figures["new_payer_share"] = self._rounded(shares, 3)
            for i, hit in fan_in.judged_columns(n, m, fresh, shares):
                hits[i] = [hit]
        if payees is not None:
            figures["payee_paid"] = self._rounded(paid, 2)
        return Judged(figures, hits)


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
        self.by_target = TargetRules(self.settings, names, novelty)

    def configure(self) -> None:
        self.by_source.configure()
        self.by_target.configure()

    def evaluate(self, source: str, target: str, amount: float,
                 ts: int) -> tuple[list[Hit], dict[str, float]]:
        [judged] = self.evaluate_batch([source], [target], [amount], [ts])
        return judged

    def evaluate_batch(self, sources: list[str], targets: list[str], amounts: list[float],
                       times: list[int]) -> list[tuple[list[Hit], dict[str, float]]]:
        """Each transaction's hits and features, in order, as if judged one by one."""
        return self.judge_columns(sources, targets, amounts, times).records(len(sources))

    def judge_columns(self, sources: list[str], targets: list[str], amounts: list[float],
                      times: list[int], *, amounts_of: np.ndarray | None = None) -> Judged:
        """``evaluate_batch`` in columns: the stores about sources and those about
        targets are apart, so the first take the whole batch, then the second.
        ``amounts_of``: the amounts as an array, when the caller has it."""
        ts = np.array(times, np.int64)
        by_source = self.by_source.judge_columns(sources, targets, amounts, times,
                                                 amounts_of=amounts_of, ts=ts)
        by_target = self.by_target.judge_payers(targets, sources, times, by_source.figures,
                                                ts=ts)
        figures, hits = by_source
        figures.update(by_target.figures)
        for i, found in by_target.hits.items():
            hits.setdefault(i, []).extend(found)
        return Judged(figures, hits)
