"""The performance suite ``perf/run.py``: its pure helpers, and a quick smoke run.

The smoke run executes ``perf/run.py --quick --case pipeline`` for real and checks the shape of
the JSON it writes; it never asserts speed (figures belong to ``perf/``, not to tests). Its
whole-path part needs nginx: without it that part must say ``skipped``, never fail.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

REPO = Path(__file__).resolve().parent.parent
RUN_PY = REPO / "perf" / "run.py"


def _load_run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("z6_perf_run", RUN_PY)
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while being created
    spec.loader.exec_module(mod)
    return mod


perf = _load_run()

WRK_OUT = """\
Running 3s test @ http://127.0.0.1:41234/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   1.10ms  200.00us   5.00ms   90.00%
    Req/Sec    45.00k     1.00k   47.00k    80.00%
  135123 requests in 3.00s, 21.00MB read
Requests/sec:  45041.00
Transfer/sec:      7.00MB
"""

LOCUST_CSV = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s\n"
    "GET,/,9000,3,5,5.2,1,40,2,3000.5,1.0\n"
    ",Aggregated,9000,3,5,5.2,1,40,2,3000.5,1.0\n"
)


def test_parse_wrk_reads_requests_and_rate() -> None:
    assert perf.parse_wrk(WRK_OUT) == (135123, 45041.0)


def test_parse_wrk_rejects_other_text() -> None:
    with pytest.raises(ValueError, match="wrk output"):
        perf.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_parse_locust_stats_reads_the_aggregated_row() -> None:
    assert perf.parse_locust_stats(LOCUST_CSV) == (9000, 3, 3000.5)


def test_parse_locust_stats_without_aggregated_row() -> None:
    with pytest.raises(ValueError, match="Aggregated"):
        perf.parse_locust_stats(LOCUST_CSV.rsplit("\n", 2)[0] + "\n")


def test_parse_z6_summary_skips_leading_noise() -> None:
    text = 'warning\n{"requests": {"total": 10, "failed": 1}, "rps": 5.0, "duration_s": 2.0}\n'
    assert perf.parse_z6_summary(text) == (10, 1, 5.0, 2.0)


def test_parse_z6_summary_missing_keys() -> None:
    with pytest.raises(ValueError, match="z6 JSON summary"):
        perf.parse_z6_summary('{"rps": 1}')


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_parsers_return_or_raise_value_error(text: str) -> None:
    for parse in (
        perf.parse_wrk,
        perf.parse_locust_stats,
        perf.parse_z6_summary,
        perf.parse_stub_status,
        perf.parse_proc_stat,
    ):
        with contextlib.suppress(ValueError):
            parse(text)
    assert perf.count_established(text, 80) >= 0
    rss = perf.parse_vmrss_kb(text)
    assert rss is None or rss >= 0


def test_parse_stub_status_and_proc_stat() -> None:
    page = (
        "Active connections: 51 \nserver accepts handled requests\n 60 60 123456 \n"
        "Reading: 0 Writing: 1 Waiting: 50 \n"
    )
    assert perf.parse_stub_status(page) == (51, 123456)
    with pytest.raises(ValueError, match="stub_status"):
        perf.parse_stub_status("<html>404</html>")
    # The command name may contain spaces and parentheses.
    stat = "4242 (z6 (worker) 1) S 4200 4242 4242 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 1 0"
    assert perf.parse_proc_stat(stat) == (4200, 250 + 50 + 7 + 3)
    with pytest.raises(ValueError, match="short"):
        perf.parse_proc_stat("1 (x) S 0")


def test_count_established_counts_server_side_only() -> None:
    # 0x1F90 = 8080. Row 1: listener (0A); row 2: server side (01); row 3: client side of the
    # same connection (remote port 8080); row 4: another port.
    text = (
        "  sl  local_address rem_address   st tx_queue\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000\n"
        "   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000\n"
        "   2: 0100007F:D431 0100007F:1F90 01 00000000:00000000\n"
        "   3: 0100007F:0050 0100007F:D432 01 00000000:00000000\n"
    )
    assert perf.count_established(text, 8080) == 1
    assert perf.count_established(text, 80) == 1
    assert perf.count_established(text, 1) == 0


def test_vmrss_and_kb_per_vu() -> None:
    assert perf.parse_vmrss_kb("Name:\tpython\nVmRSS:\t  123456 kB\n") == 123456
    assert perf.parse_vmrss_kb("Name:\tpython\n") is None
    assert perf.kb_per_vu(40_000, 140_000 - 2, 10_000) == 10.0
    with pytest.raises(ValueError, match="2 VUs"):
        perf.kb_per_vu(1, 2, 1)


def test_ratio_and_cpu_per_request() -> None:
    assert perf.ratio(3.0, 2.0) == 1.5
    assert perf.ratio(None, 2.0) is None
    assert perf.ratio(1.0, 0) is None
    assert perf.cpu_us_per_request(2.0, 1_000_000) == 2.0
    assert perf.cpu_us_per_request(2.0, 0) is None


def test_lag_percentiles_use_the_nearest_rank() -> None:
    lags = [i * 1000 for i in range(1, 101)]  # 1..100 µs
    assert perf.lag_percentiles_us(lags, (50.0, 90.0, 99.0, 99.9)) == {
        "p50": 50.0,
        "p90": 90.0,
        "p99": 99.0,
        "p999": 100.0,
    }
    assert perf.lag_percentiles_us([2500], (50.0,)) == {"p50": 2.5}
    # Rank 999 of 1,000 (floats would make 99.9 % of 1,000 a hair above 999: rank 1,000).
    assert perf.lag_percentiles_us([i * 1000 for i in range(1, 1001)], (99.9,)) == {"p999": 999.0}
    assert perf.lag_percentiles_us([], (50.0,)) == {}


def test_schedule_lags_come_from_scheduled_requests_only(tmp_path: Path) -> None:
    from test_eventlog import make_footer, make_header

    from z6.ipc.eventlog import EventLogWriter
    from z6.ipc.events import RequestEvent, VuStarted, encode_batch

    def req(start: int, scheduled: int, step: int = 0) -> RequestEvent:
        return RequestEvent(0, 0, 0, step, start, 1000, 200, 0, 2, False, 0, scheduled, 0)

    log = tmp_path / "events.bin"
    w = EventLogWriter(log, make_header())
    w.write_batch(0, encode_batch([VuStarted(0, 5), req(1_500, 1_000), req(9_000, -1)]))
    # A second step carries its iteration's scheduled time: its "lag" is not a lag.
    w.write_batch(1, encode_batch([req(4_000, 3_970), req(6_000, 3_970, step=1)]))
    w.close(make_footer())
    assert sorted(perf.schedule_lags_ns(log)) == [30, 500]
    data = log.read_bytes()
    log.write_bytes(data[: len(data) - 40])  # cut inside the last frame
    with pytest.raises(ValueError, match="damaged"):
        perf.schedule_lags_ns(log)
    with pytest.raises(ValueError, match="events"):
        perf.schedule_lags_ns(tmp_path / "missing" / "events.bin")


def test_pool_runs_weighs_each_run_by_its_requests() -> None:
    a = {"window_requests": 300_000, "window_s": 5.0, "cpu_us_per_request": 10.0}
    b = {"window_requests": 100_000, "window_s": 5.0, "cpu_us_per_request": 20.0}
    pooled = perf.pool_runs("z6-procs1", [a, b])
    # (3.0 s + 2.0 s of CPU) / 400,000 requests; 400,000 requests / 10 s
    assert pooled["cpu_us_per_request"] == 12.5
    assert pooled["rps"] == 40_000.0
    assert pooled["window_requests"] == 400_000
    assert pooled["runs"] == [a, b]


def test_pool_runs_passes_on_a_failed_run() -> None:
    ok = {"window_requests": 10, "window_s": 1.0, "cpu_us_per_request": 1.0}
    assert perf.pool_runs("x", [ok, {"error": "z6 run exited 3"}])["error"] == "z6 run exited 3"
    assert perf.pool_runs("x", [{"skipped": "no z6"}, ok])["skipped"] == "no z6"
    unmeasured = {"window_requests": 0, "window_s": 0.0, "cpu_us_per_request": None}
    # A run that fell back to the client's own totals has figures but no window.
    totals_only = {"rps": 5.0, "cpu_us_per_request": 3.0, "measured": "client totals"}
    for other in (unmeasured, totals_only):
        pooled = perf.pool_runs("x", [ok, other])
        assert "cpu_us_per_request" not in pooled
        assert "no steady-window" in pooled["error"]
    assert "no steady-window" in perf.pool_runs("x", [])["error"]


def _result(**cases: Any) -> dict[str, Any]:
    return {"machine": {}, "cases": cases}


BASELINE = {
    "default_tolerance": 0.25,
    "tracked": {
        "throughput.fast_vs_wrk": {"value": 0.4, "higher_is_better": True},
        "throughput.fast_cpu_vs_locust": {"value": 0.2, "higher_is_better": False},
        "pipeline.events_per_s": {"value": 1_000_000, "tolerance": 0.5},
    },
}


def test_check_flags_regressions_in_both_directions() -> None:
    res = _result(throughput={"ratios": {"fast_vs_wrk": 0.29, "fast_cpu_vs_locust": 0.26}})
    rows = {r.metric: r for r in perf.check_against_baseline(res, BASELINE)}
    assert rows["throughput.fast_vs_wrk"].status == "REGRESSED"  # below 0.4 * 0.75
    assert rows["throughput.fast_cpu_vs_locust"].status == "REGRESSED"  # above 0.2 * 1.25
    assert "pipeline.events_per_s" not in rows  # case not run


def test_check_passes_within_tolerance() -> None:
    res = _result(
        throughput={"ratios": {"fast_vs_wrk": 0.31, "fast_cpu_vs_locust": 0.24}},
        pipeline={"events_per_s": 600_000.0},
    )
    statuses = {r.metric: r.status for r in perf.check_against_baseline(res, BASELINE)}
    assert statuses == {
        "throughput.fast_vs_wrk": "ok",
        "throughput.fast_cpu_vs_locust": "ok",
        "pipeline.events_per_s": "ok",
    }


def test_check_skipped_peer_is_not_a_failure_but_a_z6_error_is() -> None:
    res = _result(
        throughput={
            "results": [{"client": "wrk", "skipped": "wrk is not installed"}],
            "ratios": {"fast_vs_wrk": None, "fast_cpu_vs_locust": 0.1},
        },
        pipeline={"error": "z6 run exited 4"},
    )
    rows = {r.metric: r for r in perf.check_against_baseline(res, BASELINE)}
    assert rows["throughput.fast_vs_wrk"].status == "not measured"
    assert rows["throughput.fast_cpu_vs_locust"].status == "ok"
    assert rows["pipeline.events_per_s"].status == "FAILED"
    assert "exited 4" in rows["pipeline.events_per_s"].note


def test_render_table_shows_values_goals_and_skips() -> None:
    res = _result(
        throughput={
            "results": [
                {"client": "wrk", "rps": 50_000.0, "cpu_us_per_request": 15.0},
                {"client": "locust", "skipped": "locust is not installed"},
            ],
            "ratios": {"fast_vs_wrk": 0.6},
        },
        vus={"kb_per_vu": 45.0},
    )
    table = perf.render_table(res)
    assert "50,000 req/s" in table
    assert "skipped: locust is not installed" in table
    assert "goal >= 0.5: met" in table
    assert "goal <= 30: MISSED" in table
    assert "goal >= 1,000,000" not in table  # pipeline not run


def test_missing_peers_are_reported_as_skipped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(perf, "find_tool", lambda name: None)
    monkeypatch.setattr(perf, "find_locust", lambda: None)
    with pytest.raises(perf.Skipped, match="nginx is not installed"), perf.nginx_server(None):
        pass
    cfg = perf.Config(quick=True, secs=1.0, tmp=tmp_path, z6_ok=True)
    assert perf._client("wrk", lambda: perf._wrk(cfg, 1)) == {
        "client": "wrk",
        "skipped": "wrk is not installed (run perf/setup.sh)",
    }
    assert (
        "locust is not installed" in perf._client("locust", lambda: perf._locust(cfg, 1))["skipped"]
    )


def test_baseline_file_is_well_formed() -> None:
    baseline = json.loads((REPO / "perf" / "baseline.json").read_text())
    assert baseline["tracked"], "baseline.json tracks nothing"
    for metric, spec in baseline["tracked"].items():
        case, _, key = metric.partition(".")
        assert case in perf.CASES, metric
        assert key, metric
        assert float(spec["value"]) > 0
        tol = float(spec.get("tolerance", baseline["default_tolerance"]))
        # Higher is better: the limit value * (1 - tolerance) must stay above 0. Lower is
        # better: the limit value * (1 + tolerance) may be more than twice the value.
        assert 0 < tol < (1 if spec.get("higher_is_better", True) else 10), metric


@pytest.mark.slow
def test_quick_pipeline_run_writes_the_documented_json(tmp_path: Path) -> None:
    out = tmp_path / "perf.json"
    proc = subprocess.run(
        [sys.executable, str(RUN_PY), "--quick", "--case", "pipeline", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert set(data) >= {"machine", "cases"}
    assert data["machine"]["cpus"] >= 1
    assert list(data["cases"]) == ["pipeline"]
    pipe = data["cases"]["pipeline"]
    assert "error" not in pipe, pipe.get("error")
    assert isinstance(pipe["events_per_s"], float)
    assert pipe["events_per_s"] > 0
    assert pipe["events"] > 0
    assert pipe["events"] % pipe["batch_events"] == 0
    for part in ("decode", "reduce", "log_write", "ring"):
        assert pipe[f"{part}_events_per_s"] > 0
    assert "events_per_s" in proc.stdout  # the table
    if "full_path_events_per_s" not in pipe:
        # The real-run part needs nginx; a missing peer is reported, never an error.
        full = pipe["full_path"]
        if "skipped" in full:
            pytest.skip(f"whole-path part skipped: {full['skipped']}")
        pytest.fail(f"whole-path part failed: {full.get('error')}")
    assert pipe["full_path_events_per_s"] > 0
