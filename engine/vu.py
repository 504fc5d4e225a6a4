"""The VU runtime: one trio event loop driving this worker's slice of virtual users.

Nothing here knows about processes or rings. The worker gives the runtime a ``WorkPlan`` and
an async ``write_batch`` callable; the runtime runs the VUs over real sockets and hands every
event it produces to ``write_batch`` in batches. All decisions come from
``z6.engine.decisions`` (a pure function of seed, VU and iteration) and all timing from
``z6.engine.schedule``, so the same plan gives the same decisions in any worker layout.

The VUs are coroutines driven by a ``z6.engine.reactor.Reactor`` (one trio task), not trio
tasks of their own: see that module for why. The runtime's own trio tasks are the reactor, a
flusher (every ``FLUSH_INTERVAL_S``) and whatever the worker adds.

Stopping:
- soft end (duration over, ramp-down, or ``request_stop()`` after SIGINT): no new request is
  started; the request in flight may finish;
- hard end (soft end + ``graceful_stop_seconds``): whatever is still in flight is interrupted
  and recorded as ``interrupted``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import trio

from z6.engine.client import Connection, Outcome, prefetch_address
from z6.engine.cookies import CookieJar, cookie_host
from z6.engine.decisions import (
    ARRIVAL_VU_KEY,
    Planner,
    open_model_worker_iterations,
    think_ns,
    worker_slice,
)
from z6.engine.error_kinds import ErrorKind
from z6.engine.protocol import engine_factory
from z6.engine.reactor import (
    Interrupted,
    Reactor,
    Semaphore,
    TimeoutGuard,
    checkpoint,
    sleep_until,
)
from z6.engine.requests import PreparedRequest, parse_base_url, prepare_requests
from z6.engine.scenario import Scenario
from z6.engine.schedule import ArrivalPlan, vu_windows
from z6.ipc.events import (
    Event,
    IterationDropped,
    RequestEvent,
    VuStarted,
    VuStopped,
    WorkerFinished,
    WorkerStarted,
)

BATCH_MAX = 512  # events per ring record; large enough to amortize encoding, small for latency
FLUSH_INTERVAL_S = 0.05
CONNECTS_IN_FLIGHT = 256  # per worker; see Connection.connect_limiter
_NO_LIMIT = 1 << 62  # iterations of a VU without an iteration limit
_NS = 1_000_000_000
_DROP_CHUNK = 1024  # past-due arrivals dropped between two reactor turns
LATE_ARRIVAL_NS = 100_000_000
"""Open model: how long after the run's end (0.1 s) an arrival due before it may still start.

The arrival due 0.5 ms before the end of a 2,000/s run was dropped in a third of the runs on a
busy 2-core machine: the worker reached it 1-4 ms late, as it reaches arrivals mid-run, where
that lateness only shows in ``latency_corrected_ms``. Past this bound the worker is behind, not
jittery, and the rest is dropped: an overloaded run does not go on for its whole backlog. A stop
request (SIGINT) allows none."""


@dataclass(frozen=True)
class WorkPlan:
    """Everything one worker needs to run its slice; plain picklable data.

    ``run_start_ns`` is the common start instant (``time.perf_counter_ns()`` clock, which is
    CLOCK_MONOTONIC on Linux and so shared by all processes). ``duration_s`` is ``None`` in
    iterations mode. ``vus`` is the number of VU ids of the whole test (all shards).
    """

    scenario: Scenario
    seed: int
    procs: int
    worker_index: int
    run_start_ns: int
    duration_s: float | None
    iterations: int | None
    vus: int
    engine: str = "h11"
    shard_index: int = 0
    shard_count: int = 1

    @property
    def open_model(self) -> bool:
        """True for the ``arrival_rate`` schedule."""
        return self.scenario.schedule.type == "arrival_rate"


WriteBatch = Callable[[list[Event]], Awaitable[None]]


@dataclass
class _Counters:
    events: int = 0
    requests_started: int = 0
    ring_waits: int = 0
    ring_wait_ns: int = 0
    # Never replaced (flushes copy and clear it): the reactor watches its length.
    batch: list[Event] = field(default_factory=list)


class VuRuntime:
    """Runs the VUs of one worker. Create it, then ``await runtime.run()`` inside trio."""

    def __init__(self, plan: WorkPlan, write_batch: WriteBatch) -> None:
        self.plan = plan
        self._write_batch = write_batch
        sc = plan.scenario
        self._requests: list[PreparedRequest] = prepare_requests(sc)
        self._planner = Planner(sc, plan.seed)
        self._think = sc.think_time
        scheme, host, port, _prefix = parse_base_url(sc.target.base_url)
        self._host = host
        self._port = port
        self._tls = None
        if scheme == "https":
            from z6.engine.client import make_ssl_context

            self._tls = make_ssl_context(sc.target.verify_cert, sc.target.ca_bundle)
        self._connect_timeout_s = sc.target.connection_timeout_ms / 1000
        # [target] cookies: a jar per VU in the closed model (``_Slot.jar``), per iteration
        # in the open model (which VU runs an arrival depends on timing).
        self._cookies = sc.target.cookies
        self._cookie_host = cookie_host(self._requests, host)
        self._parser_factory = engine_factory(plan.engine, self._cookies)
        self._c = _Counters()
        start = plan.run_start_ns
        self._start_ns = start
        if plan.duration_s is None:
            self._end_ns: float = math.inf
        else:
            self._end_ns = start + round(plan.duration_s * _NS)
        self._graceful_ns = round(sc.runtime.graceful_stop_seconds * _NS)
        self._stopping = False
        self._flush_lock = trio.Lock()
        self._connect_limiter = Semaphore(CONNECTS_IN_FLIGHT)
        self._reactor = Reactor(self._c.batch, BATCH_MAX, self.flush)
        self._slots: list[_Slot] = []
        # Open model: arrivals spawned whose iteration has not begun. The hard stop cancels a
        # task that never ran before its first line; those are recorded as dropped at the end.
        self._unbegun: dict[int, int] = {}

    # -- clock -----------------------------------------------------------------------------

    async def _sleep_until(self, perf_ns: float) -> bool:
        """Sleep until ``perf_ns``; False (early) when the run stops or ends before it."""
        if self._stopping:
            return False
        # Never sleep past the soft end: a long think time must not stretch the run to the
        # hard stop.
        target = min(perf_ns, self._end_ns)
        if target > time.perf_counter_ns():
            await sleep_until(int(target))
        return not self._stopping and perf_ns <= self._end_ns

    def _last_start_ns(self) -> float:
        """Open model: the instant after which an arrival due before the end no longer starts
        (the end plus ``LATE_ARRIVAL_NS``; the end itself once a stop was requested)."""
        return self._end_ns if self._stopping else self._end_ns + LATE_ARRIVAL_NS

    def request_stop(self) -> None:
        """Soft-stop now (SIGINT/SIGTERM): no new requests; hard stop after the graceful time.

        Called from trio (the worker's stop watcher), never from a VU.
        """
        now = time.perf_counter_ns()
        if now < self._end_ns:
            self._end_ns = now
        self._stopping = True
        reactor = self._reactor
        reactor.hard_stop_ns = min(reactor.hard_stop_ns, now + self._graceful_ns)
        reactor.wake_sleepers()

    # -- events ----------------------------------------------------------------------------

    def _emit(self, ev: Event) -> None:
        # The reactor flushes the batch once it holds BATCH_MAX events.
        self._c.batch.append(ev)
        self._c.events += 1

    async def flush(self) -> None:
        """Hand the pending events to ``write_batch`` (waits while the ring is full)."""
        c = self._c
        if c.batch:
            batch = c.batch[:]
            c.batch.clear()
            # Shielded: a batch taken out of the buffer must reach the ring even when the run
            # is being torn down. Locked (trio locks are FIFO): while one flush waits on a
            # full ring, another must neither overtake it (event order) nor reuse the
            # writer's encode buffer under it.
            with trio.CancelScope(shield=True):
                async with self._flush_lock:
                    await self._write_batch(batch)

    def add_ring_wait(self, wait_ns: int) -> None:
        """Count one write that found the ring full and waited ``wait_ns`` for room
        (reported in ``WorkerFinished``)."""
        self._c.ring_waits += 1
        self._c.ring_wait_ns += wait_ns

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every VU of this worker to the end, then emit ``WorkerFinished`` and flush."""
        plan = self.plan
        reactor = self._reactor
        if self._end_ns != math.inf and not self._stopping:
            reactor.hard_stop_ns = min(reactor.hard_stop_ns, int(self._end_ns + self._graceful_ns))
        my_vus = worker_slice(
            plan.vus, plan.procs, plan.worker_index, plan.shard_index, plan.shard_count
        )
        self._emit(
            WorkerStarted(plan.worker_index, _pid(), self._rel(time.perf_counter_ns()), len(my_vus))
        )
        await prefetch_address(self._host, self._port, min(self._connect_timeout_s, 1.0))
        if plan.open_model:
            reactor.spawn(self._open_model(my_vus))
        else:
            for vu in my_vus:
                reactor.spawn(self._closed_vu(vu))
        try:
            async with trio.open_nursery() as outer:
                outer.start_soon(self._flusher)
                await reactor.run()
                outer.cancel_scope.cancel()
        finally:
            for slot in self._slots:
                slot.conn.close()
        for n, due_rel in sorted(self._unbegun.items()):
            self._emit(IterationDropped(n, due_rel))
        c = self._c
        fin = WorkerFinished(
            plan.worker_index,
            self._rel(time.perf_counter_ns()),
            c.events,
            c.requests_started,
            c.ring_waits,
            c.ring_wait_ns,
        )
        c.batch.append(fin)
        await self.flush()

    def _rel(self, perf_ns: int) -> int:
        return perf_ns - self._start_ns

    async def _flusher(self) -> None:
        while True:
            await trio.sleep(FLUSH_INTERVAL_S)
            await self.flush()

    def _new_slot(self, vu: int) -> _Slot:
        conn = Connection(
            self._host,
            self._port,
            tls=self._tls,
            server_hostname=self._host if self._tls is not None else None,
            connect_timeout_s=self._connect_timeout_s,
            parser_factory=self._parser_factory,
            connect_limiter=self._connect_limiter,
        )
        slot = _Slot(vu, conn, TimeoutGuard())
        if self._cookies and not self.plan.open_model:
            slot.jar = CookieJar(self._cookie_host)  # the VU's for its life
        self._slots.append(slot)
        return slot

    async def _closed_vu(self, vu: int) -> None:
        """A closed-model VU: active during its schedule windows, iterating back to back."""
        plan = self.plan
        length = plan.duration_s if plan.duration_s is not None else math.inf
        windows = vu_windows(plan.scenario.schedule, vu, length)
        if not windows:
            return
        slot = self._new_slot(vu)
        limit = plan.iterations
        try:
            for w_start, w_stop in windows:
                if not await self._sleep_until(self._start_ns + w_start * _NS):
                    break
                # In iterations mode a VU runs its N iterations from its first start.
                stop_ns = (
                    self._end_ns
                    if limit is not None
                    else min(self._end_ns, self._start_ns + w_stop * _NS)
                )
                self._emit(VuStarted(vu, self._rel(time.perf_counter_ns())))
                try:
                    last = limit if limit is not None else _NO_LIMIT
                    await self._iterations(slot, slot.iteration, last, stop_ns, -1, vu)
                finally:
                    self._emit(VuStopped(vu, self._rel(time.perf_counter_ns()), slot.iteration))
                if limit is not None:
                    break
        finally:
            slot.conn.close()

    async def _iterations(
        self,
        slot: _Slot,
        first: int,
        last: int,
        stop_ns: float,
        scheduled_ns: int,
        dvu: int,
    ) -> bool:
        """Iterations ``first .. last - 1``, each started only before ``stop_ns`` and the end
        of the run: the planned requests in order, each followed by its think time. ``dvu``
        is the VU id of the decision key (``ARRIVAL_VU_KEY`` in the open model, which runs
        one iteration per call; a closed VU counts its finished iterations in ``slot``).
        Returns early when the window or the run ends; returns whether any request was sent
        (an open-model iteration that never sent one was dropped, not run). The hard stop
        (``Interrupted``) propagates, recording the request it cut in flight; a request it cut
        before its bytes left is not recorded (and an open-model iteration cut so before its
        first request returns False).

        One call runs a closed VU's whole window, so the set-up below is paid once per window
        rather than once per iteration (a coroutine and a dozen lookups per request).
        """
        plan = self._planner.plan
        requests = self._requests
        c = self._c
        seed = self.plan.seed
        think = self._think
        vu = slot.vu
        conn = slot.conn
        out = slot.out
        guard = slot.guard
        start_ns = self._start_ns
        batch = c.batch
        closed = dvu != ARRIVAL_VU_KEY
        # An open-model arrival's first request may leave a little after the end (see
        # LATE_ARRIVAL_NS); every later request, and every closed-model one, only before it.
        late_ok = not closed
        jar = slot.jar
        if self._cookies and not closed:
            jar = CookieJar(self._cookie_host)  # the open model: one jar per iteration
        https = self._tls is not None
        path = ""
        iteration = first
        while iteration < last:
            # _end_ns moves earlier on a stop request: read it on every pass.
            if not late_ok and time.perf_counter_ns() >= min(stop_ns, self._end_ns):
                return iteration > first
            steps = plan(dvu, iteration)
            for step in range(len(steps)):
                if late_ok:
                    late_ok = False
                    if time.perf_counter_ns() >= self._last_start_ns():
                        return False
                elif time.perf_counter_ns() >= self._end_ns:
                    return iteration > first or step > 0
                req_index = steps[step]
                req = requests[req_index]
                if req.varies:
                    req = req.render(seed, vu, dvu, iteration, step)
                if jar is not None:
                    path = _cookie_path(req.target)
                    cookie = jar.header(path, https, time.monotonic())
                    if cookie is not None:
                        req = req.with_cookie(cookie)
                c.requests_started += 1
                stopped: Interrupted | None = None
                try:
                    await conn.request(req, out, guard)
                except Interrupted as exc:
                    if out.start_ns == 0:
                        # Cut before its bytes left (connecting, or parked for the send at
                        # the end of the round): the server never saw it, so it is no
                        # request. An open-model arrival that sent nothing is dropped.
                        c.requests_started -= 1
                        if not closed and iteration == first and step == 0:
                            return False
                        raise
                    # The hard stop cut the request in flight: record it as interrupted, then
                    # end.
                    stopped = exc
                    out.status = 0
                    out.error = ErrorKind.INTERRUPTED
                t_ns = think_ns(think, seed, dvu, iteration, step) if think and not stopped else 0
                # Inlined _emit: this runs once per request.
                batch.append(
                    RequestEvent(
                        vu,
                        iteration,
                        req_index,
                        step,
                        out.start_ns - start_ns,
                        out.end_ns - out.start_ns,
                        out.status,
                        int(out.error),
                        out.bytes_received,
                        out.new_connection,
                        out.connect_ns,
                        scheduled_ns,
                        t_ns,
                        out.retried,
                    )
                )
                c.events += 1
                if stopped is not None:
                    raise stopped
                if jar is not None and out.status and out.set_cookies:
                    jar.store(out.set_cookies, path, https, time.monotonic())
                if t_ns and not await self._sleep_until(time.perf_counter_ns() + t_ns):
                    return True
            iteration += 1
            if closed:
                slot.iteration = iteration
        return iteration > first

    async def _open_model(self, my_vus: list[int]) -> None:
        """Open model: start iterations at the declared rate from a pool of idle VUs."""
        plan = self.plan
        arrival_plan = ArrivalPlan.of(plan.scenario.schedule)
        instant_ns = arrival_plan.instant_ns
        duration = plan.duration_s or 0.0
        total = arrival_plan.total(duration)
        idle = [self._new_slot(vu) for vu in reversed(my_vus)]
        reactor = self._reactor
        arrivals = open_model_worker_iterations(
            total, plan.procs, plan.worker_index, plan.shard_index, plan.shard_count, plan.vus
        )
        unbegun = self._unbegun
        n = 0
        try:
            for n in arrivals:
                due = self._start_ns + instant_ns(n)
                if (
                    not await self._sleep_until(due)
                    or time.perf_counter_ns() >= self._last_start_ns()
                ):
                    # The run ended more than LATE_ARRIVAL_NS ago (or was stopped). Arrivals
                    # that came due before its end but were not started because this loop
                    # fell behind are dropped, never skipped silently (SPEC section 3).
                    await self._drop_past_due(n, arrivals, instant_ns)
                    break
                if not idle:
                    # Catching up on past-due arrivals never sleeps: give iterations that have
                    # just finished one chance to hand their VU back before dropping.
                    await checkpoint()
                if not idle:
                    self._emit(IterationDropped(n, due - self._start_ns))
                    continue
                slot = idle.pop()
                unbegun[n] = due - self._start_ns
                reactor.spawn(self._open_iteration(slot, idle, n, due))
        except Interrupted:
            # The hard stop came while this loop was still catching up: ``n`` and the rest
            # due before the end were not handled, and are dropped (no request is sent).
            await self._drop_past_due(n, arrivals, instant_ns)

    async def _drop_past_due(
        self, first: int, rest: Iterator[int], instant_ns: Callable[[int], int]
    ) -> None:
        """Record ``first`` and the following arrivals of ``rest`` that were due before the
        run's end as ``IterationDropped``, with a reactor turn (which hands a full batch to
        the ring) every ``_DROP_CHUNK``."""
        start = self._start_ns
        end = self._end_ns
        n = first
        emitted = 0
        while True:
            due = start + instant_ns(n)
            if due >= end:
                return
            self._emit(IterationDropped(n, due - start))
            emitted += 1
            if emitted % _DROP_CHUNK == 0:
                # The hard stop must not cut this accounting short (no I/O here).
                with contextlib.suppress(Interrupted):
                    await checkpoint()
            nxt = next(rest, None)
            if nxt is None:
                return
            n = nxt

    async def _open_iteration(self, slot: _Slot, idle: list[_Slot], n: int, due_ns: int) -> None:
        """Run open-model iteration ``n`` (due at ``due_ns``) on ``slot``'s VU. It may first run
        after the run's end: up to ``LATE_ARRIVAL_NS`` after it, it starts late; later (an
        overloaded worker) or after a stop request, it is recorded as dropped, like an arrival
        that found no free VU (SPEC section 3)."""
        del self._unbegun[n]
        vu = slot.vu
        now = time.perf_counter_ns()
        if now >= self._last_start_ns():
            self._emit(IterationDropped(n, due_ns - self._start_ns))
            idle.append(slot)
            return
        self._emit(VuStarted(vu, self._rel(now)))
        began = True
        try:
            # Decisions of open-model iteration n depend on (seed, n) only: which VU runs it
            # depends on timing, so the decision key uses the reserved ARRIVAL_VU_KEY.
            began = await self._iterations(
                slot, n, n + 1, self._end_ns, due_ns - self._start_ns, ARRIVAL_VU_KEY
            )
            if not began:  # the run ended between the check above and the first request
                self._emit(IterationDropped(n, due_ns - self._start_ns))
        finally:
            self._emit(VuStopped(vu, self._rel(time.perf_counter_ns()), int(began)))
            idle.append(slot)


class _Slot:
    """One VU's connection, timeout guard, reused outcome, completed-iteration count and jar."""

    __slots__ = ("conn", "guard", "iteration", "jar", "out", "vu")

    def __init__(self, vu: int, conn: Connection, guard: TimeoutGuard) -> None:
        self.vu = vu
        self.conn = conn
        self.out = Outcome()
        self.guard = guard
        self.iteration = 0
        self.jar: CookieJar | None = None  # [target] cookies, closed model


def _cookie_path(target: str) -> str:
    """The path of a request target, what cookie paths are matched against (no query)."""
    cut = target.find("?")
    return target if cut < 0 else target[:cut]


def _pid() -> int:
    import os

    return os.getpid()
