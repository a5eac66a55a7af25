"""Fraud scenarios: each has the shape of its kind of fraud, and the mix labels them all."""

import random
from collections import Counter, defaultdict

import orjson
import pytest

from services.generator import labels as ground_truth
from services.generator import scenarios
from services.generator.population import Population
from services.generator.profiles import ScenarioProfile, Tutorial
from services.generator.scenarios import SCENARIOS, ScenarioDeck

START = 1_700_000_000_000


@pytest.fixture(scope="module")
def population() -> Population:
    return Population(seed=5, size=3_000)


def plans(population: Population, planner: scenarios.Planner, runs: int = 50
          ) -> list[list[scenarios.Step]]:
    rng = random.Random(9)
    return [planner(population, rng) for _ in range(runs)]


def test_card_testing_is_a_burst_of_tiny_amounts_from_one_card(population: Population) -> None:
    for steps in plans(population, scenarios.card_testing):
        assert 10 <= len(steps) <= 20
        assert len({s.source for s in steps}) == 1
        assert len({s.target for s in steps}) == len(steps)  # a new merchant each time
        assert all(0.10 <= s.amount <= 2.00 for s in steps)
        assert steps[0].offset_ms == 0
        assert max(s.offset_ms for s in steps) < scenarios.CARD_TESTING_SPAN_MS


def test_a_velocity_burst_spends_fast_in_the_accounts_usual_sizes(
    population: Population,
) -> None:
    by_id = {a.id: a for a in population.accounts}
    for steps in plans(population, scenarios.velocity_burst):
        account = by_id[steps[0].source]
        assert 8 <= len(steps) <= 15
        assert {s.source for s in steps} == {account.id}
        assert not {s.target for s in steps} & set(account.counterparties)
        assert max(s.offset_ms for s in steps) < scenarios.VELOCITY_SPAN_MS
        assert all(s.amount < account.typical_amount * 20 for s in steps)


def test_account_takeover_sends_a_large_amount_to_a_new_counterparty(
    population: Population,
) -> None:
    by_id = {a.id: a for a in population.accounts}
    for steps in plans(population, scenarios.account_takeover):
        victim = by_id[steps[0].source]
        payee = steps[0].target
        assert 1 <= len(steps) <= 3
        assert {(s.source, s.target) for s in steps} == {(victim.id, payee)}
        assert payee not in victim.counterparties
        assert payee not in population  # nobody ever paid this account
        assert all(s.amount >= max(300, 10 * victim.typical_amount) for s in steps)
        assert max(s.offset_ms for s in steps) < scenarios.TAKEOVER_SPAN_MS


def test_mule_fan_in_has_many_distinct_sources_paying_one_target_within_its_window(
    population: Population,
) -> None:
    for steps in plans(population, scenarios.mule_fan_in):
        assert 40 <= len(steps) <= 60
        assert len({s.source for s in steps}) == len(steps)
        assert len({s.target for s in steps}) == 1
        assert steps[0].target not in population
        assert all(850 <= s.amount <= 1_150 for s in steps)
        assert max(s.offset_ms for s in steps) < scenarios.FAN_IN_WINDOW_MS


def test_a_large_amount_is_one_outsized_payment_to_someone_known(
    population: Population,
) -> None:
    by_id = {a.id: a for a in population.accounts}
    for steps in plans(population, scenarios.large_amount):
        (step,) = steps
        assert 3_000 <= step.amount <= 20_000
        assert step.target in by_id[step.source].counterparties


def test_the_deck_deals_every_scenario_in_its_first_round() -> None:
    deck = ScenarioDeck(random.Random(1))
    rounds = sum(weight for _, weight in SCENARIOS.values())
    first = Counter(deck.deal() for _ in range(rounds))
    assert first == {name: weight for name, (_, weight) in SCENARIOS.items()}


def stream(profile: ScenarioProfile, seconds: int, per_second: int, batches_per_second: int = 10
           ) -> tuple[list[dict], list[dict]]:
    """Run the profile as the generator does, on a simulated clock."""
    transactions, labels = [], []
    step = 1000 // batches_per_second
    for ts in range(START, START + seconds * 1000, step):
        batch = profile.batch(per_second // batches_per_second, ts)
        assert len(batch.transactions) == len(batch.labels) == per_second // batches_per_second
        for (key, value), (label_key, label) in zip(batch.transactions, batch.labels,
                                                   strict=True):
            tx = orjson.loads(value)
            assert key == tx["source"].encode()
            assert label_key == tx["id"].encode()
            transactions.append(tx)
            labels.append(orjson.loads(label))
    return transactions, labels


@pytest.fixture(scope="module")
def half_an_hour() -> tuple[list[dict], list[dict]]:
    """30 minutes of event time at 200 transactions per second, 5 % fraud."""
    return stream(ScenarioProfile(seed=3, fraud_rate=0.05, accounts=5_000), 1_800, 200)


def test_labels_match_transactions_one_to_one(
    half_an_hour: tuple[list[dict], list[dict]],
) -> None:
    transactions, labels = half_an_hour
    assert [tx["id"] for tx in transactions] == [label["id"] for label in labels]
    assert len({tx["id"] for tx in transactions}) == len(transactions)
    for tx, label in zip(transactions, labels, strict=True):
        assert set(tx) == {"id", "ts", "source", "target", "amount", "currency"}
        assert label["ts"] == tx["ts"]
        assert label["fraud"] == (label["scenario"] is not None) == (label["case"] is not None)
    assert {label["scenario"] for label in labels} == {None, *SCENARIOS}


def test_the_fraud_share_holds_once_scenarios_have_unfolded(
    half_an_hour: tuple[list[dict], list[dict]],
) -> None:
    _, labels = half_an_hour
    # After the longest scenario's window, starts and finishes balance out.
    steady = [label for label in labels
              if label["ts"] >= START + scenarios.FAN_IN_WINDOW_MS]
    share = sum(label["fraud"] for label in steady) / len(steady)
    assert share == pytest.approx(0.05, rel=0.15)
    by_scenario = Counter(label["scenario"] for label in steady if label["fraud"])
    assert all(by_scenario[name] > 0.05 * sum(by_scenario.values()) for name in SCENARIOS)


def test_scenarios_unfold_in_event_time_among_everyday_traffic(
    half_an_hour: tuple[list[dict], list[dict]],
) -> None:
    transactions, labels = half_an_hour
    cases: dict[str, list[tuple[int, dict]]] = defaultdict(list)
    for position, (tx, label) in enumerate(zip(transactions, labels, strict=True)):
        if label["case"]:
            cases[label["case"]].append((position, {**tx, "scenario": label["scenario"]}))
    spans = {scenarios.CARD_TESTING: scenarios.CARD_TESTING_SPAN_MS,
             scenarios.VELOCITY_BURST: scenarios.VELOCITY_SPAN_MS,
             scenarios.ACCOUNT_TAKEOVER: scenarios.TAKEOVER_SPAN_MS,
             scenarios.MULE_FAN_IN: scenarios.FAN_IN_WINDOW_MS}
    complete = 0
    for members in cases.values():
        txs = [tx for _, tx in members]
        kind = txs[0]["scenario"]
        assert {tx["scenario"] for tx in txs} == {kind}  # a case is one scenario
        if kind in spans:
            # Within its window, give or take a batch.
            assert txs[-1]["ts"] - txs[0]["ts"] <= spans[kind] + 100
        if kind == scenarios.MULE_FAN_IN and len(txs) >= 40:
            complete += 1
            assert len({tx["source"] for tx in txs}) == len(txs)
            assert len({tx["target"] for tx in txs}) == 1
            positions = [p for p, _ in members]
            # Interleaved: far more everyday payments than fan-in ones in between.
            assert positions[-1] - positions[0] > 10 * len(txs)
    assert complete >= 5


def test_no_fraud_at_a_rate_of_zero() -> None:
    _, labels = stream(ScenarioProfile(seed=1, fraud_rate=0.0, accounts=1_000), 60, 100)
    assert not any(label["fraud"] for label in labels)


def test_a_rate_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        ScenarioProfile(fraud_rate=1.5, accounts=1_000)


def test_the_same_seed_streams_the_same_content() -> None:
    def content(seed: int) -> list[tuple]:
        transactions, labels = stream(ScenarioProfile(seed=seed, fraud_rate=0.1,
                                                      accounts=1_000), 30, 100)
        return [(tx["source"], tx["target"], tx["amount"], label["scenario"])
                for tx, label in zip(transactions, labels, strict=True)]

    assert content(4) == content(4)
    assert content(4) != content(5)


def test_the_tutorial_profile_has_no_ground_truth() -> None:
    batch = Tutorial(seed=1).batch(100, START)
    assert len(batch.transactions) == 100
    assert batch.labels == []


def test_a_label_reads_the_same_whichever_way_it_was_written() -> None:
    key, everyday = ground_truth.label("3f2a9c0d1e2b-17", START, None)
    assert key == b"3f2a9c0d1e2b-17"
    assert orjson.loads(everyday) == {"id": "3f2a9c0d1e2b-17", "ts": START, "fraud": False,
                                      "scenario": None, "case": None}
    _, fraud = ground_truth.label("3f2a9c0d1e2b-18", START, scenarios.CARD_TESTING,
                                  "3f2a9c0d1e2b-c4")
    assert orjson.loads(fraud) == {"id": "3f2a9c0d1e2b-18", "ts": START, "fraud": True,
                                   "scenario": "card_testing", "case": "3f2a9c0d1e2b-c4"}


def shares(profile: ScenarioProfile, plan: list[tuple[int, int]], told: bool) -> list[float]:
    """The fraud share of each ``(per second, seconds)`` leg of a stream, with the
    profile told each leg's rate (as the generator tells it) or not."""
    out, ts = [], START
    for rate, seconds in plan:
        if told:
            profile.pace(rate, ts)
        fraud = total = 0
        for _ in range(seconds):
            labels = profile.batch(rate, ts).labels
            fraud += sum(orjson.loads(label)["fraud"] for _, label in labels)
            total += len(labels)
            ts += 1000
        out.append(fraud / total)
    return out


def test_told_its_rate_the_fraud_share_holds_from_the_start_and_through_changes() -> None:
    # 200/s for two minutes, ten times that for one, then back: each leg has the
    # share asked for, as a stream that always ran at its rate would.
    plan = [(200, 120), (2_000, 60), (200, 120)]
    for seed in (1, 2):
        told = shares(ScenarioProfile(seed=seed, fraud_rate=0.05, accounts=5_000), plan, True)
        assert told == pytest.approx([0.05] * 3, rel=0.25)
    # Not told, the scenarios unfold at the old rate's pace: a share far below, for
    # minutes after the start and after a rise.
    untold = shares(ScenarioProfile(seed=1, fraud_rate=0.05, accounts=5_000), plan, False)
    assert untold[0] < 0.6 * 0.05 and untold[1] < 0.6 * 0.05
