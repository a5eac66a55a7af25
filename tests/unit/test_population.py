"""Customers with habits: the same seed gives the same customers, who keep their habits."""

import math
import random
from collections import Counter

import pytest

from services.generator.population import CHRONOTYPES, HOUR_MS, USUAL_SHARE, Population

SIZE = 3_000


@pytest.fixture(scope="module")
def population() -> Population:
    return Population(seed=11, size=SIZE)


def test_the_same_seed_gives_the_same_customers(population: Population) -> None:
    again = Population(seed=11, size=SIZE)
    assert again.accounts == population.accounts
    assert Population(seed=12, size=SIZE).ids != population.ids


def test_accounts_are_unique_and_twelve_letters_and_digits(population: Population) -> None:
    assert len(set(population.ids)) == SIZE
    assert all(len(a) == 12 and a.isalnum() and a.upper() == a for a in population.ids)


def test_every_account_has_habits_of_its_own(population: Population) -> None:
    for account in population.accounts:
        assert 3 <= len(account.counterparties) <= 8
        assert account.id not in account.counterparties
        assert all(c in population for c in account.counterparties)
        assert 2 <= account.typical_amount <= 2_000
        assert 0.2 <= account.spread <= 0.6
        assert account.activity > 0
        assert account.chronotype in CHRONOTYPES
    assert len({a.typical_amount for a in population.accounts}) > SIZE // 2  # not one mould


def test_everyday_payments_follow_the_payers_habits(population: Population) -> None:
    payments = population.everyday(random.Random(1), 60_000, 12 * HOUR_MS)
    by_id = {a.id: a for a in population.accounts}
    usual = sum(target in by_id[source].counterparties for source, target, _, _ in payments)
    assert usual / len(payments) == pytest.approx(USUAL_SHARE, abs=0.02)
    for source, target, amount, currency in payments:
        account = by_id[source]
        assert target != source
        assert currency == account.currency
        # Within about 3.5 standard deviations of the account's own log-amount.
        deviation = abs(math.log(amount / account.typical_amount)) / account.spread
        assert deviation < 3.55 or amount == 0.5


def test_the_busy_pay_more_often_than_the_quiet(population: Population) -> None:
    payments = population.everyday(random.Random(2), 100_000, 12 * HOUR_MS)
    counts = Counter(source for source, _, _, _ in payments)
    office = sorted((a for a in population.accounts if a.chronotype == "office"),
                    key=lambda a: a.activity)
    quiet, busy = office[: len(office) // 4], office[-len(office) // 4:]
    assert sum(counts[a.id] for a in busy) > 4 * sum(counts[a.id] for a in quiet)


def test_customers_pay_in_their_own_hours(population: Population) -> None:
    rng = random.Random(3)
    kind = {a.id: a.chronotype for a in population.accounts}

    def share(chronotype: str, hour: int) -> float:
        payers = population.everyday(rng, 20_000, hour * HOUR_MS)
        return sum(kind[s] == chronotype for s, _, _, _ in payers) / len(payers)

    assert share("night", 3) > 5 * share("night", 12)
    assert share("office", 10) > 2 * share("office", 3)
    assert share("evening", 20) > 3 * share("evening", 7)


def test_a_fresh_account_is_nobody_the_population_knows(population: Population) -> None:
    rng = random.Random(4)
    fresh = {population.fresh_account(rng) for _ in range(1_000)}
    assert len(fresh) == 1_000
    assert not any(f in population for f in fresh)


def test_everyday_traffic_is_reproducible(population: Population) -> None:
    assert (population.everyday(random.Random(5), 500, 0)
            == population.everyday(random.Random(5), 500, 0))
