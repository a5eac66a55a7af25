"""Control commands are validated on both ends; a refusal says why."""

import orjson
import pytest

from services.control import (
    CommandRefused,
    LiveSettings,
    ack,
    command,
    heartbeat,
    parse_command,
    parse_status,
)


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


def test_only_the_owner_reports_an_out_of_range_value() -> None:
    raw = b'{"v": 1, "setting": "threshold", "value": -1, "id": "a", "ts": 1}'
    assert LiveSettings("generator", {}).apply(raw) == (None, "", None)
    applied, reason, _ = LiveSettings("detector", {"threshold": 900.0}).apply(raw)
    assert applied is False and "out of range" in reason


def test_garbage_is_refused_by_every_service() -> None:
    for service in ("generator", "detector"):
        applied, reason, _ = LiveSettings(service, {}).apply(b"\xff")
        assert applied is False and reason.startswith("not JSON")


def test_status_messages_round_trip_and_junk_is_ignored() -> None:
    beat = parse_status(heartbeat("generator", "g-1", {"tps": 5.0}, {"produced": 3}))
    assert beat is not None and beat["settings"] == {"tps": 5.0}
    answer = parse_status(ack("detector", "d-1", {"partition": 0, "offset": 3}, False, "bad"))
    assert answer is not None and answer["reason"] == "bad"
    assert parse_status(b"junk") is None
    assert parse_status(orjson.dumps({"kind": "heartbeat"})) is None
