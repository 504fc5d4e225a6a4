"""``z6 analyze``, ``z6 replay --verify`` and ``z6 diff``: everything computed from event logs.

``analyze`` feeds the batches of each log, in file order, to the same
:class:`~z6.engine.metrics.Reducer` the live run uses (``reducer.add(events, worker)``) and
builds the summary with the same :func:`~z6.engine.summary.build_summary`, so for one intact
log it prints the numbers ``z6 run`` printed. Several logs are reduced one by one and merged
with :meth:`Reducer.merge`. Semantics, damage handling and exit codes: ``docs/analysis.md``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from z6.engine.errors import ConfigError, LogFormatError, ScenarioError
from z6.engine.metrics import Reducer
from z6.engine.replay import ReplayResult, verify_log
from z6.engine.scenario import Scenario
from z6.engine.summary import (
    RunMeta,
    build_summary,
    iter_timeseries_rows,
    measured_duration_ns,
    note_abort,
    timeseries_rows,
)
from z6.ipc.eventlog import MAGIC, EventLogReader, LogFooter, LogHeader

__all__ = [
    "ANALYZE_FORMATS",
    "DIFF_FORMATS",
    "AnalyzeResult",
    "LogReduction",
    "MergedFooter",
    "analyze_logs",
    "load_run_summary",
    "reduce_log",
    "run_analyze",
    "run_diff",
    "run_replay",
    "scenario_from_header",
]

ANALYZE_FORMATS = ("summary", "json", "csv")
DIFF_FORMATS = ("summary", "json")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def scenario_from_header(header: LogHeader, log_path: str | Path = "<log>") -> Scenario:
    """The scenario a log was recorded with: its embedded text plus the run's options.

    The text is loaded without touching the outside world (``resolve_external=False``), and
    ``--vus`` / ``--duration`` / the demo base URL recorded in ``header.options`` are applied
    exactly as ``z6 run`` applied them. Raises :class:`LogFormatError` (exit 2) when that
    fails, naming the log.
    """
    from z6.engine.loader import load_scenario_text
    from z6.engine.overrides import apply_overrides

    opts = header.options
    try:
        scenario = load_scenario_text(
            header.scenario_text, header.scenario_path or "<scenario>", resolve_external=False
        )
        vus = int(opts["vus"]) if "vus" in opts else None
        duration = float(opts["duration"]) if "duration" in opts else None
        return apply_overrides(
            scenario,
            duration=duration,
            vus=vus,
            base_url=opts.get("base_url"),
            check_connections=False,  # what ran is what the log holds
        )
    except (ScenarioError, ConfigError, ValueError) as exc:
        raise LogFormatError(
            f"{log_path}: the scenario recorded in the log cannot be rebuilt: {exc}"
        ) from None


@dataclass
class LogReduction:
    """One log reduced: its header, scenario, reducer, and how reading it ended."""

    path: Path
    header: LogHeader
    scenario: Scenario
    reducer: Reducer
    footer: LogFooter | None
    warnings: list[str] = field(default_factory=list)
    damaged: bool = False


def reduce_log(path: str | Path) -> LogReduction:
    """Stream one log into a fresh reducer (constant memory), exactly like the live run.

    Raises :class:`LogFormatError` when ``path`` is not a readable z6 log. Damage after the
    header is not an error: the frames before it are reduced and a warning names the file, the
    frame and its byte offset.
    """
    return _reduce(EventLogReader(path))


def _reduce(reader: EventLogReader) -> LogReduction:
    header = reader.header
    _check_header_percentiles(header, reader.path)
    scenario = scenario_from_header(header, reader.path)
    reducer = Reducer(
        scenario.request_names,
        open_model=scenario.schedule.type == "arrival_rate",
        live=False,  # no live view: skip the interval latencies
    )
    add = reducer.add
    for worker, events in reader.batches():
        add(events, worker)
    note_abort(reducer, reader.footer, header.wall_start_ns)
    red = LogReduction(reader.path, header, scenario, reducer, reader.footer)
    if reader.damage is not None:
        red.damaged = True
        red.warnings.append(
            f"{reader.path}: damaged event log, analyzed the frames before "
            f"{reader.damage.describe()}"
        )
    elif reader.footer is None:
        red.warnings.append(f"{reader.path}: no footer: the run did not finish")
    return red


def _check_header_percentiles(header: LogHeader, path: Path) -> None:
    """Reject header percentiles ``--percentiles`` would have refused (NaN, out of (0, 100]):
    a header with a valid CRC but such values is damaged like any other undecodable one."""
    for p in header.percentiles:
        if not 0 < p <= 100:  # also false for NaN
            raise LogFormatError(
                f"{path}: not a readable z6 event log: damaged header (percentile {p})"
            )


@dataclass(frozen=True)
class MergedFooter:
    """The footer fields the summary shows, for several logs (``FooterLike``).

    ``outcome`` is ``complete`` when every log completed, else the first other outcome (a log
    without footer counts as ``incomplete``). ``failed_workers`` numbers the workers of log
    ``k`` after those of the logs before it (sum of their ``procs``).
    """

    outcome: str
    failed_workers: list[int]


def _merged_footer(parts: Sequence[LogReduction]) -> MergedFooter | None:
    if len(parts) == 1:
        f = parts[0].footer
        return None if f is None else MergedFooter(f.outcome, list(f.failed_workers))
    outcome = "complete"
    failed: list[int] = []
    base = 0
    for p in parts:
        this = p.footer.outcome if p.footer is not None else "incomplete"
        if outcome == "complete" and this != "complete":
            outcome = this
        if p.footer is not None:
            failed.extend(base + w for w in p.footer.failed_workers)
        base += p.header.procs
    return MergedFooter(outcome, failed)


@dataclass
class AnalyzeResult:
    """The summary and time series of one or several logs, and the warnings for stderr."""

    summary: dict[str, Any]
    warnings: list[str]
    reducer: Reducer
    duration_s: float | None = None  # the summary's, unrounded (it places the last row's end)

    def rows(self) -> list[dict[str, Any]]:
        """The per-second time series (``timeseries.csv`` rows), computed on demand."""
        return timeseries_rows(self.reducer, self.duration_s)

    def iter_rows(self) -> Iterator[dict[str, Any]]:
        """:meth:`rows` one at a time."""
        return iter_timeseries_rows(self.reducer, self.duration_s)


def analyze_logs(
    paths: Sequence[str | Path], percentiles: Sequence[float] | None = None
) -> AnalyzeResult:
    """Recompute the summary of one log, or of several logs merged into one result.

    ``percentiles`` default to those recorded in the (first) log's header. Raises only
    :class:`~z6.engine.errors.Z6Error` subclasses: :class:`LogFormatError` for a file that is
    not a log, :class:`ConfigError` for logs whose scenarios name their requests differently.
    """
    if not paths:
        raise ConfigError("give at least one event log")
    readers = [EventLogReader(path) for path in paths]
    _refuse_duplicates(readers)
    parts: list[LogReduction] = []
    for reader in readers:
        part = _reduce(reader)
        if parts and part.scenario.request_names != parts[0].scenario.request_names:
            raise ConfigError(
                f"cannot merge {part.path} with {parts[0].path}: their scenarios have different "
                f"requests ({', '.join(part.scenario.request_names)} vs "
                f"{', '.join(parts[0].scenario.request_names)})"
            )
        parts.append(part)
    first = parts[0]
    warnings = [w for p in parts for w in p.warnings]
    if len(parts) > 1:
        _warn_if_apart(parts, warnings)
    if len(parts) > 1:
        _warn_if_mixed_models(parts, warnings)
    reducer = first.reducer
    if len(parts) > 1:
        # The first log's reducer is ours to extend: its workers stay part 0, log k's are
        # part k in the accounting (Reducer.merge numbers them on).
        for p in parts[1:]:
            reducer.merge(p.reducer)
        if len({p.header.scenario_sha256 for p in parts}) > 1:
            warnings.append(
                "the logs come from different scenario files; names and goals are those of "
                f"{first.path}"
            )
    meta = RunMeta.from_header(first.header)
    meta.procs = sum(p.header.procs for p in parts)
    if len(parts) > 1:
        _merge_shards(meta, parts, warnings)
    pcts = list(percentiles) if percentiles is not None else list(first.header.percentiles)
    footer = _merged_footer(parts)
    planned_s = _planned_s(parts)
    summary = build_summary(
        reducer,
        meta,
        first.scenario.assertions,
        percentiles=pcts,
        footer=footer,
        planned_s=planned_s,
    )
    if len(parts) > 1:
        summary["logs"] = len(parts)
    damaged = [str(p.path) for p in parts if p.damaged]
    if damaged:
        summary["damaged_logs"] = damaged
    return AnalyzeResult(
        summary, warnings, reducer, measured_duration_ns(reducer, footer, planned_s) / 1e9
    )


def _refuse_duplicates(readers: Sequence[EventLogReader]) -> None:
    """Raise ConfigError when two of the logs are one run's same shard (the same file given
    twice, or a copy of it): merging them would count every request twice."""
    seen: dict[tuple[int, int, int, int, str], Path] = {}
    for r in readers:
        h = r.header
        # A run is its start instant (ns) and seed; a shard its index within that run.
        key = (h.wall_start_ns, h.seed, h.shard_index, h.shard_count, h.scenario_sha256)
        if key in seen:
            same = "the same file as" if _same_file(seen[key], r.path) else "a copy of"
            raise ConfigError(
                f"{r.path} is {same} {seen[key]} (one run's shard {h.shard_index}/"
                f"{h.shard_count}): merging it would count every request twice"
            )
        seen[key] = r.path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _planned_s(parts: Sequence[LogReduction]) -> float | None:
    """The planned length of the merged logs (overlaid from their starts: the longest), or
    ``None`` when one of them ran by iterations."""
    planned = [p.scenario.runtime.duration_seconds for p in parts]
    return None if None in planned else max(d for d in planned if d is not None)


def _warn_if_mixed_models(parts: Sequence[LogReduction], warnings: list[str]) -> None:
    """Only open-model requests have a scheduled start: in a merge of open- and closed-model
    logs, the corrected latency covers fewer requests than the latency beside it."""
    open_parts = [p for p in parts if p.reducer.open_model]
    if open_parts and len(open_parts) < len(parts):
        covered = sum(p.reducer.total for p in open_parts)
        total = sum(p.reducer.total for p in parts)
        k = len(open_parts)
        which = "is an open-model run" if k == 1 else "are open-model runs"
        warnings.append(
            f"{k} of the {len(parts)} logs {which}: the corrected latency covers only "
            f"{covered} of the {total} requests"
        )


def _warn_if_apart(parts: Sequence[LogReduction], warnings: list[str]) -> None:
    """Merged logs share one time axis from their own starts, which is right for shards that
    ran together; runs made one after the other would read as one run at their summed rate."""
    spans = sorted(
        (p.header.wall_start_ns, p.header.wall_start_ns + p.reducer.duration_ns, p.path)
        for p in parts
    )
    end, last = spans[0][1], spans[0][2]
    for start, stop, path in spans[1:]:
        if start >= end:
            warnings.append(
                f"{path} started after {last} had ended: merged logs are laid over one another "
                "from their starts, so rps and the time series read as if the runs had been "
                "at the same time (totals, errors and latencies are exact)"
            )
            return
        if stop > end:
            end, last = stop, path


def _merge_shards(meta: RunMeta, parts: Sequence[LogReduction], warnings: list[str]) -> None:
    """Shard metadata of a merge: all N shards of one test make the whole test again."""
    shards = sorted((p.header.shard_index, p.header.shard_count) for p in parts)
    counts = {n for _i, n in shards}
    if counts == {1}:
        return
    n = shards[0][1]
    if counts == {n} and [i for i, _n in shards] == list(range(n)):
        meta.shard_index, meta.shard_count = 0, 1
        return
    held = ", ".join(f"{i}/{c}" for i, c in shards)
    warnings.append(f"the logs hold shards {held}: the result covers only part of the test")


def _check_format(fmt: str, allowed: Sequence[str]) -> None:
    if fmt not in allowed:
        raise ConfigError(f"--format must be one of {', '.join(allowed)}, not '{fmt}'")


def run_analyze(paths: Sequence[Path], fmt: str, percentiles: Sequence[float] | None) -> int:
    """``z6 analyze``: print the result in ``fmt``; exit 1 when a goal failed, else 0."""
    from z6.cli.report import render_text, write_timeseries_csv

    _check_format(fmt, ANALYZE_FORMATS)
    result = analyze_logs(paths, percentiles)
    for w in result.warnings:
        print(f"z6: warning: {w}", file=sys.stderr)
    if fmt == "json":
        print(json.dumps(result.summary, indent=2))
    elif fmt == "csv":
        write_timeseries_csv(result.iter_rows(), sys.stdout)
    else:
        print(render_text(result.summary))
        if "logs" in result.summary:
            print(f"\n  merged {result.summary['logs']} logs")
    return EXIT_OK if result.summary["passed"] else EXIT_FAILED


# ---------------------------------------------------------------------- replay


def replay_log(path: str | Path) -> tuple[EventLogReader, ReplayResult]:
    """Verify every decision recorded in the log at ``path`` (see ``z6.engine.replay``)."""
    reader = EventLogReader(path)
    scenario = scenario_from_header(reader.header, reader.path)
    return reader, verify_log(reader, scenario)


def run_replay(path: Path, verify: bool) -> int:
    """``z6 replay LOG --verify``: exit 0 when every decision matches, 1 on a mismatch or
    when damage kept part of the log from being checked.

    Without ``--verify`` it only says what it would check (and exits 2: z6 never re-sends
    the requests of a log).
    """
    if not verify:
        reader = EventLogReader(path)
        h = reader.header
        print(
            f"{path}: seed {h.seed}, {h.procs} worker(s), scenario {h.scenario_path} "
            f"({h.scenario_sha256[:12]})\n"
            "replay --verify re-derives every VU decision (request, think time, worker, start "
            "instant, iteration count) from the seed and the embedded scenario and compares "
            "them with the log; it sends no request."
        )
        print(f"z6: nothing done: run 'z6 replay {path} --verify'", file=sys.stderr)
        return EXIT_USAGE
    reader, result = replay_log(path)
    for note in result.notes:
        print(f"z6: note: {note}", file=sys.stderr)
    first = result.first
    if first is not None:
        print(first.describe())
    summary = (
        f"replay: {result.events_checked} request events checked "
        f"({result.vus_seen} VU{'' if result.vus_seen == 1 else 's'}, "
        f"{result.iterations_seen} iteration{'' if result.iterations_seen == 1 else 's'}"
    )
    if result.dropped_seen:
        summary += f", {result.dropped_seen} dropped"
    summary += ")"
    if not result.ok:
        print(f"{summary}: {result.mismatch_count} mismatch(es)")
        return EXIT_FAILED
    if reader.damage is not None:
        # Not "every decision matches": the events past the damage were never checked, and
        # a gate on the exit code must not pass a log it could not read.
        print(f"{summary}: no mismatch before the damage; the rest of the log is unreadable")
        return EXIT_FAILED
    print(f"{summary}: every decision matches")
    return EXIT_OK


# ---------------------------------------------------------------------- diff


_MAX_SUMMARY_BYTES = 64 * 1024 * 1024


def _no_constant(name: str) -> Any:
    """``json.loads`` hook: z6 never writes NaN or Infinity, and printing them back out would
    not be JSON."""
    raise ValueError(f"{name} is not a number a z6 summary holds")


def load_run_summary(path: str | Path) -> dict[str, Any]:
    """The summary of a run given as a directory (its ``summary.json``, else its
    ``events.bin``), a ``summary.json`` file or an event log (analyzed)."""
    p = Path(path)
    if p.is_dir():
        if (p / "summary.json").is_file():
            p = p / "summary.json"
        elif (p / "events.bin").is_file():
            p = p / "events.bin"
        else:
            raise ConfigError(f"{path}: directory has neither summary.json nor events.bin")
    try:
        with open(p, "rb") as f:
            head = f.read(len(MAGIC))
            # A summary is a few kB: reading stops past the cap (/dev/zero, a huge file).
            text = b"" if head == MAGIC else head + f.read(_MAX_SUMMARY_BYTES)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file or directory") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if head == MAGIC:
        result = analyze_logs([p])
        for w in result.warnings:
            print(f"z6: warning: {w}", file=sys.stderr)
        return result.summary
    if len(text) > _MAX_SUMMARY_BYTES:
        raise ConfigError(
            f"{p}: neither an event log nor a JSON summary (larger than "
            f"{_MAX_SUMMARY_BYTES // (1024 * 1024)} MiB)"
        )
    try:
        data = json.loads(text.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError: bad JSON, NaN/Infinity, an integer of more than 4300 digits.
        raise ConfigError(f"{p}: neither an event log nor a JSON summary ({exc})") from None
    if not isinstance(data, dict) or "requests" not in data:
        raise ConfigError(f"{p}: not a z6 summary (no 'requests' key)")
    return data


def run_diff(
    a: Path,
    b: Path,
    fmt: str,
    max_regression_pct: float | None = None,
    gate: Sequence[str] | None = None,
    by_name: bool = False,
) -> int:
    """``z6 diff A B``: print the comparison of run B against baseline A.

    Exit 0, or 1 when ``max_regression_pct`` is given and a gated metric (``gate``, default
    :data:`~z6.cli.report.DEFAULT_GATE`) regressed by more (see
    :func:`~z6.cli.report.gate_result`).
    """
    from z6.cli.report import diff_dict, gate_result, render_diff

    _check_format(fmt, DIFF_FORMATS)
    if gate is not None and max_regression_pct is None:
        raise ConfigError("--gate needs --max-regression PCT")
    sa = load_run_summary(a)
    sb = load_run_summary(b)
    try:
        d = diff_dict(sa, sb)
        verdict = (
            None if max_regression_pct is None else gate_result(sa, sb, max_regression_pct, gate)
        )
        if fmt == "json":
            if verdict is not None:
                d["gate"] = verdict
            text = json.dumps(d, indent=2)
        else:
            text = render_diff(sa, sb, verdict, by_name=by_name)
    except (AttributeError, TypeError, KeyError, ValueError, ArithmeticError) as exc:
        raise _malformed_summary(a, b, sa, sb, exc) from None
    print(text)
    return EXIT_FAILED if verdict is not None and not verdict["passed"] else EXIT_OK


def _malformed_summary(
    a: Path, b: Path, sa: dict[str, Any], sb: dict[str, Any], exc: Exception
) -> ConfigError:
    """The error for summaries whose fields have the wrong types, naming the bad file."""
    from z6.cli.report import gate_result, render_diff

    bad = f"{a} or {b}"
    for path, summary in ((a, sa), (b, sb)):
        try:
            render_diff(summary, summary, gate_result(summary, summary, 0.0))
        except (AttributeError, TypeError, KeyError, ValueError, ArithmeticError) as own:
            bad, exc = str(path), own
            break
    return ConfigError(f"{bad}: not a z6 summary (malformed fields: {exc})")
