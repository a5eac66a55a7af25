"""Customer accounts with habits of their own, and the everyday traffic they make. Pure.

Rules that judge an account against its own history (amount anomaly, novelty of a
counterparty, velocity) need accounts that have a history worth the name: the same
account pays similar amounts, mostly to the same few counterparties, at its own pace
and at its own hours. A population is built once from a seed, so a seeded run sees
the same customers every time.

Everyday traffic stays unremarkable by construction, which is what lets the fraud
scenarios stand out: amounts follow each account's log-normal habit, about nine
payments in ten go to one of its usual counterparties, and payees are spread evenly
over the population (there are no hot merchants that would look like a fan-in).
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

ACCOUNT_ALPHABET = string.ascii_uppercase + string.digits
ACCOUNT_LENGTH = 12
CURRENCIES = ("EUR", "EUR", "EUR", "USD", "USD", "GBP")

# Share of everyday payments that go to one of the payer's usual counterparties; the
# rest go to an account it has (most likely) never paid.
USUAL_SHARE = 0.9

# When each kind of customer is active, in hours of the day (UTC, of the event time).
# Outside its hours an account still pays now and then, at QUIET_FACTOR of its pace.
CHRONOTYPES: dict[str, tuple[int, int]] = {
    "early": (5, 13),
    "office": (8, 18),
    "evening": (15, 23),
    "night": (20, 28),  # 20:00 to 04:00
}
CHRONOTYPE_WEIGHTS = (2, 4, 3, 1)
QUIET_FACTOR = 0.1
HOUR_MS = 3_600_000

# Standard normal quantiles at evenly spaced probabilities: one index into this table
# is a normal draw at a third of ``random.gauss``'s cost, with tails cut at about 3.5
# sigmas (so everyday amounts never stray into what a fraud scenario looks like).
_NORMAL = tuple(NormalDist().inv_cdf((k + 0.5) / 2048) for k in range(2048))


@dataclass(frozen=True, slots=True)
class Account:
    """One customer and its habits."""

    id: str
    typical_amount: float  # the median of its payments
    spread: float  # standard deviation of the log of its amounts
    counterparties: tuple[str, ...]  # whom it usually pays
    activity: float  # relative pace: an account of activity 2 pays twice as often as 1
    chronotype: str  # a key of CHRONOTYPES: the hours it is active
    currency: str

    def active_at(self, hour: int) -> bool:
        return _active(self.chronotype, hour)


def _active(chronotype: str, hour: int) -> bool:
    start, end = CHRONOTYPES[chronotype]
    return start <= hour < end or start <= hour + 24 < end


def new_account_id(rng: random.Random) -> str:
    return "".join(rng.choices(ACCOUNT_ALPHABET, k=ACCOUNT_LENGTH))


class Population:
    """``size`` accounts drawn from ``seed``: the same seed, the same customers.

    Sampling is per batch and by index into flat lists, so that an everyday payment
    costs a few random draws and no object is built per transaction.
    """

    def __init__(self, seed: int | str | None = None, size: int = 50_000) -> None:
        if size < 100:
            raise ValueError("a population needs at least 100 accounts")
        rng = random.Random(seed)
        ids: list[str] = []
        known: set[str] = set()
        while len(ids) < size:
            ident = new_account_id(rng)
            if ident not in known:
                known.add(ident)
                ids.append(ident)
        kinds = tuple(CHRONOTYPES)
        accounts = []
        for index, ident in enumerate(ids):
            want, usual = rng.randint(3, 8), set[int]()
            while len(usual) < want:
                other = rng.randrange(size)
                if other != index:
                    usual.add(other)
            accounts.append(Account(
                id=ident,
                # Median about 40 with a long tail: most pay tens, a few pay hundreds.
                typical_amount=round(min(2_000.0, max(2.0, rng.lognormvariate(
                    math.log(40), 0.9))), 2),
                spread=round(rng.uniform(0.2, 0.6), 3),
                counterparties=tuple(ids[i] for i in sorted(usual)),
                activity=round(rng.lognormvariate(0.0, 0.8), 4),
                chronotype=rng.choices(kinds, CHRONOTYPE_WEIGHTS)[0],
                currency=rng.choice(CURRENCIES),
            ))
        self.accounts: list[Account] = accounts
        self.ids: list[str] = ids
        self._known = known
        index_of = {ident: i for i, ident in enumerate(ids)}
        # Flat views for the hot path.
        self._mu = [math.log(a.typical_amount) for a in accounts]
        self._sigma = [a.spread for a in accounts]
        self._usual = [tuple(index_of[c] for c in a.counterparties) for a in accounts]
        self._currency = [a.currency for a in accounts]
        self._members: dict[str, list[int]] = {kind: [] for kind in kinds}
        for i, a in enumerate(accounts):
            self._members[a.chronotype].append(i)
        self._cum_activity: dict[str, list[float]] = {}
        for kind, members in self._members.items():
            total, cum = 0.0, []
            for i in members:
                total += accounts[i].activity
                cum.append(total)
            self._cum_activity[kind] = cum
        # Weight of each chronotype at each hour of the day.
        self._hour_weights = [
            [(cum[-1] if cum else 0.0) * (1.0 if _active(kind, hour) else QUIET_FACTOR)
             for kind, cum in self._cum_activity.items()]
            for hour in range(24)
        ]

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, account_id: object) -> bool:
        return account_id in self._known

    def fresh_account(self, rng: random.Random) -> str:
        """An account id outside the population: a payee nobody has paid before."""
        while True:
            ident = new_account_id(rng)
            if ident not in self._known:
                return ident

    def pick(self, rng: random.Random, count: int, ts_ms: int) -> list[int]:
        """Indices of ``count`` payers, by activity and by who is awake at ``ts_ms``."""
        hour = (ts_ms // HOUR_MS) % 24
        kinds = rng.choices(tuple(self._members), self._hour_weights[hour], k=count)
        picked: list[int] = []
        for kind in self._members:
            n = kinds.count(kind)
            if n:
                picked += rng.choices(self._members[kind], cum_weights=self._cum_activity[kind],
                                      k=n)
        return picked

    def everyday(self, rng: random.Random, count: int, ts_ms: int
                 ) -> list[tuple[str, str, float, str]]:
        """``count`` everyday payments ``(source, target, amount, currency)``, each in its
        payer's habits."""
        ids, mu, sigma, usual, currency = (self.ids, self._mu, self._sigma, self._usual,
                                           self._currency)
        random_, randrange, exp, normal = rng.random, rng.randrange, math.exp, _NORMAL
        size, quantiles = len(ids), len(_NORMAL)
        out = []
        for i in self.pick(rng, count, ts_ms):
            draw = random_()
            if draw < USUAL_SHARE:  # one draw decides both whether and which usual one
                mine = usual[i]
                target = mine[int(draw / USUAL_SHARE * len(mine))]
            else:
                target = randrange(size)
                if target == i:
                    target = (i + 1) % size
            z = normal[int(random_() * quantiles)]
            amount = int(exp(mu[i] + sigma[i] * z) * 100 + 0.5) / 100
            if amount < 0.5:
                amount = 0.5
            out.append((ids[i], ids[target], amount, currency[i]))
        return out

    def sample(self, rng: random.Random, count: int) -> Sequence[Account]:
        """``count`` distinct accounts, chosen evenly (victims, compromised cards)."""
        return [self.accounts[i] for i in rng.sample(range(len(self.ids)), count)]
