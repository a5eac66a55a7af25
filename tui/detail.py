"""The drill-down: one transaction, why it was routed where it was, and what else its
account did lately, each of those selectable in turn."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from tui.model import Row, Snapshot, TxLabel, shown
from tui.widgets import clock_time, money

TX_FIELDS = ("id", "ts", "source", "target", "amount", "currency")


def decided_by(detection: dict[str, Any], veto: float | None) -> str:
    """Who made the verdict: the model on its own, the model over the rules, or the rules."""
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


def transaction_table(row: Row, snapshot: Snapshot | None, label: TxLabel | None) -> Table:
    """Every field of the record, the verdict and the figures behind it, and where it
    was read from."""
    body = row.detail()
    detection = body.get("detection") if isinstance(body.get("detection"), dict) else {}
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim", no_wrap=True)
    table.add_column()

    def heading(name: str) -> None:
        table.add_row(Text(name, "bold cyan"), "")

    heading("transaction")
    for name in TX_FIELDS:
        value = body.get(name, "–")
        if name == "ts" and isinstance(value, int):
            value = f"{value}  ({clock_time(value)} UTC)" if value else value
        elif name == "amount" and isinstance(value, int | float):
            value = money(float(value))
        table.add_row(name, str(value))
    for name, value in body.items():
        if name not in TX_FIELDS and name != "detection":
            table.add_row(name, str(value))

    heading("verdict")
    fraud = detection.get("fraud")
    table.add_row("routed", Text("fraud", "bold red") if fraud else Text("legit", "green"))
    rules = [r for r in detection.get("rules") or [] if isinstance(r, dict)]
    if not rules:
        table.add_row("rules", Text("none fired", "dim"))
    for i, rule in enumerate(rules):
        table.add_row("rules" if i == 0 else "",
                      Text.assemble((str(rule.get("rule", "?")), "bold"), "  ",
                                    str(rule.get("reason", ""))))
    applied = snapshot.applied if snapshot is not None else (lambda _: None)
    cutoff, veto = applied("model_cutoff"), applied("model_veto")
    score = detection.get("score")
    table.add_row("model score", "–  (no model, or none trained yet)" if score is None
                  else f"{score:.4f}")
    table.add_row("cutoff · veto", f"{'?' if cutoff is None else shown(cutoff)} · "
                  f"{'?' if veto is None else shown(veto)}  (in force now)")
    table.add_row("threshold", shown(detection.get("threshold", "?")) + "  (when judged)")
    table.add_row("decided by", decided_by(detection, veto))
    features = detection.get("features")
    if isinstance(features, dict) and features:
        table.add_row("figures", "  ".join(f"{k} {_figure(v)}" for k, v in features.items()))

    heading("where")
    table.add_row("detector", str(detection.get("instance", "?")))
    table.add_row("read from", f"{row.topic or '?'}  partition {_known(row.partition)}  "
                  f"offset {_known(row.offset)}")
    latency = row.latency_ms
    table.add_row("end to end", "–" if latency is None else f"{latency:,} ms")
    if label is None:
        table.add_row("label", Text("not (yet) labelled", "dim"))
    else:
        table.add_row("label", Text.assemble(
            ("fraud", "bold red") if label.fraud else ("legit", "green"),
            f"  scenario {label.scenario}" if label.scenario else ""))
    return table


def _figure(value: Any) -> str:
    return f"{value:,.3g}" if isinstance(value, float) else str(value)


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
    """One transaction in full, and its source account's recent transactions."""

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
        self.history: tuple[Row, ...] = ()

    def compose(self) -> ComposeResult:
        with Horizontal(id="detail"):
            with VerticalScroll(id="detail-fields"):
                yield Static(id="detail-table")
            yield OptionList(id="detail-history")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        account = self.row.source
        self.history = self.history_of(account)
        fields = self.query_one("#detail-fields")
        fields.border_title = f"Transaction {self.row.id or '?'}"
        options = self.query_one("#detail-history", OptionList)
        options.border_title = f"{account} · recent, as source and target"
        options.border_subtitle = "↑↓ select · Enter opens"
        options.add_options([Option(history_line(r, account)) for r in self.history])
        if not self.history:
            options.add_option(Option(Text("none seen by this console", "dim"),
                                      disabled=True))
        options.highlighted = 0
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
        if event.option_index < len(self.history):
            self.app.push_screen(DetailScreen(self.history[event.option_index],
                                              self.history_of, self.label_of, self.snapshot))
