"""The run summary (SPEC section 6) built from a :class:`~z6.engine.metrics.Reducer`.

``z6 run`` and ``z6 analyze`` both call :func:`build_summary` on a reducer fed the same
batches, with a :class:`RunMeta` built from the same log header, so they print the same
numbers. The result holds plain JSON types only; milliseconds are rounded to 3 decimals and
rates to 6. Key meanings are documented in ``docs/metrics.md``.
"""

from __future__ import annotations

import datetime as _dt
import tomllib
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any, Protocol

import msgspec
from hdrh.histogram import HdrHistogram

from z6.engine.goals import GOAL_PERCENTILES, evaluate_goals
from z6.engine.metrics import Reducer, error_label, histogram_mean, histogram_of
from z6.engine.scenario import Assertions

__all__ = [
    "DEFAULT_PERCENTILES",
    "MIN_RATE_SPAN_S",
    "EndedFooter",
    "FooterLike",
    "HeaderLike",
    "RunMeta",
    "build_summary",
    "iter_timeseries_rows",
    "latency_stats",
    "measured_duration_ns",
    "note_abort",
    "percentile_key",
    "timeseries_rows",
]

DEFAULT_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0, 99.9)

MIN_RATE_SPAN_S = 0.1
"""A last time-series row covering less of its second than this has no ``rps``: two requests
ending in the 0.6 ms the run covered read 3,138/s in a run of 2/s."""


class HeaderLike(Protocol):
    """What :meth:`RunMeta.from_header` reads (``z6.ipc.eventlog.LogHeader`` fits)."""

    @property
    def z6_version(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def procs(self) -> int: ...
    @property
    def scenario_text(self) -> str: ...
    @property
    def scenario_sha256(self) -> str: ...
    @property
    def scenario_path(self) -> str: ...
    @property
    def wall_start_ns(self) -> int: ...
    @property
    def shard_index(self) -> int: ...
    @property
    def shard_count(self) -> int: ...
    @property
    def options(self) -> Mapping[str, str]: ...


class FooterLike(Protocol):
    """What the summary reads from a log footer (``z6.ipc.eventlog.LogFooter`` fits)."""

    @property
    def outcome(self) -> str: ...
    @property
    def failed_workers(self) -> Sequence[int]: ...


class EndedFooter(Protocol):
    """A log footer with its end time (``z6.ipc.eventlog.LogFooter`` fits)."""

    @property
    def outcome(self) -> str: ...
    @property
    def end_wall_ns(self) -> int: ...


class RunMeta(msgspec.Struct, kw_only=True):
    """Everything the summary needs besides the reducer; built from the event-log header."""

    z6_version: str
    seed: int
    procs: int
    scenario_name: str
    scenario_sha256: str
    scenario_path: str
    wall_start_ns: int
    shard_index: int = 0
    shard_count: int = 1
    options: dict[str, str] = {}

    @classmethod
    def from_header(cls, header: HeaderLike) -> RunMeta:
        """Build the metadata of a log header; the scenario name comes from its embedded text
        (``metadata.name``, else the file name, like ``Scenario.name``)."""
        return cls(
            z6_version=header.z6_version,
            seed=header.seed,
            procs=header.procs,
            scenario_name=_scenario_name(header.scenario_text, header.scenario_path),
            scenario_sha256=header.scenario_sha256,
            scenario_path=header.scenario_path,
            wall_start_ns=header.wall_start_ns,
            shard_index=header.shard_index,
            shard_count=header.shard_count,
            options=dict(header.options),
        )


def _scenario_name(text: str, path: str) -> str:
    try:
        meta = tomllib.loads(text).get("metadata", {})
    except tomllib.TOMLDecodeError:
        meta = {}
    name = meta.get("name") if isinstance(meta, dict) else None
    if isinstance(name, str) and name:
        return name
    return path.replace("\\", "/").rsplit("/", 1)[-1] or "scenario"


def percentile_key(p: float) -> str:
    """The summary key of percentile ``p``: 50 -> ``p50``, 99.9 -> ``p999``, 99.99 -> ``p9999``,
    5 -> ``p5``; below 10 with decimals the point is kept as ``_`` (9.9 -> ``p9_9``), since
    dropping it there would make 9.9 read as 99 and 5.5 as 55."""
    text = format(float(p), "g")
    if "." in text and not 10 <= float(p) < 100:
        return "p" + text.replace(".", "_")
    return "p" + text.replace(".", "")


def _ms(us: float | None) -> float | None:
    return None if us is None else round(us / 1000, 3)


def latency_stats(hist: HdrHistogram, percentiles: Sequence[float]) -> dict[str, float | None]:
    """``min``, ``mean``, ``max`` and the percentile keys of ``hist`` (us) in ms.

    Every value is ``None`` when the histogram is empty.
    """
    ps = sorted(set(float(p) for p in percentiles))
    keys = ["min", "mean", "max", *(percentile_key(p) for p in ps)]
    if hist.get_total_count() == 0:
        return dict.fromkeys(keys)
    values = hist.get_percentile_to_value_dict(ps)
    out: dict[str, float | None] = {
        "min": _ms(hist.get_min_value()),
        "mean": _ms(histogram_mean(hist)),
        "max": _ms(hist.get_max_value()),
    }
    for p in ps:
        out[percentile_key(p)] = _ms(values.get(p))
    return out


def _rate(n: int, total: int) -> float | None:
    return round(n / total, 6) if total else None


def _iso_utc(wall_ns: int) -> str:
    when = _dt.datetime.fromtimestamp(wall_ns / 1e9, tz=_dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def note_abort(reducer: Reducer, footer: EndedFooter | None, wall_start_ns: int) -> None:
    """Give ``reducer`` the end of an aborted run from its log footer (see
    :meth:`Reducer.add_abort`); nothing for any other outcome or without footer."""
    if footer is not None and footer.outcome == "aborted":
        reducer.add_abort(max(footer.end_wall_ns - wall_start_ns, 0))


def measured_duration_ns(
    reducer: Reducer, footer: FooterLike | None, planned_s: float | None
) -> int:
    """The run's measured time, the denominator of ``rps``.

    A complete open-model run of a planned length lasted that length, plus the tail of its
    last requests: a worker finishes right after its last arrival, up to ``1/rate`` before the
    end (0.5/s for 4 s read 2 s, twice the rate), and an overloaded one spends a while after
    its last request writing drop records (not part of the load). Otherwise (closed model,
    whose VUs run to the end unless the schedule ends them sooner; stopped early; no footer)
    the time to the last worker finish, request end or VU stop."""
    if (
        planned_s is None
        or not reducer.open_model
        or footer is None
        or footer.outcome != "complete"
    ):
        return reducer.duration_ns
    return max(round(planned_s * 1e9), reducer.activity_ns)


def build_summary(
    reducer: Reducer,
    meta: RunMeta,
    assertions: Assertions,
    *,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    footer: FooterLike | None = None,
    planned_s: float | None = None,
    only_names: Collection[str] | None = None,
) -> dict[str, Any]:
    """The summary dict of SPEC section 6 (plus the extra keys of ``docs/metrics.md``).

    ``percentiles`` choose the ``latency_ms`` keys; the percentiles that latency goals need are
    always added so that every goal can be checked. ``planned_s`` is the run's planned length
    (``duration_seconds`` after overrides; ``None`` in iterations mode): a complete open-model
    run lasted at least that long (see :func:`measured_duration_ns`). ``only_names`` limits
    ``requests.by_name`` to those requests (the live goal check of ``abort_on_fail`` needs
    only the ones with goals). A run stopped by a failed goal (outcome ``goal_failed``) has
    not passed, whatever its goals say at the end.
    """
    pcts = {float(p) for p in percentiles}
    for table in (assertions, *assertions.by_name.values()):
        for name, p in GOAL_PERCENTILES.items():
            if getattr(table, name) is not None:
                pcts.add(p)
    ps = sorted(pcts)

    total, failed = reducer.total, reducer.failed
    duration_s = measured_duration_ns(reducer, footer, planned_s) / 1e9
    counts = reducer.counts_by_request()
    statuses = reducer.by_status_of_request()
    by_name: dict[str, Any] = {}
    # One request's buckets at a time: the latency counts hold an entry per (request,
    # bucket), and a copy grouped by request doubled the memory of a run with many names.
    plain = reducer.latency_buckets_of()
    corrected = reducer.latency_buckets_of(corrected=True) if reducer.open_model else None
    for r in reducer.request_indices():
        if only_names is not None and reducer.name_of(r) not in only_names:
            continue
        t, f = counts.get(r, (0, 0))
        entry: dict[str, Any] = {
            "total": t,
            "ok": t - f,
            "failed": f,
            "rps": round(t / duration_s, 3) if duration_s > 0 else 0.0,
            "by_status": {str(code): n for code, n in statuses.get(r, {}).items()},
            "latency_ms": latency_stats(histogram_of(plain(r)), ps),
        }
        if corrected is not None:
            entry["latency_corrected_ms"] = latency_stats(histogram_of(corrected(r)), ps)
        by_name[reducer.name_of(r)] = entry

    summary: dict[str, Any] = {
        "z6_version": meta.z6_version,
        "seed": meta.seed,
        "procs": meta.procs,
        # The run's command-line choices (engine, --duration, --vus...): the saved
        # scenario.toml is the file as written, so this says what actually ran.
        "options": dict(meta.options),
        "scenario": {
            "name": meta.scenario_name,
            "sha256": meta.scenario_sha256,
            "path": meta.scenario_path,
        },
        "started_at": _iso_utc(meta.wall_start_ns),
        "duration_s": round(duration_s, 3),
        "requests": {
            "total": total,
            "ok": total - failed,
            "failed": failed,
            "retried": reducer.retried,
            "by_name": by_name,
            "by_status": {str(s): n for s, n in reducer.by_status().items()},
        },
        "latency_ms": latency_stats(reducer.histogram(), ps),
    }
    if reducer.open_model:
        summary["latency_corrected_ms"] = latency_stats(reducer.histogram(corrected=True), ps)
    summary["rps"] = round(total / duration_s, 3) if duration_s > 0 else 0.0
    summary["errors"] = {
        "total": failed,
        "rate": _rate(failed, total),
        "by_kind": {error_label(k): n for k, n in reducer.errors_by_kind().items()},
    }
    mean_ns, max_ns = reducer.connect_mean_ns, reducer.connect_max_ns
    summary["bytes_received"] = reducer.bytes_received
    summary["connections"] = {
        "new": reducer.new_connections,
        "failed": reducer.failed_connects,
        "connect_ms": {
            "mean": None if mean_ns is None else round(mean_ns / 1e6, 3),
            "max": None if max_ns is None else round(max_ns / 1e6, 3),
        },
    }
    summary["dropped_iterations"] = reducer.dropped_iterations
    summary["ring_waits"] = reducer.ring_waits
    summary["ring_wait_s"] = round(reducer.ring_wait_ns / 1e9, 3)
    summary["accounting"] = _accounting(reducer)
    if meta.shard_count > 1:
        summary["shard"] = {"index": meta.shard_index, "count": meta.shard_count}
    if footer is not None:
        summary["outcome"] = footer.outcome
        summary["failed_workers"] = list(footer.failed_workers)
    goals = evaluate_goals(assertions, summary)
    # to_builtins leaves out a whole-run goal's ``request`` (None): those entries keep the
    # keys they always had.
    summary["assertions"] = [msgspec.to_builtins(g) for g in goals]
    summary["passed"] = all(g.passed for g in goals) and (
        footer is None or footer.outcome != "goal_failed"
    )
    return summary


def _accounting(reducer: Reducer) -> dict[str, Any]:
    """Per-worker received vs reported events; complete when every worker reported and
    everything it reported (events and started requests) arrived."""
    workers = []
    missing = 0
    complete = True
    for acc in reducer.workers():
        workers.append(
            {
                "part": acc.part,
                "worker": acc.worker,
                "received": acc.received,
                "reported": acc.reported,
                "requests_recorded": acc.requests_recorded,
                "requests_started": acc.requests_started,
            }
        )
        if acc.reported is None:
            complete = False
            continue
        missing += max(acc.reported - acc.received, 0)
        if acc.received != acc.reported or acc.requests_recorded != acc.requests_started:
            complete = False
    if not workers:
        complete = False  # no lifecycle events at all: nothing proves completeness
    return {"workers": workers, "complete": complete, "missing": missing}


def timeseries_rows(reducer: Reducer, duration_s: float | None = None) -> list[dict[str, Any]]:
    """Per-second rows for ``timeseries.csv``: :func:`iter_timeseries_rows` as a list."""
    return list(iter_timeseries_rows(reducer, duration_s))


def iter_timeseries_rows(
    reducer: Reducer, duration_s: float | None = None
) -> Iterator[dict[str, Any]]:
    """Per-second rows for ``timeseries.csv``, one at a time.

    Columns: ``second, requests, ok, errors, rps, p50_ms, p99_ms, active_vus, vus_avg`` plus
    ``started, dropped`` in the open model. ``rps`` and ``vus_avg`` (the mean number of active
    VUs) are over the part of the second the run covered: the whole second, except in the
    last row when the run's ``duration_s`` ends inside it (10 requests in its last 0.25 s
    are 40/s, not a collapse to 10). When that part is under ``MIN_RATE_SPAN_S`` the row's
    ``rps`` is ``None`` (unless it is second 0, the whole of a run that short): the last row
    often covers about 1 ms (pass ``measured_duration_ns / 1e9`` unrounded), where the few
    requests that ended during the graceful stop read as thousands per second.
    """
    for r in reducer.iter_timeseries():
        covered = 1.0 if duration_s is None else duration_s - r.second
        if not 0 < covered < 1:
            covered = 1.0
        row: dict[str, Any] = {
            "second": r.second,
            "requests": r.requests,
            "ok": r.requests - r.errors,
            "errors": r.errors,
            # Second 0 is the whole run when it is that short: its rate is the summary's.
            "rps": (
                round(r.requests / covered, 3)
                if covered >= MIN_RATE_SPAN_S or r.second == 0
                else None
            ),
            "p50_ms": _ms(r.p50_us),
            "p99_ms": _ms(r.p99_us),
            "active_vus": r.active_vus,
            "vus_avg": round(r.vu_ns / (covered * 1e9), 2),
        }
        if reducer.open_model:
            row["started"] = r.started
            row["dropped"] = r.dropped
        yield row
