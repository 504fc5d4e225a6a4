"""Load schedules (SPEC section 3): how many VUs are active when, and open-model arrivals.

Closed-model schedules (constant, ramp, spike, steps) are turned into pieces: time intervals on
which the target VU count is constant or moves linearly. ``target_vus`` reads them at one
instant; ``vu_windows`` solves them for the intervals during which one VU is active (VU ``k``
is active while the target exceeds ``k``, so ramp-up starts the lowest ids first and ramp-down
stops the highest first). Both use the same arithmetic, so they agree everywhere except within
floating-point noise of a crossing instant.

Rounding (documented in ``docs/determinism.md``): during a linear ramp ``x(t)`` interpolates
``start_vus -> end_vus`` and the target only changes once ``x`` reaches the next integer:
``floor(x + 1e-9)`` when ramping up, ``ceil(x - 1e-9)`` when ramping down. The tiny epsilon
makes instants that are mathematically integer crossings count as reached despite float
error. After its natural length every shape keeps its final level (ramp: ``end_vus``;
spike: ``baseline_vus``; steps: the last step's ``vus``). Before t = 0 the target is 0.

``arrival_rate`` is the open model: iteration ``n`` is due at ``n / rate`` seconds and runs on
any free VU of a pool of ``max_vus``, all of which exist for the whole run. With ``stages``
the rate moves linearly from stage to stage, and arrival ``n`` is due when the expected
count (the integral of the rate) reaches ``n``: see :class:`ArrivalPlan`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from z6.engine.scenario import Schedule

_EPS = 1e-9
_INF = math.inf

# A piece (t0, t1, v0, v1): on [t0, t1) the target moves linearly from v0 to v1
# (constant when v0 == v1); the last piece ends at +inf.
_Piece = tuple[float, float, float, float]


class ScheduleShapeError(ValueError):
    """Raised when a schedule lacks a field its type needs.

    The loader fills every field (see ``Schedule``), so this only signals a programming error.
    """


def _need(value: float | None, name: str) -> float:
    if value is None:
        raise ScheduleShapeError(f"schedule field {name} is not set")
    return value


def _need_int(value: int | None, name: str) -> int:
    if value is None:
        raise ScheduleShapeError(f"schedule field {name} is not set")
    return value


def _pieces(schedule: Schedule) -> list[_Piece]:
    """The closed-model shape as pieces covering [0, inf)."""
    kind = schedule.type
    if kind == "constant":
        v = float(_need_int(schedule.vus, "vus"))
        return [(0.0, _INF, v, v)]
    if kind == "arrival_rate":
        v = float(_need_int(schedule.max_vus, "max_vus"))
        return [(0.0, _INF, v, v)]
    if kind == "ramp":
        start = float(_need_int(schedule.start_vus, "start_vus"))
        end = float(_need_int(schedule.end_vus, "end_vus"))
        ramp = _need(schedule.ramp_duration_seconds, "ramp_duration_seconds")
        pieces: list[_Piece] = []
        if ramp > 0:
            pieces.append((0.0, ramp, start, end))
        pieces.append((max(ramp, 0.0), _INF, end, end))
        return pieces
    if kind == "spike":
        base = float(_need_int(schedule.baseline_vus, "baseline_vus"))
        peak = float(_need_int(schedule.spike_vus, "spike_vus"))
        s0 = max(_need(schedule.spike_start_seconds, "spike_start_seconds"), 0.0)
        s1 = s0 + max(_need(schedule.spike_duration_seconds, "spike_duration_seconds"), 0.0)
        pieces = []
        if s0 > 0:
            pieces.append((0.0, s0, base, base))
        if s1 > s0:
            pieces.append((s0, s1, peak, peak))
        pieces.append((s1, _INF, base, base))
        return pieces
    if kind == "steps":
        if not schedule.steps:
            raise ScheduleShapeError("schedule has no steps")
        pieces = []
        t = 0.0
        for step in schedule.steps:
            if step.duration_seconds > 0:
                v = float(step.vus)
                pieces.append((t, t + step.duration_seconds, v, v))
                t += step.duration_seconds
        last = float(schedule.steps[-1].vus)
        pieces.append((t, _INF, last, last))
        return pieces
    raise ScheduleShapeError(f"unknown schedule type {kind!r}")


def _level(piece: _Piece, t: float) -> int:
    """Target VUs of ``piece`` at ``t`` (t inside the piece)."""
    t0, t1, v0, v1 = piece
    if v0 == v1:
        return int(v0)
    x = v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    # The level moves only once the line has reached the next integer: floor when rising,
    # ceil when falling (so ramp-down 10 -> 2 over 8 s stops one VU per second, the first
    # at t = 1, instead of stopping VU 9 at t = 0+).
    if v1 > v0:
        return max(math.floor(x + _EPS), 0)
    return max(math.ceil(x - _EPS), 0)


def peak_vus(schedule: Schedule) -> int:
    """How many VU ids the run needs: the highest target ever reached (``max_vus`` for arrival)."""
    best = 0
    for _t0, _t1, v0, v1 in _pieces(schedule):
        best = max(best, int(v0), int(v1))
    return best


def schedule_length_s(schedule: Schedule) -> float | None:
    """The shape's natural length in seconds, ``None`` for constant and for arrival_rate
    without stages."""
    kind = schedule.type
    if kind == "arrival_rate":
        return float(sum(s.duration_seconds for s in schedule.stages)) or None
    if kind == "ramp":
        return _need(schedule.ramp_duration_seconds, "ramp_duration_seconds") + _need(
            schedule.hold_duration_seconds, "hold_duration_seconds"
        )
    if kind == "spike":
        return _need(schedule.spike_start_seconds, "spike_start_seconds") + _need(
            schedule.spike_duration_seconds, "spike_duration_seconds"
        )
    if kind == "steps":
        return float(sum(s.duration_seconds for s in schedule.steps))
    return None


def target_vus(schedule: Schedule, t_s: float) -> int:
    """Closed model: how many VUs should be active ``t_s`` seconds after the start."""
    if t_s < 0:
        return 0
    for piece in _pieces(schedule):
        if t_s < piece[1]:
            return _level(piece, t_s)
    return 0  # unreachable: the last piece ends at +inf


def started_vus(schedule: Schedule, t_s: float) -> int:
    """Closed model, iterations mode: how many VUs have started ``t_s`` seconds after the
    start, i.e. the highest target reached in ``[0, t_s]`` (a VU started there runs all its
    iterations; the shape's decreases stop none)."""
    if t_s < 0:
        return 0
    best = 0
    for piece in _pieces(schedule):
        t0, t1 = piece[0], piece[1]
        if t0 > t_s:
            break
        # A piece is linear: its highest level up to t_s is at one of the two ends.
        best = max(best, _level(piece, t0), _level(piece, min(t_s, t1)))
    return best


MIN_WINDOW_S = 1e-6  # shorter VU windows are rounding at a shape's edges, not load


def _piece_windows(piece: _Piece, vu: int) -> tuple[float, float] | None:
    """The part of ``piece`` during which ``vu`` is active, or ``None``."""
    t0, t1, v0, v1 = piece
    if v0 == v1:
        return (t0, t1) if v0 > vu else None
    if v1 > v0:
        # Rising: active iff floor(x + eps) > vu  <=>  x >= vu + 1 - eps, from the crossing on.
        crossing = t0 + (vu + 1 - _EPS - v0) * (t1 - t0) / (v1 - v0)
        start = max(crossing, t0)
        return (start, t1) if start < t1 else None
    # Falling: active iff ceil(x - eps) > vu  <=>  x > vu + eps, until the crossing.
    crossing = t0 + (vu + _EPS - v0) * (t1 - t0) / (v1 - v0)
    stop = min(crossing, t1)
    return (t0, stop) if stop > t0 else None


def vu_windows(schedule: Schedule, vu: int, run_length_s: float) -> list[tuple[float, float]]:
    """The intervals ``[start, stop)`` (seconds) during which VU ``vu`` is active.

    Active means ``target_vus(t) > vu``. Intervals are sorted, disjoint, non-empty, merged
    where they touch, and clipped to ``[0, run_length_s)``. A window shorter than
    ``MIN_WINDOW_S`` after merging is left out: a ramp that reaches its top just as the run
    ends gave its last VU the window (1.9999999995, 2.0), and a VU that started and stopped
    at the end with nothing done.
    """
    out: list[tuple[float, float]] = []
    if run_length_s <= 0:
        return out
    for piece in _pieces(schedule):
        if piece[0] >= run_length_s:
            break
        window = _piece_windows(piece, vu)
        if window is None:
            continue
        start, stop = window[0], min(window[1], run_length_s)
        if stop <= start:
            continue
        if out and out[-1][1] >= start:
            out[-1] = (out[-1][0], max(out[-1][1], stop))
        else:
            out.append((start, stop))
    return [w for w in out if w[1] - w[0] >= MIN_WINDOW_S]


def vu_profile(
    schedule: Schedule, run_length_s: float, points: int = 20
) -> list[tuple[float, int]]:
    """``points`` evenly spaced samples ``(t, target_vus(t))`` from 0 to ``run_length_s``.

    Both ends are included; with a zero-length run the single sample at t = 0 is returned.
    """
    if points < 2 or run_length_s <= 0:
        return [(0.0, target_vus(schedule, 0.0))]
    step = run_length_s / (points - 1)
    samples = []
    for k in range(points):
        t = run_length_s if k == points - 1 else k * step
        samples.append((t, target_vus(schedule, t)))
    return samples


def arrival_instant_ns(rate: float, n: int) -> int:
    """Open model: when iteration ``n`` is due, ns after the start: ``round(n * 1e9 / rate)``."""
    return round(n * 1e9 / rate)


def arrivals_total(rate: float, duration_s: float) -> int:
    """Open model: how many iterations are due in ``[0, duration_s)``.

    The count of ``n >= 0`` with ``arrival_instant_ns(rate, n) < round(duration_s * 1e9)``.
    """
    if rate <= 0 or duration_s <= 0:
        return 0
    limit = round(duration_s * 1e9)
    n = max(math.ceil(rate * duration_s), 0)
    # The float estimate may be off by one either way; settle it on the exact ns instants.
    while n > 0 and arrival_instant_ns(rate, n - 1) >= limit:
        n -= 1
    while arrival_instant_ns(rate, n) < limit:
        n += 1
    return n


def _snap(count: float) -> float:
    """An expected count within float noise of a whole number is that number: 0 -> 10/s over
    1.1 s, then down to 0 over 0.1 s, sums to 61.00000000000001, and arrival 61 would have
    been due (at the end of the ramp-down, where the rate is 0)."""
    whole = round(count)
    return float(whole) if abs(count - whole) <= 1e-9 * max(1.0, abs(count)) else count


NEVER_NS = 2**63 - 1
"""``ArrivalPlan.instant_ns`` of an arrival that never comes (the rate stays 0 before it)."""


class ArrivalPlan:
    """Open model: when each arrival is due, in ns after the start (pure arithmetic).

    The rate starts at ``rate`` iterations/s; each stage ``(rate_i, duration_i)`` moves it
    linearly to ``rate_i`` over ``duration_i`` seconds, and after the last stage it holds
    (k6's ramping-arrival-rate). The expected count by ``t`` is the integral of the rate,
    ``N(t)``; arrival ``n`` (from 0) is due at the first instant after which more than ``n``
    are expected (the infimum of ``t`` with ``N(t) > n``), rounded to the ns: so arrival 0 is
    due at 0 unless the rate starts at 0 and stays there for a while, and none is due while
    the rate is 0. Without stages that is ``round(n * 1e9 / rate)`` exactly
    (``arrival_instant_ns``), as before stages existed. Within a stage from ``r0`` to ``r1``
    over ``T``, starting at
    ``t0`` with ``N0`` arrivals, ``m = n - N0`` is reached after
    ``2m / (r0 + sqrt(r0^2 + 2 (r1 - r0) m / T))`` seconds (the root of
    ``r0 dt + (r1 - r0) dt^2 / 2T = m`` that is stable as ``r1 - r0`` goes to 0). Computed in
    double precision: within a few ns for runs of hours; near the end of a long ramp-down the
    square root cancels (about 0.1 ms late at the end of a 30-day ramp from 1e6/s to 0), the
    same in every worker and in ``z6 replay``. Expected counts at stage ends that are within
    float noise of a whole number are snapped to it.
    """

    __slots__ = ("_ends", "_rate", "_segments", "_tail")

    def __init__(self, rate: float, stages: Sequence[tuple[float, float]] = ()) -> None:
        self._rate = rate
        # (t0, duration, r0, r1, n0) per stage with a duration; _ends[i]: N at its end.
        self._segments: list[tuple[float, float, float, float, float]] = []
        self._ends: list[float] = []
        t, r, n = 0.0, rate, 0.0
        for r1, duration in stages:
            if duration <= 0:
                r = r1
                continue
            self._segments.append((t, duration, r, r1, n))
            n = _snap(n + (r + r1) * duration / 2)
            self._ends.append(n)
            t += duration
            r = r1
        self._tail = (t, r, n)  # after the stages: rate r from t on, N(t) = n

    @classmethod
    def of(cls, schedule: Schedule) -> ArrivalPlan:
        """The plan of an ``arrival_rate`` schedule (its ``rate`` and ``stages``)."""
        return cls(
            float(schedule.rate or 0.0),
            [(float(st.rate), float(st.duration_seconds)) for st in schedule.stages],
        )

    @property
    def staged(self) -> bool:
        """True when the rate changes during the run (the schedule has stages)."""
        return bool(self._segments) or self._tail[1] != self._rate

    def instant_ns(self, n: int) -> int:
        """When arrival ``n`` is due, ns after the start (``NEVER_NS`` if it never is)."""
        if not self._segments and self._tail[1] == self._rate:
            rate = self._rate
            return arrival_instant_ns(rate, n) if rate > 0 else NEVER_NS
        i = bisect.bisect_right(self._ends, n)
        if i < len(self._segments):
            t0, duration, r0, r1, n0 = self._segments[i]
            m = n - n0
            if m <= 0:
                return round(t0 * 1e9)
            root = math.sqrt(max(r0 * r0 + 2.0 * (r1 - r0) * m / duration, 0.0))
            dt = 2.0 * m / (r0 + root)
            return round((t0 + min(dt, duration)) * 1e9)
        t0, r, n0 = self._tail
        if r <= 0:
            return NEVER_NS
        t = (t0 + max(n - n0, 0.0) / r) * 1e9
        return round(t) if t < NEVER_NS else NEVER_NS  # a tiny rate: as good as never

    def count_at(self, t_s: float) -> float:
        """``N(t)``: the expected number of arrivals in ``[0, t_s]``."""
        if t_s <= 0:
            return 0.0
        for t0, duration, r0, r1, n0 in self._segments:
            if t_s < t0 + duration:
                dt = t_s - t0
                return n0 + r0 * dt + (r1 - r0) * dt * dt / (2 * duration)
        t0, r, n0 = self._tail
        return n0 + r * (t_s - t0)

    def rate_at(self, t_s: float) -> float:
        """The rate (iterations/s) at ``t_s`` seconds after the start."""
        for t0, duration, r0, r1, _ in self._segments:
            if t_s < t0 + duration:
                return r0 + (r1 - r0) * max(t_s - t0, 0.0) / duration
        return self._tail[1]

    def total(self, duration_s: float) -> int:
        """How many arrivals are due in ``[0, duration_s)``: the count of ``n >= 0`` with
        ``instant_ns(n) < round(duration_s * 1e9)``."""
        if duration_s <= 0:
            return 0
        if not self.staged:
            return arrivals_total(self._rate, duration_s)
        limit = round(duration_s * 1e9)
        n = max(math.ceil(self.count_at(duration_s)), 0)
        # The float estimate may be off by one either way; settle it on the exact instants.
        while n > 0 and self.instant_ns(n - 1) >= limit:
            n -= 1
        while self.instant_ns(n) < limit:
            n += 1
        return n
