"""Request timeouts without one trio CancelScope per request.

Entering and leaving a ``trio.CancelScope`` with a deadline costs several microseconds, about a
fifth of a whole request on the fast engine (measured with ``perf/`` and cProfile). Instead
each VU enters one long-lived scope and owns a ``TimeoutGuard``; a request arms the guard with
its deadline (two attribute stores) and disarms it afterwards (one store). One
``TimeoutWheel`` task per worker wakes every ``tick_s`` and cancels the scope of each guard
whose armed deadline has passed, so a timeout fires between 0 and ``tick_s`` late.

The wheel keeps at most about one heap entry per guard (memory O(VUs), not O(requests)): a
guard stays queued at the deadline it had when queued; when that entry comes due and the guard
has been re-armed later since, it is simply queued again at its current deadline.
"""

from __future__ import annotations

import heapq
from time import perf_counter_ns

import trio

DEFAULT_TICK_S = 0.005
_IDLE = 0


class TimeoutGuard:
    """One VU's timeout state: the scope to cancel and the armed deadline.

    ``deadline_ns`` is 0 when disarmed. ``fired`` is set, before the scope is cancelled, when
    an armed deadline passed; the VU clears it once it has recorded the timed-out request.
    """

    __slots__ = ("deadline_ns", "fired", "queued_at", "scope", "wheel")

    def __init__(self, wheel: TimeoutWheel) -> None:
        self.wheel = wheel
        self.scope: trio.CancelScope | None = None
        self.deadline_ns = _IDLE
        self.queued_at = _IDLE  # deadline of this guard's live heap entry, 0 when not queued
        self.fired = False

    def arm(self, deadline_ns: int) -> None:
        """Cancel ``scope`` at ``deadline_ns`` (perf_counter clock) unless disarmed first."""
        self.deadline_ns = deadline_ns
        queued = self.queued_at
        if queued == _IDLE or deadline_ns < queued:
            self.wheel.push(self, deadline_ns)

    def disarm(self) -> None:
        """Forget the armed deadline."""
        self.deadline_ns = _IDLE


class TimeoutWheel:
    """Fires armed guards whose deadline passed; run ``run()`` as a task of the worker."""

    def __init__(self, tick_s: float = DEFAULT_TICK_S) -> None:
        self.tick_s = tick_s
        self.heap: list[tuple[int, int, TimeoutGuard]] = []
        self._ids = 0

    def push(self, guard: TimeoutGuard, at_ns: int) -> None:
        """Queue ``guard`` to be looked at when ``at_ns`` has passed."""
        self._ids += 1  # tie-breaker: heap entries never compare guards
        heapq.heappush(self.heap, (at_ns, self._ids, guard))
        guard.queued_at = at_ns

    def fire_expired(self, now_ns: int) -> int:
        """Cancel the scope of every guard armed with a deadline <= ``now_ns``; return how many."""
        heap = self.heap
        fired = 0
        while heap and heap[0][0] <= now_ns:
            at_ns, _id, guard = heapq.heappop(heap)
            if at_ns != guard.queued_at:
                continue  # superseded by an earlier entry of the same guard
            deadline = guard.deadline_ns
            if deadline == _IDLE:
                guard.queued_at = _IDLE
            elif deadline > now_ns:
                self.push(guard, deadline)
            else:
                guard.queued_at = _IDLE
                guard.deadline_ns = _IDLE
                if guard.scope is not None:
                    guard.fired = True
                    guard.scope.cancel()
                    fired += 1
        return fired

    async def run(self) -> None:
        """Check the deadlines every ``tick_s`` until cancelled."""
        while True:
            await trio.sleep(self.tick_s)
            if self.heap:
                self.fire_expired(perf_counter_ns())
