"""Control commands and status messages: schema, validation, application. Pure.

A command is one versioned JSON record on the control topic, keyed by the setting it
changes so that the newest value wins (the topic is compacted on a real cluster)::

    {"v": 1, "setting": "tps", "value": 250, "id": "...", "ts": 1700000000000,
     "origin": "console"}

Both ends validate: the console before it sends, each service before it applies.
A refused command is reported on the status topic and never applied. With a secret
(``CONTROL_SECRET``) commands carry an HMAC (``sig``, see ``services.signing``) and
services refuse unsigned or wrongly signed ones.

Services read the whole topic at start and then follow it, so what a service decides
must depend on the log alone, never on when it reads it: a command is refused when its
id was already applied (a replay), when its ``ts`` is older than the command in force
for its setting (stale: a re-published old command never rolls a setting back), or when
its ``ts`` is implausibly far ahead of the time it was written.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from services import signing
from services.security import Secret

VERSION = 1
MAX_COMMAND_BYTES = 64 * 1024  # a command is a few dozen bytes; anything huge is refused unread
MAX_ID_CHARS = 128
# How far a command's ts may be ahead of the time it was written. One from further
# ahead would, once applied, make every honest command after it look stale.
MAX_AHEAD_MS = 60_000
REMEMBERED_IDS = 10_000  # applied command ids kept to spot replays; older ones are stale anyway


@dataclass(frozen=True)
class SettingSpec:
    """What one live setting may be, and which service obeys it."""

    name: str
    owner: str  # "generator" or "detector"
    kind: type  # float, int (a whole number) or bool
    low: float = 0.0
    high: float = 0.0
    description: str = ""

    def check(self, value: Any) -> float | bool:
        """The value as applied, or CommandRefused saying why not."""
        if self.kind is bool:
            if not isinstance(value, bool):
                raise CommandRefused(f"{self.name} must be true or false, not {_short(value)}")
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CommandRefused(f"{self.name} must be a number, not {_short(value)}")
        if not math.isfinite(value) or not self.low <= value <= self.high:
            raise CommandRefused(
                f"{self.name} {value!r} is out of range ({self.low:g}..{self.high:g})"
            )
        if self.kind is int:
            if value != int(value):
                raise CommandRefused(f"{self.name} must be a whole number, not {value!r}")
            return int(value)
        return float(value)


MAX_TPS = 100_000.0
SETTINGS: dict[str, SettingSpec] = {
    spec.name: spec
    for spec in (
        SettingSpec("tps", "generator", float, 0.1, MAX_TPS, "transactions per second"),
        SettingSpec("paused", "generator", bool, description="generator paused"),
        SettingSpec("threshold", "detector", float, 0.01, 1_000_000_000.0,
                    "fraud when amount >= threshold"),
        # The stateful rules' parameters (see services.detector.rules.RuleSettings).
        SettingSpec("velocity_count", "detector", int, 2, 100_000,
                    "velocity: transactions from one source that make a burst"),
        SettingSpec("velocity_window_s", "detector", float, 1, 86_400,
                    "velocity: window, seconds of event time"),
        SettingSpec("velocity_ratio", "detector", float, 1, 1_000,
                    "velocity: times what the source's own pace predicts for the window"),
        SettingSpec("fan_in_sources", "detector", int, 2, 100_000,
                    "fan-in: distinct payers of one target that make a mule"),
        SettingSpec("fan_in_window_s", "detector", float, 1, 7 * 86_400,
                    "fan-in: window, seconds of event time"),
        SettingSpec("velocity_hold_s", "detector", float, 0, 86_400,
                    "velocity: how long a burst's payments are kept out of the source's "
                    "habit, seconds of event time (a burst kept up longer is its habit)"),
        SettingSpec("velocity_alpha", "detector", float, 1e-12, 1,
                    "velocity: how unlikely by chance, at the source's own pace, a "
                    "window's count must be to make a burst"),
        SettingSpec("new_account_s", "detector", float, 1, 30 * 86_400,
                    "new account: first seen less than this long ago, seconds of event "
                    "time, by a detector that had watched its partition that long"),
        SettingSpec("card_test_amount", "detector", float, 0.01, 1_000_000,
                    "card testing: the largest amount that counts as tiny"),
        SettingSpec("card_test_payees", "detector", int, 2, 100_000,
                    "card testing: distinct payees paid tiny amounts by one source"),
        SettingSpec("card_test_window_s", "detector", float, 1, 86_400,
                    "card testing: window, seconds of event time"),
        SettingSpec("card_test_distinct_share", "detector", float, 0, 1,
                    "card testing: the least share of the tiny payments that went to "
                    "distinct payees"),
        SettingSpec("fan_in_payer_ratio", "detector", float, 1, 1_000,
                    "fan-in: a payer paying this many times its mean amount counts, as "
                    "a new one does"),
        SettingSpec("fan_in_new_payers", "detector", int, 2, 100_000,
                    "fan-in of new accounts: distinct new accounts paying one target"),
        SettingSpec("fan_in_new_window_s", "detector", float, 1, 7 * 86_400,
                    "fan-in of new accounts: window, seconds of event time"),
        SettingSpec("fan_in_mule_share", "detector", float, 0, 1,
                    "fan-in of new accounts: their least share of the target's payments "
                    "lately"),
        SettingSpec("anomaly_ratio", "detector", float, 1, 1_000,
                    "amount anomaly: times the account's mean"),
        SettingSpec("anomaly_z", "detector", float, 0.5, 100,
                    "amount anomaly: standard deviations above the account's mean"),
        SettingSpec("anomaly_history", "detector", int, 1, 1_000,
                    "amount anomaly: payments an account makes before its amounts are judged"),
        SettingSpec("window_grace_s", "detector", float, 0, 3_600,
                    "windows: how late a record may arrive and still count, seconds of "
                    "event time"),
        # The model's say in the verdict (see services.detector.routing.decide).
        SettingSpec("model_cutoff", "detector", float, 0.01, 1,
                    "model: score at or above which a transaction is fraud on its own"),
        SettingSpec("model_veto", "detector", float, 0, 1,
                    "model: score under which a rule's hit alone is not fraud (0: never)"),
    )
}


class CommandRefused(ValueError):
    """A command that must not be applied; the message is the reason reported.

    ``owner`` names the service the setting belongs to when that is known, so that only
    that service reports the refusal; a command nobody owns is reported by every service.
    """

    def __init__(self, reason: str, owner: str = "", ident: str = "") -> None:
        super().__init__(reason)
        self.owner = owner
        self.ident = ident  # the command's id when it has a readable one, for the answer


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


def command(
    setting: str, value: Any, origin: str = "console", secret: Secret | None = None
) -> tuple[bytes, bytes]:
    """``(key, value)`` of a new command, validated as a service will validate it, and
    signed when there is a secret."""
    spec = SETTINGS.get(setting)
    if spec is None:
        raise CommandRefused(f"unknown setting {setting!r}")
    checked = spec.check(value)
    body: dict[str, Any] = {"v": VERSION, "setting": setting, "value": checked,
                            "id": uuid.uuid4().hex, "ts": now_ms(), "origin": origin}
    if secret is not None:
        body = signing.signed(body, secret)
    return setting.encode(), orjson.dumps(body)


def parse_command(
    raw: bytes | None, secret: Secret | None = None, key: bytes | None = None
) -> ControlCommand:
    """The command in ``raw``, or CommandRefused saying why it will not be applied.

    With ``secret`` only a command signed with it passes; with ``key`` (the record's
    key) it must name the command's setting, so that compaction keeps the newest one."""
    if raw is None:
        raise CommandRefused("empty command (null value)")
    if len(raw) > MAX_COMMAND_BYTES:
        raise CommandRefused(f"command too large ({len(raw)} bytes, at most "
                             f"{MAX_COMMAND_BYTES})")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CommandRefused(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise CommandRefused("a command is a JSON object")
    setting = body.get("setting")
    spec = SETTINGS.get(setting) if isinstance(setting, str) else None
    owner = spec.owner if spec is not None else ""
    ident = body.get("id")
    ident = ident if isinstance(ident, str) and 0 < len(ident) <= MAX_ID_CHARS else ""

    def refuse(reason: str) -> CommandRefused:
        return CommandRefused(reason, owner=owner, ident=ident)

    if secret is not None and (problem := signing.problem(body, secret)):
        raise refuse(problem)
    version = body.get("v")
    if isinstance(version, bool) or not isinstance(version, int):
        raise refuse(f"missing or invalid version 'v': {_short(version)}")
    if version > VERSION:
        raise refuse(f"version {_short(version)} is newer than this service knows ({VERSION})")
    if version < 1:
        raise refuse(f"invalid version {_short(version)}")
    if spec is None:
        raise refuse(f"unknown setting {_short(setting)}")
    if key is not None and key != spec.name.encode():
        raise refuse(f"record key {_short(key)} does not name the setting {spec.name}")
    if "value" not in body:
        raise refuse(f"no value for {spec.name}")
    try:
        value = spec.check(body["value"])
    except CommandRefused as exc:
        raise refuse(str(exc)) from None
    if not ident:
        raise refuse("missing command id" if "id" not in body else
                     f"invalid command id (a string of 1 to {MAX_ID_CHARS} characters)")
    ts = body.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise refuse("missing command ts" if ts is None else "invalid command ts")
    if ts < 0:
        raise refuse(f"invalid command ts {ts}")
    origin = body.get("origin", "unknown")
    return ControlCommand(spec.name, value, ident, ts, str(origin)[:64])


def _short(value: Any, limit: int = 40) -> str:
    """A value in a reason, cut short: a hostile command must not make a huge answer."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…"


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


class Outcome(NamedTuple):
    """What a service made of one command record."""

    applied: bool | None  # None: not this service's business (another's setting)
    reason: str = ""  # why it was refused
    command: ControlCommand | None = None
    ident: str = ""  # the command's id when it has one, to name it in the answer


class LiveSettings:
    """The settings one service obeys (those in ``initial``), changed only by valid
    commands meant for it.

    It remembers, per setting, the command in force and the ids it applied, so that a
    replayed or stale command is refused the same way whether it arrives live or while
    the service reads the topic from the beginning at start."""

    def __init__(
        self,
        service: str,
        initial: Mapping[str, float | bool],
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.service = service
        self.values: dict[str, float | bool] = dict(initial)
        self.clock = clock
        self.in_force: dict[str, ControlCommand] = {}
        self._applied_ids: OrderedDict[str, None] = OrderedDict()

    def apply(
        self,
        raw: bytes | None,
        *,
        secret: Secret | None = None,
        key: bytes | None = None,
        written_at: int | None = None,
    ) -> Outcome:
        """Apply the command in ``raw`` if it is valid, meant for this service and newer
        than what is in force. ``written_at`` is the record's timestamp (ms), the
        reference for a ``ts`` too far ahead; without it, this service's clock."""
        try:
            cmd = parse_command(raw, secret, key)
        except CommandRefused as exc:
            if exc.owner and exc.owner != self.service:
                return Outcome(None)
            return Outcome(False, str(exc), None, exc.ident)
        if cmd.spec.owner != self.service:
            return Outcome(None, "", cmd, cmd.id)
        if cmd.setting not in self.values:  # a rule or a model this one was started without
            return Outcome(False, f"this {self.service} does not run what {cmd.setting} "
                           "sets", cmd, cmd.id)
        reason = self._why_not(cmd, written_at)
        if reason:
            return Outcome(False, reason, cmd, cmd.id)
        self.values[cmd.setting] = cmd.value
        self.in_force[cmd.setting] = cmd
        self._applied_ids[cmd.id] = None
        if len(self._applied_ids) > REMEMBERED_IDS:
            self._applied_ids.popitem(last=False)
        return Outcome(True, "", cmd, cmd.id)

    def _why_not(self, cmd: ControlCommand, written_at: int | None) -> str:
        current = self.in_force.get(cmd.setting)
        if cmd.id in self._applied_ids or (current is not None and cmd.id == current.id):
            return f"replayed: command {cmd.id} was already applied"
        if current is not None and cmd.ts < current.ts:
            return (f"stale: ts {cmd.ts} is older than the {cmd.setting} command in force "
                    f"(ts {current.ts})")
        now = self.clock()
        reference = now if written_at is None else min(now, written_at)
        if cmd.ts > reference + MAX_AHEAD_MS:
            return (f"ts {cmd.ts} is {(cmd.ts - reference) / 1000:.0f} s ahead of when it "
                    f"was written (at most {MAX_AHEAD_MS // 1000} s)")
        return ""
