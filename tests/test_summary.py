"""The summary dict (SPEC section 6): keys, values, percentile naming, time-series rows."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from hypothesis import given, strategies as st

from z6.engine.error_kinds import ErrorKind
from z6.engine.metrics import Reducer, bucket_index, bucket_value
from z6.engine.scenario import Assertions, RequestGoals
from z6.engine.summary import RunMeta, build_summary, percentile_key, timeseries_rows
from z6.ipc.events import (
    Event,
    IterationDropped,
    RequestEvent,
    VuStarted,
    VuStopped,
    WorkerFinished,
    WorkerStarted,
)

MS = 1_000_000
S = 1_000_000_000

META = RunMeta(
    z6_version="0.1.0",
    seed=42,
    procs=2,
    scenario_name="API test",
    scenario_sha256="ab" * 32,
    scenario_path="scenarios/api.toml",
    wall_start_ns=1_700_000_000_123_000_000,
)


def req(
    request: int,
    latency_ms: float,
    *,
    start_ns: int = 0,
    status: int = 200,
    error: int = 0,
    scheduled_ns: int = -1,
    new_connection: bool = False,
    connect_ns: int = 0,
) -> RequestEvent:
    """A request event; latency in ms for readability."""
    return RequestEvent(
        vu=0,
        iteration=0,
        request=request,
        step=0,
        start_ns=start_ns,
        latency_ns=int(latency_ms * MS),
        status=status,
        error=error,
        bytes_received=100,
        new_connection=new_connection,
        connect_ns=connect_ns,
        scheduled_ns=scheduled_ns,
    )


def _run(open_model: bool = False) -> Reducer:
    r = Reducer(["home", "login"], open_model=open_model)
    events: list[Event] = [WorkerStarted(0, 10, 0, 1), VuStarted(0, 0)]
    for i in range(8):
        events.append(req(0, 10 + i, start_ns=i * 100 * MS, scheduled_ns=i * 100 * MS - MS))
    events.append(
        req(1, 20, status=500, error=ErrorKind.STATUS, new_connection=True, connect_ns=MS)
    )
    # A refused connect: an attempt (new_connection set, its wait in connect_ns), not a
    # connection, so neither counted as new nor part of the connect time.
    events.append(
        req(1, 0, status=0, error=ErrorKind.CONNECT_REFUSED, new_connection=True, connect_ns=9 * MS)
    )
    events.append(IterationDropped(3, 500 * MS))
    events.append(VuStopped(0, 1_900 * MS, 10))
    r.add(events, 0)
    r.add([WorkerFinished(0, 2 * S, len(events), 10, 4, 2_345_600_000)], 0)
    return r


def test_percentile_keys() -> None:
    assert percentile_key(50) == "p50"
    assert percentile_key(50.0) == "p50"
    assert percentile_key(99.9) == "p999"
    assert percentile_key(99.99) == "p9999"
    assert percentile_key(75) == "p75"
    assert percentile_key(100) == "p100"
    assert percentile_key(9.9) == "p9_9"
    assert percentile_key(5) == "p5"
    assert percentile_key(0.5) == "p0_5"


@given(st.lists(st.integers(1, 100_000), min_size=2, max_size=6, unique=True))
def test_distinct_percentiles_never_share_a_key(thousandths: list[int]) -> None:
    # 9.9 read as p99 and 5.5 as p55 did: `z6 analyze --percentiles 9.9,99` printed one key.
    keys = {percentile_key(t / 1000) for t in thousandths}
    assert len(keys) == len(thousandths)


def test_summary_has_the_spec_keys_and_values() -> None:
    s = build_summary(_run(), META, Assertions())
    for key in (
        "z6_version",
        "seed",
        "procs",
        "scenario",
        "duration_s",
        "requests",
        "latency_ms",
        "rps",
        "errors",
        "assertions",
        "passed",
        "bytes_received",
        "connections",
        "dropped_iterations",
        "ring_waits",
        "accounting",
        "started_at",
    ):
        assert key in s, key
    assert (s["z6_version"], s["seed"], s["procs"]) == ("0.1.0", 42, 2)
    assert s["scenario"]["name"] == "API test"
    assert s["scenario"]["sha256"] == "ab" * 32
    assert s["started_at"] == "2023-11-14T22:13:20.123Z"
    assert s["duration_s"] == 2.0
    assert s["requests"]["total"] == 10
    assert s["requests"]["ok"] == 8
    assert s["requests"]["failed"] == 2
    assert s["requests"]["by_status"] == {"200": 8, "500": 1}
    home = s["requests"]["by_name"]["home"]
    assert (home["total"], home["ok"], home["failed"]) == (8, 8, 0)
    assert home["latency_ms"]["min"] == 10.0
    assert home["latency_ms"]["max"] == pytest.approx(17.0, rel=1e-3)
    assert (home["rps"], home["by_status"]) == (4.0, {"200": 8})
    login = s["requests"]["by_name"]["login"]
    assert (login["total"], login["ok"], login["failed"]) == (2, 0, 2)
    # the refused connect has no status: only the 500 is counted
    assert (login["rps"], login["by_status"]) == (1.0, {"500": 1})
    # the refused connection has no latency: only the 20 ms status failure counts
    assert login["latency_ms"]["p50"] == pytest.approx(20.0, rel=1e-3)
    assert set(s["latency_ms"]) == {"min", "mean", "max", "p50", "p90", "p95", "p99", "p999"}
    assert s["latency_ms"]["min"] == 10.0
    assert s["latency_ms"]["max"] == bucket_value(bucket_index(20_000)) / 1000
    assert s["rps"] == 5.0
    assert s["errors"] == {
        "total": 2,
        "rate": 0.2,
        "by_kind": {"connect_refused": 1, "status": 1},
    }
    assert s["bytes_received"] == 1000
    assert s["connections"] == {"new": 1, "failed": 1, "connect_ms": {"mean": 1.0, "max": 1.0}}
    assert s["dropped_iterations"] == 1
    assert s["ring_waits"] == 4
    assert s["ring_wait_s"] == 2.346
    assert s["accounting"]["complete"] is True
    assert s["accounting"]["missing"] == 0
    assert s["accounting"]["workers"][0]["received"] == 14
    assert "latency_corrected_ms" not in s
    assert "outcome" not in s
    assert s["assertions"] == []
    assert s["passed"] is True
    json.dumps(s)  # plain JSON types only


def test_requested_percentiles_plus_those_goals_need() -> None:
    s = build_summary(_run(), META, Assertions(p999_latency_ms=1000), percentiles=(75, 99.99))
    assert set(s["latency_ms"]) == {"min", "mean", "max", "p75", "p9999", "p999"}
    assert set(s["requests"]["by_name"]["home"]["latency_ms"]) == set(s["latency_ms"])
    assert s["assertions"][0]["actual"] == s["latency_ms"]["p999"]


def test_a_request_s_goal_adds_its_percentile_and_decides_passed() -> None:
    s = build_summary(
        _run(),
        META,
        Assertions(by_name={"login": RequestGoals(p999_latency_ms=5)}),
        percentiles=(50,),
    )
    assert set(s["requests"]["by_name"]["login"]["latency_ms"]) == {
        "min",
        "mean",
        "max",
        "p50",
        "p999",
    }
    [goal] = s["assertions"]
    assert goal["name"] == "by_name.login.p999_latency_ms"
    assert goal["actual"] == s["requests"]["by_name"]["login"]["latency_ms"]["p999"]
    assert goal["passed"] is False
    assert s["passed"] is False


def test_goals_decide_passed() -> None:
    good = build_summary(_run(), META, Assertions(p99_latency_ms=100, error_rate_max=0.5))
    assert good["passed"] is True
    assert [g["passed"] for g in good["assertions"]] == [True, True]
    bad = build_summary(_run(), META, Assertions(p99_latency_ms=100, error_rate_max=0.1))
    assert bad["passed"] is False
    assert bad["assertions"][1] == {
        "name": "error_rate_max",
        "expected": 0.1,
        "actual": 0.2,
        "passed": False,
        "op": "<=",
    }


def test_open_model_adds_corrected_latency() -> None:
    s = build_summary(_run(open_model=True), META, Assertions())
    corr = s["latency_corrected_ms"]
    # the first iteration's schedule (-1 ms) is before the start: not an open-model event;
    # the second was scheduled 1 ms before it started and took 11 ms
    assert corr["min"] == pytest.approx(12.0, rel=1e-3)
    assert "latency_corrected_ms" in s["requests"]["by_name"]["home"]


def test_empty_run() -> None:
    s = build_summary(Reducer(["a"]), META, Assertions(rps_min=1))
    assert s["requests"]["total"] == 0
    assert s["requests"]["by_name"]["a"]["latency_ms"]["p50"] is None
    assert s["latency_ms"]["max"] is None
    assert s["rps"] == 0.0
    assert s["errors"]["rate"] is None
    assert s["connections"]["connect_ms"] == {"mean": None, "max": None}
    assert s["accounting"]["complete"] is False
    assert s["passed"] is False
    json.dumps(s)


@dataclass
class _Footer:
    outcome: str
    failed_workers: list[int] = field(default_factory=list)


def test_footer_outcome_and_incomplete_accounting() -> None:
    r = Reducer(["a"])
    r.add([WorkerStarted(0, 1, 0, 1), req(0, 5)], 0)
    r.add([WorkerFinished(0, S, 5, 2, 0)], 0)  # says 5 events and 2 requests: 3 missing
    r.add([WorkerStarted(1, 2, 0, 1)], 1)  # never finished
    s = build_summary(r, META, Assertions(), footer=_Footer("worker_failed", [1]))
    assert s["outcome"] == "worker_failed"
    assert s["failed_workers"] == [1]
    acc = s["accounting"]
    assert acc["complete"] is False
    assert acc["missing"] == 3
    assert [w["reported"] for w in acc["workers"]] == [5, None]


def test_shard_info_only_for_sharded_runs() -> None:
    assert "shard" not in build_summary(_run(), META, Assertions())
    meta = RunMeta(**{**_meta_dict(), "shard_index": 1, "shard_count": 3})
    assert build_summary(_run(), meta, Assertions())["shard"] == {"index": 1, "count": 3}


def _meta_dict() -> dict[str, object]:
    return {f: getattr(META, f) for f in META.__struct_fields__}


@dataclass
class _Header:
    scenario_text: str
    scenario_path: str = "dir/load.toml"
    z6_version: str = "0.1.0"
    seed: int = 7
    procs: int = 4
    scenario_sha256: str = "cd" * 32
    wall_start_ns: int = 0
    shard_index: int = 0
    shard_count: int = 1
    options: dict[str, str] = field(default_factory=lambda: {"engine": "h11", "vus": "3"})


def test_meta_from_header_takes_the_name_from_the_embedded_scenario() -> None:
    meta = RunMeta.from_header(_Header('[metadata]\nname = "Checkout"\n'))
    assert meta.scenario_name == "Checkout"
    assert (meta.seed, meta.procs, meta.scenario_sha256) == (7, 4, "cd" * 32)
    assert meta.options == {"engine": "h11", "vus": "3"}
    assert RunMeta.from_header(_Header("[runtime]\nvus = 1\n")).scenario_name == "load.toml"
    assert RunMeta.from_header(_Header("not = = toml")).scenario_name == "load.toml"


def test_timeseries_rows_columns() -> None:
    rows = timeseries_rows(_run())
    assert list(rows[0]) == [
        "second",
        "requests",
        "ok",
        "errors",
        "rps",
        "p50_ms",
        "p99_ms",
        "active_vus",
        "vus_avg",
    ]
    assert [r["requests"] for r in rows] == [10, 0]  # second 1 has only the VU stop
    assert [r["errors"] for r in rows] == [2, 0]
    assert rows[0]["ok"] == 8
    assert rows[0]["rps"] == 10.0
    assert rows[0]["p50_ms"] == pytest.approx(14.0, rel=1e-3)  # 10..17 and 20 ms
    assert rows[1]["p50_ms"] is None
    assert [r["active_vus"] for r in rows] == [1, 1]
    open_rows = timeseries_rows(_run(open_model=True))
    assert list(open_rows[0])[-2:] == ["started", "dropped"]
    assert open_rows[0]["started"] == 7  # the first iteration was scheduled before t=0
    assert open_rows[0]["dropped"] == 1


def test_the_last_partial_second_s_rate_is_over_the_part_the_run_covered() -> None:
    """A run that ends 0.25 s into its last second: that row's requests are a rate over
    0.25 s, not a collapse to a quarter; whole seconds are their count."""
    r = Reducer(["a"])
    r.add([req(0, 1.0, start_ns=i * 100 * MS) for i in range(13)])  # ends by 1.201 s
    rows = timeseries_rows(r, 1.25)
    assert [(row["requests"], row["rps"]) for row in rows] == [(10, 10.0), (3, 12.0)]
    assert [row["rps"] for row in timeseries_rows(r, 2.0)] == [10.0, 3.0]
    assert [row["rps"] for row in timeseries_rows(r)] == [10.0, 3.0]
    # A sliver of a second (the graceful stop's last responses) has no rate: 3 requests in
    # 1 ms would read 3,000/s.
    rows = timeseries_rows(r, 1.001)
    assert [(row["requests"], row["rps"]) for row in rows] == [(10, 10.0), (3, None)]
    assert [row["rps"] for row in timeseries_rows(r, 1.1)] == [10.0, 30.0]


def test_a_complete_run_lasts_its_planned_length_for_rps() -> None:
    """An open-model worker finishes right after its last arrival (the 10 requests of _run end
    by 2 s): a complete 4 s run is 4 s long, so rps is 10 / 4, not 10 / 2. Stopped early, or
    by iterations, the measured time stands; a tail past the plan counts."""
    r = _run(open_model=True)
    complete = build_summary(r, META, Assertions(), footer=_Footer("complete"), planned_s=4.0)
    assert (complete["duration_s"], complete["rps"]) == (4.0, 2.5)
    stopped = build_summary(r, META, Assertions(), footer=_Footer("interrupted"), planned_s=4.0)
    assert (stopped["duration_s"], stopped["rps"]) == (2.0, 5.0)
    by_iterations = build_summary(r, META, Assertions(), footer=_Footer("complete"))
    assert by_iterations["duration_s"] == 2.0
    # The last VU stop (1.9 s) is past a 1.5 s plan: the run lasted that long. The worker's
    # own finish (2 s, after writing its last records) is not part of the load.
    short = build_summary(r, META, Assertions(), footer=_Footer("complete"), planned_s=1.5)
    assert short["duration_s"] == 1.9
    # A closed model ends when its schedule does (a ramp down to 0 VUs before the planned end).
    closed = build_summary(_run(), META, Assertions(), footer=_Footer("complete"), planned_s=4.0)
    assert closed["duration_s"] == 2.0


def test_a_run_a_goal_stopped_has_not_passed_and_live_checks_take_only_named_requests() -> None:
    goals = Assertions(error_rate_max=1.0, by_name={"home": RequestGoals(error_rate_max=1.0)})
    stopped = build_summary(_run(), META, goals, footer=_Footer("goal_failed"))
    assert [g["passed"] for g in stopped["assertions"]] == [True, True]
    assert stopped["passed"] is False  # the abort is the verdict, as the run's exit code
    assert build_summary(_run(), META, goals, footer=_Footer("interrupted"))["passed"] is True
    live = build_summary(_run(), META, goals, percentiles=(), only_names={"home"})
    assert list(live["requests"]["by_name"]) == ["home"]
    assert set(live["latency_ms"]) == {"min", "mean", "max"}
