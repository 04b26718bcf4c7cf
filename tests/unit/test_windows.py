from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors.windows import busiest_window_containing, oldest_usable_ms, retention_ms


def brute_force(times: list[int], t: int, length: int) -> int:
    """Try every integer left edge s in (t - length, t]."""
    return max(sum(1 for x in times if s <= x < s + length) for s in range(t - length + 1, t + 1))


def test_counts_events_in_the_busiest_window() -> None:
    times = [0, 100, 200, 1000, 1100]
    w = busiest_window_containing(times, 200, 1000)
    assert (w.count, w.start_ms, w.end_ms) == (3, 0, 1000)
    w = busiest_window_containing(times, 1000, 1000)
    assert (w.count, w.start_ms) == (3, 100)  # [100, 1100) and [200, 1200) tie: earliest wins


def test_window_is_half_open() -> None:
    assert busiest_window_containing([0, 1000], 0, 1000).count == 1
    assert busiest_window_containing([0, 999], 0, 1000).count == 2


def test_duplicate_times_are_counted_each() -> None:
    assert busiest_window_containing([5, 5, 5], 5, 10).count == 3


def test_rejects_non_positive_length() -> None:
    with pytest.raises(ValueError):
        busiest_window_containing([1], 1, 0)


@given(
    st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=40),
    st.integers(min_value=1, max_value=120),
    st.data(),
)
def test_matches_brute_force(times: list[int], length: int, data: st.DataObject) -> None:
    t = data.draw(st.sampled_from(times))
    assert busiest_window_containing(sorted(times), t, length).count == brute_force(
        times, t, length
    )


@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=30))
def test_arrival_order_does_not_change_the_windows_found(times: list[int]) -> None:
    """Order independence: evaluating each event against the full set gives the
    same busiest window whatever order the events came in."""
    length = 600
    s = sorted(times)
    found = {busiest_window_containing(s, t, length) for t in times}
    found_rev = {busiest_window_containing(s, t, length) for t in reversed(times)}
    assert found == found_rev


def test_retention_keeps_the_longer_of_window_and_dedup_horizon() -> None:
    assert retention_ms(600_000, 3_600_000, 86_400_000) == 86_400_000
    assert retention_ms(86_400_000, 3_600_000, 60_000) == 2 * 86_400_000 + 3_600_000
    assert oldest_usable_ms(10_000, 5_000, 1_000) == 6_000
