"""End-to-end load models (issue 4): sequences, ramps, think time, open model, graceful stop.

Each run is short and bounded; the tolerances are wide enough for a loaded 2-core machine but
far from what a broken implementation would give (e.g. no think time = thousands of req/s).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_z6
from servers import z6_server
from test_run_e2e import run_json, write_scenario

from z6.engine.schedule import ArrivalPlan
from z6.ipc.eventlog import EventLogReader
from z6.ipc.events import IterationDropped, RequestEvent, VuStarted, VuStopped

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with z6_server(procs=1) as p:
        yield p


SEQUENCE = """
[runtime]
iterations = 4
vus = 3

[[requests]]
name = "login"
method = "POST"
path = "/echo"
body = "user"

[[requests]]
name = "browse"
method = "GET"
path = "/bytes/20"

[[requests]]
name = "logout"
method = "GET"
path = "/status/404"
expect_status = [404]

[sequence]
[[sequence.steps]]
request = "login"
[[sequence.steps]]
request = "browse"
repeat = 3
[[sequence.steps]]
request = "logout"
"""


@pytest.mark.parametrize("procs", [1, 2])
def test_sequence_counts_are_exact(tmp_path: Path, port: int, procs: int) -> None:
    scenario = write_scenario(tmp_path, port, SEQUENCE)
    code, summary, err = run_json(scenario, tmp_path / "out", "--procs", str(procs))
    assert code == 0, err
    by_name = {n: (v["total"], v["ok"]) for n, v in summary["requests"]["by_name"].items()}
    # expect_status = [404] makes the 404s successes.
    assert by_name == {"login": (12, 12), "browse": (36, 36), "logout": (12, 12)}
    assert summary["requests"]["by_status"] == {"200": 48, "404": 12}


RAMP = """
[runtime]
duration_seconds = 5

[[requests]]
name = "slow"
method = "GET"
path = "/delay/20"

[schedule]
type = "ramp"
start_vus = 2
end_vus = 20
ramp_duration_seconds = 4
hold_duration_seconds = 1
"""


def _timeseries(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((out / "timeseries.csv").read_text())))


def test_ramp_raises_active_vus_to_the_target(tmp_path: Path, port: int) -> None:
    scenario = write_scenario(tmp_path, port, RAMP)
    out = tmp_path / "out"
    code, _summary, err = run_json(scenario, out, "--procs", "2")
    assert code == 0, err
    active = [int(r["active_vus"]) for r in _timeseries(out)]
    assert active[0] <= 6  # starts near start_vus, not at the peak
    assert max(active) == 20
    first_20 = active.index(20)
    assert first_20 >= 3  # reached only at the end of the 4 s ramp
    assert active[: first_20 + 1] == sorted(active[: first_20 + 1])  # rising, never falling


THINK = """
[runtime]
duration_seconds = 4
vus = 5

[[requests]]
name = "home"
method = "GET"
path = "/"

[think_time]
type = "constant"
duration_ms = 200
"""


def test_constant_think_time_paces_the_vus(tmp_path: Path, port: int) -> None:
    scenario = write_scenario(tmp_path, port, THINK)
    code, summary, err = run_json(scenario, tmp_path / "out", "--procs", "1")
    assert code == 0, err
    # 5 VUs, each one request per ~200 ms: about 25 requests per second.
    assert summary["rps"] == pytest.approx(25, rel=0.15)
    assert summary["requests"]["total"] == pytest.approx(100, rel=0.15)


ARRIVAL = """
[runtime]
duration_seconds = 5

[[requests]]
name = "call"
method = "GET"
path = "{path}"

[schedule]
type = "arrival_rate"
rate = 100
max_vus = {pool}
"""


def test_arrival_rate_with_enough_vus(tmp_path: Path, port: int) -> None:
    scenario = write_scenario(tmp_path, port, ARRIVAL.format(path="/", pool=20))
    code, summary, err = run_json(scenario, tmp_path / "out", "--procs", "2")
    assert code == 0, err
    assert summary["requests"]["total"] == pytest.approx(500, rel=0.04)
    assert summary["dropped_iterations"] == 0
    assert "latency_corrected_ms" in summary
    # Corrected latency counts from the scheduled start, so it can only be larger.
    assert summary["latency_corrected_ms"]["p50"] >= summary["latency_ms"]["p50"]


def test_arrival_rate_drops_are_counted_never_hidden(tmp_path: Path, port: int) -> None:
    # 5 VUs, each busy 200 ms per iteration: at most ~25 iterations/s of the 100/s asked.
    text = ARRIVAL.format(path="/delay/200", pool=5) + "[assertions]\ndropped_iterations_max = 0\n"
    scenario = write_scenario(tmp_path, port, text)
    out = tmp_path / "out"
    code, summary, err = run_json(scenario, out, "--procs", "1")
    assert code == 1, err  # the goal on drops fails the run: no latency goal would see them
    dropped = summary["dropped_iterations"]
    assert summary["assertions"] == [
        {
            "name": "dropped_iterations_max",
            "expected": 0.0,
            "actual": float(dropped),
            "passed": False,
            "op": "<=",
        }
    ]
    total = summary["requests"]["total"]
    assert dropped >= 300
    assert total + dropped == 500  # every scheduled iteration is either run or counted
    rows = _timeseries(out)
    assert sum(int(r["dropped"]) for r in rows) == dropped


def test_drops_with_a_split_pool_come_with_a_note(tmp_path: Path, port: int) -> None:
    """A saturated pool split over two workers drops more than one process would (each VU
    takes only its worker's arrivals): the run says so on stderr, and only then; --quiet
    silences the live progress, not this advice."""
    scenario = write_scenario(tmp_path, port, ARRIVAL.format(path="/delay/200", pool=2))
    notes = {}
    for procs in ("1", "2"):
        args = ["run", str(scenario), "--out", str(tmp_path / procs), "--procs", procs]
        proc = run_z6([*args, "--duration", "1", "--json", "--quiet"])
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["dropped_iterations"] > 50
        notes[procs] = [ln for ln in proc.stderr.splitlines() if "pool split" in ln]
        # Any drop is said, with one worker too.
        assert "iterations were dropped" in proc.stderr
    assert notes["1"] == []
    (note,) = notes["2"]
    assert note.startswith("z6: note: ")
    assert "over 2 workers" in note


def test_arrival_rate_a_small_pool_serves_every_worker_s_arrivals(
    tmp_path: Path, port: int
) -> None:
    # One VU, 25 fast iterations/s: one VU keeps up (40 ms between arrivals: at 100/s a
    # stall of the machine over 10 ms dropped one). With --procs 2 the second worker owns no
    # VU; arrivals split evenly sent it half of them, all dropped.
    text = ARRIVAL.replace("rate = 100", "rate = 25")
    scenario = write_scenario(tmp_path, port, text.format(path="/", pool=1))
    code, summary, err = run_json(scenario, tmp_path / "out", "--procs", "2")
    assert code == 0, err
    assert summary["dropped_iterations"] == 0
    assert summary["requests"]["total"] == 125
    # The replay verifier knows the routing: each arrival on the worker that owns its slot.
    verify = run_z6(["replay", str(tmp_path / "out" / "events.bin"), "--verify"])
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "every decision matches" in verify.stdout


STAGED = """
[runtime]
duration_seconds = 3
prng_seed = 4

[[requests]]
name = "call"
method = "GET"
path = "/"

[schedule]
type = "arrival_rate"
max_vus = 20
stages = [
  {rate = 200, duration_seconds = 1},
  {rate = 200, duration_seconds = 1},
  {rate = 0, duration_seconds = 1},
]

[assertions]
dropped_iterations_max = 0
"""


def test_arrival_rate_stages_start_the_integral_of_the_rate(tmp_path: Path, port: int) -> None:
    # 0 -> 200/s over 1 s, 200/s for 1 s, 200 -> 0 over 1 s: 100 + 200 + 100 arrivals, each
    # second's share by the integral; the replay verifier checks every arrival's instant.
    scenario = write_scenario(tmp_path, port, STAGED)
    out = tmp_path / "out"
    code, summary, err = run_json(scenario, out, "--procs", "2")
    assert code == 0, err
    assert summary["requests"]["total"] == 400
    assert summary["dropped_iterations"] == 0
    started = [int(r["started"]) for r in _timeseries(out)]
    # Starts by the second they left in: an arrival due just before a second's end may start
    # just after it.
    assert sum(started) == 400
    for got, expected in zip(started, [100, 200, 100], strict=True):
        assert abs(got - expected) <= 3, started
    verify = run_z6(["replay", str(out / "events.bin"), "--verify"])
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "400 request events checked" in verify.stdout
    analyzed = run_z6(["analyze", str(out / "events.bin"), "--format", "json"])
    assert json.loads(analyzed.stdout) == json.loads((out / "summary.json").read_text())


def _arrivals(log_path: Path) -> tuple[set[tuple[int, int]], int]:
    """``{(iteration, scheduled_ns)}`` of the arrivals a log started or dropped, and how
    many of them were dropped."""
    seen: set[tuple[int, int]] = set()
    dropped = 0
    for _worker, events in EventLogReader(log_path).batches():
        for e in events:
            if isinstance(e, RequestEvent):
                seen.add((e.iteration, e.scheduled_ns))
            elif isinstance(e, IterationDropped):
                seen.add((e.iteration, e.scheduled_ns))
                dropped += 1
    return seen, dropped


def test_arrival_rate_stages_schedule_the_same_arrivals_in_any_layout(
    tmp_path: Path, port: int
) -> None:
    # 0 -> 100/s over 1 s, then down to 0 over 0.5 s: 75 arrivals. Two VUs on a 50 ms
    # endpoint cannot keep up: some start, the rest are dropped, and together they are
    # exactly the plan's arrivals, whatever the layout.
    text = STAGED.replace("duration_seconds = 3", "duration_seconds = 1.5").replace(
        'path = "/"', 'path = "/delay/50"'
    )
    text = text.replace("max_vus = 20", "max_vus = 2").split("stages = [")[0] + (
        "stages = [{rate = 100, duration_seconds = 1}, {rate = 0, duration_seconds = 0.5}]\n"
    )
    scenario = write_scenario(tmp_path, port, text)
    plan = ArrivalPlan(0.0, [(100.0, 1.0), (0.0, 0.5)])
    expected = {(n, plan.instant_ns(n)) for n in range(plan.total(1.5))}
    assert len(expected) == 75
    for procs in ("1", "2"):
        out = tmp_path / f"out{procs}"
        code, summary, err = run_json(scenario, out, "--procs", procs)
        assert code == 0, err
        seen, dropped = _arrivals(out / "events.bin")
        assert seen == expected, procs
        assert 0 < dropped == summary["dropped_iterations"]
        assert summary["requests"]["total"] + dropped == 75
        verify = run_z6(["replay", str(out / "events.bin"), "--verify"])
        assert verify.returncode == 0, verify.stdout + verify.stderr


def test_arrival_rate_a_low_rate_reads_as_itself(tmp_path: Path, port: int) -> None:
    # 2/s for 1.9 s: arrivals at 0, 0.5, 1.0 and 1.5 s. The worker is done right after the
    # last one; rps over that (1.5 s) read 2.7/s, a third above the rate asked.
    text = ARRIVAL.replace("duration_seconds = 5", "duration_seconds = 1.9").replace(
        "rate = 100", "rate = 2"
    )
    scenario = write_scenario(tmp_path, port, text.format(path="/", pool=1))
    out = tmp_path / "out"
    code, summary, err = run_json(scenario, out, "--procs", "1")
    assert code == 0, err
    assert summary["requests"]["total"] == 4
    assert summary["duration_s"] == pytest.approx(1.9, abs=0.05)
    assert summary["rps"] == pytest.approx(4 / 1.9, rel=0.03)
    analyzed = run_z6(["analyze", str(out / "events.bin"), "--format", "json"])
    assert json.loads(analyzed.stdout) == json.loads((out / "summary.json").read_text())


def test_arrival_rate_shards_add_up_to_the_unsharded_test(tmp_path: Path, port: int) -> None:
    # One VU in the whole test: shard 0 of 2 owns it, shard 1 owns none. Arrivals split
    # evenly sent half of them to shard 1, which dropped them all.
    text = ARRIVAL.replace("duration_seconds = 5", "duration_seconds = 1").replace(
        "rate = 100", "rate = 20"
    )
    scenario = write_scenario(tmp_path, port, text.format(path="/", pool=1))
    seed = ("--seed", "5", "--procs", "1")
    code, whole, err = run_json(scenario, tmp_path / "whole", *seed)
    assert code == 0, err
    logs = []
    for i in range(2):
        code, part, err = run_json(scenario, tmp_path / f"s{i}", *seed, "--shard", f"{i}/2")
        assert code == 0, err
        assert part["dropped_iterations"] == 0
        # Shard 1 owns no VU of the pool: said, not left to look like a broken run.
        assert ("shard 1/2 holds no VU" in err) == (i == 1), err
        logs.append(str(tmp_path / f"s{i}" / "events.bin"))
        verify = run_z6(["replay", logs[-1], "--verify"])
        assert verify.returncode == 0, verify.stdout + verify.stderr
    assert (whole["requests"]["total"], whole["dropped_iterations"]) == (20, 0)
    merged = run_z6(["analyze", *logs, "--format", "json"])
    assert merged.returncode == 0, merged.stderr
    summary = json.loads(merged.stdout)
    assert (summary["requests"]["total"], summary["dropped_iterations"]) == (20, 0)


FLOOD = """
[runtime]
duration_seconds = 0.3

[[requests]]
name = "call"
method = "GET"
path = "/"

[schedule]
type = "arrival_rate"
rate = 1000000
max_vus = 1
"""


@pytest.mark.parametrize("pool", [1, 2000])
def test_arrival_rate_arrivals_a_late_loop_never_reached_are_dropped(
    tmp_path: Path, port: int, pool: int
) -> None:
    # A million arrivals/s: the arrival loop falls far behind. Those still pending at the end
    # of the run were due: each is run or counted as dropped, none vanishes. A large pool
    # also leaves iterations spawned before the end whose VU first runs after it: dropped too.
    scenario = write_scenario(tmp_path, port, FLOOD.replace("max_vus = 1", f"max_vus = {pool}"))
    code, summary, err = run_json(scenario, tmp_path / "out", "--procs", "1")
    assert code == 0, err
    assert summary["requests"]["total"] + summary["dropped_iterations"] == 300_000
    log = EventLogReader(tmp_path / "out" / "events.bin")
    starts = stops = ran = 0
    for _worker, events in log.batches():
        for e in events:
            if isinstance(e, VuStarted):
                starts += 1
            elif isinstance(e, VuStopped):
                stops += 1
                ran += e.iterations
                assert e.iterations in (0, 1)  # one arrival per VU start
    # Every VU start stops, and the iterations that ran are the requests. A start may run
    # nothing: the run ended between the VU's start and its first request (that arrival is
    # among the dropped, above): seen once, in a clean-clone CI run of 2026-12-08.
    assert starts == stops
    assert ran == summary["requests"]["total"]


def test_arrival_rate_the_hard_stop_does_not_cut_the_drop_accounting(
    tmp_path: Path, port: int
) -> None:
    # Far behind at the end, with no graceful stop: the hard stop comes while the worker is
    # still recording the arrivals it never reached; it cut that short (2 of 3 million lost,
    # and replay --verify failed a "complete" run).
    text = FLOOD.replace(
        "duration_seconds = 0.3", "duration_seconds = 0.5\ngraceful_stop_seconds = 0"
    )
    text = text.replace("max_vus = 1", "max_vus = 50").replace('path = "/"', 'path = "/delay/50"')
    scenario = write_scenario(tmp_path, port, text)
    out = tmp_path / "out"
    code, summary, err = run_json(scenario, out, "--procs", "1")
    assert code == 0, err
    assert summary["requests"]["total"] + summary["dropped_iterations"] == 500_000
    verify = run_z6(["replay", str(out / "events.bin"), "--verify"])
    assert verify.returncode == 0, verify.stdout + verify.stderr


GRACEFUL = """
[runtime]
duration_seconds = 1
vus = 3
graceful_stop_seconds = 0.5

[[requests]]
name = "stuck"
method = "GET"
path = "/delay/4000"
"""


def test_requests_still_running_after_graceful_stop_are_interrupted(
    tmp_path: Path, port: int
) -> None:
    scenario = write_scenario(tmp_path, port, GRACEFUL)
    out = tmp_path / "out"
    code, summary, err = run_json(scenario, out, "--procs", "1")
    assert code == 0, err
    assert summary["requests"]["total"] == 3
    assert summary["errors"]["by_kind"] == {"interrupted": 3}
    # Cut at duration + graceful stop (1.5 s), far before the server's 4 s.
    assert summary["duration_s"] < 3.0
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["errors"] == summary["errors"]
