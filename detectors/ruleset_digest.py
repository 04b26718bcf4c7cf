"""`ruleset_version`: the SHA-256 of a rule file's canonical document.

Every decision names the rule set it was judged under, and a `ruleset`
control record names the file it carries, by this digest. It is computed
over the *parsed* document, not the text, so what does not change a rule
(comments, indentation, key order, quoting style, flow or block style)
does not change the version either.

Canonical form: the YAML document as parsed by a YAML 1.1 safe loader,
dumped as JSON with keys sorted, no whitespace between tokens, non-ASCII
characters as themselves, encoded as UTF-8 (in Python:
`json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
allow_nan=False).encode()`); the version is the lowercase hex SHA-256 of
those bytes. A document that has no JSON form (a key that is not a string,
a date, binary data, NaN or infinity) has no canonical form and is refused
with the path of the offending value: two such documents could not be told
apart or compared by another implementation.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

__all__ = ["VERSION_LENGTH", "CanonicalFormError", "canonical_document", "ruleset_digest"]

VERSION_LENGTH = 64  # hex digits of a SHA-256


class CanonicalFormError(ValueError):
    """A parsed document with a value JSON cannot represent; `path` says where."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path or "<top>"
        self.message = message
        super().__init__(f"{self.path}: {message}")


def _check(value: Any, path: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalFormError(path, f"key {key!r} is not a string (quote it)")
            _check(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise CanonicalFormError(path, f"{value} has no JSON form")
    elif value is not None and not isinstance(value, str | int | float):
        kind = type(value).__name__
        raise CanonicalFormError(path, f"a {kind} value has no JSON form (quote it)")


def canonical_document(doc: Any) -> bytes:
    """The canonical bytes of a parsed document (CanonicalFormError if it has none)."""
    _check(doc, "")
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def ruleset_digest(doc: Any) -> str:
    """The `ruleset_version` of a parsed rule file."""
    return hashlib.sha256(canonical_document(doc)).hexdigest()
