"""The tuning curve: precision and recall over the evaluator's window, were the amount
threshold or the model's cutoff set elsewhere, with a cursor to pick a setting and
send it.

The chart is textual-plot's ``PlotWidget`` (braille lines, axes with ticks, a legend,
vertical markers), fed from the binned counts of the evaluator's quality message
(``services.evaluator.report.CurveFigures``). The x axis is the bins' edges in order,
labelled with their values, so the fine steps around the usual thresholds get the
room they need.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Static
from textual_plot import AxisFormatter, HiResMode, LegendLocation, PlotWidget

from services.evaluator.report import CurveFigures
from tui.model import Snapshot, shown
from tui.quality_panel import figure
from tui.widgets import WIDE_ONLY_ON_TOP, KeyFooter

# What each curve sweeps: the setting it sends and how a person names it.
AXES = {"amount": ("threshold", "amount threshold"), "score": ("model_cutoff", "model cutoff")}
DEFAULT_IN_FORCE = {"threshold": 900.0, "model_cutoff": 0.2}
ROUND_AMOUNTS = (0.0, 100.0, 500.0, 1_000.0, 2_000.0, 5_000.0, 20_000.0)


class EdgeLabels(AxisFormatter):
    """Ticks at a few round values among the edges, labelled with the values."""

    def __init__(self, edges: Sequence[float], score: bool) -> None:
        self.edges = edges
        self.score = score

    def get_ticks(self, min_: float, max_: float, max_ticks: int = 8) -> list[float]:
        if self.score:
            wanted = [i for i, e in enumerate(self.edges) if round(e * 100) % 20 == 0]
        else:
            wanted = [i for i, e in enumerate(self.edges) if e in ROUND_AMOUNTS]
        return [float(i) for i in wanted if min_ <= i <= max_][:max_ticks]

    def get_labels_for_ticks(self, ticks: Sequence[float]) -> list[str]:
        return [self._label(self.edges[int(t)]) for t in ticks]

    def _label(self, edge: float) -> str:
        if self.score:
            return f"{edge:.1f}"
        return f"{edge / 1000:g}k" if edge >= 1000 else f"{edge:g}"


class CurveScreen(Screen[None]):
    """``←``/``→`` move the cursor, Tab switches between the two curves, Enter sends
    the setting under the cursor (the answer shows under the chart), Escape closes."""

    BINDINGS = [
        Binding("escape,c", "app.pop_screen", "Back", tooltip="close the tuning curve"),
        Binding("left,h", "cursor(-1)", "Cursor", key_display="←→",
                tooltip="move the cursor one setting down"),
        Binding("right,l", "cursor(1)", "Cursor", show=False,
                tooltip="move the cursor one setting up"),
        Binding("tab", "switch", "Amount/score", priority=True,
                tooltip="switch between the threshold and the model cutoff"),
        Binding("enter", "send", "Send", tooltip="send the setting under the cursor"),
    ]

    def __init__(self, snapshot: Snapshot | None, send: Callable[[str, float], None]) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.send = send
        self.axis = "amount"
        self.cursor: dict[str, int | None] = {"amount": None, "score": None}
        self._drawn: tuple[object, ...] = ()

    def compose(self) -> ComposeResult:
        plot = PlotWidget(id="curve-plot", allow_pan_and_zoom=False)
        plot.can_focus = False  # the arrows move the cursor, not the plot's own view
        with Vertical(id="curve"):
            yield plot
            yield Static(id="curve-figures")
        yield KeyFooter(WIDE_ONLY_ON_TOP)

    def on_mount(self) -> None:
        self.query_one(PlotWidget).show_legend(LegendLocation.TOPRIGHT)
        self._draw()

    # -- what is drawn -------------------------------------------------------------

    def _curve(self) -> CurveFigures | None:
        quality = self.snapshot.quality if self.snapshot is not None else None
        return quality.curves.get(self.axis) if quality is not None else None

    def _in_force(self) -> float:
        setting = AXES[self.axis][0]
        value = self.snapshot.applied(setting) if self.snapshot is not None else None
        return float(value) if value is not None else DEFAULT_IN_FORCE[setting]

    def _cursor(self, curve: CurveFigures) -> int:
        at = self.cursor[self.axis]
        if at is None:
            at = curve.index_of(self._in_force())
        return max(0, min(len(curve.edges) - 1, at))

    def _draw(self) -> None:
        plot = self.query_one(PlotWidget)
        curve = self._curve()
        setting, name = AXES[self.axis]
        container = self.query_one("#curve")
        container.border_title = f"Tuning curve · {name}"
        quality = self.snapshot.quality if self.snapshot is not None else None
        container.border_subtitle = (f"last {quality.window_seconds} s · "
                                     f"{quality.joined:,} labelled" if quality else "")
        figures = self.query_one("#curve-figures", Static)
        if curve is None or curve.frauds == 0:
            plot.clear()
            figures.update(Text(
                "no curve yet: it needs fraud-evaluator and labelled traffic "
                "(fraud-generator --profile scenarios), with a fraud in its window",
                "dim"))
            self._drawn = ()
            return
        at, in_force = self._cursor(curve), curve.index_of(self._in_force())
        state = (self.axis, curve, at, in_force)
        if state != self._drawn:
            self._drawn = state
            self._plot(plot, curve, at, in_force)
        figures.update(self._figures(curve, at, in_force, setting))

    def _plot(self, plot: PlotWidget, curve: CurveFigures, at: int, in_force: int) -> None:
        plot.clear()
        xs = list(range(len(curve.edges)))
        precision = [curve.precision_at(i) for i in xs]
        recall = [curve.recall_at(i) for i in xs]
        plot.set_x_formatter(EdgeLabels(curve.edges, score=self.axis == "score"))
        plot.set_xlimits(0, len(xs) - 1)
        plot.set_ylimits(0, 1.05)
        plot.set_xlabel(AXES[self.axis][1])
        plot.add_v_line(in_force, "dim white", "in force")
        plot.add_v_line(at, "bold yellow", "cursor")
        # A bin with nothing flagged has no precision: its point is left out.
        plot.plot([x for x, p in zip(xs, precision, strict=True) if p is not None],
                  [p for p in precision if p is not None], line_style="bold green",
                  hires_mode=HiResMode.BRAILLE, label="precision")
        plot.plot(xs, [r or 0.0 for r in recall], line_style="bold magenta",
                  hires_mode=HiResMode.BRAILLE, label="recall")

    def _figures(self, curve: CurveFigures, at: int, in_force: int, setting: str) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        for label, index, style in (("cursor", at, "bold yellow"),
                                    ("in force", in_force, "dim")):
            if label == "in force":
                text.append("   ")
            text.append(f"{label} ", style)
            text.append(f"{setting} {shown(curve.edges[index])}", "bold")
            text.append("  P ", "dim")
            text.append_text(figure(curve.precision_at(index)))
            text.append(" R ", "dim")
            text.append_text(figure(curve.recall_at(index)))
        request = self.snapshot.requests.get(setting) if self.snapshot is not None else None
        if request is not None:
            text.append("\n")
            mark = {"pending": ("…", "yellow"), "applied": ("✓ applied", "green"),
                    "refused": (f"✗ refused: {request.reason}", "red")}[request.state]
            text.append(f"sent {setting} = {shown(request.value)} ")
            text.append(*mark)
        else:
            text.append("\n")
            text.append("←/→ move the cursor · Enter sends it · Tab: the other curve", "dim")
        return text

    # -- from the app and the keys ---------------------------------------------------

    def show_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._draw()

    def action_cursor(self, step: int) -> None:
        curve = self._curve()
        if curve is not None:
            self.cursor[self.axis] = max(0, min(len(curve.edges) - 1,
                                                self._cursor(curve) + step))
            self._draw()

    def action_switch(self) -> None:
        self.axis = "score" if self.axis == "amount" else "amount"
        self._draw()

    def action_send(self) -> None:
        curve = self._curve()
        if curve is None:
            return
        value = curve.edges[self._cursor(curve)]
        # Both settings start at 0.01: the lowest edge, 0, sends that.
        self.send(AXES[self.axis][0], max(0.01, float(value)))
