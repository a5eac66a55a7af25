"""Settings from the tutorial's environment variables, each also a command-line flag.

Every problem with a setting ends the program with one readable line and exit code 2:
a user who mistypes ``TRANSACTIONS_PER_SECOND=fast`` should read what is wrong, not a
traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from services import security

EXIT_CONFIG = 2
DEFAULT_BROKER = "localhost:9092"
# How long a reader on a transaction's path lets the broker hold a fetch that finds
# nothing (services/kafka.py, ``consumer``). It belongs to the cluster rather than to
# one program, like the security settings: environment only, inherited by children.
FETCH_WAIT_VARIABLE = "KAFKA_FETCH_WAIT_MS"
DEFAULT_FETCH_WAIT_MS = 5


class ConfigError(Exception):
    """A setting that cannot be used; its message is the one line the user sees."""


def fail(prog: str, message: str) -> NoReturn:
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_CONFIG)


@dataclass(frozen=True)
class Topics:
    transactions: str = "queueing.transactions"
    legit: str = "streaming.transactions.legit"
    fraud: str = "streaming.transactions.fraud"
    dlq: str = "streaming.transactions.dlq"
    control: str = "control.settings"
    status: str = "monitoring.status"
    labels: str = "labels.transactions"


# (attribute, flag, environment variable) for every topic name.
TOPIC_OPTIONS = (
    ("transactions", "--transactions-topic", "TRANSACTIONS_TOPIC"),
    ("legit", "--legit-topic", "LEGIT_TOPIC"),
    ("fraud", "--fraud-topic", "FRAUD_TOPIC"),
    ("dlq", "--dlq-topic", "DLQ_TOPIC"),
    ("control", "--control-topic", "CONTROL_TOPIC"),
    ("status", "--status-topic", "STATUS_TOPIC"),
    ("labels", "--labels-topic", "LABELS_TOPIC"),
)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage itself stays in ``--help``)."""

    def error(self, message: str) -> NoReturn:
        # argparse puts "argument --tps: " before a type's message, which says the flag
        # and its variable already: "--tps (TRANSACTIONS_PER_SECOND): 'fast' is ...".
        flags, sep, said = message.removeprefix("argument ").partition(": ")
        if sep and message.startswith("argument ") and \
                any(said.startswith(f"{flag} (") for flag in flags.split("/")):
            message = said
        fail(self.prog, message)


def number(
    name: str, *, low: float, high: float, low_inclusive: bool = True
) -> Callable[[str], float]:
    """An argparse type for a finite number in a range; ``name`` is said in errors."""

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: {text!r} is not a number") from None
        below = value < low if low_inclusive else value <= low
        if not math.isfinite(value) or below or value > high:
            bound = "from" if low_inclusive else "above"
            raise argparse.ArgumentTypeError(
                f"{name}: {text} is out of range ({bound} {low:g} up to {high:g})"
            )
        return value

    return convert


def whole(name: str, *, low: int, high: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: {text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{name}: {value} is out of range ({low}..{high})")
        return value

    return convert


def topic_name(name: str) -> Callable[[str], str]:
    legal = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")

    def convert(text: str) -> str:
        if not text or len(text) > 249 or not set(text) <= legal or text in {".", ".."}:
            raise argparse.ArgumentTypeError(f"{name}: {text!r} is not a valid topic name")
        return text

    return convert


def env_option(
    parser: argparse.ArgumentParser,
    flag: str,
    env_name: str,
    default: Any,
    help_text: str,
    env: Mapping[str, str],
    shown_default: str = "%(default)s",
    **kwargs: Any,
) -> None:
    """A flag whose default comes from an environment variable.

    argparse runs ``type`` on string defaults too, so a bad environment value is
    reported exactly like a bad flag.
    """
    value = env.get(env_name)
    parser.add_argument(
        flag,
        default=value if value not in (None, "") else default,
        help=f"{help_text} (env {env_name}; default: {shown_default})",
        **kwargs,
    )


def base_parser(
    prog: str,
    description: str,
    env: Mapping[str, str] | None = None,
    bootstrap_default: str | None = DEFAULT_BROKER,
) -> argparse.ArgumentParser:
    """The options every service shares: where Kafka is and what the topics are called."""
    env = os.environ if env is None else env
    parser = OneLineParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="security (environment only, never shown):\n" + "\n".join(
            f"  {name:<31} {what}" for name, what in security.VARIABLES)
        + "\ntuning (environment only):\n"
        f"  {FETCH_WAIT_VARIABLE:<31} ms the broker may hold an empty fetch of a reader on "
        f"a transaction's path (default: {DEFAULT_FETCH_WAIT_MS})",
    )
    parser.set_defaults(env=env)
    env_option(
        parser, "--bootstrap", "KAFKA_BROKER_URL", bootstrap_default,
        "Kafka bootstrap servers, HOST:PORT[,HOST:PORT]", env, metavar="SERVERS",
        shown_default="%(default)s" if bootstrap_default else "none: run an embedded broker",
    )
    env_option(
        parser, "--connect-timeout", "KAFKA_CONNECT_TIMEOUT", "15",
        "seconds to wait for the cluster at start", env,
        type=number("--connect-timeout", low=0, high=3600, low_inclusive=False),
        metavar="SECONDS",
    )
    for attr, flag, env_name in TOPIC_OPTIONS:
        env_option(
            parser, flag, env_name, getattr(Topics, attr), f"the {attr} topic", env,
            type=topic_name(flag), dest=f"topic_{attr}", metavar="NAME",
        )
    return parser


def fetch_wait_ms(env: Mapping[str, str] | None = None) -> int:
    """``KAFKA_FETCH_WAIT_MS`` (1 to 10,000), or the default; ConfigError saying why not."""
    text = (os.environ if env is None else env).get(FETCH_WAIT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_FETCH_WAIT_MS
    try:
        return whole(FETCH_WAIT_VARIABLE, low=1, high=10_000)(text)
    except argparse.ArgumentTypeError as exc:
        raise ConfigError(str(exc)) from None


def topics(args: argparse.Namespace) -> Topics:
    return Topics(**{attr: getattr(args, f"topic_{attr}") for attr, _, _ in TOPIC_OPTIONS})


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments, with ``control_secret`` from the environment. The client security
    settings are checked here too (services/kafka.py gives them to every client), so
    that any problem ends the program at start with one line."""
    args = parser.parse_args(argv)
    env = args.__dict__.pop("env", None)
    try:
        security.client_security(env)
        args.control_secret = security.control_secret(env)
        fetch_wait_ms(env)
    except (security.SecurityError, ConfigError) as exc:
        parser.error(str(exc))
    if args.bootstrap is None:  # a program that has a use for "no cluster given"
        return args
    bootstrap = str(args.bootstrap).strip()
    if not bootstrap or any(":" not in server for server in bootstrap.split(",")):
        parser.error(f"--bootstrap (KAFKA_BROKER_URL): {args.bootstrap!r} is not HOST:PORT")
    args.bootstrap = bootstrap
    return args
