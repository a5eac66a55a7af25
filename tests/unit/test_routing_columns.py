"""The router with rules and a model writes, from the rules' columns, what judging each
record alone writes: the same outputs, verdict bytes and model rows."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import orjson
import pytest

from services.detector.features import FeatureRows, dataset_features
from services.detector.routing import (
    Router,
    VerdictWriter,
    decide,
    decider,
    identity_fields,
    rounded_scores,
)
from services.detector.rules import Hit, StatefulRules
from services.transaction import decode_schema, extend
from tests.unit.test_routing import FakeRecord


class StubModel:
    """Scores a row by its figures, all over [0, 1]: every kind of verdict happens."""

    def score(self, matrix: np.ndarray) -> np.ndarray:
        return np.abs(np.sin(matrix.sum(axis=1) * 7.0))


def records(seed: int) -> list[FakeRecord]:
    rng = random.Random(seed)
    out = []
    for n in range(400):
        tx: dict[str, Any] = {"source": f"S{rng.randrange(12)}", "target": f"T{rng.randrange(6)}",
                              "amount": rng.choice([0.5, 1.0, 25.0, 120.0, 899.99, 900.0,
                                                    round(rng.uniform(1, 2000), 2)]),
                              "currency": "EUR"}
        if rng.random() > 0.05:
            tx["id"] = f"t{n}"
        if rng.random() > 0.05:
            tx["ts"] = 1_000 * n + rng.randrange(5_000)
        if rng.random() < 0.03:
            tx["detection"] = {"old": True}
        if rng.random() < 0.03:
            tx["features"] = {f"V{i}": rng.uniform(-2, 2) for i in range(1, 29)}
        raw = orjson.dumps(tx) if rng.random() > 0.03 else b"not json"
        if rng.random() < 0.03:
            raw += b" "
        out.append(FakeRecord(raw, _key=f"k{n}".encode(), _offset=n))
    return out


def reference(rules: StatefulRules, records: list[FakeRecord], model: StubModel | None,
              instance: str) -> tuple[list[tuple[bool, bytes | None, bytes]], Any]:
    """Each record judged and written alone, as the router once did."""
    threshold, cutoff, veto = 900.0, 0.2, 0.05
    taken = []
    for record in records:
        try:
            taken.append((record, record.value(), decode_schema(record.value())))
        except Exception:  # what the router sends to the dead letters
            continue
    times = [tx.ts if isinstance(tx.ts, int) else max(0, record.timestamp()[1])
             for record, _, tx in taken]
    judged = rules.evaluate_batch([tx.source for _, _, tx in taken],
                                  [tx.target for _, _, tx in taken],
                                  [tx.amount for _, _, tx in taken], times)
    rows = FeatureRows()
    for (record, raw, tx), ts, (hits, features) in zip(taken, times, judged, strict=True):
        if tx.amount >= threshold:
            hits.insert(0, Hit("amount_threshold", "amount >= 900"))
        identity = tx.id if isinstance(tx.id, str) else \
            f"{record.topic()}-{record.partition()}-{record.offset()}"
        rows.add(identity, ts, tx.amount, features, dataset_features(raw))
    matrix = rows.matrix()
    scores = [None] * len(taken) if model is None else rounded_scores(model.score(matrix))
    writer = VerdictWriter(threshold, instance, None if model is None else (cutoff, veto))
    out = []
    for (record, raw, tx), (hits, features), score in zip(taken, judged, scores,
                                                          strict=True):
        if score is None:
            said, fraud = None, bool(hits)
        else:
            said = (decider(bool(hits), score, cutoff, veto), True)
            fraud, hits = decide(hits, score, cutoff, veto)
        detection = writer.detection(hits, features, score, fraud, said)
        out.append((fraud, record.key(), extend(raw, tx, identity_fields(tx, record)
                                                + b',"detection":' + detection)))
    return out, (rows.ids, rows.ts, matrix)


@pytest.mark.parametrize("with_model", [True, False])
def test_the_router_writes_what_judging_each_record_alone_writes(with_model: bool) -> None:
    model = StubModel() if with_model else None
    router = Router("d-1", rules=StatefulRules(novelty=True),
                    model=model)  # type: ignore[arg-type]
    rules = StatefulRules(novelty=True)
    for seed in range(3):
        batch = records(seed)
        routed = router.route(batch)
        expected, (ids, ts, matrix) = reference(rules, batch, model, "d-1")
        assert routed.fraud == [(key, value) for fraud, key, value in expected if fraud]
        assert routed.legit == [(key, value) for fraud, key, value in expected if not fraud]
        assert len(routed.dlq) == len(batch) - len(expected)
        if with_model:
            assert routed.features is not None
            assert routed.features.ids == ids and routed.features.ts == ts
            assert np.array_equal(routed.features.matrix, matrix)
        said = {orjson.loads(value)["detection"].get("decided_by") for _, _, value in expected}
        assert said == ({"rules", "model", "model_veto"} if with_model else {None})
