"""``z6 run`` and ``z6 demo``: load, plan, run the workers, write every output, exit code."""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from z6.cli.entry import drop_stdout
from z6.cli.progress import Progress
from z6.cli.report import render_text, write_timeseries_csv
from z6.engine.client import choose_address
from z6.engine.decisions import resolve_seed, shard_vus
from z6.engine.errors import ConfigError, RunError
from z6.engine.loader import load_scenario
from z6.engine.overrides import apply_overrides, duration_cut_note
from z6.engine.protocol import engine_factory, httptools_available
from z6.engine.requests import parse_base_url
from z6.engine.scenario import Scenario
from z6.engine.schedule import peak_vus
from z6.engine.summary import (
    DEFAULT_PERCENTILES,
    RunMeta,
    build_summary,
    iter_timeseries_rows,
    measured_duration_ns,
)
from z6.engine.version import __version__
from z6.engine.vu import WorkPlan
from z6.ipc.eventlog import LogHeader
from z6.ipc.supervisor import RunOutcome, RunSetup, run_workers, signals_held

EXIT_OK, EXIT_GOALS, EXIT_RUNTIME, EXIT_INTERRUPTED = 0, 1, 3, 130
_START_DELAY_S = 0.25  # time for the workers to fork and connect before the common start


@dataclass
class RunOptions:
    """Options of ``z6 run`` after parsing (None = not given)."""

    scenario: Path
    procs: int | None = None
    seed: int | None = None
    out: Path | None = None
    vus: int | None = None
    duration: float | None = None
    json: bool = False
    quiet: bool = False
    percentiles: tuple[float, ...] = DEFAULT_PERCENTILES
    engine: str = "auto"
    shard: tuple[int, int] = (0, 1)
    base_url: str | None = None  # used by `z6 demo` to aim the quickstart at its own server


def _default_out_dir() -> Path:
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    base = Path("results") / stamp
    path, n = base, 1
    while path.exists():
        n += 1
        path = Path(f"{base}-{n}")
    return path


def _prepare_out_dir(path: Path, created: list[Path], locks: list[int] | None = None) -> None:
    """``mkdir -p path``, its lock (with ``locks``, see :func:`_lock_dir`) and a write probe;
    appends to ``created`` each directory made here (top down), so that a run that fails early
    can remove exactly those. The lock comes before the probe: a run that is refused must not
    write into the directory of the one that holds it."""
    try:
        parts = path.parts
        for i in range(1, len(parts) + 1):
            # One component at a time, as written: with "new/../results" a test of the whole
            # path would take an existing results/ for one of ours.
            step = Path(*parts[:i])
            try:
                step.mkdir()
            except FileExistsError:
                continue
            created.append(step)
        if locks is not None:
            _lock_dir(path, locks)
        probe = path / f".z6-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise RunError(f"output directory {path} is not writable: {exc.strerror}") from None


def _lock_dir(path: Path, locks: list[int]) -> None:
    """Hold an exclusive lock on directory ``path`` until the fds in ``locks`` are closed.

    Two runs writing one directory at once replaced each other's summary and interleaved
    their event logs, both exiting 0. ``flock`` on the directory itself leaves no lock file
    behind, and the lock goes with the process (a killed run does not leave it held). A
    directory this process already holds is not locked twice (a second flock of it would
    conflict with the first).
    """
    for held in locks:
        with contextlib.suppress(OSError):
            if os.path.samestat(os.fstat(held), os.stat(path)):
                return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise RunError(f"cannot open the output directory {path}: {exc.strerror}") from None
    locks.append(fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConfigError(
            f"another z6 run is writing to {path}: give each run its own --out"
        ) from None
    except OSError:
        pass  # a file system without flock: run unprotected rather than not at all


OUTPUT_FILES = ("summary.json", "summary.txt", "timeseries.csv", "scenario.toml")


def _refuse_to_overwrite(inputs: list[tuple[Path, str]], outputs: list[Path]) -> None:
    """Raise ``ConfigError`` when an output would replace one of the run's inputs, given as
    ``(path, what it is)``: the scenario file (an ``event_log_path`` naming it, or ``--out``
    its own directory with it called scenario.toml), a ``body_file``, the ``ca_bundle``. The
    run must never destroy its own input."""
    for path in outputs:
        for source, what in inputs:
            with contextlib.suppress(OSError):
                if path.exists() and path.samefile(source):
                    raise ConfigError(f"{path} is {what}: z6 run would overwrite it")


def _inputs_of(scenario_path: Path, scenario: Scenario) -> list[tuple[Path, str]]:
    """The files a run reads, for ``_refuse_to_overwrite``."""
    inputs = [(scenario_path, "the scenario file itself")]
    for req in scenario.requests:
        if req.body_file is not None:
            inputs.append((Path(req.body_file), f"the body_file of request '{req.name}'"))
    if scenario.target.ca_bundle is not None:
        inputs.append((Path(scenario.target.ca_bundle), "the scenario's target.ca_bundle"))
    return inputs


def _raise_nofile_limit(needed: int) -> str | None:
    """Raise the open-files soft limit toward ``needed``; return what to say on stderr: that
    it was raised, or a warning when it stays below ``needed`` (the hard limit is lower)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return None
    new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    except (ValueError, OSError):
        new = soft
    if new >= needed:
        return f"raised the open-files limit from {soft} to {new}"
    # Said before the run: otherwise the VUs past the limit fail every request as `other`
    # and the run reads as a server problem.
    shown = "unlimited" if hard == resource.RLIM_INFINITY else hard
    return (
        f"warning: the open-files limit is {new} (hard limit {shown}), below the {needed} a "
        "worker of this run may need (a socket per VU, plus 256): VUs past it cannot "
        f"connect and their requests fail; raise the hard limit (ulimit -Hn {needed}) or "
        "spread the VUs over more --procs"
    )


def run_scenario(opts: RunOptions) -> int:
    """Run a scenario end to end; return the exit code (SPEC 6)."""
    written = load_scenario(opts.scenario)
    scenario = apply_overrides(
        written, duration=opts.duration, vus=opts.vus, base_url=opts.base_url
    )
    cut = duration_cut_note(written, opts.duration)
    if cut:
        print(f"z6: note: {cut}", file=sys.stderr)
    engine_factory(opts.engine)  # fail early on an unknown or missing protocol engine
    engine = opts.engine
    if engine == "auto":  # record the engine actually used
        engine = "httptools" if httptools_available() else "h11"
    seed = resolve_seed(opts.seed, scenario.runtime.prng_seed)
    procs = opts.procs if opts.procs is not None else (os.cpu_count() or 1)
    if procs < 1:
        raise ConfigError("--procs must be at least 1")
    vus = peak_vus(scenario.schedule)
    shard_index, shard_count = opts.shard
    if shard_index >= vus:
        # VU v belongs to shard v % N: this shard has none and sends nothing (its goals
        # then have no data), which looks like a broken run unless said.
        pool = "VU pool" if scenario.schedule.type == "arrival_rate" else "VUs"
        print(
            f"z6: note: shard {shard_index}/{shard_count} holds no VU (the scenario's {pool}: "
            f"{vus}; VU v belongs to shard v % {shard_count}): it sends no request",
            file=sys.stderr,
        )

    out_dir = opts.out if opts.out is not None else _default_out_dir()
    created: list[Path] = []
    locks: list[int] = []
    try:
        _prepare_out_dir(out_dir, created, locks)
        log_path = out_dir / "events.bin"
        if opts.out is None and scenario.runtime.event_log_path:
            log_path = Path(scenario.runtime.event_log_path)
            _prepare_out_dir(log_path.parent, created, locks)
        _refuse_to_overwrite(
            _inputs_of(opts.scenario, scenario), [log_path, *(out_dir / n for n in OUTPUT_FILES)]
        )
        _clear_previous_outputs(out_dir)

        per_shard = -(-vus // shard_count)
        note = _raise_nofile_limit(-(-per_shard // max(procs, 1)) + 256)
        if note:
            print(f"z6: {note}", file=sys.stderr)

        # Before the run's clock starts: the workers inherit the choice (fork), and a probe
        # of a name's several addresses must not spend the run's first second.
        _scheme, host, port, _prefix = parse_base_url(scenario.target.base_url)
        choose_address(host, port, min(scenario.target.connection_timeout_ms / 1000, 1.0))
        run_start_ns = time.perf_counter_ns() + int((_START_DELAY_S + 0.02 * procs) * 1e9)
        wall_start_ns = time.time_ns() + (run_start_ns - time.perf_counter_ns())
        options: dict[str, str] = {"engine": engine}
        if opts.vus is not None:
            options["vus"] = str(opts.vus)
        if opts.duration is not None:
            options["duration"] = str(opts.duration)
        if opts.base_url is not None:
            options["base_url"] = opts.base_url
        header = LogHeader(
            z6_version=__version__,
            seed=seed,
            scenario_text=scenario.source_text,
            scenario_sha256=scenario.sha256,
            scenario_path=str(opts.scenario),
            procs=procs,
            wall_start_ns=wall_start_ns,
            shard_index=shard_index,
            shard_count=shard_count,
            percentiles=list(opts.percentiles),
            options=options,
        )
        plan = WorkPlan(
            scenario=scenario,
            seed=seed,
            procs=procs,
            worker_index=0,
            run_start_ns=run_start_ns,
            duration_s=scenario.runtime.duration_seconds,
            iterations=scenario.runtime.iterations,
            vus=vus,
            engine=engine,
            shard_index=shard_index,
            shard_count=shard_count,
        )
        open_pool = (
            len(shard_vus(vus, shard_index, shard_count))
            if scenario.schedule.type == "arrival_rate"
            else None
        )
        progress = (
            None if opts.quiet else Progress(scenario.runtime.duration_seconds, pool=open_pool)
        )
        max_log = scenario.limits.max_event_log_size_mb
        # SIGINT/SIGTERM/SIGHUP are counted from here until the outputs are written: the run
        # itself acts on them; one that arrives after the workers finished changes nothing (the
        # run is complete) and cannot kill z6 before summary.json is written (docs/reliability.md).
        with signals_held() as sigs:
            setup = RunSetup(
                plan=plan,
                log_path=log_path,
                header=header,
                progress=progress.update if progress is not None else None,
                max_log_bytes=int(max_log * 1024 * 1024) if max_log is not None else None,
                signals=sigs,
            )
            try:
                outcome = run_workers(setup)
            finally:
                if progress is not None:
                    with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP)
                        progress.close()
            return _finish_run(opts, scenario, header, out_dir, log_path, outcome)
    finally:
        for fd in locks:
            os.close(fd)
        # A run that failed before writing anything leaves no empty results/<time>/ (nor the
        # results/ it made for it) behind: rmdir removes only an empty directory.
        for made in reversed(created):
            with contextlib.suppress(OSError):
                made.rmdir()


def _finish_run(
    opts: RunOptions,
    scenario: Scenario,
    header: LogHeader,
    out_dir: Path,
    log_path: Path,
    outcome: RunOutcome,
) -> int:
    """Summary, output files, report and exit code of a finished run."""
    meta = RunMeta.from_header(header)
    planned_s = scenario.runtime.duration_seconds
    summary = build_summary(
        outcome.reducer,
        meta,
        scenario.assertions,
        percentiles=opts.percentiles,
        footer=outcome.footer,
        planned_s=planned_s,
    )
    # The unrounded duration: the last row often covers about 1 ms, where the summary's
    # rounding to 1 ms was a 30-50 % error of its rate.
    exact_s = measured_duration_ns(outcome.reducer, outcome.footer, planned_s) / 1e9
    rows = iter_timeseries_rows(outcome.reducer, exact_s)
    try:
        _write_outputs(out_dir, scenario, summary, rows, log_path=log_path)
        unwritten = None
    except RunError as exc:
        unwritten = exc  # still print the report: it may be the only copy of the numbers
    # The outputs are on disk; a terminal that was closed (SIGHUP: EIO) must not turn the run
    # into an error now, so the report is written where it can be and dropped where not.
    unprinted: OSError | None = None
    try:
        if opts.json:
            print(json.dumps(summary, indent=2), flush=True)
        else:
            print(render_text(summary))
            if unwritten is None:
                print(f"\nresults: {out_dir}/", flush=True)
    except OSError as exc:
        unprinted = exc
        drop_stdout()  # what is still buffered would fail again at exit
    with contextlib.suppress(OSError):
        if opts.json and opts.out is None and unwritten is None and unprinted is None:
            # stdout is the JSON alone; the directory z6 chose is said where it can be.
            print(f"z6: results: {out_dir}/", file=sys.stderr, flush=True)
        for message in outcome.messages:
            print(f"z6: {message}", file=sys.stderr, flush=True)
        for note in (
            _failures_note(summary, scenario.target.base_url),
            _split_pool_note(summary, meta.procs * meta.shard_count),
            _ring_wait_note(summary),
        ):
            if note:
                print(f"z6: {note}", file=sys.stderr, flush=True)
    # A report that went nowhere (``--json > summary.json`` on a full disk) is said whatever
    # the exit code; a closed terminal (EIO) is not that, and a reader that went away (EPIPE)
    # has nobody to tell.
    lost = unprinted if unprinted is not None and unprinted.errno != errno.EIO else None
    if lost is not None and not isinstance(lost, BrokenPipeError):
        where = f"; it is in {out_dir}/" if unwritten is None else ""
        with contextlib.suppress(OSError):
            print(
                f"z6: cannot print the report: {lost.strerror or lost}{where}",
                file=sys.stderr,
                flush=True,
            )
    if unwritten is not None:
        with contextlib.suppress(OSError):
            print(f"z6: {unwritten}", file=sys.stderr, flush=True)
        return EXIT_RUNTIME
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    if outcome.failed_workers or outcome.limited:
        return EXIT_RUNTIME
    if not summary["passed"]:
        return EXIT_GOALS
    if lost is not None:
        return EXIT_RUNTIME  # a run that passed but whose report is lost is no success
    return EXIT_OK


# The likely cause of each failure kind, for a run where most requests failed: the event log
# keeps the kind, not the OS or TLS error text.
_FAILURE_HINTS = {
    "connect_refused": "nothing accepted connections at {url}: is the server up, the port right?",
    "connect_timeout": "connections to {url} timed out: a wrong host, a firewall, or "
    "target.connection_timeout_ms too short",
    "dns_error": "the host name of {url} does not resolve",
    "tls_error": "the TLS handshake with {url} failed: a self-signed or private certificate "
    "needs target.ca_bundle (or verify_cert = false); a plain-HTTP server cannot answer "
    "https://",
    "reset": "the server reset the connections: an https:// server given as http://?",
    "closed_early": "the server closed the connections before answering: an https:// server "
    "given as http://, or a server that is not HTTP/1.1?",
    "protocol_error": "the responses are not HTTP/1.1: an https:// server given as http://?",
    "status": "the responses' statuses failed the check (expect_status, or >= 400): see "
    "the status codes",
    "timeout": "the responses took longer than timeout_ms",
    "body_check": "the response bodies failed expect_body_contains / expect_body_not_contains: "
    "is the server answering with an error page, or compressing its bodies (an "
    "Accept-Encoding header)?",
}


def _failures_note(summary: dict[str, Any], base_url: str) -> str | None:
    """A warning when at least half of the requests failed, with the likeliest cause: such a
    run still has a request rate, and without goals it is not judged (exit 0)."""
    total = summary["requests"]["total"]
    failed = summary["requests"]["failed"]
    if not total or failed * 2 < total:
        return None
    kinds = summary["errors"]["by_kind"]
    top = max(kinds, key=kinds.get) if kinds else None
    text = f"warning: {failed} of {total} requests failed"
    if top is not None:
        text += f" ({', '.join(f'{k}: {n}' for k, n in kinds.items())})"
        hint = _FAILURE_HINTS.get(top)
        if hint:
            text += "; " + hint.format(url=base_url)
    return text


def _ring_wait_note(summary: dict[str, Any]) -> str | None:
    """What a worker waiting for room in its ring did to the numbers, or ``None``."""
    waits = summary.get("ring_waits") or 0
    if not waits:
        return None
    waited = summary.get("ring_wait_s") or 0
    length = f"{waited:g} s" if waited else "under 1 ms"
    return (
        f"note: the workers found their rings full {waits} time(s) and waited {length} in all "
        "for the aggregator (a slow disk, or z6 itself stopped): requests in flight meanwhile "
        "have that wait in their latency"
    )


def _split_pool_note(summary: dict[str, Any], parts: int) -> str | None:
    """That an open-model run dropped iterations, and over several workers (or shards) why it
    may have dropped more than one process would; ``None`` when nothing was dropped. Each
    worker's VUs take only the arrivals routed to them, so a VU that is busy drops its arrival
    while another worker's VU is free: 3 workers with one VU each ran 201 iterations where
    one process with 3 VUs ran 258 (docs/scenario.md)."""
    dropped = summary.get("dropped_iterations", 0)
    if not dropped:
        return None
    if parts <= 1:
        return (
            f"note: {dropped} iterations were dropped (no VU of the pool was free when they "
            "came due, or the worker reached them too late): raise max_vus to run the full "
            "rate, or give the load more CPU"
        )
    return (
        f"note: {dropped} iterations were dropped (no VU of the pool was free when they came "
        "due, or the worker reached them too late); with the pool split over "
        f"{parts} workers, each VU takes only its own worker's arrivals, so a saturated pool "
        "drops more than with --procs 1 (docs/scenario.md). Raise max_vus to run the full "
        "rate, or give the load more CPU"
    )


def _clear_previous_outputs(out_dir: Path) -> None:
    """Remove a previous run's outputs from ``out_dir`` before this run starts, so that a
    ``summary.json`` found next to ``events.bin`` is always this run's (or absent); also the
    temporary files a run killed while writing them left behind."""
    try:
        for name in OUTPUT_FILES:
            (out_dir / name).unlink(missing_ok=True)
            _tmp_name(out_dir, name).unlink(missing_ok=True)
    except OSError as exc:
        raise RunError(
            f"cannot replace the previous results in {out_dir}: {exc.strerror}"
        ) from None


def _tmp_name(out_dir: Path, name: str) -> Path:
    """Where output ``name`` is written before it is renamed into place."""
    return out_dir / f".{name}.z6-tmp"


def _write_outputs(
    out_dir: Path,
    scenario: Scenario,
    summary: dict[str, Any],
    rows: Iterable[dict[str, Any]],
    *,
    log_path: Path,
) -> None:
    """Write the output files, each whole or not at all: a full disk or a crash leaves no
    truncated summary (each goes to a hidden temporary file, then is renamed into place)."""
    writers: tuple[Callable[[IO[str]], object], ...] = (
        lambda f: f.write(json.dumps(summary, indent=2) + "\n"),
        lambda f: f.write(render_text(summary) + "\n"),
        # Row by row: a long run's series as one string took 0.6 KB a second of run.
        lambda f: write_timeseries_csv(rows, f),
        lambda f: f.write(scenario.source_text),
    )
    for name, write in zip(OUTPUT_FILES, writers, strict=True):
        path = out_dir / name
        tmp = _tmp_name(out_dir, name)
        try:
            # UTF-8 whatever the locale: a scenario's name or headers may be any text.
            with tmp.open("w", encoding="utf-8") as f:
                write(f)
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise RunError(
                f"cannot write {path}: {exc.strerror}; the run's events are in {log_path} "
                f"('z6 analyze {log_path}' recomputes the summary)"
            ) from None


def run_demo(procs: int | None, quiet: bool, out: Path | None) -> int:
    """``z6 demo``: start the built-in server on a free port, run the quickstart, stop it."""
    quickstart = find_quickstart()
    server = subprocess.Popen(
        [sys.executable, "-m", "z6.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # Its own session: a terminal's Ctrl-C (SIGINT to the foreground process group) must
        # stop the run gracefully, not the server under it (its VUs then recorded hundreds of
        # connect_refused before they saw the stop). It is stopped below, after the run.
        start_new_session=True,
    )
    try:
        port = _read_port(server)
        if not quiet:
            print(f"z6 demo: built-in server on http://127.0.0.1:{port}", file=sys.stderr)
        return run_scenario(
            RunOptions(
                scenario=quickstart,
                procs=procs,
                out=out,
                quiet=quiet,
                base_url=f"http://127.0.0.1:{port}",
            )
        )
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def find_quickstart() -> Path:
    """The quickstart scenario: ``scenarios/`` of this checkout, else the packaged copy (a
    link to it in the source tree, a file in a wheel)."""
    here = Path(__file__).resolve().parent
    for candidate in (
        here.parent / "scenarios" / "quickstart.toml",
        here / "quickstart.toml",
    ):
        if candidate.is_file():
            return candidate
    raise RunError("cannot find scenarios/quickstart.toml")


def _read_port(server: subprocess.Popen[str]) -> int:
    assert server.stderr is not None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        line = server.stderr.readline()
        if not line:
            break
        if "listening on http://" in line:
            return int(line.rsplit(":", 1)[1].strip().rstrip("/"))
    raise RunError("the built-in server did not start")
