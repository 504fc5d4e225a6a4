"""Hypothesis: ``analyze`` and ``replay --verify`` on damaged or forged logs.

Invariant: they return a result or raise one of z6's documented errors (``Z6Error``), never
anything else, whatever the bytes after (or in) the header.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from test_replay import WEIGHTED, header_of, synth_log

from z6.cli.analyze_cmd import analyze_logs, replay_log
from z6.engine.errors import Z6Error
from z6.ipc.eventlog import EventLogWriter, LogFooter
from z6.ipc.events import (
    Event,
    IterationDropped,
    RequestEvent,
    VuStarted,
    VuStopped,
    WorkerFinished,
    WorkerStarted,
    encode_batch,
)

_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """A directory for the logs of every example (one file, rewritten each time)."""
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


@pytest.fixture(scope="module")
def base_log(workdir: Path) -> bytes:
    """The bytes of an intact synthetic log (20 requests, 2 workers, footer)."""
    return synth_log(workdir / "base.bin").read_bytes()


def _check(path: Path) -> None:
    """analyze (every format's data) and replay: a result or a Z6Error, nothing else."""
    try:
        result = analyze_logs([path])
        result.rows()
        assert result.summary["requests"]["total"] >= 0
    except Z6Error:
        pass
    with contextlib.suppress(Z6Error):
        replay_log(path)


damage = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=64), st.just(0)),
    st.tuples(st.just("overwrite"), st.integers(0, 10**6), st.binary(min_size=1, max_size=32)),
)


@_SETTINGS
@given(st.lists(damage, min_size=1, max_size=4))
def test_random_damage_never_crashes(
    workdir: Path, base_log: bytes, ops: list[tuple[str, object, object]]
) -> None:
    data = bytearray(base_log)
    for op, a, b in ops:
        if not data:
            break
        if op == "flip":
            assert isinstance(a, int)
            assert isinstance(b, int)
            data[a % len(data)] ^= b
        elif op == "truncate":
            assert isinstance(a, int)
            del data[a % len(data) :]
        elif op == "append":
            assert isinstance(a, bytes)
            data += a
        else:
            assert isinstance(a, int)
            assert isinstance(b, bytes)
            at = a % len(data)
            data[at : at + len(b)] = b
    path = workdir / "damaged.bin"
    path.write_bytes(bytes(data))
    _check(path)


# Times stay within a day: a forged log with events at 2**62 ns would make the per-second
# series (not this module) enumerate ~10**11 seconds.
_t = st.integers(-(10**9), 86_400 * 10**9)
_i = st.one_of(st.integers(-3, 40), st.integers(-(2**63), 2**63 - 1))
_small = st.integers(-2, 8)

events: st.SearchStrategy[Event] = st.one_of(
    st.builds(
        RequestEvent,
        _small,
        _i,
        _small,
        _small,
        _t,
        st.integers(-(10**9), 10**13),
        st.integers(0, 999),
        st.integers(0, 12),
        st.integers(0, 2**40),
        st.booleans(),
        st.integers(0, 10**10),
        st.one_of(st.just(-1), _t),
        st.integers(-5, 10**10),
    ),
    st.builds(VuStarted, _small, _t),
    st.builds(VuStopped, _small, _t, _i),
    st.builds(IterationDropped, _i, _t),
    st.builds(WorkerStarted, _small, st.integers(0, 2**31), _t, _small),
    st.builds(WorkerFinished, _small, _t, _i, _i, st.integers(0, 2**40)),
)


@_SETTINGS
@given(
    st.lists(st.tuples(st.integers(0, 3), st.lists(events, min_size=1, max_size=6)), max_size=6),
    st.sampled_from(["complete", "interrupted", "worker_failed", "", None]),
)
def test_forged_events_with_valid_crcs_never_crash(
    workdir: Path, frames: list[tuple[int, list[Event]]], outcome: str | None
) -> None:
    path = workdir / "forged.bin"
    writer = EventLogWriter(path, header_of(WEIGHTED, 11, 2))
    for worker, evs in frames:
        writer.write_batch(worker, encode_batch(evs))
    footer = None
    if outcome is not None:
        footer = LogFooter(
            worker_events=[1, 2],
            worker_reported=[1, -1],
            end_wall_ns=0,
            outcome=outcome,
            failed_workers=[1],
        )
    writer.close(footer)
    _check(path)


def test_empty_and_header_only_files(workdir: Path, base_log: bytes) -> None:
    path = workdir / "short.bin"
    for size in (0, 1, 8, 17, 18, 40):
        path.write_bytes(base_log[:size])
        with pytest.raises(Z6Error):
            analyze_logs([path])
    os.truncate(path, 0)
