"""Schedules: event placement, the four decay formulas, monotonicity, oneshot, cool-down."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunecli.sparsity.schedule import DECAY_TYPES, Schedule, decayed_sparsity, resolve_frequency


def test_formulas_match_the_documented_ones():
    s0, t, x = 0.1, 0.9, 0.25
    assert decayed_sparsity("exp", x, t, s0) == pytest.approx(1 - (1 - s0) * ((1 - t) / (1 - s0)) ** x)
    assert decayed_sparsity("cos", x, t, s0) == pytest.approx((t - s0) * (1 - math.cos(x * math.pi / 2)) + s0)
    assert decayed_sparsity("linear", x, t, s0) == pytest.approx((t - s0) * x + s0)
    assert decayed_sparsity("cube", x, t, s0) == pytest.approx((t - s0) * x**3 + s0)
    for decay in DECAY_TYPES:
        assert decayed_sparsity(decay, 0.0, t, s0) == s0
        assert decayed_sparsity(decay, 1.0, t, s0) == t


def test_event_placement_and_targets():
    s = Schedule(start_step=10, end_step=50, frequency=10, target=0.8, decay="linear")
    assert list(s.event_steps()) == [10, 20, 30, 40, 50]
    assert s.num_events == 5 and not s.is_oneshot
    assert [s.is_event(x) for x in (9, 10, 15, 20, 50, 60)] == [False, True, False, True, True, False]
    assert s.target_sparsity_at(0) == 0.0
    assert s.target_sparsity_at(10) == 0.0  # event 0 aims at the initial sparsity
    assert s.target_sparsity_at(29) == pytest.approx(0.2)
    assert s.target_sparsity_at(30) == pytest.approx(0.4)
    assert s.target_sparsity_at(50) == 0.8
    assert s.target_sparsity_at(10_000) == 0.8  # cool-down: fixed after end_step


def test_last_event_before_end_when_frequency_does_not_divide():
    s = Schedule(0, 105, 50, 0.9)
    assert list(s.event_steps()) == [0, 50, 100]
    assert s.target_sparsity_at(100) == 0.9 and s.last_event_step == 100


def test_oneshot():
    s = Schedule(7, 7, 1, 0.6)
    assert s.is_oneshot and list(s.event_steps()) == [7]
    assert s.target_sparsity_at(6) == 0.0 and s.target_sparsity_at(7) == 0.6
    # A frequency longer than the window leaves one event, which reaches the target at once.
    s = Schedule(0, 30, 100, 0.6)
    assert s.is_oneshot and s.target_sparsity_at(0) == 0.6


def test_auto_frequency_gives_about_40_events():
    assert resolve_frequency(-1, 0, 3999) == 100
    assert Schedule(0, 3999, -1, 0.9).num_events == 40
    assert resolve_frequency(-1, 0, 10) == 1  # the reference script divided to 0 here
    with pytest.raises(ValueError):
        resolve_frequency(0, 0, 10)


def test_invalid_schedules():
    with pytest.raises(ValueError):
        Schedule(5, 4, 1, 0.5)
    with pytest.raises(ValueError):
        Schedule(0, 4, 1, 1.0)
    with pytest.raises(ValueError):
        Schedule(0, 4, 1, 0.5, decay="poly")


@settings(max_examples=80, deadline=None)
@given(
    start=st.integers(0, 50),
    span=st.integers(0, 300),
    frequency=st.one_of(st.integers(1, 60), st.just(-1)),
    target=st.floats(0.0, 0.99),
    initial_frac=st.floats(0.0, 1.0),
    decay=st.sampled_from(DECAY_TYPES),
)
def test_schedule_is_monotone_ends_at_target_and_changes_only_at_events(
    start, span, frequency, target, initial_frac, decay
):
    initial = target * initial_frac
    s = Schedule(start, start + span, frequency, target, decay, initial)
    values = [s.target_sparsity_at(step) for step in range(0, start + span + 5)]
    assert all(b >= a for a, b in zip(values, values[1:], strict=False))
    assert values[0] == (0.0 if start > 0 else s.target_at_event(0))
    assert s.target_sparsity_at(s.last_event_step) == target
    assert values[-1] == target
    for step in range(1, len(values)):
        if values[step] != values[step - 1]:
            assert s.is_event(step)
    assert s.last_event_step <= start + span
