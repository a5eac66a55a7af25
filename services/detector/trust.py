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

What the model adds on its own, an alarm no rule raised (a score at or above the
cutoff), is graded apart: F1 weighs a missed fraud as much as a false alarm, so a
model whose lone alarms are mostly wrong can still beat the rules on F1 by the frauds
it catches, while every other alarm it raises is false. That is what it does for a
few minutes after the stream's rate changes tenfold (every account pays ten times as
often, and the features it learnt at the old rate read as a burst): its lone alarms
were right a third of the time. So the model raises alarms alone only while they are
right at least as often as the rules' alarms are, over the same window (and never
less often than ``ALONE_PRECISION``), once ``min_alone`` of them are graded: its
lone alarms then never make the verdicts less precise than the rules make them. A
looser bar (right as often as wrong) let precision fall to 0.76 for a minute after
such a change, where the rules alone held 0.87. It keeps its veto either way, and
its F1 is that of the verdict it would give.
"""

from __future__ import annotations

import numpy as np

# A graded transaction as one small code: 4 if it was fraud, + 2 if the rules said
# fraud, + 1 if the model did; counted per batch with np.bincount.
FRAUD, BY_RULES, BY_MODEL = 4, 2, 1
# The model raises alarms alone while at least this share of them are fraud, and at
# least the share of the rules' alarms that are.
ALONE_PRECISION = 0.5


class ModelTrust:
    """F1 of both verdicts over the recent graded transactions. See the module."""

    def __init__(self, window: int = 5_000, min_frauds: int = 50,
                 margin: float = 0.02, min_alone: int = 20) -> None:
        if window < 1 or min_frauds < 1 or margin < 0 or min_alone < 1:
            raise ValueError(f"invalid trust settings: window {window}, at least "
                             f"{min_frauds} frauds, margin {margin}, at least "
                             f"{min_alone} lone alarms")
        self.window = window
        self.min_frauds = min_frauds
        self.margin = margin
        self.min_alone = min_alone
        self.trusted = False
        # Whether the model may raise an alarm no rule raised (see the module).
        self.alone = True
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
        counts = np.bincount(self._graded, minlength=8)
        lone = int(counts[BY_MODEL] + counts[FRAUD | BY_MODEL])
        if lone >= self.min_alone:
            wrong = int(counts[BY_RULES] + counts[BY_RULES | BY_MODEL])
            right = int(counts[FRAUD | BY_RULES] + counts[FRAUD | BY_RULES | BY_MODEL])
            rules = right / (right + wrong) if right + wrong else 0.0
            bar = max(ALONE_PRECISION, rules) - (self.margin if self.alone else 0.0)
            self.alone = int(counts[FRAUD | BY_MODEL]) >= bar * lone
        rules, model = self.f1()
        if int(np.count_nonzero(self._graded >= FRAUD)) < self.min_frauds:
            self.trusted = False
        elif self.trusted:
            self.trusted = model >= rules - self.margin
        else:
            self.trusted = model >= rules

    def f1(self) -> tuple[float, float]:
        """``(rules, model)``: F1 of each over the graded transactions in the window,
        the model's without its lone alarms while it may not raise them."""
        counts = np.bincount(self._graded, minlength=8)
        return _f1(counts, BY_RULES), _f1(counts, BY_MODEL, not self.alone)

    def status(self) -> dict[str, object]:
        rules, model = self.f1()
        return {"deciding": self.trusted, "alone": self.alone,
                "graded": len(self._graded),
                "f1_model": round(model, 3), "f1_rules": round(rules, 3)}


def _f1(counts: np.ndarray, said: int, with_rules: bool = False) -> float:
    """F1 of the verdict whose bit is ``said``, from the counts of each code; with
    ``with_rules``, only where the rules' bit is set too."""
    codes = np.arange(8)
    fraud, flagged = (codes & FRAUD) > 0, (codes & said) > 0
    if with_rules:
        flagged &= (codes & BY_RULES) > 0
    tp = int(counts[fraud & flagged].sum())
    fp = int(counts[~fraud & flagged].sum())
    fn = int(counts[fraud & ~flagged].sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0
