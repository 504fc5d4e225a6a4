"""The ``events.bin`` event log: an append-only writer and a streaming, damage-tolerant reader.

Byte-level format: ``docs/event-log.md``. In short: an 18-byte prefix (magic, format version,
header length, header CRC32), the msgpack :class:`LogHeader`, then frames of
``u32 length, u32 crc32, u8 kind, u16 worker, payload``. Event-batch frames carry exactly the
bytes of :func:`z6.ipc.events.encode_batch` (the aggregator copies ring records into the log
without re-encoding them); the last frame of a finished run is the :class:`LogFooter`.

The writer only appends, and :meth:`EventLogWriter.flush` hands whole frames to the OS, so a
crash leaves every flushed frame readable. The reader verifies every CRC and, at the first
damaged frame, stops and records a :class:`LogDamage` instead of raising: callers analyze what
precedes it and report the rest.
"""

from __future__ import annotations

import contextlib
import struct
import zlib
from collections.abc import Generator
from pathlib import Path
from typing import BinaryIO

import msgspec

from z6.engine.errors import LogFormatError, RunError
from z6.ipc.events import Event, decode_batch

__all__ = [
    "FORMAT_VERSION",
    "KIND_BATCH",
    "KIND_FOOTER",
    "MAGIC",
    "MAX_FRAME_PAYLOAD",
    "EventLogReader",
    "EventLogWriter",
    "LogDamage",
    "LogFooter",
    "LogHeader",
]

MAGIC = b"Z6EVLOG\x00"
FORMAT_VERSION = 1
KIND_BATCH = 1
KIND_FOOTER = 2
#: Worker field of the footer frame (it belongs to no worker).
FOOTER_WORKER = 0xFFFF
#: Upper bound of a header or frame payload. A length above it can only come from damage, and
#: checking it first keeps a flipped length bit from making the reader allocate gigabytes.
MAX_FRAME_PAYLOAD = 64 * 1024 * 1024

# magic, format version, header payload length, header payload CRC32
_PREFIX = struct.Struct("<8sHII")
# payload length, CRC32 over bytes 8..11 of this header + payload, kind, worker
_FRAME = struct.Struct("<IIBH")
_KIND_WORKER = struct.Struct("<BH")
_READ_BUFFER = 1024 * 1024
_WRITE_BUFFER = 1024 * 1024


def _default_percentiles() -> list[float]:
    return [50.0, 90.0, 95.0, 99.0, 99.9]


class LogHeader(msgspec.Struct, kw_only=True):
    """What a log needs to be analyzed and replayed on its own: scenario, seed, run shape.

    ``wall_start_ns`` is ``time.time_ns()`` at the run's common start instant; event times are
    relative to that instant. ``options`` holds free-form run options (``--vus``, ``--duration``
    overrides...) for display only.
    """

    format_version: int = FORMAT_VERSION
    z6_version: str
    seed: int
    scenario_text: str
    scenario_sha256: str
    scenario_path: str
    procs: int
    wall_start_ns: int
    shard_index: int = 0
    shard_count: int = 1
    percentiles: list[float] = msgspec.field(default_factory=_default_percentiles)
    options: dict[str, str] = {}


class LogFooter(msgspec.Struct, kw_only=True):
    """The last frame of a run that ended in an orderly way (even if it failed).

    ``end_wall_ns`` is ``time.time_ns()`` at the end of the run; for an ``"aborted"`` run, at
    the second interrupt (the summary's duration ends there).

    ``worker_events[w]`` counts the events the aggregator received from worker ``w``;
    ``worker_reported[w]`` what the worker said it produced (-1 when it never said).
    ``outcome`` is ``"complete"``, ``"interrupted"``, ``"worker_failed"``, ``"aborted"`` or
    ``"limit_reached"`` (stopped early by ``limits.max_event_log_size_mb``).
    """

    worker_events: list[int]
    worker_reported: list[int]
    end_wall_ns: int
    outcome: str
    failed_workers: list[int] = []
    message: str = ""


class LogDamage(msgspec.Struct, frozen=True):
    """Where reading stopped: the first bad frame (0-based index among all frames, footer
    included), its byte offset in the file, and why (``"CRC mismatch"``, ...)."""

    frame_index: int
    offset: int
    reason: str

    def describe(self) -> str:
        """One line for users: ``frame 12 at byte 40321: CRC mismatch``."""
        return f"frame {self.frame_index} at byte {self.offset}: {self.reason}"


_header_encoder = msgspec.msgpack.Encoder()
_header_decoder = msgspec.msgpack.Decoder(LogHeader)
_footer_decoder = msgspec.msgpack.Decoder(LogFooter)


class EventLogWriter:
    """Append-only writer of one ``events.bin``.

    The constructor creates (or truncates) the file and writes and flushes the header at
    once. Frames are buffered; :meth:`flush` hands them to the OS. Any ``OSError`` becomes a
    :class:`~z6.engine.errors.RunError` naming the path (exit code 3: output not writable).
    """

    bytes_written: int

    def __init__(self, path: str | Path, header: LogHeader) -> None:
        """Create ``path`` and write ``header``; raises ``RunError`` when it cannot."""
        self.path = Path(path)
        payload = _header_encoder.encode(header)
        if len(payload) > MAX_FRAME_PAYLOAD:
            raise RunError(f"{self.path}: event log header too large ({len(payload)} bytes)")
        prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(payload), zlib.crc32(payload))
        self._file: BinaryIO | None = None
        try:
            f = open(self.path, "wb", buffering=_WRITE_BUFFER)  # noqa: SIM115 (kept open)
        except OSError as e:
            raise RunError(f"cannot create event log {self.path}: {e.strerror or e}") from e
        self._file = f
        self.bytes_written = len(prefix) + len(payload)
        try:
            self._write(prefix)
            self._write(payload)
            self.flush()
        except BaseException:
            self._file = None
            with contextlib.suppress(OSError):
                f.close()
            raise

    def _fail(self, e: OSError) -> RunError:
        return RunError(f"cannot write event log {self.path}: {e.strerror or e}")

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        f = self._file
        if f is None:
            raise ValueError(f"event log {self.path} is closed")
        try:
            f.write(data)
        except OSError as e:
            raise self._fail(e) from e

    def _frame(self, kind: int, worker: int, payload: bytes | bytearray | memoryview) -> None:
        n = payload.nbytes if isinstance(payload, memoryview) else len(payload)
        if n > MAX_FRAME_PAYLOAD:
            raise ValueError(f"event log frame too large: {n} bytes")
        crc = zlib.crc32(payload, zlib.crc32(_KIND_WORKER.pack(kind, worker)))
        self._write(_FRAME.pack(n, crc, kind, worker))
        self._write(payload)
        self.bytes_written += _FRAME.size + n

    def write_batch(self, worker: int, payload: bytes | bytearray | memoryview) -> None:
        """Append one event-batch frame from ``worker`` (buffered).

        ``payload`` must be the bytes of one :func:`~z6.ipc.events.encode_batch` call; it is
        copied as is. ``worker`` is 0..65534; an empty payload is a ``ValueError``.
        """
        if not 0 <= worker < FOOTER_WORKER:
            raise ValueError(f"worker index out of range: {worker}")
        if not payload:
            raise ValueError("empty event batch")
        self._frame(KIND_BATCH, worker, payload)

    def flush(self) -> None:
        """Hand every buffered frame to the OS (no fsync): a crash of z6 after this loses
        nothing written so far."""
        f = self._file
        if f is None:
            return
        try:
            f.flush()
        except OSError as e:
            raise self._fail(e) from e

    def close(self, footer: LogFooter | None = None) -> None:
        """Write ``footer`` (when given) as the last frame, flush and close; idempotent."""
        f = self._file
        if f is None:
            return
        try:
            if footer is not None:
                self._frame(KIND_FOOTER, FOOTER_WORKER, _header_encoder.encode(footer))
            self.flush()
        finally:
            self._file = None
            # The flush above already reported a write failure, if any.
            with contextlib.suppress(OSError):
                f.close()

    def __enter__(self) -> EventLogWriter:
        """Context manager: :meth:`close` without a footer on exit (crash-like end)."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close without a footer unless :meth:`close` was already called."""
        self.close(None)


class EventLogReader:
    """Streaming reader of one ``events.bin``.

    The constructor reads and checks the header and raises
    :class:`~z6.engine.errors.LogFormatError` (naming the path) when the file is missing,
    unreadable, not a z6 log, of another format version, or has a damaged header. Nothing else
    ever raises: iteration stops at the first damaged frame and sets :attr:`damage`. A log
    that ends cleanly after a frame but without footer (the run did not finish) has
    ``damage is None and footer is None``. Each call to :meth:`batches` / :meth:`raw_frames`
    reads the file again from the first frame, with constant memory.
    """

    header: LogHeader
    damage: LogDamage | None
    footer: LogFooter | None

    def __init__(self, path: str | Path) -> None:
        """Open ``path`` and read its header (see the class docstring for errors)."""
        self.path = Path(path)
        self.damage = None
        self.footer = None
        self._last: tuple[int, int] | None = None
        try:
            with open(self.path, "rb") as f:
                prefix = f.read(_PREFIX.size)
                self._check_prefix(prefix)
                _, version, length, crc = _PREFIX.unpack(prefix)
                if version != FORMAT_VERSION:
                    raise self._bad(f"unsupported event log format version {version}")
                if length > MAX_FRAME_PAYLOAD:
                    raise self._bad("damaged header (length out of range)")
                payload = f.read(length)
        except FileNotFoundError as e:
            raise self._bad("no such file") from e
        except OSError as e:
            raise self._bad(f"cannot read: {e.strerror or e}") from e
        if len(payload) < length:
            raise self._bad("truncated header")
        if zlib.crc32(payload) != crc:
            raise self._bad("damaged header (CRC mismatch)")
        try:
            self.header = _header_decoder.decode(payload)
        except msgspec.DecodeError as e:
            raise self._bad(f"undecodable header ({e})") from e
        self._data_offset = _PREFIX.size + length

    def _bad(self, what: str) -> LogFormatError:
        return LogFormatError(f"{self.path}: not a readable z6 event log: {what}")

    def _check_prefix(self, prefix: bytes) -> None:
        if not prefix:
            raise self._bad("empty file")
        if not prefix.startswith(MAGIC) and not MAGIC.startswith(prefix):
            raise self._bad("bad magic bytes")
        if len(prefix) < _PREFIX.size:
            raise self._bad("truncated header")

    def _damaged(self, index: int, offset: int, reason: str) -> None:
        self.damage = LogDamage(frame_index=index, offset=offset, reason=reason)

    def _scan(self) -> Generator[tuple[int, bytes], None, None]:
        """Yield ``(worker, payload)`` of every intact batch frame; handle footer and damage."""
        self.damage = None
        self.footer = None
        self._last = None
        index = 0
        offset = self._data_offset
        try:
            f = open(self.path, "rb", buffering=_READ_BUFFER)  # noqa: SIM115 (closed below)
        except OSError as e:
            self._damaged(index, offset, f"read error: {e.strerror or e}")
            return
        frame_size = _FRAME.size
        unpack = _FRAME.unpack
        crc32 = zlib.crc32
        with f:
            try:
                f.seek(offset)
                read = f.read
                while True:
                    head = read(frame_size)
                    if not head:
                        return  # clean end of file
                    if self.footer is not None:
                        self._damaged(index, offset, "data after footer")
                        return
                    if len(head) < frame_size:
                        self._damaged(index, offset, "truncated frame header")
                        return
                    length, crc, kind, worker = unpack(head)
                    if length > MAX_FRAME_PAYLOAD:
                        self._damaged(index, offset, "frame length out of range")
                        return
                    payload = read(length)
                    if len(payload) < length:
                        self._damaged(index, offset, "truncated frame payload")
                        return
                    if crc32(payload, crc32(head[8:])) != crc:
                        self._damaged(index, offset, "CRC mismatch")
                        return
                    if kind == KIND_BATCH:
                        self._last = (index, offset)
                        yield worker, payload
                    elif kind == KIND_FOOTER:
                        try:
                            self.footer = _footer_decoder.decode(payload)
                        except msgspec.DecodeError:
                            self._damaged(index, offset, "undecodable footer")
                            return
                    else:
                        self._damaged(index, offset, f"unknown frame kind {kind}")
                        return
                    index += 1
                    offset += frame_size + length
            except OSError as e:
                self._damaged(index, offset, f"read error: {e.strerror or e}")

    def raw_frames(self) -> Generator[tuple[int, bytes], None, None]:
        """Yield ``(worker, payload)`` of each intact event-batch frame, undecoded, in file
        order. A caller that then fails to decode a payload should call
        :meth:`report_undecodable` so that :attr:`damage` points at that frame."""
        return self._scan()

    def report_undecodable(self) -> None:
        """Record the frame last yielded by :meth:`raw_frames` as damaged
        (``"undecodable payload"``); the caller stops iterating."""
        if self._last is not None:
            self._damaged(self._last[0], self._last[1], "undecodable payload")

    def batches(self) -> Generator[tuple[int, list[Event]], None, None]:
        """Yield ``(worker, events)`` for each intact event-batch frame, in file order.

        A CRC-valid frame whose payload does not decode as a batch is damage too: iteration
        stops there with ``damage.reason == "undecodable payload"``.
        """
        frames = self._scan()
        try:
            for worker, payload in frames:
                try:
                    events = decode_batch(payload)
                except msgspec.DecodeError:
                    self.report_undecodable()
                    return
                yield worker, events
        finally:
            frames.close()  # closes the file now, not when the generator is collected
