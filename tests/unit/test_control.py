"""Control commands are validated on both ends; a refusal says why."""

import orjson
import pytest

from services import signing
from services.control import (
    CommandRefused,
    LiveSettings,
    ack,
    command,
    heartbeat,
    parse_command,
    parse_status,
)
from services.security import Secret


def test_a_command_made_by_the_console_parses_back() -> None:
    key, value = command("tps", 250)
    cmd = parse_command(value)
    assert key == b"tps"
    assert (cmd.setting, cmd.value, cmd.origin) == ("tps", 250.0, "console")


@pytest.mark.parametrize(("body", "reason"), [
    (b"nope", "not JSON"),
    (b"[]", "JSON object"),
    (b'{"setting": "tps", "value": 5}', "version"),
    (b'{"v": 2, "setting": "tps", "value": 5, "id": "a", "ts": 1}', "newer"),
    (b'{"v": 1, "setting": "colour", "value": 5, "id": "a", "ts": 1}', "unknown setting"),
    (b'{"v": 1, "setting": "tps", "value": -5, "id": "a", "ts": 1}', "out of range"),
    (b'{"v": 1, "setting": "tps", "value": 1e9, "id": "a", "ts": 1}', "out of range"),
    (b'{"v": 1, "setting": "tps", "value": "fast", "id": "a", "ts": 1}', "must be a number"),
    (b'{"v": 1, "setting": "paused", "value": 1, "id": "a", "ts": 1}', "true or false"),
    (b'{"v": 1, "setting": "threshold", "value": 0, "id": "a", "ts": 1}', "out of range"),
    (b'{"v": 1, "setting": "tps", "value": 5, "ts": 1}', "missing command id"),
])
def test_bad_commands_are_refused(body: bytes, reason: str) -> None:
    with pytest.raises(CommandRefused, match=reason):
        parse_command(body)


def test_the_console_cannot_make_an_invalid_command() -> None:
    with pytest.raises(CommandRefused):
        command("tps", 0)
    with pytest.raises(CommandRefused):
        command("speed", 10)


def test_each_service_applies_only_its_own_settings() -> None:
    generator = LiveSettings("generator", {"tps": 10.0, "paused": False})
    detector = LiveSettings("detector", {"threshold": 900.0})
    _, tps = command("tps", 500)
    assert generator.apply(tps)[0] is True
    assert detector.apply(tps)[0] is None
    assert generator.values["tps"] == 500.0


def test_a_detector_refuses_a_setting_of_a_rule_or_model_it_does_not_run() -> None:
    threshold_only = LiveSettings("detector", {"threshold": 900.0})
    _, velocity = command("velocity_count", 5)
    outcome = threshold_only.apply(velocity)
    assert outcome.applied is False
    assert outcome.reason == "this detector does not run what velocity_count sets"
    assert "velocity_count" not in threshold_only.values, "never shown as in force"
    with_rules = LiveSettings("detector", {"threshold": 900.0, "velocity_count": 8})
    assert with_rules.apply(velocity).applied is True
    _, veto = command("model_veto", 0)
    assert with_rules.apply(veto).applied is False, "its model is off"


def test_only_the_owner_reports_an_out_of_range_value() -> None:
    raw = b'{"v": 1, "setting": "threshold", "value": -1, "id": "a", "ts": 1}'
    assert LiveSettings("generator", {}).apply(raw).applied is None
    outcome = LiveSettings("detector", {"threshold": 900.0}).apply(raw)
    assert outcome.applied is False and "out of range" in outcome.reason
    assert outcome.ident == "a"  # so that the console can match the answer to its request


def test_garbage_is_refused_by_every_service() -> None:
    for service in ("generator", "detector"):
        applied, reason, _, _ = LiveSettings(service, {}).apply(b"\xff")
        assert applied is False and reason.startswith("not JSON")


def test_status_messages_round_trip_and_junk_is_ignored() -> None:
    beat = parse_status(heartbeat("generator", "g-1", {"tps": 5.0}, {"produced": 3}))
    assert beat is not None and beat["settings"] == {"tps": 5.0}
    answer = parse_status(ack("detector", "d-1", {"partition": 0, "offset": 3}, False, "bad"))
    assert answer is not None and answer["reason"] == "bad"
    assert parse_status(b"junk") is None
    assert parse_status(orjson.dumps({"kind": "heartbeat"})) is None


# -- replays, stale commands, signatures ----------------------------------------------

SECRET = Secret("a-secret-of-sixteen-or-more")
NOW = 1_767_225_600_000  # 2026-01-01 in ms


def body(setting: str = "tps", value: object = 50.0, ident: str = "c1", ts: int = NOW,
         **extra: object) -> dict:
    return {"v": 1, "setting": setting, "value": value, "id": ident, "ts": ts,
            "origin": "test", **extra}


def raw(fields: dict, secret: Secret | None = None) -> bytes:
    return orjson.dumps(signing.signed(fields, secret) if secret else fields)


def generator() -> LiveSettings:
    return LiveSettings("generator", {"tps": 10.0, "paused": False}, clock=lambda: NOW)


def test_a_replayed_command_is_refused_and_changes_nothing() -> None:
    settings = generator()
    first = raw(body(value=50.0, ident="c1", ts=NOW - 2000))
    assert settings.apply(first).applied is True
    assert settings.apply(raw(body(value=80.0, ident="c2", ts=NOW - 1000))).applied is True
    outcome = settings.apply(first)  # the same record published again
    assert outcome.applied is False and outcome.reason.startswith("replayed: command c1")
    assert settings.values["tps"] == 80.0


def test_an_old_command_under_a_new_id_is_stale() -> None:
    settings = generator()
    settings.apply(raw(body(value=80.0, ident="new", ts=NOW)))
    outcome = settings.apply(raw(body(value=50.0, ident="old", ts=NOW - 1)))
    assert outcome.applied is False
    assert outcome.reason == f"stale: ts {NOW - 1} is older than the tps command in force " \
                             f"(ts {NOW})"
    assert settings.values["tps"] == 80.0
    # Staleness is per setting: an older pause is still news.
    assert settings.apply(raw(body("paused", True, "p", ts=NOW - 5))).applied is True


def test_reading_the_log_again_gives_the_same_settings() -> None:
    """What a restarted service makes of the topic is what the running one made of it."""
    log = [raw(body(value=20.0, ident="a", ts=NOW - 30)),
           raw(body(value=40.0, ident="b", ts=NOW - 20)),
           raw(body(value=20.0, ident="a", ts=NOW - 30)),  # replay of a
           raw(body(value=5.0, ident="c", ts=NOW - 25)),  # stale
           raw(body("paused", True, "d", ts=NOW - 10))]
    live, restarted = generator(), generator()
    first = [live.apply(r).applied for r in log]
    again = [restarted.apply(r).applied for r in log]
    assert first == again == [True, True, False, False, True]
    assert restarted.values == live.values == {"tps": 40.0, "paused": True}


def test_a_ts_far_ahead_of_its_record_is_refused_now_and_later() -> None:
    ahead = raw(body(ident="future", ts=NOW + 3_600_000))
    outcome = generator().apply(ahead, written_at=NOW)
    assert outcome.applied is False and "3600 s ahead of when it was written" in outcome.reason
    # A service reading it a day later still judges it against when it was written.
    later = LiveSettings("generator", {"tps": 10.0}, clock=lambda: NOW + 86_400_000)
    assert later.apply(ahead, written_at=NOW).applied is False
    # A little clock skew between machines is fine.
    assert generator().apply(raw(body(ts=NOW + 5_000)), written_at=NOW).applied is True


def test_the_record_key_must_name_the_setting() -> None:
    outcome = generator().apply(raw(body()), key=b"threshold")
    assert outcome.applied is False and "does not name the setting tps" in outcome.reason
    assert generator().apply(raw(body()), key=b"tps").applied is True


def test_a_huge_command_is_refused_unread() -> None:
    outcome = generator().apply(raw(body(origin="x" * 1_000_000)))
    assert outcome.applied is False and outcome.reason.startswith("command too large")


def test_with_a_secret_only_signed_commands_apply() -> None:
    settings = generator()
    good = settings.apply(raw(body(ident="s1"), SECRET), secret=SECRET)
    assert good.applied is True and settings.values["tps"] == 50.0
    unsigned = settings.apply(raw(body(ident="s2", value=70.0)), secret=SECRET)
    assert unsigned.applied is False and unsigned.reason.startswith("unsigned command")
    assert unsigned.ident == "s2"
    wrong = settings.apply(raw(body(ident="s3", value=70.0), Secret("x" * 20)), secret=SECRET)
    assert (wrong.applied, wrong.reason) == (False, "bad signature")
    tampered = orjson.loads(raw(body(ident="s4", value=70.0), SECRET))
    tampered["value"] = 90_000.0
    outcome = settings.apply(orjson.dumps(tampered), secret=SECRET)
    assert (outcome.applied, outcome.reason) == (False, "bad signature")
    assert settings.values["tps"] == 50.0


def test_the_console_signs_what_it_sends() -> None:
    key, value = command("threshold", 750, secret=SECRET)
    assert "sig" in orjson.loads(value)
    assert parse_command(value, SECRET, key).value == 750.0
    assert SECRET.reveal() not in value.decode()
    with pytest.raises(CommandRefused, match="bad signature"):
        parse_command(value, Secret("another-secret-entirely"))


def test_a_signature_survives_a_json_round_trip_of_its_fields() -> None:
    fields = body(value=1234.5678, origin="ünïcode console", extra={"b": 1, "a": [1.5, None]})
    reordered = orjson.loads(orjson.dumps(dict(reversed(list(fields.items())))))
    assert signing.signature(fields, SECRET) == signing.signature(reordered, SECRET)


def test_answers_never_carry_the_secret() -> None:
    settings = generator()
    outcome = settings.apply(raw(body(), Secret("y" * 20)), secret=SECRET)
    answer = ack("generator", "g-1", {"id": outcome.ident}, False, outcome.reason,
                 outcome.command)
    beat = heartbeat("generator", "g-1", settings.values, {})
    assert SECRET.reveal().encode() not in answer + beat


def test_rule_parameters_are_detector_settings_and_counts_are_whole() -> None:
    from services.control import SETTINGS, CommandRefused

    spec = SETTINGS["velocity_count"]
    assert spec.owner == "detector"
    assert spec.check(8.0) == 8 and type(spec.check(8.0)) is int
    with pytest.raises(CommandRefused, match="whole number"):
        spec.check(8.5)
    with pytest.raises(CommandRefused, match="out of range"):
        SETTINGS["fan_in_window_s"].check(0)
