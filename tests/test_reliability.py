"""Reliability of the run pipeline (SPEC section 10): nothing lost, full disk, shared memory.

- The accounting invariant of a normal run, checked against the log read back frame by frame.
- ``accounting_problems`` (pure) names every broken invariant.
- A full disk before and during the run: one clear line, exit 3, workers gone, rings unlinked.
- No ``z6r_*`` shared-memory segment outlives the test session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from conftest import creator_gone, ring_segments as _segments, run_z6
from servers import z6_server

from z6.engine.metrics import WorkerAccount
from z6.ipc.eventlog import EventLogReader
from z6.ipc.events import RequestEvent, WorkerFinished, WorkerStarted
from z6.ipc.supervisor import accounting_problems

FEW_SECONDS = 20.0  # generous bound for "within a few seconds"


# -- accounting_problems (pure) --------------------------------------------------------------


def _acc(
    worker: int, received: int, reported: int | None, recorded: int, started: int | None
) -> WorkerAccount:
    return WorkerAccount(
        part=0,
        worker=worker,
        received=received,
        reported=reported,
        requests_recorded=recorded,
        requests_started=started,
    )


def test_accounting_problems_empty_when_everything_arrived() -> None:
    accounts = [_acc(0, 10, 10, 6, 6), _acc(1, 7, 7, 4, 4)]
    assert accounting_problems(accounts, [10, 7]) == []


def test_accounting_problems_names_each_broken_invariant() -> None:
    accounts = [_acc(0, 9, 10, 6, 6), _acc(1, 7, 7, 4, 5), _acc(2, 3, None, 1, None)]
    problems = accounting_problems(accounts, [9, 7, 3, 0])
    assert problems == [
        "accounting: no event arrived from worker 3",
        "accounting: worker 0 produced 10 events but 9 arrived",
        "accounting: worker 1 started 5 requests but 4 were recorded",
        "accounting: worker 2 never reported its event count",
    ]


def test_accounting_problems_skips_known_dead_workers() -> None:
    accounts = [_acc(0, 10, 10, 6, 6), _acc(1, 3, None, 1, None)]
    assert accounting_problems(accounts, [10, 3], skip=[1]) == []
    assert accounting_problems(accounts[:1], [10, 0], skip=[1]) == []


def test_accounting_compares_the_supervisor_count_too() -> None:
    # The reducer and the worker agree, but the supervisor wrote a different number of events.
    assert accounting_problems([_acc(0, 10, 10, 6, 6)], [11]) == [
        "accounting: worker 0 produced 10 events but 11 arrived"
    ]


# -- end to end ------------------------------------------------------------------------------


def _scenario(tmp: Path, port: int, body: str) -> Path:
    path = tmp / "s.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [metadata]
            name = "reliability"
            [target]
            base_url = "http://127.0.0.1:{port}"
            [[requests]]
            name = "home"
            method = "GET"
            path = "/"
            [[requests]]
            name = "bytes"
            method = "GET"
            path = "/bytes/100"
            """
        )
        + textwrap.dedent(body)
    )
    return path


@pytest.mark.slow
def test_normal_run_accounting_matches_the_log(tmp_path: Path) -> None:
    vus, iterations, procs = 6, 50, 2
    with z6_server() as port:
        scenario = _scenario(
            tmp_path, port, f"[runtime]\niterations = {iterations}\nvus = {vus}\nprng_seed = 5\n"
        )
        out = tmp_path / "out"
        proc = run_z6(["run", str(scenario), "--procs", str(procs), "--out", str(out), "--quiet"])
    assert proc.returncode == 0, proc.stderr
    assert "accounting" not in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accounting"]["complete"] is True
    assert summary["accounting"]["missing"] == 0
    assert summary["requests"]["total"] == vus * iterations

    reader = EventLogReader(out / "events.bin")
    events_in_log: Counter[int] = Counter()
    requests_in_log: Counter[int] = Counter()
    finished: dict[int, WorkerFinished] = {}
    for w, events in reader.batches():
        for e in events:
            if isinstance(e, WorkerFinished):
                assert w not in finished, "two WorkerFinished events"
                assert e.worker == w
                finished[w] = e
                continue
            assert w not in finished, "an event after WorkerFinished"
            events_in_log[w] += 1
            if isinstance(e, RequestEvent):
                requests_in_log[w] += 1
    assert reader.damage is None
    footer = reader.footer
    assert footer is not None
    assert footer.outcome == "complete"
    assert sorted(finished) == list(range(procs))
    for w in range(procs):
        # produced (by the worker) = received (footer) = in the log
        assert finished[w].events == footer.worker_events[w] == events_in_log[w]
        assert footer.worker_reported[w] == finished[w].events
        # requests started = completed + failed + interrupted = request events in the log
        assert finished[w].requests_started == requests_in_log[w]
    assert sum(requests_in_log.values()) == vus * iterations
    for entry in summary["accounting"]["workers"]:
        w = entry["worker"]
        assert entry["received"] == entry["reported"] == events_in_log[w]
        assert entry["requests_recorded"] == entry["requests_started"] == requests_in_log[w]


def test_unwritable_log_exits_3_with_one_line(tmp_path: Path) -> None:
    """events.bin -> /dev/full: every write fails with ENOSPC, before any worker starts."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "events.bin").symlink_to("/dev/full")
    scenario = _scenario(tmp_path, 9, "[runtime]\niterations = 1\nvus = 1\n")
    before = _segments()
    proc = run_z6(["run", str(scenario), "--procs", "2", "--out", str(out), "--quiet"])
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("z6: cannot write event log")
    assert "No space left on device" in lines[0]
    # Only segments whose creator is gone: another z6 on the machine may hold live ones.
    assert {n for n in _segments() - before if creator_gone(n)} == set()


# Runs the real CLI with a small ring (so that shared memory fits under the file-size limit)
# and a file-size limit that the event log hits a moment into the run: its writes then fail
# with EFBIG, as they would with ENOSPC on a full disk.
_FSIZE_LIMIT = 256 * 1024
_WRAPPER = """
import resource, signal, sys
import z6.ipc.supervisor as supervisor
supervisor.RING_CAPACITY = 1 << 16
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
from z6.cli.app import app
sys.argv = ["z6", *sys.argv[1:]]
app()
"""


@pytest.mark.slow
def test_disk_full_mid_run_stops_everything_and_exits_3(tmp_path: Path) -> None:
    with z6_server() as port:
        scenario = _scenario(tmp_path, port, "[runtime]\nduration_seconds = 60\nvus = 8\n")
        out = tmp_path / "out"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WRAPPER.format(limit=_FSIZE_LIMIT),
                "run",
                str(scenario),
                "--procs",
                "2",
                "--out",
                str(out),
                "--quiet",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _stdout, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 3, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("z6: cannot write event log")
    assert "File too large" in lines[0]
    # Everything that reached the disk is readable; the run did not finish, so no footer.
    reader = EventLogReader(out / "events.bin")
    pids = [
        e.pid for _w, events in reader.batches() for e in events if isinstance(e, WorkerStarted)
    ]
    assert reader.footer is None
    assert len(pids) == 2  # the limit was hit after the workers started
    assert [p for p in pids if os.path.exists(f"/proc/{p}")] == []
    assert [n for n in _segments() if n.startswith(f"z6r_{proc.pid}_")] == []
