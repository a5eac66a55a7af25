"""Whatever lands on the control topic, a service refuses it with a reason or applies a
valid value: no exception escapes, no invalid value is ever in force, and valid
commands around hostile ones still apply. Property-based (hypothesis)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from services import signing
from services.control import (
    MAX_AHEAD_MS,
    SETTINGS,
    CommandRefused,
    ControlCommand,
    LiveSettings,
    parse_command,
)
from services.security import Secret

NOW = 1_767_225_600_000
SECRET = Secret("property-test-secret-0123")
FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MEGABYTE = "x" * 1_000_000
JUST_UNDER_THE_LIMIT = "y" * 60_000  # parsed, so any echo of it in a reason would show

json_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)
# Values that break a field: wrong types, edges, absurd sizes.
hostile_values = (json_values | st.sampled_from([
    0, -1, -0.0, 1e308, -1e308, 2**63 - 1, 2**64 - 1, 1e-320, True, False, "", None,
    "NaN", "Infinity", MEGABYTE, [MEGABYTE], JUST_UNDER_THE_LIMIT, [JUST_UNDER_THE_LIMIT],
    {"value": 5}, "250",
    float("nan"), float("inf"), -float("inf"), 10**30, -(10**30),
]))
numbers = (st.floats() | st.integers(-(2**70), 2**70)
           | st.sampled_from([0, -1, 0.09, 100_000.01, 1e9 + 1, 1e308, float("nan")]))
FIELDS = ("v", "setting", "value", "id", "ts", "origin", "sig")


def valid_value(setting: str) -> st.SearchStrategy[Any]:
    spec = SETTINGS[setting]
    if spec.kind is bool:
        return st.booleans()
    if spec.kind is int:
        return st.integers(math.ceil(spec.low), math.floor(spec.high))
    return st.floats(spec.low, spec.high, allow_nan=False) | st.integers(
        math.ceil(spec.low), math.floor(spec.high))


@st.composite
def valid_body(draw: st.DrawFn, ident: str | None = None) -> dict[str, Any]:
    setting = draw(st.sampled_from(sorted(SETTINGS)))
    return {"v": 1, "setting": setting, "value": draw(valid_value(setting)),
            "id": ident or draw(st.text(min_size=1, max_size=12)),
            "ts": draw(st.integers(0, NOW)), "origin": draw(st.text(max_size=10))}


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid command (signed or not) broken in one or more ways, as raw bytes."""
    body = draw(valid_body())
    if draw(st.booleans()):
        body = signing.signed(body, SECRET)
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["drop", "replace", "extra", "version", "signature",
                                    "number", "number"]))
        if how == "number":  # the likeliest attack: a value out of range
            body["value"] = draw(numbers)
        elif how == "drop":
            body.pop(draw(st.sampled_from(FIELDS)), None)
        elif how == "replace":
            body[draw(st.sampled_from(FIELDS))] = draw(hostile_values)
        elif how == "extra":
            body[draw(st.text(max_size=8))] = draw(hostile_values)
        elif how == "version":
            body["v"] = draw(st.sampled_from([0, 2, -1, 1.0, "1", None, 10**30, True]))
        else:
            body["sig"] = draw(st.sampled_from(["", "00" * 32, "zz", "é" * 64]) | st.text())
    # The standard library writes what orjson would not: NaN, Infinity, 10**30.
    raw = json.dumps(body).encode()
    # And more: NaN and Infinity where a number belongs, cut or broken bytes.
    damage = draw(st.sampled_from(["none"] * 4 + ["nan", "infinity", "truncate", "utf8"]))
    if damage == "nan":
        raw = raw.replace(b'"value":', b'"value":NaN,"x":', 1)
    elif damage == "infinity":
        raw = raw.replace(b'"ts":', b'"ts":-Infinity,"y":', 1)
    elif damage == "truncate":
        raw = raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    elif damage == "utf8":
        raw = raw.replace(b'"origin"', b'"\xff\xfeorigin"', 1)
    return raw


def outcome_of(parse: Callable[[], ControlCommand]) -> ControlCommand | None:
    """The command, or None for a refusal; any other exception fails the property."""
    try:
        return parse()
    except CommandRefused as refused:
        assert str(refused)  # a refusal always says why
        assert len(str(refused)) < 400  # and briefly, whatever the input
        return None


WHOLE = {"velocity_count": (2, 100_000), "fan_in_sources": (2, 100_000),
         "anomaly_history": (1, 1_000), "card_test_payees": (2, 100_000),
         "fan_in_new_payers": (2, 100_000)}


def in_range(setting: str, value: Any) -> bool:
    """What a setting may be, said again independently of the code under test."""
    if setting == "paused":
        return type(value) is bool
    if setting in WHOLE:
        low, high = WHOLE[setting]
        return (type(value) in (int, float) and math.isfinite(value)
                and value == int(value) and low <= value <= high)
    low, high = {"tps": (0.1, 100_000.0), "threshold": (0.01, 1e9),
                 "velocity_window_s": (1, 86_400), "velocity_ratio": (1, 1_000),
                 "fan_in_window_s": (1, 604_800),
                 "anomaly_ratio": (1, 1_000), "anomaly_z": (0.5, 100),
                 "window_grace_s": (0, 3_600), "model_cutoff": (0.01, 1),
                 "model_veto": (0, 1), "velocity_hold_s": (0, 86_400),
                 "velocity_alpha": (1e-12, 1),
                 "new_account_s": (1, 2_592_000), "card_test_amount": (0.01, 1e6),
                 "card_test_window_s": (1, 86_400), "fan_in_payer_ratio": (1, 1_000),
                 "fan_in_new_window_s": (1, 604_800), "fan_in_mule_share": (0, 1),
                 "card_test_distinct_share": (0, 1)}[setting]
    return type(value) is float and math.isfinite(value) and low <= value <= high


def assert_valid(command: ControlCommand) -> None:
    assert in_range(command.setting, command.value), command
    assert command.setting not in WHOLE or type(command.value) is int, command
    assert isinstance(command.id, str) and command.id and isinstance(command.ts, int)


@FAST
@given(st.binary(max_size=300) | st.none())
def test_arbitrary_bytes_are_refused_or_valid(raw: bytes | None) -> None:
    command = outcome_of(lambda: parse_command(raw))
    if command is not None:
        assert_valid(command)


@FAST
@given(json_values)
def test_arbitrary_json_is_refused_or_valid(value: Any) -> None:
    command = outcome_of(lambda: parse_command(orjson.dumps(value)))
    if command is not None:
        assert_valid(command)


@FAST
@given(mutated())
def test_a_mutated_command_is_refused_or_valid(raw: bytes) -> None:
    command = outcome_of(lambda: parse_command(raw))
    if command is not None:
        assert_valid(command)
    assert outcome_of(lambda: parse_command(raw, SECRET)) is None or (
        signing.problem(orjson.loads(raw), SECRET) is None)


@FAST
@given(valid_body(), st.sampled_from(["v", "setting", "value", "id", "ts", "origin"]),
       hostile_values)
def test_no_signed_field_can_be_changed(body: dict[str, Any], field: str, new: Any) -> None:
    signed = signing.signed(body, SECRET)
    changed = json.dumps({**signed, field: new}).encode()
    try:
        if orjson.loads(changed) == signed:
            return  # the same command after all (1 and 1.0 are equal in JSON)
    except orjson.JSONDecodeError:
        pass
    assert outcome_of(lambda: parse_command(changed, SECRET)) is None


def obeyed(service: str) -> dict[str, Any]:
    """Every setting ``service`` obeys, at its lowest: a service that runs them all."""
    return {name: (False if spec.kind is bool else spec.kind(spec.low))
            for name, spec in SETTINGS.items() if spec.owner == service}


@FAST
@given(st.lists(mutated() | st.binary(max_size=80), min_size=1, max_size=8),
       st.booleans(), st.data())
def test_valid_commands_apply_around_hostile_ones(
    hostile: list[bytes], signed: bool, data: st.DataObject
) -> None:
    """A stream of hostile records with valid commands in between, as a service sees it."""
    secret = SECRET if signed else None
    services = {name: LiveSettings(name, obeyed(name), clock=lambda: NOW)
                for name in ("generator", "detector")}
    ts = NOW - 1_000_000  # later than any mutated command: each valid one is the newest
    log: list[tuple[bytes, bytes]] = []  # the valid commands
    topic: list[tuple[bytes, bytes | None]] = []  # everything, as a restart reads it
    for n, raw in enumerate(hostile):
        topic.append((raw, None))
        for live in services.values():
            before = dict(live.values)
            outcome = live.apply(raw, secret=secret, written_at=NOW)
            assert outcome.applied in (None, False, True)
            if outcome.applied:
                assert outcome.command is not None
                assert_valid(outcome.command)
                assert live.values[outcome.command.setting] == outcome.command.value
            else:
                assert live.values == before
            assert all(in_range(s, v) for s, v in live.values.items()), live.values
        body = data.draw(valid_body(ident=f"valid-{n}"))
        owner = services[SETTINGS[body["setting"]].owner]
        # Newer than anything in force: a hostile record can itself be a valid command.
        in_force = owner.in_force.get(body["setting"])
        ts = max(ts + 1, in_force.ts + 1 if in_force is not None else 0)
        assume(ts <= NOW + MAX_AHEAD_MS)  # else no command could be newer and valid
        body["ts"] = ts
        record = orjson.dumps(signing.signed(body, SECRET) if signed else body)
        outcome = owner.apply(record, secret=secret, key=body["setting"].encode(),
                              written_at=NOW)
        assert outcome.applied is True, outcome.reason
        assert owner.values[body["setting"]] == body["value"]
        log.append((record, body["setting"].encode()))
        topic.append(log[-1])
    # Read again from the beginning (a restart), the log ends in the same settings; and
    # publishing any of it again, or an old command under a new id, changes nothing.
    for name, live in services.items():
        restarted = LiveSettings(name, obeyed(name), clock=lambda: NOW)
        for record, key in topic:
            restarted.apply(record, secret=secret, key=key, written_at=NOW)
        assert {s: restarted.values.get(s, v) for s, v in live.values.items()} == live.values
        settled = dict(live.values)
        for record, key in log:
            assert live.apply(record, secret=secret, key=key, written_at=NOW).applied is not True
            old = orjson.loads(record)
            old["id"] = f"again-{old['id']}"
            renamed = signing.signed(old, SECRET) if signed else old
            in_force = live.in_force.get(old["setting"])  # a copy of that one is no change
            assert live.apply(orjson.dumps(renamed), secret=secret, key=key,
                              written_at=NOW).applied is not True or (
                in_force is not None and old["ts"] == in_force.ts)
        assert live.values == settled


@FAST
@given(st.sampled_from(sorted(SETTINGS)), numbers | hostile_values)
@example("tps", JUST_UNDER_THE_LIMIT)
@example("paused", [JUST_UNDER_THE_LIMIT])
def test_a_value_out_of_range_is_never_applied(setting: str, value: Any) -> None:
    owner = SETTINGS[setting].owner
    live = LiveSettings(owner, obeyed(owner), clock=lambda: NOW)
    before = dict(live.values)
    raw = json.dumps({"v": 1, "setting": setting, "value": value, "id": "n", "ts": 1}).encode()
    outcome = live.apply(raw)
    assert len(outcome.reason) < 400  # a refusal never echoes a huge value
    assert outcome.applied is in_range(setting, value if type(value) is bool else (
        float(value) if type(value) in (int, float) else None))
    assert in_range(setting, live.values[setting]) or live.values == before


@FAST
@given(st.integers(-(2**63), 2**64 - 1), st.integers(0, NOW))
def test_a_command_is_never_applied_from_far_ahead(ts: int, written_at: int) -> None:
    live = LiveSettings("generator", {"tps": 1.0}, clock=lambda: NOW)
    raw = orjson.dumps({"v": 1, "setting": "tps", "value": 5, "id": "t", "ts": ts})
    outcome = live.apply(raw, written_at=written_at)
    if outcome.applied:
        assert 0 <= ts <= written_at + MAX_AHEAD_MS
    else:
        assert live.values["tps"] == 1.0
