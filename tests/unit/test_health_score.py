"""The merchant health score (detectors.health_score, detectors.health_model):
every component, the volume gate, expiry and release, bands, explanations,
the model's parsing, and the score's two invariants as properties."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors.errors import ConfigError
from detectors.health_model import DEFAULT_MODEL, Band, RateKind, parse_health_model
from detectors.health_score import (
    HealthInputs,
    RateCounts,
    Violation,
    ViolationSource,
    score,
    should_emit,
)
from detectors.rules import Severity

DAY = 86_400_000
T0 = 1_800_000_000_000
M = DEFAULT_MODEL


def inputs(
    orders: int = 100,
    violations: tuple[Violation, ...] = (),
    **rates: tuple[int, int],
) -> HealthInputs:
    counts = {RateKind(k): RateCounts(n, d) for k, (n, d) in rates.items()}
    return HealthInputs("m-1", orders, violations, counts)


def freeze(
    vid: str = "fz-1", severity: Severity = Severity.HIGH, at: int = T0, **kw: object
) -> Violation:
    """A freeze raised by an alert of its own (`al-<vid>`)."""
    evidence = (f"al-{vid}",)
    return Violation(vid, ViolationSource.FREEZE, severity, at, evidence, "rule_x", **kw)  # type: ignore[arg-type]


def test_a_clean_merchant_with_volume_scores_1000_and_is_healthy() -> None:
    snap = score(inputs(refund_rate=(2, 100)), M, T0)
    assert (snap.score, snap.band, snap.reasons) == (1000, Band.HEALTHY, ())
    assert snap.score_model_version == M.score_model_version


@pytest.mark.parametrize("rate", list(M.rates), ids=lambda r: r.kind.value)
def test_every_rate_is_free_up_to_good_full_from_bad_and_linear_between(rate: object) -> None:
    r = M.rates[[x.kind for x in M.rates].index(rate.kind)]  # type: ignore[attr-defined]
    d = 1000
    at_good, at_bad = round(r.good * d), round(r.bad * d)
    middle = (at_good + at_bad) // 2
    points = {
        n: score(inputs(**{r.kind.value: (n, d)}), M, T0).components[1].points
        for n in (at_good, middle, at_bad, d)
    }
    assert points[at_good] == 0
    assert points[at_bad] == points[d] == r.points
    expected = round(r.points * (middle / d - r.good) / (r.bad - r.good))
    assert points[middle] == expected and 0 < expected < r.points
    snap = score(inputs(**{r.kind.value: (middle, d)}), M, T0)
    (component,) = [c for c in snap.components if c.name == r.kind.value]
    assert (component.numerator, component.denominator, component.window_ms) == (
        middle,
        d,
        r.window_ms,
    )
    assert snap.reasons[0].points == expected and r.kind.value in snap.reasons[0].text


def test_a_rate_below_its_volume_gate_is_not_judged() -> None:
    gate = M.rates[0].min_volume
    below = score(inputs(refund_rate=(gate - 1, gate - 1)), M, T0)
    assert below.score == 1000 and below.components[1].value is None
    at = score(inputs(refund_rate=(gate, gate)), M, T0)
    assert at.score == 1000 - M.rates[0].points


def test_a_merchant_below_the_order_volume_is_insufficient_data_not_low() -> None:
    snap = score(inputs(orders=M.min_orders - 1, refund_rate=(1, 2)), M, T0)
    assert snap.band is Band.INSUFFICIENT_DATA and snap.score == 1000


def test_violations_count_below_the_volume_gate() -> None:
    """A days-old merchant's bust-out is not hidden by its small volume."""
    snap = score(inputs(orders=2, violations=(freeze(severity=Severity.CRITICAL),)), M, T0)
    assert snap.band is not Band.INSUFFICIENT_DATA
    assert snap.score == 1000 - M.points[Severity.CRITICAL]


def test_violation_points_expire_after_their_window_severe_ones_later() -> None:
    medium = freeze("fz-m", Severity.MEDIUM)
    high = freeze("fz-h", Severity.HIGH)
    v = (medium, high)
    both = 1000 - M.points[Severity.MEDIUM] - M.points[Severity.HIGH]
    assert score(inputs(violations=v), M, T0 + M.expiry_ms - 1).score == both
    assert score(inputs(violations=v), M, T0 + M.expiry_ms).score == 1000 - M.points[Severity.HIGH]
    assert score(inputs(violations=v), M, T0 + M.severe_expiry_ms).score == 1000
    assert score(inputs(violations=v), M, T0 - 1).score == 1000  # not yet confirmed


def test_a_freeze_and_a_verdict_on_its_alert_count_once_at_the_higher_points() -> None:
    frozen = freeze("fz-1", Severity.MEDIUM)
    confirmed = Violation("vd:al-fz-1", ViolationSource.VERDICT, Severity.HIGH, T0, ("al-fz-1",))
    other = Violation("vd:al-9", ViolationSource.VERDICT, Severity.LOW, T0, ("al-9",))
    got = score(inputs(violations=(frozen, confirmed, other)), M, T0 + 1).score
    assert got == 1000 - M.points[Severity.HIGH] - M.points[Severity.LOW]


def test_a_released_freeze_gives_its_points_back_at_once() -> None:
    released = freeze(released_at_ms=T0 + DAY)
    assert score(inputs(violations=(released,)), M, T0 + DAY - 1).score < 1000
    assert score(inputs(violations=(released,)), M, T0 + DAY).score == 1000


def test_bands_follow_the_cut_offs() -> None:
    assert [M.band_of(s) for s in (1000, M.healthy_from, M.healthy_from - 1)] == [
        Band.HEALTHY,
        Band.HEALTHY,
        Band.AT_RISK,
    ]
    assert [M.band_of(s) for s in (M.at_risk_from, M.at_risk_from - 1, 0)] == [
        Band.AT_RISK,
        Band.CRITICAL,
        Band.CRITICAL,
    ]


def test_the_top_three_reasons_carry_their_evidence() -> None:
    v = tuple(freeze(f"fz-{i}", s) for i, s in enumerate(Severity))
    snap = score(inputs(violations=v, refund_rate=(50, 100), alert_rate=(9, 100)), M, T0)
    assert len(snap.reasons) == 3
    assert [r.points for r in snap.reasons] == sorted(
        (r.points for r in snap.reasons), reverse=True
    )
    top = snap.reasons[0]
    assert top.points == M.points[Severity.CRITICAL] and top.evidence == ("fz-3", "al-fz-3")
    assert snap.score == 0  # clamped: more points than the scale has


def test_emitted_on_a_band_change_or_a_step_at_most_once_per_interval() -> None:
    first = score(inputs(), M, T0)
    assert should_emit(None, first, M)
    soon = dataclasses.replace(first, band=Band.CRITICAL, as_of_ms=T0 + M.emit_interval_ms - 1)
    assert not should_emit(first, soon, M)
    later = dataclasses.replace(soon, as_of_ms=T0 + M.emit_interval_ms)
    assert should_emit(first, later, M)
    small = dataclasses.replace(later, band=first.band, score=first.score - M.emit_step + 1)
    assert not should_emit(first, small, M)
    assert should_emit(first, dataclasses.replace(small, score=first.score - M.emit_step), M)


def test_the_model_parses_over_the_defaults() -> None:
    model = parse_health_model(
        {
            "score_model_version": "h-2",
            "bands": {"healthy": 900, "at_risk": 600},
            "points": {"high": 300},
            "expiry": "60d",
            "rates": {"refund_rate": {"good": 0.1, "bad": 0.3, "min_volume": 50}},
        }
    )
    assert (model.healthy_from, model.at_risk_from, model.expiry_ms) == (900, 600, 60 * DAY)
    assert model.points[Severity.HIGH] == 300 and model.points[Severity.LOW] == 25
    refund = model.rates[0]
    assert (refund.good, refund.bad, refund.min_volume, refund.points) == (0.1, 0.3, 50, 250)


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({}, "health.score_model_version"),
        ({"score_model_version": "x", "bands": {"healthy": 400, "at_risk": 600}}, "health.bands"),
        ({"score_model_version": "x", "rates": {"nps": {}}}, "health.rates.nps"),
        ({"score_model_version": "x", "rates": {"refund_rate": {"good": 2}}}, "good"),
        ({"score_model_version": "x", "points": {"dire": 5}}, "health.points"),
        ({"score_model_version": "x", "expiry": "soon"}, "health.expiry"),
        ({"score_model_version": "x", "weights": {}}, "health.weights"),
    ],
)
def test_a_bad_model_is_refused_naming_the_key(raw: dict[str, object], where: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_health_model(raw)
    assert where in str(refused.value)


severities = st.sampled_from(list(Severity))
violation_lists = st.lists(
    st.builds(
        Violation,
        st.text(min_size=1, max_size=5),
        st.sampled_from(list(ViolationSource)),
        severities,
        st.integers(T0 - 400 * DAY, T0),
        released_at_ms=st.none() | st.integers(T0 - 400 * DAY, T0 + DAY),
    ),
    max_size=8,
)
rate_counts = st.dictionaries(
    st.sampled_from(list(RateKind)),
    st.tuples(st.integers(0, 500), st.integers(0, 500)).map(lambda t: RateCounts(min(t), max(t))),
)


@given(violation_lists, rate_counts, st.integers(0, 1000))
def test_the_score_never_leaves_0_to_1000(
    violations: list[Violation], rates: dict[RateKind, RateCounts], orders: int
) -> None:
    snap = score(HealthInputs("m", orders, violations, rates), M, T0)
    assert 0 <= snap.score <= 1000
    assert snap.score == max(0, 1000 - sum(c.points for c in snap.components))


@given(
    violation_lists, rate_counts, severities, st.sampled_from(list(RateKind)), st.integers(1, 50)
)
def test_only_a_violation_or_a_rate_can_lower_the_score(
    violations: list[Violation],
    rates: dict[RateKind, RateCounts],
    severity: Severity,
    kind: RateKind,
    more: int,
) -> None:
    base = score(HealthInputs("m", 100, violations, rates), M, T0).score
    added = [*violations, Violation("new", ViolationSource.VERDICT, severity, T0)]
    assert score(HealthInputs("m", 100, added, rates), M, T0).score <= base
    counts = rates.get(kind, RateCounts(0, 100))
    worse = {**rates, kind: RateCounts(counts.numerator + more, counts.denominator + more)}
    assert score(HealthInputs("m", 100, violations, worse), M, T0).score <= base
    # Volume alone (more orders, the same violations and rates) never lowers it.
    assert score(HealthInputs("m", 10_000, violations, rates), M, T0).score == base
