"""Replay verification (``z6 replay --verify``): re-derive every VU decision and compare.

The determinism contract (``docs/determinism.md``) makes every decision of a run a pure
function of the seed, the scenario and ``(vu, iteration)``. :class:`ReplayVerifier` is fed the
batches of an event log in file order (the same ``(worker, events)`` pairs the reducer gets)
and checks, for every event:

- ``RequestEvent``: the request index and think time are those the planner derives for
  ``(vu, iteration, step)`` (open model: for ``(ARRIVAL_VU_KEY, iteration)``); the think time
  of an ``interrupted`` request is 0 (the hard stop ends the VU there, and nothing of it
  follows); steps of one VU follow each other in order (iteration ``i`` step ``s`` is
  followed by step ``s + 1`` or by iteration ``i + 1`` step 0); in iterations mode no
  iteration number reaches ``runtime.iterations``;
- every VU id belongs to the run (and to its shard) and to the worker whose frame carried it
  (``worker_slice``); ``WorkerStarted`` reports the right number of VUs;
- closed model: the ``k``-th ``VuStarted`` of a VU is not earlier than the start of its
  ``k``-th schedule window (``vu_windows``), within :data:`START_TOLERANCE_NS`; late is fine;
  in duration mode no iteration begins (step 0 sent) after that window's stop, within
  :data:`LATE_TOLERANCE_NS` (plus twice ``connection_timeout_ms`` when it had to connect);
- open model: each arrival ``n`` belongs to the worker that ran or dropped it, is due at
  ``ArrivalPlan.instant_ns(n)`` (the event's ``scheduled_ns``), is run or dropped at most once
  and is due before the end of the run.

At the end, when the footer says the run completed and the log is intact: in iterations mode
every VU of the shard must have done exactly ``runtime.iterations`` full iterations; in
duration mode (closed model) every window that began at least :data:`LATE_TOLERANCE_NS` before
the end must have been started, and no ``VuStopped`` may come before its window's stop.

Nothing here reads files or clocks: callers pass the scenario (rebuilt from the log header with
the run's options applied) and the batches. Memory is bounded by the number of VUs (plus one
bit per open-model arrival, up to :data:`MAX_ARRIVAL_BITS`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from z6.engine.decisions import (
    ARRIVAL_VU_KEY,
    Planner,
    open_model_arrival_owner,
    open_model_shard_arrivals,
    think_ns,
)
from z6.engine.error_kinds import CONNECT_FAILURES, ErrorKind
from z6.engine.scenario import Scenario
from z6.engine.schedule import ArrivalPlan, peak_vus, vu_windows
from z6.ipc.events import (
    Event,
    IterationDropped,
    RequestEvent,
    VuStarted,
    VuStopped,
    WorkerStarted,
)

__all__ = [
    "LATE_TOLERANCE_NS",
    "MAX_ARRIVAL_BITS",
    "MAX_KEPT_MISMATCHES",
    "START_TOLERANCE_NS",
    "Mismatch",
    "ReplayResult",
    "ReplayVerifier",
    "verify_batches",
    "verify_log",
]

START_TOLERANCE_NS = 1_000_000
"""How much earlier than its schedule window a VU may start (1 ms): sleep wake-ups and the
conversion between clocks may be a few microseconds early; a real schedule bug is far larger."""

LATE_TOLERANCE_NS = 1_000_000_000
"""How long after a window's stop (1 s) an iteration's first request may still leave: the VU
decides before its stop, and the request leaves at the end of that reactor round (a few ms
with thousands of VUs). A request that had to connect first may also wait for a connect slot
and the connect, each bounded by ``connection_timeout_ms``."""

MAX_KEPT_MISMATCHES = 100
"""Mismatches kept in :attr:`ReplayResult.mismatches`; all are counted."""

MAX_ARRIVAL_BITS = 1 << 27
"""Open model: runs with more arrivals than this skip the 'run at most once' check (the bitmap
would exceed 16 MiB)."""

_INTERRUPTED = int(ErrorKind.INTERRUPTED)
_NS = 1_000_000_000


@dataclass(frozen=True)
class Mismatch:
    """One disagreement between the log and the re-derived decisions.

    ``kind`` is one of ``request``, ``think``, ``step``, ``order``, ``iterations``, ``worker``,
    ``unknown_vu``, ``start``, ``arrival``, ``scenario``, ``incomplete``. ``vu``, ``iteration``
    and ``step`` locate it when they apply (``None`` otherwise); ``message`` is the readable
    text without the ``mismatch:`` prefix.
    """

    kind: str
    message: str
    vu: int | None = None
    iteration: int | None = None
    step: int | None = None

    def describe(self) -> str:
        """One line for users: ``mismatch: vu 3 iteration 7 step 0: expected request ...``."""
        return f"mismatch: {self.message}"


@dataclass
class ReplayResult:
    """What :class:`ReplayVerifier` found.

    ``events_checked`` counts request events whose decisions were re-derived; ``events_seen``
    counts every event. ``mismatches`` holds the first :data:`MAX_KEPT_MISMATCHES`;
    ``mismatch_count`` counts them all. ``notes`` say what could not be checked and why.
    """

    events_checked: int = 0
    events_seen: int = 0
    vus_seen: int = 0
    iterations_seen: int = 0
    dropped_seen: int = 0
    mismatch_count: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    completeness_checked: bool = False

    @property
    def ok(self) -> bool:
        """True when every checked decision matched."""
        return self.mismatch_count == 0

    @property
    def first(self) -> Mismatch | None:
        """The first mismatch in log order, or ``None``."""
        return self.mismatches[0] if self.mismatches else None


class _HeaderLike(Protocol):
    """The header fields replay reads (``z6.ipc.eventlog.LogHeader`` fits)."""

    @property
    def seed(self) -> int: ...
    @property
    def procs(self) -> int: ...
    @property
    def shard_index(self) -> int: ...
    @property
    def shard_count(self) -> int: ...
    @property
    def scenario_sha256(self) -> str: ...


class _FooterLike(Protocol):
    @property
    def outcome(self) -> str: ...


class _DamageLike(Protocol):
    def describe(self) -> str: ...


class ReaderLike(Protocol):
    """What :func:`verify_log` needs of a log reader (``EventLogReader`` fits)."""

    @property
    def header(self) -> _HeaderLike: ...
    @property
    def footer(self) -> _FooterLike | None: ...
    @property
    def damage(self) -> _DamageLike | None: ...
    def batches(self) -> Iterable[tuple[int, list[Event]]]: ...


class _VuState:
    """Per-VU progress: the next (iteration, step) expected and how often it started."""

    __slots__ = (
        "cut",
        "last_stop_ns",
        "next_iteration",
        "next_step",
        "starts",
        "stops",
    )

    def __init__(self) -> None:
        self.next_iteration = 0
        self.next_step = 0
        self.starts = 0
        self.stops = 0
        self.last_stop_ns = -1  # time of the VU's latest VuStopped
        self.cut = False  # its latest request was cut by the hard stop


class ReplayVerifier:
    """Checks batches of events against the decisions re-derived from scenario and seed.

    Feed every ``(worker, events)`` pair of a log in file order to :meth:`add`, then call
    :meth:`finish`. ``worker`` ``-1`` means unknown (the ownership checks are skipped).
    """

    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        procs: int,
        *,
        shard_index: int = 0,
        shard_count: int = 1,
    ) -> None:
        self.scenario = scenario
        self.seed = seed
        self.procs = max(procs, 1)
        self.shard_index = shard_index
        self.shard_count = max(shard_count, 1)
        self.result = ReplayResult()
        self._planner = Planner(scenario, seed)
        self._think = scenario.think_time
        self._names = scenario.request_names
        sched = scenario.schedule
        self._open = sched.type == "arrival_rate"
        self._vus = peak_vus(sched)
        self._iterations = scenario.runtime.iterations
        duration = scenario.runtime.duration_seconds
        self._run_length = duration if duration is not None else math.inf
        # The hard stop: the end plus the graceful stop, when in-flight work is cut.
        self._hard_stop_ns = (self._run_length + scenario.runtime.graceful_stop_seconds) * _NS
        # Duration mode, closed model: iterations must not begin after their window's stop.
        self._check_late = duration is not None and not self._open and self._iterations is None
        self._connect_allowance_ns = 2 * scenario.target.connection_timeout_ms * 1_000_000
        self._timeouts_ns = [r.timeout_ms * 1_000_000 for r in scenario.requests]
        # VuStopped events before their window's stop: a mismatch if the run completed.
        self._early_stops: list[tuple[int, int, float]] = []
        self._states: dict[int, _VuState] = {}
        self._windows: dict[int, list[tuple[float, float]]] = {}
        self._bad_vus: set[int] = set()
        # Open model: the arrival each pool VU is working on, and which arrivals happened.
        self._arrival_plan = ArrivalPlan.of(sched)
        self._arrivals = self._arrival_plan.total(duration or 0.0) if self._open else 0
        self._arrival_bits: bytearray | None = None
        if self._open:
            if self._arrivals <= MAX_ARRIVAL_BITS:
                self._arrival_bits = bytearray((self._arrivals + 7) // 8)
            else:
                self.result.notes.append(
                    f"{self._arrivals} arrivals: the 'each arrival at most once' check is skipped"
                )

    # ------------------------------------------------------------------ helpers

    def _mismatch(
        self,
        kind: str,
        message: str,
        vu: int | None = None,
        iteration: int | None = None,
        step: int | None = None,
    ) -> None:
        r = self.result
        r.mismatch_count += 1
        if len(r.mismatches) < MAX_KEPT_MISMATCHES:
            r.mismatches.append(Mismatch(kind, message, vu, iteration, step))

    def _name(self, index: int) -> str:
        if 0 <= index < len(self._names):
            return self._names[index]
        return f"request_{index}"

    def owner_of_vu(self, vu: int) -> int | None:
        """The worker that runs VU ``vu``, or ``None`` when the VU is not part of this shard."""
        if not 0 <= vu < self._vus or vu % self.shard_count != self.shard_index:
            return None
        return ((vu - self.shard_index) // self.shard_count) % self.procs

    def owner_of_arrival(self, n: int) -> int | None:
        """Open model: the worker that schedules arrival ``n``, or ``None`` if not this shard's."""
        return open_model_arrival_owner(
            n, self.procs, self.shard_index, self.shard_count, self._vus
        )

    def _check_vu(self, vu: int, worker: int) -> bool:
        """Ownership of ``vu``; reports once per VU and returns False when it is unknown."""
        owner = self.owner_of_vu(vu)
        if owner is None:
            if vu not in self._bad_vus:
                self._bad_vus.add(vu)
                self._mismatch(
                    "unknown_vu",
                    f"vu {vu} is not part of this run ({self._vus} VUs, shard "
                    f"{self.shard_index}/{self.shard_count})",
                    vu,
                )
            return False
        if 0 <= worker != owner and vu not in self._bad_vus:
            self._bad_vus.add(vu)
            self._mismatch(
                "worker", f"vu {vu}: recorded by worker {worker}, expected worker {owner}", vu
            )
        return True

    def _state(self, vu: int) -> _VuState:
        st = self._states.get(vu)
        if st is None:
            st = self._states[vu] = _VuState()
        return st

    def _windows_of(self, vu: int) -> list[tuple[float, float]]:
        w = self._windows.get(vu)
        if w is None:
            w = self._windows[vu] = vu_windows(self.scenario.schedule, vu, self._run_length)
        return w

    # ------------------------------------------------------------------ feeding

    def add(self, events: Sequence[Event], worker: int = -1) -> None:
        """Check one batch from ``worker`` (file order matters: a VU's events are ordered)."""
        r = self.result
        r.events_seen += len(events)
        for ev in events:
            t = type(ev)
            if t is RequestEvent:
                assert isinstance(ev, RequestEvent)
                if self._open:
                    self._open_request(ev, worker)
                else:
                    self._closed_request(ev, worker)
            elif t is VuStarted:
                assert isinstance(ev, VuStarted)
                self._vu_started(ev, worker)
            elif t is VuStopped:
                assert isinstance(ev, VuStopped)
                self._vu_stopped(ev, worker)
            elif t is IterationDropped:
                assert isinstance(ev, IterationDropped)
                self._dropped(ev, worker)
            elif t is WorkerStarted:
                assert isinstance(ev, WorkerStarted)
                self._worker_started(ev, worker)

    def _decisions(self, ev: RequestEvent, key_vu: int) -> None:
        """Check request and think time of one event; the VU state is the caller's job."""
        r = self.result
        r.events_checked += 1
        plan = self._planner.plan(key_vu, ev.iteration) if ev.iteration >= 0 else ()
        where = f"vu {ev.vu} iteration {ev.iteration} step {ev.step}"
        if not 0 <= ev.step < len(plan):
            self._mismatch(
                "step",
                f"{where}: an iteration has {len(plan)} request(s), no step {ev.step}",
                ev.vu,
                ev.iteration,
                ev.step,
            )
            return
        expected = plan[ev.step]
        if ev.request != expected:
            self._mismatch(
                "request",
                f"{where}: expected request '{self._name(expected)}', "
                f"found '{self._name(ev.request)}'",
                ev.vu,
                ev.iteration,
                ev.step,
            )
        # An interrupted request draws no think time: the VU ends there (recorded as 0).
        want = (
            think_ns(self._think, self.seed, key_vu, ev.iteration, ev.step)
            if ev.error != _INTERRUPTED
            else 0
        )
        if ev.think_ns != want:
            self._mismatch(
                "think",
                f"{where}: expected think time {want} ns, found {ev.think_ns} ns",
                ev.vu,
                ev.iteration,
                ev.step,
            )

    def _advance(self, st: _VuState, ev: RequestEvent, plan_len: int) -> None:
        """Order check, then move the VU's expected position past ``ev``."""
        if (ev.iteration, ev.step) != (st.next_iteration, st.next_step):
            self._mismatch(
                "order",
                f"vu {ev.vu} iteration {ev.iteration} step {ev.step}: out of order, expected "
                f"iteration {st.next_iteration} step {st.next_step} next",
                ev.vu,
                ev.iteration,
                ev.step,
            )
        if ev.step == 0:
            self.result.iterations_seen += 1
        if ev.step + 1 < plan_len:
            st.next_iteration, st.next_step = ev.iteration, ev.step + 1
        else:
            st.next_iteration, st.next_step = ev.iteration + 1, 0

    def _plan_len(self, key_vu: int, iteration: int) -> int:
        return len(self._planner.plan(key_vu, iteration)) if iteration >= 0 else 0

    def _closed_request(self, ev: RequestEvent, worker: int) -> None:
        if not self._check_vu(ev.vu, worker):
            return  # reported once; its decisions would only repeat that
        self._decisions(ev, ev.vu)
        limit = self._iterations
        if limit is not None and ev.iteration >= limit:
            self._mismatch(
                "iterations",
                f"vu {ev.vu} iteration {ev.iteration} step {ev.step}: beyond "
                f"runtime.iterations = {limit}",
                ev.vu,
                ev.iteration,
                ev.step,
            )
        st = self._state(ev.vu)
        self._after_cut(st, ev)
        st.cut = ev.error == ErrorKind.INTERRUPTED
        if ev.step == 0 and self._check_late and st.starts:
            self._late_iteration(ev, st)
        self._advance(st, ev, self._plan_len(ev.vu, ev.iteration))

    def _after_cut(self, st: _VuState, ev: RequestEvent) -> None:
        """Nothing of a VU follows its request the hard stop cut (``interrupted``)."""
        if st.cut:
            self._mismatch(
                "order",
                f"vu {ev.vu} iteration {ev.iteration} step {ev.step}: after the VU's "
                "interrupted request (the hard stop ends a VU)",
                ev.vu,
                ev.iteration,
                ev.step,
            )

    def _late_iteration(self, ev: RequestEvent, st: _VuState) -> None:
        """An iteration must begin before the stop of the VU's current window."""
        windows = self._windows_of(ev.vu)
        if st.starts > len(windows):
            return  # reported on the VuStarted
        if ev.error == ErrorKind.INTERRUPTED:
            # Cut at the hard stop; in logs from before unsent requests went unrecorded, maybe
            # while it waited to connect, and then its start is the cut.
            return
        stop = windows[st.starts - 1][1]
        latest = round(stop * _NS) + LATE_TOLERANCE_NS
        if ev.new_connection or ev.error in CONNECT_FAILURES:
            latest += self._connect_allowance_ns
            if ev.new_connection:
                # Maybe the idempotent retry on a fresh connection of a request that first
                # failed on a stale one, after up to its timeout: the retry's start counted in
                # logs before ``retried`` existed (and still does when the reconnect failed).
                latest += (
                    self._timeouts_ns[ev.request] if ev.request < len(self._timeouts_ns) else 0
                )
        if ev.start_ns > latest:
            self._mismatch(
                "late",
                f"vu {ev.vu} iteration {ev.iteration}: began at {ev.start_ns / _NS:.6f} s, "
                f"after its schedule window stopped at {stop:.6f} s",
                ev.vu,
                ev.iteration,
                0,
            )

    def _open_request(self, ev: RequestEvent, worker: int) -> None:
        self._decisions(ev, ARRIVAL_VU_KEY)
        if not self._check_vu(ev.vu, worker):
            return
        st = self._state(ev.vu)
        self._after_cut(st, ev)
        st.cut = ev.error == ErrorKind.INTERRUPTED
        n = ev.iteration
        if ev.step == 0:
            # A pool VU may leave an arrival unfinished only at the end of the run; a new
            # arrival starts at step 0, so resynchronize here instead of reporting order.
            st.next_iteration, st.next_step = n, 0
            self._arrival(n, ev.scheduled_ns, worker, f"vu {ev.vu} iteration {n} step 0")
            if ev.error != _INTERRUPTED and ev.start_ns < ev.scheduled_ns - START_TOLERANCE_NS:
                self._mismatch(
                    "start",
                    f"vu {ev.vu} iteration {n} step 0: started at {ev.start_ns} ns, before "
                    f"its arrival instant {ev.scheduled_ns} ns",
                    ev.vu,
                    n,
                    0,
                )
        self._advance(st, ev, self._plan_len(ARRIVAL_VU_KEY, n))

    def _arrival(self, n: int, scheduled_ns: int, worker: int, where: str) -> None:
        """Checks shared by a started and a dropped open-model arrival ``n``."""
        owner = self.owner_of_arrival(n)
        if owner is None or n >= self._arrivals:
            self._mismatch(
                "arrival",
                f"{where}: arrival {n} is not part of this run ({self._arrivals} arrivals, "
                f"shard {self.shard_index}/{self.shard_count})",
                iteration=n,
            )
            return
        if worker >= 0 and worker != owner:
            self._mismatch(
                "worker",
                f"{where}: arrival {n} handled by worker {worker}, expected worker {owner}",
                iteration=n,
            )
        due = self._arrival_plan.instant_ns(n)
        if scheduled_ns != due:
            self._mismatch(
                "arrival",
                f"{where}: arrival {n} scheduled at {scheduled_ns} ns, expected {due} ns",
                iteration=n,
            )
        bits = self._arrival_bits
        if bits is not None:
            byte, bit = divmod(n, 8)
            if bits[byte] >> bit & 1:
                self._mismatch("arrival", f"{where}: arrival {n} happened twice", iteration=n)
            bits[byte] |= 1 << bit

    def _dropped(self, ev: IterationDropped, worker: int) -> None:
        self.result.dropped_seen += 1
        if not self._open:
            self._mismatch(
                "arrival",
                f"iteration {ev.iteration} dropped, but only the open model drops iterations",
                iteration=ev.iteration,
            )
            return
        self._arrival(ev.iteration, ev.scheduled_ns, worker, f"dropped iteration {ev.iteration}")

    def _vu_started(self, ev: VuStarted, worker: int) -> None:
        if not self._check_vu(ev.vu, worker) or self._open:
            return  # open model: pool VUs start per arrival, checked on the request events
        st = self._state(ev.vu)
        k = st.starts
        st.starts += 1
        windows = self._windows_of(ev.vu)
        if k >= len(windows):
            self._mismatch(
                "start",
                f"vu {ev.vu}: started {k + 1} times, its schedule has {len(windows)} window(s)",
                ev.vu,
            )
            return
        w_start_ns = round(windows[k][0] * _NS)
        if ev.t_ns < w_start_ns - START_TOLERANCE_NS:
            self._mismatch(
                "start",
                f"vu {ev.vu}: started at {ev.t_ns / _NS:.6f} s, before its schedule window "
                f"at {windows[k][0]:.6f} s",
                ev.vu,
            )

    def _vu_stopped(self, ev: VuStopped, worker: int) -> None:
        if not self._check_vu(ev.vu, worker) or self._open:
            return
        st = self._state(ev.vu)
        k = st.stops
        st.stops += 1
        st.last_stop_ns = ev.t_ns
        windows = self._windows_of(ev.vu)
        if self._check_late and k < len(windows):
            stop = windows[k][1]
            if ev.t_ns < round(stop * _NS) - START_TOLERANCE_NS:
                self._early_stops.append((ev.vu, ev.t_ns, stop))

    def _worker_started(self, ev: WorkerStarted, worker: int) -> None:
        if not 0 <= ev.worker < self.procs:
            self._mismatch("worker", f"worker {ev.worker} started, but the run has {self.procs}")
            return
        if worker >= 0 and ev.worker != worker:
            self._mismatch("worker", f"worker {ev.worker} started in a frame of worker {worker}")
        mine = len(range(self.shard_index, self._vus, self.shard_count)[ev.worker :: self.procs])
        if ev.vus != mine:
            self._mismatch(
                "worker", f"worker {ev.worker}: started with {ev.vus} VUs, expected {mine}"
            )

    # ------------------------------------------------------------------ end

    def finish(self, *, complete: bool) -> ReplayResult:
        """Final checks; ``complete`` says the log is intact and the run completed.

        In iterations mode (closed model) a complete run must show every VU of the shard
        with exactly ``runtime.iterations`` full iterations; in the open model it must show
        every arrival of the shard, run or dropped.
        """
        r = self.result
        r.vus_seen = len(self._states)
        limit = self._iterations
        if self._open:
            if self._arrival_bits is not None:
                seen = sum(bin(b).count("1") for b in self._arrival_bits)
                mine = open_model_shard_arrivals(
                    self._arrivals, self.shard_index, self.shard_count, self._vus
                )
                if seen < mine and complete:
                    # Every arrival due before the end is run or dropped (SPEC section 3).
                    self._mismatch(
                        "incomplete",
                        f"{mine - seen} of {mine} arrivals due before the end were neither "
                        "started nor counted as dropped",
                    )
                elif seen < mine:
                    r.notes.append(
                        f"{mine - seen} of {mine} arrivals due never started (the run stopped "
                        "early, or the log is incomplete)"
                    )
            return r
        if limit is None:
            if self._check_late:
                self._schedule_kept(complete)
            return r
        if not complete:
            r.notes.append("iteration counts not checked: the run did not complete")
            return r
        r.completeness_checked = True
        for vu in range(self.shard_index, self._vus, self.shard_count):
            if not self._windows_of(vu):
                continue
            st = self._states.get(vu)
            done = 0 if st is None else st.next_iteration
            partial = st is not None and st.next_step != 0
            if done != limit or partial:
                what = f"{done} full iteration(s)" + (" and a partial one" if partial else "")
                self._mismatch(
                    "incomplete", f"vu {vu}: did {what}, expected {limit} iterations", vu
                )
        return r

    def _schedule_kept(self, complete: bool) -> None:
        """Duration mode, closed model: a complete run started every window that began at
        least ``LATE_TOLERANCE_NS`` before the end, and stopped none of its VUs early."""
        if not complete:
            if self._early_stops or self._states:
                self.result.notes.append(
                    "VU starts and stops not checked: the run did not complete"
                )
            return
        for vu, t_ns, stop in self._early_stops:
            self._mismatch(
                "stop",
                f"vu {vu}: stopped at {t_ns / _NS:.6f} s, before its schedule window's stop "
                f"at {stop:.6f} s",
                vu,
            )
        last = self._run_length - LATE_TOLERANCE_NS / _NS
        for vu in range(self.shard_index, self._vus, self.shard_count):
            due = [w for w in self._windows_of(vu) if w[0] <= last]
            st = self._states.get(vu)
            started = 0 if st is None else st.starts
            if (
                st is not None
                and started < len(due)
                and st.last_stop_ns >= due[started][0] * _NS
                and (st.cut or st.last_stop_ns >= self._hard_stop_ns - LATE_TOLERANCE_NS)
            ):
                # Still in an iteration of its last window when the next one opened, and until
                # the hard stop ended it (cutting a request that hung, or one still connecting,
                # which is not recorded): it could not start it.
                continue
            if started < len(due):
                self._mismatch(
                    "start",
                    f"vu {vu}: started {started} time(s), its schedule has {len(due)} "
                    f"window(s) beginning at least {LATE_TOLERANCE_NS / _NS:g} s before the end "
                    f"(next at {due[started][0]:.6f} s)",
                    vu,
                )


def _verifier_for(scenario: Scenario, header: _HeaderLike) -> ReplayVerifier:
    verifier = ReplayVerifier(
        scenario,
        header.seed,
        header.procs,
        shard_index=header.shard_index,
        shard_count=header.shard_count,
    )
    if scenario.sha256 and header.scenario_sha256 != scenario.sha256:
        verifier._mismatch(
            "scenario",
            f"the embedded scenario's SHA-256 is {scenario.sha256[:12]}..., the header says "
            f"{header.scenario_sha256[:12]}...",
        )
    return verifier


def verify_batches(
    scenario: Scenario,
    header: _HeaderLike,
    batches: Iterable[tuple[int, Sequence[Event]]],
    *,
    complete: bool,
) -> ReplayResult:
    """Verify ``batches`` (``(worker, events)`` in file order) of a run of ``scenario``.

    ``complete`` turns on the final completeness check (see :meth:`ReplayVerifier.finish`).
    """
    verifier = _verifier_for(scenario, header)
    for worker, events in batches:
        verifier.add(events, worker)
    return verifier.finish(complete=complete)


def verify_log(reader: ReaderLike, scenario: Scenario) -> ReplayResult:
    """Verify a whole log; ``scenario`` is the one embedded in it with the run's options applied.

    Damage stops the check at the first bad frame (a note says where); the completeness check
    needs an intact log whose footer says ``complete``.
    """
    verifier = _verifier_for(scenario, reader.header)
    for worker, events in reader.batches():
        verifier.add(events, worker)
    damage = reader.damage
    footer = reader.footer
    notes: list[str] = []
    if damage is not None:
        notes.append(f"log damaged at {damage.describe()}: checked what precedes it")
    elif footer is None:
        notes.append("no footer: the run did not finish")
    elif footer.outcome != "complete":
        notes.append(f"the run ended as '{footer.outcome}'")
    complete = damage is None and footer is not None and footer.outcome == "complete"
    result = verifier.finish(complete=complete)
    result.notes[:0] = notes
    return result
