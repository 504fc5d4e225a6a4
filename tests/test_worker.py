"""The worker process's own set-up (``z6.ipc.worker``)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl timer slack is Linux")
def test_worker_timer_slack_is_tightened_to_a_microsecond() -> None:
    """The kernel's default 50 µs of slack would make every timed wait of a worker late by
    that much (and the open model's corrected latency with it)."""
    code = (
        "from z6.ipc.worker import tighten_timer_slack\n"
        "before = open('/proc/self/timerslack_ns').read().strip()\n"
        "ok = tighten_timer_slack()\n"
        "print(before, ok, open('/proc/self/timerslack_ns').read().strip())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    before, ok, after = out.stdout.split()
    assert ok == "True"
    assert after == "1000"
    assert before != after


def test_a_full_ring_counts_one_wait_with_its_length() -> None:
    """A write that finds the ring full waits for the aggregator and counts once, with the
    time it waited (it used to count every 0.5 ms retry: 5,165 "waits" for one 2.7 s stall)."""
    import os

    import trio

    from z6.ipc.events import WorkerFinished, decode_batch
    from z6.ipc.ring import Ring
    from z6.ipc.worker import _RingWriter

    class _Runtime:
        def __init__(self) -> None:
            self.waits: list[int] = []

        def add_ring_wait(self, wait_ns: int) -> None:
            self.waits.append(wait_ns)

    ring = Ring.create(1024)
    try:
        while ring.try_write(b"x"):
            pass  # full
        writer = _RingWriter(ring, os.getppid())
        runtime = _Runtime()
        writer.runtime = runtime  # type: ignore[assignment]
        batch = [WorkerFinished(0, 1, 2, 3, 4, 5)]

        async def main() -> None:
            async with trio.open_nursery() as nursery:

                async def drain() -> None:
                    await trio.sleep(0.03)
                    ring.read_all()

                nursery.start_soon(drain)
                await writer.write(batch)  # type: ignore[arg-type]

        trio.run(main)
        assert len(runtime.waits) == 1
        assert runtime.waits[0] >= 25_000_000
        assert [decode_batch(rec) for rec in ring.read_all()] == [batch]
    finally:
        ring.close()
        ring.unlink()
