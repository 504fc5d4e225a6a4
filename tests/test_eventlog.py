"""Tests of the events.bin writer and reader (z6.ipc.eventlog)."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import msgspec
import pytest

from z6.engine.errors import LogFormatError, RunError
from z6.ipc.eventlog import (
    FORMAT_VERSION,
    KIND_FOOTER,
    MAGIC,
    EventLogReader,
    EventLogWriter,
    LogDamage,
    LogFooter,
    LogHeader,
)
from z6.ipc.events import (
    Event,
    RequestEvent,
    VuStarted,
    WorkerFinished,
    encode_batch,
)

PREFIX_SIZE = 18
FRAME_HEADER = 11


def make_header(**kw: object) -> LogHeader:
    fields: dict[str, object] = {
        "z6_version": "0.1.0",
        "seed": 42,
        "scenario_text": '[runtime]\nvus = 2\n# "quoted" ü\n',
        "scenario_sha256": "ab" * 32,
        "scenario_path": "scenarios/x.toml",
        "procs": 2,
        "wall_start_ns": 1_700_000_000_000_000_000,
    }
    fields.update(kw)
    return LogHeader(**fields)  # type: ignore[arg-type]


def make_events(worker: int, k: int, n: int = 3) -> list[Event]:
    evs: list[Event] = [
        RequestEvent(
            vu=worker + 2 * i,
            iteration=k,
            request=i % 2,
            step=0,
            start_ns=1000 * k + i,
            latency_ns=12345 + i,
            status=200,
            error=0,
            bytes_received=512,
            new_connection=i == 0,
            connect_ns=99 if i == 0 else 0,
        )
        for i in range(n)
    ]
    evs.append(VuStarted(vu=worker, t_ns=k))
    return evs


def make_footer(**kw: object) -> LogFooter:
    fields: dict[str, object] = {
        "worker_events": [8, 4],
        "worker_reported": [8, -1],
        "end_wall_ns": 1_700_000_001_000_000_000,
        "outcome": "complete",
    }
    fields.update(kw)
    return LogFooter(**fields)  # type: ignore[arg-type]


BATCHES: list[tuple[int, list[Event]]] = [
    (0, make_events(0, 0)),
    (1, make_events(1, 0)),
    (0, make_events(0, 1)),
    (1, [WorkerFinished(worker=1, t_ns=5, events=4, requests_started=3, ring_waits=0)]),
]


def write_log(path: Path, *, footer: bool = True) -> list[int]:
    """Write the standard small log; return the byte offset of every frame, then the end."""
    w = EventLogWriter(path, make_header())
    offsets = [w.bytes_written]
    for worker, evs in BATCHES:
        w.write_batch(worker, encode_batch(evs))
        offsets.append(w.bytes_written)
    w.close(make_footer() if footer else None)
    if footer:
        offsets.append(w.bytes_written)
    return offsets


def read_all(path: Path) -> tuple[EventLogReader, list[tuple[int, list[Event]]]]:
    r = EventLogReader(path)
    return r, list(r.batches())


def test_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "events.bin"
    offsets = write_log(p)
    assert p.stat().st_size == offsets[-1]
    r, got = read_all(p)
    assert r.header == make_header()
    assert r.header.format_version == FORMAT_VERSION
    assert r.header.percentiles == [50, 90, 95, 99, 99.9]
    assert got == BATCHES
    assert r.footer == make_footer()
    assert r.damage is None


def test_file_starts_with_documented_prefix(tmp_path: Path) -> None:
    p = tmp_path / "events.bin"
    offsets = write_log(p)
    data = p.read_bytes()
    assert data[:8] == b"Z6EVLOG\x00" == MAGIC
    version, length, crc = struct.unpack_from("<HII", data, 8)
    assert version == 1
    assert PREFIX_SIZE + length == offsets[0]
    header_payload = data[PREFIX_SIZE : PREFIX_SIZE + length]
    assert zlib.crc32(header_payload) == crc
    assert msgspec.msgpack.decode(header_payload, type=LogHeader) == make_header()
    # First frame: length, CRC over kind + worker + payload, kind 1, worker 0, batch bytes.
    flen, fcrc, kind, worker = struct.unpack_from("<IIBH", data, offsets[0])
    payload = data[offsets[0] + FRAME_HEADER : offsets[0] + FRAME_HEADER + flen]
    assert (kind, worker) == (1, 0)
    assert payload == encode_batch(BATCHES[0][1])
    assert fcrc == zlib.crc32(data[offsets[0] + 8 : offsets[0] + FRAME_HEADER] + payload)
    # Footer frame: kind 2, worker 0xFFFF.
    _, _, kind, worker = struct.unpack_from("<IIBH", data, offsets[-2])
    assert (kind, worker) == (KIND_FOOTER, 0xFFFF)


def test_raw_frames_are_the_written_bytes(tmp_path: Path) -> None:
    p = tmp_path / "events.bin"
    write_log(p)
    r = EventLogReader(p)
    assert list(r.raw_frames()) == [(w, encode_batch(evs)) for w, evs in BATCHES]
    assert r.footer == make_footer()


def test_accepts_bytearray_and_memoryview_payloads(tmp_path: Path) -> None:
    p = tmp_path / "events.bin"
    w = EventLogWriter(p, make_header())
    buf = bytearray()
    encode_batch(BATCHES[0][1], buf)
    w.write_batch(3, buf)
    w.write_batch(4, memoryview(bytes(encode_batch(BATCHES[1][1]))))
    w.close(None)
    _, got = read_all(p)
    assert got == [(3, BATCHES[0][1]), (4, BATCHES[1][1])]


def test_no_footer_is_not_damage(tmp_path: Path) -> None:
    p = tmp_path / "events.bin"
    write_log(p, footer=False)
    r, got = read_all(p)
    assert got == BATCHES
    assert r.footer is None
    assert r.damage is None


def test_header_only(tmp_path: Path) -> None:
    p = tmp_path / "events.bin"
    EventLogWriter(p, make_header(shard_index=1, shard_count=3, options={"vus": "5"})).close()
    r, got = read_all(p)
    assert got == []
    assert (r.header.shard_index, r.header.shard_count, r.header.options) == (1, 3, {"vus": "5"})
    assert r.damage is None
    assert r.footer is None


def test_header_is_on_disk_at_once_and_flush_publishes_frames(tmp_path: Path) -> None:
    p = tmp_path / "events.bin"
    w = EventLogWriter(p, make_header())
    assert EventLogReader(p).header.seed == 42  # readable before any flush
    w.write_batch(0, encode_batch(BATCHES[0][1]))
    w.flush()
    r, got = read_all(p)  # like after a crash: the writer is still open
    assert got == [BATCHES[0]]
    assert r.damage is None
    w.close(make_footer())
    assert EventLogReader(p).footer is None  # not read yet: footer is set by iterating
    r, got = read_all(p)
    assert r.footer == make_footer()


def test_close_is_idempotent_and_write_after_close_fails(tmp_path: Path) -> None:
    p = tmp_path / "events.bin"
    w = EventLogWriter(p, make_header())
    w.close(make_footer())
    size = p.stat().st_size
    w.close(make_footer())
    assert p.stat().st_size == size
    with pytest.raises(ValueError, match="closed"):
        w.write_batch(0, b"\x90")
    w.flush()  # no-op after close


def test_writer_context_manager_writes_no_footer(tmp_path: Path) -> None:
    p = tmp_path / "events.bin"
    with EventLogWriter(p, make_header()) as w:
        w.write_batch(0, encode_batch(BATCHES[0][1]))
    r, got = read_all(p)
    assert got == [BATCHES[0]]
    assert r.footer is None


def test_writer_truncates_existing_file(tmp_path: Path) -> None:
    p = tmp_path / "events.bin"
    p.write_bytes(b"x" * 100_000)
    write_log(p)
    r, got = read_all(p)
    assert got == BATCHES
    assert r.damage is None


def test_writer_rejects_bad_arguments(tmp_path: Path) -> None:
    w = EventLogWriter(tmp_path / "events.bin", make_header())
    with pytest.raises(ValueError, match="worker index"):
        w.write_batch(-1, b"\x90")
    with pytest.raises(ValueError, match="worker index"):
        w.write_batch(0xFFFF, b"\x90")
    with pytest.raises(ValueError, match="empty"):
        w.write_batch(0, b"")
    w.close()


def test_writer_unwritable_path_is_run_error(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no-such-dir") as ei:
        EventLogWriter(tmp_path / "no-such-dir" / "events.bin", make_header())
    assert ei.value.exit_code == 3


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_writer_disk_full_is_run_error() -> None:
    # The header is flushed at once, so the constructor already hits ENOSPC.
    with pytest.raises(RunError, match="/dev/full"):
        EventLogWriter("/dev/full", make_header())


# --- reader: not a log --------------------------------------------------------------------


def _expect_format_error(path: Path, fragment: str) -> None:
    with pytest.raises(LogFormatError) as ei:
        EventLogReader(path)
    assert str(path) in str(ei.value)
    assert fragment in str(ei.value)
    assert ei.value.exit_code == 2


def test_missing_file(tmp_path: Path) -> None:
    _expect_format_error(tmp_path / "nope.bin", "no such file")


def test_directory(tmp_path: Path) -> None:
    _expect_format_error(tmp_path, "cannot read")


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "e.bin"
    p.write_bytes(b"")
    _expect_format_error(p, "empty file")


def test_random_bytes(tmp_path: Path) -> None:
    p = tmp_path / "r.bin"
    p.write_bytes(os.urandom(4096))
    _expect_format_error(p, "bad magic")


def test_other_format_version(tmp_path: Path) -> None:
    p = tmp_path / "events.bin"
    write_log(p)
    data = bytearray(p.read_bytes())
    struct.pack_into("<H", data, 8, 2)
    p.write_bytes(bytes(data))
    _expect_format_error(p, "format version 2")


def test_header_crc_mismatch(tmp_path: Path) -> None:
    p = tmp_path / "events.bin"
    write_log(p)
    data = bytearray(p.read_bytes())
    data[PREFIX_SIZE + 5] ^= 0x40
    p.write_bytes(bytes(data))
    _expect_format_error(p, "CRC mismatch")


def test_header_crc_valid_but_undecodable(tmp_path: Path) -> None:
    p = tmp_path / "events.bin"
    payload = msgspec.msgpack.encode({"seed": "not an int"})
    p.write_bytes(struct.pack("<8sHII", MAGIC, 1, len(payload), zlib.crc32(payload)) + payload)
    _expect_format_error(p, "undecodable header")


def test_header_length_out_of_range(tmp_path: Path) -> None:
    p = tmp_path / "events.bin"
    p.write_bytes(struct.pack("<8sHII", MAGIC, 1, 0xFFFFFFF0, 0))
    _expect_format_error(p, "length out of range")


# --- reader: damage after the header ---------------------------------------------------------


def test_truncated_at_every_offset(tmp_path: Path) -> None:
    full = tmp_path / "full.bin"
    offsets = write_log(full)  # frame starts..., end of file
    data = full.read_bytes()
    p = tmp_path / "cut.bin"
    for cut in range(len(data) + 1):
        p.write_bytes(data[:cut])
        if cut < offsets[0]:
            with pytest.raises(LogFormatError):
                EventLogReader(p)
            continue
        r, got = read_all(p)
        complete = sum(1 for end in offsets[1:] if end <= cut)  # frames wholly present
        batches = min(complete, len(BATCHES))
        assert got == BATCHES[:batches], cut
        if cut in offsets:
            assert r.damage is None, cut
        else:
            start = max(o for o in offsets if o < cut)
            reason = (
                "truncated frame header"
                if cut - start < FRAME_HEADER
                else "truncated frame payload"
            )
            assert r.damage == LogDamage(frame_index=complete, offset=start, reason=reason)
        assert (r.footer is not None) == (cut == len(data))


def test_flipped_payload_byte_in_each_frame(tmp_path: Path) -> None:
    full = tmp_path / "full.bin"
    offsets = write_log(full)
    data = full.read_bytes()
    p = tmp_path / "flip.bin"
    for i, start in enumerate(offsets[:-1]):
        damaged = bytearray(data)
        damaged[(start + FRAME_HEADER + offsets[i + 1]) // 2] ^= 0x01
        p.write_bytes(bytes(damaged))
        r, got = read_all(p)
        assert got == BATCHES[:i]
        assert r.damage == LogDamage(frame_index=i, offset=start, reason="CRC mismatch")
        assert r.footer is None


@pytest.mark.parametrize(
    ("field_offset", "reasons"),
    [
        (0, {"CRC mismatch", "truncated frame payload", "frame length out of range"}),
        (3, {"frame length out of range"}),  # top byte of the length
        (4, {"CRC mismatch"}),  # the CRC itself
        (8, {"CRC mismatch"}),  # kind is covered by the CRC
        (9, {"CRC mismatch"}),  # and so is the worker
    ],
)
def test_flipped_frame_header_byte(tmp_path: Path, field_offset: int, reasons: set[str]) -> None:
    full = tmp_path / "full.bin"
    offsets = write_log(full)
    data = bytearray(full.read_bytes())
    data[offsets[2] + field_offset] ^= 0x80
    p = tmp_path / "flip.bin"
    p.write_bytes(bytes(data))
    r, got = read_all(p)
    assert got == BATCHES[:2]
    assert r.damage is not None
    assert (r.damage.frame_index, r.damage.offset) == (2, offsets[2])
    assert r.damage.reason in reasons


def test_garbage_after_footer(tmp_path: Path) -> None:
    p = tmp_path / "events.bin"
    offsets = write_log(p)
    with open(p, "ab") as f:
        f.write(b"garbage")
    r, got = read_all(p)
    assert got == BATCHES
    assert r.footer == make_footer()
    assert r.damage == LogDamage(
        frame_index=len(BATCHES) + 1, offset=offsets[-1], reason="data after footer"
    )
    assert "frame 5 at byte" in r.damage.describe()


def test_valid_frame_after_footer(tmp_path: Path) -> None:
    p = tmp_path / "events.bin"
    w = EventLogWriter(p, make_header())
    w.write_batch(0, encode_batch(BATCHES[0][1]))
    w._frame(KIND_FOOTER, 0xFFFF, msgspec.msgpack.encode(make_footer()))
    w.write_batch(0, encode_batch(BATCHES[1][1]))
    w.close(None)
    r, got = read_all(p)
    assert got == [BATCHES[0]]
    assert r.damage is not None
    assert (r.damage.frame_index, r.damage.reason) == (2, "data after footer")


def test_unknown_frame_kind(tmp_path: Path) -> None:
    p = tmp_path / "events.bin"
    w = EventLogWriter(p, make_header())
    w.write_batch(0, encode_batch(BATCHES[0][1]))
    at = w.bytes_written
    w._frame(7, 0, b"\x90")
    w.close(make_footer())
    r, got = read_all(p)
    assert got == [BATCHES[0]]
    assert r.damage == LogDamage(frame_index=1, offset=at, reason="unknown frame kind 7")
    assert r.footer is None


@pytest.mark.parametrize(
    "payload",
    [b"\xc1", b"\x91\x01", b"\x91\x92\x63\x01", msgspec.msgpack.encode({"a": 1}), b"\x90\x90"],
)
def test_crc_valid_undecodable_batch(tmp_path: Path, payload: bytes) -> None:
    p = tmp_path / "events.bin"
    w = EventLogWriter(p, make_header())
    w.write_batch(1, encode_batch(BATCHES[0][1]))
    at = w.bytes_written
    w.write_batch(1, payload)
    w.close(make_footer())
    r, got = read_all(p)
    assert got == [(1, BATCHES[0][1])]
    assert r.damage == LogDamage(frame_index=1, offset=at, reason="undecodable payload")
    # raw_frames does not decode: it yields the frame, and the caller can report it.
    r2 = EventLogReader(p)
    frames = list(r2.raw_frames())
    assert frames[1] == (1, payload)
    assert r2.damage is None
    assert r2.footer == make_footer()


def test_report_undecodable_from_raw_frames(tmp_path: Path) -> None:
    p = tmp_path / "events.bin"
    offsets = write_log(p)
    r = EventLogReader(p)
    for n, (_, _payload) in enumerate(r.raw_frames()):
        if n == 2:
            r.report_undecodable()
            break
    assert r.damage == LogDamage(frame_index=2, offset=offsets[2], reason="undecodable payload")


def test_crc_valid_undecodable_footer(tmp_path: Path) -> None:
    p = tmp_path / "events.bin"
    w = EventLogWriter(p, make_header())
    w.write_batch(0, encode_batch(BATCHES[0][1]))
    at = w.bytes_written
    w._frame(KIND_FOOTER, 0xFFFF, msgspec.msgpack.encode({"outcome": 3}))
    w.close(None)
    r, got = read_all(p)
    assert got == [BATCHES[0]]
    assert r.damage == LogDamage(frame_index=1, offset=at, reason="undecodable footer")
    assert r.footer is None


def test_huge_frame_length_does_not_allocate(tmp_path: Path) -> None:
    p = tmp_path / "events.bin"
    offsets = write_log(p, footer=False)
    with open(p, "ab") as f:
        f.write(struct.pack("<IIBH", 0xFFFFFFFF, 0, 1, 0))
    r, got = read_all(p)
    assert got == BATCHES
    assert r.damage == LogDamage(
        frame_index=len(BATCHES), offset=offsets[-1], reason="frame length out of range"
    )


def test_iteration_restarts_and_resets_state(tmp_path: Path) -> None:
    p = tmp_path / "events.bin"
    write_log(p)
    r = EventLogReader(p)
    it = r.batches()
    assert next(it) == BATCHES[0]
    it.close()
    assert list(r.batches()) == BATCHES
    assert r.footer == make_footer()
    assert list(r.batches()) == BATCHES


def test_file_removed_after_open_is_damage_not_exception(tmp_path: Path) -> None:
    p = tmp_path / "events.bin"
    offsets = write_log(p)
    r = EventLogReader(p)
    p.unlink()
    assert list(r.batches()) == []
    assert r.damage is not None
    assert r.damage.offset == offsets[0]
    assert r.damage.reason.startswith("read error")


def test_large_log_streams(tmp_path: Path) -> None:
    # Many frames, more than one read buffer: every batch comes back in order.
    p = tmp_path / "events.bin"
    w = EventLogWriter(p, make_header())
    for k in range(4000):
        w.write_batch(k % 3, encode_batch(make_events(k % 3, k, n=10)))
    w.close(make_footer(worker_events=[1, 2, 3], worker_reported=[1, 2, 3]))
    assert p.stat().st_size > 1024 * 1024
    r = EventLogReader(p)
    n = 0
    for worker, evs in r.batches():
        assert worker == n % 3
        assert evs == make_events(n % 3, n, n=10)
        n += 1
    assert n == 4000
    assert r.damage is None
    assert r.footer is not None
