"""Whether the model's verdicts beat the rules' alone: the model decides only then.
Pure.

A model that has learnt from a few hundred labels scores badly, and with the rules'
hits left to its veto it once made the detector worse than its rules for the first
minutes of a run: precision 0.37 to 0.55 where the rules alone had 0.75 to 0.88 (the
first 15,000 transactions at 100/s). So every transaction the model scored is graded
once its label comes (prequential evaluation: each verdict before the model learns
from its label), both ways: the rules' verdict alone (any hit is fraud), and the
model's (``routing.decide`` with the cutoff and veto in force). The model decides
while its F1 over the last ``window`` graded transactions is at least the rules'
(and ``min_frauds`` frauds are among them, so that the figures mean something); it
hands back to the rules once it falls ``margin`` below them. Its score is in every
verdict either way.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

# One graded transaction: (fraud, the rules said fraud, the model said fraud).
Graded = tuple[bool, bool, bool]


class ModelTrust:
    """Running F1 of both verdicts over the recent graded transactions. See the module."""

    def __init__(self, window: int = 5_000, min_frauds: int = 50,
                 margin: float = 0.02) -> None:
        if window < 1 or min_frauds < 1 or margin < 0:
            raise ValueError(f"invalid trust settings: window {window}, at least "
                             f"{min_frauds} frauds, margin {margin}")
        self.window = window
        self.min_frauds = min_frauds
        self.margin = margin
        self.trusted = False
        self._graded: deque[Graded] = deque()
        # [true positives, false positives, false negatives] of the rules and the model
        self._rules = [0, 0, 0]
        self._model = [0, 0, 0]
        self._frauds = 0

    def grade(self, labels: np.ndarray, hits: np.ndarray, scores: np.ndarray,
              cutoff: float, veto: float) -> None:
        """Grade labelled transactions: their labels, whether a rule fired on each, and
        the model's score when it was judged (NaN: it had none), then decide anew."""
        for label, hit, score in zip(labels.tolist(), hits.tolist(), scores.tolist(),
                                     strict=True):
            if math.isnan(score):
                continue  # no model yet: nothing of its to grade
            fraud, by_rules = bool(label), bool(hit)
            by_model = score >= cutoff or (by_rules and score >= veto)
            self._count((fraud, by_rules, by_model), 1)
            if len(self._graded) > self.window:
                self._count(self._graded.popleft(), -1)
        rules, model = self.f1()
        if self._frauds < self.min_frauds:
            self.trusted = False
        elif self.trusted:
            self.trusted = model >= rules - self.margin
        else:
            self.trusted = model >= rules

    def _count(self, graded: Graded, sign: int) -> None:
        if sign > 0:
            self._graded.append(graded)
        fraud, by_rules, by_model = graded
        self._frauds += sign * fraud
        for tally, said in ((self._rules, by_rules), (self._model, by_model)):
            if said and fraud:
                tally[0] += sign
            elif said:
                tally[1] += sign
            elif fraud:
                tally[2] += sign

    def f1(self) -> tuple[float, float]:
        """``(rules, model)``: F1 of each over the graded transactions in the window."""
        return _f1(self._rules), _f1(self._model)

    def status(self) -> dict[str, object]:
        rules, model = self.f1()
        return {"deciding": self.trusted, "graded": len(self._graded),
                "f1_model": round(model, 3), "f1_rules": round(rules, 3)}


def _f1(tally: list[int]) -> float:
    tp, fp, fn = tally
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0
