"""``z6 analyze``: the run's numbers recomputed from ``events.bin`` (one or several logs)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import one_line_exit_2, run_z6
from test_replay import (
    OPEN,
    SEQUENCE,
    WEIGHTED,
    closed_worker_events,
    frames_of,
    header_of,
    scenario_of,
    synth_log,
    write_frames,
)

from z6.cli.analyze_cmd import analyze_logs, reduce_log, scenario_from_header
from z6.engine.decisions import Planner
from z6.engine.errors import ConfigError, LogFormatError
from z6.engine.metrics import Reducer
from z6.engine.summary import RunMeta, build_summary
from z6.ipc.eventlog import EventLogReader

# --------------------------------------------------------------------------- synthetic logs


def expected_names(text: str, seed: int = 11) -> dict[str, int]:
    """Requests per name of a synthetic closed-model run of ``text``."""
    sc = scenario_of(text)
    planner = Planner(sc, seed)
    out = dict.fromkeys(sc.request_names, 0)
    for vu in range(sc.runtime.vus):
        for i in range(sc.runtime.iterations or 0):
            for r in planner.plan(vu, i):
                out[sc.request_names[r]] += 1
    return out


def test_single_log_counts_and_same_numbers_as_the_live_reducer(tmp_path: Path) -> None:
    path = synth_log(tmp_path / "events.bin")
    result = analyze_logs([path])
    s = result.summary
    assert s["requests"]["total"] == 20
    assert s["requests"]["ok"] == 20
    names = expected_names(WEIGHTED)
    assert {k: v["total"] for k, v in s["requests"]["by_name"].items()} == names
    assert s["bytes_received"] == 200
    assert s["connections"]["new"] == 4
    assert s["seed"] == 11
    assert s["procs"] == 2
    assert s["outcome"] == "complete"
    assert s["accounting"]["complete"] is True
    assert "logs" not in s
    assert result.warnings == []
    # The live path: the same frames fed to a reducer in the same order.
    reader = EventLogReader(path)
    live = Reducer(scenario_of(WEIGHTED).request_names)
    for w, evs in reader.batches():
        live.add(evs, w)
    assert reader.footer is not None
    expected = build_summary(
        live,
        RunMeta.from_header(reader.header),
        scenario_of(WEIGHTED).assertions,
        percentiles=reader.header.percentiles,
        footer=reader.footer,
    )
    assert s == expected


def test_open_model_log(tmp_path: Path) -> None:
    s = analyze_logs([synth_log(tmp_path / "events.bin", OPEN)]).summary
    assert s["dropped_iterations"] == 2  # arrivals 6 and 13 of 20
    assert s["requests"]["total"] == 18
    assert "latency_corrected_ms" in s


def test_a_merge_of_open_and_closed_model_logs_says_what_corrected_latency_covers(
    tmp_path: Path,
) -> None:
    # Only the open-model log's requests have a scheduled start to correct against.
    closed = synth_log(tmp_path / "c.bin")
    opened = synth_log(tmp_path / "o.bin", OPEN, wall_start_ns=1_700_000_000 * 10**9 + 1)
    result = analyze_logs([closed, opened])
    assert result.summary["requests"]["total"] == 20 + 18
    assert (
        "1 of the 2 logs is an open-model run: the corrected latency covers only 18 of the "
        "38 requests"
    ) in result.warnings
    assert not any("open-model" in w for w in analyze_logs([opened]).warnings)


def test_two_logs_merge(tmp_path: Path) -> None:
    a = synth_log(tmp_path / "a.bin")
    b = synth_log(tmp_path / "b.bin", outcome="interrupted", wall_start_ns=1_800_000_000 * 10**9)
    s = analyze_logs([a, b]).summary
    names = expected_names(WEIGHTED)
    assert s["requests"]["total"] == 40
    assert {k: v["total"] for k, v in s["requests"]["by_name"].items()} == {
        k: 2 * v for k, v in names.items()
    }
    assert s["procs"] == 4
    assert s["logs"] == 2
    assert s["outcome"] == "interrupted"
    assert analyze_logs([a, b]).warnings[0].startswith(f"{b} started after {a} had ended")
    workers = s["accounting"]["workers"]
    assert sorted((w["part"], w["worker"]) for w in workers) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert s["accounting"]["complete"] is True
    single = analyze_logs([a]).summary
    assert s["latency_ms"]["max"] == single["latency_ms"]["max"]
    assert s["latency_ms"]["p50"] == single["latency_ms"]["p50"]


def shard_log(path: Path, text: str, shard: tuple[int, int]) -> Path:
    """A synthetic log of shard ``shard`` (index, count) of ``text``, 2 workers."""
    sc = scenario_of(text)
    per_worker = [closed_worker_events(sc, 11, 2, w, shard) for w in range(2)]
    header = msgspec.structs.replace(
        header_of(text, 11, 2), shard_index=shard[0], shard_count=shard[1]
    )
    write_frames(path, header, frames_of(per_worker))
    return path


def test_all_shards_merge_into_the_whole_test(tmp_path: Path) -> None:
    text = WEIGHTED.replace("vus = 4", "vus = 5")
    whole = analyze_logs([synth_log(tmp_path / "whole.bin", text)]).summary
    shards = [shard_log(tmp_path / f"s{i}.bin", text, (i, 3)) for i in range(3)]
    merged = analyze_logs(shards)
    s = merged.summary
    assert merged.warnings == []
    assert "shard" not in s
    assert s["logs"] == 3
    assert s["procs"] == 6
    assert s["requests"] == whole["requests"]
    assert s["latency_ms"] == whole["latency_ms"]
    part = analyze_logs(shards[:2])
    assert part.warnings == [
        "the logs hold shards 0/3, 1/3: the result covers only part of the test"
    ]
    assert part.summary["shard"] == {"index": 0, "count": 3}


def test_logs_with_different_requests_do_not_merge(tmp_path: Path) -> None:
    a = synth_log(tmp_path / "a.bin")
    b = synth_log(tmp_path / "b.bin", SEQUENCE)
    with pytest.raises(ConfigError, match="different requests"):
        analyze_logs([a, b])
    proc = run_z6(["analyze", str(a), str(b)])
    assert proc.returncode == 2
    assert proc.stderr.startswith("z6: cannot merge ")


def test_percentiles_option_changes_the_keys(tmp_path: Path) -> None:
    path = synth_log(tmp_path / "events.bin")
    s = analyze_logs([path], [50.0, 99.9]).summary
    assert list(s["latency_ms"]) == ["min", "mean", "max", "p50", "p999"]
    assert list(s["requests"]["by_name"]["a"]["latency_ms"]) == [
        "min",
        "mean",
        "max",
        "p50",
        "p999",
    ]
    default = analyze_logs([path]).summary
    assert list(default["latency_ms"]) == ["min", "mean", "max", "p50", "p90", "p95", "p99", "p999"]
    proc = run_z6(["analyze", str(path), "--format", "json", "--percentiles", "50,99.9"])
    assert proc.returncode == 0, proc.stderr
    assert list(json.loads(proc.stdout)["latency_ms"]) == ["min", "mean", "max", "p50", "p999"]
    proc = run_z6(["analyze", str(path), "--percentiles", "50,abc"])
    assert proc.returncode == 2


def test_header_options_are_applied(tmp_path: Path) -> None:
    header = header_of(WEIGHTED, 11, 1, options={"vus": "7", "duration": "2.5"})
    sc = scenario_from_header(header)
    assert sc.runtime.vus == 7
    assert sc.schedule.vus == 7
    assert sc.runtime.duration_seconds == 2.5
    assert sc.runtime.iterations is None
    bad = msgspec.structs.replace(header, options={"vus": "many"})
    with pytest.raises(LogFormatError, match="cannot be rebuilt"):
        scenario_from_header(bad, "x.bin")


def test_the_last_row_s_rate_uses_the_unrounded_duration(tmp_path: Path) -> None:
    """The time series' last row's rate is over the exact part of its second the run covered,
    not over the summary's duration rounded to 1 ms (a 30-50 % error on a short part)."""
    result = analyze_logs([synth_log(tmp_path / "e.bin")])
    exact = result.duration_s
    assert exact is not None
    assert exact != result.summary["duration_s"]  # the synthetic run ends off the ms grid
    assert round(exact, 3) == result.summary["duration_s"]
    last = result.rows()[-1]
    covered = exact - last["second"]
    assert 0 < covered < 1
    # Under 0.1 s a last row has no rate, unless it is second 0 (the whole run, as here).
    assert last["second"] == 0
    assert last["rps"] == round(last["requests"] / covered, 3)


def test_cli_formats(tmp_path: Path) -> None:
    path = synth_log(tmp_path / "events.bin")
    proc = run_z6(["analyze", str(path)])
    assert proc.returncode == 0, proc.stderr
    assert "20 total, 20 ok, 0 failed" in proc.stdout
    proc = run_z6(["analyze", str(path), "--format", "csv"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("second,requests,ok,errors,rps,p50_ms,p99_ms,active_vus")
    assert sum(int(line.split(",")[1]) for line in lines[1:]) == 20
    proc = run_z6(["analyze", str(path), "--format", "xml"])
    assert proc.returncode == 2
    assert "--format must be one of summary, json, csv" in proc.stderr


def test_goals_decide_the_exit_code(tmp_path: Path) -> None:
    failing = WEIGHTED + "[assertions]\np50_latency_ms = 0.001\n"
    passing = WEIGHTED + "[assertions]\np50_latency_ms = 1000\n"
    proc = run_z6(["analyze", str(synth_log(tmp_path / "f.bin", failing)), "-f", "json"])
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["passed"] is False
    proc = run_z6(["analyze", str(synth_log(tmp_path / "p.bin", passing)), "-f", "json"])
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["passed"] is True


def test_one_run_s_log_given_twice_is_refused(tmp_path: Path) -> None:
    """The same file twice, or a copy of it, would count every request twice."""
    a = synth_log(tmp_path / "a.bin")
    copy = tmp_path / "copy.bin"
    copy.write_bytes(a.read_bytes())
    for second, same in ((a, "the same file as"), (copy, "a copy of")):
        with pytest.raises(ConfigError, match="would count every request twice"):
            analyze_logs([a, second])
        proc = run_z6(["analyze", str(a), str(second)])
        assert proc.returncode == 2
        assert proc.stdout == ""
        assert proc.stderr == (
            f"z6: {second} is {same} {a} (one run's shard 0/1): merging it would count every "
            "request twice\n"
        )
    # Another shard of the same run is not a copy: shards merge.
    s1 = shard_log(tmp_path / "s1.bin", WEIGHTED, (1, 2))
    s0 = shard_log(tmp_path / "s0.bin", WEIGHTED, (0, 2))
    assert analyze_logs([s0, s1]).summary["logs"] == 2


def test_not_a_log_and_missing_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a log at all")
    for path in (junk, tmp_path / "missing.bin"):
        proc = run_z6(["analyze", str(path)])
        assert proc.returncode == 2
        assert proc.stdout == ""
        assert proc.stderr.startswith(f"z6: {path}: not a readable z6 event log")
        assert proc.stderr.count("\n") == 1


def test_log_without_footer_warns(tmp_path: Path) -> None:
    path = synth_log(tmp_path / "events.bin", outcome=None)
    result = analyze_logs([path])
    assert result.warnings == [f"{path}: no footer: the run did not finish"]
    assert result.summary["requests"]["total"] == 20
    assert "outcome" not in result.summary
    proc = run_z6(["analyze", str(path)])
    assert proc.returncode == 0
    assert f"z6: warning: {path}: no footer: the run did not finish" in proc.stderr


def damage_at(path: Path, offset: int, data: bytes) -> None:
    """Overwrite bytes of ``path`` at ``offset``."""
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(data)] = data
    path.write_bytes(bytes(raw))


def test_overwritten_and_truncated_synthetic_logs(tmp_path: Path) -> None:
    path = synth_log(tmp_path / "events.bin")
    size = path.stat().st_size
    damage_at(path, size * 3 // 4, b"\x00" * 8)
    reader = EventLogReader(path)
    for _ in reader.batches():
        pass
    assert reader.damage is not None
    result = analyze_logs([path])
    assert 0 < result.summary["requests"]["total"] < 20
    assert result.warnings == [
        f"{path}: damaged event log, analyzed the frames before {reader.damage.describe()}"
    ]
    assert result.summary["damaged_logs"] == [str(path)]

    cut = synth_log(tmp_path / "cut.bin")
    cut.write_bytes(cut.read_bytes()[: size * 3 // 4])
    proc = run_z6(["analyze", str(cut), "--format", "json"])
    assert proc.returncode == 0
    assert "truncated frame" in proc.stderr
    assert "at byte " in proc.stderr
    assert 0 < json.loads(proc.stdout)["requests"]["total"] < 20


def test_reduce_log_streams_every_frame(tmp_path: Path) -> None:
    sc = scenario_of(WEIGHTED)
    per_worker = [closed_worker_events(sc, 11, 2, w) for w in range(2)]
    frames = frames_of(per_worker, batch=1)
    write_frames(tmp_path / "e.bin", header_of(WEIGHTED, 11, 2), frames)
    red = reduce_log(tmp_path / "e.bin")
    assert red.reducer.total == 20
    assert sum(a.received for a in red.reducer.workers()) == len(frames) - 2


# --------------------------------------------------------------------------- real runs

REAL = """
[metadata]
name = "analyze-e2e"
[runtime]
iterations = {iterations}
vus = 3
prng_seed = {seed}
[target]
base_url = "http://127.0.0.1:{port}"
[[requests]]
name = "home"
method = "GET"
path = "/"
weight = 3
[[requests]]
name = "bytes"
method = "GET"
path = "/bytes/100"
weight = 1
[assertions]
error_rate_max = 0.5
"""


def real_run(tmp: Path, port: int, name: str, seed: int, iterations: int) -> Path:
    """Run the REAL scenario with ``iterations`` per VU; return the output directory."""
    scenario = tmp / f"{name}.toml"
    scenario.write_text(textwrap.dedent(REAL).format(iterations=iterations, seed=seed, port=port))
    out = tmp / name
    proc = run_z6(["run", str(scenario), "--out", str(out), "--json", "--quiet", "-p", "2"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """Two real runs of 600 requests each (3 VUs x 200 iterations), different seeds."""
    from servers import z6_server

    tmp = tmp_path_factory.mktemp("analyze")
    with z6_server() as port:
        yield real_run(tmp, port, "one", 1, 200), real_run(tmp, port, "two", 2, 200)


def load(path: Path) -> dict[str, Any]:
    """A JSON file as a dict."""
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


@pytest.mark.slow
def test_round_trip_equals_the_run_summary(two_runs: tuple[Path, Path]) -> None:
    out = two_runs[0]
    proc = run_z6(["analyze", str(out / "events.bin"), "--format", "json"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    analyzed = json.loads(proc.stdout)
    live = load(out / "summary.json")
    # Every key is a function of the log (started_at comes from the header's wall start), so
    # the whole summary must be identical, not just the deterministic part.
    assert analyzed == live
    assert analyzed["requests"]["total"] == 600
    proc = run_z6(["analyze", str(out / "events.bin"), "--format", "csv"])
    assert proc.stdout == (out / "timeseries.csv").read_text()


@pytest.mark.slow
def test_two_real_logs_merge_exactly(two_runs: tuple[Path, Path]) -> None:
    one, two = two_runs
    proc = run_z6(["analyze", str(one / "events.bin"), str(two / "events.bin"), "-f", "json"])
    assert proc.returncode == 0, proc.stderr
    # One run after the other: merged on one time axis, which the user is told.
    assert proc.stderr.startswith(
        f"z6: warning: {two / 'events.bin'} started after {one / 'events.bin'} had ended: "
        "merged logs are laid over one another from their starts, so rps and the time series "
        "read as if the runs had been at the same time (totals, errors and latencies are "
        "exact)\n"
    )
    merged = json.loads(proc.stdout)
    a, b = load(one / "summary.json"), load(two / "summary.json")
    assert merged["requests"]["total"] == 1200
    assert merged["logs"] == 2
    assert merged["procs"] == 4
    for name in ("home", "bytes"):
        got = merged["requests"]["by_name"][name]
        for key in ("total", "ok", "failed"):
            want = a["requests"]["by_name"][name][key] + b["requests"]["by_name"][name][key]
            assert got[key] == want
    assert merged["bytes_received"] == a["bytes_received"] + b["bytes_received"]
    assert merged["latency_ms"]["max"] == max(a["latency_ms"]["max"], b["latency_ms"]["max"])
    assert merged["latency_ms"]["min"] == min(a["latency_ms"]["min"], b["latency_ms"]["min"])
    assert merged["accounting"]["complete"] is True
    assert len(merged["accounting"]["workers"]) == 4


@pytest.mark.slow
def test_damaged_real_logs(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    src = (two_runs[0] / "events.bin").read_bytes()
    middle = tmp_path / "middle.bin"
    middle.write_bytes(src)
    damage_at(middle, len(src) // 2, b"\xaa" * 16)
    short = tmp_path / "short.bin"
    short.write_bytes(src[: len(src) * 2 // 3])
    for path in (middle, short):
        reader = EventLogReader(path)
        for _ in reader.batches():
            pass
        assert reader.damage is not None
        proc = run_z6(["analyze", str(path), "--format", "json"])
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        assert str(path) in proc.stderr
        assert f"frame {reader.damage.frame_index} at byte {reader.damage.offset}" in proc.stderr
        total = json.loads(proc.stdout)["requests"]["total"]
        assert 0 < total < 600


# --------------------------------------------------------------------------- bad input


def test_nan_header_percentiles_are_header_damage(tmp_path: Path) -> None:
    header = msgspec.structs.replace(header_of(WEIGHTED, 11, 1), percentiles=[float("nan")])
    sc = scenario_of(WEIGHTED)
    path = tmp_path / "events.bin"
    write_frames(path, header, frames_of([closed_worker_events(sc, 11, 1, 0)]))
    with pytest.raises(LogFormatError, match="damaged header"):
        analyze_logs([path])
    assert "damaged header" in one_line_exit_2(run_z6(["analyze", str(path)]))


@pytest.mark.parametrize(
    "bad", ['{"requests":"x","latency_ms":5}', '{"requests":{"total":"many"}}']
)
@pytest.mark.parametrize("fmt", ["summary", "json"])
def test_diff_malformed_summary_exit_2(tmp_path: Path, bad: str, fmt: str) -> None:
    good = synth_log(tmp_path / "events.bin")
    broken = tmp_path / "summary.json"
    broken.write_text(bad)
    for a, b in ((good, broken), (broken, good)):
        err = one_line_exit_2(run_z6(["diff", str(a), str(b), "--format", fmt]))
        assert err.startswith(f"z6: {broken}: not a z6 summary")
