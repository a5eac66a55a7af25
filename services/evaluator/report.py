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
     "totals": {"joined": 5812, "unmatched_verdicts": 0, ...}}

Counts are the truth; the figures (overall and per rule) are there for a person reading
the topic and are recomputed from the counts by readers. A rule's recall is the share
of the window's frauds it fired on. A scenario has a recall only: a transaction that
belongs to no scenario cannot be a scenario's false positive. ``window.start``/``end``
(event time, ms) are null before anything was joined. A reader ignores members it does
not know and refuses a newer version, so the message can grow without breaking older
consoles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.evaluator.quality import ConfusionFigures, Tally, f1, ratio

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
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"not a count: {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"not a name: {value!r}")
    return value
