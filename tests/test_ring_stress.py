"""Stress test: a producer process and the consumer (this process) share a small ring.

Every record written must be read exactly once, in order and intact, while the producer
keeps hitting a full ring and the data area wraps tens of thousands of times.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import pytest

from z6.ipc.ring import Ring

RECORDS = 2_000_000
RING_CAPACITY = 64 * 1024
DEADLINE_S = 120.0
PAUSE_EVERY = 10_000  # records between two pauses of the consumer
PAUSE_S = 0.002
_PATTERN = bytes(range(256)) * 10


def _size(seq: int) -> int:
    return 1 + (seq * 7919 + (seq >> 3)) % 2000


def _record(seq: int) -> bytes:
    """The record with sequence number ``seq``: its own seq, then a seq-dependent pattern."""
    n = _size(seq)
    head = seq.to_bytes(8, "little")
    if n <= 8:
        return head[:n]
    off = seq & 255
    return head + _PATTERN[off : off + n - 8]


def _produce(name: str, count: int, waits: Any) -> None:
    """Producer process: write records 0..count-1, waiting whenever the ring is full."""
    ring = Ring.attach(name)
    full = 0
    try_write = ring.try_write
    for seq in range(count):
        rec = _record(seq)
        if not try_write(rec):
            full += 1
            spins = 0
            while not try_write(rec):
                spins += 1
                if spins > 50:
                    time.sleep(0.0001)
    waits.value = full
    ring.mark_closed()
    ring.close()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_every_record_exactly_once_in_order(method: str) -> None:
    ctx = (
        multiprocessing.get_context("spawn")
        if method == "spawn"
        else multiprocessing.get_context("fork")
    )
    ring = Ring.create(RING_CAPACITY)
    waits = ctx.Value("q", -1)
    proc = ctx.Process(target=_produce, args=(ring.name, RECORDS, waits), daemon=True)
    try:
        proc.start()
        expected = 0
        deadline = time.monotonic() + DEADLINE_S
        idle = 0
        next_pause = PAUSE_EVERY
        while True:
            if expected >= next_pause:
                # Whether a fast consumer ever lets the ring fill depends on scheduling (one
                # CI run counted fewer than 100 waits): pause now and then so that the
                # producer surely fills it.
                next_pause += PAUSE_EVERY
                time.sleep(PAUSE_S)
            closed = ring.producer_closed  # read before draining: see Ring's docstring
            batch = ring.read_all()
            for rec in batch:
                if rec != _record(expected):
                    got_seq = int.from_bytes(rec[:8].ljust(8, b"\0"), "little")
                    pytest.fail(
                        f"record {expected}: got {len(rec)} bytes starting like seq {got_seq}"
                    )
                expected += 1
            if batch:
                idle = 0
                continue
            if closed:
                break
            assert time.monotonic() < deadline, f"timed out after {expected} records"
            if proc.exitcode is not None and not ring.producer_closed:
                pytest.fail(f"producer exited with {proc.exitcode} after {expected} records")
            idle += 1
            if idle > 50:
                time.sleep(0.0001)
        assert expected == RECORDS
        assert ring.read_all() == []
        assert ring.pending_bytes() == 0
        proc.join(30)
        assert proc.exitcode == 0
        # The small ring really was full many times (backpressure exercised).
        assert waits.value > 100, waits.value
        assert Path("/dev/shm", ring.name).exists()  # the producer's exit left it alone
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join(10)
        ring.close()
        ring.unlink()
    assert not Path("/dev/shm", ring.name).exists()
    assert os.getpid() > 0
