"""Single-producer single-consumer ring buffer in POSIX shared memory.

One ring per worker: the worker (producer) appends variable-length records, the supervisor's
aggregator (consumer) drains them. Nothing is ever dropped: :meth:`Ring.try_write` returns
``False`` when the ring is full and the producer waits and retries (backpressure).

Layout of the shared segment (all integers native-endian, which is little-endian on every
platform z6 runs on)::

    offset   0  u64 head      bytes ever written; stored only by the producer, after the record
    offset  64  u64 tail      bytes ever consumed; stored only by the consumer
    offset 128  u64 magic     0x5A36524E ("Z6RN")
    offset 136  u64 capacity  bytes of the data area, a power of two
    offset 144  u64 closed    1 once the producer said no more records will come
    offset 192  data area     ``capacity`` bytes

``head`` and ``tail`` live on their own 64-byte cache lines so that the two processes do not
false-share. They increase monotonically and are never reset; a position in the data area is
``counter & (capacity - 1)``. A record is ``u32 length`` + payload, padded to a multiple of 8
bytes. A record never splits across the end of the data area: when it would not fit before the
end, the producer writes the wrap marker ``0xFFFFFFFF`` as the length and continues at offset 0;
the skipped bytes count as used (they advance ``head`` and, once read, ``tail``).

Memory ordering assumption: the producer writes the payload first and stores ``head`` last; the
consumer copies payloads out before it stores ``tail``. Each store is a separate C call
(``memcpy``) that CPython cannot reorder, and x86-64 (TSO) keeps stores visible in program
order, so a consumer that sees the new ``head`` also sees the record. The counters are read
and written through a ``memoryview`` cast to ``"Q"``, which CPython implements with one
aligned 8-byte ``memcpy`` (a single load/store), so they are never torn. Not with
``struct.pack_into``: it zeroes the field before writing it, and the other process can read
that transient 0 (the stress test caught exactly this). On weakly ordered CPUs (ARM) this would
need real memory barriers, which pure Python does not expose.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import secrets
import struct
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory

# The C module behind SharedMemory on POSIX. We use it to attach without registering the
# segment with this process's resource tracker (Python 3.11 has no ``track=False``).
import _posixshmem  # type: ignore[import-not-found]  # isort: skip

__all__ = ["Ring", "RingCorruptError"]

# Indexes into the header viewed as an array of u64.
_HEAD = 0  # offset 0
_TAIL = 8  # offset 64
_MAGIC_IX = 16  # offset 128
_CAPACITY_IX = 17  # offset 136
_CLOSED = 18  # offset 144
_HEADER_SIZE = 192
_MAGIC = 0x5A36524E
_WRAP = 0xFFFFFFFF
_MIN_CAPACITY = 64

# Record lengths (written before head is published, so pack_into's zeroing is harmless).
_U32 = struct.Struct("I")


class RingCorruptError(Exception):
    """Raised when the ring's memory does not hold what the protocol says it must.

    Only a bug (or a foreign process writing into the segment) causes this, so it is not a
    ``Z6Error``: it surfaces as an internal error (exit 4).
    """


def _map_segment(name: str) -> mmap.mmap:
    """Open the named POSIX shared-memory segment and map it read/write, untracked."""
    fd = _posixshmem.shm_open("/" + name, os.O_RDWR, mode=0o600)
    try:
        size = os.fstat(fd).st_size
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


class Ring:
    """A single-producer single-consumer ring of variable-length byte records.

    Create it in the consumer (supervisor) with :meth:`create`, pass :attr:`name` to the
    producer process and :meth:`attach` there. One process writes (:meth:`try_write`,
    :meth:`mark_closed`), the other reads (:meth:`read_all`); the same object may do both in
    tests. Both sides :meth:`close` their mapping; the creator finally calls :meth:`unlink`.

    The consumer's end-of-stream check is: read :attr:`producer_closed` *first*, then drain
    with :meth:`read_all`; if the flag was set, that drain returned the last records.
    """

    name: str
    capacity: int
    max_record: int

    def __init__(self, name: str, mm: mmap.mmap, shm: SharedMemory | None) -> None:
        """Wrap an existing mapping; use :meth:`create` or :meth:`attach` instead."""
        if len(mm) < _HEADER_SIZE or len(mm) % 8:
            mm.close()
            raise RingCorruptError(f"shared memory {name!r} is too small for a z6 ring")
        counters = memoryview(mm).cast("Q")
        magic = counters[_MAGIC_IX]
        capacity = counters[_CAPACITY_IX]
        if (
            magic != _MAGIC
            or capacity < _MIN_CAPACITY
            or capacity & (capacity - 1)
            or len(mm) < _HEADER_SIZE + capacity
        ):
            counters.release()
            mm.close()
            raise RingCorruptError(
                f"shared memory {name!r} is not a z6 ring (magic {magic:#x}, capacity {capacity})"
            )
        self.name = name
        self.capacity = capacity
        self.max_record = capacity // 4
        self._mask = capacity - 1
        self._mm: mmap.mmap | None = mm
        self._counters: memoryview | None = counters
        self._shm = shm
        self._unlinked = False
        # Producer state: its own head (authoritative) and the last tail it saw.
        self._w_head: int = counters[_HEAD]
        self._w_tail: int = counters[_TAIL]
        # Consumer state: its own tail (authoritative).
        self._r_tail: int = self._w_tail

    @classmethod
    def create(cls, capacity: int = 8 * 1024 * 1024) -> Ring:
        """Create a new ring segment with a ``capacity``-byte data area (a power of two >= 64).

        The segment is registered with multiprocessing's resource tracker, so it is removed
        even if this process dies without calling :meth:`unlink`.
        """
        if capacity < _MIN_CAPACITY or capacity & (capacity - 1):
            raise ValueError(f"ring capacity must be a power of two >= 64, got {capacity}")
        name = f"z6r_{os.getpid()}_{secrets.token_hex(4)}"
        shm = SharedMemory(name=name, create=True, size=_HEADER_SIZE + capacity)
        try:
            shm.close()  # we keep the object only to unlink (and untrack) it later
            mm = _map_segment(name)
            counters = memoryview(mm).cast("Q")
            counters[_MAGIC_IX] = _MAGIC
            counters[_CAPACITY_IX] = capacity
            counters.release()
        except BaseException:
            shm.close()
            shm.unlink()
            raise
        return cls(name, mm, shm)

    @classmethod
    def attach(cls, name: str) -> Ring:
        """Map the existing ring ``name`` (created by another process).

        The segment is *not* registered with this process's resource tracker: on Python 3.11
        ``SharedMemory(name)`` would register it, and the tracker would then unlink it (with a
        'leaked shared_memory' warning) when this process exits, or, when the tracker is shared
        with the creator (fork and spawn children), lose the creator's registration.
        """
        return cls(name, _map_segment(name), None)

    def _views(self) -> tuple[mmap.mmap, memoryview]:
        mm, counters = self._mm, self._counters
        if mm is None or counters is None:
            raise ValueError("ring is closed")
        return mm, counters

    def try_write(self, payload: bytes | bytearray | memoryview) -> bool:
        """Append one record; return ``False`` (writing nothing) when there is not room now.

        Raises ``ValueError`` when the payload is empty or longer than :attr:`max_record`.
        An empty ring always has room for a record of :attr:`max_record` bytes.
        """
        n = payload.nbytes if isinstance(payload, memoryview) else len(payload)
        if n == 0 or n > self.max_record:
            raise ValueError(f"ring record must be 1..{self.max_record} bytes, got {n}")
        mm, counters = self._mm, self._counters
        if mm is None or counters is None:
            raise ValueError("ring is closed")
        size = (n + 11) & ~7  # u32 length + payload, padded to 8
        head = self._w_head
        pos = head & self._mask
        to_end = self.capacity - pos
        need = size if size <= to_end else size + to_end
        if self.capacity - (head - self._w_tail) < need:
            # Only look at the consumer's cache line when the cached tail says "full".
            self._w_tail = counters[_TAIL]
            if self.capacity - (head - self._w_tail) < need:
                return False
        if size > to_end:
            _U32.pack_into(mm, _HEADER_SIZE + pos, _WRAP)
            head += to_end
            pos = 0
        start = _HEADER_SIZE + pos
        _U32.pack_into(mm, start, n)
        mm[start + 4 : start + 4 + n] = payload
        head += size
        self._w_head = head
        counters[_HEAD] = head  # publish last
        return True

    def read_all(self, limit: int | None = None) -> list[bytes]:
        """Consume the complete records available now (at most ``limit``), oldest first.

        Each record is returned exactly once, as a copy; ``tail`` is advanced after copying.
        """
        mm, counters = self._mm, self._counters
        if mm is None or counters is None:
            raise ValueError("ring is closed")
        tail = self._r_tail
        head: int = counters[_HEAD]
        if head == tail:
            return []
        out: list[bytes] = []
        append = out.append
        unpack_len = _U32.unpack_from
        mask = self._mask
        max_record = self.max_record
        remaining = -1 if limit is None else limit
        while tail < head and remaining != 0:
            pos = tail & mask
            start = _HEADER_SIZE + pos
            n = unpack_len(mm, start)[0]
            if n == _WRAP:
                tail += self.capacity - pos
                continue
            if n == 0 or n > max_record:
                raise RingCorruptError(f"ring {self.name}: bad record length {n} at {tail}")
            append(mm[start + 4 : start + 4 + n])
            tail += (n + 11) & ~7
            remaining -= 1
        if tail > head:
            raise RingCorruptError(f"ring {self.name}: tail {tail} passed head {head}")
        self._r_tail = tail
        counters[_TAIL] = tail
        return out

    def mark_closed(self) -> None:
        """Producer: say that no more records will come (after the last :meth:`try_write`)."""
        self._views()[1][_CLOSED] = 1

    @property
    def producer_closed(self) -> bool:
        """Whether the producer called :meth:`mark_closed`."""
        return bool(self._views()[1][_CLOSED])

    def pending_bytes(self) -> int:
        """Bytes written but not yet consumed (records, padding and wrap gaps)."""
        counters = self._views()[1]
        head: int = counters[_HEAD]
        tail: int = counters[_TAIL]
        return head - tail

    def close(self) -> None:
        """Unmap the segment in this process; idempotent. The segment itself stays."""
        counters, self._counters = self._counters, None
        if counters is not None:
            counters.release()
        mm, self._mm = self._mm, None
        if mm is not None:
            mm.close()

    def unlink(self) -> None:
        """Remove the segment (call once, in the creator); never raises if it is gone."""
        if self._unlinked:
            return
        self._unlinked = True
        if self._shm is not None:
            try:
                self._shm.unlink()
            except FileNotFoundError:
                # Gone already: still drop our tracker registration, or the tracker warns.
                resource_tracker.unregister("/" + self.name, "shared_memory")
        else:
            with contextlib.suppress(FileNotFoundError):
                _posixshmem.shm_unlink("/" + self.name)

    def __enter__(self) -> Ring:
        """Use as a context manager: closes (and, in the creator, unlinks) on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the mapping; the creator also unlinks the segment."""
        self.close()
        if self._shm is not None:
            self.unlink()

    def __repr__(self) -> str:
        """Show the name and capacity."""
        return f"Ring(name={self.name!r}, capacity={self.capacity})"
