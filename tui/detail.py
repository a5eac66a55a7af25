"""The drill-down: one transaction, why it was routed where it was, and what else its
account did lately, each of those selectable in turn."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from tui.model import Row, Snapshot, TxLabel, shown
from tui.widgets import WIDE_ONLY_ON_TOP, KeyFooter, clock_time, money

TX_FIELDS = ("id", "ts", "source", "target", "amount", "currency")


# What the detector says decided a verdict ("decided_by"), in words.
DECIDERS = {
    "rules": "the rules",
    "model": "the model (its score against the cutoff)",
    "model_veto": "the model, over the rules (score under the veto)",
}


def decided_by(detection: dict[str, Any], veto: float | None) -> str:
    """Who made the verdict, inferred from the hits and the score when the verdict does
    not say (a detector older than its ``decided_by``): the model on its own, the model
    over the rules, or the rules."""
    rules = [r.get("rule") for r in detection.get("rules") or [] if isinstance(r, dict)]
    score = detection.get("score")
    if "model" in rules:
        return "the model (score at or above the cutoff)"
    if score is None:
        return "the rules (no model score)"
    others = [r for r in rules if r != "model"]
    if others and not detection.get("fraud"):
        return "the model, over the rules (score under the veto)"
    if others:
        return "the rules (the model's score did not veto them)"
    return "the rules (none fired) and the model (score under the cutoff)"


Lines = list[tuple[str, str | Text]]


def transaction_table(row: Row, snapshot: Snapshot | None, label: TxLabel | None) -> Table:
    """The verdict and the figures behind it, every field of the record, and where it
    was read from: each part named once in the first column, so that on a narrow
    terminal the verdict and the transaction fit without scrolling."""
    body = row.detail()
    found = body.get("detection")
    detection: dict[str, Any] = found if isinstance(found, dict) else {}
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column(style="dim", no_wrap=True)
    table.add_column()
    for part, lines in (("verdict", _verdict(detection, snapshot)),
                        ("transaction", _fields(body)),
                        ("where", _where(row, detection, label))):
        for i, (name, value) in enumerate(lines):
            table.add_row(part if i == 0 else "", name, value)
    return table


def _fields(body: dict[str, Any]) -> Lines:
    lines: Lines = []
    for name in TX_FIELDS:
        value = body.get(name, "–")
        if name == "ts" and isinstance(value, int):
            value = f"{value}  ({_utc(value)} UTC)" if value else value
        elif name == "amount" and isinstance(value, int | float):
            value = money(float(value))
        lines.append((name, str(value)))
    lines += [(name, str(value)) for name, value in body.items()
              if name not in TX_FIELDS and name != "detection"]
    return lines


def _verdict(detection: dict[str, Any], snapshot: Snapshot | None) -> Lines:
    fraud = detection.get("fraud")
    lines: Lines = [("routed", Text("fraud", "bold red") if fraud else Text("legit", "green"))]
    rules = [r for r in detection.get("rules") or [] if isinstance(r, dict)]
    if not rules:
        lines.append(("rules", Text("none fired", "dim")))
    lines += [("rules" if i == 0 else "",
               Text.assemble((str(rule.get("rule", "?")), "bold"), "  ",
                             str(rule.get("reason", ""))))
              for i, rule in enumerate(rules)]
    score = detection.get("score")
    lines.append(("model score", "–  (no model, or none trained yet)" if score is None
                  else f"{score:.4f}"))
    cutoff, veto = detection.get("cutoff"), detection.get("veto")
    if _number(cutoff) and _number(veto):  # as the detector judged this verdict
        lines.append(("cutoff · veto", f"{shown(cutoff)} · {shown(veto)}  (for this verdict)"))
    else:  # as the services report them now: the best the console knows
        applied = snapshot.applied if snapshot is not None else (lambda _: None)
        cutoff, veto = applied("model_cutoff"), applied("model_veto")
        lines.append(("cutoff · veto", f"{'?' if cutoff is None else shown(cutoff)} · "
                      f"{'?' if veto is None else shown(veto)}  (in force now)"))
    lines.append(("threshold", shown(detection.get("threshold", "?")) + "  (when judged)"))
    decider = detection.get("decided_by")
    if decider in DECIDERS:
        lines.append(("decided by", DECIDERS[str(decider)]))
    else:
        lines.append(("decided by", Text.assemble(decided_by(detection, veto),
                                                  ("  (inferred)", "dim"))))
    trusted = detection.get("model_trusted")
    if isinstance(trusted, bool):
        lines.append(("model trusted", "yes: it has beaten the rules on the labels" if trusted
                      else "no: the rules decide until it beats them on the labels"))
    features = detection.get("features")
    if isinstance(features, dict) and features:
        lines.append(("figures", "  ".join(f"{k} {_figure(v)}" for k, v in features.items())))
    return lines


def _where(row: Row, detection: dict[str, Any], label: TxLabel | None) -> Lines:
    latency = row.latency_ms
    lines: Lines = [
        ("detector", str(detection.get("instance", "?"))),
        ("read from", f"{row.topic or '?'}  partition {_known(row.partition)}  "
                      f"offset {_known(row.offset)}"),
        ("end to end", "–" if latency is None else f"{latency:,} ms")]
    if label is None:
        lines.append(("label", Text("not (yet) labelled", "dim")))
    else:
        lines.append(("label", Text.assemble(
            ("fraud", "bold red") if label.fraud else ("legit", "green"),
            f"  scenario {label.scenario}" if label.scenario else "")))
    return lines


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _utc(ts_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts_ms / 1000))


def _figure(value: Any) -> str:
    """A rule's figure in a few digits: 86,400 (not 8.64e+04), 2.5, 0.0312."""
    if not isinstance(value, float):
        return str(value)
    if value.is_integer() or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _known(value: int) -> str:
    return "?" if value < 0 else f"{value:,}"


def history_line(row: Row, account: str) -> Text:
    incoming = row.target == account and row.source != account
    other = row.source if incoming else row.target
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(clock_time(row.ts), "dim")
    text.append(f" {money(row.amount):>10} {row.currency:<3} ")
    text.append("← from " if incoming else "→ to   ", "cyan" if incoming else "")
    text.append(f"{other:<14}")
    text.append(" fraud" if row.topic.endswith("fraud") or row.reasons else " legit",
                "red" if row.reasons else "green")
    if row.reasons:
        text.append(f"  {row.reasons}", "dim")
    return text


class DetailScreen(Screen[None]):
    """One transaction in full, and the recent transactions of both its accounts."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", tooltip="back to where you came from"),
        Binding("k", "cursor(-1)", "Up", show=False),
        Binding("j", "cursor(1)", "Down", show=False),
    ]

    def __init__(self, row: Row, history: Callable[[str], tuple[Row, ...]],
                 label: Callable[[str], TxLabel | None], snapshot: Snapshot | None) -> None:
        super().__init__()
        self.row = row
        self.history_of = history
        self.label_of = label
        self.snapshot = snapshot
        self.label: TxLabel | None = None
        # The source's transactions, then the target's (as source or target each);
        # the list's headings have no row.
        self.history: tuple[Row, ...] = ()
        self._entries: list[Row | None] = []

    def compose(self) -> ComposeResult:
        with Horizontal(id="detail"):
            with VerticalScroll(id="detail-fields"):
                yield Static(id="detail-table")
            yield OptionList(id="detail-history")
        yield KeyFooter(WIDE_ONLY_ON_TOP)

    def on_mount(self) -> None:
        fields = self.query_one("#detail-fields")
        fields.border_title = f"Transaction {self.row.id or '?'}"
        fields.border_subtitle = "Tab: here, ↑↓ scroll"
        options = self.query_one("#detail-history", OptionList)
        options.border_title = "Recent, of both accounts"
        options.border_subtitle = "↑↓ select · Enter opens"
        accounts = dict.fromkeys((self.row.source, self.row.target))  # once each, in order
        history: list[Row] = []
        for role, account in zip(("source", "target"), accounts, strict=False):
            rows = self.history_of(account)
            options.add_option(Option(Text.assemble(
                (f"{role} {account}", "bold"),
                (f"  {len(rows)} seen, as source and as target", "dim")), disabled=True))
            self._entries.append(None)
            for row in rows:
                options.add_option(Option(history_line(row, account)))
                self._entries.append(row)
            if not rows:
                options.add_option(Option(Text("  none seen by this console", "dim"),
                                          disabled=True))
                self._entries.append(None)
            history += rows
        self.history = tuple(history)
        first = next((i for i, entry in enumerate(self._entries) if entry is not None), None)
        options.highlighted = first
        options.focus()
        self._draw()
        self.set_interval(1.0, self._look_for_label)

    def _look_for_label(self) -> None:
        if self.label is None and self.row.id:
            self.label = self.label_of(self.row.id)
            if self.label is not None:
                self._draw()

    def _draw(self) -> None:
        if self.label is None and self.row.id:
            self.label = self.label_of(self.row.id)
        self.query_one("#detail-table", Static).update(
            transaction_table(self.row, self.snapshot, self.label))

    def show_snapshot(self, snapshot: Snapshot) -> None:
        """Settings in force may change while the detail is open."""
        self.snapshot = snapshot

    def action_cursor(self, delta: int) -> None:
        options = self.query_one("#detail-history", OptionList)
        (options.action_cursor_down if delta > 0 else options.action_cursor_up)()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        entry = self._entries[event.option_index]
        if entry is not None:
            self.app.push_screen(DetailScreen(entry, self.history_of, self.label_of,
                                              self.snapshot))
