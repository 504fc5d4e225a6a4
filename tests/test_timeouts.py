"""The timeout wheel: guards fire once, after their deadline, never when disarmed."""

from __future__ import annotations

from time import perf_counter_ns

import trio

from z6.engine.timeouts import TimeoutGuard, TimeoutWheel


def _guard(wheel: TimeoutWheel) -> TimeoutGuard:
    g = TimeoutGuard(wheel)
    g.scope = trio.CancelScope()
    return g


def test_fires_only_after_the_deadline() -> None:
    wheel = TimeoutWheel()
    g = _guard(wheel)
    g.arm(1_000)
    assert wheel.fire_expired(999) == 0
    assert not g.fired
    assert wheel.fire_expired(1_000) == 1
    assert g.fired
    assert g.scope is not None
    assert g.scope.cancel_called
    # Fired once: nothing left to fire.
    assert wheel.fire_expired(10**12) == 0


def test_disarmed_guard_never_fires() -> None:
    wheel = TimeoutWheel()
    g = _guard(wheel)
    g.arm(1_000)
    g.disarm()
    assert wheel.fire_expired(10**9) == 0
    assert not g.fired
    assert wheel.heap == []


def test_rearmed_later_is_requeued_not_fired() -> None:
    wheel = TimeoutWheel()
    g = _guard(wheel)
    g.arm(1_000)
    g.disarm()
    g.arm(5_000)  # a later request of the same VU, still in flight
    assert wheel.fire_expired(1_000) == 0
    assert not g.fired
    assert wheel.fire_expired(5_000) == 1


def test_rearmed_earlier_fires_at_the_earlier_deadline() -> None:
    wheel = TimeoutWheel()
    g = _guard(wheel)
    g.arm(50_000)
    g.disarm()
    g.arm(2_000)  # a request with a shorter timeout
    assert wheel.fire_expired(2_000) == 1
    assert g.fired


def test_heap_stays_bounded_by_guards_not_requests() -> None:
    wheel = TimeoutWheel()
    guards = [_guard(wheel) for _ in range(10)]
    now = 0
    for _ in range(10_000):
        now += 1_000
        for g in guards:
            g.arm(now + 1_000_000)
            g.disarm()
        wheel.fire_expired(now)
    assert len(wheel.heap) <= 2 * len(guards)
    assert not any(g.fired for g in guards)


def test_wheel_task_cancels_a_blocked_request() -> None:
    """Inside trio: a guard armed 20 ms ahead cancels its scope; the sleep is cut short."""
    result: dict[str, object] = {}

    async def main() -> None:
        wheel = TimeoutWheel(tick_s=0.002)
        g = TimeoutGuard(wheel)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wheel.run)
            with trio.CancelScope() as scope:
                g.scope = scope
                g.arm(perf_counter_ns() + 20_000_000)
                await trio.sleep(5)  # bounded even if the guard never fired
            result["caught"] = scope.cancelled_caught
            result["fired"] = g.fired
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert result == {"caught": True, "fired": True}
