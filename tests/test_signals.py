"""Process-level reliability (SPEC section 10): signals, a worker's death, the supervisor's death.

Each test starts ``z6 serve`` and ``z6 run`` as subprocesses (``z6 run`` in its own session, so
signals can go to its whole process group like a terminal's Ctrl-C), waits until the run is
under way by reading its ``events.bin`` while it is being written, then interferes. Time limits
are generous upper bounds for "within a few seconds" / "within the graceful stop".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, SCENARIOS, run_z6, z6_command
from servers import z6_server

from z6.engine.error_kinds import ErrorKind
from z6.engine.errors import LogFormatError
from z6.ipc.eventlog import EventLogReader
from z6.ipc.events import RequestEvent, WorkerStarted

pytestmark = pytest.mark.slow

GRACEFUL_S = 2
FEW_SECONDS = 20.0  # generous bound for "within a few seconds"
_POLL_S = 0.05


@pytest.fixture(scope="module")
def server_port() -> Iterator[int]:
    """One ``z6 serve`` for the whole module."""
    with z6_server(procs=1) as port:
        yield port


def write_scenario(
    tmp: Path,
    port: int,
    *,
    path: str,
    vus: int,
    graceful_s: float = GRACEFUL_S,
    duration_s: float = 30,
) -> Path:
    """A scenario of ``vus`` VUs repeating ``GET path``, graceful stop ``graceful_s``."""
    scenario = tmp / "s.toml"
    scenario.write_text(
        textwrap.dedent(
            f"""
            [metadata]
            name = "signals"
            [runtime]
            duration_seconds = {duration_s}
            vus = {vus}
            prng_seed = 1
            graceful_stop_seconds = {graceful_s}
            [target]
            base_url = "http://127.0.0.1:{port}"
            [[requests]]
            name = "r"
            method = "GET"
            path = "{path}"
            timeout_ms = 30000
            """
        )
    )
    return scenario


def start_run(scenario: Path, out: Path, procs: int) -> subprocess.Popen[str]:
    """``z6 run`` in its own session (process group), output captured."""
    env = dict(os.environ)
    env.pop("COLUMNS", None)
    return subprocess.Popen(
        [*z6_command(), "run", str(scenario), "--procs", str(procs), "--out", str(out), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def read_log(path: Path) -> tuple[EventLogReader, list[tuple[int, Any]]]:
    """Every ``(worker, event)`` of the log as it is now (it may still be growing)."""
    reader = EventLogReader(path)
    return reader, [(w, e) for w, events in reader.batches() for e in events]


def wait_until_running(
    proc: subprocess.Popen[str], log: Path, procs: int, after_start_s: float
) -> dict[int, int]:
    """Wait until every worker logged ``WorkerStarted`` and the run has been going for
    ``after_start_s``; return ``{worker: pid}``."""
    deadline = time.monotonic() + FEW_SECONDS
    pids: dict[int, int] = {}
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"z6 ended early: {proc.communicate()}"
        try:
            reader, events = read_log(log)
        except LogFormatError:
            time.sleep(_POLL_S)
            continue
        pids = {e.worker: e.pid for _w, e in events if isinstance(e, WorkerStarted)}
        if len(pids) == procs:
            started_ns = reader.header.wall_start_ns + int(after_start_s * 1e9)
            time.sleep(max(0.0, (started_ns - time.time_ns()) / 1e9))
            return pids
        time.sleep(_POLL_S)
    pytest.fail("the workers did not start in time")


def start_running(
    tmp: Path, port: int, procs: int, after_start_s: float, **scenario: Any
) -> tuple[subprocess.Popen[str], Path, dict[int, int]]:
    """Write a scenario (``write_scenario``'s keywords), start ``z6 run`` on it and wait until
    it has been going for ``after_start_s``; return the process, its --out and ``{worker: pid}``."""
    out = tmp / "out"
    proc = start_run(write_scenario(tmp, port, **scenario), out, procs)
    return proc, out, wait_until_running(proc, out / "events.bin", procs, after_start_s)


def finish(proc: subprocess.Popen[str], limit_s: float) -> tuple[int, str, str, float]:
    """Wait (bounded) for z6; return exit code, stdout, stderr and the seconds it took."""
    t0 = time.monotonic()
    try:
        out, err = proc.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"z6 did not exit within {limit_s} s; stderr: {err}")
    return proc.returncode, out, err, time.monotonic() - t0


def z6_processes_of(pids: set[int]) -> set[int]:
    """Those of ``pids`` that still exist (and are not zombies)."""
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def segments_of(pid: int) -> list[str]:
    """The ring segments a supervisor with this pid created and that still exist."""
    return [n for n in os.listdir("/dev/shm") if n.startswith(f"z6r_{pid}_")]


def check_outputs(out: Path, outcome: str) -> tuple[dict[str, Any], EventLogReader, list[Any]]:
    """summary.json exists, and the log reads to a footer with ``outcome`` and no damage."""
    summary = json.loads((out / "summary.json").read_text())
    reader, events = read_log(out / "events.bin")
    assert reader.damage is None, reader.damage
    assert reader.footer is not None
    assert reader.footer.outcome == outcome
    assert summary["outcome"] == outcome
    return summary, reader, events


@pytest.mark.parametrize(
    ("sig", "to_group"),
    [
        (signal.SIGINT, True),
        (signal.SIGTERM, False),
        (signal.SIGTERM, True),
        (signal.SIGHUP, True),
    ],
    ids=["sigint-group", "sigterm-pid", "sigterm-group", "sighup-group"],
)
def test_signal_stops_gracefully_and_records_in_flight_as_interrupted(
    tmp_path: Path, server_port: int, sig: signal.Signals, to_group: bool
) -> None:
    vus, procs = 4, 2
    proc, out, _pids = start_running(tmp_path, server_port, procs, 0.5, path="/delay/5000", vus=vus)
    if to_group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    code, stdout, err, took = finish(proc, FEW_SECONDS)
    assert code == 130, err
    assert "Traceback" not in err
    assert "z6: interrupted: the run stopped early; its results cover it up to the stop\n" in err
    assert took < GRACEFUL_S + FEW_SECONDS
    summary, _reader, events = check_outputs(out, "interrupted")
    assert json.loads(stdout)["requests"] == summary["requests"]
    # Every VU had its 5 s request in flight: each was cut at the graceful stop.
    assert summary["requests"]["total"] == vus
    assert summary["errors"]["by_kind"] == {"interrupted": vus}
    interrupted = [e for _w, e in events if isinstance(e, RequestEvent)]
    assert [e.error for e in interrupted] == [ErrorKind.INTERRUPTED] * vus
    # Cut at the graceful stop, not at the server's 5 s.
    assert all(GRACEFUL_S * 0.9e9 <= e.latency_ns < 5e9 for e in interrupted)
    assert summary["accounting"]["complete"] is True
    assert segments_of(proc.pid) == []


def test_second_sigint_aborts_at_once(tmp_path: Path, server_port: int) -> None:
    procs = 2
    # A long graceful stop: only the abort can make the run end quickly.
    proc, out, pids = start_running(
        tmp_path, server_port, procs, 0.3, path="/delay/5000", vus=4, graceful_s=60
    )
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)
    code, _stdout, err, took = finish(proc, FEW_SECONDS)
    assert code == 130, err
    assert "Traceback" not in err
    assert "aborted" in err
    assert took < FEW_SECONDS  # far less than the 60 s graceful stop
    summary, reader, _events = check_outputs(out, "aborted")
    # No request ended and no VU recorded a stop: the run's time is read from the footer,
    # the same in the summary and in `z6 analyze` (it read 0.0 s before).
    assert reader.footer is not None
    lasted_s = (reader.footer.end_wall_ns - reader.header.wall_start_ns) / 1e9
    assert 0.6 <= summary["duration_s"] == pytest.approx(lasted_s, abs=0.002)
    result = run_z6(["analyze", str(out / "events.bin"), "--format", "json"])
    assert json.loads(result.stdout)["duration_s"] == summary["duration_s"]
    assert z6_processes_of(set(pids.values())) == set()
    assert segments_of(proc.pid) == []


def test_worker_killed_mid_run_exits_3_and_names_it(tmp_path: Path, server_port: int) -> None:
    procs = 2
    proc, out, pids = start_running(tmp_path, server_port, procs, 0.5, path="/delay/20", vus=4)
    victim = 1
    os.kill(pids[victim], signal.SIGKILL)
    killed_at = time.monotonic()
    code, _stdout, err, _took = finish(proc, FEW_SECONDS)
    assert time.monotonic() - killed_at < FEW_SECONDS
    assert code == 3, err
    assert "Traceback" not in err
    assert f"worker {victim} (pid {pids[victim]}) died with signal SIGKILL" in err
    summary, reader, events = check_outputs(out, "worker_failed")
    assert reader.footer is not None
    assert reader.footer.failed_workers == [victim]
    assert summary["failed_workers"] == [victim]
    # Everything recorded before the death is there: both workers made requests.
    by_worker = {w for w, e in events if isinstance(e, RequestEvent)}
    assert by_worker == {0, 1}
    assert summary["requests"]["total"] > 0
    assert summary["accounting"]["complete"] is False
    assert segments_of(proc.pid) == []
    _analyze_if_available(out / "events.bin")


def _analyze_if_available(log: Path) -> None:
    """``z6 analyze`` reads the log of a failed run without crashing."""
    if run_z6(["analyze", "--help"], timeout=60).returncode != 0:
        return  # not wired into the CLI yet
    proc = run_z6(["analyze", str(log)], timeout=60)
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr


def test_supervisor_killed_workers_exit_and_rings_vanish(tmp_path: Path, server_port: int) -> None:
    """kill -9 of ``z6 run``: the orphaned workers exit, multiprocessing's resource tracker
    unlinks the rings, quietly."""
    procs = 2
    # A long graceful stop: orphaned workers must not wait for it (nobody would record it).
    proc, out, pids = start_running(
        tmp_path, server_port, procs, 0.3, path="/delay/5000", vus=4, graceful_s=60
    )
    assert len(segments_of(proc.pid)) == procs
    proc.kill()  # SIGKILL: no cleanup at all in the supervisor
    # finish() reads stderr to its end: the workers and the resource tracker hold it too, so
    # it returns once the tracker has unlinked the rings and exited.
    _code, _stdout, err, _took = finish(proc, FEW_SECONDS)
    # The tracker's cleanup is wanted, its Python warning about "leaked shared_memory
    # objects" (two lines on z6's stderr after every kill -9) is not.
    assert "UserWarning" not in err
    assert "leaked" not in err
    assert "Traceback" not in err
    deadline = time.monotonic() + FEW_SECONDS
    while time.monotonic() < deadline and (
        z6_processes_of(set(pids.values())) or segments_of(proc.pid)
    ):
        time.sleep(_POLL_S)
    assert z6_processes_of(set(pids.values())) == set()
    # multiprocessing's resource tracker unlinks the rings once the supervisor is gone.
    assert segments_of(proc.pid) == []
    # What was flushed before the kill still reads (no footer: the run did not finish).
    reader, _events = read_log(out / "events.bin")
    assert reader.footer is None


def test_stuck_worker_is_killed_after_the_graceful_stop(tmp_path: Path, server_port: int) -> None:
    """A worker that never finishes (stopped with SIGSTOP) cannot hang the run."""
    procs = 2
    proc, out, pids = start_running(
        tmp_path, server_port, procs, 0.2, path="/delay/20", vus=2, graceful_s=1, duration_s=1
    )
    os.kill(pids[0], signal.SIGSTOP)
    # Planned end (1 s) + graceful stop (1 s) + the supervisor's 5 s margin, then a kill.
    code, _stdout, err, _took = finish(proc, FEW_SECONDS)
    assert code == 3, err
    assert "Traceback" not in err
    assert f"worker 0 (pid {pids[0]}) did not stop within the graceful stop" in err
    _summary, reader, _events = check_outputs(out, "worker_failed")
    assert reader.footer is not None
    assert reader.footer.failed_workers == [0]
    # The other worker finished normally and its accounting is whole.
    assert reader.footer.worker_events[1] == reader.footer.worker_reported[1] > 0
    assert z6_processes_of(set(pids.values())) == set()
    assert segments_of(proc.pid) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_signal_after_the_workers_finished_still_writes_the_outputs(
    tmp_path: Path, server_port: int, sig: signal.Signals
) -> None:
    """A signal between the end of the run (rings unlinked) and the output files: the run is
    complete, so the outputs are written and the exit code is the run's (docs/reliability.md)."""
    procs = 2
    proc, out, _pids = start_running(
        tmp_path, server_port, procs, 0.0, path="/delay/20", vus=2, graceful_s=1, duration_s=1.5
    )
    deadline = time.monotonic() + FEW_SECONDS
    while segments_of(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.0005)
    proc.send_signal(sig)
    code, stdout, err, _took = finish(proc, FEW_SECONDS)
    assert code == 0, err
    assert "Traceback" not in err
    summary, _reader, _events = check_outputs(out, "complete")
    assert json.loads(stdout)["requests"] == summary["requests"]
    for name in ("summary.txt", "timeseries.csv"):
        assert (out / name).is_file()


def test_pause_of_the_whole_group_does_not_trip_the_watchdog(
    tmp_path: Path, server_port: int
) -> None:
    """Ctrl-Z (SIGSTOP of the group) for longer than duration + graceful stop + 5 s, then
    SIGCONT: the workers are healthy and must not be killed as hung."""
    procs = 2
    proc, out, pids = start_running(
        tmp_path, server_port, procs, 0.2, path="/delay/20", vus=2, graceful_s=1, duration_s=1
    )
    os.killpg(proc.pid, signal.SIGSTOP)
    try:
        time.sleep(1 + 1 + 5 + 1.5)  # past the watchdog deadline
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    code, _stdout, err, _took = finish(proc, FEW_SECONDS)
    assert code == 0, err
    assert "did not stop within" not in err
    summary, _reader, _events = check_outputs(out, "complete")
    assert summary["accounting"]["complete"] is True
    assert z6_processes_of(set(pids.values())) == set()
    assert segments_of(proc.pid) == []


def test_event_log_size_limit_is_not_reported_as_complete(tmp_path: Path, server_port: int) -> None:
    """A run stopped early by ``limits.max_event_log_size_mb`` says so: outcome
    ``limit_reached``, exit 3, the summary still written."""
    procs = 2
    scenario = write_scenario(tmp_path, server_port, path="/", vus=4, graceful_s=1, duration_s=30)
    scenario.write_text(scenario.read_text() + "[limits]\nmax_event_log_size_mb = 0.2\n")
    out = tmp_path / "out"
    proc = start_run(scenario, out, procs)
    code, _stdout, err, _took = finish(proc, FEW_SECONDS + 30)
    assert code == 3, err
    assert "Traceback" not in err
    assert "max_event_log_size_mb" in err
    summary, reader, _events = check_outputs(out, "limit_reached")
    assert reader.footer is not None
    assert "stopped early" in reader.footer.message
    assert summary["accounting"]["complete"] is True
    assert segments_of(proc.pid) == []


def test_closed_terminal_sighup_still_writes_the_outputs(tmp_path: Path, server_port: int) -> None:
    """The terminal goes away (its writes fail with EIO) and the group gets SIGHUP: graceful
    stop, every output file, no ring left, exit 130."""
    procs = 2
    scenario = write_scenario(tmp_path, server_port, path="/delay/20", vus=2, graceful_s=1)
    out = tmp_path / "out"
    master, slave = os.openpty()
    env = dict(os.environ)
    env.pop("COLUMNS", None)
    try:
        proc = subprocess.Popen(
            [*z6_command(), "run", str(scenario), "--procs", str(procs), "--out", str(out)],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
    finally:
        os.close(slave)
    try:
        wait_until_running(proc, out / "events.bin", procs, after_start_s=1.5)
    finally:
        os.close(master)  # the terminal is gone: every write to it fails from now on
    os.killpg(proc.pid, signal.SIGHUP)
    try:
        code = proc.wait(timeout=FEW_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail("z6 did not exit after SIGHUP")
    assert code == 130
    check_outputs(out, "interrupted")
    for name in ("summary.txt", "timeseries.csv"):
        assert (out / name).is_file()
    assert segments_of(proc.pid) == []


def test_pause_past_the_hard_stop_keeps_the_answers_that_arrived(
    tmp_path: Path, server_port: int
) -> None:
    """Ctrl-Z (SIGSTOP of the group) while requests are in flight, for longer than the planned
    end + graceful stop, then SIGCONT: the server answered during the pause, so the requests
    should be recorded as answered (their latency spans the pause: that is their real
    wall-clock latency), not as ``interrupted`` by a graceful stop that z6 was not running to
    use."""
    procs = 2
    proc, out, _pids = start_running(
        tmp_path, server_port, procs, 0.3, path="/delay/1000", vus=2, graceful_s=1, duration_s=2
    )
    # Each VU's 1 s request is in flight (back to back, no think time); the server answers
    # during the pause.
    os.killpg(proc.pid, signal.SIGSTOP)
    try:
        time.sleep(2 + 1 + 0.5)  # past the planned end (2 s) + graceful stop (1 s)
    finally:
        os.killpg(proc.pid, signal.SIGCONT)
    code, _stdout, err, _took = finish(proc, FEW_SECONDS)
    assert code == 0, err
    _summary, _reader, events = check_outputs(out, "complete")
    requests = [e for _w, e in events if isinstance(e, RequestEvent)]
    assert requests
    assert [ErrorKind(e.error) for e in requests] == [ErrorKind.NONE] * len(requests)


# -- interrupted while z6 starts -------------------------------------------------------------


def _catches(pid: int, *sigs: signal.Signals) -> bool:
    """True when process ``pid`` has a handler installed for each of ``sigs`` (the ``SigCgt``
    mask of /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            mask = int(line.split()[1], 16)
            return all(mask >> (s - 1) & 1 for s in sigs)
    return False


@pytest.mark.parametrize(
    ("sig", "delay_s"),
    [
        (signal.SIGINT, 0.0),
        (signal.SIGINT, 0.02),
        (signal.SIGINT, 0.05),
        (signal.SIGINT, 0.1),
        (signal.SIGINT, 0.2),
        (signal.SIGTERM, 0.0),
        (signal.SIGTERM, 0.05),
        (signal.SIGTERM, 0.15),
        (signal.SIGHUP, 0.05),
    ],
    ids=lambda v: v.name if isinstance(v, signal.Signals) else f"{v}s",
)
def test_interrupt_while_z6_starts_says_so_in_one_line(sig: signal.Signals, delay_s: float) -> None:
    """A Ctrl-C (or SIGTERM, SIGHUP) while z6 loads typer and its modules, parses the command
    line or imports the command: ``z6: interrupted`` and exit 130, never a traceback, never a
    silent death; or exit 0 when the command finished first.

    The clock starts when z6's own code runs, seen from outside as its SIGTERM and SIGHUP
    handlers appearing (its first act): before that, Python is still starting, and a signal
    there is Python's business (docs/reliability.md). ``z6 validate`` takes about 0.2 s from
    there, so the delays cover the imports, the parsing and the command."""
    env = dict(os.environ)
    env.pop("COLUMNS", None)
    proc = subprocess.Popen(
        [*z6_command(), "validate", str(SCENARIOS / "quickstart.toml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + FEW_SECONDS
        while not _catches(proc.pid, signal.SIGTERM, signal.SIGHUP):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("z6 never installed a SIGTERM/SIGHUP handler: one killed it silently")
            time.sleep(0.0005)
        time.sleep(delay_s)
        proc.send_signal(sig)
    finally:
        code, _stdout, err, _took = finish(proc, FEW_SECONDS)
    assert "Traceback" not in err
    if code == 0:
        assert err == ""  # the command finished before the signal came
    else:
        assert code == 130, err
        assert err.splitlines() == ["z6: interrupted"]


def test_entry_module_imports_nothing_heavy() -> None:
    """The console script's entry guards everything after its own import, so that import
    must load nothing: a Ctrl-C during it would still print a traceback."""
    probe = (
        "import sys; before = set(sys.modules); import z6.cli.entry; "
        "print(sorted(set(sys.modules) - before))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(["z6", "z6.cli", "z6.cli.entry"])


def test_console_script_is_the_guarded_entry() -> None:
    """``z6`` (the console script) and ``python -m z6.cli`` both start in ``z6.cli.entry``."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["z6"] == "z6.cli.entry:main"
    assert "z6.cli.entry import main" in (REPO / "cli" / "__main__.py").read_text()
