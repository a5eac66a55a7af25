"""fraud-console: the Textual app. Layout and colour live in app.tcss."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import threading
from collections.abc import Callable

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Header, Static

from tui.curve import CurveScreen
from tui.detail import DetailScreen
from tui.feed import Feed
from tui.model import Snapshot
from tui.quality_panel import QualityPanel
from tui.record_filter import RecordFilter
from tui.screens import FilterScreen, HelpScreen, RulesScreen, TpsScreen
from tui.widgets import EventLine, FeedPane, KeyFooter, ModelStatus, Settings, Throughput

# A 1-2-5 ladder from 1 to 100,000 per second: each key press is a step a person notices.
TPS_STEPS = tuple(m * 10**e for e in range(6) for m in (1, 2, 5) if m * 10**e <= 100_000)
THRESHOLD_STEP = 50.0
DEFAULTS = {"tps": 100.0, "threshold": 900.0, "paused": False}
STOP_GRACE = 10.0  # seconds a stop by SIGTERM or SIGHUP may take before the process ends


def step_tps(current: float, up: bool) -> float:
    """The next rung of the ladder above (or below) ``current``."""
    if up:
        return next((s for s in TPS_STEPS if s > current * 1.0001), TPS_STEPS[-1])
    return next((s for s in reversed(TPS_STEPS) if s < current * 0.9999), TPS_STEPS[0])


def freeze_start_up() -> None:
    """What exists once the console is drawn (modules, the widget tree, Textual's
    caches) lives as long as the console: frozen, the collector's full passes, which
    hold up every thread, walk only what came since. Measured under bench.console at
    50,000/s, a full pass fell from about 50 to 10-25 ms of CPU."""
    gc.collect()
    gc.freeze()


class SnapshotReady(Message):
    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class FraudConsole(App[str | None]):
    """Watches the pipeline and steers it through the control topic.

    The app's result is a reason to show on exit (a child process that died), or None.
    """

    CSS_PATH = "app.tcss"
    ENABLE_COMMAND_PALETTE = False  # every action has its key; the footer needs the room
    TITLE = "fraud-console"
    # Below 120 columns the feeds stack, so each row shows whole (see app.tcss).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        Binding("plus,equals_sign", "tps(True)", "TPS+", key_display="+",
                tooltip="generator rate one step up (1, 2, 5, 10 … 100,000 per second)"),
        Binding("minus", "tps(False)", "TPS−", key_display="-",
                tooltip="generator rate one step down"),
        Binding("t", "type_tps", "TPS…", tooltip="type an exact generator rate"),
        Binding("right_square_bracket", "threshold(1)", "Thr+", key_display="]",
                tooltip=f"fraud threshold up by {THRESHOLD_STEP:g}"),
        Binding("left_square_bracket", "threshold(-1)", "Thr−", key_display="[",
                tooltip=f"fraud threshold down by {THRESHOLD_STEP:g}"),
        Binding("e", "rules", "Rules…",
                tooltip="change a detector rule setting (velocity, fan-in, anomaly)"),
        Binding("p,space", "pause", "Pause", key_display="p",
                tooltip="pause or resume the generator (also space)"),
        Binding("r", "reset", "Reset", tooltip="reset this console's counters and history"),
        Binding("s", "save_screenshot", "Screenshot", show=False,
                tooltip="save an SVG screenshot in the current folder"),
        Binding("question_mark", "help", "Help", key_display="?", tooltip="this help"),
        Binding("q", "quit", "Quit", tooltip="quit (stops what the console started)"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("tab", "feed(1)", "Feed", show=False, priority=True,
                tooltip="select the next feed: fraud, then legit"),
        Binding("shift+tab", "feed(-1)", "Feed", show=False, priority=True,
                tooltip="select the previous feed"),
        Binding("up,k", "row(-1)", "Row", show=False, key_display="↑ k",
                tooltip="select the row above; the pane holds still (+N new in its title)"),
        Binding("down,j", "row(1)", "Row", show=False, key_display="↓ j",
                tooltip="select the row below"),
        Binding("home", "first_row", "First", show=False, tooltip="select the newest row"),
        Binding("end", "follow", "Follow", show=False,
                tooltip="let go of the row: the pane follows the stream again"),
        Binding("enter", "detail", "Detail", key_display="⏎",
                tooltip="open the selected transaction: why, and its account's recent ones"),
        Binding("slash", "filter", "Filter", key_display="/",
                tooltip="filter both feeds: account id (or part), rule name, amount>N"),
        Binding("escape", "clear", "Clear", show=False,
                tooltip="clear the filter (or let go of the row)"),
        Binding("c", "curve", "Curve",
                tooltip="precision and recall against the threshold and the model cutoff"),
    ]

    def __init__(
        self,
        feed: Feed,
        subtitle: str = "",
        watch: Callable[[], str | None] | None = None,
        freeze_start_up: bool = False,
    ) -> None:
        super().__init__()
        self.freeze_start_up = freeze_start_up
        self.feed = feed
        self.sub_title = subtitle
        self.stop_reason = watch  # says why the console must stop (a child died), or None
        self.last: Snapshot | None = None
        self._stop = threading.Event()
        self.active: str | None = None  # the feed pane the row keys move in

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static("", id="banner")
        with Horizontal(id="top"):
            yield Throughput(id="throughput")
            yield Settings(id="controls")
            yield QualityPanel("quality-top")  # wide terminals (see app.tcss)
        with Horizontal(id="event-row"):
            yield EventLine(id="event")
            yield ModelStatus(id="model-status")
        with Horizontal(id="lower"):
            with Horizontal(id="feeds"):
                yield FeedPane("legit")
                yield FeedPane("fraud")
            yield QualityPanel("quality-side")  # narrow terminals
        yield KeyFooter()

    def on_mount(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGHUP):
            # Stop like a quit, so the launcher's cleanup runs.
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, self._stop_on_signal)
        self.show(self.feed.snapshot())
        self.consume()
        if self.freeze_start_up:
            self.call_after_refresh(freeze_start_up)
        if self.stop_reason is not None:
            self.set_interval(0.5, self._check_children)

    def _stop_on_signal(self) -> None:
        self.exit()
        # Should the shutdown hang (once, after its terminal was closed, Textual's output
        # thread was left waiting for ever, and the console with it, its children
        # running), the process ends anyway; its children die with it (children.py).
        watchdog = threading.Timer(STOP_GRACE, os._exit, args=(1,))
        watchdog.daemon = True
        watchdog.start()

    def on_unmount(self) -> None:
        self._stop.set()

    @work(thread=True, exclusive=True, name="feed")
    def consume(self) -> None:
        """The feed's blocking Kafka loop, off the event loop; snapshots come back as
        messages (post_message is thread-safe)."""
        self.feed.run(lambda snapshot: self.post_message(SnapshotReady(snapshot)), self._stop)

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        # One that comes while the console closes finds its screen gone: nothing to draw.
        if not self.is_running:
            return
        # A snapshot the worker took before a key press may arrive after it: skip it.
        if self.last is None or message.snapshot.now >= self.last.now:
            self.show(message.snapshot)

    def _check_children(self) -> None:
        assert self.stop_reason is not None
        reason = self.stop_reason()
        if reason:
            self.exit(reason)

    # -- drawing ----------------------------------------------------------------

    def show(self, snapshot: Snapshot) -> None:
        self.show_settings(snapshot)
        banner = self.query_one("#banner", Static)
        if snapshot.connected:
            banner.display = False
        else:
            since = snapshot.outage_since or snapshot.now
            banner.update(
                f"Broker {snapshot.bootstrap or ''} unreachable for {snapshot.now - since:.0f} s"
                " — retrying")
            banner.display = True
        self.query_one(Throughput).show(snapshot)
        self.query_one(ModelStatus).show(snapshot)
        scope = ""
        for pane in self.query(FeedPane):
            kind = pane.kind
            if snapshot.filter is not None:
                scope = (f"{snapshot.filter.text} · {snapshot.matched.get(kind, 0):,} of "
                         f"{snapshot.arrived.get(kind, 0):,}")
                count = snapshot.matched.get(kind, 0)
            else:
                count = snapshot.totals.get(kind, 0)
            pane.show(snapshot.legit_rows if kind == "legit" else snapshot.fraud_rows,
                      count, scope)
        for panel in self.query(QualityPanel):
            panel.show(snapshot)
        screen = self.screen
        if isinstance(screen, CurveScreen | DetailScreen):
            screen.show_snapshot(snapshot)

    def show_settings(self, snapshot: Snapshot) -> None:
        """Only what a setting's key changes: the settings and the event line. A key
        press draws these at once; the feeds and figures follow with the next snapshot
        (a quarter of a second at most), so a key stays quick at any rate."""
        self.last = snapshot
        self.query_one(Settings).show(snapshot)
        self.query_one(EventLine).show(snapshot)

    def _current(self, setting: str) -> float | bool:
        """What a step starts from: the pending request, else the value in force."""
        snapshot = self.feed.snapshot()  # fresh: the last one shown may predate a press
        request = snapshot.requests.get(setting)
        if request is not None and request.state == "pending":
            return request.value
        applied = snapshot.applied(setting)
        return DEFAULTS[setting] if applied is None else applied

    def _send(self, setting: str, value: float | bool) -> None:
        self.feed.send(setting, value)
        self.show_settings(self.feed.snapshot())  # on screen now, not at the next snapshot

    # -- actions ----------------------------------------------------------------

    def action_tps(self, up: bool) -> None:
        self._send("tps", float(step_tps(float(self._current("tps")), up)))

    def action_type_tps(self) -> None:
        def sent(value: float | None) -> None:
            if value is not None:
                self._send("tps", value)

        self.push_screen(TpsScreen(), sent)

    def action_threshold(self, direction: int) -> None:
        current = float(self._current("threshold"))
        self._send("threshold", max(THRESHOLD_STEP, current + direction * THRESHOLD_STEP))

    def action_rules(self) -> None:
        def sent(choice: tuple[str, float] | None) -> None:
            if choice is not None:
                self._send(*choice)

        self.push_screen(RulesScreen(self.feed.snapshot().applied), sent)

    def action_pause(self) -> None:
        self._send("paused", not bool(self._current("paused")))

    def action_reset(self) -> None:
        self.feed.reset()
        self.show(self.feed.snapshot())

    # -- the feeds: select, drill down, filter, tune ----------------------------------

    NAVIGATION = ("feed", "row", "first_row", "follow", "detail", "filter", "clear", "curve")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # The feed keys work on the main screen only: a dialog keeps its own.
        return not (action in self.NAVIGATION and len(self.screen_stack) > 1)

    def _pane(self, kind: str | None = None) -> FeedPane:
        return self.query_one(f"#feed-{kind or self.active or 'fraud'}", FeedPane)

    def _activate(self, kind: str | None) -> None:
        if self.active is not None and self.active != kind:
            self._pane().follow()  # leaving a pane lets go of its row
        self.active = kind
        for pane in self.query(FeedPane):
            pane.set_class(pane.kind == kind, "-active")

    def action_feed(self, step: int) -> None:
        order = ("fraud", "legit")
        at = order.index(self.active) if self.active in order else -1 if step > 0 else 0
        self._activate(order[(at + step) % len(order)])

    def action_row(self, delta: int) -> None:
        if self.active is None:
            self._activate("fraud")
        self._pane().move(delta)

    def action_first_row(self) -> None:
        if self.active is None:
            self._activate("fraud")
        self._pane().home()

    def action_follow(self) -> None:
        self._pane().follow()

    def action_detail(self) -> None:
        row = self._pane().selected_row if self.active is not None else None
        if row is None:
            self.notify("select a row first (↑/↓ or j/k; Tab changes the feed)",
                        title="Detail", timeout=3)
            return
        self.push_screen(DetailScreen(row, self.feed.history, self.feed.label, self.last))

    def action_filter(self) -> None:
        def chosen(record_filter: RecordFilter | None) -> None:
            if record_filter is not None:
                self._set_filter(record_filter)

        self.push_screen(FilterScreen(self.feed.snapshot().filter), chosen)

    def _set_filter(self, record_filter: RecordFilter | None) -> None:
        self.feed.set_filter(record_filter)
        for pane in self.query(FeedPane):
            pane.follow()  # the rows it held are the other filter's
        self.show(self.feed.snapshot())

    def action_clear(self) -> None:
        if self.feed.snapshot().filter is not None:
            self._set_filter(None)
        elif self.active is not None:
            self._pane().follow()
            self._activate(None)

    def action_curve(self) -> None:
        self.push_screen(CurveScreen(self.feed.snapshot(), self._send))

    def action_help(self) -> None:
        shown = [b for b in self.BINDINGS if isinstance(b, Binding) and b.tooltip]
        self.push_screen(HelpScreen(shown))

    def action_save_screenshot(self) -> None:
        path = self.save_screenshot(path=os.getcwd())
        self.notify(f"saved {path}", title="Screenshot")
