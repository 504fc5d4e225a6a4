"""Hypothesis: damaged event logs never make the reader raise anything undocumented.

Invariant: ``EventLogReader(path)`` either raises ``LogFormatError`` or succeeds; iterating
``batches()`` / ``raw_frames()`` never raises; what it yields is a prefix of what was written
(CRC32 makes a damaged frame pass only with probability 2**-32).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import hypothesis.strategies as st
from conftest import fuzz_examples
from hypothesis import given, settings

from z6.engine.errors import LogFormatError
from z6.ipc.eventlog import EventLogReader, EventLogWriter, LogFooter, LogHeader
from z6.ipc.events import Event, IterationDropped, RequestEvent, VuStopped, encode_batch

_I64 = st.integers(-(2**63), 2**63 - 1)

_events = st.one_of(
    st.builds(
        RequestEvent,
        vu=st.integers(0, 10**6),
        iteration=st.integers(0, 10**9),
        request=st.integers(0, 100),
        step=st.integers(0, 100),
        start_ns=_I64,
        latency_ns=st.integers(0, 2**62),
        status=st.integers(0, 999),
        error=st.integers(0, 30),
        bytes_received=st.integers(0, 2**40),
        new_connection=st.booleans(),
        connect_ns=st.integers(0, 2**40),
    ),
    st.builds(VuStopped, vu=st.integers(0, 10**6), t_ns=_I64, iterations=st.integers(0, 10**9)),
    st.builds(IterationDropped, iteration=st.integers(0, 10**9), scheduled_ns=_I64),
)
_batches = st.lists(
    st.tuples(st.integers(0, 7), st.lists(_events, min_size=1, max_size=6)), max_size=6
)

_damage = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=40), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=20)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 20)),
)

HEADER = LogHeader(
    z6_version="0.1.0",
    seed=7,
    scenario_text="x = 1\n",
    scenario_sha256="00" * 32,
    scenario_path="s.toml",
    procs=8,
    wall_start_ns=1,
)
FOOTER = LogFooter(worker_events=[1] * 8, worker_reported=[1] * 8, end_wall_ns=2, outcome="ok")


def _apply(data: bytes, op: tuple[str, object, object]) -> bytes:
    kind, a, b = op
    if kind == "flip":
        assert isinstance(a, int)
        assert isinstance(b, int)
        if not data:
            return data
        i = a % len(data)
        return data[:i] + bytes([data[i] ^ b]) + data[i + 1 :]
    if kind == "truncate":
        assert isinstance(a, int)
        return data[: a % (len(data) + 1)]
    if kind == "append":
        assert isinstance(a, bytes)
        return data + a
    if kind == "insert":
        assert isinstance(a, int)
        assert isinstance(b, bytes)
        i = a % (len(data) + 1)
        return data[:i] + b + data[i:]
    assert isinstance(a, int)
    assert isinstance(b, int)
    i = a % (len(data) + 1)
    return data[:i] + data[i + b :]


@settings(max_examples=fuzz_examples(300), deadline=None)
@given(
    batches=_batches,
    footer=st.booleans(),
    damage=st.lists(_damage, min_size=1, max_size=3),
)
def test_random_damage_never_raises_anything_else(
    batches: list[tuple[int, list[Event]]],
    footer: bool,
    damage: list[tuple[str, object, object]],
) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "events.bin"
        w = EventLogWriter(p, HEADER)
        for worker, evs in batches:
            w.write_batch(worker, encode_batch(evs))
        w.close(FOOTER if footer else None)
        data = p.read_bytes()
        for op in damage:
            data = _apply(data, op)
        p.write_bytes(data)
        try:
            r = EventLogReader(p)
        except LogFormatError:
            return
        got = list(r.batches())
        assert got == batches[: len(got)]
        if r.damage is not None:
            assert 0 <= r.damage.offset <= len(data)
            assert r.damage.frame_index >= len(got)
        raw = list(r.raw_frames())
        assert [w for w, _ in raw][: len(got)] == [w for w, _ in got]
        if r.footer is not None:
            assert r.footer == FOOTER


@settings(max_examples=fuzz_examples(200), deadline=None)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_are_rejected_or_read(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.bin"
        p.write_bytes(data)
        try:
            r = EventLogReader(p)
        except LogFormatError:
            return
        list(r.batches())  # random bytes almost never carry a valid header


@settings(max_examples=fuzz_examples(200), deadline=None)
@given(tail=st.binary(max_size=200))
def test_valid_header_then_arbitrary_frames(tail: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.bin"
        EventLogWriter(p, HEADER).close()
        with open(p, "ab") as f:
            f.write(tail)
        r = EventLogReader(p)
        got = list(r.batches())
        if tail:
            assert r.damage is not None or got  # something was read or reported
        else:
            assert r.damage is None
            assert got == []
