"""The model decides once its verdicts beat the rules' on the labels of what it scored,
and hands back to the rules when it falls behind."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.detector.trust import ModelTrust

CUTOFF, VETO = 0.2, 0.05


def grade(trust: ModelTrust, rows: list[tuple[int, bool, float]]) -> None:
    """``(label, a rule fired, the model's score)`` for each transaction."""
    labels, hits, scores = zip(*rows, strict=True)
    trust.grade(np.array(labels), np.array(hits), np.array(scores, dtype=float), CUTOFF, VETO)


def test_the_model_decides_once_it_beats_the_rules_with_enough_frauds_seen() -> None:
    trust = ModelTrust(min_frauds=10)
    # Frauds the rules miss and the model catches, everyday payments both let through.
    grade(trust, [(1, False, 0.9)] * 9 + [(0, False, 0.01)] * 50)
    assert not trust.trusted, "nine frauds are too few to judge by"
    grade(trust, [(1, False, 0.9)])
    assert trust.trusted and trust.f1() == (0.0, 1.0)
    assert trust.status() == {"deciding": True, "alone": True, "graded": 60,
                              "f1_model": 1.0, "f1_rules": 0.0}


def test_a_young_model_that_vetoes_the_rules_hits_does_not_decide() -> None:
    trust = ModelTrust(min_frauds=10)
    # The rules catch large amounts; a young model scores everything near nothing, and
    # its veto would let each through.
    grade(trust, [(1, True, 0.01)] * 20 + [(0, False, 0.01)] * 100 + [(0, True, 0.01)] * 2)
    rules, model = trust.f1()
    assert rules == pytest.approx(40 / 42) and model == 0.0
    assert not trust.trusted


def test_it_hands_back_to_the_rules_only_once_it_falls_a_margin_behind() -> None:
    trust = ModelTrust(window=100, min_frauds=5, margin=0.1)
    grade(trust, [(1, True, 0.9)] * 10 + [(0, False, 0.0)] * 90)  # both perfect
    assert trust.trusted, "as good as the rules is good enough"
    # The model now misses one fraud in ten that the rules catch: F1 0.95 against 1.
    grade(trust, [(1, True, 0.01)] + [(1, True, 0.9)] * 9 + [(0, False, 0.0)] * 90)
    assert trust.f1()[1] == pytest.approx(18 / 19) and trust.trusted
    grade(trust, [(1, True, 0.01)] * 5 + [(1, True, 0.9)] * 5 + [(0, False, 0.0)] * 90)
    assert not trust.trusted, "half of them missed: F1 0.67"


def test_only_the_window_counts_and_transactions_scored_without_a_model_never() -> None:
    trust = ModelTrust(window=50, min_frauds=5)
    grade(trust, [(1, True, math.nan)] * 30)  # judged before there was a model
    assert trust.status()["graded"] == 0
    grade(trust, [(1, True, 0.01)] * 50)  # the veto lets all through: the rules win
    assert not trust.trusted
    grade(trust, [(1, False, 0.9)] * 50)  # a window later, only these count
    assert trust.trusted and trust.f1() == (0.0, 1.0)


def test_it_keeps_its_veto_but_stops_raising_alarms_alone_while_those_are_mostly_wrong(
) -> None:
    trust = ModelTrust(window=1_000, min_frauds=10, min_alone=20)
    # The rate jumped: the rules catch 50 frauds and raise 20 false alarms, which the
    # model clears; alone it catches 30 more, but raises 60 false alarms with them.
    grade(trust, [(1, True, 0.9)] * 50 + [(0, True, 0.01)] * 20 + [(1, False, 0.9)] * 30
          + [(0, False, 0.9)] * 60 + [(1, False, 0.01)] * 20 + [(0, False, 0.0)] * 800)
    assert not trust.alone, "a third of its lone alarms are right"
    rules, model = trust.f1()
    # Its verdict without them: the rules' catches, their false alarms cleared.
    assert model == pytest.approx(100 / 150) and rules == pytest.approx(100 / 170)
    assert trust.trusted and trust.status()["alone"] is False
    # Once its lone alarms are right more often than not, it raises them again.
    grade(trust, [(1, False, 0.9)] * 80 + [(0, False, 0.0)] * 20)
    assert trust.alone and trust.trusted
