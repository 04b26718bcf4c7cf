"""`fraudstream score --verdicts`: analysts' verdicts as labels. Per rule, how
many of its alerts were judged and how: its precision on real traffic is
true positives over true and false positives (an `unsure` is neither).

The latest verdict on an alert stands (an analyst may change their mind):
by `decided_at`, and for equal times the later record. A line that is no
verdict is reported with its line number and left out; the rest are
scored.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detectors.errors import ContractViolation
from detectors.verdicts import Verdict, VerdictKind, parse_verdict

__all__ = [
    "VerdictScore",
    "format_verdict_scores",
    "latest_verdicts",
    "read_verdict_file",
    "read_verdict_lines",
    "verdict_scores",
    "verdict_scores_json",
]


@dataclass(frozen=True, slots=True)
class VerdictScore:
    rule_id: str
    true_positive: int
    false_positive: int
    unsure: int

    @property
    def judged(self) -> int:
        return self.true_positive + self.false_positive + self.unsure

    @property
    def precision(self) -> float | None:
        """None until a verdict other than unsure exists."""
        decided = self.true_positive + self.false_positive
        return self.true_positive / decided if decided else None


def read_verdict_lines(lines: Iterable[bytes]) -> tuple[list[Verdict], list[str]]:
    """The verdicts among JSON lines, and a message per line that is none."""
    verdicts: list[Verdict] = []
    errors: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            verdicts.append(parse_verdict(line))
        except ContractViolation as exc:
            errors.append(f"line {number}: {exc.kind}: {exc}")
    return verdicts, errors


def read_verdict_file(path: Path) -> tuple[list[Verdict], list[str]]:
    with path.open("rb") as fh:
        return read_verdict_lines(fh)


def latest_verdicts(verdicts: Sequence[Verdict]) -> list[Verdict]:
    """The verdict that stands on each alert."""
    standing: dict[str, Verdict] = {}
    for v in verdicts:
        held = standing.get(v.alert_id)
        if held is None or v.decided_at_ms >= held.decided_at_ms:
            standing[v.alert_id] = v
    return list(standing.values())


def verdict_scores(verdicts: Sequence[Verdict]) -> list[VerdictScore]:
    counts: dict[str, dict[VerdictKind, int]] = defaultdict(lambda: defaultdict(int))
    for v in latest_verdicts(verdicts):
        counts[v.rule_id][v.verdict] += 1
    return [
        VerdictScore(
            rule,
            c[VerdictKind.TRUE_POSITIVE],
            c[VerdictKind.FALSE_POSITIVE],
            c[VerdictKind.UNSURE],
        )
        for rule, c in sorted(counts.items())
    ]


def format_verdict_scores(rows: Sequence[VerdictScore], errors: Sequence[str] = ()) -> str:
    lines = [f"{'rule':<44} {'judged':>6} {'true':>5} {'false':>5} {'unsure':>6} {'precision':>9}"]
    for r in rows:
        precision = "-" if r.precision is None else f"{r.precision:.3f}"
        lines.append(
            f"{r.rule_id:<44} {r.judged:>6} {r.true_positive:>5} {r.false_positive:>5} "
            f"{r.unsure:>6} {precision:>9}"
        )
    if not rows:
        lines.append("(no verdicts)")
    lines += [f"skipped {e}" for e in errors]
    return "\n".join(lines)


def verdict_scores_json(rows: Sequence[VerdictScore]) -> dict[str, dict[str, Any]]:
    return {
        r.rule_id: {
            "judged": r.judged,
            "true_positive": r.true_positive,
            "false_positive": r.false_positive,
            "unsure": r.unsure,
            "precision": r.precision,
        }
        for r in rows
    }
