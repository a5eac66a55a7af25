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

import numpy as np

# A graded transaction as one small code: 4 if it was fraud, + 2 if the rules said
# fraud, + 1 if the model did; counted per batch with np.bincount.
FRAUD, BY_RULES, BY_MODEL = 4, 2, 1


class ModelTrust:
    """F1 of both verdicts over the recent graded transactions. See the module."""

    def __init__(self, window: int = 5_000, min_frauds: int = 50,
                 margin: float = 0.02) -> None:
        if window < 1 or min_frauds < 1 or margin < 0:
            raise ValueError(f"invalid trust settings: window {window}, at least "
                             f"{min_frauds} frauds, margin {margin}")
        self.window = window
        self.min_frauds = min_frauds
        self.margin = margin
        self.trusted = False
        self._graded = np.zeros(0, dtype=np.int8)  # the newest ``window`` codes

    def grade(self, labels: np.ndarray, hits: np.ndarray, scores: np.ndarray,
              cutoff: float, veto: float) -> None:
        """Grade labelled transactions: their labels, whether a rule fired on each, and
        the model's score when it was judged (NaN: it had none), then decide anew."""
        scored = ~np.isnan(scores)  # without a model yet there is nothing of its to grade
        fraud, by_rules, score = labels[scored] > 0, hits[scored] > 0, scores[scored]
        by_model = (score >= cutoff) | (by_rules & (score >= veto))
        codes = (FRAUD * fraud + BY_RULES * by_rules + BY_MODEL * by_model).astype(np.int8)
        self._graded = np.concatenate((self._graded, codes))[-self.window:]
        rules, model = self.f1()
        if int(np.count_nonzero(self._graded >= FRAUD)) < self.min_frauds:
            self.trusted = False
        elif self.trusted:
            self.trusted = model >= rules - self.margin
        else:
            self.trusted = model >= rules

    def f1(self) -> tuple[float, float]:
        """``(rules, model)``: F1 of each over the graded transactions in the window."""
        counts = np.bincount(self._graded, minlength=8)
        return _f1(counts, BY_RULES), _f1(counts, BY_MODEL)

    def status(self) -> dict[str, object]:
        rules, model = self.f1()
        return {"deciding": self.trusted, "graded": len(self._graded),
                "f1_model": round(model, 3), "f1_rules": round(rules, 3)}


def _f1(counts: np.ndarray, said: int) -> float:
    """F1 of the verdict whose bit is ``said``, from the counts of each code."""
    codes = np.arange(8)
    fraud, flagged = (codes & FRAUD) > 0, (codes & said) > 0
    tp = int(counts[fraud & flagged].sum())
    fp = int(counts[~fraud & flagged].sum())
    fn = int(counts[fraud & ~flagged].sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0
