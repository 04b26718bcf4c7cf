"""The documented settings table agrees with the settings object: every
variable is documented, and nothing documented is not a variable.

The table is found wherever it lives (README.md or docs/): the rows whose
first cell names `FRAUD_*` variables. A cell may abbreviate siblings
(`FRAUD_KAFKA_SSL_CAFILE` / `_CERTFILE`) and the topic family
(`FRAUD_TOPIC_<NAME>`, its names listed in the row)."""

from __future__ import annotations

import re
from pathlib import Path

from console.settings import CONSOLE_ENV_NAMES
from stream.settings import ENV_NAMES as WORKER_ENV_NAMES

REPO = Path(__file__).resolve().parents[2]
ENV_NAMES = WORKER_ENV_NAMES | CONSOLE_ENV_NAMES
CODE = re.compile(r"`([^`]+)`")


def table_rows() -> list[list[str]]:
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("**/*.md"))]
    rows = []
    for page in pages:
        if not page.exists():
            continue
        for line in page.read_text(encoding="utf-8").splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("|") and cells[0].startswith("`FRAUD_"):
                rows.append(cells)
    return rows


def documented(cells: list[str]) -> set[str]:
    """The variables a table row documents."""
    names: set[str] = set()
    last = ""
    for token in CODE.findall(cells[0]):
        if token.endswith("<NAME>"):
            stem = token.removesuffix("<NAME>")
            names |= {stem + n for n in CODE.findall(" ".join(cells[1:])) if n.isupper()}
        elif token.startswith("FRAUD_"):
            names.add(last := token)
        elif token.startswith("_") and last:
            names.add(last.rsplit("_", 1)[0] + token)
    return names


def test_the_settings_table_documents_every_variable_and_no_other() -> None:
    rows = table_rows()
    assert rows, "no settings table found in README.md or docs/"
    names = set().union(*(documented(r) for r in rows))
    assert names - ENV_NAMES == set(), "documented, but not a setting"
    assert ENV_NAMES - names == set(), "a setting nobody documented"


def test_abbreviated_cells_expand_to_their_variables() -> None:
    row = ["`FRAUD_KAFKA_SSL_CAFILE` / `_CERTFILE` / `_KEYFILE`", "", "CA bundle"]
    assert documented(row) == {
        "FRAUD_KAFKA_SSL_CAFILE",
        "FRAUD_KAFKA_SSL_CERTFILE",
        "FRAUD_KAFKA_SSL_KEYFILE",
    }
    topics = ["`FRAUD_TOPIC_<NAME>`", "see contract", "`ORDERS`, `DLQ`"]
    assert documented(topics) == {"FRAUD_TOPIC_ORDERS", "FRAUD_TOPIC_DLQ"}
