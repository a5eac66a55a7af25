"""Ground truth: one label per generated transaction, for the labels topic. Pure.

A label is keyed by the transaction's id (so that whoever joins verdicts with labels
finds them by that id) and reads::

    {"id": "3f2a...-17", "ts": 1700000000000, "fraud": true,
     "scenario": "card_testing", "case": "3f2a...-c4"}

``scenario`` names what the transaction belongs to (a name from
``services.generator.scenarios``, or ``dataset`` for a fraudulent row of a replayed
dataset) and is null for everyday traffic; ``case`` tells apart two runs of the same
scenario (all transactions of one card-testing burst share it) and is null where
there is none. ``ts`` is the transaction's event time, so that a join can bound how
long it waits. The detector never reads these labels.
"""

from __future__ import annotations

import orjson

DATASET = "dataset"  # the scenario of a fraudulent row of a replayed dataset


# Nearly every label is this one. Filling in a template costs a fraction of building
# and serialising a dict, which matters at one label per transaction; the ids that go
# in are this generator's own (letters, digits, dashes: nothing to escape).
EVERYDAY_LABEL = b'{"id":"%s","ts":%d,"fraud":false,"scenario":null,"case":null}'


def label(tx_id: str, ts_ms: int, scenario: str | None, case: str | None = None
          ) -> tuple[bytes, bytes]:
    """The labels topic's ``(key, value)`` for one transaction."""
    key = tx_id.encode()
    if scenario is None and case is None:
        return key, EVERYDAY_LABEL % (key, ts_ms)
    return key, orjson.dumps({
        "id": tx_id, "ts": ts_ms, "fraud": scenario is not None, "scenario": scenario,
        "case": case,
    })
