"""The pruning brake: a pure sliding-window policy, checked against a naive model."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.domain.brake import WINDOW_SECONDS, PruneBrake


def test_a_few_dead_tokens_are_pruned() -> None:
    brake = PruneBrake(min_prunes=3, ratio=0.8)
    for i in range(2):
        brake.record("apns", True, now=float(i))
    assert brake.allows_prune("apns", now=2.0)  # below the minimum, however high the ratio


def test_a_wave_of_dead_tokens_engages_the_brake_and_it_releases_after_the_window() -> None:
    brake = PruneBrake(min_prunes=3, ratio=0.8)
    for i in range(3):
        brake.record("apns", True, now=10.0 + i)
    assert not brake.allows_prune("apns", now=12.0)
    assert brake.allows_prune("fcm", now=12.0)  # per provider
    assert brake.allows_prune("apns", now=12.0 + WINDOW_SECONDS)


def test_healthy_traffic_dilutes_the_failures() -> None:
    brake = PruneBrake(min_prunes=3, ratio=0.8)
    for i in range(4):
        brake.record("fcm", True, now=float(i))
    assert not brake.allows_prune("fcm", now=4.0)  # 4/4 > 0.8
    brake.record("fcm", False, now=4.0)
    assert brake.allows_prune("fcm", now=4.0)  # 4/5 = 0.8 is not *more than* 0.8
    brake.record("fcm", True, now=4.5)
    assert not brake.allows_prune("fcm", now=5.0)  # 5/6


def test_the_brake_stays_on_while_failures_continue() -> None:
    brake = PruneBrake(min_prunes=2, ratio=0.5)
    for t in range(0, 1000, 10):
        brake.record("apns", True, now=float(t))
        assert brake.allows_prune("apns", now=float(t)) == (t == 0)


def test_memory_is_bounded_by_the_window_in_seconds() -> None:
    brake = PruneBrake(min_prunes=1, ratio=0.5, window_seconds=10)
    for i in range(10_000):
        brake.record("apns", i % 2 == 0, now=i / 100)
    assert len(brake._windows["apns"].buckets) <= 11
    # buckets 91..99 are younger than 10 s at t=100 (bucket 90 started exactly 10 s ago)
    assert brake.counts("apns", now=100.0) == (450, 900)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        PruneBrake(min_prunes=0, ratio=0.5)
    with pytest.raises(ValueError):
        PruneBrake(min_prunes=1, ratio=1.5)


events = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=120, allow_nan=False),  # time step
        st.sampled_from(["apns", "fcm"]),
        st.booleans(),
    ),
    max_size=150,
)


@settings(max_examples=300, deadline=None)
@given(
    events=events,
    min_prunes=st.integers(min_value=1, max_value=8),
    ratio=st.floats(min_value=0, max_value=1, allow_nan=False),
    window=st.sampled_from([30.0, 300.0]),
)
def test_matches_a_naive_model(
    events: list[tuple[float, str, bool]], min_prunes: int, ratio: float, window: float
) -> None:
    brake = PruneBrake(min_prunes, ratio, window)
    history: list[tuple[float, str, bool]] = []
    now = 0.0
    for step, provider, prune in events:
        now += step
        brake.record(provider, prune, now)
        history.append((now, provider, prune))
        for p in ("apns", "fcm"):
            # the model: results whose 1-second bucket started less than `window` ago
            live = [x for t, q, x in history if q == p and math.floor(t) > now - window]
            prunes, total = sum(live), len(live)
            assert brake.counts(p, now) == (prunes, total)
            expected = not (prunes >= min_prunes and prunes > ratio * total)
            assert brake.allows_prune(p, now) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), max_size=200), st.integers(min_value=1, max_value=50))
def test_never_brakes_without_enough_prune_candidates(results: list[bool], minimum: int) -> None:
    brake = PruneBrake(minimum, 0.0)
    for i, prune in enumerate(results):
        brake.record("apns", prune, now=i * 0.1)
    if sum(results) < minimum:
        assert brake.allows_prune("apns", now=len(results) * 0.1)
