"""With CONTROL_SECRET set, only a console that knows it changes settings; one with a
wrong secret sees its commands refused, and no secret ever shows: not in the services'
output, not on the topics, not on the console's screen."""

from __future__ import annotations

import asyncio

from services import control
from services.config import Topics
from services.security import Secret
from tests.integration.test_control_topic import heartbeats_until
from tests.kafka_helpers import ServiceProcess, produce, read_topics, start
from tests.tui.watching import until
from tui.app import FraudConsole
from tui.feed import KafkaFeed

RIGHT = "the-right-secret-0123456789"
WRONG = "a-wrong-secret-9876543210"
PASSWORD = "sasl-password-kept-out-of-logs"


def test_only_signed_commands_change_settings_and_no_secret_shows(
    broker: str, topics: Topics, service_env: dict[str, str], services: list[ServiceProcess]
) -> None:
    # PLAINTEXT, as the embedded broker speaks: the SASL password is set but unused.
    env = {**service_env, "CONTROL_SECRET": RIGHT, "KAFKA_SASL_USERNAME": "fraud",
           "KAFKA_SASL_PASSWORD": PASSWORD}
    detector = start(services, "detector", env, "--verbose")
    generator = start(services, "generator", env, "--tps", "5", "--seed", "1", "--verbose")

    screens = asyncio.run(steer(broker, topics, service_env))

    # A person with a producer but without the secret.
    produce(broker, topics.control, [control.command("threshold", 100.0, origin="script")])
    status = heartbeats_until(broker, topics, lambda s: any(
        a["kind"] == "ack" and a["service"] == "detector" and not a["applied"] for a in s))
    refusals = [s for s in status if s["kind"] == "ack" and s["service"] == "detector"]
    assert [a["reason"] for a in refusals] == [
        "unsigned command (this service requires signed commands)"]
    beats = [s for s in status if s["kind"] == "heartbeat" and s["service"] == "detector"]
    assert beats[-1]["settings"]["threshold"] == 900.0

    for service in (detector, generator):
        service.terminate()
        assert service.wait(10) == 0
    logs = detector.output() + generator.output()
    assert "refused control command" in logs and "applied tps = 10.0" in logs
    found = read_topics(broker, [topics.control, topics.status], 1, timeout=10, settle=0.5)
    records = b"".join(m.value() or b"" for ms in found.values() for m in ms)
    for secret in (RIGHT, WRONG, PASSWORD):
        assert secret not in logs
        assert secret.encode() not in records
        assert all(secret not in screen for screen in screens)


async def steer(broker: str, topics: Topics, service_env: dict[str, str]) -> list[str]:
    """A console with the wrong secret, then one with the right one: their screens."""
    screens = []
    feed = KafkaFeed(broker, topics, service_env["DETECTOR_GROUP"], secret=Secret(WRONG))
    app = FraudConsole(feed)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(app, lambda s: s.applied("tps") == 5.0, because="generator up")
        await pilot.press("plus")
        snap = await until(app, lambda s: s.requests["tps"].state == "refused",
                           because="the wrongly signed command refused")
        assert snap.requests["tps"].reason == "bad signature"
        assert "generator refused tps = 10: bad signature" in snap.events[-1]
        await pilot.pause(0.3)
        assert app.last is not None and app.last.applied("tps") == 5.0
        screens.append(app.export_screenshot())
        assert app.is_running  # refused, not crashed

    feed = KafkaFeed(broker, topics, service_env["DETECTOR_GROUP"], secret=Secret(RIGHT))
    app = FraudConsole(feed)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(app, lambda s: s.applied("tps") == 5.0, because="generator up")
        await pilot.press("plus")
        await until(app, lambda s: s.requests["tps"].state == "applied"
                    and s.applied("tps") == 10.0, because="the signed command applied")
        screens.append(app.export_screenshot())
    return screens
