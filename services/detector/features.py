"""The model's view of a transaction: a fixed row of numbers. Pure.

The figures come from what the rules already compute for their verdicts (velocity and
what the source's own pace predicts for the window, the time since the source's
previous payment, fan-in, the amount's z-score and ratio against the account's history,
its z-score in log space, and how long that history is, novelty of the counterparty,
new payees lately and in a row, and how often others paid the payee lately) plus the
amount itself, so the model costs no second pass over state. Counts, times and amounts
are log-scaled: a model then sees a burst of 8 and one of 80 as different, and a large
amount as large, without either swamping the rest.

A replayed credit-card dataset carries ``V1`` .. ``V28`` in the record's ``features``
member; they fill the columns after the rules' figures. Every other record leaves them
at zero, which a linear model reads as "no evidence": a record is searched for them
only when its bytes hold ``"V1"``, so the common path pays a byte search, not a decode.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import NamedTuple

import msgspec
import numpy as np

from services.detector.rules import NO_GAP_S

RULE_FEATURES = ("log_amount", "velocity", "fan_in", "amount_z", "novelty", "new_payees",
                 "velocity_usual", "amount_ratio", "history", "new_streak", "payee_paid",
                 "amount_log_z", "gap_s")
# What a figure counts as when its rule is off (0 for any other).
DEFAULTS = {"amount_ratio": 1.0, "gap_s": NO_GAP_S}
_figures_of = itemgetter(*RULE_FEATURES[1:])  # the amount is not a figure
DATASET_FEATURES = tuple(f"V{i}" for i in range(1, 29))
NAMES = RULE_FEATURES + DATASET_FEATURES
WIDTH = len(NAMES)


class _Carried(msgspec.Struct):
    """The one member of a replayed record the model reads beyond the transaction."""

    features: dict[str, float] | msgspec.UnsetType = msgspec.UNSET


_decode_carried = msgspec.json.Decoder(_Carried).decode


def dataset_features(raw: bytes) -> list[float] | None:
    """``V1`` .. ``V28`` as carried by a replayed record, None for any other record
    (or one whose ``features`` are not numbers: the rules' figures still count)."""
    if b'"V1"' not in raw:
        return None
    try:
        carried = _decode_carried(raw).features
    except (msgspec.DecodeError, ValueError):
        return None
    if carried is msgspec.UNSET:
        return None
    return [carried.get(name, 0.0) for name in DATASET_FEATURES]


class BatchFeatures(NamedTuple):
    """The rows a batch was scored on, with what identifies each: for the label join.
    With ``verdicts``, also how each was judged, for grading (``trust``)."""

    ids: list[str]
    ts: list[int]
    matrix: np.ndarray  # shape (len(ids), WIDTH)
    # shape (len(ids), 2): whether a rule fired (0 or 1), the model's score (NaN: none)
    verdicts: np.ndarray | None = None


class FeatureRows:
    """Collects one batch's figures row by row, then makes the matrix in one step.

    Per record it appends to a few lists; the figures are read out of their dicts
    and log scaled once per batch, in C and vectorised.
    """

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.ts: list[int] = []
        self._amounts: list[float] = []
        self._figures: list[Mapping[str, float]] = []
        self._dataset: list[tuple[int, list[float]]] = []

    def __len__(self) -> int:
        return len(self._amounts)

    def add(self, tx_id: str, ts: int, amount: float, figures: Mapping[str, float],
            dataset: list[float] | None = None) -> None:
        """One transaction: its amount, the rules' figures (missing ones count as
        ``DEFAULTS`` say; read when the matrix is made, so they must not change
        before) and, for a replayed record, its ``V1`` .. ``V28``."""
        if dataset is not None:
            self._dataset.append((len(self._amounts), dataset))
        self.ids.append(tx_id)
        self.ts.append(ts)
        self._amounts.append(amount)
        self._figures.append(figures)

    def matrix(self) -> np.ndarray:
        """The rows so far, shape ``(len(self), WIDTH)``."""
        count = len(self._amounts)
        matrix = np.zeros((count, WIDTH))
        if count:
            figures = np.empty((count, len(RULE_FEATURES)))
            figures[:, 0] = self._amounts
            try:  # every rule ran: a C call a row, no Python step
                values = list(map(_figures_of, self._figures))
            except KeyError:  # some rules are off
                values = [tuple(figures.get(name, DEFAULTS.get(name, 0.0))
                                for name in RULE_FEATURES[1:]) for figures in self._figures]
            # From one flat iterator: numpy reads a list of tuples as nested sequences,
            # twice as slow.
            figures[:, 1:] = np.fromiter(
                chain.from_iterable(values), float,
                count * (len(RULE_FEATURES) - 1)).reshape(count, len(RULE_FEATURES) - 1)
            matrix[:, : len(RULE_FEATURES)] = scale(figures)
        for row, values in self._dataset:
            matrix[row, len(RULE_FEATURES):] = values
        return matrix

    def batch(self) -> BatchFeatures:
        return BatchFeatures(self.ids, self.ts, self.matrix())


def columns_matrix(amounts: np.ndarray, figures: Mapping[str, np.ndarray],
                   dataset: Sequence[tuple[int, list[float]]] = ()) -> np.ndarray:
    """The matrix ``FeatureRows`` makes, from the rules' figures in columns (one array
    a figure, as ``rules.Judged`` holds them; a missing one counts as ``DEFAULTS``
    says), and the ``V1`` .. ``V28`` of the rows that carry them: no Python step a row."""
    count = len(amounts)
    matrix = np.zeros((count, WIDTH))
    if count:
        raw = np.empty((count, len(RULE_FEATURES)))
        raw[:, 0] = amounts
        for at, name in enumerate(RULE_FEATURES[1:], 1):
            column = figures.get(name)
            raw[:, at] = DEFAULTS.get(name, 0.0) if column is None else column
        matrix[:, : len(RULE_FEATURES)] = scale(raw)
    for row, values in dataset:
        matrix[row, len(RULE_FEATURES):] = values
    return matrix


def scale(figures: np.ndarray) -> np.ndarray:
    """Raw figures (in the order of ``RULE_FEATURES``, one row each) to model inputs."""
    out = np.empty_like(figures)
    out[:, 0:3] = np.log1p(np.maximum(figures[:, 0:3], 0.0))
    z = figures[:, 3]
    out[:, 3] = np.sign(z) * np.log1p(np.abs(z))  # keeps the sign, tames a z of 500
    out[:, 4] = figures[:, 4]
    out[:, 5:7] = np.log1p(np.maximum(figures[:, 5:7], 0.0))
    # A ratio to the account's mean: a tenth and ten times are as far from habit.
    out[:, 7] = np.log(np.maximum(figures[:, 7], 1e-3))
    out[:, 8:11] = np.log1p(np.maximum(figures[:, 8:11], 0.0))
    # Already in spreads of the log amount; far out, ten spreads or twenty is all one.
    out[:, 11] = np.clip(figures[:, 11], -12.0, 12.0)
    out[:, 12] = np.log1p(np.maximum(figures[:, 12], 0.0))
    return out


def rows(examples: list[tuple[float, Mapping[str, float]]]) -> np.ndarray:
    """The matrix for ``(amount, figures)`` pairs: a shortcut for tests and benches."""
    collected = FeatureRows()
    for i, (amount, figures) in enumerate(examples):
        collected.add(str(i), 0, amount, figures)
    return collected.matrix()
