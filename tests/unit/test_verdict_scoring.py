"""`fraudstream score --verdicts` (stream.verdict_scoring): analysts' verdicts
as labels, the latest on each alert standing, precision per rule."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

import orjson

from detectors.verdicts import VerdictKind, verdict_id_for
from stream.cli import build_parser, cmd_score
from stream.settings import Settings
from stream.verdict_scoring import latest_verdicts, read_verdict_lines, verdict_scores
from tests.unit.test_verdicts import T, verdict

TP, FP, UNSURE = VerdictKind.TRUE_POSITIVE, VerdictKind.FALSE_POSITIVE, VerdictKind.UNSURE


def judged(alert: int, kind: VerdictKind, rule: str = "r1", minute: int = 0) -> bytes:
    v = verdict(
        kind,
        alert,
        rule_id=rule,
        verdict_id=verdict_id_for(f"{alert}-{kind}-{minute}"),
        decided_at_ms=T + minute * 60_000,
    )
    return v.to_bytes()


def test_the_latest_verdict_on_an_alert_stands() -> None:
    lines = [judged(1, TP, minute=5), judged(1, FP, minute=2), judged(2, TP), judged(2, UNSURE)]
    verdicts, errors = read_verdict_lines(lines)
    assert errors == []
    standing = {v.alert_id: v.verdict for v in latest_verdicts(verdicts)}
    assert list(standing.values()) == [TP, UNSURE]  # a later decision wins; ties: the later record


def test_precision_per_rule_leaves_unsure_out() -> None:
    lines = [
        judged(1, TP),
        judged(2, TP),
        judged(3, FP),
        judged(4, UNSURE),
        judged(5, UNSURE, "r2"),
    ]
    (r1, r2) = verdict_scores(read_verdict_lines(lines)[0])
    assert (r1.rule_id, r1.judged, r1.true_positive, r1.false_positive, r1.unsure) == (
        "r1", 4, 2, 1, 1,
    )  # fmt: skip
    assert r1.precision == 2 / 3 and r2.precision is None


def test_the_command_reports_bad_lines_and_scores_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.jsonl"
    path.write_bytes(b"\n".join([judged(1, TP), b"{not json", judged(2, FP), b""]))
    args = build_parser().parse_args(
        ["score", "--verdicts", str(path), "--json", str(tmp_path / "out.json")]
    )
    out = io.StringIO()
    with redirect_stdout(out):
        assert cmd_score(Settings(), args) == 0
    text = out.getvalue()
    assert text.splitlines()[1].split() == ["r1", "2", "1", "1", "0", "0.500"]
    assert "skipped line 2: invalid_json" in text
    doc = orjson.loads((tmp_path / "out.json").read_bytes())
    assert doc["r1"]["precision"] == 0.5
    missing = build_parser().parse_args(["score", "--verdicts", str(tmp_path / "nope")])
    assert cmd_score(Settings(), missing) == 2
    assert cmd_score(Settings(), build_parser().parse_args(["score"])) == 2
