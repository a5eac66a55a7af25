"""``VerdictWriter.records`` writes a batch's verdicts from columns exactly as
``VerdictWriter.record`` writes each from its own hits and figures."""

from __future__ import annotations

import random

import numpy as np

from services.detector.routing import DECIDERS, VerdictWriter
from tests.unit.test_verdict_writer import REASONS

TX = b'{"id":"t-1","ts":1700000000000,"source":"a","target":"b","amount":12.5}'


def columns(rng: random.Random, count: int) -> dict[str, np.ndarray]:
    """Figures as the rules leave them: counts as ints, the rest floats, some odd."""
    out: dict[str, np.ndarray] = {}
    for name in rng.sample(["velocity", "gap_s", "amount_z", "history", "fan_in"],
                           rng.randint(0, 5)):
        if rng.random() < 0.4:
            high = rng.choice([5, 1023, 1024, 10**6])  # counts, written from a table or not
            out[name] = np.array([rng.randint(-3 if high > 5 else 0, high)
                                  for _ in range(count)], np.int64)
        else:
            out[name] = np.array([rng.choice([0.0, -0.0, 1e-7, 86400.0, 1e17, float("nan"),
                                              round(rng.uniform(-1e3, 1e3), 3)])
                                  for _ in range(count)])
    return out


def test_records_are_each_record_written_alone() -> None:
    rng = random.Random(3)
    for _ in range(200):
        count = rng.randint(1, 12)
        figures = columns(rng, count)
        hits = {i: rng.sample(REASONS, rng.randint(1, 2)) for i in range(count)
                if rng.random() < 0.3}
        fraud = np.array([rng.random() < 0.4 for _ in range(count)])
        txs = [TX[:-1] + f',"n":{i}}}'.encode() for i in range(count)]
        if rng.random() < 0.3:  # without a model
            writer = VerdictWriter(900.0, "d-1")
            got = writer.records(txs, fraud, hits, None, figures)
            expected = [writer.record(tx, hits.get(i, []), {k: v[i].item() for k, v in
                                                            figures.items()}, None,
                                      bool(fraud[i])) for i, tx in enumerate(txs)]
        else:
            writer = VerdictWriter(900.0, "d-1", (0.2, 0.05))
            scores = None if rng.random() < 0.2 else \
                [rng.choice([0.0, 1.0, 0.05, 0.2, round(rng.random(), 4)]) for _ in txs]
            by = np.array([rng.randrange(len(DECIDERS)) for _ in txs])
            got = writer.records(txs, fraud, hits, scores, figures, DECIDERS, by)
            expected = [writer.record(tx, hits.get(i, []), {k: v[i].item() for k, v in
                                                            figures.items()},
                                      None if scores is None else scores[i], bool(fraud[i]),
                                      DECIDERS[by[i]]) for i, tx in enumerate(txs)]
        assert got == expected
    assert VerdictWriter(900.0, "d-1").records([], np.zeros(0, bool), {}, None, {}) == []
