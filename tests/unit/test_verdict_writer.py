"""``VerdictWriter`` writes what ``verdict`` does, byte for byte, for every kind of
verdict: with and without a model's score, hits, the model's cutoff and veto, and the
figures of every rule."""

from __future__ import annotations

import random

import pytest

from services.detector.routing import VerdictWriter, decide, decider, verdict
from services.detector.rules import Hit

NAMES = ("velocity", "velocity_usual", "gap_s", "amount_z", "history", "fan_in", "payee_paid")
REASONS = [Hit("velocity", "8 transactions from the source within 60 s"),
           Hit("amount_threshold", "amount >= 900"),
           Hit("fan_in", '20 distinct "sources" paid the target\\within 60 min'),
           Hit("card_testing", "tiny payments to 5 new payees — é ✓")]


def figures(rng: random.Random) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in rng.sample(NAMES, rng.randint(0, len(NAMES))):
        out[name] = rng.choice([rng.randint(0, 50), round(rng.uniform(-1e3, 1e3), 3), 0.0,
                                1e-7, 86400.0, 1e17])
    return out


@pytest.mark.parametrize("threshold,instance", [(900.0, "detector-1"), (900, "d\"2"),
                                                (0.01, "é")])
def test_the_writer_writes_what_verdict_writes(threshold: float, instance: str) -> None:
    rng = random.Random(f"{threshold}{instance}")
    for n in range(3000):
        hits = rng.sample(REASONS, rng.choice([0, 0, 0, 1, 2]))
        features = figures(rng)
        score = rng.choice([None, 0.0, 1.0, round(rng.random(), 4), 0.05, 0.2])
        if n % 3 == 0:  # without a model, the rules alone decide
            fraud, hits = decide(hits, None)
            expected = verdict(hits, features, None, threshold, instance, fraud)
            assert VerdictWriter(threshold, instance).detection(
                hits, features, None, fraud) == expected
            continue
        cutoff, veto = rng.choice([(0.2, 0.05), (1.0, 1.0), (0.9, 0.0), (1, 0)])
        decides = rng.random() < 0.7
        by = decider(bool(hits), score, cutoff, veto, decides)
        fraud, hits = decide(hits, score if decides else None, cutoff, veto)
        expected = verdict(hits, features, score, threshold, instance, fraud,
                           (cutoff, veto, by, decides))
        writer = VerdictWriter(threshold, instance, (cutoff, veto))
        assert writer.detection(hits, features, score, fraud, (by, decides)) == expected
        assert b"".join((writer.heads[fraud], writer.rules(hits), writer.score(score),
                         writer.features(features), writer.tail((by, decides)))) == expected
