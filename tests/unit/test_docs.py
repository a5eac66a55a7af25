"""The README and docs/ as a reader meets them: links that lead somewhere, keys that
work, and the test command CI really runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from textual.binding import Binding
from textual.keys import key_to_character

from tui.app import FraudConsole

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"`[^`]*`")


def prose_lines(path: Path) -> list[str]:
    """The file's lines outside fenced code blocks, where links and headings count."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to
    hyphens."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose_lines(path):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(path: Path) -> list[str]:
    links = []
    for line in prose_lines(path):
        for target in LINK.findall(CODE_SPAN.sub("", line)):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, mailto: ...
                links.append(target)
    return links


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        destination = (page.parent / file_part).resolve() if file_part else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading #{anchor} in {destination.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_the_readme_links_every_page_of_the_docs() -> None:
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in relative_links(README)}
    assert PAGES, "docs/ has no pages"
    assert [p.name for p in PAGES if p.resolve() not in linked] == []


def test_every_page_of_the_docs_opens_with_a_title_and_what_it_covers() -> None:
    for page in PAGES:
        lines = [line for line in prose_lines(page) if line.strip()]
        assert lines[0].startswith("# "), f"{page.name} has no title first"
        assert not lines[1].startswith(("#", "|", "-", "!")), \
            f"{page.name}: a paragraph saying what it covers comes first"


def readme_keys() -> list[str]:
    """The keys of the README's key table, as written in its first column."""
    lines = prose_lines(README)
    start = next(i for i, line in enumerate(lines)
                 if re.match(r"^\|\s*key\s*\|\s*does\s*\|", line))
    keys = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        first_cell = line.split("|")[1]
        keys.extend(re.findall(r"`([^`]+)`", first_cell))
    return keys


def bound_keys() -> set[str]:
    """Every way the console's bindings name a key: the key itself, how it is shown,
    and the character it types."""
    names: set[str] = set()
    for binding in FraudConsole.BINDINGS:
        if isinstance(binding, Binding):
            keys, display = binding.key, binding.key_display
        else:
            keys, display = binding[0], None
        for key in keys.split(","):
            key = key.strip()
            names.add(key)
            character = key_to_character(key)
            if character is not None:
                names.add(character)
        if display:
            names.add(display)
    return names


def test_every_key_the_readme_names_is_bound_in_the_console() -> None:
    named = readme_keys()
    assert len(named) >= 5, f"the README's key table names too few keys: {named}"
    unbound = [key for key in named if key not in bound_keys()]
    assert unbound == [], f"the README names keys the console does not bind: {unbound}"


def test_ci_runs_the_readme_test_command_as_written() -> None:
    text = README.read_text(encoding="utf-8")
    command = re.search(r"Test it:\s*```sh\n(.+?)\n```", text, re.S)
    assert command is not None, "the README shows no test command"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert any(line.startswith(command.group(1)) for line in ci), \
        f"CI does not run the README's test command: {command.group(1)}"


def test_the_readme_stays_a_landing_page() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 200
