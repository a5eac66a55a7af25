"""The benchmarks' reports: medians of runs, goals met or not, one summary of all."""

import json
from pathlib import Path

from bench import console, pipeline
from bench.__main__ import render, summary
from bench.harness import Preloaded, goal, goal_lines


def test_a_goal_says_whether_the_measurement_meets_its_bound() -> None:
    assert goal("throughput", 0.96, 0.95, True, "x")["met"]
    assert not goal("throughput", 0.94, 0.95, True, "x")["met"]
    assert goal("p99", 19.9, 20.0, False, " ms")["met"]
    assert not goal("p99", 20.0, 20.0, False, " ms")["met"]  # "under 20 ms"
    assert not goal("p99", None, 20.0, False, " ms")["met"]  # not measured: not met
    assert not goal("p99", 12.0, 20.0, False, " ms", holds=False)["met"]  # falling behind
    assert goal_lines([goal("p99", 12.345, 20.0, False, " ms")]) == [
        "goal: p99 < 20 ms: 12.35 ms met"]


def test_the_generator_figures_are_medians_and_a_bad_run_shows() -> None:
    tries = [{"target": 1000.0, "achieved": a, "reported": r, "keeping_up": k,
              "dropped": d, "cores": c, "window_s": 5.0}
             for a, r, k, d, c in [(990.0, 1000.0, True, 0, 0.1),
                                   (1000.0, 999.0, False, 3, 0.3),
                                   (1010.0, 1001.0, True, 0, 0.2)]]
    row = pipeline.generator_median(tries)
    assert row["achieved"] == 1000.0 and row["error_pct"] == 0.0
    assert row["reported"] == 1000.0 and row["cores"] == 0.2
    assert row["keeping_up"] is False and row["dropped"] == 3
    assert row["runs"] == tries


def test_the_pipeline_ratios_and_goals_are_against_the_same_runs_pass_through() -> None:
    def side(rates: list[float], cpu: float) -> list[dict[str, float]]:
        return [{"msgs_per_s": r, "cpu_us_per_msg": cpu, "cores": 1.0, "span_ms": 100.0}
                for r in rates]

    runs = {"passthrough": side([90.0, 100.0, 110.0], 2.0),
            "detector": side([96.0, 80.0, 100.0], 2.5),
            "detector-eos": side([90.0], 2.5),
            "detector-rules": side([5.0], 40.0)}
    generator = [{"target": 1000.0, "error_pct": -0.5}, {"target": 1e5, "error_pct": 1.5}]
    source = Preloaded("in", 100, 12_000, 4, 10)
    report = pipeline.summarize(source, runs, generator, precise_cpu=True)
    assert report["detector"]["throughput_ratio"] == 0.96
    assert report["detector"]["cpu_efficiency"] == 0.8
    met = {g["what"]: g["met"] for g in report["goals"]}
    assert met == {
        "detector, threshold only: throughput vs pass-through": True,
        "detector, threshold only: CPU efficiency vs pass-through": True,
        "detector, every rule + model + exactly-once: throughput vs pass-through": False,
        "generator at 1,000/s: error": True,
        "generator at 100,000/s: error": False,
    }


def test_each_detector_is_reported_against_the_raw_client_too() -> None:
    def side(rate: float, cpu: float) -> list[dict[str, float]]:
        return [{"msgs_per_s": rate, "cpu_us_per_msg": cpu, "cores": 1.0, "span_ms": 100.0}]

    runs = {"raw": side(500.0, 2.0), "passthrough": side(400.0, 2.5),
            "detector": side(360.0, 3.0), "detector-rules": side(100.0, 10.0)}
    report = pipeline.summarize(Preloaded("in", 100, 12_000, 4, 10), runs, [],
                                precise_cpu=True)
    assert report["detector"]["raw_throughput_ratio"] == 0.72
    assert report["detector"]["throughput_ratio"] == 0.9  # against the loop's own copy
    assert report["detector-rules"]["raw_cpu_ratio"] == 5.0
    met = {g["what"]: g["met"] for g in report["goals"]}
    assert met["detector, threshold only: throughput vs raw client"] is True
    assert met["detector, every rule + model + exactly-once: throughput vs raw client"] \
        is False  # 0.2x
    assert met["detector, every rule + model + exactly-once: CPU per record vs raw "
               "client"] is False  # 5x the raw client's
    text = pipeline.render(report)
    assert "vs raw" in text and "0.72x" in text


def test_against_the_raw_client_each_run_is_paired_with_its_own_rounds() -> None:
    def side(rates: list[float]) -> list[dict[str, float]]:
        return [{"msgs_per_s": r, "cpu_us_per_msg": 2.0, "cores": 1.0, "span_ms": 100.0}
                for r in rates]

    # The machine got busier between rounds: every side slowed down alike.
    runs = {"raw": side([500.0, 250.0, 400.0]), "passthrough": side([450.0, 240.0, 400.0]),
            "detector": side([400.0, 200.0, 280.0])}
    report = pipeline.summarize(Preloaded("in", 100, 12_000, 4, 10), runs, [],
                                precise_cpu=True)
    assert report["detector"]["raw_throughput_ratios"] == [0.8, 0.8, 0.7]
    assert report["detector"]["raw_throughput_ratio"] == 0.8  # not 280 / 400


def test_console_figures_are_medians_of_runs_with_goals_at_50k() -> None:
    def run(p99: float, cores: float) -> dict:
        return {"flowed_per_s": 50_000.0, "console_cores": cores,
                "key_to_screen_ms": {"median": 10.0, "p99": p99, "max": p99, "presses": 40},
                "row_key_to_screen_ms": {"median": 12.0, "p99": 2 * p99, "max": 2 * p99,
                                         "presses": 40},
                "snapshot_ms": {"median": 4.0, "p99": 9.0, "count": 100},
                "latency_p50_p99_ms": [30.0, 60.0]}

    row = console.summarize(50_000.0, [run(30.0, 0.3), run(150.0, 0.2), run(40.0, 0.25)])
    assert row["key_to_screen_ms"]["p99"] == 40.0 and row["console_cores"] == 0.25
    assert row["row_key_to_screen_ms"]["p99"] == 80.0
    # A settings key, a row key (j/k) and the CPU, each against its bound.
    assert [g["met"] for g in console.goals([row])] == [True, True, True]
    assert console.goals([{**row, "target_tps": 10_000.0}]) == []  # no goal below 50k
    assert "fraud-console under load" in console.render([row])


def test_the_summary_gathers_every_parts_goals_and_names_what_is_missing(
    tmp_path: Path,
) -> None:
    (tmp_path / "pipeline.json").write_text(json.dumps(
        {"goals": [goal("throughput", 0.8, 0.95, True, "x")]}))
    (tmp_path / "console.json").write_text(json.dumps(
        {"rates": [], "goals": [goal("CPU", 0.3, 1.0, False, " cores")]}))
    report = summary(tmp_path, ["pipeline", "latency", "console"])
    assert [(g["part"], g["met"]) for g in report["goals"]] == [("pipeline", False),
                                                                 ("console", True)]
    assert report["missing"] == ["latency"]
    text = render(report)
    assert "NO" in text and "no results yet for: latency" in text
