"""Modal screens: help, typing an exact TPS, and the detector's rule settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from services.control import MAX_TPS, SETTINGS, CommandRefused
from tui.model import shown
from tui.record_filter import RecordFilter

# The detector's settings beyond the threshold (which has keys of its own), in order.
RULE_SETTINGS = tuple(name for name, spec in SETTINGS.items()
                      if spec.owner == "detector" and name != "threshold")


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
        with VerticalScroll(id="help"):
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


class RulesScreen(ModalScreen[tuple[str, float] | None]):
    """The detector's rule settings in force; pick one, type a value, Enter sends it.

    Values are checked here as the detector will check them, so a typo is explained at
    once instead of coming back refused. Dismissed with ``(setting, value)`` or None.
    """

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, in_force: Callable[[str], Any]) -> None:
        super().__init__()
        self.in_force = in_force

    def compose(self) -> ComposeResult:
        with Vertical(id="rules-dialog"):
            yield Static("Detector rules: pick a setting, type its new value, Enter sends")
            yield OptionList(*(Option(self._label(name), id=name) for name in RULE_SETTINGS),
                             id="rules-list")
            yield Static("", id="rules-help")
            yield Input(placeholder="new value", id="rules-input")
            yield Static("", id="rules-error")

    def _label(self, name: str) -> str:
        spec = SETTINGS[name]
        value = self.in_force(name)
        return (f"{name:<18} {'?' if value is None else shown(value):>8}  "
                f"[dim]{spec.low:g} – {spec.high:g}[/dim]")

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        name = RULE_SETTINGS[event.option_index]
        self.query_one("#rules-help", Static).update(f"[dim]{SETTINGS[name].description}")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.query_one("#rules-input", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        options = self.query_one("#rules-list", OptionList)
        highlighted = options.highlighted
        error = self.query_one("#rules-error", Static)
        if highlighted is None:
            error.update("[red]pick a setting first")
            return
        name = RULE_SETTINGS[highlighted]
        try:
            value = float(event.value.replace(",", "").replace("_", ""))
            checked = SETTINGS[name].check(value)
        except ValueError as exc:  # CommandRefused is one, with the reason
            reason = str(exc) if isinstance(exc, CommandRefused) else \
                f"{event.value!r} is not a number"
            error.update(f"[red]{reason}")
            return
        self.dismiss((name, float(checked)))


class FilterScreen(ModalScreen[RecordFilter | None]):
    """The filter line: what to show, checked as it is typed in; Enter applies it."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, current: RecordFilter | None) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="filter-dialog"):
            yield Static("Filter both feeds: an account (or part of one), a rule name "
                         "or amount>N")
            yield Input(value=self.current.text if self.current else "",
                        placeholder="e.g. 7QX  ·  velocity  ·  amount>900", id="filter-input")
            yield Static("", id="filter-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            self.dismiss(RecordFilter.parse(event.value))
        except ValueError as exc:
            self.query_one("#filter-error", Static).update(f"[red]{exc}")
