"""Unit tests of the shared-memory SPSC ring (z6.ipc.ring)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from z6.ipc.ring import Ring

SHM = Path("/dev/shm")


def _z6_segments() -> set[str]:
    return {p.name for p in SHM.iterdir() if p.name.startswith("z6r_")} if SHM.is_dir() else set()


@pytest.fixture(autouse=True)
def _no_leaked_segments() -> Iterator[None]:
    """Every test must leave /dev/shm as it found it (for this process's rings)."""
    before = _z6_segments()
    yield
    mine = {n for n in _z6_segments() - before if n.startswith(f"z6r_{os.getpid()}_")}
    assert mine == set(), f"leaked shared memory: {sorted(mine)}"


@pytest.fixture
def ring() -> Iterator[Ring]:
    r = Ring.create(1024)
    try:
        yield r
    finally:
        r.close()
        r.unlink()


def _slot(n: int) -> int:
    """Bytes a record of n payload bytes occupies."""
    return (4 + n + 7) & ~7


def test_create_properties(ring: Ring) -> None:
    assert ring.capacity == 1024
    assert ring.max_record == 256
    assert ring.name.startswith(f"z6r_{os.getpid()}_")
    assert (SHM / ring.name).exists()
    assert ring.pending_bytes() == 0
    assert not ring.producer_closed


@pytest.mark.parametrize("capacity", [0, 32, 100, 1000, 3 * 1024])
def test_create_rejects_bad_capacity(capacity: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        Ring.create(capacity)


def test_empty_read(ring: Ring) -> None:
    assert ring.read_all() == []
    assert ring.read_all(limit=3) == []


def test_write_read_in_order(ring: Ring) -> None:
    recs = [b"a", b"bb", b"ccc" * 10, bytes(range(256))]
    for r in recs:
        assert ring.try_write(r)
    assert ring.pending_bytes() == sum(_slot(len(r)) for r in recs)
    assert ring.read_all() == recs
    assert ring.pending_bytes() == 0
    assert ring.read_all() == []


def test_accepts_bytearray_and_memoryview(ring: Ring) -> None:
    assert ring.try_write(bytearray(b"hello"))
    assert ring.try_write(memoryview(b"xxworldxx")[2:7])
    out = ring.read_all()
    assert out == [b"hello", b"world"]
    assert all(type(x) is bytes for x in out)


def test_read_limit(ring: Ring) -> None:
    for i in range(10):
        assert ring.try_write(bytes([i]) * (i + 1))
    assert ring.read_all(limit=3) == [bytes([i]) * (i + 1) for i in range(3)]
    assert ring.read_all(limit=0) == []
    assert ring.read_all() == [bytes([i]) * (i + 1) for i in range(3, 10)]


def test_exact_fill_then_full(ring: Ring) -> None:
    # 1024 bytes = 8 slots of 128 bytes (4 + 124 payload).
    for i in range(8):
        assert ring.try_write(bytes([i]) * 124)
    assert ring.pending_bytes() == 1024
    assert not ring.try_write(b"x")
    assert ring.read_all(limit=1) == [bytes([0]) * 124]
    assert not ring.try_write(bytes(125))  # needs 136 bytes, only 128 free
    assert ring.try_write(bytes(124))
    assert len(ring.read_all()) == 8


def test_full_returns_false_then_succeeds_after_read(ring: Ring) -> None:
    n = 0
    while ring.try_write(b"%d" % n * 20):
        n += 1
        assert n < 1000
    assert n > 0
    before = ring.pending_bytes()
    assert not ring.try_write(b"z" * 20)
    assert ring.pending_bytes() == before  # a refused write changes nothing
    first = ring.read_all(limit=2)
    assert first == [b"0" * 20, b"1" * 20]
    assert ring.try_write(b"z" * 20)
    rest = ring.read_all()
    assert rest[-1] == b"z" * 20
    assert rest[:-1] == [b"%d" % i * 20 for i in range(2, n)]


def test_wrap_marker_skips_tail_gap(ring: Ring) -> None:
    # Fill 1000 of 1024 bytes, drain, then a 100-byte record cannot fit in the last 24 bytes:
    # a wrap marker is written and the record goes to offset 0.
    for _ in range(5):
        assert ring.try_write(bytes(196))  # 200-byte slots
    assert ring.read_all() == [bytes(196)] * 5
    assert ring.pending_bytes() == 0
    assert ring.try_write(b"w" * 100)
    # 24 skipped bytes + the 104-byte slot.
    assert ring.pending_bytes() == 24 + _slot(100)
    assert ring.read_all() == [b"w" * 100]
    assert ring.pending_bytes() == 0


def test_wrap_needs_room_for_gap_and_record(ring: Ring) -> None:
    for _ in range(5):
        assert ring.try_write(bytes(196))  # head at 1000
    assert ring.read_all(limit=1) == [bytes(196)]  # 200 free at the front, 24 at the end
    assert not ring.try_write(bytes(200))  # 24 + 208 > 224 free
    assert ring.try_write(bytes(196))  # 24 + 200 == 224 free: exact
    assert ring.pending_bytes() == 1024
    assert ring.read_all() == [bytes(196)] * 5


def test_record_exactly_to_end_does_not_wrap(ring: Ring) -> None:
    for _ in range(4):
        assert ring.try_write(bytes(196))  # head at 800
    assert ring.read_all() == [bytes(196)] * 4
    assert ring.try_write(b"e" * 220)  # slot 224 ends exactly at 1024
    assert ring.pending_bytes() == 224
    assert ring.try_write(b"s")  # starts at offset 0, no gap
    assert ring.pending_bytes() == 224 + 8
    assert ring.read_all() == [b"e" * 220, b"s"]


def test_wrap_with_varying_sizes_many_laps(ring: Ring) -> None:
    sizes = [1, 7, 8, 9, 100, 255, 256, 33, 64, 200, 3]
    expected: list[bytes] = []
    got: list[bytes] = []
    for i in range(5000):
        rec = bytes([i % 251]) * sizes[i % len(sizes)]
        while not ring.try_write(rec):
            got.extend(ring.read_all(limit=2))
        expected.append(rec)
    got.extend(ring.read_all())
    assert got == expected


def test_max_record_fits_in_empty_ring_at_any_position() -> None:
    for shift in range(0, 1024, 8):
        r = Ring.create(1024)
        try:
            for _ in range(shift // 8):  # move head == tail to `shift` with 8-byte slots
                assert r.try_write(b"1234")
                assert r.read_all() == [b"1234"]
            assert r.pending_bytes() == 0
            assert r.try_write(bytes(r.max_record)), shift
            assert r.read_all() == [bytes(r.max_record)]
        finally:
            r.close()
            r.unlink()


def test_oversize_and_empty_rejected(ring: Ring) -> None:
    with pytest.raises(ValueError, match=r"1\.\.256"):
        ring.try_write(bytes(257))
    with pytest.raises(ValueError, match="got 0"):
        ring.try_write(b"")
    assert ring.try_write(bytes(256))
    assert ring.pending_bytes() == _slot(256)


def test_close_flag(ring: Ring) -> None:
    other = Ring.attach(ring.name)
    try:
        assert not other.producer_closed
        assert other.try_write(b"last")
        other.mark_closed()
        assert ring.producer_closed
        assert ring.read_all() == [b"last"]
    finally:
        other.close()


def test_attach_shares_data_both_ways(ring: Ring) -> None:
    producer = Ring.attach(ring.name)
    try:
        assert producer.capacity == ring.capacity
        assert producer.max_record == ring.max_record
        for i in range(300):
            rec = b"%05d" % i
            while not producer.try_write(rec):
                assert ring.read_all()  # something to drain whenever it is full
        rest = ring.read_all()
        assert rest[-1] == b"00299"
    finally:
        producer.close()


def test_attach_missing_segment_raises() -> None:
    with pytest.raises(FileNotFoundError):
        Ring.attach("z6r_does_not_exist_123")


def test_use_after_close_raises(ring: Ring) -> None:
    ring.close()
    ring.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        ring.try_write(b"x")
    with pytest.raises(ValueError, match="closed"):
        ring.read_all()
    with pytest.raises(ValueError, match="closed"):
        ring.pending_bytes()


def test_unlink_idempotent_and_removes_segment() -> None:
    r = Ring.create(256)
    assert (SHM / r.name).exists()
    r.close()
    r.unlink()
    assert not (SHM / r.name).exists()
    r.unlink()  # again: no error


def test_unlink_when_already_gone_does_not_raise() -> None:
    r = Ring.create(256)
    other = Ring.attach(r.name)
    other.close()
    other.unlink()  # someone else removed it
    assert not (SHM / r.name).exists()
    r.close()
    r.unlink()


def test_context_manager_unlinks() -> None:
    with Ring.create(256) as r:
        assert r.try_write(b"abc")
        name = r.name
    assert not (SHM / name).exists()


def _child_attach_write(name: str, count: int) -> None:
    r = Ring.attach(name)
    for i in range(count):
        while not r.try_write(b"rec%d" % i):
            pass
    r.mark_closed()
    r.close()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_attach_from_child_process_segment_survives(method: str) -> None:
    ring = Ring.create(4096)
    try:
        ctx = (
            multiprocessing.get_context("spawn")
            if method == "spawn"
            else multiprocessing.get_context("fork")
        )
        p = ctx.Process(target=_child_attach_write, args=(ring.name, 50))
        p.start()
        p.join(60)
        assert p.exitcode == 0
        assert (SHM / ring.name).exists()  # the child's exit did not remove it
        assert ring.producer_closed
        assert ring.read_all() == [b"rec%d" % i for i in range(50)]
    finally:
        ring.close()
        ring.unlink()


_SCRIPT = textwrap.dedent(
    """
    import multiprocessing, subprocess, sys, os
    from z6.ipc.ring import Ring

    def child(name):
        r = Ring.attach(name)
        assert r.try_write(b"from-" + multiprocessing.current_process().name.encode())
        r.close()

    if __name__ == "__main__":
        ring = Ring.create(4096)
        for method in ("fork", "spawn"):
            p = multiprocessing.get_context(method).Process(target=child, args=(ring.name,))
            p.start(); p.join(60); assert p.exitcode == 0, p.exitcode
        # An unrelated process with its own resource tracker.
        code = ("from z6.ipc.ring import Ring; r = Ring.attach(%r); "
                "assert r.try_write(b'from-subprocess'); r.close()" % ring.name)
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        assert os.path.exists("/dev/shm/" + ring.name)
        print(len(ring.read_all()))
        ring.close()
        ring.unlink()
        print(os.path.exists("/dev/shm/" + ring.name))
    """
)


def test_no_resource_tracker_warnings_and_no_leak(tmp_path: Path) -> None:
    script = tmp_path / "ring_script.py"
    script.write_text(_SCRIPT)
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["3", "False"]
    # The resource tracker prints 'leaked shared_memory' or KeyError tracebacks on misuse.
    assert proc.stderr == ""


def test_creator_crash_segment_removed_by_tracker(tmp_path: Path) -> None:
    code = (
        "import os; from z6.ipc.ring import Ring; r = Ring.create(256); print(r.name); os._exit(0)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    name = proc.stdout.strip()
    assert name.startswith("z6r_")
    # The tracker process cleans up after the creator dies (with its own warning on stderr,
    # which is the tracker doing its job). Wait for it boundedly.
    for _ in range(200):
        if not (SHM / name).exists():
            break
        time.sleep(0.05)
    assert not (SHM / name).exists()
