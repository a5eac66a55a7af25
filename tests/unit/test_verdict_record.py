"""``VerdictWriter.record`` writes a transaction with its verdict appended exactly as
appending ``VerdictWriter.detection`` to it does."""

from __future__ import annotations

import random

from services.detector.routing import VerdictWriter, decide, decider
from tests.unit.test_verdict_writer import REASONS, figures


def test_record_is_the_transaction_with_the_detection_appended() -> None:
    rng = random.Random(11)
    tx = b'{"id":"t-1","ts":1700000000000,"source":"a","target":"b","amount":12.5}'
    for n in range(3000):
        hits = rng.sample(REASONS, rng.choice([0, 0, 0, 1, 2]))
        features = figures(rng)
        score = rng.choice([None, 0.0, 1.0, round(rng.random(), 4), 0.05, 0.2])
        if n % 3 == 0:
            writer = VerdictWriter(900.0, "d-1")
            fraud, hits = decide(hits, None)
            said = None
            score = None
        else:
            writer = VerdictWriter(900.0, "d-1", rng.choice([(0.2, 0.05), (1.0, 1.0)]))
            decides = rng.random() < 0.7
            cutoff, veto = 0.2, 0.05
            said = (decider(bool(hits), score, cutoff, veto, decides), decides)
            fraud, hits = decide(hits, score if decides else None, cutoff, veto)
        expected = b"".join((tx[:-1], b',"detection":',
                             writer.detection(hits, features, score, fraud, said), b"}"))
        # Twice: the second finds the tail written by the first.
        assert writer.record(tx, hits, features, score, fraud, said) == expected
        assert writer.record(tx, hits, features, score, fraud, said) == expected
