"""The README stays a page for users, and the documentation's links lead
somewhere: long material lives in docs/, and a moved file must not leave a
dead link behind."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "deploy" / "RUNBOOK.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def relative_targets(page: Path) -> list[str]:
    return [
        t
        for t in LINK.findall(page.read_text())
        if not t.startswith(("http://", "https://", "mailto:", "#"))
    ]


def dead_links(page: Path) -> list[str]:
    return [t for t in relative_targets(page) if not (page.parent / t.split("#")[0]).exists()]


def test_the_readme_is_short() -> None:
    lines = len((REPO / "README.md").read_text().splitlines())
    assert lines <= 250, f"README.md has {lines} lines; move long material to docs/"


def test_every_relative_link_resolves() -> None:
    dead = {page.name: d for page in PAGES if (d := dead_links(page))}
    assert not dead, dead


def test_a_dead_link_is_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("x")
    page.write_text("[ok](there.md#a) [web](https://example.org) [gone](missing.md)")
    assert dead_links(page) == ["missing.md"]
