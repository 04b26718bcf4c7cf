from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors.durations import format_duration_ms, parse_duration_ms
from detectors.windows import (
    Bucketing,
    busiest_window_containing,
    default_bucket_ms,
    retention_ms,
    window_sum,
)


@pytest.mark.parametrize(
    ("window", "bucket"),
    [("1m", "1s"), ("10m", "30s"), ("1h", "2m"), ("24h", "1h"), ("7d", "6h"), ("30d", "1d")],
)
def test_default_buckets_split_windows_into_at_least_20(window: str, bucket: str) -> None:
    w = parse_duration_ms(window)
    b = default_bucket_ms(w)
    assert w % b == 0 and w // b >= 20
    assert b == parse_duration_ms(bucket)


def test_odd_windows_are_rejected_with_advice() -> None:
    with pytest.raises(ValueError, match="multiple of 20s"):
        default_bucket_ms(7_000)


def test_bucketing_geometry() -> None:
    b = Bucketing(window_ms=600_000, bucket_ms=30_000, lateness_ms=3_600_000)
    assert b.buckets == 20 and b.late_buckets == 120
    assert b.bucket_of(1_800_000_000_000) == 60_000_000
    assert b.window_end_ms(10) - b.window_start_ms(10) == 600_000


@pytest.mark.parametrize("text", ["", "10", "m", "1.5h", "-1m", "10 min"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration_ms(text)


def test_duration_round_trip() -> None:
    for text in ("90s", "10m", "36h", "2d", "1w", "250ms"):
        assert format_duration_ms(parse_duration_ms(text)) == text


def test_busiest_window_prefers_the_fullest_then_the_earliest() -> None:
    buckets = {0: 1, 1: 1, 5: 3}
    assert busiest_window_containing(buckets, 1, 5, newest=10) == (4, 5)  # [1..5] holds 1+3
    assert busiest_window_containing(buckets, 0, 2, newest=10) == (2, 1)


@given(
    st.dictionaries(st.integers(0, 60), st.integers(0, 5), max_size=30),
    st.integers(1, 12),
    st.integers(0, 60),
)
def test_busiest_window_matches_brute_force(buckets: dict[int, int], n: int, b: int) -> None:
    newest = max([b, *buckets])
    value, end = busiest_window_containing(buckets, b, n, newest)
    brute = max(window_sum(buckets, e, n) for e in range(b, min(b + n - 1, newest) + 1))
    assert value == brute
    assert b <= end <= min(b + n - 1, newest)


def test_retention_keeps_the_longer_of_window_plus_lateness_and_dedup_horizon() -> None:
    assert retention_ms(600_000, 3_600_000, 86_400_000) == 86_400_000
    assert retention_ms(30 * 86_400_000, 3_600_000, 86_400_000) == 30 * 86_400_000 + 3_600_000
