"""Model-based tests of the ring: random interleavings of writes and reads against a deque."""

from __future__ import annotations

from collections import deque

import hypothesis.strategies as st
from conftest import fuzz_examples
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from z6.ipc.ring import Ring


def _slot(n: int) -> int:
    return (4 + n + 7) & ~7


class RingModel(RuleBasedStateMachine):
    """The ring must behave like a FIFO of byte strings with a byte budget.

    The model keeps the records in a deque and the two byte counters; a write must be
    refused exactly when the model says the record (plus the gap skipped at the end of the
    data area, if it would not fit there) exceeds the free space.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ring = Ring.create(256)  # max_record 64: many wraps
        self.producer = Ring.attach(self.ring.name)  # separate mappings, like two processes
        self.records: deque[bytes] = deque()
        self.head = 0
        self.tail_offsets: deque[int] = deque()  # head value after each record
        self.tail = 0
        self.counter = 0

    def _fits(self, n: int) -> tuple[bool, int]:
        cap = self.ring.capacity
        pos = self.head % cap
        size = _slot(n)
        need = size if size <= cap - pos else size + (cap - pos)
        return cap - (self.head - self.tail) >= need, need

    @rule(n=st.integers(1, 64))
    def write(self, n: int) -> None:
        self.counter += 1
        rec = (self.counter.to_bytes(4, "little") * 17)[:n]
        fits, need = self._fits(n)
        assert self.producer.try_write(rec) is fits
        if fits:
            self.head += need
            self.records.append(rec)
            self.tail_offsets.append(self.head)

    @rule(limit=st.none() | st.integers(0, 5))
    def read(self, limit: int | None) -> None:
        got = self.ring.read_all(limit)
        count = len(self.records) if limit is None else min(limit, len(self.records))
        expected = [self.records.popleft() for _ in range(count)]
        assert got == expected
        for _ in range(count):
            self.tail = self.tail_offsets.popleft()

    @precondition(lambda self: len(self.records) == 0)
    @rule()
    def max_record_when_empty(self) -> None:
        # An empty ring accepts the largest record wherever head is.
        rec = b"M" * self.ring.max_record
        fits, need = self._fits(len(rec))
        assert fits
        assert self.producer.try_write(rec)
        self.head += need
        self.records.append(rec)
        self.tail_offsets.append(self.head)

    @invariant()
    def pending_matches(self) -> None:
        # Wrap gaps skipped at the end are accounted to the record after them, which is
        # consumed together with them, so the model's tail lands where the ring's does.
        assert self.ring.pending_bytes() == self.head - self.tail
        assert self.producer.pending_bytes() == self.head - self.tail

    def teardown(self) -> None:
        self.producer.close()
        self.ring.close()
        self.ring.unlink()


RingModel.TestCase.settings = settings(
    max_examples=fuzz_examples(300),
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRingModel = RingModel.TestCase
