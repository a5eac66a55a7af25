"""What the console shows, screen by screen, at 80x24 and 160x48.

Each screen is built from a scripted feed on a fake clock, so it is the same on every
run; the SVGs under __snapshots__ were reviewed by eye before they were committed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import orjson
import pytest

from services.detector.routing import CUTOFF, VETO
from services.detector.rules import RuleSettings
from tests.tui.scripted import ScriptedFeed, output
from tui.app import FraudConsole

SIZES = [(80, 24), (160, 48)]


@pytest.fixture(autouse=True)
def utc() -> None:
    os.environ["TZ"] = "UTC"
    time.tzset()


def under_load() -> ScriptedFeed:
    feed = ScriptedFeed()
    feed.traffic(seconds=90, tps=200)
    feed.traffic(seconds=60, tps=1000)
    return feed


def fraud_heavy() -> ScriptedFeed:
    feed = ScriptedFeed()
    feed.settings["detector"]["threshold"] = 300.0
    feed.settings["generator"]["tps"] = 500.0
    feed.traffic(seconds=120, tps=500, threshold=300.0, dead=2)
    return feed


def paused() -> ScriptedFeed:
    feed = under_load()
    feed.send("paused", True)
    feed.answer("generator", applied=True)
    feed.traffic(seconds=30, tps=0)
    return feed


def broker_unreachable() -> ScriptedFeed:
    feed = under_load()
    feed.aggregator.set_connected(False)
    feed.fake_clock.now += 12
    return feed


def refused_command() -> ScriptedFeed:
    feed = under_load()
    feed.send("threshold", 950.0)
    feed.answer("detector", applied=False, reason="command signature does not match")
    return feed


def quality() -> ScriptedFeed:
    """Labelled scenarios and an evaluator: the quality panel's figures."""
    feed = ScriptedFeed()
    feed.settings["generator"]["tps"] = 200.0
    feed.scenario_traffic(seconds=90, tps=200)
    return feed


def threshold_lowered() -> ScriptedFeed:
    """The user pressed ``[`` down to 300 a minute ago: recall up, precision down."""
    feed = quality()
    feed.settings["detector"]["threshold"] = 300.0
    feed.scenario_traffic(seconds=60, tps=200, threshold=300.0)
    return feed


def evaluator_silent() -> ScriptedFeed:
    """The evaluator stopped: its last figures stay, marked with how old they are."""
    feed = quality()
    feed.fake_clock.now += 12
    feed.heartbeats()
    return feed


def unlabelled() -> ScriptedFeed:
    """An evaluator runs, but the tutorial profile labels nothing."""
    feed = under_load()
    for n in range(500):
        feed.evaluator.verdict(output(orjson.dumps(
            {"id": f"t{n}", "ts": int(feed.fake_clock.now * 1000), "source": "A",
             "target": "B", "amount": 10.0, "currency": "EUR"}), 900.0)[1])
    feed.evaluator_says()
    feed.heartbeats(services=("generator", "detector", "evaluator"))
    return feed


def rules() -> ScriptedFeed:
    """The full detector: rule settings in force and a model on its third version."""
    feed = quality()
    feed.settings["detector"].update(RuleSettings(velocity_count=10).values(),
                                     model_cutoff=CUTOFF, model_veto=VETO)
    feed.counters["detector"] = {"model": {"version": 3, "trained_at": 0, "age_s": 42.0,
                                           "examples": 12_000, "retraining": False}}
    feed.heartbeats(services=("generator", "detector", "evaluator"))
    return feed


SCREENS: dict[str, tuple[Callable[[], ScriptedFeed], list[str]]] = {
    "under_load": (under_load, []),
    "fraud_heavy": (fraud_heavy, []),
    "paused": (paused, []),
    "broker_unreachable": (broker_unreachable, []),
    "refused_command": (refused_command, []),
    "help": (under_load, ["question_mark"]),
    "tps_pending": (under_load, ["plus"]),
    "quality": (quality, []),
    "threshold_lowered": (threshold_lowered, []),
    "unlabelled": (unlabelled, []),
    "evaluator_silent": (evaluator_silent, []),
    "model": (rules, []),
    "rules_dialog": (rules, ["e", "down", "down"]),
    # The analyst's keys: the second fraud row opened; a filter on the amount; the
    # tuning curve with its cursor two steps under the threshold in force.
    "detail": (quality, ["j", "j", "enter"]),
    "filter": (quality, ["slash", *"amount", "greater_than_sign", *"1000", "enter"]),
    "curve": (quality, ["c", "left", "left"]),
}


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen(snap_compare, screen: str, size: tuple[int, int]) -> None:
    make, keys = SCREENS[screen]
    app = FraudConsole(make(), subtitle="attached to 127.0.0.1:9092")
    assert snap_compare(app, press=keys, terminal_size=size)
