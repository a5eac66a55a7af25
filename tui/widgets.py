"""The console's panels: each renders one part of a Snapshot."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Footer, Sparkline, Static

from tui.model import Row, ServiceHealth, Snapshot, shown

LABELS = {"in": "in", "legit": "legit", "fraud": "fraud"}


def clock_time(ts_ms: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts_ms / 1000))


def count(n: float) -> str:
    return f"{n:,.0f}"


def money(amount: float) -> str:
    """At most 10 characters, so the amount column never pushes the others out."""
    if abs(amount) >= 1e7:
        return f"{amount / 1e6:,.1f}M"
    return f"{amount:,.2f}"


# Actions left out of the footer below 120 columns, to make room for the analyst's keys;
# on the detail and the curve, which have keys of their own, the steps of TPS and
# threshold too.
WIDE_ONLY = frozenset({"type_tps", "rules", "reset"})
WIDE_ONLY_ON_TOP = WIDE_ONLY | {"tps", "threshold"}


class KeyFooter(Footer):
    """The footer, leaving out ``wide_only`` actions on a narrow terminal (80 columns
    cannot hold every key); they stay bound, and help (?) lists them all."""

    def __init__(self, wide_only: frozenset[str] = WIDE_ONLY) -> None:
        super().__init__(compact=True)
        self.wide_only = wide_only

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            action = str(getattr(widget, "action", ""))  # a FooterKey's, as "tps(True)"
            if action.partition("(")[0] in self.wide_only:
                widget.add_class("-wide-only")
            yield widget


class Figure(Static):
    """A Static that redraws only when its text changes: most figures change once a
    second while snapshots come four times a second, and every redraw costs the UI
    thread time a key press would wait behind."""

    _drawn: Text | str | None = None

    def set_text(self, text: Text | str) -> None:
        if text != self._drawn:
            self._drawn = text
            self.update(text)


class RateLine(Horizontal):
    """A stream's label, its sparkline over the last minutes, its rate and its total."""

    def __init__(self, stream: str) -> None:
        super().__init__(id=f"rate-{stream}", classes="rate-line")
        self.stream = stream
        self._history: tuple[float, ...] = ()

    def compose(self) -> ComposeResult:
        yield Static(LABELS[self.stream], classes="rate-label")
        yield Sparkline([0.0], summary_function=max, classes=f"spark spark-{self.stream}")
        yield Figure("", classes="rate-value")
        yield Figure("", classes="rate-total")

    def show(self, snapshot: Snapshot) -> None:
        history = snapshot.history.get(self.stream) or (0.0,)
        if history != self._history:  # it moves once a second
            self._history = history
            self.query_one(Sparkline).data = list(history)
        rate = snapshot.rates.get(self.stream, 0.0)
        self.query_one(".rate-value", Figure).set_text(f"{count(rate)}/s")
        self.query_one(".rate-total", Figure).set_text(count(snapshot.totals.get(self.stream, 0)))


class Throughput(Vertical):
    def compose(self) -> ComposeResult:
        for stream in LABELS:
            yield RateLine(stream)
        yield Figure("", id="totals")

    def on_mount(self) -> None:
        self.border_title = "Throughput · 5 min"
        self.border_subtitle = "rate · total"

    def show(self, snapshot: Snapshot) -> None:
        for line in self.query(RateLine):
            line.show(snapshot)
        ratio = snapshot.fraud_ratio
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("fraud ratio ", "dim")
        text.append(f"{ratio:.1%}" if ratio is not None else "–", "bold")
        text.append("   dead letters ", "dim")
        text.append(count(snapshot.dead_letters),
                    "bold yellow" if snapshot.dead_letters else "")
        text.append("\nlag ", "dim")
        text.append(count(snapshot.lag) if snapshot.lag is not None else "–")
        text.append("   latency p50 ", "dim")
        text.append(_ms(snapshot.latency_p50))
        text.append(" p99 ", "dim")
        text.append(_ms(snapshot.latency_p99))
        self.query_one("#totals", Figure).set_text(text)


def _ms(value: float | None) -> str:
    return f"{value:,.0f} ms" if value is not None else "–"


SETTING_LABELS = {"tps": "TPS", "threshold": "threshold", "paused": "generator"}


def _value(setting: str, value: Any) -> str:
    if value is None:
        return "?"
    if setting == "paused":
        return "paused" if value else "running"
    return shown(value)


class Settings(Vertical):
    """Settings in force as the services report them (the truth, not what was asked),
    this console's requests on their way, and the services' heartbeats."""

    def compose(self) -> ComposeResult:
        yield Figure("", id="settings")
        yield Figure("", id="services")

    def on_mount(self) -> None:
        self.border_title = "Settings"
        self.border_subtitle = "in force → requested"

    def show(self, snapshot: Snapshot) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        for setting, label in SETTING_LABELS.items():
            applied = snapshot.applied(setting)
            request = snapshot.requests.get(setting)
            text.append(f"{label:<10}", "dim")
            text.append(_value(setting, applied), "bold")
            if request is None:
                pass
            elif request.state == "refused":
                text.append(f"  ✗ {_value(setting, request.value)} refused", "red")
            elif request.state == "pending" or request.value != applied:
                text.append(f" → {_value(setting, request.value)}")
                text.append(" …", "yellow")
            else:
                text.append(" ✓", "green")
            text.append("\n")
        text.rstrip()
        self.query_one("#settings", Figure).set_text(text)
        self.query_one("#services", Figure).set_text(services_text(snapshot.services))


def services_text(services: tuple[ServiceHealth, ...]) -> Text:
    """One line per service: up or down, instances, and the age of the last heartbeat."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if not services:
        return text.append("no service heard from yet", "dim")
    by_name: dict[str, list[ServiceHealth]] = {}
    for health in services:
        by_name.setdefault(health.service, []).append(health)
    for i, (name, instances) in enumerate(sorted(by_name.items())):
        up = [h for h in instances if h.up]
        mark, style = ("●", "green") if up else ("○", "red")
        if i:
            text.append("\n")
        text.append(f"{mark} ", style)
        text.append(f"{name:<10}")
        if len(instances) > 1:
            text.append(f"{len(up)}/{len(instances)} ", "bold")
        text.append("up" if up else "down", style)
        youngest = min(h.age for h in instances)
        text.append(f" · {youngest:.0f}s ago", "dim")
    return text


def model_text(services: tuple[ServiceHealth, ...]) -> str:
    """The detectors' newest model: version, whether it came from a snapshot, age,
    and whether the rules still decide without it (it has not yet beaten them on the
    labels), or that it is still learning; nothing when no detector runs one."""
    models = [h.counters["model"] for h in services if h.up
              and isinstance(h.counters.get("model"), dict)]
    if not models:
        return ""
    newest = max(models, key=lambda m: m.get("version") or 0)
    if not newest.get("version"):
        return f"learning, {count(newest.get('examples') or 0)} labels"
    age = newest.get("age_s")
    return f"v{newest['version']}" + (" restored" if newest.get("restored") else "") + \
        ("" if age is None else f" · {age:.0f}s old") + \
        (" · rules decide" if newest.get("deciding") is False else "")


class ModelStatus(Figure):
    """The detectors' model, version and age, at the end of the event line."""

    def show(self, snapshot: Snapshot) -> None:
        model = model_text(snapshot.services)
        self.set_text(Text.assemble(("model ", "dim"), (model, "cyan")) if model else "")


class EventLine(Figure):
    """The newest thing that happened to a setting: applied, refused and why."""

    def show(self, snapshot: Snapshot) -> None:
        if snapshot.events:
            self.set_text(Text(snapshot.events[-1], no_wrap=True, overflow="ellipsis"))
        else:
            self.set_text(Text("settings changed with the keys below are confirmed here",
                             "dim", no_wrap=True, overflow="ellipsis"))


class FeedPane(Widget):
    """One feed pane, newest first, drawn to its width.

    Columns that do not fit are shortened from the right (reasons, then account
    names), so time and amount always show. Only the rows that fit are drawn.

    A person can select a row (``move``, ``home``); while one is selected the pane
    holds still and counts in its title what arrived since; ``follow`` lets go.
    """

    def __init__(self, kind: str) -> None:
        super().__init__(id=f"feed-{kind}", classes="feed")
        self.kind = kind
        self.rows: tuple[Row, ...] = ()
        self.selected: int | None = None
        self.top = 0  # the first row drawn, so that the selection stays in view
        self._held_at = 0  # the feed's count when the pane began to hold still
        self._count = 0
        self._scope = ""  # what the title says of the filter

    @property
    def name_shown(self) -> str:
        return "Legit" if self.kind == "legit" else "Fraud"

    def on_mount(self) -> None:
        self._title()

    def show(self, rows: tuple[Row, ...], count: int = 0, scope: str = "") -> None:
        """The newest ``rows``; ``count`` is the feed's running count (what "+N new" is
        measured by), ``scope`` what the title says of the filter."""
        self._count, self._scope = count, scope
        if self.selected is None and rows != self.rows:
            self.rows = rows
            self.refresh()
        self._title()

    def _title(self) -> None:
        title = self.name_shown + (f" · {self._scope}" if self._scope else "")
        if self.selected is not None:
            title += f" · +{max(0, self._count - self._held_at):,} new"
        self.border_title = title

    @property
    def selected_row(self) -> Row | None:
        return self.rows[self.selected] if self.selected is not None else None

    def move(self, delta: int) -> None:
        """Select the row ``delta`` below the selection (the newest, when none is)."""
        if not self.rows:
            return
        if self.selected is None:
            self._held_at = self._count
            self.selected = 0
        else:
            self.selected = max(0, min(len(self.rows) - 1, self.selected + delta))
        self._scroll()

    def home(self) -> None:
        self.move(-len(self.rows) if self.selected is not None else 0)

    def follow(self) -> None:
        """Let go of the selection: the pane follows the stream again."""
        if self.selected is not None:
            self.selected, self.top = None, 0
            self._title()
            self.refresh()

    def _scroll(self) -> None:
        visible = max(1, self.content_size.height - 1)
        assert self.selected is not None
        if self.selected < self.top:
            self.top = self.selected
        elif self.selected >= self.top + visible:
            self.top = self.selected - visible + 1
        self._title()
        self.refresh()

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        fixed = 8 + 1 + 10 + 1 + 3 + 2  # time, amount, currency and the gaps between
        accounts = max(9, min(27, width - fixed))
        side = (accounts - 3) // 2
        text = Text(no_wrap=True, overflow="crop")
        header = f"{'time':<8} {'amount':>10} {'':3}  {'source → target':<{accounts}}"
        if self.kind == "fraud":
            header += "  why"
        text.append(header[:width], "bold")
        amount_style = "red" if self.kind == "fraud" else ""
        top = self.top if self.selected is not None else 0
        for index in range(top, min(len(self.rows), top + max(0, height - 1))):
            row = self.rows[index]
            line = Text(no_wrap=True, overflow="crop")
            line.append(clock_time(row.ts), "dim")
            line.append(f" {money(row.amount):>10}", amount_style)
            line.append(f" {row.currency:<3}  ")
            pair = f"{_short(row.source, side)} → {_short(row.target, side)}"
            line.append(f"{pair:<{accounts}}")
            if self.kind == "fraud" and row.reasons:
                line.append(f"  {row.reasons}", "dim")
            if index == self.selected:
                line.pad_right(max(0, width - line.cell_len))
                line.stylize("reverse")
            text.append("\n")
            text.append_text(line)
        return text


def _short(account: str, width: int) -> str:
    return account if len(account) <= width else account[: max(1, width - 1)] + "…"
