"""fraud-console: attach to a cluster, or run the whole pipeline on an embedded broker."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
from collections.abc import Sequence

from services import broker, config, security
from services.generator.profiles import PROFILES
from tui.app import FraudConsole
from tui.children import Children
from tui.feed import KafkaFeed


def parse_args(argv: Sequence[str] | None) -> config.argparse.Namespace:
    parser = config.base_parser(
        "fraud-console",
        "Watch and steer the fraud pipeline. With no cluster given, run the whole "
        "pipeline (embedded broker, generator, detector, evaluator) as child processes.",
        bootstrap_default=None,
    )
    # The services' own variables, so that a shell set up for them sets these too.
    config.env_option(parser, "--tps", "TRANSACTIONS_PER_SECOND", "100",
                      "starting rate of the embedded generator", os.environ,
                      type=config.number("--tps (TRANSACTIONS_PER_SECOND)", low=0,
                                         high=100_000, low_inclusive=False))
    config.env_option(parser, "--threshold", "FRAUD_THRESHOLD", "900",
                      "starting fraud threshold of the embedded detector", os.environ,
                      type=config.number("--threshold (FRAUD_THRESHOLD)", low=0, high=1e9,
                                         low_inclusive=False))
    config.env_option(parser, "--profile", "GENERATOR_PROFILE", "scenarios",
                      "what the embedded generator streams: scenarios (labelled, so the "
                      "quality panel has figures) or tutorial", os.environ, type=_profile)
    config.env_option(parser, "--group", "DETECTOR_GROUP", "fraud-detector",
                      "consumer group of the detectors (for their lag)", os.environ)
    return config.parse(parser, argv)


def _profile(text: str) -> str:
    # argparse checks ``choices`` on flags only; a type checks the environment's value too.
    if text not in PROFILES:
        raise config.argparse.ArgumentTypeError(
            f"--profile (GENERATOR_PROFILE): {text!r} is not one of {', '.join(PROFILES)}")
    return text


def service_env(bootstrap: str, args: config.argparse.Namespace) -> dict[str, str]:
    topics = config.topics(args)
    return {**os.environ, "KAFKA_BROKER_URL": bootstrap,
            "TRANSACTIONS_TOPIC": topics.transactions, "LEGIT_TOPIC": topics.legit,
            "FRAUD_TOPIC": topics.fraud, "DLQ_TOPIC": topics.dlq,
            "CONTROL_TOPIC": topics.control, "STATUS_TOPIC": topics.status,
            "LABELS_TOPIC": topics.labels, "DETECTOR_GROUP": args.group}


def pipeline(args: config.argparse.Namespace) -> list[tuple[str, str, list[str]]]:
    """The children after the broker, in the order they start: (name, module, args)."""
    return [("detector", "services.detector.service", ["--threshold", str(args.threshold)]),
            ("evaluator", "services.evaluator.service", []),
            ("generator", "services.generator.service",
             ["--tps", str(args.tps), "--profile", args.profile])]


def refused_settings(args: config.argparse.Namespace) -> str | None:
    """The line a child would exit with for a bad setting in the environment it
    inherits (``DETECTOR_BATCH_SIZE=lots``), found by its own parser before anything
    starts: the console then ends at once, its screen never drawn."""
    for _, module, argv in pipeline(args):
        errors = io.StringIO()
        try:
            with contextlib.redirect_stderr(errors):
                importlib.import_module(module).parse_args(argv)
        except SystemExit as exc:
            if exc.code == 2:
                lines = errors.getvalue().strip().splitlines()
                return lines[-1] if lines else f"{module} refused its settings"
            raise
    return None


def forget_cluster_security() -> None:
    """The embedded broker speaks PLAINTEXT only: TLS or SASL settings meant for a real
    cluster would lock the console and the services it starts out of it. The control
    secret stays: it works the same with any broker."""
    for name in security.CLIENT_VARIABLES:
        os.environ.pop(name, None)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    topics = config.topics(args)
    if args.bootstrap is not None:
        app = FraudConsole(KafkaFeed(args.bootstrap, topics, args.group,
                                     secret=args.control_secret),
                           subtitle=f"attached to {args.bootstrap}", freeze_start_up=True)
        app.run()
        return 0

    forget_cluster_security()
    broker.tune_clients(os.environ)  # the console's own reader and every child's
    refused = refused_settings(args)
    if refused:
        print(f"fraud-console: error: {refused}", file=sys.stderr)
        return 2
    children = Children()
    try:
        bootstrap = children.start_broker()
        env = service_env(bootstrap, args)
        for name, module, child_args in pipeline(args):
            children.start(name, module, child_args, env)
        # The children inherit the environment, CONTROL_SECRET included.
        app = FraudConsole(KafkaFeed(bootstrap, topics, args.group,
                                     secret=args.control_secret),
                           subtitle=f"embedded broker {bootstrap} · logs {children.log_dir}",
                           watch=children.first_death, freeze_start_up=True)
        reason = app.run()
    finally:
        children.stop_all()
    refused = children.refused_settings()
    if refused:  # a child refused what only it could check (its broker): one line, code 2
        print(f"fraud-console: error: {refused}", file=sys.stderr)
        return 2
    if reason:
        print(f"fraud-console: stopped because the {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
