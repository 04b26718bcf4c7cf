"""The checks a `ruleset` control record's payload must pass before any
worker runs it (detectors.control reads the record, this judges its file):
a bounded text, a well-formed version, a rule file `rules check` accepts,
and a version that is that file's digest (detectors.ruleset_digest)."""

from __future__ import annotations

import re
from typing import Any

from detectors.rulebook import Rulebook, RulebookError, parse_rulebook

__all__ = ["MAX_RULESET_BYTES", "checked_rulebook"]

# The shipped rule file (30 rules, commented) is 23 KiB. JSON escaping at
# most doubles the text (YAML allows no control character but tab, CR and
# LF, each escaped in two bytes, as are quotes and backslashes), so a record
# stays under 520 KiB: below Kafka's default max.message.bytes (1 MiB) on
# both control topics (created without an override), the CLI producer's
# max_request_size (4 MiB) and the follower's per-partition fetch (1 MiB).
MAX_RULESET_BYTES = 256 * 1024
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def checked_rulebook(text: Any, version: Any) -> Rulebook:
    """The rule book of `text`, or ValueError saying which check failed.
    Both checks matter: a record altered on the way, or built by hand with
    a stale version, fails the digest; one from a newer tool using rules
    this worker does not know fails the parse."""
    size = len(text.encode("utf-8", "surrogatepass")) if isinstance(text, str) else 0
    if not 0 < size <= MAX_RULESET_BYTES:
        raise ValueError(
            f"rules_yaml: the rule file's text expected (1 to {MAX_RULESET_BYTES} bytes)"
        )
    if not isinstance(version, str) or not _SHA256_HEX.fullmatch(version):
        raise ValueError("ruleset_version: a SHA-256 in 64 lowercase hex digits expected")
    try:
        rulebook = parse_rulebook(text, "rules_yaml")
    except RulebookError as exc:
        raise ValueError(f"not a valid rule file: {exc}") from None
    if rulebook.digest != version:
        raise ValueError(
            f"ruleset_version {version} is not the digest of rules_yaml ({rulebook.digest})"
        )
    return rulebook
