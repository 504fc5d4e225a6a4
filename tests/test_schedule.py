"""Schedules: target VUs over time, per-VU windows, open-model arrivals."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings, strategies as st

from z6.engine.scenario import RateStage, Schedule, Step
from z6.engine.schedule import (
    NEVER_NS,
    ArrivalPlan,
    ScheduleShapeError,
    arrival_instant_ns,
    arrivals_total,
    peak_vus,
    schedule_length_s,
    started_vus,
    target_vus,
    vu_profile,
    vu_windows,
)


def ramp(start: int, end: int, ramp_s: float, hold_s: float = 0.0) -> Schedule:
    return Schedule(
        type="ramp",
        start_vus=start,
        end_vus=end,
        ramp_duration_seconds=ramp_s,
        hold_duration_seconds=hold_s,
    )


def spike(base: int, peak: int, start_s: float, dur_s: float) -> Schedule:
    return Schedule(
        type="spike",
        baseline_vus=base,
        spike_vus=peak,
        spike_start_seconds=start_s,
        spike_duration_seconds=dur_s,
    )


def steps(*pairs: tuple[int, float]) -> Schedule:
    return Schedule(type="steps", steps=[Step(vus=v, duration_seconds=d) for v, d in pairs])


CONSTANT = Schedule(type="constant", vus=5)
ARRIVAL = Schedule(type="arrival_rate", rate=100.0, max_vus=8)


# --- target_vus at chosen instants --------------------------------------------------------------


def test_constant() -> None:
    assert [target_vus(CONSTANT, t) for t in (0, 1, 1e6)] == [5, 5, 5]
    assert target_vus(CONSTANT, -0.1) == 0
    assert peak_vus(CONSTANT) == 5
    assert schedule_length_s(CONSTANT) is None


def test_ramp_up_floors_then_holds() -> None:
    s = ramp(0, 10, 10, 5)
    assert target_vus(s, 0) == 0
    assert target_vus(s, 0.99) == 0
    assert target_vus(s, 1.0) == 1  # exact crossing counts as reached
    assert target_vus(s, 5.5) == 5
    assert target_vus(s, 9.999) == 9
    assert target_vus(s, 10) == 10
    assert target_vus(s, 15) == 10
    assert target_vus(s, 100) == 10  # past the natural length: keeps end_vus
    assert schedule_length_s(s) == 15
    assert peak_vus(s) == 10


def test_ramp_float_crossings_are_exact_despite_rounding() -> None:
    s = ramp(0, 10, 3)
    # 10 * 0.3 / 3 is 0.9999999999999999 in floats; the epsilon keeps it at 1.
    assert target_vus(s, 0.3) == 1
    assert target_vus(s, 2.1) == 7


def test_ramp_down_stops_highest_first() -> None:
    s = ramp(10, 2, 8, 2)
    assert target_vus(s, 0) == 10
    assert target_vus(s, 0.5) == 10  # ceil while falling: VU 9 runs until x reaches 9
    assert target_vus(s, 1) == 9
    assert target_vus(s, 4) == 6
    assert target_vus(s, 4.5) == 6
    assert target_vus(s, 8) == 2
    assert target_vus(s, 9) == 2
    assert peak_vus(s) == 10
    assert vu_windows(s, 9, 10) == [(0.0, pytest.approx(1.0))]
    assert vu_windows(s, 2, 10) == [(0.0, pytest.approx(8.0))]
    assert vu_windows(s, 1, 10) == [(0.0, 10.0)]
    assert vu_windows(s, 10, 10) == []


def test_ramp_zero_duration_and_zero_hold() -> None:
    s = ramp(3, 7, 0, 0)
    assert target_vus(s, 0) == 7
    assert peak_vus(s) == 7
    assert schedule_length_s(s) == 0
    assert vu_windows(s, 6, 4) == [(0.0, 4.0)]
    flat = ramp(4, 4, 5, 0)
    assert {target_vus(flat, t) for t in (0, 2.5, 5, 9)} == {4}


def test_ramp_windows_start_lowest_first() -> None:
    s = ramp(2, 6, 4, 1)
    assert vu_windows(s, 0, 5) == [(0.0, 5.0)]
    assert vu_windows(s, 1, 5) == [(0.0, 5.0)]
    starts = [vu_windows(s, v, 5)[0][0] for v in range(2, 6)]
    assert starts == pytest.approx([1.0, 2.0, 3.0, 4.0])
    assert vu_windows(s, 6, 5) == []


def test_a_ramp_that_tops_out_as_the_run_ends_starts_no_vu_for_nothing() -> None:
    """0 -> 7 VUs over the whole 2 s run: the 7th VU's crossing is a rounding step before the
    end; it got the window (1.9999999997, 2.0) and started and stopped at the end with
    nothing done. Windows shorter than a microsecond are left out; the others are whole."""
    sched = ramp(0, 7, 2.0)
    assert vu_windows(sched, 6, 2.0) == []
    assert vu_windows(sched, 5, 2.0) == [(pytest.approx(12 / 7), 2.0)]
    # A tiny piece that touches a longer window is merged first, never cut away.
    assert vu_windows(ramp(0, 7, 2.0, hold_s=1.0), 6, 3.0) == [(pytest.approx(2.0), 3.0)]


def test_spike_phases_and_boundaries() -> None:
    s = spike(2, 10, 5, 3)
    assert target_vus(s, 0) == 2
    assert target_vus(s, 4.999) == 2
    assert target_vus(s, 5) == 10
    assert target_vus(s, 7.999) == 10
    assert target_vus(s, 8) == 2
    assert target_vus(s, 50) == 2
    assert schedule_length_s(s) == 8
    assert peak_vus(s) == 10
    assert vu_windows(s, 5, 20) == [(5.0, 8.0)]
    assert vu_windows(s, 1, 20) == [(0.0, 20.0)]
    assert vu_windows(s, 5, 6) == [(5.0, 6.0)]
    assert vu_windows(s, 5, 4) == []


def test_spike_zero_duration_and_at_start() -> None:
    s = spike(3, 9, 2, 0)
    assert {target_vus(s, t) for t in (0, 2, 3)} == {3}
    assert peak_vus(s) == 3
    assert vu_windows(s, 5, 10) == []
    at_start = spike(1, 4, 0, 2)
    assert target_vus(at_start, 0) == 4
    assert vu_windows(at_start, 2, 10) == [(0.0, 2.0)]


def test_spike_below_baseline() -> None:
    s = spike(6, 2, 1, 1)
    assert target_vus(s, 1.5) == 2
    assert vu_windows(s, 4, 5) == [(0.0, 1.0), (2.0, 5.0)]


def test_steps_piecewise_then_hold_last() -> None:
    s = steps((2, 5), (0, 0), (6, 5), (1, 5))
    assert [target_vus(s, t) for t in (0, 4.99, 5, 9.99, 10, 14.99, 15, 40)] == [
        2,
        2,
        6,
        6,
        1,
        1,
        1,
        1,
    ]
    assert schedule_length_s(s) == 15
    assert peak_vus(s) == 6
    assert vu_windows(s, 0, 15) == [(0.0, 15.0)]  # touching windows merge
    assert vu_windows(s, 1, 15) == [(0.0, 10.0)]
    assert vu_windows(s, 4, 15) == [(5.0, 10.0)]


def test_steps_all_zero_durations_use_last() -> None:
    s = steps((9, 0), (3, 0))
    assert target_vus(s, 0) == 3
    assert peak_vus(s) == 3


def test_arrival_rate_pool() -> None:
    assert peak_vus(ARRIVAL) == 8
    assert target_vus(ARRIVAL, 3) == 8
    assert schedule_length_s(ARRIVAL) is None
    assert vu_windows(ARRIVAL, 7, 2) == [(0.0, 2.0)]
    assert vu_windows(ARRIVAL, 8, 2) == []


def test_missing_field_raises() -> None:
    with pytest.raises(ScheduleShapeError):
        target_vus(Schedule(type="ramp", start_vus=1), 0)
    with pytest.raises(ScheduleShapeError):
        peak_vus(Schedule(type="steps"))


def test_windows_empty_for_zero_length_run() -> None:
    assert vu_windows(CONSTANT, 0, 0) == []


def test_profile_samples_ends() -> None:
    prof = vu_profile(ramp(0, 10, 10), 10, points=11)
    assert len(prof) == 11
    assert prof[0] == (0.0, 0)
    assert prof[-1] == (10, 10)
    assert [v for _, v in prof] == list(range(11))
    assert vu_profile(CONSTANT, 0) == [(0.0, 5)]


# --- consistency property ---------------------------------------------------------------------

_vus = st.integers(min_value=0, max_value=30)
_dur = st.one_of(st.just(0.0), st.floats(min_value=0.001, max_value=100))

schedules = st.one_of(
    st.builds(lambda v: Schedule(type="constant", vus=v), _vus),
    st.builds(ramp, _vus, _vus, _dur, _dur),
    st.builds(spike, _vus, _vus, _dur, _dur),
    st.builds(lambda pairs: steps(*pairs), st.lists(st.tuples(_vus, _dur), min_size=1, max_size=5)),
    st.builds(lambda v: Schedule(type="arrival_rate", rate=10.0, max_vus=v), _vus),
)


def _in_windows(windows: list[tuple[float, float]], t: float) -> bool:
    return any(a <= t < b for a, b in windows)


@settings(max_examples=400, deadline=None)
@given(
    schedules,
    st.integers(min_value=0, max_value=31),
    st.floats(min_value=0.001, max_value=300),
    st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=20),
)
def test_windows_agree_with_target(
    schedule: Schedule, vu: int, run_length: float, fractions: list[float]
) -> None:
    windows = vu_windows(schedule, vu, run_length)
    # Sorted, disjoint, non-empty, inside [0, run_length).
    for a, b in windows:
        assert 0 <= a < b <= run_length
    for (_, b1), (a2, _) in itertools.pairwise(windows):
        assert b1 < a2
    instants = [f * run_length for f in fractions] + [a for a, _ in windows]
    instants += [b for _, b in windows]
    for t in instants:
        if t >= run_length:
            continue
        active = vu < target_vus(schedule, t)
        if active != _in_windows(windows, t):
            # Allowed only right at a crossing instant.
            near = [target_vus(schedule, max(t + d, 0.0)) > vu for d in (-1e-9, 1e-9)]
            assert near[0] != near[1] or any(abs(t - e) <= 1e-9 for w in windows for e in w), (
                t,
                windows,
            )
    assert target_vus(schedule, 0) <= peak_vus(schedule)


@settings(max_examples=200, deadline=None)
@given(schedules, st.floats(min_value=0, max_value=500))
def test_peak_bounds_target(schedule: Schedule, t: float) -> None:
    assert 0 <= target_vus(schedule, t) <= peak_vus(schedule)
    if peak_vus(schedule) > 0:
        assert vu_windows(schedule, peak_vus(schedule), 1000) == []


def test_started_vus_is_the_highest_level_reached_so_far() -> None:
    down = ramp(4, 0, 1.0)
    assert [started_vus(down, t) for t in (-1, 0, 0.5, 1, 9)] == [0, 4, 4, 4, 4]
    up = ramp(0, 4, 1.0)
    assert [started_vus(up, t) for t in (0, 0.25, 0.5, 0.99, 1, 5)] == [0, 1, 2, 3, 4, 4]
    sp = spike(1, 4, 0.5, 0.2)
    assert [started_vus(sp, t) for t in (0, 0.49, 0.5, 0.7, 3)] == [1, 1, 4, 4, 4]
    st_ = steps((2, 1), (6, 1), (0, 1), (3, 1))
    assert [started_vus(st_, t) for t in (0, 1, 2.5, 3.5)] == [2, 6, 6, 6]


@given(schedules, st.lists(st.floats(min_value=0, max_value=400), min_size=2, max_size=12))
def test_started_vus_bounds_every_earlier_target(schedule: Schedule, times: list[float]) -> None:
    times.sort()
    started = [started_vus(schedule, t) for t in times]
    assert started == sorted(started)  # never falls
    for i, t in enumerate(times):
        assert target_vus(schedule, t) <= started[i] <= peak_vus(schedule)
        assert all(target_vus(schedule, u) <= started[i] for u in times[: i + 1])


# --- open model -------------------------------------------------------------------------------


def test_arrival_instants() -> None:
    assert [arrival_instant_ns(4, n) for n in range(4)] == [
        0,
        250_000_000,
        500_000_000,
        750_000_000,
    ]
    assert arrival_instant_ns(3, 1) == 333_333_333
    assert arrival_instant_ns(3, 2) == 666_666_667
    assert arrival_instant_ns(0.5, 3) == 6_000_000_000


@pytest.mark.parametrize(
    ("rate", "duration", "expected"),
    [
        (10, 1, 10),
        (10, 1.05, 11),
        (3, 1, 3),
        (0.5, 10, 5),
        (0.5, 10.001, 6),
        (7, 0, 0),
        (1e-3, 5, 1),
    ],
)
def test_arrivals_total(rate: float, duration: float, expected: int) -> None:
    assert arrivals_total(rate, duration) == expected


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0.01, max_value=1e5), st.floats(min_value=0.001, max_value=100))
def test_arrivals_total_counts_instants_before_end(rate: float, duration: float) -> None:
    n = arrivals_total(rate, duration)
    limit = round(duration * 1e9)
    assert n >= 1  # iteration 0 is due at t = 0
    assert arrival_instant_ns(rate, n - 1) < limit <= arrival_instant_ns(rate, n)


# --- open model with stages (ArrivalPlan) -----------------------------------------------------


def test_a_plan_without_stages_is_the_constant_formula() -> None:
    plan = ArrivalPlan(3.0)
    assert not plan.staged
    assert [plan.instant_ns(n) for n in range(100)] == [
        arrival_instant_ns(3.0, n) for n in range(100)
    ]
    assert plan.total(10.05) == arrivals_total(3.0, 10.05)
    assert ArrivalPlan(0.5, [(0.5, 4.0)]).instant_ns(3) == arrival_instant_ns(0.5, 3)


def test_a_ramp_from_zero_follows_the_integral() -> None:
    # 0 -> 100/s over 10 s: N(t) = 5 t^2, so arrival n is due at sqrt(n / 5) s.
    plan = ArrivalPlan(0.0, [(100.0, 10.0)])
    assert plan.staged
    for n in (0, 1, 2, 5, 20, 125, 499):
        assert plan.instant_ns(n) == round(math.sqrt(n / 5) * 1e9), n
    assert plan.count_at(10.0) == 500
    assert plan.total(10.0) == 500  # arrival 500 is due at 10 s, the end: not in the run
    assert plan.total(12.0) == 700  # then 100/s holds
    assert plan.rate_at(2.5) == 25.0
    assert plan.rate_at(60.0) == 100.0


def test_rate_zero_stretches_have_no_arrivals() -> None:
    # 0/s for 5 s, a near jump to 10/s, 10/s for 5 s, then down to 0 and held there.
    plan = ArrivalPlan(0.0, [(0.0, 5.0), (10.0, 1e-4), (10.0, 5.0), (0.0, 1.0)])
    assert plan.instant_ns(0) == 5_000_000_000  # not at 0: nothing is expected before 5 s
    assert plan.total(5.0) == 0
    last = plan.total(60.0)
    assert last == math.ceil(plan.count_at(11.0001))  # every expected arrival, then none
    assert plan.instant_ns(last) == NEVER_NS
    assert ArrivalPlan(0.0, [(0.0, 3.0)]).total(3.0) == 0


def test_stage_ends_meant_as_whole_counts_schedule_that_many() -> None:
    # 100 -> 10/s over 1.1 s is 60.5 arrivals, 10 -> 0/s over 0.1 s 0.5 more: 61, which
    # floats sum to 61.00000000000001; arrival 61 would then have been due at 1.2 s, where the
    # rate is 0. The float estimate (62) is settled on the instants.
    plan = ArrivalPlan(100.0, [(10.0, 1.1), (0.0, 0.1)])
    assert plan.total(1.3) == 61
    assert plan.instant_ns(60) < 1_200_000_000
    assert plan.instant_ns(61) == NEVER_NS
    plan = ArrivalPlan(100.0, [(100.0, 0.05), (0.0, 1.1), (0.0, 0.3)])
    assert plan.total(1.45) == 60


def test_per_second_counts_of_a_staged_plan() -> None:
    # 0 -> 400/s over 2 s, 400/s for 2 s, 400 -> 0 over 2 s: 100, 300, 400, 400, 300, 100.
    plan = ArrivalPlan(0.0, [(400.0, 2.0), (400.0, 2.0), (0.0, 2.0)])
    counts = [0] * 6
    for n in range(plan.total(6.0)):
        counts[plan.instant_ns(n) // 1_000_000_000] += 1
    assert counts == [100, 300, 400, 400, 300, 100]


_rates = st.one_of(st.just(0.0), st.floats(min_value=1e-6, max_value=5e3))
_stage = st.tuples(
    _rates,
    st.floats(min_value=1e-3, max_value=20.0),
)


@settings(max_examples=300, deadline=None)
@given(
    start=_rates,
    stages=st.lists(_stage, min_size=1, max_size=5),
    duration=st.floats(min_value=1e-3, max_value=60.0),
)
def test_staged_instants_are_ordered_and_total_counts_them(
    start: float, stages: list[tuple[float, float]], duration: float
) -> None:
    """Instants never go back, stay in the run, and ``total`` is exactly the count of those
    before the end; the count agrees with the integral of the rate to within one."""
    plan = ArrivalPlan(start, stages)
    n = plan.total(duration)
    limit = round(duration * 1e9)
    if n:
        assert plan.instant_ns(n - 1) < limit
    assert plan.instant_ns(n) >= limit
    assert abs(n - plan.count_at(duration)) <= 1.0 + 1e-6 * n
    # Every neighbouring pair around 200 sampled points (all pairs in small plans).
    step = max(n // 200, 1)
    for k in range(0, n + 1, step):
        assert plan.instant_ns(k) <= plan.instant_ns(k + 1)
        if k:
            assert plan.instant_ns(k - 1) <= plan.instant_ns(k)


def test_schedule_length_of_stages() -> None:
    staged = Schedule(
        type="arrival_rate", rate=0.0, max_vus=5, stages=[RateStage(rate=5, duration_seconds=2.5)]
    )
    assert schedule_length_s(staged) == 2.5
    assert schedule_length_s(Schedule(type="arrival_rate", rate=5.0, max_vus=5)) is None
    assert ArrivalPlan.of(staged).instant_ns(1) == ArrivalPlan(0.0, [(5.0, 2.5)]).instant_ns(1)
