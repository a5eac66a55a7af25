"""The quality message on the status topic: its schema, for the evaluator that writes
it and any console that reads it. Pure.

Once a second the evaluator publishes, next to the services' heartbeats and acks::

    {"v": 1, "kind": "quality", "service": "evaluator", "instance": "...",
     "ts": 1700000000000, "window": {"seconds": 60, "start": ..., "end": ...},
     "counts": {"tp": 110, "fp": 7, "fn": 9, "tn": 5686},
     "precision": 0.94, "recall": 0.92, "f1": 0.93,
     "scenarios": {"card_testing": {"frauds": 20, "caught": 19}},
     "rules": {"amount_threshold": {"fired": 117, "frauds": 110, "precision": 0.94,
                                    "recall": 0.92, "f1": 0.93}},
     "totals": {"joined": 5812, "unmatched_verdicts": 0, ...},
     "curves": {"amount": {"rule": "amount_threshold", "edges": [0, 1, 2, ..., 50000],
                           "fraud": [3, 0, ...], "legit": [120, 98, ...],
                           "other": [12, 1], "unbinned": [0, 0]},
                "score": {"rule": "model", "edges": [0, 0.01, ..., 0.99], ...}}}

Counts are the truth; the figures (overall and per rule) are there for a person reading
the topic and are recomputed from the counts by readers. A rule's recall is the share
of the window's frauds it fired on. A scenario has a recall only: a transaction that
belongs to no scenario cannot be a scenario's false positive. ``window.start``/``end``
(event time, ms) are null before anything was joined. A reader ignores members it does
not know and refuses a newer version, so the message can grow without breaking older
consoles.

``curves`` (added in version 1; absent from older evaluators) is what the console's
tuning curve needs: the window's labelled outcomes binned by amount and by the model's
score, frauds and legit apart. With the setting at ``edges[i]``, ``rule`` fires on the
bins from ``i`` on, and ``other`` (``[frauds, legit]``: fraud by another rule) stays
fraud, so precision and recall at every edge are a few sums (``CurveFigures``).
``unbinned`` counts outcomes with no value on the axis (no score yet). About 2 kB.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import orjson

from services.evaluator.quality import AXES, ConfusionFigures, Tally, f1, ratio

VERSION = 1
KIND = "quality"


def encode(service: str, instance: str, now_ms: int, window_seconds: int,
           span: tuple[int, int] | None, tally: Tally, totals: Mapping[str, int]) -> bytes:
    start, end = span if span is not None else (None, None)
    return orjson.dumps({
        "v": VERSION, "kind": KIND, "service": service, "instance": instance, "ts": now_ms,
        "window": {"seconds": window_seconds, "start": start, "end": end},
        "counts": {"tp": tally.tp, "fp": tally.fp, "fn": tally.fn, "tn": tally.tn},
        "precision": tally.precision, "recall": tally.recall, "f1": tally.f1,
        "scenarios": {name: {"frauds": frauds, "caught": caught}
                      for name, (frauds, caught) in sorted(tally.scenarios.items())},
        "rules": {name: _rule_figures(fired, frauds, tally.tp + tally.fn)
                  for name, (fired, frauds) in sorted(tally.rules.items())},
        "totals": dict(totals),
        "curves": {axis.name: {"rule": axis.rule, "edges": axis.edges,
                               "fraud": curve.fraud, "legit": curve.legit,
                               "other": curve.other, "unbinned": curve.unbinned}
                   for axis in AXES if (curve := tally.curves.get(axis.name)) is not None},
    })


def _rule_figures(fired: int, frauds: int, window_frauds: int) -> dict[str, Any]:
    rule = RuleFigures("", fired, frauds, window_frauds)
    return {"fired": fired, "frauds": frauds, "precision": rule.precision,
            "recall": rule.recall, "f1": rule.f1}


@dataclass(frozen=True)
class ScenarioFigures:
    name: str
    frauds: int
    caught: int

    @property
    def recall(self) -> float | None:
        return ratio(self.caught, self.frauds)


@dataclass(frozen=True)
class RuleFigures:
    name: str
    fired: int
    frauds: int  # of the times it fired, how many were fraud
    window_frauds: int = 0  # every fraud in the window, the rule's or not

    @property
    def precision(self) -> float | None:
        return ratio(self.frauds, self.fired)

    @property
    def recall(self) -> float | None:
        return ratio(self.frauds, self.window_frauds)

    @property
    def f1(self) -> float | None:
        return f1(self.precision, self.recall)


@dataclass(frozen=True)
class CurveFigures:
    """Precision and recall were the setting of ``name`` at each of its ``edges``."""

    name: str
    rule: str
    edges: tuple[float, ...]
    fraud: tuple[int, ...]
    legit: tuple[int, ...]
    other: tuple[int, int] = (0, 0)
    unbinned: tuple[int, int] = (0, 0)

    @property
    def frauds(self) -> int:
        """Every fraud in the window: what recall is a share of."""
        return sum(self.fraud) + self.other[0] + self.unbinned[0]

    def flagged_at(self, index: int) -> tuple[int, int]:
        """``(frauds, legit)`` that are fraud with the setting at ``edges[index]``."""
        return (self.other[0] + sum(self.fraud[index:]),
                self.other[1] + sum(self.legit[index:]))

    def precision_at(self, index: int) -> float | None:
        caught, false_alarms = self.flagged_at(index)
        return ratio(caught, caught + false_alarms)

    def recall_at(self, index: int) -> float | None:
        return ratio(self.flagged_at(index)[0], self.frauds)

    def index_of(self, setting: float) -> int:
        """The edge at or just below ``setting``: where a setting in force sits."""
        return max((i for i, edge in enumerate(self.edges) if edge <= setting + 1e-9),
                   default=0)


@dataclass(frozen=True)
class Quality(ConfusionFigures):
    """One quality message as a reader sees it."""

    instance: str
    ts: int  # when it was published, ms
    window_seconds: int
    tp: int
    fp: int
    fn: int
    tn: int
    scenarios: tuple[ScenarioFigures, ...] = ()
    rules: tuple[RuleFigures, ...] = ()
    totals: Mapping[str, int] = field(default_factory=dict)
    curves: Mapping[str, CurveFigures] = field(default_factory=dict)


def parse(raw: bytes | None) -> Quality | None:
    """The quality message in ``raw``, or None for anything else (never raises)."""
    if raw is None or b'"quality"' not in raw:  # most status messages: skip undecoded
        return None
    try:
        body = orjson.loads(raw)
        if not isinstance(body, dict) or body.get("kind") != KIND:
            return None
        version = body["v"]
        if not isinstance(version, int) or not 1 <= version <= VERSION:
            return None
        counts = body["counts"]
        return Quality(
            instance=_text(body["instance"]), ts=_count(body["ts"]),
            window_seconds=_count(body["window"]["seconds"]),
            tp=_count(counts["tp"]), fp=_count(counts["fp"]), fn=_count(counts["fn"]),
            tn=_count(counts["tn"]),
            scenarios=tuple(ScenarioFigures(_text(name), _count(f["frauds"]),
                                            _count(f["caught"]))
                            for name, f in body.get("scenarios", {}).items()),
            rules=tuple(RuleFigures(_text(name), _count(f["fired"]), _count(f["frauds"]),
                                    _count(counts["tp"]) + _count(counts["fn"]))
                        for name, f in body.get("rules", {}).items()),
            totals={_text(k): _count(v) for k, v in body.get("totals", {}).items()},
            curves={_text(name): _curve(_text(name), c)
                    for name, c in (body.get("curves") or {}).items()},
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


def _curve(name: str, body: Mapping[str, Any]) -> CurveFigures:
    edges = tuple(float(edge) for edge in body["edges"])
    fraud = tuple(map(_count, body["fraud"]))
    legit = tuple(map(_count, body["legit"]))
    if not edges or len(fraud) != len(edges) or len(legit) != len(edges) or any(
            b <= a for a, b in pairwise(edges)):
        raise ValueError(f"curve {name}: bins do not match rising edges")
    other = tuple(map(_count, body.get("other") or (0, 0)))
    unbinned = tuple(map(_count, body.get("unbinned") or (0, 0)))
    if len(other) != 2 or len(unbinned) != 2:
        raise ValueError(f"curve {name}: other and unbinned are [frauds, legit]")
    return CurveFigures(name, _text(body["rule"]), edges, fraud, legit,
                        (other[0], other[1]), (unbinned[0], unbinned[1]))


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"not a count: {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"not a name: {value!r}")
    return value
