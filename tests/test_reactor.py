"""The VU reactor: readiness, timers, guards, the hard stop, the semaphore, misuse."""

from __future__ import annotations

import math
import os
import resource
import select
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from time import perf_counter_ns
from typing import Any

import pytest
import trio
import trio.lowlevel

import z6.engine.reactor as reactor_module
from z6.engine.reactor import (
    DeadlineExceeded,
    Interrupted,
    Reactor,
    ReactorMisuse,
    Semaphore,
    TimeoutGuard,
    checkpoint,
    run_tasks,
    send_then_wait_readable,
    sleep_until,
    wait_readable,
)

MS = 1_000_000
real_select = select.select


def _run_bounded(stop_ms: int, *coros: Coroutine[Any, Any, None]) -> Reactor:
    """Run ``coros`` on a new reactor whose hard stop is ``stop_ms`` from now (so a test
    ends by itself even when what it checks is broken); returns the finished reactor."""
    reactor = Reactor()

    async def main() -> None:
        for coro in coros:
            reactor.spawn(coro)
        reactor.hard_stop_ns = perf_counter_ns() + stop_ms * MS
        await reactor.run()

    trio.run(main)
    return reactor


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected pair of non-blocking sockets."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_wait_readable_wakes_when_data_arrives(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    got: list[bytes] = []

    async def reader() -> None:
        assert await wait_readable(a.fileno())
        got.append(a.recv(100))

    async def writer() -> None:
        await sleep_until(perf_counter_ns() + 20 * MS)
        b.send(b"hello")

    trio.run(run_tasks, reader(), writer())
    assert got == [b"hello"]


def test_wait_readable_deadline_returns_false(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _b = pair
    result: list[object] = []

    async def reader() -> None:
        t0 = perf_counter_ns()
        result.append(await wait_readable(a.fileno(), t0 + 30 * MS))
        result.append(perf_counter_ns() - t0 >= 30 * MS)

    trio.run(run_tasks, reader())
    assert result == [False, True]


def test_sleep_until_orders_wakeups() -> None:
    order: list[int] = []
    now = perf_counter_ns()

    async def sleeper(n: int, at_ms: int) -> None:
        assert await sleep_until(now + at_ms * MS)
        assert perf_counter_ns() >= now + at_ms * MS
        order.append(n)

    trio.run(run_tasks, sleeper(1, 30), sleeper(2, 10), sleeper(3, 20))
    assert order == [2, 3, 1]


def _record_select(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Make ``select.select`` record the timeouts it is called with (and still wait)."""
    timeouts: list[float] = []
    real = select.select

    def recording(r: Any, w: Any, x: Any, timeout: float | None = None) -> Any:
        assert timeout is not None
        timeouts.append(timeout)
        return real(r, w, x, timeout)

    monkeypatch.setattr(select, "select", recording)
    return timeouts


def _sleep_steps(late: list[int], step_ns: int, steps: int) -> Coroutine[Any, Any, None]:
    async def sleeper() -> None:
        for _ in range(steps):
            # Each deadline from the time of the call: a preempted test machine still waits.
            at = perf_counter_ns() + step_ns
            assert await sleep_until(at)
            late.append(perf_counter_ns() - at)

    return sleeper()


def test_the_last_stretch_before_a_timer_is_waited_to_the_microsecond(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """epoll's timeout is whole milliseconds rounded up: a timer 0.3 ms away fired up to 1 ms
    late. The reactor waits for the last stretch before a timer with select() on its epoll
    set, asking for the time left to the microsecond, and never wakes a sleep early."""
    timeouts = _record_select(monkeypatch)
    late: list[int] = []
    trio.run(run_tasks, _sleep_steps(late, 900_000, 20))
    assert len(late) == 20
    assert min(late) >= 0
    assert timeouts
    assert all(0 <= t < 0.001 for t in timeouts), timeouts


def test_timers_still_fire_when_the_epoll_set_is_beyond_select(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An epoll descriptor above select()'s limit keeps epoll's millisecond waits."""
    timeouts = _record_select(monkeypatch)
    late: list[int] = []
    reactor = Reactor()
    reactor._ep_sel = None  # as when the descriptor is >= FD_SETSIZE

    async def main() -> None:
        reactor.spawn(_sleep_steps(late, 900_000, 3))
        reactor.hard_stop_ns = perf_counter_ns() + 5_000 * MS
        await reactor.run()

    trio.run(main)
    assert len(late) == 3
    assert min(late) >= 0
    assert timeouts == []


def test_trio_gets_turns_while_timers_are_too_close_for_a_park(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Timers 0.5 ms apart are all waited for with select(), never parked in trio: trio
    still gets a turn once a millisecond has passed since its last one, so at most a few
    waits (one per timer) come between two runs of a trio task that is always ready."""
    log: list[str] = []
    real = select.select

    def recording(r: Any, w: Any, x: Any, timeout: float | None = None) -> Any:
        log.append("wait")
        return real(r, w, x, timeout)

    monkeypatch.setattr(select, "select", recording)
    late: list[int] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:

            async def always_ready() -> None:
                while True:
                    log.append("turn")
                    await trio.lowlevel.checkpoint()

            nursery.start_soon(always_ready)
            await run_tasks(_sleep_steps(late, 500_000, 100))
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert len(late) == 100
    assert log.count("wait") >= 10
    runs = "".join("w" if x == "wait" else "t" for x in log).split("t")
    assert max(len(r) for r in runs) <= 4, runs


def test_an_epoll_set_beyond_select_is_duplicated_onto_a_low_descriptor(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A worker inherits the supervisor's descriptors; were its epoll set's number 1024 or
    more, select() would refuse it: the reactor selects on a low duplicate of the set."""
    a, b = pair
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= 1500:
        pytest.skip("needs descriptors above 1500")
    ep = select.epoll()
    high = os.dup2(ep.fileno(), 1500)
    try:
        low = reactor_module._selectable(high)
        assert 0 <= low < 1024
        ep.register(a.fileno(), select.EPOLLIN)
        assert real_select([low], [], [], 0)[0] == []
        b.send(b"x")
        assert real_select([low], [], [], 1.0)[0] == [low]
        os.close(low)
        assert reactor_module._selectable(ep.fileno()) == ep.fileno()
    finally:
        os.close(high)
        ep.close()


def test_a_reactor_waits_on_its_duplicate_set_and_closes_it(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the set's own number too high (simulated: every set gets a duplicate), precise
    waits select on the duplicate, wake on readiness through it, and it is closed after
    the run."""
    dups: list[int] = []

    def dup(fd: int) -> int:
        dups.append(os.dup(fd))
        return dups[-1]

    monkeypatch.setattr(reactor_module, "_selectable", dup)
    timeouts = _record_select(monkeypatch)
    a, b = pair
    reactor = Reactor()
    got: list[bytes] = []

    async def reader() -> None:
        assert await wait_readable(a.fileno(), perf_counter_ns() + 5_000 * MS)
        got.append(a.recv(10))

    async def writer() -> None:
        for _ in range(3):
            assert await sleep_until(perf_counter_ns() + MS)
        b.send(b"x")

    async def main() -> None:
        reactor.spawn(reader())
        reactor.spawn(writer())
        reactor.hard_stop_ns = perf_counter_ns() + 10_000 * MS
        await reactor.run()

    trio.run(main)
    assert got == [b"x"]
    assert timeouts
    assert len(dups) == 1
    assert reactor._ep_dup is not None
    assert reactor._ep_dup.closed


class _RecordingEpoll:
    """An epoll set that records, for every wait with a timeout, how long the reactor's next
    deadline was away from the reactor's own reading of the clock (the ``now`` it computed
    the timeout from), so that the check does not depend on how fast the machine is."""

    def __init__(self, reactor: Reactor, monkeypatch: pytest.MonkeyPatch) -> None:
        self._ep = reactor._ep
        self._reactor = reactor
        self.waits: list[tuple[float, int]] = []  # (timeout_s, ns to the next deadline)
        self._now = 0

        def clock() -> int:
            self._now = perf_counter_ns()
            return self._now

        monkeypatch.setattr(reactor_module, "perf_counter_ns", clock)

    def poll(self, timeout: float = -1) -> list[tuple[int, int]]:
        if timeout > 0:
            self.waits.append((timeout, self._reactor._next_deadline() - self._now))
        return self._ep.poll(timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ep, name)


def test_epoll_rounding_never_carries_a_wait_past_a_timer(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """epoll rounds its timeout up to whole milliseconds: a wait in it is only started when
    the next deadline is at least that rounded timeout away, also while sockets keep
    becoming ready (bursts of data from a thread) and timers fall between the bursts."""
    a, b = pair
    reactor = Reactor()
    recorder = _RecordingEpoll(reactor, monkeypatch)
    reactor._ep = recorder  # type: ignore[assignment]
    stop = threading.Event()

    def feeder() -> None:
        while not stop.is_set():
            for _ in range(5):
                b.send(b"x")
                time.sleep(0.0002)
            time.sleep(0.003)

    async def reader() -> None:
        while await wait_readable(a.fileno(), perf_counter_ns() + 50 * MS):
            a.recv(4096)
            if stop.is_set():
                return

    late: list[int] = []

    async def sleeper() -> None:
        # Short and long sleeps: timers fall inside and beyond the busy window.
        for k in range(120):
            at = perf_counter_ns() + (700_000 if k % 2 else 4_000_000)
            assert await sleep_until(at)
            late.append(perf_counter_ns() - at)
        stop.set()

    thread = threading.Thread(target=feeder, daemon=True)
    thread.start()

    async def main() -> None:
        reactor.spawn(reader())
        reactor.spawn(sleeper())
        reactor.hard_stop_ns = perf_counter_ns() + 10_000 * MS
        await reactor.run()

    try:
        trio.run(main)
    finally:
        stop.set()
        thread.join(5)
    assert len(late) == 120
    assert recorder.waits
    for timeout, left in recorder.waits:
        assert math.ceil(timeout * 1000) * MS <= left, (timeout, left)


@pytest.mark.parametrize("fallback", [False, True])
def test_a_wait_for_a_deadline_already_past_returns_at_once(
    pair: tuple[socket.socket, socket.socket], fallback: bool
) -> None:
    """Time passes between reading the next deadline and waiting for it: a negative time left
    must poll, not block (``epoll.poll`` takes a negative timeout as "forever")."""
    a, b = pair
    reactor = Reactor()
    if fallback:
        reactor._ep_sel = None
    reactor._ep.register(a.fileno(), select.EPOLLIN)
    # Ends a wait that wrongly blocks, so that the test fails rather than hangs.
    writer = threading.Timer(3.0, b.send, args=(b"x",))
    writer.start()
    try:
        assert reactor._wait_precise(-MS) is False
    finally:
        writer.cancel()
        writer.join()
        reactor._ep.close()


def test_checkpoint_lets_other_tasks_run() -> None:
    order: list[str] = []

    async def a() -> None:
        order.append("a1")
        await checkpoint()
        order.append("a2")

    async def b() -> None:
        order.append("b1")

    trio.run(run_tasks, a(), b())
    assert order == ["a1", "b1", "a2"]


def test_trio_gets_turns_while_reactor_tasks_keep_yielding() -> None:
    """A round always has a ready task here, so trio's turn comes only from the reactor's
    periodic checkpoint; without it the loop would spin until the hard stop."""
    flag: list[bool] = []
    seen: list[str] = []

    async def spinner() -> None:
        try:
            while not flag:
                await checkpoint()
            seen.append("flag")
        except Interrupted:
            seen.append("interrupted")

    async def main() -> None:
        reactor = Reactor()
        reactor.spawn(spinner())
        reactor.hard_stop_ns = perf_counter_ns() + 5_000 * MS

        async def setter() -> None:
            await trio.sleep(0.02)
            flag.append(True)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(setter)
            await reactor.run()

    trio.run(main)
    assert seen == ["flag"]


def test_trio_gets_turns_while_responses_keep_coming(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """Sockets ready every 0.2 ms keep the reactor waiting in its own epoll set; trio's
    tasks must still run meanwhile (here one that counts its turns)."""
    a, b = pair
    got: list[bytes] = []
    turns: list[int] = [0]
    n = 200

    async def reader() -> None:
        while len(got) < n:
            assert await wait_readable(a.fileno())
            got.append(a.recv(1))

    async def writer() -> None:
        for _ in range(n):
            b.send(b"x")
            await sleep_until(perf_counter_ns() + MS // 5)

    async def main() -> None:
        reactor = Reactor()
        reactor.spawn(reader())
        reactor.spawn(writer())
        reactor.hard_stop_ns = perf_counter_ns() + 5_000 * MS

        async def counter() -> None:
            while True:
                await trio.sleep(0.001)
                turns[0] += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(counter)
            await reactor.run()
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert len(got) == n
    assert turns[0] >= 2  # at least 40 ms of traffic, a trio turn every 5 ms


class _LoggingSender:
    """A ``Sender`` that logs its flush and writes to the peer socket (or fails on demand)."""

    def __init__(self, log: list[str], name: str, peer: socket.socket, fail: bool = False) -> None:
        self.log = log
        self.name = name
        self.peer = peer
        self.fail = fail

    def flush_send(self) -> bool:
        self.log.append(f"send {self.name}")
        if self.fail:
            return True
        self.peer.send(b"x")
        return False


def test_sends_of_one_round_leave_after_every_step() -> None:
    pairs = [socket.socketpair() for _ in range(3)]
    log: list[str] = []
    woke: list[object] = []

    async def vu(i: int) -> None:
        a, b = pairs[i]
        log.append(f"step {i}")
        woke.append(await send_then_wait_readable(a.fileno(), _LoggingSender(log, str(i), b)))
        assert a.recv(10) == b"x"

    try:
        trio.run(run_tasks, vu(0), vu(1), vu(2))
    finally:
        for a, b in pairs:
            a.close()
            b.close()
    assert log == ["step 0", "step 1", "step 2", "send 0", "send 1", "send 2"]
    assert woke == [True, True, True]


def test_a_send_that_needs_its_task_wakes_it_at_once(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    log: list[str] = []
    woke: list[object] = []

    async def vu() -> None:
        # Nothing ever arrives on ``a``: only the sender's verdict can end this wait.
        woke.append(await send_then_wait_readable(a.fileno(), _LoggingSender(log, "a", b, True)))

    _run_bounded(5_000, vu())
    assert log == ["send a"]
    assert woke == [False]


def test_a_task_interrupted_before_the_end_of_its_round_sends_nothing(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    log: list[str] = []
    watch: list[int] = []

    async def vu() -> None:
        watch.append(1)
        try:
            await send_then_wait_readable(a.fileno(), _LoggingSender(log, "a", b))
        except Interrupted:
            log.append("interrupted")
            raise

    async def main() -> None:
        async def on_full() -> None:
            # Runs between the step and the end of the round, like the ring hand-off.
            reactor.interrupt_all()

        reactor = Reactor(watch=watch, watch_max=1, on_full=on_full)
        reactor.spawn(vu())
        await reactor.run()

    trio.run(main)
    assert log == ["interrupted"]


def test_guard_throws_into_a_parked_task(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _b = pair
    result: list[str] = []

    async def request() -> None:
        guard = TimeoutGuard()
        guard.arm(perf_counter_ns() + 20 * MS)
        try:
            await wait_readable(a.fileno())  # nothing ever arrives
        except DeadlineExceeded:
            result.append("timeout")
        guard.disarm()

    trio.run(run_tasks, request())
    assert result == ["timeout"]


def test_disarmed_or_rearmed_guard_does_not_fire() -> None:
    result: list[str] = []

    async def requests() -> None:
        guard = TimeoutGuard()
        guard.arm(perf_counter_ns() + 10 * MS)
        guard.disarm()
        guard.arm(perf_counter_ns() + 10_000 * MS)  # a later request, still in flight
        await sleep_until(perf_counter_ns() + 40 * MS)  # past the first deadline
        guard.disarm()
        await sleep_until(perf_counter_ns() + 10 * MS)
        result.append("done")

    trio.run(run_tasks, requests())
    assert result == ["done"]


def test_guard_never_hits_a_task_that_is_not_parked() -> None:
    """The deadline passes while the task runs (its answer came just in time): nothing is
    thrown, neither now nor into whatever the task parks on after disarming."""
    result: list[str] = []

    async def request() -> None:
        guard = TimeoutGuard()
        guard.arm(perf_counter_ns() + 1 * MS)
        t0 = perf_counter_ns()
        while perf_counter_ns() - t0 < 5 * MS:  # busy, never parked, past the deadline
            pass
        guard.disarm()
        await sleep_until(perf_counter_ns() + 20 * MS)
        result.append("no timeout")

    trio.run(run_tasks, request())
    assert result == ["no timeout"]


def test_guard_heap_stays_bounded_by_guards_not_requests() -> None:
    sizes: list[int] = []

    async def vu(reactor: Reactor) -> None:
        guard = TimeoutGuard()
        for _ in range(2_000):
            guard.arm(perf_counter_ns() + 10_000 * MS)
            await checkpoint()
            guard.disarm()
        sizes.append(len(reactor._guards))

    async def main() -> None:
        reactor = Reactor()
        for _ in range(10):
            reactor.spawn(vu(reactor))
        await reactor.run()

    trio.run(main)
    assert max(sizes) <= 20


def test_guard_heap_drops_stale_entries_when_timeouts_alternate() -> None:
    """A long-timeout request followed by a short one leaves the long entry behind (it pops
    in its time); the reactor compacts its heap instead of keeping one per request."""
    sizes: list[int] = []
    fired: list[int] = []

    async def vu(reactor: Reactor) -> None:
        guard = TimeoutGuard()
        for _ in range(200):
            guard.arm(perf_counter_ns() + 60_000 * MS)  # a slow endpoint's timeout
            guard.arm(perf_counter_ns() + 1 * MS)  # then a fast one's
            guard.disarm()
            await sleep_until(perf_counter_ns() + 2 * MS)  # the short entry pops meanwhile
            sizes.append(len(reactor._guards))
        # Guards still work after compactions.
        guard.arm(perf_counter_ns() + 1 * MS)
        try:
            await sleep_until(perf_counter_ns() + 60_000 * MS)
        except DeadlineExceeded:
            fired.append(1)

    async def main() -> None:
        reactor = Reactor()
        for _ in range(10):
            reactor.spawn(vu(reactor))
        await reactor.run()

    trio.run(main)
    assert len(fired) == 10
    assert max(sizes) <= 1024 + 10  # 2,000 stale entries without compaction


def test_hard_stop_interrupts_parked_and_running_tasks(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, _b = pair
    seen: list[str] = []

    async def parked() -> None:
        try:
            await wait_readable(a.fileno())
        except Interrupted:
            seen.append("parked")
            raise

    async def sleeper() -> None:
        try:
            await sleep_until(perf_counter_ns() + 60_000 * MS)
        except Interrupted:
            seen.append("sleeper")
            raise

    assert _run_bounded(30, parked(), sleeper()).live == 0
    assert sorted(seen) == ["parked", "sleeper"]


def test_wake_sleepers_ends_sleeps_early() -> None:
    result: list[object] = []

    async def sleeper() -> None:
        result.append(await sleep_until(perf_counter_ns() + 60_000 * MS))

    async def main() -> None:
        reactor = Reactor()
        reactor.spawn(sleeper())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reactor.run)
            await trio.sleep(0.02)
            reactor.wake_sleepers()

    trio.run(main)
    assert result == [False]


def test_semaphore_is_fifo_and_bounded() -> None:
    sem = Semaphore(2)
    inside = 0
    most = 0
    order: list[int] = []

    async def worker(n: int) -> None:
        nonlocal inside, most
        await sem.acquire()
        order.append(n)
        inside += 1
        most = max(most, inside)
        await sleep_until(perf_counter_ns() + 5 * MS)
        inside -= 1
        sem.release()

    trio.run(run_tasks, *(worker(n) for n in range(6)))
    assert most == 2
    assert order == list(range(6))
    assert sem.value == 2


def test_semaphore_wait_can_time_out_without_losing_a_unit() -> None:
    """``acquire(deadline)`` gives up at the deadline (False); the unit released later goes
    to the next waiter, and the count ends where it started."""
    sem = Semaphore(1)
    got: dict[str, object] = {}

    async def holder() -> None:
        assert await sem.acquire()
        await sleep_until(perf_counter_ns() + 40 * MS)
        sem.release()

    async def impatient() -> None:
        t0 = perf_counter_ns()
        got["impatient"] = await sem.acquire(t0 + 10 * MS)
        got["waited_enough"] = perf_counter_ns() - t0 >= 10 * MS

    async def patient() -> None:
        got["patient"] = await sem.acquire(perf_counter_ns() + 5_000 * MS)
        sem.release()

    trio.run(run_tasks, holder(), impatient(), patient())
    assert got == {"impatient": False, "waited_enough": True, "patient": True}
    assert sem.value == 1


def test_interrupted_waiter_does_not_leak_a_unit() -> None:
    sem = Semaphore(1)

    async def holder() -> None:
        await sem.acquire()
        try:
            await sleep_until(perf_counter_ns() + 60_000 * MS)
        finally:
            sem.release()

    async def waiter() -> None:
        await sem.acquire()  # interrupted while waiting
        sem.release()

    _run_bounded(20, holder(), waiter())
    assert sem.value == 1


def test_readiness_nobody_waits_for_is_dropped(pair: tuple[socket.socket, socket.socket]) -> None:
    """A socket that becomes readable while its task sleeps (a server closing an idle
    connection) must not make the reactor spin: it leaves the epoll set until waited on."""
    a, b = pair
    got: list[object] = []
    reactor = Reactor()

    async def vu() -> None:
        assert await wait_readable(a.fileno())
        got.append(a.recv(10))
        b.send(b"late")  # arrives while we sleep
        await sleep_until(perf_counter_ns() + 50 * MS)
        got.append(a.fileno() in reactor._masks)
        assert await wait_readable(a.fileno())
        got.append(a.recv(10))

    async def bystander() -> None:
        # Keeps the reactor polling its sockets while vu() sleeps.
        c, d = socket.socketpair()
        with c, d:
            assert not await wait_readable(c.fileno(), perf_counter_ns() + 80 * MS)

    async def main() -> None:
        reactor.spawn(vu())
        reactor.spawn(bystander())
        await reactor.run()

    b.send(b"first")
    trio.run(main)
    assert got == [b"first", False, b"late"]


def test_a_trio_await_inside_a_task_is_reported() -> None:
    async def bad() -> None:
        await trio.lowlevel.checkpoint()

    with pytest.raises(ReactorMisuse, match="foreign operation"):
        trio.run(run_tasks, bad())


def test_a_task_error_propagates() -> None:
    async def boom() -> None:
        await checkpoint()
        raise ValueError("bug")

    async def bystander() -> None:
        await sleep_until(perf_counter_ns() + 60_000 * MS)

    with pytest.raises(ValueError, match="bug"):
        trio.run(run_tasks, boom(), bystander())


@pytest.mark.parametrize("batch_full", [False, True], ids=["plain", "then-ring-handoff"])
def test_a_pause_of_the_process_spends_neither_timeouts_nor_the_graceful_stop(
    monkeypatch: pytest.MonkeyPatch, pair: tuple[socket.socket, socket.socket], batch_full: bool
) -> None:
    """Ctrl-Z then ``fg``, seen by the reactor as its clock jumping 5 s while a task runs: the
    answer that arrived meanwhile is read, and neither the request's 200 ms timeout nor the
    300 ms hard stop cuts it; both move back by the pause. A plain sleep stays on the wall
    clock. The same when the task's event then fills the batch and the reactor hands it to
    the ring (``on_full``) in that round."""
    a, b = pair
    skew = [0]
    monkeypatch.setattr(reactor_module, "perf_counter_ns", lambda: perf_counter_ns() + skew[0])
    clock = reactor_module.perf_counter_ns
    result: list[object] = []
    slept: list[bool] = []

    async def request() -> None:
        guard = TimeoutGuard()
        guard.arm(clock() + 200 * MS)
        try:
            await wait_readable(a.fileno())
            result.append(a.recv(16))
        except (DeadlineExceeded, Interrupted) as exc:
            result.append(type(exc).__name__)
        guard.disarm()

    async def pause() -> None:
        await sleep_until(clock() + 20 * MS)
        b.send(b"answer")  # the server answers...
        skew[0] += 5_000 * MS  # ...while the process is stopped for 5 s
        watch.append("event")

    async def thinker() -> None:
        due = clock() + 100 * MS
        await sleep_until(due)  # due during the pause: ends at once after it
        slept.append(clock() - due < 5_000 * MS)

    watch: list[str] = []

    async def on_full() -> None:
        watch.clear()  # the VU runtime hands its batch to the ring here

    reactor = Reactor(watch, 1 if batch_full else 1 << 30, on_full)

    async def main() -> None:
        for coro in (request(), pause(), thinker()):
            reactor.spawn(coro)
        reactor.hard_stop_ns = clock() + 300 * MS
        await reactor.run()

    stop = clock() + 300 * MS
    trio.run(main)
    assert result == [b"answer"]
    assert slept == [True]
    assert stop + 5_000 * MS <= reactor.hard_stop_ns < stop + 6_000 * MS
