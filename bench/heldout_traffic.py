"""Held-out traffic: fraud families the detector was not tuned on, over background
traffic that fools naive rules. Pure.

Nothing here comes from the scenario generator (``services.generator``): the families,
their parameters and the background have their own ranges and their own seed, so a
rule tuned on the generator's scenarios meets them for the first time.

Background (legit), each kind chosen because a naive rule mistakes it for fraud:

- customers with habits: a few usual shops and friends, amounts around their own
  typical one, a payment every quarter to full hour; a fifth are small-ticket
  customers (coffee, transit: a few units each time) — tiny amounts, as card testing;
- merchants paid by hundreds of accounts a day — a fan-in of distinct payers;
- a new shop paid by many established customers in its first hours — a new account
  paid by many, as a mule;
- quiet accounts that pay once or twice over the whole run, and new customers who
  open an account during it — accounts the detector never saw before, as a mule's
  payers or a fresh card;
- payroll accounts that pay hundreds of employees at once, in one bulk run — many
  payments to many distinct payees in an instant;
- busy business accounts paying suppliers all day, at a pace that varies by the hour.

Families (fraud), each instance a ``case``:

- mule fan-in: 20 to 200 accounts never seen before each pay one new account an amount
  just under the 900 threshold, over 10 minutes to 6 hours;
- card testing: 20 to 200 payments of a few units to distinct payees over 1 to 30
  minutes, from a new account or an established customer's card;
- spending burst: an established customer or a new account paying every few seconds
  (a mean gap of 2 to 6 s), amounts of its usual size, for 5 to 30 minutes;
- account takeover: an established customer's account sending 1 to 5 transfers of
  8 to 30 times its typical amount (150 to 899) to one or two new payees.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import NamedTuple

START_MS = 1_760_000_000_000
MINUTE_MS = 60_000
HOUR_MS = 3_600_000

MULE_FAN_IN = "mule_fan_in"
CARD_TESTING = "card_testing"
SPENDING_BURST = "spending_burst"
ACCOUNT_TAKEOVER = "account_takeover"
FAMILIES = (MULE_FAN_IN, CARD_TESTING, SPENDING_BURST, ACCOUNT_TAKEOVER)

# The families' own ranges.
MULE_PAYERS = (20, 200)
MULE_SPAN_MS = (10 * MINUTE_MS, 6 * HOUR_MS)
MULE_AMOUNT = (800.0, 899.99)
CARD_PAYMENTS = (20, 200)
CARD_SPAN_MS = (1 * MINUTE_MS, 30 * MINUTE_MS)
CARD_AMOUNT = (0.5, 4.99)
BURST_SPAN_MS = (5 * MINUTE_MS, 30 * MINUTE_MS)
BURST_GAP_S = (2.0, 6.0)
TAKEOVER_TRANSFERS = (1, 5)
TAKEOVER_FACTOR = (8.0, 30.0)
TAKEOVER_AMOUNT = (150.0, 899.0)
TAKEOVER_SPAN_MS = (2 * MINUTE_MS, 60 * MINUTE_MS)
LEGIT_MAX_AMOUNT = 880.0  # the threshold's false alarms would measure nothing new


class Tx(NamedTuple):
    ts: int
    source: str
    target: str
    amount: float
    family: str | None  # None: legit
    case: str  # the family instance, or the background kind of a legit payment


@dataclass(frozen=True)
class Scale:
    """How much traffic: the full run, or a small one for a test."""

    warmup_h: float = 3.0
    measured_h: float = 7.0
    customers: int = 2500
    merchants: int = 40
    quiet: int = 1500
    new_customers: int = 40
    new_shop_payers: int = 150
    payrolls: int = 2
    payroll_staff: tuple[int, int] = (150, 400)
    busy: int = 4
    # Family instances in the warm-up (labelled for the model, not counted) and after.
    warmup_cases: int = 4
    mules: int = 10
    card_tests: int = 12
    bursts: int = 10
    takeovers: int = 25

    @classmethod
    def quick(cls) -> Scale:
        return cls(warmup_h=1.5, measured_h=1.5, customers=300, merchants=12, quiet=150,
                   new_customers=5, new_shop_payers=40, payrolls=1,
                   payroll_staff=(60, 80), busy=1, warmup_cases=1, mules=2, card_tests=2,
                   bursts=2, takeovers=4)

    @property
    def warmup_end(self) -> int:
        return START_MS + round(self.warmup_h * HOUR_MS)

    @property
    def end(self) -> int:
        return self.warmup_end + round(self.measured_h * HOUR_MS)


@dataclass
class _Customer:
    id: str
    typical: float
    spread: float
    usual: list[str]
    gap_ms: float  # mean time between payments
    kind: str


@dataclass
class _World:
    rng: random.Random
    scale: Scale
    txs: list[Tx] = field(default_factory=list)
    customers: list[_Customer] = field(default_factory=list)
    merchants: list[str] = field(default_factory=list)
    merchant_weights: list[float] = field(default_factory=list)
    serial: int = 0

    def fresh(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial:07d}"

    def amount(self, typical: float, spread: float) -> float:
        value = typical * math.exp(self.rng.gauss(0.0, spread))
        return round(min(LEGIT_MAX_AMOUNT, max(0.5, value)), 2)

    def merchant(self) -> str:
        return self.rng.choices(self.merchants, self.merchant_weights)[0]


def generate(seed: int, scale: Scale) -> list[Tx]:
    """Every transaction of the run, in event-time order."""
    world = _World(random.Random(f"heldout-{seed}"), scale)
    _population(world)
    _customers(world)
    _quiet_and_new(world)
    _new_shop(world)
    _payroll(world)
    _busy(world)
    _families(world)
    return sorted(world.txs, key=lambda tx: (tx.ts, tx.source, tx.target))


def _population(world: _World) -> None:
    rng, scale = world.rng, world.scale
    world.merchants = [world.fresh("SHOP") for _ in range(scale.merchants)]
    # A few big merchants and a long tail (Zipf-like): the big ones are paid by
    # hundreds of distinct accounts a day.
    world.merchant_weights = [1.0 / (rank + 1) ** 0.8 for rank in range(scale.merchants)]
    ids = [world.fresh("CUST") for _ in range(scale.customers)]
    for ident in ids:
        small = rng.random() < 0.2
        usual = [world.merchant() for _ in range(rng.randint(2, 4))]
        usual += rng.sample(ids, rng.randint(1, 2))  # friends
        world.customers.append(_Customer(
            ident,
            typical=rng.uniform(2.5, 6.0) if small else
            min(400.0, max(8.0, rng.lognormvariate(math.log(35.0), 0.7))),
            spread=rng.uniform(0.2, 0.5),
            usual=[u for u in dict.fromkeys(usual) if u != ident],
            gap_ms=rng.uniform(15, 60) * MINUTE_MS,
            kind="small_ticket" if small else "customer"))


def _habit_payments(world: _World, who: _Customer, start: int, end: int) -> None:
    rng = world.rng
    ts = start + rng.expovariate(1.0 / who.gap_ms)
    while ts < end:
        if rng.random() < 0.9:
            target = rng.choice(who.usual)
        else:
            target = world.merchant() if rng.random() < 0.6 else \
                rng.choice(world.customers).id
        if target != who.id:
            world.txs.append(Tx(int(ts), who.id, target,
                                world.amount(who.typical, who.spread), None, who.kind))
        ts += rng.expovariate(1.0 / who.gap_ms)


def _customers(world: _World) -> None:
    for who in world.customers:
        _habit_payments(world, who, START_MS, world.scale.end)


def _quiet_and_new(world: _World) -> None:
    rng, scale = world.rng, world.scale
    for _ in range(scale.quiet):  # once or twice over the whole run
        ident = world.fresh("QUIET")
        typical = min(400.0, max(8.0, rng.lognormvariate(math.log(40.0), 0.7)))
        for _ in range(rng.randint(1, 2)):
            ts = rng.randrange(START_MS, scale.end)
            world.txs.append(Tx(ts, ident, world.merchant(),
                                world.amount(typical, 0.4), None, "quiet"))
    for _ in range(scale.new_customers):  # open an account during the measured part
        who = _Customer(world.fresh("NEWC"), rng.lognormvariate(math.log(35.0), 0.6),
                        rng.uniform(0.2, 0.5), [world.merchant() for _ in range(3)],
                        rng.uniform(15, 60) * MINUTE_MS, "new_customer")
        _habit_payments(world, who, rng.randrange(scale.warmup_end, scale.end), scale.end)


def _new_shop(world: _World) -> None:
    """A shop that opens an hour into the measured part: many established customers
    pay it in its first hours, most of them within the first two."""
    rng, scale = world.rng, world.scale
    shop = world.fresh("NEWSHOP")
    opens = scale.warmup_end + HOUR_MS
    for who in rng.sample(world.customers, min(scale.new_shop_payers, len(world.customers))):
        for _ in range(rng.choice((1, 1, 2))):
            ts = opens + int(rng.expovariate(1.0 / (1.5 * HOUR_MS)))
            if ts < scale.end:
                world.txs.append(Tx(ts, who.id, shop,
                                    world.amount(max(who.typical, 8.0), who.spread),
                                    None, "new_shop"))


def _payroll(world: _World) -> None:
    """Business accounts paying suppliers now and then, and once in the measured part
    their staff (established customers) in one bulk run, booked at one instant."""
    rng, scale = world.rng, world.scale
    for _ in range(scale.payrolls):
        payer = world.fresh("PAYROLL")
        suppliers = [world.fresh("SUPP") for _ in range(8)]
        ts = START_MS + rng.expovariate(1.0 / (40 * MINUTE_MS))
        while ts < scale.end:
            world.txs.append(Tx(int(ts), payer, rng.choice(suppliers),
                                round(rng.uniform(100.0, 800.0), 2), None, "payroll"))
            ts += rng.expovariate(1.0 / (40 * MINUTE_MS))
        run = rng.randrange(scale.warmup_end, scale.end - 10 * MINUTE_MS)
        staff = rng.sample(world.customers, min(rng.randint(*scale.payroll_staff),
                                                len(world.customers)))
        wage = rng.uniform(350.0, 650.0)
        for who in staff:
            world.txs.append(Tx(run, payer, who.id,
                                round(min(LEGIT_MAX_AMOUNT, wage * rng.uniform(0.7, 1.3)), 2),
                                None, "payroll"))


def _busy(world: _World) -> None:
    """Business accounts paying suppliers and sellers all day: one to three payments a
    minute, busier in some hours than in others."""
    rng, scale = world.rng, world.scale
    for _ in range(scale.busy):
        payer = world.fresh("BUSY")
        partners = [world.fresh("SELLER") for _ in range(80)] + world.merchants[:5]
        per_minute = rng.uniform(1.0, 3.0)
        ts = float(START_MS)
        while ts < scale.end:
            hour = (ts - START_MS) / HOUR_MS
            rate = per_minute * (1.0 + 0.5 * math.sin(hour))  # the day's own swell
            ts += rng.expovariate(rate / MINUTE_MS)
            target = rng.choice(partners) if rng.random() < 0.95 else world.fresh("SELLER")
            world.txs.append(Tx(int(ts), payer, target,
                                round(min(LEGIT_MAX_AMOUNT, rng.lognormvariate(
                                    math.log(120.0), 0.8)), 2), None, "busy"))


def _families(world: _World) -> None:
    scale = world.scale
    counts = {MULE_FAN_IN: scale.mules, CARD_TESTING: scale.card_tests,
              SPENDING_BURST: scale.bursts, ACCOUNT_TAKEOVER: scale.takeovers}
    planners = {MULE_FAN_IN: _mule, CARD_TESTING: _card_test,
                SPENDING_BURST: _burst, ACCOUNT_TAKEOVER: _takeover}
    for family in FAMILIES:
        for i in range(scale.warmup_cases + counts[family]):
            in_warmup = i < scale.warmup_cases
            planners[family](world, f"{family}-{i}", in_warmup)


def _start(world: _World, in_warmup: bool, span_ms: int) -> int:
    """When an instance starts: all of it within the warm-up, or within the measured
    part (beginning after the warm-up, over before the end)."""
    scale = world.scale
    low, high = (START_MS + 30 * MINUTE_MS, scale.warmup_end) if in_warmup else \
        (scale.warmup_end, scale.end)
    return world.rng.randrange(low, max(low + 1, high - span_ms))


def _mule(world: _World, case: str, in_warmup: bool) -> None:
    rng = world.rng
    span = rng.randrange(*MULE_SPAN_MS)
    if in_warmup:
        span = min(span, HOUR_MS)
    start, mule = _start(world, in_warmup, span), world.fresh("MULE")
    for _ in range(rng.randint(*MULE_PAYERS)):
        world.txs.append(Tx(start + rng.randrange(span), world.fresh("FRESH"), mule,
                            round(rng.uniform(*MULE_AMOUNT), 2), MULE_FAN_IN, case))


def _card_test(world: _World, case: str, in_warmup: bool) -> None:
    rng = world.rng
    span = rng.randrange(*CARD_SPAN_MS)
    start = _start(world, in_warmup, span)
    card = world.fresh("CARD") if rng.random() < 0.5 else rng.choice(world.customers).id
    count = rng.randint(*CARD_PAYMENTS)
    for offset in sorted(rng.randrange(span) for _ in range(count)):
        world.txs.append(Tx(start + offset, card, world.fresh("WEBSHOP"),
                            round(rng.uniform(*CARD_AMOUNT), 2), CARD_TESTING, case))


def _burst(world: _World, case: str, in_warmup: bool) -> None:
    rng = world.rng
    span = rng.randrange(*BURST_SPAN_MS)
    start = _start(world, in_warmup, span)
    if rng.random() < 0.5:
        who = rng.choice([c for c in world.customers if c.kind == "customer"])
        account, typical, spread = who.id, who.typical, who.spread
    else:
        account, typical, spread = world.fresh("NEWACC"), rng.uniform(15.0, 120.0), 0.4
    gap_ms = rng.uniform(*BURST_GAP_S) * 1000
    ts = start + 0.0
    while ts < start + span:
        target = world.merchant() if rng.random() < 0.5 else world.fresh("STORE")
        world.txs.append(Tx(int(ts), account, target, world.amount(typical, spread),
                            SPENDING_BURST, case))
        ts += rng.expovariate(1.0 / gap_ms)


def _takeover(world: _World, case: str, in_warmup: bool) -> None:
    rng = world.rng
    span = rng.randrange(*TAKEOVER_SPAN_MS)
    start = _start(world, in_warmup, span)
    victim = rng.choice([c for c in world.customers if c.kind == "customer"])
    payees = [world.fresh("DRAIN") for _ in range(rng.randint(1, 2))]
    for offset in sorted(rng.randrange(span) for _ in range(rng.randint(*TAKEOVER_TRANSFERS))):
        amount = min(TAKEOVER_AMOUNT[1], max(TAKEOVER_AMOUNT[0],
                                             victim.typical * rng.uniform(*TAKEOVER_FACTOR)))
        world.txs.append(Tx(start + offset, victim.id, rng.choice(payees), round(amount, 2),
                            ACCOUNT_TAKEOVER, case))
