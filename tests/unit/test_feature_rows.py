"""``FeatureRows.matrix`` gives the matrix that filling it row by row gives."""

from __future__ import annotations

import random

import numpy as np

from services.detector.features import (
    DATASET_FEATURES,
    DEFAULTS,
    RULE_FEATURES,
    WIDTH,
    FeatureRows,
    scale,
)


def test_the_matrix_is_the_rows_scaled() -> None:
    rng = random.Random(5)
    rows = FeatureRows()
    expected = []
    for n in range(500):
        # Figures as the rules leave them: floats, ints (counts), now and then one off.
        figures: dict[str, float] = {
            name: rng.choice([rng.randint(0, 40), rng.uniform(-50, 50), 0.0, 1e17])
            for name in RULE_FEATURES[1:] if rng.random() > 0.05}
        amount = round(rng.uniform(0, 5000), 2)
        dataset = [rng.uniform(-3, 3) for _ in DATASET_FEATURES] if n % 7 == 0 else None
        rows.add(str(n), n, amount, figures, dataset)
        raw = [amount] + [figures.get(name, DEFAULTS.get(name, 0.0))
                          for name in RULE_FEATURES[1:]]
        row = np.zeros(WIDTH)
        row[: len(RULE_FEATURES)] = scale(np.array([raw], dtype=float))[0]
        if dataset is not None:
            row[len(RULE_FEATURES):] = dataset
        expected.append(row)
    assert np.array_equal(rows.matrix(), np.array(expected))
    assert FeatureRows().matrix().shape == (0, WIDTH)
