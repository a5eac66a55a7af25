"""Modal screens: help, and typing an exact TPS."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from services.control import MAX_TPS


class HelpScreen(ModalScreen[None]):
    """Every key, from the same bindings the footer shows."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, bindings: list[Binding]) -> None:
        super().__init__()
        self.keys = bindings

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan")
        table.add_column()
        for binding in self.keys:
            key = binding.key_display or binding.key
            table.add_row(key, binding.tooltip or binding.description)
        with Vertical(id="help"):
            yield Static("[b]fraud-console[/b] keys", id="help-title")
            yield Static(table)
            yield Static(
                "Changes go to the control topic as commands; the services apply them\n"
                "and report back. Settings show the value in force as the services\n"
                "report it, then → what was asked: … waiting, ✓ applied, ✗ refused\n"
                "(the reason shows below the panels).",
                id="help-note")
            yield Static("[dim]esc closes[/dim]")


class TpsScreen(ModalScreen[float | None]):
    """Ask for an exact rate; dismissed with the number, or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="tps-dialog"):
            yield Static(f"Transactions per second (0.1 – {MAX_TPS:,.0f}), Enter to send:")
            yield Input(placeholder="e.g. 2500", id="tps-input")
            yield Static("", id="tps-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            value = float(event.value.replace(",", "").replace("_", ""))
        except ValueError:
            self.query_one("#tps-error", Static).update(f"[red]{event.value!r} is not a number")
            return
        if not 0.1 <= value <= MAX_TPS:
            self.query_one("#tps-error", Static).update(
                f"[red]{value:g} is out of range (0.1 – {MAX_TPS:,.0f})")
            return
        self.dismiss(value)
