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
    columns_matrix,
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


def test_the_matrix_from_columns_is_the_matrix_from_rows() -> None:
    rng = random.Random(8)
    count = 300
    names = [name for name in RULE_FEATURES[1:] if rng.random() > 0.2]
    columns = {name: np.array([rng.choice([rng.randint(0, 40), rng.uniform(-50, 50), 0.0,
                                           1e17]) for _ in range(count)]) for name in names}
    columns["velocity"] = np.array([rng.randint(0, 40) for _ in range(count)], np.int64)
    amounts = np.array([round(rng.uniform(0, 5000), 2) for _ in range(count)])
    dataset = [(n, [rng.uniform(-3, 3) for _ in DATASET_FEATURES]) for n in range(0, count, 9)]
    rows = FeatureRows()
    carried = dict(dataset)
    for n in range(count):
        rows.add(str(n), n, float(amounts[n]), {name: column[n].item() for name, column in
                                                 columns.items()}, carried.get(n))
    assert np.array_equal(columns_matrix(amounts, columns, dataset), rows.matrix())
    assert columns_matrix(np.zeros(0), {}).shape == (0, WIDTH)
