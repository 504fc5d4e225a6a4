"""A small coroutine scheduler for the VUs of one worker, run as one trio task.

Why not one trio task per VU: each time a trio task parks and wakes (once per request at
least) trio re-registers the socket with epoll and steps the task through its run loop,
about 5-6 µs on the development VM, as much as all the rest of a request on the fast
engine (``perf/`` and py-spy; a minimal loop did 55k req/s with a task per connection and
92-105k with this design, one core, against nginx). So the VU coroutines are driven here:

- a ``Reactor`` owns a private epoll set in which each socket stays registered while it is
  used, steps the coroutines that are ready, polls the set without blocking, and only when
  nothing is ready waits, bounded by the next timer: in its own epoll set while sockets keep
  becoming ready (one did in the last ``_BUSY_NS``), else parked in trio
  (``trio.lowlevel.wait_readable`` on the epoll descriptor). trio stays the worker's event
  loop: other trio tasks (the flusher, the stop watcher, the ring writer) run at a checkpoint
  between two rounds, about every ``_TRIO_TURN_NS`` (one round more under load), and while
  the reactor is parked in trio. A trio park costs about 60 µs of CPU on the development VM,
  a checkpoint about 10 µs, and a worker that shares its core finds only 8-10 responses per
  round (docs/architecture.md). So a VU must not depend on a trio task of the same loop
  (a server, say): while the reactor is busy, that task runs only every few milliseconds.
- timers are kept to the microsecond: epoll's timeout is whole milliseconds rounded up, so
  the last ``_PRECISE_NS`` before a deadline are waited for with ``select()`` on the epoll
  descriptor, and trio gets a turn every ``_IDLE_TURN_NS`` while timers are too close
  together for a park (docs/architecture.md, "Timers to the microsecond").
- a coroutine run by the reactor awaits only the operations of this module:
  ``wait_readable``, ``wait_writable``, ``send_then_wait_readable``, ``sleep_until``,
  ``checkpoint``, ``Semaphore``, never trio's (trio's traps would reach the reactor, which
  raises ``ReactorMisuse``).
- requests leave together: ``send_then_wait_readable`` parks the VU at once and the reactor
  sends the bytes of every such VU at the end of the round, after all the round's responses
  were parsed (see that function for why).
- request timeouts: a ``TimeoutGuard`` per VU, armed with the deadline of the request in
  flight; when it passes while the VU is parked, the reactor throws ``DeadlineExceeded`` into
  it (the connection turns that into a ``TIMEOUT`` outcome). One heap entry per guard, not
  per request.
- the hard stop: ``interrupt_all`` throws ``Interrupted`` into every task (at once when
  parked, else at its next operation).
"""

from __future__ import annotations

import contextlib
import heapq
import os
import select
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from time import perf_counter_ns
from typing import Any, Protocol

import trio

_READ = 0
_WRITE = 1
_SLEEP = 2
_YIELD = 3
_PARK = 4
_SEND = 5

_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_IDLE = 0
_NEVER = 1 << 62
_GUARDS_COMPACT_MIN = 1024
# While sockets keep becoming ready, the reactor waits in its own epoll set and gives trio a
# turn (a checkpoint) every _TRIO_TURN_NS; after _BUSY_NS without readiness it parks in trio.
_TRIO_TURN_NS = 5_000_000
_BUSY_NS = 2_000_000
# epoll's timeout (the reactor's and trio's) is whole milliseconds rounded up: a timer due in
# 0.3 ms fired 0.7-1 ms late, and that lateness went into every open-model iteration's
# corrected latency. The last _PRECISE_NS before a deadline are waited for with select() on
# the epoll set, whose timeout has microseconds.
_PRECISE_NS = 2_000_000
# How late an epoll wait can end: the millisecond rounding, plus the kernel's slack of 0.1 %
# of the timeout for select/poll/epoll (select_estimate_accuracy) on the reactor's waits of
# at most _TRIO_TURN_NS.
_EPOLL_LATE_NS = 1_100_000
_FD_SETSIZE = 1024  # select() takes no descriptor above this
# While the reactor is idle between timers less than _PRECISE_NS apart, it never parks in trio:
# it gives trio a turn before a precise wait once _IDLE_TURN_NS passed since the last one.
_IDLE_TURN_NS = 1_000_000
# A loop pass that came back this much later than its wait allowed was not running: the
# process was stopped (Ctrl-Z, SIGSTOP) or the machine suspended. Rounds take microseconds to
# a few ms; a second is far beyond any round, and far below any pause a user makes.
_PAUSE_NS = 1_000_000_000
_MAX_PARK_NS = 250_000_000
_TRIO_LATE_NS = 2_000_000  # trio's own wait ends up to 1 ms late, plus the kernel's slack

Op = tuple[int, int, Any]
TaskCoro = Coroutine[Op, Any, None]


class Sender(Protocol):
    """What ``send_then_wait_readable`` hands to the reactor: a connection with bytes to send."""

    def flush_send(self) -> bool:
        """Send the pending bytes now; True when its task must wake (short send or error)."""
        ...


class Interrupted(BaseException):
    """Thrown into a reactor task at the hard stop; the task records what it must and ends."""


class DeadlineExceeded(BaseException):
    """Thrown into a task parked past the deadline armed on its ``TimeoutGuard``.

    ``z6.engine.client.Connection`` catches it and reports the request as ``TIMEOUT``.
    """


class ReactorMisuse(RuntimeError):
    """A reactor task awaited something other than this module's operations (a bug)."""


class Task:
    """One coroutine driven by a ``Reactor`` (see ``Reactor.spawn``)."""

    __slots__ = ("coro", "fd", "parked", "pending", "sleeping", "throw_exc", "timer_seq", "value")

    def __init__(self, coro: TaskCoro) -> None:
        self.coro = coro
        self.value: Any = None  # sent in on the next step
        self.throw_exc: BaseException | None = None  # thrown in on the next step instead
        self.pending: BaseException | None = None  # thrown at the next operation
        self.fd = -1  # descriptor waited on while parked, else -1
        self.timer_seq = 0  # sequence number of this task's live timer entry, else 0
        self.parked = False
        self.sleeping = False


# -- operations (awaited by reactor tasks) ---------------------------------------------------


@types.coroutine
def wait_readable(fd: int, deadline_ns: int = 0) -> Generator[Op, Any, bool]:
    """Park until ``fd`` is readable (True) or ``deadline_ns`` passed (False; 0: no limit)."""
    woke: bool = yield (_READ, fd, deadline_ns)
    return woke


@types.coroutine
def wait_writable(fd: int, deadline_ns: int = 0) -> Generator[Op, Any, bool]:
    """Park until ``fd`` is writable (True) or ``deadline_ns`` passed (False; 0: no limit)."""
    woke: bool = yield (_WRITE, fd, deadline_ns)
    return woke


@types.coroutine
def send_then_wait_readable(fd: int, sender: Sender) -> Generator[Op, Any, bool]:
    """Have the reactor call ``sender.flush_send()`` at the end of this round, then park
    until ``fd`` is readable (True), or False at once when ``flush_send`` returned True.

    Why: the requests of one round then leave together, after all the responses of the
    round were parsed, instead of one between each two parses. A server that handled each
    request before the next arrived would go to sleep and be woken up once per request; in
    a run limited by the client's CPU (the h11 engine), those wake-ups cost the sender more
    kernel time than the request itself (``perf/README.md``).
    """
    woke: bool = yield (_SEND, fd, sender)
    return woke


@types.coroutine
def sleep_until(at_ns: int) -> Generator[Op, Any, bool]:
    """Park until ``perf_counter_ns() >= at_ns``; False when woken early by ``wake_sleepers``."""
    woke: bool = yield (_SLEEP, 0, at_ns)
    return woke


@types.coroutine
def checkpoint() -> Generator[Op, Any, None]:
    """Let the other ready tasks and one poll of the sockets run first."""
    yield (_YIELD, 0, 0)


@types.coroutine
def _park(deadline_ns: int = 0) -> Generator[Op, Any, Any]:
    """Park until ``Reactor.unpark`` (its value) or ``deadline_ns`` (False; 0: no limit)."""
    return (yield (_PARK, 0, deadline_ns))


# -- the reactor -----------------------------------------------------------------------------

_running: Reactor | None = None


def current_reactor() -> Reactor:
    """The reactor running in this thread (raises ``ReactorMisuse`` outside one)."""
    if _running is None:
        raise ReactorMisuse("no reactor is running")
    return _running


class Reactor:
    """Runs ``Task``s to completion inside ``await reactor.run()`` (a trio task).

    ``watch``/``watch_max``/``on_full``: after each step, when ``len(watch) >= watch_max`` the
    reactor awaits ``on_full()`` (the VU runtime hands its event batch to the ring there;
    waiting on a full ring then pauses every VU, which is the backpressure wanted).
    """

    def __init__(
        self,
        watch: list[Any] | None = None,
        watch_max: int = 1 << 30,
        on_full: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self._ep = select.epoll()
        # A low duplicate of the set when its own number is too high for select(); an epoll
        # object, so that it is closed with the reactor, or when garbage-collected.
        self._ep_dup: select.epoll | None = None
        sel = _selectable(self._ep.fileno())
        if sel >= 0 and sel != self._ep.fileno():
            self._ep_dup = select.epoll.fromfd(sel)
        # None (no descriptor below 1024 free): waits keep epoll's millisecond precision.
        self._ep_sel = [sel] if sel >= 0 else None
        self._masks: dict[int, int] = {}  # fd -> events registered in the epoll set
        self._waiting: dict[int, Task] = {}  # fd -> task parked on it
        self._ready: deque[Task] = deque()
        self._yielded: list[Task] = []
        self._outbox: list[tuple[Task, int, Sender]] = []  # sends due at the end of the round
        self._timers: list[tuple[int, int, Task]] = []
        self._guards: list[tuple[int, int, TimeoutGuard]] = []
        self._guards_compact_at = _GUARDS_COMPACT_MIN
        self._seq = 0
        self._live: set[Task] = set()
        self._sleepers: set[Task] = set()
        self.current: Task | None = None
        self.hard_stop_ns = _NEVER
        self._interrupted = False
        self._wait_scope: trio.CancelScope | None = None
        self._watch = watch if watch is not None else []
        self._watch_max = watch_max
        self._on_full = on_full
        self._error: BaseException | None = None

    # -- tasks ---------------------------------------------------------------------------

    def spawn(self, coro: TaskCoro) -> Task:
        """Schedule ``coro`` to start in the next round; returns its ``Task``."""
        task = Task(coro)
        self._live.add(task)
        self._ready.append(task)
        if self._interrupted:
            task.pending = Interrupted()
        return task

    @property
    def live(self) -> int:
        """Tasks not finished yet."""
        return len(self._live)

    def _wake(self, task: Task, value: Any) -> None:
        """Make a parked task ready, detached from whatever it waited on."""
        fd = task.fd
        if fd >= 0:
            task.fd = -1
            if self._waiting.get(fd) is task:
                del self._waiting[fd]
        task.timer_seq = 0
        if task.sleeping:
            task.sleeping = False
            self._sleepers.discard(task)
        task.parked = False
        task.value = value
        self._ready.append(task)

    def unpark(self, task: Task, value: Any = None) -> None:
        """Resume a task parked by ``_park`` (used by ``Semaphore``)."""
        if task.parked:
            self._wake(task, value)

    def throw(self, task: Task, exc: BaseException) -> None:
        """Raise ``exc`` in ``task``: now if parked, else at its next operation."""
        if task.parked:
            self._wake(task, None)
            task.throw_exc = exc
        elif task in self._live:
            task.pending = exc

    def interrupt_all(self) -> None:
        """Throw ``Interrupted`` into every live task (the hard stop); later spawns too."""
        self._interrupted = True
        for task in list(self._live):
            self.throw(task, Interrupted())

    def wake_sleepers(self) -> None:
        """End every ``sleep_until`` now (its result is False); used by the soft stop."""
        for task in list(self._sleepers):
            self._wake(task, False)
        self.wake()

    def wake(self) -> None:
        """Make ``run`` look at its state again if it is parked in trio (call from trio)."""
        if self._wait_scope is not None:
            self._wait_scope.cancel()

    # -- guards --------------------------------------------------------------------------

    def _push_guard(self, guard: TimeoutGuard, at_ns: int) -> None:
        self._seq += 1
        heap = self._guards
        heapq.heappush(heap, (at_ns, self._seq, guard))
        guard.queued_at = at_ns
        if len(heap) > self._guards_compact_at:
            # A guard armed earlier than its queued entry gets a new entry and leaves the old
            # one to pop in its time; with timeouts that alternate between short and long, such
            # stale entries would pile up for the length of the long one. Drop them.
            heap[:] = [entry for entry in heap if entry[0] == entry[2].queued_at]
            heapq.heapify(heap)
            self._guards_compact_at = max(_GUARDS_COMPACT_MIN, 2 * len(heap))

    def _fire_guards(self, now_ns: int) -> None:
        heap = self._guards
        while heap and heap[0][0] <= now_ns:
            at_ns, _seq, guard = heapq.heappop(heap)
            if at_ns != guard.queued_at:
                continue  # superseded by an earlier entry of the same guard
            deadline = guard.deadline_ns
            if deadline == _IDLE:
                guard.queued_at = _IDLE
            elif deadline > now_ns:
                self._push_guard(guard, deadline)
            else:
                task = guard.task
                if task is not None and task.parked:
                    guard.queued_at = _IDLE
                    guard.deadline_ns = _IDLE
                    self.throw(task, DeadlineExceeded())
                else:
                    # Ready to run (its response may just have arrived): look again next round.
                    self._push_guard(guard, now_ns + 1)

    # -- parking -------------------------------------------------------------------------

    def _park_on(self, task: Task, op: Op) -> None:
        kind, fd, deadline = op
        if task.pending is not None:
            task.throw_exc = task.pending
            task.pending = None
            self._ready.append(task)
            return
        task.parked = True
        if kind == _SEND:
            self._outbox.append((task, fd, deadline))
            kind = _READ
            deadline = 0
        if kind <= _WRITE:
            mask = _EPOLLIN if kind == _READ else _EPOLLOUT
            masks = self._masks
            have = masks.get(fd)
            if have is None:
                self._ep.register(fd, mask)
                masks[fd] = mask
            elif have != mask:
                self._ep.modify(fd, mask)
                masks[fd] = mask
            self._waiting[fd] = task
            task.fd = fd
            if deadline:
                self._add_timer(task, deadline)
        elif kind == _SLEEP:
            task.sleeping = True
            self._sleepers.add(task)
            self._add_timer(task, deadline)
        elif kind == _YIELD:
            task.parked = False
            task.value = None
            self._yielded.append(task)
        elif kind == _PARK:
            if deadline:
                self._add_timer(task, deadline)
        else:
            raise ReactorMisuse(f"a reactor task awaited an unknown operation {op!r}")

    def _add_timer(self, task: Task, at_ns: int) -> None:
        self._seq += 1
        task.timer_seq = self._seq
        heapq.heappush(self._timers, (at_ns, self._seq, task))

    def forget(self, fd: int) -> None:
        """Drop ``fd`` from the epoll set; call before closing its socket (fd numbers are
        reused, and a closed descriptor leaves the set without telling us)."""
        if self._masks.pop(fd, None) is not None:
            # Already closed: the kernel removed it from the set.
            with contextlib.suppress(OSError):
                self._ep.unregister(fd)
        task = self._waiting.pop(fd, None)
        if task is not None:
            task.fd = -1

    # -- running -------------------------------------------------------------------------

    def _step(self, task: Task) -> None:
        self.current = task
        try:
            exc = task.throw_exc
            if exc is not None:
                task.throw_exc = None
                op = task.coro.throw(exc)
            else:
                op = task.coro.send(task.value)
        except (StopIteration, Interrupted):
            self._finish(task)
            return
        except BaseException as exc:
            self._finish(task)
            if self._error is None:
                self._error = exc
            return
        finally:
            self.current = None
        if type(op) is not tuple:
            task.coro.close()
            self._finish(task)
            if self._error is None:
                self._error = ReactorMisuse(f"a reactor task awaited a foreign operation: {op!r}")
            return
        kind = op[0]
        if (kind == _SEND or (kind == _READ and not op[2])) and task.pending is None:
            # The hot path (a VU sending a request then waiting for its response, or waiting
            # for more of it), inlined from _park_on.
            fd = op[1]
            if self._masks.get(fd) == _EPOLLIN:
                if kind == _SEND:
                    self._outbox.append((task, fd, op[2]))
                task.parked = True
                self._waiting[fd] = task
                task.fd = fd
                return
        self._park_on(task, op)

    def _flush_outbox(self) -> None:
        outbox = self._outbox
        for task, fd, sender in outbox:
            # Still parked on that socket: not interrupted (by ``on_full``'s trio turn) since.
            if task.fd == fd and sender.flush_send():
                self._wake(task, False)
        outbox.clear()

    def _finish(self, task: Task) -> None:
        self._live.discard(task)
        if task.fd >= 0:
            if self._waiting.get(task.fd) is task:
                del self._waiting[task.fd]
            task.fd = -1
        task.parked = False
        task.timer_seq = 0
        if task.sleeping:
            task.sleeping = False
            self._sleepers.discard(task)

    def _fire_timers(self, now_ns: int) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now_ns:
            _at, seq, task = heapq.heappop(timers)
            if task.timer_seq == seq and task.parked:
                # A sleep ran its course (True); a wait on a socket or a park timed out
                # (False).
                self._wake(task, task.sleeping)

    def _poll(self, timeout_s: float = 0) -> bool:
        """Wake the tasks whose sockets are ready (waiting up to ``timeout_s``); True if any
        socket was."""
        waiting = self._waiting
        events = self._ep.poll(timeout_s)
        for fd, _events in events:
            task = waiting.pop(fd, None)
            if task is not None:
                task.fd = -1
                task.timer_seq = 0
                task.parked = False
                task.value = True
                self._ready.append(task)
            else:
                # Readiness nobody waits for (a server closing an idle connection while its
                # VU thinks): drop the registration, or level-triggered epoll spins on it.
                self.forget(fd)
        return bool(events)

    def _wait_precise(self, timeout_ns: int) -> bool:
        """``_poll`` waiting up to ``timeout_ns`` to the microsecond rather than the
        millisecond (select() on the epoll set, then a poll if it is readable)."""
        sel = self._ep_sel
        if sel is None:
            return self._poll(max(timeout_ns, 0) / 1e9)
        if select.select(sel, (), (), max(timeout_ns, 0) / 1e9)[0]:
            return self._poll()
        return False

    def _resume_after_pause(self, gap_ns: int) -> None:
        """The process was stopped for ``gap_ns`` (Ctrl-Z then ``fg``, or a suspend): move the
        hard stop and every armed request timeout back by the gap, so that time z6 could not
        act spends neither a request's ``timeout_ms`` nor the graceful stop; responses that
        arrived meanwhile are then read, not cut. The run's planned end and the sleeps stay
        on the wall clock (docs/reliability.md: a paused run is not extended); a wait with a
        deadline (a connect's timeout) moves like a request timeout."""
        if self.hard_stop_ns != _NEVER:
            self.hard_stop_ns += gap_ns
        self._timers = [
            (at + gap_ns, seq, task) if task.parked and not task.sleeping else (at, seq, task)
            for at, seq, task in self._timers
        ]
        heapq.heapify(self._timers)
        heap = self._guards
        guards = {id(entry[2]): entry[2] for entry in heap}
        heap.clear()
        for guard in guards.values():
            guard.queued_at = _IDLE
            if guard.deadline_ns != _IDLE:
                guard.deadline_ns += gap_ns
                self._push_guard(guard, guard.deadline_ns)

    def _next_deadline(self) -> int:
        at = _NEVER if self._interrupted else self.hard_stop_ns
        if self._timers and self._timers[0][0] < at:
            at = self._timers[0][0]
        if self._guards and self._guards[0][0] < at:
            at = self._guards[0][0]
        return at

    async def run(self) -> None:
        """Drive the tasks until none is left; re-raise the first error a task raised."""
        global _running
        if _running is not None:
            raise ReactorMisuse("a reactor is already running in this thread")
        _running = self
        try:
            await self._run()
        finally:
            _running = None
            self._ep.close()
            if self._ep_dup is not None:
                self._ep_dup.close()

    async def _run(self) -> None:
        ready = self._ready
        watch = self._watch
        step = self._step
        epfd = self._ep.fileno()
        on_full = self._on_full
        outbox = self._outbox
        watch_max = self._watch_max if on_full is not None else _NEVER
        trio_due = 0  # when the other trio tasks get their next turn
        busy_until = 0  # wait in our own epoll set until then
        # The latest instant this pass may legitimately start: the last pass's start, or the
        # end of the wait it made (see _PAUSE_NS).
        due_by = perf_counter_ns()
        while self._live:
            # Before any task runs: a guard armed from here on is on the resumed clock.
            now = perf_counter_ns()
            if now - due_by > _PAUSE_NS:
                self._resume_after_pause(now - due_by)
            due_by = now
            for _ in range(len(ready)):
                step(ready.popleft())
                if len(watch) >= watch_max:
                    assert on_full is not None
                    await on_full()
            if self._error is not None:
                self.interrupt_all()  # before the flush: the parked requests stay unsent
                outbox.clear()
                for _ in range(len(ready)):
                    step(ready.popleft())
                raise self._error
            now = perf_counter_ns()
            if now - due_by > _PAUSE_NS:
                # Stopped while the tasks ran, or held that long by a full ring (the
                # aggregator was stopped too): time z6 could not act on either.
                self._resume_after_pause(now - due_by)
            due_by = now
            if now >= self.hard_stop_ns and not self._interrupted:
                self.interrupt_all()  # before the flush: nothing leaves after the hard stop
            if outbox:
                self._flush_outbox()
            if self._timers and self._timers[0][0] <= now:
                self._fire_timers(now)
            if self._guards and self._guards[0][0] <= now:
                self._fire_guards(now)
            if self._waiting and self._poll():
                busy_until = now + _BUSY_NS
            if self._yielded:
                ready.extend(self._yielded)
                self._yielded.clear()
            if now >= trio_due or not self._live:
                # Other trio tasks (flusher, stop watcher) run here, between two rounds, at
                # most every _TRIO_TURN_NS: a trio turn costs about 10 µs of CPU, as much as
                # a request, and a worker that shares its core finds few requests per round.
                await trio.lowlevel.checkpoint()
                # trio runs the tasks this turn woke in one batch with this one, in either
                # order: yield again so that they run now, not one turn (5 ms) later.
                await trio.lowlevel.cancel_shielded_checkpoint()
                trio_due = perf_counter_ns() + _TRIO_TURN_NS
                continue
            if ready:
                continue
            deadline = self._next_deadline()
            now = perf_counter_ns()
            if self._waiting and now < busy_until:
                # Sockets keep becoming ready: wait in our own epoll set, bounded by trio's
                # next turn. Parking in trio costs a cancel scope, trio's registration of the
                # set and a pass of its run loop: about 60 µs of CPU per wait on the VM,
                # against about 20 µs here.
                until = min(trio_due, busy_until)
                due_by = max(until, now)
                if deadline - until < _EPOLL_LATE_NS:  # epoll could wake after the deadline
                    woke = self._wait_precise(min(deadline, until) - now)
                else:
                    woke = self._poll(max(until - now, 0) / 1e9)
                if woke:
                    busy_until = perf_counter_ns() + _BUSY_NS
                continue
            wait_ns = deadline - now
            if wait_ns <= 0:
                continue
            if wait_ns <= _PRECISE_NS:
                # The last stretch before a timer, to the microsecond (trio waits). With
                # timers this close together the reactor never parks in trio: give trio a
                # turn first when it has had none for _IDLE_TURN_NS.
                if now - (trio_due - _TRIO_TURN_NS) >= _IDLE_TURN_NS:
                    trio_due = now
                    continue
                due_by = deadline
                if self._wait_precise(wait_ns):
                    busy_until = perf_counter_ns() + _BUSY_NS
                continue
            # Parked in trio until the last stretch: trio's wait ends up to 1 ms late, plus the
            # kernel's slack of 0.1 % of the timeout (10 ms on a 10 s think time).
            # At most _MAX_PARK_NS at a time, so that a pause of the process is told apart
            # from a long wait (see _PAUSE_NS): a few wake-ups a second cost nothing.
            park_ns = min(wait_ns - _PRECISE_NS - wait_ns // 500, _MAX_PARK_NS)
            wait_s = park_ns / 1e9
            due_by = now + park_ns + _TRIO_LATE_NS
            with trio.CancelScope(deadline=trio.current_time() + wait_s) as scope:
                self._wait_scope = scope
                if self._waiting:
                    await trio.lowlevel.wait_readable(epfd)
                else:
                    await trio.sleep_forever()
            self._wait_scope = None
            trio_due = perf_counter_ns() + _TRIO_TURN_NS


def _selectable(fd: int) -> int:
    """``fd``, or when it is too high for select() a duplicate of it on the lowest free
    descriptor (the same epoll set); -1 when no descriptor below ``_FD_SETSIZE`` is free.

    A worker inherits the supervisor's descriptors (rings, other workers' sentinels), so the
    epoll set's number grows with ``--procs``; it stays far below 1024 in practice.
    """
    if fd < _FD_SETSIZE:
        return fd
    try:
        low = os.dup(fd)  # the lowest free descriptor, not inheritable
    except OSError:  # no descriptor free at all
        return -1
    if low < _FD_SETSIZE:
        return low
    os.close(low)
    return -1


class TimeoutGuard:
    """One VU's request deadline: ``arm`` before an exchange, ``disarm`` after it.

    While armed past its deadline and parked, the task that armed it gets
    ``DeadlineExceeded``. Arming is two stores and, at most once per deadline period, one
    heap push (the reactor re-queues a guard whose deadline moved later).
    """

    __slots__ = ("deadline_ns", "queued_at", "reactor", "task")

    def __init__(self) -> None:
        self.reactor: Reactor | None = None  # whose heap holds ``queued_at``
        self.task: Task | None = None
        self.deadline_ns = _IDLE
        self.queued_at = _IDLE  # deadline of this guard's live heap entry, 0 when not queued

    def arm(self, deadline_ns: int) -> None:
        """Throw ``DeadlineExceeded`` into the current task if still armed at ``deadline_ns``."""
        reactor = _running
        if reactor is None:
            raise ReactorMisuse("TimeoutGuard.arm outside a reactor")
        self.task = reactor.current
        self.deadline_ns = deadline_ns
        queued = self.queued_at
        if queued == _IDLE or deadline_ns < queued or self.reactor is not reactor:
            self.reactor = reactor
            reactor._push_guard(self, deadline_ns)

    def disarm(self) -> None:
        """Forget the armed deadline."""
        self.deadline_ns = _IDLE


class Semaphore:
    """A FIFO counting semaphore for reactor tasks (caps connects in flight)."""

    def __init__(self, value: int) -> None:
        self.value = value
        self._waiters: deque[Task] = deque()
        self._handed: set[Task] = set()  # woken waiters that own a unit, until they run

    async def acquire(self, deadline_ns: int = 0) -> bool:
        """Take one unit, parking (FIFO) until one is free: True; False when ``deadline_ns``
        (0: no limit) passed first, without a unit."""
        if self.value > 0 and not self._waiters:
            self.value -= 1
            return True
        reactor = current_reactor()
        task = reactor.current
        assert task is not None
        self._waiters.append(task)
        try:
            handed = await _park(deadline_ns)
        except BaseException:
            if task in self._handed:
                self._handed.discard(task)
                self.release()  # the unit was handed over just before the exception
            elif task in self._waiters:
                self._waiters.remove(task)
            raise
        if handed is False:  # the deadline: ``release`` skips a waiter no longer parked
            if task in self._waiters:
                self._waiters.remove(task)
            return False
        self._handed.discard(task)
        return True

    def release(self) -> None:
        """Give one unit back, to the first waiter if any."""
        reactor = _running
        while self._waiters:
            task = self._waiters.popleft()
            # A waiter no longer parked is being interrupted: it gives up, skip it.
            if task.parked and reactor is not None:
                self._handed.add(task)
                reactor.unpark(task)
                return
        self.value += 1


async def run_tasks(*coros: TaskCoro) -> None:
    """Run coroutines on a new reactor until all end (inside trio; tests and tools)."""
    reactor = Reactor()
    for coro in coros:
        reactor.spawn(coro)
    await reactor.run()
