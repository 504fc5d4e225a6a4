"""Tests of the event codec (z6.ipc.events).

Documented error contract of ``decode_batch``: on any input it returns a list of events or
raises ``msgspec.DecodeError`` (``msgspec.ValidationError`` is a subclass of it), never any
other exception. The event-log reader relies on this to report undecodable frames as damage.
"""

from __future__ import annotations

import hypothesis.strategies as st
import msgspec
import pytest
from conftest import fuzz_examples
from hypothesis import given, settings

from z6.ipc.events import (
    Event,
    IterationDropped,
    RequestEvent,
    VuStarted,
    VuStopped,
    WorkerFinished,
    WorkerStarted,
    decode_batch,
    encode_batch,
)

_I64 = st.integers(-(2**63), 2**63 - 1)
_U64 = st.integers(0, 2**64 - 1)
_INT = _I64 | _U64  # every int msgspec's msgpack can carry

EXAMPLES: list[Event] = [
    RequestEvent(
        vu=3,
        iteration=7,
        request=1,
        step=2,
        start_ns=1_000_000,
        latency_ns=250_000,
        status=200,
        error=0,
        bytes_received=1234,
        new_connection=True,
        connect_ns=50_000,
        scheduled_ns=999_000,
        think_ns=10_000_000,
        retried=True,
    ),
    VuStarted(vu=3, t_ns=5),
    VuStopped(vu=3, t_ns=6, iterations=8),
    IterationDropped(iteration=11, scheduled_ns=12),
    WorkerStarted(worker=1, pid=4321, t_ns=0, vus=50),
    WorkerFinished(
        worker=1, t_ns=99, events=1000, requests_started=900, ring_waits=3, ring_wait_ns=7
    ),
]

_events = st.one_of(
    st.builds(
        RequestEvent,
        vu=_INT,
        iteration=_INT,
        request=_INT,
        step=_INT,
        start_ns=_INT,
        latency_ns=_INT,
        status=_INT,
        error=_INT,
        bytes_received=_INT,
        new_connection=st.booleans(),
        connect_ns=_INT,
        scheduled_ns=_INT,
        think_ns=_INT,
        retried=st.booleans(),
    ),
    st.builds(VuStarted, vu=_INT, t_ns=_INT),
    st.builds(VuStopped, vu=_INT, t_ns=_INT, iterations=_INT),
    st.builds(IterationDropped, iteration=_INT, scheduled_ns=_INT),
    st.builds(WorkerStarted, worker=_INT, pid=_INT, t_ns=_INT, vus=_INT),
    st.builds(
        WorkerFinished,
        worker=_INT,
        t_ns=_INT,
        events=_INT,
        requests_started=_INT,
        ring_waits=_INT,
        ring_wait_ns=_INT,
    ),
)


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_round_trip_each_type(event: Event) -> None:
    out = decode_batch(encode_batch([event]))
    assert out == [event]
    assert type(out[0]) is type(event)


def test_round_trip_mixed_batch_and_empty_batch() -> None:
    assert decode_batch(encode_batch(EXAMPLES)) == EXAMPLES
    assert decode_batch(encode_batch([])) == []


def test_wire_form_is_tagged_arrays() -> None:
    # Part of the event-log format: a batch is an array of [tag, field, field, ...].
    raw = msgspec.msgpack.decode(encode_batch(EXAMPLES[1:4]))
    assert raw == [[2, 3, 5], [3, 3, 6, 8], [4, 11, 12]]
    req = msgspec.msgpack.decode(encode_batch(EXAMPLES[:1]))
    assert req == [
        [1, 3, 7, 1, 2, 1_000_000, 250_000, 200, 0, 1234, True, 50_000, 999_000, 10**7, True]
    ]


def test_trailing_defaults_may_be_absent() -> None:
    # Older writers (or future trimming) may omit fields that have defaults.
    data = msgspec.msgpack.encode([[1, 0, 0, 0, 0, 0, 5, 200, 0, 10, False, 0]])
    (ev,) = decode_batch(data)
    assert isinstance(ev, RequestEvent)
    assert (ev.scheduled_ns, ev.think_ns, ev.retried) == (-1, 0, False)
    # The logs written before ``retried`` existed: 14 fields.
    old = [[1, 0, 0, 0, 0, 0, 5, 200, 0, 10, False, 0, 3, 4]]
    (ev,) = decode_batch(msgspec.msgpack.encode(old))
    assert isinstance(ev, RequestEvent)
    assert (ev.scheduled_ns, ev.think_ns, ev.retried) == (3, 4, False)
    # WorkerFinished before ``ring_wait_ns``: 5 fields.
    (fin,) = decode_batch(msgspec.msgpack.encode([[6, 1, 99, 10, 9, 3]]))
    assert isinstance(fin, WorkerFinished)
    assert (fin.ring_waits, fin.ring_wait_ns) == (3, 0)


def test_encode_into_buffer_reuses_it() -> None:
    buf = bytearray(b"old contents that are longer than needed" * 10)
    out = encode_batch(EXAMPLES, buf)
    assert out is buf
    assert bytes(buf) == encode_batch(EXAMPLES)
    assert decode_batch(memoryview(buf)) == EXAMPLES


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", msgspec.DecodeError),
        (b"\xc1", msgspec.DecodeError),
        (msgspec.msgpack.encode({"a": 1}), msgspec.ValidationError),
        (msgspec.msgpack.encode([[99, 1, 2]]), msgspec.ValidationError),  # unknown tag
        (msgspec.msgpack.encode([[2, 1]]), msgspec.ValidationError),  # missing field
        (msgspec.msgpack.encode([[2, 1, "x"]]), msgspec.ValidationError),  # wrong type
        (encode_batch(EXAMPLES)[:-1], msgspec.DecodeError),  # truncated
    ],
)
def test_decode_errors(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_batch(data)


def test_validation_error_is_a_decode_error() -> None:
    assert issubclass(msgspec.ValidationError, msgspec.DecodeError)


@settings(max_examples=fuzz_examples(300), deadline=None)
@given(events=st.lists(_events, max_size=20))
def test_round_trip_property(events: list[Event]) -> None:
    data = encode_batch(events)
    assert decode_batch(data) == events
    buf = bytearray()
    assert bytes(encode_batch(events, buf)) == data


@settings(max_examples=fuzz_examples(500), deadline=None)
@given(data=st.binary(max_size=200))
def test_decode_arbitrary_bytes_only_decode_error(data: bytes) -> None:
    try:
        out = decode_batch(data)
    except msgspec.DecodeError:
        return
    assert isinstance(out, list)


@settings(max_examples=fuzz_examples(300), deadline=None)
@given(
    events=st.lists(_events, min_size=1, max_size=5),
    pos=st.integers(0, 10**6),
    xor=st.integers(1, 255),
)
def test_decode_mutated_batch_only_decode_error(events: list[Event], pos: int, xor: int) -> None:
    data = bytearray(encode_batch(events))
    data[pos % len(data)] ^= xor
    try:
        out = decode_batch(bytes(data))
    except msgspec.DecodeError:
        return
    assert isinstance(out, list)
