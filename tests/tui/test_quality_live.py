"""A user lowers the threshold and watches precision and recall move, live.

The real generator (labelled scenarios), detector and evaluator run on the embedded
broker; the console reads the evaluator's quality messages off the status topic.
"""

from __future__ import annotations

import asyncio

from services.config import Topics
from services.evaluator.report import Quality
from tests.kafka_helpers import ServiceProcess, start
from tests.tui.watching import until
from tui.app import FraudConsole
from tui.feed import KafkaFeed
from tui.quality_panel import QualityPanel


def test_lowering_the_threshold_trades_precision_for_recall(
    broker: str, topics: Topics, service_env: dict[str, str], services: list[ServiceProcess]
) -> None:
    start(services, "detector", service_env)
    # A short window, so that it soon holds only what was judged at the new threshold,
    # with more in it than the 2,000 joined verdicts the figures are first read from.
    start(services, "evaluator", service_env, "--window", "5")
    start(services, "generator", service_env, "--profile", "scenarios", "--tps", "600",
          "--seed", "5", "--fraud-rate", "0.2")
    asyncio.run(lower_the_threshold(topics, broker, service_env["DETECTOR_GROUP"]))


def takeover_recall(quality: Quality | None) -> float | None:
    """Takeovers pay at least 300: a threshold of 100 catches them all, 900 only some."""
    figures = {s.name: s for s in quality.scenarios} if quality is not None else {}
    return figures["account_takeover"].recall if "account_takeover" in figures else None


async def lower_the_threshold(topics: Topics, broker: str, group: str) -> None:
    app = FraudConsole(KafkaFeed(broker, topics, group))
    async with app.run_test(size=(160, 48)) as pilot:
        at_900 = await until(
            app, lambda s: s.applied("threshold") == 900.0 and s.quality is not None
            and s.quality.joined > 2000 and s.quality.precision is not None
            and (takeover_recall(s.quality) or 1.0) < 1.0,
            because="a full window at threshold 900, some takeovers missed")
        before = at_900.quality
        assert before is not None and before.precision is not None

        for _ in range(16):  # 900 → 100, fifty at a time
            await pilot.press("left_square_bracket")
        await until(app, lambda s: s.applied("threshold") == 100.0, because="threshold 100")

        def moved(q: Quality | None) -> bool:
            return (q is not None and q.precision is not None
                    and q.precision < before.precision - 0.2 and takeover_recall(q) == 1.0)

        at_100 = await until(app, lambda s: moved(s.quality), timeout=40,
                             because="every takeover caught, and many more false alarms")
        after = at_100.quality
        assert after is not None and after.recall is not None
        # And the panel on screen says so.
        await asyncio.sleep(0.3)
        shown = app.query_one("#quality-top", QualityPanel).render().plain
        assert app.last is not None and app.last.quality is not None
        assert f"precision {app.last.quality.precision:4.2f}" in shown
        assert "takeover        1.00" in shown
