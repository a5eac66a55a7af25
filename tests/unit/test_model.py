"""The online model: no score before it has learnt, fraud scored above everyday traffic
once it has, retrains that swap in without stopping the scoring, and a Router that puts
the score in every verdict."""

import copy
import random
import threading
from pathlib import Path

import numpy as np
import orjson
import pytest
from sklearn.exceptions import ConvergenceWarning

from services.detector.features import DATASET_FEATURES, WIDTH, FeatureRows, rows
from services.detector.labels import Examples, LabelJoin
from services.detector.model import OnlineModel, SmallNet
from services.detector.routing import Router
from services.detector.rules import StatefulRules
from tests.unit.test_routing import FakeRecord

CARD_TESTING = {"velocity": 12.0, "fan_in": 1.0, "amount_z": -1.0, "novelty": 1.0}
EVERYDAY = {"velocity": 1.0, "fan_in": 2.0, "amount_z": 0.2, "novelty": 0.0}


def examples(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Everyday payments and, one in five, card testing: separable on every figure."""
    rng = random.Random(seed)
    pairs, labels = [], []
    for _ in range(count):
        fraud = rng.random() < 0.2
        figures = {k: v * rng.uniform(0.8, 1.2) for k, v in
                   (CARD_TESTING if fraud else EVERYDAY).items()}
        amount = rng.uniform(0.1, 2.0) if fraud else rng.uniform(20, 80)
        pairs.append((amount, figures))
        labels.append(int(fraud))
    return rows(pairs), np.asarray(labels)


def learn(model: OnlineModel, joined: Examples) -> None:
    model.learn(joined.matrix, joined.labels)


class GatedNet(SmallNet):
    """The real network, whose fresh training waits for the test to let it finish, and
    which remembers how many examples it learnt online."""

    gate = threading.Event()

    def __init__(self) -> None:
        super().__init__(epochs=3)
        self.learnt_online = 0

    def fit(self, matrix: np.ndarray, labels: np.ndarray,
            start: SmallNet | None = None) -> None:
        assert self.gate.wait(30), "the test never let the training finish"
        super().fit(matrix, labels, start)

    def partial_fit(self, matrix: np.ndarray, labels: np.ndarray) -> None:
        self.learnt_online += len(labels)
        super().partial_fit(matrix, labels)


def test_a_cold_model_gives_no_score_until_it_has_seen_both_kinds() -> None:
    model = OnlineModel(background=False, min_examples=50)
    matrix, labels = examples(200)
    assert model.score(matrix) is None
    legit = labels == 0
    model.learn(matrix[legit], labels[legit])  # plenty, but nothing to tell apart
    assert model.score(matrix) is None
    assert model.status()["version"] == 0 and model.age() is None
    model.learn(matrix[~legit], labels[~legit])
    assert model.ready and model.version == 1


def test_a_model_trained_on_separable_traffic_scores_fraud_above_everyday() -> None:
    now = [1000.0]
    model = OnlineModel(background=False, min_examples=100, clock=lambda: now[0])
    matrix, labels = examples(600)
    model.learn(matrix, labels)
    fresh, fresh_labels = examples(300, seed=1)
    scores = model.score(fresh)
    assert scores is not None and scores.shape == (300,)
    assert scores[fresh_labels == 1].min() > 0.5 > scores[fresh_labels == 0].max()
    now[0] += 90
    assert model.status() == {"version": 1, "trained_at": 1000.0, "age_s": 90.0,
                              "restored": False, "examples": 600, "retraining": False,
                              "failures": 0}


def test_scoring_goes_on_while_a_retrain_runs_and_the_swap_bumps_the_version() -> None:
    made: list[GatedNet] = []

    def learner() -> GatedNet:
        made.append(GatedNet())
        return made[-1]

    model = OnlineModel(learner, min_examples=100, retrain_every=10**9)
    matrix, labels = examples(400)
    GatedNet.gate.set()
    model.learn(matrix, labels)  # the first model trains in the background
    assert model.wait(30) and model.version == 1
    first = model.score(matrix)

    GatedNet.gate.clear()
    assert model.retrain()
    assert model.retraining and not model.retrain()  # one retrain at a time
    during = model.score(matrix)  # the model in service still answers, unchanged
    assert during is not None and np.allclose(during, first)
    late, late_labels = examples(50, seed=2)
    model.learn(late, late_labels)  # comes while the fresh model trains
    assert model.version == 1
    GatedNet.gate.set()
    assert model.wait(30)
    assert model.version == 2 and len(made) == 2
    assert made[1].learnt_online == 50  # it caught up with what came during its training
    assert not np.allclose(model.score(matrix), first)  # scores come from the new model


def test_retrains_come_every_so_many_examples_and_no_sooner_than_a_while() -> None:
    now = [0.0]
    model = OnlineModel(background=False, min_examples=100, retrain_every=300,
                        min_interval=60, clock=lambda: now[0])
    for seed in range(7):
        now[0] += 30
        model.learn(*examples(100, seed))
    # the first model at 100 examples, retrains as they double (200, 400), then after
    # 300 more (700), a minute and a half after the last.
    assert model.version == 4
    for seed in range(7, 10):
        now[0] += 10
        model.learn(*examples(100, seed))
    assert model.version == 4  # 300 more examples, but within a minute of the last
    now[0] += 30
    model.learn(*examples(100, 10))
    assert model.version == 5
    assert model.status()["examples"] == 1100


def test_a_retrain_starts_from_a_copy_of_the_model_in_service() -> None:
    starts: list[SmallNet | None] = []

    class Recording(SmallNet):
        def fit(self, matrix: np.ndarray, labels: np.ndarray,
                start: SmallNet | None = None) -> None:
            starts.append(start)
            super().fit(matrix, labels, start)

    model = OnlineModel(Recording, background=False, min_examples=100,
                        retrain_every=10**9)
    matrix, labels = examples(200)
    model.learn(matrix, labels)  # the first model, from scratch
    assert starts == [None] and model.version == 1
    before = model.score(matrix)
    serving = model._current
    assert model.retrain() and model.version == 2
    assert starts[1] is not None and starts[1] is not serving  # a copy, not the one
    assert before is not None and np.allclose(serving.proba(matrix), before)  # untouched
    fresh, fresh_labels = examples(300, seed=1)
    scores = model.score(fresh)
    assert scores is not None
    assert scores[fresh_labels == 1].min() > 0.5 > scores[fresh_labels == 0].max()


def test_a_resumed_net_computes_what_it_started_from_before_it_learns_more() -> None:
    matrix, labels = examples(400)
    start = SmallNet()
    start.fit(matrix, labels)
    other, _ = examples(400, seed=3)
    other[:, 0] = other[:, 0] * 3 + 5  # inputs of another scale
    resumed = SmallNet()
    resumed._resume(copy.deepcopy(start), other)
    assert not np.allclose(resumed.scaler.mean_, start.scaler.mean_)
    assert np.allclose(resumed.proba(matrix), start.proba(matrix))
    assert np.allclose(resumed.proba(other), start.proba(other))


def test_an_online_step_moves_the_net_exactly_as_scikit_learn_would() -> None:
    matrix, labels = examples(1_000)
    net = SmallNet()
    net.fit(matrix[:400], labels[:400])
    reference = copy.deepcopy(net)
    # Steps of every size: a mini-batch and a bit, several, a single example.
    for step in (250, 500, 1, 249):
        more, truth = examples(step, seed=step)
        net.partial_fit(more, truth)
        reference.classifier.partial_fit(reference.scaler.transform(more), truth,
                                         classes=np.array([0, 1]))
    mine, theirs = net.classifier, reference.classifier
    for weights, expected in zip(mine.coefs_ + mine.intercepts_,
                                 theirs.coefs_ + theirs.intercepts_, strict=True):
        assert np.array_equal(weights, expected)
    assert mine._optimizer.t == theirs._optimizer.t  # as many Adam steps
    for moment, expected in zip(mine._optimizer.ms + mine._optimizer.vs,
                                theirs._optimizer.ms + theirs._optimizer.vs, strict=True):
        assert np.array_equal(moment, expected)  # and the same moments, of each shape
        assert moment.shape == expected.shape
    assert mine._optimizer.learning_rate == theirs._optimizer.learning_rate
    assert np.array_equal(net.proba(matrix), reference.proba(matrix))
    # A copy (what a retrain starts from) steps on as the original does.
    copied, more = copy.deepcopy(net), examples(300, seed=3)
    copied.partial_fit(*more)
    net.partial_fit(*more)
    assert np.array_equal(copied.proba(matrix), net.proba(matrix))


def test_a_resumed_retrain_trains_the_net_exactly_as_scikit_learn_would() -> None:
    matrix, labels = examples(1_200)
    start = SmallNet()
    start.fit(matrix[:300], labels[:300])
    retrained = SmallNet()
    retrained.fit(matrix, labels, copy.deepcopy(start))
    # scikit-learn's own fit from the same warm start, every pass asked for.
    reference = SmallNet()
    reference._resume(copy.deepcopy(start), matrix)
    reference.classifier.set_params(max_iter=reference.resumed_epochs, batch_size=500,
                                    shuffle=True, tol=0.0, n_iter_no_change=10**9,
                                    warm_start=True)
    with pytest.warns(ConvergenceWarning):  # it warns that it stopped where asked
        reference.classifier.fit(reference.scaler.transform(matrix), labels)
    mine, theirs = retrained.classifier, reference.classifier
    for weights, expected in zip(mine.coefs_ + mine.intercepts_,
                                 theirs.coefs_ + theirs.intercepts_, strict=True):
        assert np.array_equal(weights, expected)
    more, truth = examples(300, seed=9)  # and online steps go on from the same place
    retrained.partial_fit(more, truth)
    reference.classifier.set_params(batch_size="auto", warm_start=False)
    reference.partial_fit(more, truth)
    assert np.array_equal(retrained.proba(matrix), reference.proba(matrix))


def test_a_net_of_another_shape_is_not_resumed_but_trained_afresh() -> None:
    matrix, labels = examples(400)
    start = SmallNet(hidden=(8,))
    start.fit(matrix, labels)
    fresh = SmallNet()
    fresh.fit(matrix, labels, start)
    assert [w.shape for w in fresh.classifier.coefs_] == [(WIDTH, 64), (64, 32), (32, 1)]


def test_a_failed_retrain_keeps_the_model_in_service() -> None:
    calls = []

    def learner() -> SmallNet:
        calls.append(1)
        if len(calls) > 1:
            raise MemoryError("no room for a second model")
        return SmallNet()

    model = OnlineModel(learner, background=False, min_examples=100)
    matrix, labels = examples(200)
    model.learn(matrix, labels)
    assert model.retrain()  # it ran, and failed
    assert model.failures == 1
    assert model.version == 1 and model.score(matrix) is not None


def test_counterparty_novelty_tells_a_new_payee_from_a_usual_one_in_bounded_memory() -> None:
    from services.detector.rules import CounterpartyNovelty

    novelty = CounterpartyNovelty(memory=2, max_accounts=2)
    assert [novelty.evaluate("A", t, 0)[0] for t in ("shop", "shop", "rent", "shop")] == [
        1, 0, 1, 0]
    assert novelty.evaluate("A", "gym", 0)[0] == 1.0  # "rent", the oldest of two, is forgotten
    assert novelty.evaluate("A", "rent", 0)[0] == 1.0
    novelty.evaluate("B", "shop", 0)
    novelty.evaluate("C", "shop", 0)  # a third source: the oldest, A, is forgotten
    assert len(novelty) == 2
    assert novelty.evaluate("A", "gym", 0)[0] == 1.0


def test_new_payees_lately_climb_in_a_burst_and_fade_with_event_time() -> None:
    from services.detector.rules import CounterpartyNovelty

    novelty = CounterpartyNovelty(half_life_ms=60_000)
    burst = [novelty.evaluate("CARD", f"SHOP{i}", i * 1000)[1] for i in range(5)]
    assert burst == sorted(burst) and 4.5 < burst[-1] <= 5  # nearly one per new payee
    assert novelty.evaluate("CARD", "SHOP0", 4000 + 60_000) == (0.0, pytest.approx(
        burst[-1] / 2))  # a known payee adds nothing; a half-life halves the rest
    everyday = [novelty.evaluate("ACC", "RENT", day * 86_400_000)[1] for day in range(5)]
    assert everyday[0] == 1.0 and everyday[1:] == [0.0] * 4


def test_replayed_dataset_features_fill_their_columns_and_others_leave_them_empty() -> None:
    from services.detector.features import dataset_features

    carried = orjson.dumps({"id": "r1", "features": {v: 0.5 for v in DATASET_FEATURES}})
    collected = FeatureRows()
    collected.add("r1", 0, 10.0, {}, dataset_features(carried))
    collected.add("t1", 0, 10.0, {}, dataset_features(b'{"id": "t1", "amount": 10.0}'))
    matrix = collected.matrix()
    assert matrix.shape == (2, WIDTH)
    assert matrix[0, -28:].tolist() == [0.5] * 28
    assert matrix[1, -28:].tolist() == [0.0] * 28
    assert dataset_features(b'{"features": {"V1": "not a number"}}') is None


def test_a_row_takes_every_figure_by_name_and_a_missing_one_by_its_default() -> None:
    from services.detector.features import RULE_FEATURES, scale
    from services.detector.rules import NO_GAP_S

    figures = {name: float(i) for i, name in enumerate(RULE_FEATURES) if i}
    collected = FeatureRows()
    collected.add("all", 0, 12.5, figures)
    collected.add("none", 0, 12.5, {})
    raw = np.array([[12.5, *range(1, len(RULE_FEATURES))],
                    [12.5] + [0.0] * (len(RULE_FEATURES) - 1)], dtype=float)
    raw[1, RULE_FEATURES.index("amount_ratio")] = 1.0
    raw[1, RULE_FEATURES.index("gap_s")] = NO_GAP_S
    assert np.allclose(collected.matrix()[:, : len(RULE_FEATURES)], scale(raw))


def payment(tx_id: str, ts: int, source: str, target: str, amount: float) -> bytes:
    return orjson.dumps({"id": tx_id, "ts": ts, "source": source, "target": target,
                         "amount": amount, "currency": "EUR"})


def traffic(start: int, bursts: int, rng: random.Random) -> tuple[list[bytes], list[bytes]]:
    """Everyday payments to usual payees, with card-testing bursts (five payments of
    under 2.00 to new shops within seconds, below the velocity rule's count) among them;
    the transactions and their labels."""
    records, labels = [], []
    ts = start
    for n in range(bursts):
        for i in range(20):
            tx_id = f"e{start}-{n}-{i}"
            records.append(payment(tx_id, ts, f"ACC{i}", f"SHOP{i % 3}",
                                   round(rng.uniform(20, 80), 2)))
            labels.append(orjson.dumps({"id": tx_id, "fraud": False, "ts": ts}))
            ts += 1_000
        for i in range(5):
            tx_id = f"c{start}-{n}-{i}"
            records.append(payment(tx_id, ts + i * 1000, f"CARD{start}-{n}", f"NEW{n}-{i}",
                                   round(rng.uniform(0.1, 2.0), 2)))
            labels.append(orjson.dumps({"id": tx_id, "fraud": True, "ts": ts}))
    return records, labels


def test_router_puts_the_score_in_the_verdict_and_the_model_flags_what_rules_miss() -> None:
    model = OnlineModel(background=False, min_examples=100)
    router = Router("d1", rules=StatefulRules(novelty=True), model=model)
    join = LabelJoin()
    rng = random.Random(5)
    records, labels = traffic(0, 40, rng)
    routed = router.route([FakeRecord(r) for r in records])
    cold = [orjson.loads(v)["detection"] for _, v in routed.legit]
    assert all(d["score"] is None for d in cold)  # no model yet: a verdict all the same
    assert not routed.fraud  # card testing below the velocity count slips past the rules
    assert routed.features is not None and len(routed.features.ids) == len(records)
    learn(model, join.remember(routed.features))  # nothing labelled yet: learns nothing
    learn(model, join.labels(labels))
    assert model.ready and join.joined == len(records)

    records, _ = traffic(10**9, 3, rng)
    routed = router.route([FakeRecord(r) for r in records])
    flagged = {orjson.loads(v)["id"]: orjson.loads(v)["detection"] for _, v in routed.fraud}
    passed = [orjson.loads(v)["detection"] for _, v in routed.legit]
    assert all(0.0 <= d["score"] < router.cutoff for d in passed)
    cards = [orjson.loads(r)["id"] for r in records if orjson.loads(r)["id"].startswith("c")]
    assert sorted(flagged) == sorted(cards)  # every card test, and nothing else
    verdict = flagged[cards[-1]]
    assert verdict["fraud"] is True and verdict["score"] >= router.cutoff
    assert verdict["rules"] == [{"rule": "model", "reason": f"score {verdict['score']:.2f}"
                                                            f" >= {router.cutoff:g}"}]
    assert verdict["features"]["novelty"] == 1.0 and verdict["features"]["new_payees"] > 1


def test_a_replayed_dataset_row_is_scored_with_its_v_features(tmp_path: Path) -> None:
    from services.generator.replay import FEATURES, CsvReplay
    from tests.unit.test_replay import fraud_csv

    rows_written = fraud_csv(tmp_path / "cards.csv", 40)
    batch = CsvReplay(str(tmp_path / "cards.csv")).batch(40, 1_700_000_000_000)
    model = OnlineModel(background=False, min_examples=20)
    router = Router("d1", rules=StatefulRules(novelty=True), model=model)
    join = LabelJoin()
    routed = router.route([FakeRecord(v) for _, v in batch.transactions])
    assert routed.features is not None
    assert routed.features.matrix[:, -28:].tolist() == [[row[v] for v in FEATURES]
                                                       for row in rows_written]
    learn(model, join.remember(routed.features))
    learn(model, join.labels(v for _, v in batch.labels))
    assert model.ready  # learnt from the dataset's own labels
    routed = router.route([FakeRecord(v) for _, v in batch.transactions])
    scores = [orjson.loads(v)["detection"]["score"] for _, v in routed.legit + routed.fraud]
    assert len(scores) == 40 and all(0.0 <= s <= 1.0 for s in scores)


def test_a_model_without_rules_is_refused() -> None:
    with pytest.raises(ValueError, match="needs rules"):
        Router("d1", model=OnlineModel())


def test_the_model_keeps_numerical_libraries_to_one_thread() -> None:
    from threadpoolctl import threadpool_info

    OnlineModel()
    pools = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert pools and all(pool["num_threads"] == 1 for pool in pools)


def test_a_resumed_model_learns_from_a_batch_of_everyday_labels_alone() -> None:
    """Most batches of labels hold no fraud at all. A retrain resumes from the model in
    service (scikit-learn's warm start), and a warm-started network refuses a step
    with one class: that must not reach the stream."""
    model = OnlineModel(background=False, min_examples=100, retrain_every=10**9, step=1)
    matrix, labels = examples(200)
    model.learn(matrix, labels)
    assert model.retrain() and model.version == 2  # resumed from version 1
    everyday = matrix[labels == 0][:5]
    before = model.score(everyday)
    model.learn(everyday, np.zeros(5, dtype=int))
    assert model.failures == 0
    assert before is not None and not np.allclose(model.score(everyday), before)  # learnt


def test_an_online_step_that_fails_is_counted_and_the_model_serves_on() -> None:
    class Refusing(SmallNet):
        def partial_fit(self, matrix: np.ndarray, labels: np.ndarray) -> None:
            raise ValueError("refused")

    model = OnlineModel(Refusing, background=False, min_examples=100, retrain_every=10**9,
                        step=1)
    matrix, labels = examples(200)
    model.learn(matrix, labels)
    model.learn(matrix[:10], labels[:10])
    assert model.failures == 1 and model.version == 1
    assert model.score(matrix) is not None
    assert model.status()["examples"] == 210


def test_online_steps_wait_for_enough_examples_and_learn_them_all() -> None:
    learnt: list[int] = []

    class Counting(SmallNet):
        def partial_fit(self, matrix: np.ndarray, labels: np.ndarray) -> None:
            learnt.append(len(labels))
            super().partial_fit(matrix, labels)

    model = OnlineModel(Counting, background=False, min_examples=100, retrain_every=10**9,
                        step=100)
    model.learn(*examples(1000))  # the first model; the next after 1,000 more
    for seed in range(1, 6):
        model.learn(*examples(40, seed))
    assert learnt == [120]  # one step, once 100 had come (40 + 40 + 40); 80 wait
    model.learn(*examples(60, 9))
    assert learnt == [120, 140]  # those 80 and these 60
