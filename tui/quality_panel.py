"""The quality panel: how good the detector is, as the evaluator last said.

It shows precision, recall and F1 over the evaluator's window, the recall of each
fraud scenario and the precision and recall of each rule, laid out for the room it
has: two columns in the top row of a wide terminal, one column beside the feeds of a
narrow one. Without an evaluator or without labels it says so, and the rest of the
console works as before.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from services.evaluator.report import Quality
from tui.model import DOWN_AFTER, Snapshot

# Short names, so that a narrow column keeps the figures whole.
SCENARIO_NAMES = {"card_testing": "card testing", "velocity_burst": "velocity burst",
                  "account_takeover": "takeover", "mule_fan_in": "mule fan-in",
                  "large_amount": "large amount"}
RULE_NAMES = {"amount_threshold": "threshold", "amount_anomaly": "anomaly",
              "fan_in": "fan-in"}
TWO_COLUMNS = 50  # content width from which scenarios and rules sit side by side


def figure(value: float | None) -> Text:
    """0.93 in a colour that says good (>= 0.9), so-so (>= 0.7) or poor; a dash for unknown."""
    if value is None:
        return Text("   –", "dim")
    style = "green" if value >= 0.9 else "yellow" if value >= 0.7 else "red"
    return Text(f"{value:4.2f}", f"bold {style}")


def _fit(name: str, width: int) -> str:
    return f"{name:<{width}}" if len(name) <= width else name[: width - 1] + "…"


def _entry(name: str, value: float | None, tail: str, width: int) -> Text:
    """``name ... 0.93 tail`` in ``width`` cells: the name gives way, never the figure."""
    text = Text(_fit(name, max(1, width - 5 - len(tail))) + " ")
    text.append_text(figure(value))
    text.append(tail, "dim")
    return text


def _display(names: dict[str, str], name: str) -> str:
    return names.get(name, name.replace("_", " "))


class QualityPanel(Widget):
    def __init__(self, panel_id: str) -> None:
        super().__init__(id=panel_id, classes="quality")
        self.quality: Quality | None = None

    def on_mount(self) -> None:
        self.border_title = "Quality"

    def show(self, snapshot: Snapshot) -> None:
        quality = snapshot.quality
        subtitle = _subtitle(quality, snapshot.quality_age)
        if quality == self.quality and subtitle == self.border_subtitle:
            return
        self.quality = quality
        self.border_title = (f"Quality · last {quality.window_seconds} s"
                             if quality is not None and quality.joined else "Quality")
        self.border_subtitle = subtitle
        self.refresh()

    def render(self) -> Text:
        quality = self.quality
        if quality is None or not quality.joined:
            return no_labels(quality)
        width, height = self.content_size.width, self.content_size.height
        if width >= TWO_COLUMNS:
            return two_columns(quality, width, height)
        return one_column(quality, width, height)


def _subtitle(quality: Quality | None, age: float | None) -> str:
    if quality is None:
        return ""
    if age is not None and age > DOWN_AFTER:
        return f"evaluator silent {age:.0f} s"
    return f"{quality.joined:,} joined" if quality.joined else ""


def no_labels(quality: Quality | None) -> Text:
    text = Text()
    text.append("no labels\n\n", "bold")
    if quality is None:
        why = ("no evaluator heard from: quality needs fraud-evaluator and labelled "
               "traffic (fraud-generator --profile scenarios)")
    else:
        waiting = quality.totals.get("pending_verdicts", 0) + quality.totals.get(
            "unmatched_verdicts", 0)
        why = (f"{waiting:,} verdicts and no label to judge them by: the generator's "
               "profile has no ground truth (--profile scenarios has)")
    text.append(why, "dim")
    return text


def headline(quality: Quality, compact: bool) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    for i, (name, short, value) in enumerate((("precision", "P", quality.precision),
                                              ("recall", "R", quality.recall),
                                              ("F1", "F1", quality.f1))):
        text.append(("  " if i else "") + (short if compact else name) + " ", "dim")
        text.append_text(figure(value))
    return text


# The counts after a scenario's figure in the wide layout (caught/frauds), and what
# follows a rule's precision (its recall).
SCENARIO_TAIL, RULE_TAIL = 10, 7


def _scenarios(quality: Quality, width: int, counts: bool) -> list[Text]:
    return [_entry(_display(SCENARIO_NAMES, s.name), s.recall,
                   f" {s.caught:>4}/{s.frauds:<4}" if counts else "", width)
            for s in quality.scenarios]


def _rules(quality: Quality, width: int) -> list[Text]:
    """``name ... precision recall``: how often a rule is right when it fires, and
    how many of the window's frauds it fires on."""
    rows = []
    for rule in quality.rules:
        row = _entry(_display(RULE_NAMES, rule.name), rule.precision, "",
                     width - RULE_TAIL)
        row.append(" " * (RULE_TAIL - 4))  # the recall ends under its heading
        row.append_text(figure(rule.recall))
        rows.append(row)
    return rows


def two_columns(quality: Quality, width: int, height: int) -> Text:
    """Wide: the headline, then scenarios' recall beside rules' precision and recall."""
    left = min(31, (width - 3) * 3 // 5)
    right = width - 3 - left
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append_text(headline(quality, compact=False))
    # Each heading ends where its figure ends: a figure is 4 cells after a name and a space.
    name_left, name_right = left - 5 - SCENARIO_TAIL, right - 5 - RULE_TAIL
    text.append("\n" + f"{'scenario':<{name_left - 1}}recall caught".ljust(left)[:left], "dim")
    text.append(" │ ", "dim")
    text.append(f"{'rule':<{name_right - 4}}precision recall"[:right], "dim")
    scenarios = _scenarios(quality, left, counts=True)
    rules = _rules(quality, right)
    for row in range(min(max(len(scenarios), len(rules)), max(0, height - 2))):
        text.append("\n")
        text.append_text(scenarios[row] if row < len(scenarios) else Text(" " * left))
        text.append(" │ ", "dim")
        if row < len(rules):
            text.append_text(rules[row])
    return text


def one_column(quality: Quality, width: int, height: int) -> Text:
    """Narrow: the headline, recall by scenario, precision and recall by rule, as many
    as fit."""
    lines = [headline(quality, compact=True), Text("recall by scenario", "dim"),
             *_scenarios(quality, width, counts=False)]
    if quality.rules:
        lines += [Text("by rule: P and R", "dim"), *_rules(quality, width)]
    text = Text(no_wrap=True, overflow="ellipsis")
    for i, line in enumerate(lines[:height]):
        if i:
            text.append("\n")
        text.append_text(line)
    return text
