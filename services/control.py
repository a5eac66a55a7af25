"""Control commands and status messages: schema, validation, application. Pure.

A command is one versioned JSON record on the control topic, keyed by the setting it
changes so that the newest value wins (the topic is compacted on a real cluster)::

    {"v": 1, "setting": "tps", "value": 250, "id": "...", "ts": 1700000000000,
     "origin": "console"}

Both ends validate: the console before it sends, each service before it applies.
A refused command is reported on the status topic and never applied.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

VERSION = 1


@dataclass(frozen=True)
class SettingSpec:
    """What one live setting may be, and which service obeys it."""

    name: str
    owner: str  # "generator" or "detector"
    kind: type  # float or bool
    low: float = 0.0
    high: float = 0.0
    description: str = ""

    def check(self, value: Any) -> float | bool:
        """The value as applied, or CommandRefused saying why not."""
        if self.kind is bool:
            if not isinstance(value, bool):
                raise CommandRefused(f"{self.name} must be true or false, not {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CommandRefused(f"{self.name} must be a number, not {value!r}")
        if not math.isfinite(value) or not self.low <= value <= self.high:
            raise CommandRefused(
                f"{self.name} {value!r} is out of range ({self.low:g}..{self.high:g})"
            )
        return float(value)


MAX_TPS = 100_000.0
SETTINGS: dict[str, SettingSpec] = {
    spec.name: spec
    for spec in (
        SettingSpec("tps", "generator", float, 0.1, MAX_TPS, "transactions per second"),
        SettingSpec("paused", "generator", bool, description="generator paused"),
        SettingSpec("threshold", "detector", float, 0.01, 1_000_000_000.0,
                    "fraud when amount >= threshold"),
    )
}


class CommandRefused(ValueError):
    """A command that must not be applied; the message is the reason reported.

    ``owner`` names the service the setting belongs to when that is known, so that only
    that service reports the refusal; a command nobody owns is reported by every service.
    """

    def __init__(self, reason: str, owner: str = "") -> None:
        super().__init__(reason)
        self.owner = owner


@dataclass(frozen=True)
class ControlCommand:
    setting: str
    value: float | bool
    id: str
    ts: int
    origin: str

    @property
    def spec(self) -> SettingSpec:
        return SETTINGS[self.setting]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def command(setting: str, value: Any, origin: str = "console") -> tuple[bytes, bytes]:
    """``(key, value)`` of a new command, validated as a service will validate it."""
    spec = SETTINGS.get(setting)
    if spec is None:
        raise CommandRefused(f"unknown setting {setting!r}")
    checked = spec.check(value)
    body = {"v": VERSION, "setting": setting, "value": checked, "id": uuid.uuid4().hex,
            "ts": now_ms(), "origin": origin}
    return setting.encode(), orjson.dumps(body)


def parse_command(raw: bytes | None) -> ControlCommand:
    """The command in ``raw``, or CommandRefused saying why it will not be applied."""
    if raw is None:
        raise CommandRefused("empty command (null value)")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CommandRefused(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise CommandRefused("a command is a JSON object")
    version = body.get("v")
    if isinstance(version, bool) or not isinstance(version, int):
        raise CommandRefused(f"missing or invalid version 'v': {version!r}")
    if version > VERSION:
        raise CommandRefused(f"version {version} is newer than this service knows ({VERSION})")
    if version < 1:
        raise CommandRefused(f"invalid version {version}")
    setting = body.get("setting")
    spec = SETTINGS.get(setting) if isinstance(setting, str) else None
    if spec is None:
        raise CommandRefused(f"unknown setting {setting!r}")
    if "value" not in body:
        raise CommandRefused(f"no value for {setting}", owner=spec.owner)
    try:
        value = spec.check(body["value"])
    except CommandRefused as exc:
        raise CommandRefused(str(exc), owner=spec.owner) from None
    ident = body.get("id")
    ts = body.get("ts")
    origin = body.get("origin", "unknown")
    if not isinstance(ident, str) or not ident:
        raise CommandRefused("missing command id", owner=spec.owner)
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise CommandRefused("missing command ts", owner=spec.owner)
    return ControlCommand(setting, value, ident, ts, str(origin)[:64])


# -- status -----------------------------------------------------------------------


def heartbeat(
    service: str, instance: str, settings: Mapping[str, Any], counters: Mapping[str, Any]
) -> bytes:
    """What a service says about itself every second: the settings it applies (the
    truth the console shows) and its counters."""
    return orjson.dumps({"v": VERSION, "kind": "heartbeat", "service": service,
                         "instance": instance, "ts": now_ms(), "settings": dict(settings),
                         "counters": dict(counters)})


def ack(
    service: str,
    instance: str,
    ref: Mapping[str, Any],
    applied: bool,
    reason: str = "",
    command: ControlCommand | None = None,
) -> bytes:
    """The answer to one command: applied, or refused with the reason.

    ``ref`` names the command record (partition and offset, and its id when it has one)
    so that a console can match answers from several services to one command.
    """
    body: dict[str, Any] = {"v": VERSION, "kind": "ack", "service": service,
                            "instance": instance, "ts": now_ms(), "ref": dict(ref),
                            "applied": applied}
    if reason:
        body["reason"] = reason
    if command is not None:
        body["setting"] = command.setting
        body["value"] = command.value
    return orjson.dumps(body)


def parse_status(raw: bytes | None) -> dict[str, Any] | None:
    """A status message, or None for anything that is not one (never raises)."""
    if raw is None:
        return None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict) or body.get("kind") not in ("heartbeat", "ack"):
        return None
    if not isinstance(body.get("service"), str) or not isinstance(body.get("instance"), str):
        return None
    return body


class LiveSettings:
    """The settings one service obeys, changed only by valid commands meant for it."""

    def __init__(self, service: str, initial: Mapping[str, float | bool]) -> None:
        self.service = service
        self.values: dict[str, float | bool] = dict(initial)

    def apply(self, raw: bytes | None) -> tuple[bool | None, str, ControlCommand | None]:
        """``(applied, reason, command)``: applied is None for another service's command."""
        try:
            cmd = parse_command(raw)
        except CommandRefused as exc:
            if exc.owner and exc.owner != self.service:
                return None, "", None
            return False, str(exc), None
        if cmd.spec.owner != self.service:
            return None, "", cmd
        self.values[cmd.setting] = cmd.value
        return True, "", cmd
