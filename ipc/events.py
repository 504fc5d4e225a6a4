"""Events that workers produce and the aggregator consumes, and their msgspec codec.

Every event is a msgspec Struct encoded ``array_like`` with an integer tag, so one batch is a
MessagePack array of short arrays. Field order is part of the event-log format
(``docs/event-log.md``); add fields only at the end, with a default.

Times are nanoseconds relative to the run's common start instant (``run_start_ns``, a
``time.monotonic_ns()`` value shared by all processes), so logs from different machines
(shards) line up on their own starts.
"""

from __future__ import annotations

import msgspec


class RequestEvent(msgspec.Struct, array_like=True, tag=1, gc=False):
    """One request, finished (successfully or not).

    ``request`` indexes ``Scenario.requests``; ``step`` is the position of this request inside
    its iteration (0 in weighted mode, the 0-based index in the sequence walk otherwise).
    ``start_ns`` is when the first byte was about to be written; ``latency_ns`` runs from then
    to the last response byte parsed (or to the failure). ``scheduled_ns`` is the instant the
    open model meant the iteration to start (-1 in closed models). ``error`` is an
    ``ErrorKind`` value. ``connect_ns`` is the connection setup time when ``new_connection``.
    ``think_ns`` is the think time drawn after this request (recorded for ``z6 replay``).
    ``retried``: the first attempt failed on a stale kept-alive connection (closed or reset
    with no response byte) and this idempotent request went again on a new connection;
    ``start_ns`` is the first attempt's, unless the reconnect failed (a connect-phase error
    with ``latency_ns`` 0, like any failed connect). Logs written before it hold False.
    """

    vu: int
    iteration: int
    request: int
    step: int
    start_ns: int
    latency_ns: int
    status: int
    error: int
    bytes_received: int
    new_connection: bool
    connect_ns: int
    scheduled_ns: int = -1
    think_ns: int = 0
    retried: bool = False


class VuStarted(msgspec.Struct, array_like=True, tag=2, gc=False):
    """A VU became active at ``t_ns`` (schedules may start and stop a VU several times)."""

    vu: int
    t_ns: int


class VuStopped(msgspec.Struct, array_like=True, tag=3, gc=False):
    """A VU became inactive at ``t_ns`` after ``iterations`` completed iterations in total."""

    vu: int
    t_ns: int
    iterations: int


class IterationDropped(msgspec.Struct, array_like=True, tag=4, gc=False):
    """Open model: iteration ``iteration`` was due at ``scheduled_ns`` but no VU was free."""

    iteration: int
    scheduled_ns: int


class WorkerStarted(msgspec.Struct, array_like=True, tag=5, gc=False):
    """Worker ``worker`` (pid ``pid``) began; it owns ``vus`` VU ids."""

    worker: int
    pid: int
    t_ns: int
    vus: int


class WorkerFinished(msgspec.Struct, array_like=True, tag=6, gc=False):
    """Last event of a worker.

    ``events`` counts every event this worker produced *before* this one; the aggregator
    compares it with what it received. ``requests_started`` counts requests begun, so that
    started = recorded request events holds. ``ring_waits`` counts the writes that found the
    ring full (one however long each waited; logs before ``ring_wait_ns`` counted every 0.5 ms
    retry), ``ring_wait_ns`` the time the worker spent waiting for room (0 in older logs).
    """

    worker: int
    t_ns: int
    events: int
    requests_started: int
    ring_waits: int
    ring_wait_ns: int = 0


Event = RequestEvent | VuStarted | VuStopped | IterationDropped | WorkerStarted | WorkerFinished

_encoder = msgspec.msgpack.Encoder()
_batch_decoder = msgspec.msgpack.Decoder(list[Event])


def encode_batch(events: list[Event], buffer: bytearray | None = None) -> bytes | bytearray:
    """Encode a batch of events as one MessagePack array.

    With ``buffer`` the encoding is written into it (reused, resized as needed) and the buffer
    is returned, which avoids one allocation per batch on the hot path.
    """
    if buffer is None:
        return _encoder.encode(events)
    _encoder.encode_into(events, buffer)
    return buffer


def decode_batch(data: bytes | bytearray | memoryview) -> list[Event]:
    """Decode one batch produced by :func:`encode_batch`.

    Raises ``msgspec.DecodeError`` (a ``ValueError``) on malformed input; callers at a trust
    boundary (the log reader) turn that into their own documented error.
    """
    return _batch_decoder.decode(data)
