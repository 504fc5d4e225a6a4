"""Report rendering: the text summary, the time-series CSV and run diffs."""

from __future__ import annotations

import copy
import csv
import io
from typing import Any

import pytest

from z6.cli.report import diff_dict, render_diff, render_text, render_timeseries_csv
from z6.engine.error_kinds import ErrorKind
from z6.engine.metrics import Reducer
from z6.engine.scenario import Assertions
from z6.engine.summary import RunMeta, build_summary, timeseries_rows
from z6.ipc.events import RequestEvent, VuStarted, WorkerFinished, WorkerStarted

MS = 1_000_000


def _summary(**assertions: float) -> dict[str, Any]:
    r = Reducer(["get_user", "post_order"])
    events: list[Any] = [WorkerStarted(0, 1, 0, 1), VuStarted(0, 0)]
    for i in range(20):
        err = ErrorKind.STATUS if i % 10 == 9 else 0
        events.append(
            RequestEvent(
                vu=0,
                iteration=i,
                request=i % 2,
                step=0,
                start_ns=i * 100 * MS,
                latency_ns=(5 + i) * MS,
                status=503 if err else 200,
                error=int(err),
                bytes_received=2048,
                new_connection=i == 0,
                connect_ns=MS // 2,
            )
        )
    r.add(events, 0)
    r.add([WorkerFinished(0, 2_000 * MS, len(events), 20, 0)], 0)
    meta = RunMeta(
        z6_version="0.1.0",
        seed=99,
        procs=1,
        scenario_name="Report test",
        scenario_sha256="ef" * 32,
        scenario_path="r.toml",
        wall_start_ns=0,
    )
    return build_summary(r, meta, Assertions(**assertions))


def test_render_text_shows_the_numbers() -> None:
    s = _summary(p99_latency_ms=1000, error_rate_max=0.01)
    text = render_text(s)
    assert "Report test" in text
    assert "seed 99" in text
    assert "20 total, 18 ok, 2 failed" in text
    assert "10% errors" in text
    assert "rps ................. 10" in text
    assert f"p99={s['latency_ms']['p99']:g}" in text
    assert "get_user" in text
    assert "post_order" in text
    assert "200: 18" in text
    assert "503: 2" in text
    assert "status: 2" in text
    assert "1 new" in text
    assert "41.0 kB" in text
    assert "[PASS] p99_latency_ms <= 1000" in text
    assert "[FAIL] error_rate_max <= 0.01: actual 0.1" in text
    assert "result: FAILED (1 of 2 goals failed)" in text
    assert "accounting" not in text  # complete: no line
    assert "dropped" not in text  # closed model without drops


def test_render_text_says_how_long_workers_waited_for_the_aggregator() -> None:
    s = _summary()
    assert "ring waits" not in render_text(s)
    s["ring_waits"], s["ring_wait_s"] = 3, 2.5
    assert "ring waits .......... 3 (workers waited for the aggregator, 2.5 s in all;" in (
        render_text(s)
    )
    s["ring_wait_s"] = None  # a log from before the wait time was kept
    assert "ring waits .......... 3 (workers waited for the aggregator; requests" in (
        render_text(s)
    )


def test_render_text_passed_and_no_goals() -> None:
    assert "result: PASSED (all 1 goals met)" in render_text(_summary(rps_min=1))
    assert "result: no goals (the run is not judged" in render_text(_summary())


def test_render_text_fails_a_run_a_goal_stopped_although_its_goals_end_met() -> None:
    # abort_on_fail stopped it at a goal that the slow requests in flight then brought back
    # under its bound: the text said PASSED beside exit 1 and "passed": false.
    s = _summary(rps_min=1)
    s["passed"] = False
    s["outcome"] = "goal_failed"
    text = render_text(s)
    assert (
        "result: FAILED (a goal failed during the run and abort_on_fail stopped it; at the end "
        "all 1 goals are met)"
    ) in text
    assert "PASSED" not in text


def test_render_text_shows_incomplete_accounting_and_outcome() -> None:
    s = _summary()
    s["accounting"] = {
        "workers": [{"worker": 0, "received": 5, "reported": 8}, {"worker": 1, "received": 3}],
        "complete": False,
        "missing": 3,
    }
    s["outcome"] = "worker_failed"
    s["failed_workers"] = [1]
    text = render_text(s)
    assert "accounting: INCOMPLETE, 3 events missing" in text
    assert "worker 0: 5/8" in text
    assert "worker 1: 3/?" in text
    assert "outcome: worker_failed (failed workers: 1)" in text


def test_render_text_of_an_empty_run() -> None:
    r = Reducer(["a"])
    meta = RunMeta(
        z6_version="0.1.0",
        seed=1,
        procs=1,
        scenario_name="empty",
        scenario_sha256="",
        scenario_path="e.toml",
        wall_start_ns=0,
    )
    text = render_text(build_summary(r, meta, Assertions(rps_min=5)))
    assert "0 total, 0 ok, 0 failed (- errors)" in text
    assert "[FAIL] rps_min >= 5: actual -" in text


def test_timeseries_csv() -> None:
    r = Reducer(["a"])
    r.add([VuStarted(0, 0)])
    r.add(
        [
            RequestEvent(0, 0, 0, 0, 2_100 * MS, 5 * MS, 200, 0, 10, False, 0),
        ]
    )
    text = render_timeseries_csv(timeseries_rows(r))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == [
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
    assert len(rows) == 4
    assert rows[1] == ["0", "0", "0", "0", "0.0", "", "", "1", "1.0"]
    assert rows[3][:4] == ["2", "1", "1", "0"]
    assert float(rows[3][5]) == pytest.approx(5.0, rel=1e-3)


def test_timeseries_csv_without_rows_is_a_header() -> None:
    assert render_timeseries_csv([]).startswith("second,requests,ok,errors,rps")
    assert render_timeseries_csv([]).count("\n") == 1


def test_diff_deltas_and_marks() -> None:
    a = _summary()
    b = copy.deepcopy(a)
    b["rps"] = a["rps"] * 2
    b["latency_ms"]["p99"] = a["latency_ms"]["p99"] + 10
    b["latency_ms"]["p50"] = a["latency_ms"]["p50"] / 2
    b["requests"]["ok"] = 19
    b["requests"]["failed"] = 1
    b["errors"]["rate"] = 0.05
    b["errors"]["by_kind"] = {"timeout": 1}
    d = diff_dict(a, b)["metrics"]
    assert d["rps"]["delta"] == pytest.approx(a["rps"])
    assert d["rps"]["relative"] == pytest.approx(1.0)
    assert d["rps"]["change"] == "improvement"
    assert d["latency_ms.p99"]["delta"] == pytest.approx(10.0)
    assert d["latency_ms.p99"]["change"] == "regression"
    assert d["latency_ms.p50"]["change"] == "improvement"
    assert d["latency_ms.p50"]["relative"] == pytest.approx(-0.5)
    assert d["success_rate"]["a"] == 0.9
    assert d["success_rate"]["b"] == 0.95
    assert d["success_rate"]["change"] == "improvement"
    assert d["error_rate"]["change"] == "improvement"
    assert d["requests.failed"]["delta"] == -1
    assert d["requests.total"]["change"] == "n/a"
    assert d["latency_ms.max"]["change"] == "unchanged"
    # an error kind only in one run counts as zero in the other
    assert d["errors.status"] == {
        "a": 2,
        "b": 0,
        "delta": -2,
        "relative": -1.0,
        "change": "improvement",
    }
    assert d["errors.timeout"]["a"] == 0
    assert d["errors.timeout"]["relative"] is None
    assert d["errors.timeout"]["change"] == "regression"


def test_diff_of_rare_errors_keeps_their_size() -> None:
    """1 failure in 4,830 requests against 3 in 5,320: the rates are exact ratios of the
    counts (rounded summary rates lost a third of the relative change), and the table prints
    them as percentages, not as 0 and 0.001 with a delta of +0."""
    a = _summary()
    b = copy.deepcopy(a)
    a["requests"].update(total=4830, ok=4829, failed=1)
    b["requests"].update(total=5320, ok=5317, failed=3)
    d = diff_dict(a, b)["metrics"]
    assert d["error_rate"]["a"] == 1 / 4830
    assert d["error_rate"]["delta"] == pytest.approx(3 / 5320 - 1 / 4830, rel=1e-9)
    assert d["error_rate"]["relative"] == pytest.approx((3 / 5320) / (1 / 4830) - 1, rel=1e-9)
    assert d["error_rate"]["change"] == "regression"
    assert d["success_rate"]["change"] == "regression"
    lines = render_diff(a, b).splitlines()
    err = next(line for line in lines if line.strip().startswith("error_rate")).split()
    assert err[1:4] == ["0.0207039%", "0.056391%", "+0.035687%"]
    ok = next(line for line in lines if line.strip().startswith("success_rate")).split()
    assert ok[1:4] == ["99.9793%", "99.9436%", "-0.035687%"]


def test_diff_of_open_model_runs_shows_drops_and_corrected_latency() -> None:
    """An open-model run that dropped iterations against one that did not: the drops and the
    corrected latencies are compared (the table hid both); a closed-model summary has no
    such rows."""
    a = _summary()
    assert "dropped_iterations" not in diff_dict(a, a)["metrics"]
    a["latency_corrected_ms"] = dict(a["latency_ms"])
    b = copy.deepcopy(a)
    b["dropped_iterations"] = 347
    b["latency_corrected_ms"]["p99"] = a["latency_corrected_ms"]["p99"] + 1.25
    d = diff_dict(a, b)["metrics"]
    assert d["dropped_iterations"] == {
        "a": 0,
        "b": 347,
        "delta": 347,
        "relative": None,
        "change": "regression",
    }
    assert d["latency_corrected_ms.p99"]["delta"] == pytest.approx(1.25)
    assert d["latency_corrected_ms.p99"]["change"] == "regression"
    assert "latency_corrected_ms.min" not in d
    closed = _summary()
    assert diff_dict(closed, b)["metrics"]["dropped_iterations"]["a"] == 0
    row = next(ln for ln in render_diff(a, b).splitlines() if "dropped_iterations" in ln)
    assert row.split() == ["dropped_iterations", "0", "347", "+347", "-", "WORSE"]


def test_render_diff_table() -> None:
    a = _summary()
    b = copy.deepcopy(a)
    b["rps"] = a["rps"] * 1.5
    b["latency_ms"]["p99"] = a["latency_ms"]["p99"] * 2
    text = render_diff(a, b)
    rps_line = next(line for line in text.splitlines() if line.strip().startswith("rps"))
    assert "+50.0%" in rps_line
    assert rps_line.endswith("better")
    p99_line = next(line for line in text.splitlines() if "latency_ms.p99" in line)
    assert "+100.0%" in p99_line
    assert p99_line.endswith("WORSE")
    assert "1 improved, 1 regressed" in text
    assert "different scenario" not in text
    b["scenario"]["sha256"] = "00" * 32
    assert "different scenario files" in render_diff(a, b)
