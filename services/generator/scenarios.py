"""Fraud scenarios: what each kind of fraud looks like as a plan of payments. Pure.

A scenario is planned whole when it starts: a list of steps, each a payment due at an
offset in event time from the start. The profile that mixes them into everyday
traffic sends each step when the stream's clock reaches it, so a scenario unfolds
over several transactions, interleaved with everything else.

The time spans are chosen for a live stream, where event time is the time of sending:

- card testing: 10-20 payments of 0.10-2.00 from one card to as many payees within
  ``CARD_TESTING_SPAN_MS`` (1 minute);
- velocity burst: 8-15 payments of the account's usual size to payees it does not
  know, within ``VELOCITY_SPAN_MS`` (2 minutes);
- account takeover: 1-3 payments of 10-40 times the account's typical amount (at
  least ``TAKEOVER_MIN_AMOUNT``) to one counterparty that nobody has paid before,
  within ``TAKEOVER_SPAN_MS`` (5 minutes);
- mule fan-in: ``FAN_IN_SOURCES`` (40-60) distinct accounts each pay about 1,000 to
  one new account within ``FAN_IN_WINDOW_MS`` (10 minutes). Real mule rings gather
  over a day or more; at the default 100 transactions per second a day-long scenario
  would take a day to watch, so event time is compressed to ten minutes;
- large amount: one payment of ``LARGE_AMOUNT_RANGE`` (3,000-20,000) to one of the
  account's usual counterparties: an outlier in size alone.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from services.generator.population import Population

CARD_TESTING = "card_testing"
VELOCITY_BURST = "velocity_burst"
ACCOUNT_TAKEOVER = "account_takeover"
MULE_FAN_IN = "mule_fan_in"
LARGE_AMOUNT = "large_amount"

CARD_TESTING_SPAN_MS = 60_000
CARD_TESTING_STEPS = (10, 20)
CARD_TESTING_AMOUNT = (0.10, 2.00)
VELOCITY_SPAN_MS = 120_000
VELOCITY_STEPS = (8, 15)
TAKEOVER_SPAN_MS = 300_000
TAKEOVER_STEPS = (1, 3)
TAKEOVER_FACTOR = (10.0, 40.0)
TAKEOVER_MIN_AMOUNT = 300.0
FAN_IN_WINDOW_MS = 600_000
FAN_IN_SOURCES = (40, 60)
FAN_IN_AMOUNT = (850.0, 1_150.0)
LARGE_AMOUNT_RANGE = (3_000.0, 20_000.0)


@dataclass(frozen=True, slots=True)
class Step:
    """One payment of a scenario, due ``offset_ms`` after the scenario starts."""

    offset_ms: int
    source: str
    target: str
    amount: float
    currency: str


def _offsets(rng: random.Random, count: int, span_ms: int) -> list[int]:
    """``count`` sorted offsets within ``span_ms``, the first at 0 (it starts now)."""
    within = int(span_ms * rng.uniform(0.5, 1.0))
    return [0, *sorted(rng.randrange(within) for _ in range(count - 1))]


def _cents(amount: float) -> float:
    return round(amount, 2)


def card_testing(population: Population, rng: random.Random) -> list[Step]:
    """A stolen card checked with tiny payments to many merchants in a burst."""
    card = population.sample(rng, 1)[0]
    count = rng.randint(*CARD_TESTING_STEPS)
    payees = [population.ids[i] for i in rng.sample(range(len(population)), count)]
    return [Step(offset, card.id, payee, _cents(rng.uniform(*CARD_TESTING_AMOUNT)),
                 card.currency)
            for offset, payee in zip(_offsets(rng, count, CARD_TESTING_SPAN_MS), payees,
                                     strict=True)]


def velocity_burst(population: Population, rng: random.Random) -> list[Step]:
    """A compromised account spending fast, in amounts that look like its own."""
    account = population.sample(rng, 1)[0]
    count = rng.randint(*VELOCITY_STEPS)
    known = {*account.counterparties, account.id}
    payees: list[str] = []
    while len(payees) < count:
        payee = population.ids[rng.randrange(len(population))]
        if payee not in known:
            known.add(payee)
            payees.append(payee)
    return [Step(offset, account.id, payee,
                 _cents(max(1.0, rng.lognormvariate(0, account.spread)
                            * account.typical_amount)),
                 account.currency)
            for offset, payee in zip(_offsets(rng, count, VELOCITY_SPAN_MS), payees,
                                     strict=True)]


def account_takeover(population: Population, rng: random.Random) -> list[Step]:
    """Someone else in the account, draining it to a payee it has never paid."""
    victim = population.sample(rng, 1)[0]
    payee = population.fresh_account(rng)
    count = rng.randint(*TAKEOVER_STEPS)
    return [Step(offset, victim.id, payee,
                 _cents(max(TAKEOVER_MIN_AMOUNT,
                            victim.typical_amount * rng.uniform(*TAKEOVER_FACTOR))),
                 victim.currency)
            for offset in _offsets(rng, count, TAKEOVER_SPAN_MS)]


def mule_fan_in(population: Population, rng: random.Random) -> list[Step]:
    """Many distinct accounts paying about 1,000 each into one new (mule) account."""
    mule = population.fresh_account(rng)
    sources = population.sample(rng, rng.randint(*FAN_IN_SOURCES))
    return [Step(offset, source.id, mule, _cents(rng.uniform(*FAN_IN_AMOUNT)), "EUR")
            for offset, source in zip(_offsets(rng, len(sources), FAN_IN_WINDOW_MS), sources,
                                      strict=True)]


def large_amount(population: Population, rng: random.Random) -> list[Step]:
    """One payment far beyond anything the account does, to someone it knows."""
    account = population.sample(rng, 1)[0]
    return [Step(0, account.id, rng.choice(account.counterparties),
                 _cents(rng.uniform(*LARGE_AMOUNT_RANGE)), account.currency)]


Planner = Callable[[Population, random.Random], list[Step]]

# Every scenario, with how many of each start per 25 starts. A fan-in has about 50
# payments and a large amount one, so these weights give each scenario a fair share of
# the fraudulent transactions: about 23 % card testing, 17 % velocity bursts, 15 %
# takeovers, 38 % fan-in and 8 % large amounts.
SCENARIOS: dict[str, tuple[Planner, int]] = {
    CARD_TESTING: (card_testing, 2),
    VELOCITY_BURST: (velocity_burst, 2),
    ACCOUNT_TAKEOVER: (account_takeover, 10),
    MULE_FAN_IN: (mule_fan_in, 1),
    LARGE_AMOUNT: (large_amount, 10),
}

# The mean number of payments of each scenario, for the mix to turn a share of
# transactions into a rate of starts.
MEAN_STEPS: dict[str, float] = {
    CARD_TESTING: sum(CARD_TESTING_STEPS) / 2,
    VELOCITY_BURST: sum(VELOCITY_STEPS) / 2,
    ACCOUNT_TAKEOVER: sum(TAKEOVER_STEPS) / 2,
    MULE_FAN_IN: sum(FAN_IN_SOURCES) / 2,
    LARGE_AMOUNT: 1.0,
}


class ScenarioDeck:
    """Which scenario starts next: a shuffled deck holding each scenario as often as
    its weight, dealt to the end and then reshuffled. Unlike independent draws, every
    scenario appears within the first deal, even in a short run."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._cards: list[str] = []

    def deal(self) -> str:
        if not self._cards:
            self._cards = [name for name, (_, weight) in SCENARIOS.items()
                           for _ in range(weight)]
            self._rng.shuffle(self._cards)
        return self._cards.pop()

    @staticmethod
    def mean_steps() -> float:
        """Payments per started scenario, on average over a deal."""
        total = sum(weight for _, weight in SCENARIOS.values())
        return sum(MEAN_STEPS[name] * weight for name, (_, weight) in SCENARIOS.items()) / total
