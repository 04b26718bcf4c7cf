"""Writes the input JSON Schemas (generated from `detectors.contract`'s field
tables) into the repo's `contract/schemas/`. A test fails when the committed
files differ from a regeneration, so the docs cannot drift from the code."""

from __future__ import annotations

from pathlib import Path

import orjson

from detectors.contract import json_schema
from detectors.events import Topic

__all__ = ["render_schema", "schema_filename", "write_schemas"]


def schema_filename(topic: Topic) -> str:
    return f"{topic.value}.schema.json"


def render_schema(topic: Topic) -> bytes:
    return orjson.dumps(json_schema(topic), option=orjson.OPT_INDENT_2) + b"\n"


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for topic in Topic:
        path = directory / schema_filename(topic)
        path.write_bytes(render_schema(topic))
        written.append(path)
    return written
