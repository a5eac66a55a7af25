"""Which online learner for the detector's model: speed and quality, measured.

Labelled traffic comes from the generator's scenario profile with a fixed seed; its
features from the detector's own ``StatefulRules`` (with counterparty novelty) and
``features.FeatureRows``, exactly as the detector computes them. The first part of the
stream, in event-time order, is for learning; the rest is held out and only scored.

For each candidate it prints:

- score: µs per transaction to score a batch of 1,000 in one call, best of five
  repeats (River scores one dict at a time: the rows' conversion to dicts is counted,
  since the detector would pay it);
- learn: µs per transaction to learn online, one call per labelled batch of 1,000;
- fit: seconds to train a fresh model on the whole learning part (a background
  retrain), for the learners that have one;
- precision, recall, F1 on the held-out part, fraud when the score is >= 0.5, for the
  model alone and for the detector's decision (any rule fired, or the model).

Baselines: the amount threshold alone, and the rules alone.

    python -m bench.model_choice [--transactions 300000] [--accounts 50000] [--seed 7]

The population is the generator's default. Numerical libraries run on one thread, as
they should in a detector (one process per core, its loop on that core): on a shared
machine, BLAS threads that spin on a second core make small products slower, not faster.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import orjson
from threadpoolctl import threadpool_limits

from services.detector.features import NAMES, RULE_FEATURES, FeatureRows
from services.detector.model import Learner, LogisticSGD, SmallNet
from services.detector.rules import StatefulRules
from services.generator.profiles import ScenarioProfile

BATCH = 1_000
CUTOFF = 0.5


class Traffic(NamedTuple):
    matrix: np.ndarray
    labels: np.ndarray
    amounts: np.ndarray
    rule_hits: np.ndarray  # any rule fired, the amount threshold (900) included
    scenarios: list[str | None]


def traffic(transactions: int, accounts: int, seed: int, tps: int = 100) -> Traffic:
    """Scenario traffic at ``tps`` of event time, with the detector's features."""
    profile = ScenarioProfile(seed=seed, accounts=accounts)
    rules = StatefulRules(novelty=True)
    rows = FeatureRows()
    labels, amounts, hits, scenarios = [], [], [], []
    ts = 1_700_000_000_000
    while len(labels) < transactions:
        batch = profile.batch(tps, ts)
        for (_, value), (_, label_value) in zip(batch.transactions, batch.labels, strict=True):
            tx, label = orjson.loads(value), orjson.loads(label_value)
            fired, figures = rules.evaluate(tx["source"], tx["target"], tx["amount"], tx["ts"])
            rows.add(tx["id"], tx["ts"], tx["amount"], figures)
            labels.append(int(label["fraud"]))
            amounts.append(tx["amount"])
            hits.append(bool(fired) or tx["amount"] >= 900.0)
            scenarios.append(label["scenario"])
        ts += 1000
    return Traffic(rows.matrix(), np.asarray(labels), np.asarray(amounts), np.asarray(hits),
                   scenarios)


class Candidate(NamedTuple):
    name: str
    make: Callable[[], Any]
    scores: Callable[[Any, np.ndarray], np.ndarray]
    learns: Callable[[Any, np.ndarray, np.ndarray], None]
    fits: Callable[[Any, np.ndarray, np.ndarray], None] | None


def _sklearn(name: str, make: Callable[[], Learner], refit: bool) -> Candidate:
    return Candidate(name, make, lambda m, x: m.proba(x), lambda m, x, y: m.partial_fit(x, y),
                     (lambda m, x, y: m.fit(x, y)) if refit else None)


def _river(name: str, make: Callable[[], Any]) -> Candidate:
    # River learns and scores dicts; the scenario traffic has only the rules' figures,
    # so River gets those five keys (its cheapest case), not the dataset's zeros.
    width = len(RULE_FEATURES)
    keys = NAMES[:width]

    def dicts(matrix: np.ndarray) -> list[dict[str, float]]:
        return [dict(zip(keys, row, strict=True)) for row in matrix[:, :width].tolist()]

    def scores(model: Any, matrix: np.ndarray) -> np.ndarray:
        return np.asarray([model.predict_proba_one(x).get(1, 0.0) for x in dicts(matrix)])

    def learns(model: Any, matrix: np.ndarray, labels: np.ndarray) -> None:
        for x, y in zip(dicts(matrix), labels.tolist(), strict=True):
            model.learn_one(x, y)

    return Candidate(name, make, scores, learns, None)


def candidates() -> list[Candidate]:
    chosen = [
        _sklearn("sklearn SGD logistic, online only", LogisticSGD, refit=False),
        _sklearn("sklearn SGD logistic, fit + online", LogisticSGD, refit=True),
        _sklearn("sklearn MLP 64-32, online only", SmallNet, refit=False),
        _sklearn("sklearn MLP 64-32, fit + online", SmallNet, refit=True),
    ]
    try:  # River is a candidate, not a dependency: `pip install river` to compare
        from river import compose, linear_model, preprocessing, tree
    except ImportError:
        print("(River is not installed: its learners are left out)")
        return chosen
    return [
        *chosen,
        _river("river LogisticRegression (scaled)",
               lambda: compose.Pipeline(preprocessing.StandardScaler(),
                                        linear_model.LogisticRegression())),
        _river("river HoeffdingTree", tree.HoeffdingTreeClassifier),
        _river("river HoeffdingAdaptiveTree",
               lambda: tree.HoeffdingAdaptiveTreeClassifier(seed=0)),
    ]


def quality(predicted: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    tp = int((predicted & (labels == 1)).sum())
    fp = int((predicted & (labels == 0)).sum())
    fn = int((~predicted & (labels == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def measure(candidate: Candidate, learn: Traffic, held: Traffic) -> dict[str, Any]:
    model = candidate.make()
    fit_s = None
    if candidate.fits is not None:
        started = time.perf_counter()
        candidate.fits(model, learn.matrix, learn.labels)
        fit_s = time.perf_counter() - started
    learn_s = 0.0
    for start in range(0, len(learn.labels), BATCH):
        rows, labels = learn.matrix[start:start + BATCH], learn.labels[start:start + BATCH]
        started = time.perf_counter()
        candidate.learns(model, rows, labels)
        learn_s += time.perf_counter() - started
    first = held.matrix[:BATCH]
    candidate.scores(model, first)  # warm up
    # The best of a few repeats: on a shared machine the others measure the neighbours.
    rounds, repeats = 10, 5
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(rounds):
            candidate.scores(model, first)
        best = min(best, time.perf_counter() - started)
    score_us = best / (rounds * len(first)) * 1e6
    scores = np.concatenate([candidate.scores(model, held.matrix[s:s + BATCH])
                             for s in range(0, len(held.labels), BATCH)])
    flagged = scores >= CUTOFF
    return {"name": candidate.name, "score_us": score_us,
            "learn_us": learn_s / len(learn.labels) * 1e6, "fit_s": fit_s,
            "model": quality(flagged, held.labels),
            "detector": quality(flagged | held.rule_hits, held.labels),
            "per_scenario": recall_by_scenario(flagged | held.rule_hits, held)}


def recall_by_scenario(flagged: np.ndarray, held: Traffic) -> dict[str, float]:
    out = {}
    for name in sorted({s for s in held.scenarios if s}):
        mask = np.asarray([s == name for s in held.scenarios])
        out[name] = float(flagged[mask].mean())
    return out


def split(data: Traffic, at: int) -> tuple[Traffic, Traffic]:
    first = Traffic(*(part[:at] for part in data))
    second = Traffic(*(part[at:] for part in data))
    return first, second


def _row(name: str, score: str, learn: str, fit: str, model: tuple[float, ...] | None,
         detector: tuple[float, ...]) -> str:
    m = " ".join(f"{v:5.3f}" for v in model) if model else "    -     -     -"
    d = " ".join(f"{v:5.3f}" for v in detector)
    return f"{name:38} {score:>8} {learn:>8} {fit:>6}   {m}   {d}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=300_000)
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--learn-share", type=float, default=0.6)
    args = parser.parse_args()

    started = time.perf_counter()
    data = traffic(args.transactions, args.accounts, args.seed)
    learn, held = split(data, int(len(data.labels) * args.learn_share))
    print(f"{len(data.labels)} transactions ({int(data.labels.sum())} fraud), seed {args.seed},"
          f" {args.accounts} accounts; learn on {len(learn.labels)}, hold out "
          f"{len(held.labels)} ({int(held.labels.sum())} fraud); features in "
          f"{time.perf_counter() - started:.1f} s\n")
    print(f"{'':38} {'score':>8} {'learn':>8} {'fit':>6}   {'model alone':^17}   "
          f"{'rules or model':^17}")
    print(f"{'learner':38} {'µs/tx':>8} {'µs/tx':>8} {'s':>6}   {'P     R     F1':^17}   "
          f"{'P     R     F1':^17}")
    threshold = quality(held.amounts >= 900.0, held.labels)
    rules = quality(held.rule_hits, held.labels)
    print(_row("threshold 900 alone", "-", "-", "-", None, threshold))
    print(_row("rules (with threshold) alone", "-", "-", "-", None, rules))
    results = []
    for candidate in candidates():
        with threadpool_limits(1):
            result = measure(candidate, learn, held)
        results.append(result)
        fit = "-" if result["fit_s"] is None else f"{result['fit_s']:.2f}"
        print(_row(result["name"], f"{result['score_us']:.2f}", f"{result['learn_us']:.2f}",
                   fit, result["model"], result["detector"]), flush=True)
    print("\nrecall per scenario, rules or model:")
    for result in results:
        shown = ", ".join(f"{k} {v:.2f}" for k, v in result["per_scenario"].items())
        print(f"  {result['name']:38} {shown}")


if __name__ == "__main__":
    main()
