"""Replay of a labelled CSV in the credit-card fraud layout: rows become labelled
transactions; bad rows are skipped and counted; a file that does not fit is refused."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from services.config import ConfigError
from services.generator.replay import FEATURES, CsvReplay, check
from tests.credit_card_csv import fraud_csv

TS = 1_700_000_000_000


def read_all(replay: CsvReplay, batch: int = 7) -> tuple[list[dict], list[dict]]:
    transactions, labels = [], []
    while not replay.finished:
        got = replay.batch(batch, TS)
        transactions += [orjson.loads(v) for _, v in got.transactions]
        labels += [orjson.loads(v) for _, v in got.labels]
    return transactions, labels


def test_rows_become_labelled_transactions(tmp_path: Path) -> None:
    rows = fraud_csv(tmp_path / "cards.csv", 40)
    transactions, labels = read_all(CsvReplay(str(tmp_path / "cards.csv")))
    assert len(transactions) == len(labels) == 40
    for row, tx, label in zip(rows, transactions, labels, strict=True):
        assert tx["amount"] == max(0.01, row["Amount"])
        assert tx["features"] == {v: row[v] for v in FEATURES}
        assert tx["ts"] == TS and tx["currency"] == "EUR"
        assert len(tx["source"]) == len(tx["target"]) == 12 and tx["source"].isalnum()
        assert label["id"] == tx["id"]
        assert label["fraud"] is (row["Class"] == 1)
        assert label["scenario"] == ("dataset" if row["Class"] == 1 else None)
    assert len({tx["id"] for tx in transactions}) == 40


def test_accounts_are_derived_from_the_row_the_same_way_every_time(tmp_path: Path) -> None:
    fraud_csv(tmp_path / "cards.csv", 20)
    first, _ = read_all(CsvReplay(str(tmp_path / "cards.csv")))
    again, _ = read_all(CsvReplay(str(tmp_path / "cards.csv")), batch=3)
    assert [(t["source"], t["target"]) for t in first] == [(t["source"], t["target"])
                                                           for t in again]
    assert len({t["source"] for t in first}) == 20  # different rows, different accounts


def test_the_end_of_the_file_stops_the_replay(tmp_path: Path) -> None:
    fraud_csv(tmp_path / "cards.csv", 5)
    replay = CsvReplay(str(tmp_path / "cards.csv"))
    assert len(replay.batch(3, TS).transactions) == 3
    assert not replay.finished
    assert len(replay.batch(3, TS).transactions) == 2
    assert replay.finished
    assert replay.batch(3, TS).transactions == []


def test_a_loop_starts_over_with_new_ids(tmp_path: Path) -> None:
    fraud_csv(tmp_path / "cards.csv", 5)
    replay = CsvReplay(str(tmp_path / "cards.csv"), loop=True)
    transactions = [orjson.loads(v) for _, v in replay.batch(12, TS).transactions]
    assert len(transactions) == 12 and not replay.finished
    assert replay.passes == 2
    assert len({tx["id"] for tx in transactions}) == 12
    assert transactions[5]["source"] == transactions[0]["source"]  # the same first row


def test_bad_rows_are_counted_and_skipped(tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    good = ",".join(["0"] * 29 + ["12.5", "0"])
    bad = [
        ",".join(["0"] * 29 + ["12.5"]),  # a field short
        ",".join(["0", "x"] + ["0"] * 27 + ["12.5", "0"]),  # V1 not a number
        ",".join(["0"] * 29 + ["-4", "0"]),  # a negative amount
        ",".join(["0"] * 29 + ["inf", "0"]),  # not finite
        ",".join(["0"] * 29 + ["3", "2"]),  # Class neither 0 nor 1
        "\u00ff\u00fe garbage",
    ]
    fraud_csv(tmp_path / "cards.csv", 3, extra=[*bad, "", good])
    now = [0.0]
    replay = CsvReplay(str(tmp_path / "cards.csv"), clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="fraud.generator.replay"):
        transactions, labels = read_all(replay)
    assert len(transactions) == len(labels) == 4
    assert replay.bad_rows == len(bad)
    assert transactions[-1]["amount"] == 12.5
    # Reported now and then, not once a row: the first one, then every few seconds.
    (report,) = caplog.records
    assert "line 5: 30 fields, fewer than the header's" in report.getMessage()


def test_bad_rows_are_reported_again_after_a_while(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    good = ",".join(["0"] * 29 + ["12.5", "0"])
    fraud_csv(tmp_path / "cards.csv", 0, extra=["a,b", good] * 3 + ["a,b"])
    now = [0.0]
    replay = CsvReplay(str(tmp_path / "cards.csv"), clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="fraud.generator.replay"):
        replay.batch(1, TS)  # the first bad row: reported
        now[0] = 1.0
        replay.batch(1, TS)  # the second, a second later: counted only
        now[0] = 10.0
        read_all(replay)  # the third, later: reported with the count; the fourth: counted
    assert replay.bad_rows == 4
    assert [r.getMessage().rsplit(": ", 1)[1] for r in caplog.records] == ["1", "3"]


def test_zero_amounts_become_a_cent_and_column_order_does_not_matter(tmp_path: Path) -> None:
    names = ["Class", "Amount", *reversed(FEATURES), "Time", "Note"]
    values = ["1", "0.00", *(str(i) for i in range(28, 0, -1)), "7", "hello"]
    (tmp_path / "cards.csv").write_text(",".join(names) + "\n" + ",".join(values) + "\n")
    (tx,), (label,) = read_all(CsvReplay(str(tmp_path / "cards.csv")))
    assert tx["amount"] == 0.01
    assert tx["features"]["V1"] == 1.0 and tx["features"]["V28"] == 28.0
    assert label["fraud"] is True


@pytest.mark.parametrize(("content", "said"), [
    (None, "cannot read"),
    ("", "is empty"),
    ("Time,V1,V2,Amount,Class\n0,1,2,3,0\n", "missing V3, V4, V5, V6, V7 and 21 more"),
    ("Time," + ",".join(FEATURES) + ",Amount\n", "missing Class"),
])
def test_a_file_that_does_not_fit_is_refused(tmp_path: Path, content: str | None,
                                             said: str) -> None:
    path = tmp_path / "cards.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=said) as refused:
        check(str(path))
    assert "\n" not in str(refused.value)
    assert str(refused.value).startswith("--replay: ")


def test_a_loop_over_a_file_without_a_usable_row_ends(tmp_path: Path) -> None:
    fraud_csv(tmp_path / "cards.csv", 0, extra=["1,2,3"])
    replay = CsvReplay(str(tmp_path / "cards.csv"), loop=True)
    assert replay.batch(10, TS).transactions == []
    assert replay.finished
    assert replay.bad_rows == 1


def test_bytes_that_are_not_text_make_a_bad_row_not_a_crash(tmp_path: Path) -> None:
    fraud_csv(tmp_path / "cards.csv", 2)
    with (tmp_path / "cards.csv").open("ab") as file:
        file.write(b",".join([b"0", b"\xff\xfe"] + [b"0"] * 27 + [b"1", b"0"]) + b"\n\0\0\n")
    replay = CsvReplay(str(tmp_path / "cards.csv"))
    transactions, _ = read_all(replay)
    assert len(transactions) == 2
    assert replay.bad_rows == 2
