"""Pacing on a schedule: message n is due at ``start + n / rate``. Pure.

A loop that sleeps ``1 / rate`` per message drifts by every sleep's overshoot and
cannot go beyond a few thousand per second; a schedule catches up after a slow turn
by sending what is due in one batch, so the achieved rate stays on target. When
the sender falls more than ``max_lag`` seconds behind, the debt is dropped (the rate
cannot be met) and counted, so the caller can say so plainly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Pacer:
    rate: float
    now: float
    max_lag: float = 1.0
    max_batch: int = 10_000
    paused: bool = False
    dropped: int = 0  # messages the schedule gave up on since the start
    _start: float = field(init=False)
    _sent: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._start = self.now

    def retarget(self, rate: float, now: float) -> None:
        """A new rate from now on; what was sent before keeps its pace."""
        self.rate = rate
        self._start = now
        self._sent = 0

    def pause(self, paused: bool, now: float) -> None:
        if paused != self.paused:
            self.paused = paused
            self.retarget(self.rate, now)

    def due(self, now: float) -> int:
        """How many messages to send now (at most ``max_batch``)."""
        if self.paused or self.rate <= 0:
            return 0
        # The epsilon keeps float error from postponing a message that is due exactly now.
        owed = math.floor((now - self._start) * self.rate + 1e-9) - self._sent
        behind = owed - self.rate * self.max_lag
        if behind > 0:
            skipped = math.ceil(behind)
            self.dropped += skipped
            self._sent += skipped
            owed -= skipped
        return max(0, min(owed, self.max_batch))

    def sent(self, count: int) -> None:
        self._sent += count

    def wait(self, now: float, shortest: float = 0.0, longest: float = 0.05) -> float:
        """Seconds until the next message is due, from ``shortest`` up to ``longest``.

        A sender whose turn costs about the same for one message as for fifty passes
        a ``shortest``: at high rates it then wakes every ``shortest`` seconds and
        sends what is due in one batch, instead of waking for every message.
        """
        if self.paused or self.rate <= 0:
            return longest
        next_at = self._start + (self._sent + 1) / self.rate
        return min(longest, max(shortest, next_at - now))


def turn_length(rate: float, records: int, shortest: float, longest: float) -> float:
    """Seconds between a sender's turns at ``rate``: long enough to send about
    ``records`` a turn, from ``shortest`` to ``longest``."""
    if rate <= 0:
        return longest
    return min(longest, max(shortest, records / rate))


@dataclass
class RateMeter:
    """Achieved rate over a sliding span of seconds, from counts at instants."""

    span: float = 5.0
    _marks: list[tuple[float, int]] = field(default_factory=list)
    _total: int = 0

    def add(self, now: float, count: int) -> None:
        self._total += count
        self._marks.append((now, self._total))
        while len(self._marks) > 2 and now - self._marks[1][0] > self.span:
            self._marks.pop(0)

    def reset(self) -> None:
        self._marks.clear()

    def rate(self) -> float:
        if len(self._marks) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._marks[0], self._marks[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
