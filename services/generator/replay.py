"""Replay of a labelled dataset in the public credit-card fraud layout. Pure.

The file is a CSV with a header naming at least ``Time``, ``V1`` .. ``V28``, ``Amount``
and ``Class`` (in any order; the public file quotes them). Each row becomes one
transaction sent now:

- ``amount`` is ``Amount`` (the dataset's zero amounts, card checks, become 0.01,
  since a transaction of nothing is not one the pipeline accepts);
- ``ts`` is the time of sending (``Time``, seconds since the dataset's first row, is
  not a clock the rest of the pipeline shares);
- ``source`` and ``target`` are derived from a hash of the row, so the same row always
  has the same accounts, in every run and every loop over the file;
- ``V1`` .. ``V28`` ride along as ``features``, for a model to learn from;
- the label comes from ``Class`` (1: fraud, scenario ``dataset``; 0: not).

A row that cannot be read is counted, reported now and then, and skipped; the
replay never stops on data.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from services.config import ConfigError
from services.generator.labels import DATASET, label
from services.generator.population import ACCOUNT_ALPHABET, ACCOUNT_LENGTH
from services.generator.profiles import Batch, Record
from services.transaction import MAX_AMOUNT

log = logging.getLogger("fraud.generator.replay")

FEATURES = tuple(f"V{i}" for i in range(1, 29))
COLUMNS = ("Time", *FEATURES, "Amount", "Class")
CURRENCY = "EUR"  # the public dataset holds European cardholders' payments
SMALLEST_AMOUNT = 0.01
REPORT_EVERY = 5.0  # seconds between two reports of bad rows


class BadRow(ValueError):
    """A row that is not a usable record; the message says why."""


# Maps each byte of a digest onto the account alphabet, for bytes.translate.
_TO_ACCOUNT = bytes(ord(ACCOUNT_ALPHABET[b % len(ACCOUNT_ALPHABET)]) for b in range(256))


def accounts_for(row_text: str) -> tuple[str, str]:
    """The source and target accounts of a row, derived from a hash of its text:
    stable across runs and loops, 12 letters and digits each."""
    digest = hashlib.blake2b(row_text.encode(), digest_size=2 * ACCOUNT_LENGTH).digest()
    accounts = digest.translate(_TO_ACCOUNT).decode()
    return accounts[:ACCOUNT_LENGTH], accounts[ACCOUNT_LENGTH:]


@dataclass(frozen=True)
class Layout:
    """Where the needed columns are in a file's rows."""

    time: int
    amount: int
    label: int
    features: tuple[int, ...]
    widest: int  # the highest of these indices: a row must reach it


def layout_of(header: list[str], path: str) -> Layout:
    """Where each needed column is, or ConfigError naming the missing ones."""
    names = [name.strip() for name in header]
    missing = [name for name in COLUMNS if name not in names]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more"
                                          if len(missing) > 5 else "")
        raise ConfigError(f"--replay: {path} is not in the credit-card fraud layout "
                          f"(Time, V1..V28, Amount, Class): missing {shown}")
    where = {name: names.index(name) for name in COLUMNS}
    return Layout(time=where["Time"], amount=where["Amount"], label=where["Class"],
                  features=tuple(where[name] for name in FEATURES),
                  widest=max(where.values()))


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadRow(f"{name} is not a number: {text[:20]!r}") from None
    if not math.isfinite(value):
        raise BadRow(f"{name} is not finite: {text[:20]!r}")
    return value


def transaction_of(row: list[str], layout: Layout) -> tuple[dict[str, Any], bool]:
    """The transaction (without ``id`` and ``ts``) a row stands for, and whether it is
    fraud; BadRow saying why for a row that is not usable."""
    if len(row) <= layout.widest:
        raise BadRow(f"{len(row)} fields, fewer than the header's")
    texts = [row[i] for i in layout.features]
    try:  # the common case in one go; a failure is explained field by field below
        values = [float(text) for text in texts]
        amount = float(row[layout.amount])
    except ValueError:
        values = [_number(text, name) for text, name in zip(texts, FEATURES, strict=True)]
        amount = _number(row[layout.amount], "Amount")
    if not all(map(math.isfinite, values)):
        for text, name in zip(texts, FEATURES, strict=True):
            _number(text, name)
    if not 0 <= amount <= MAX_AMOUNT:  # also refuses NaN
        raise BadRow(f"Amount out of range: {row[layout.amount][:20]!r}")
    kind = row[layout.label].strip()
    if kind not in ("0", "1"):
        try:
            kind = {0.0: "0", 1.0: "1"}[float(kind)]
        except (ValueError, KeyError):
            raise BadRow(f"Class is neither 0 nor 1: {kind[:20]!r}") from None
    source, target = accounts_for(",".join(row))
    return {
        "source": source,
        "target": target,
        "amount": max(SMALLEST_AMOUNT, round(amount, 2)),
        "currency": CURRENCY,
        "features": dict(zip(FEATURES, values, strict=True)),
    }, kind == "1"


class CsvReplay:
    """The rows of a CSV file as transactions, read as they are asked for.

    At the end of the file it is ``finished``, or with ``loop`` it starts over (ids
    stay unique: they count on across loops). A loop over a file without a single
    usable row finishes too, rather than spin on nothing.
    """

    labelled = True

    def __init__(self, path: str, loop: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.loop = loop
        self.finished = False
        self.rows = 0  # rows sent
        self.bad_rows = 0
        self.passes = 0  # times the whole file was read
        self._clock = clock
        self._reported_at: float | None = None
        self._reported_bad = 0
        self.run = uuid.uuid4().hex[:12]
        try:
            # newline="" as csv wants; bytes that are not UTF-8 become U+FFFD and make
            # a bad row, not a crash.
            self._file = open(path, newline="", encoding="utf-8-sig", errors="replace")  # noqa: SIM115
        except OSError as exc:
            raise ConfigError(f"--replay: cannot read {path}: {exc.strerror}") from None
        try:
            self.layout, self._reader = self._open()
        except BaseException:
            self._file.close()
            raise
        self._rows_this_pass = 0

    def _open(self) -> tuple[Layout, Iterator[list[str]]]:
        self._file.seek(0)
        reader = csv.reader(self._file)
        try:
            header = next(reader, None)
        except (csv.Error, OSError) as exc:
            raise ConfigError(f"--replay: cannot read {self.path}: {exc}") from None
        if header is None:
            raise ConfigError(f"--replay: {self.path} is empty (no header)")
        return layout_of(header, self.path), reader

    def _next_row(self) -> list[str] | None:
        """The next row of the file (starting over when looping), None at the end."""
        while True:
            try:
                return next(self._reader)
            except StopIteration:
                self.passes += 1
                if not self.loop or self._rows_this_pass == 0:
                    return None
                self._rows_this_pass = 0
                try:
                    self.layout, self._reader = self._open()
                except ConfigError as exc:  # the file changed under us
                    log.error("%s; stopping the replay", exc)
                    return None
            except csv.Error as exc:
                self._bad(f"line {self._reader_line()}: {exc}")

    def _reader_line(self) -> int:
        return getattr(self._reader, "line_num", 0)

    def _bad(self, reason: str) -> None:
        self.bad_rows += 1
        now = self._clock()
        if self._reported_at is None or now - self._reported_at >= REPORT_EVERY:
            log.warning("%s: skipped a bad row (%s); bad rows so far: %d", self.path, reason,
                        self.bad_rows)
            self._reported_at = now

    def batch(self, count: int, ts_ms: int) -> Batch:
        transactions: list[Record] = []
        labels: list[Record] = []
        dumps = orjson.dumps
        while len(transactions) < count and not self.finished:
            row = self._next_row()
            if row is None:
                self.finished = True
                self._file.close()
                break
            if not row:  # a blank line
                continue
            try:
                tx, fraud = transaction_of(row, self.layout)
            except BadRow as exc:
                self._bad(f"line {self._reader_line()}: {exc}")
                continue
            tx_id = f"{self.run}-{self.rows}"
            tx = {"id": tx_id, "ts": ts_ms, **tx}
            transactions.append((tx["source"].encode(), dumps(tx)))
            labels.append(label(tx_id, ts_ms, DATASET if fraud else None))
            self.rows += 1
            self._rows_this_pass += 1
        return Batch(transactions, labels)

    def pace(self, rate: float, ts_ms: int) -> None:
        """A dataset's rows are what they are, at any rate."""

    def close(self) -> None:
        self._file.close()


def check(path: str) -> None:
    """ConfigError unless ``path`` can be replayed: readable, with the needed columns."""
    if not Path(path).is_file():
        raise ConfigError(f"--replay: cannot read {path}: no such file")
    CsvReplay(path).close()
