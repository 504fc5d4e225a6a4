"""End-to-end: ``z6 run`` as a subprocess against real servers on 127.0.0.1.

Counts are checked against what the server itself saw (its access log), so z6 can neither
lose nor invent a request without a test failing.
"""

from __future__ import annotations

import json
import re
import resource
import signal
import subprocess
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from conftest import run_z6, z6_command
from servers import (
    count_access_log,
    hypercorn_server,
    logged_header_values,
    nginx_binary,
    nginx_server,
    wait_for_log_total,
    z6_server,
)
from test_replay import WEIGHTED, scenario_of, synth_log

from z6.cli.analyze_cmd import analyze_logs
from z6.cli.run_cmd import _write_outputs
from z6.engine.data import STREAM_DATA
from z6.engine.decisions import draw
from z6.engine.errors import RunError
from z6.engine.templates import MAX_FIELDS, STREAM_PATH, parse_template

pytestmark = pytest.mark.slow


def write_scenario(tmp: Path, port: int, body: str, name: str = "s.toml") -> Path:
    """Write a scenario whose target is 127.0.0.1:port; ``body`` holds the other tables."""
    path = tmp / name
    path.write_text(
        textwrap.dedent(
            f"""
            [metadata]
            name = "e2e"
            [target]
            base_url = "http://127.0.0.1:{port}"
            """
        )
        + textwrap.dedent(body)
    )
    return path


MIXED = """
[runtime]
iterations = 40
vus = 6
prng_seed = 7

[[requests]]
name = "home"
method = "GET"
path = "/"
weight = 5

[[requests]]
name = "item"
method = "GET"
path = "/bytes/10"
weight = 3

[[requests]]
name = "post"
method = "POST"
path = "/echo"
body = "hello"
weight = 2
"""

PATHS = {"home": ("GET", "/"), "item": ("GET", "/bytes/10"), "post": ("POST", "/echo")}


def run_json(scenario: Path, out: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    """Run z6 with --json --quiet; return exit code, parsed summary and stderr."""
    proc = run_z6(["run", str(scenario), "--out", str(out), "--json", "--quiet", *extra])
    try:
        summary = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"no JSON summary (exit {proc.returncode}): {proc.stdout}\n{proc.stderr}")
    return proc.returncode, summary, proc.stderr


ServerFactory = Callable[[Path], AbstractContextManager[tuple[int, Path]]]


def _third_party() -> list[Any]:
    params: list[Any] = [pytest.param(hypercorn_server, id="hypercorn")]
    params.append(
        pytest.param(
            nginx_server,
            id="nginx",
            marks=pytest.mark.skipif(nginx_binary() is None, reason="nginx not installed"),
        )
    )
    return params


@pytest.mark.parametrize("server", _third_party())
def test_counts_match_third_party_access_log(tmp_path: Path, server: ServerFactory) -> None:
    per_procs: dict[int, dict[str, int]] = {}
    for procs in (1, 2):
        work = tmp_path / f"srv{procs}"
        work.mkdir()
        with server(work) as (port, log):
            scenario = write_scenario(tmp_path, port, MIXED, name=f"s{procs}.toml")
            code, summary, err = run_json(scenario, tmp_path / f"out{procs}", "--procs", str(procs))
            assert code == 0, err
            total = summary["requests"]["total"]
            assert total == 6 * 40
            seen = wait_for_log_total(log, total)
        assert sum(seen.values()) == total
        by_name = {n: v["total"] for n, v in summary["requests"]["by_name"].items()}
        for name, key in PATHS.items():
            assert by_name.get(name, 0) == seen[key], (name, by_name, seen)
        assert summary["requests"]["failed"] == 0
        per_procs[procs] = by_name
    # The determinism contract: the same decisions whatever the worker layout.
    assert per_procs[1] == per_procs[2]


FIELDS = """
[runtime]
iterations = 5
vus = 3
prng_seed = 11

[[requests]]
name = "item"
method = "GET"
path = "/items/{{random 1 1000000}}/{{iteration}}/{{vu}}"
"""


@pytest.mark.parametrize("server", _third_party())
def test_paths_with_fields_reach_the_server_as_rendered_in_any_layout(
    tmp_path: Path, server: ServerFactory
) -> None:
    # Every VU and iteration gets its own path, the same for any --procs: the server's log
    # holds exactly the paths the determinism contract gives (no query string: hypercorn's
    # log leaves it out).
    template = parse_template("/items/{{random 1 1000000}}/{{iteration}}/{{vu}}")
    assert template is not None
    expected = Counter(
        ("GET", template.render(11, vu, vu, it, 0)) for vu in range(3) for it in range(5)
    )
    assert len(expected) == 15
    for procs in (1, 2):
        work = tmp_path / f"srv{procs}"
        work.mkdir()
        with server(work) as (port, log):
            scenario = write_scenario(tmp_path, port, FIELDS, name=f"f{procs}.toml")
            code, _, err = run_json(scenario, tmp_path / f"out{procs}", "--procs", str(procs))
            assert code == 0, err
            assert wait_for_log_total(log, 15) == expected


HEADER_FIELDS = """
[runtime]
iterations = 5
vus = 3
prng_seed = 11

[[requests]]
name = "create"
method = "POST"
path = "/items/{{random 1 1000000}}"
body = "n={{random 1 99}}"
headers = { "X-Request-Id" = "r-{{random 1 1000000000}}-{{iteration}}-{{vu}}", Accept = "*/*" }
"""


@pytest.mark.parametrize("server", _third_party())
def test_header_values_with_fields_reach_the_server_as_rendered_in_any_layout(
    tmp_path: Path, server: Callable[..., AbstractContextManager[tuple[int, Path]]]
) -> None:
    # The server logs each request's X-Request-Id: exactly the values of the determinism
    # contract, whose draw index puts the header's field after the path's and the body's
    # (k = 2), the same for any --procs.
    expected = Counter(
        f"r-{1 + draw(11, vu, it, STREAM_PATH, 0 * MAX_FIELDS + 2) % 1000000000}-{it}-{vu}"
        for vu in range(3)
        for it in range(5)
    )
    assert len(expected) == 15
    for procs in (1, 2):
        work = tmp_path / f"srv{procs}"
        work.mkdir()
        with server(work, log_header="X-Request-Id") as (port, log):
            scenario = write_scenario(tmp_path, port, HEADER_FIELDS, name=f"h{procs}.toml")
            code, summary, err = run_json(scenario, tmp_path / f"out{procs}", "--procs", str(procs))
            assert code == 0, err
            assert summary["requests"]["failed"] == 0
            assert logged_header_values(log, 15) == expected


DATA_FIELDS = """
[runtime]
iterations = 5
vus = 3
prng_seed = 11

[[data]]
name = "users"
file = "users.csv"

[[data]]
name = "tokens"
file = "tokens.csv"
order = "random"

[[data]]
name = "seats"
file = "tokens.csv"
order = "per_vu"

[[requests]]
name = "item"
method = "GET"
path = "/u/{{users.id}}/{{iteration}}/{{vu}}"
headers = { "X-Request-Id" = "{{tokens.token}}-{{seats.token}}-{{iteration}}-{{vu}}" }
"""


@pytest.mark.parametrize("server", _third_party())
def test_data_file_values_reach_the_server_as_the_row_formulas_say_in_any_layout(
    tmp_path: Path, server: ServerFactory
) -> None:
    # per_iteration rows in the path ((iteration * 3 + vu) % 7: the 15 pairs wrap the 7
    # rows), random and per_vu rows of another file in a logged header: exactly the values
    # of docs/determinism.md, the same for any --procs.
    ids = [f"id-{r}.x_~{r * r}" for r in range(7)]  # unreserved: sent and logged as they are
    tokens = [f"tok{r}" for r in range(4)]
    (tmp_path / "users.csv").write_text("id,name\n" + "".join(f"{i},n\n" for i in ids))
    (tmp_path / "tokens.csv").write_text("token\r\n" + "".join(f"{t}\r\n" for t in tokens))
    pairs = [(vu, it) for vu in range(3) for it in range(5)]
    paths = Counter(("GET", f"/u/{ids[(it * 3 + vu) % 7]}/{it}/{vu}") for vu, it in pairs)
    headers = Counter(
        f"{tokens[draw(11, vu, it, STREAM_DATA, 1) % 4]}-{tokens[vu % 4]}-{it}-{vu}"
        for vu, it in pairs
    )
    assert len(paths) == len(headers) == 15
    assert len({draw(11, vu, it, STREAM_DATA, 1) % 4 for vu, it in pairs}) > 1
    for procs in (1, 2):
        work = tmp_path / f"srv{procs}"
        work.mkdir()
        with server(work, log_header="X-Request-Id") as (port, log):
            scenario = write_scenario(tmp_path, port, DATA_FIELDS, name=f"d{procs}.toml")
            code, summary, err = run_json(scenario, tmp_path / f"out{procs}", "--procs", str(procs))
            assert code == 0, err
            assert summary["requests"]["failed"] == 0
            assert logged_header_values(log, 15) == headers
            assert count_access_log(log) == paths


@pytest.fixture(scope="module")
def z6_port() -> Iterator[int]:
    with z6_server(procs=1) as port:
        yield port


def test_z6_serve_counts_and_outputs(tmp_path: Path, z6_port: int) -> None:
    scenario = write_scenario(tmp_path, z6_port, MIXED)
    out = tmp_path / "out"
    code, summary, err = run_json(scenario, out, "--procs", "2")
    assert code == 0, err
    assert summary["requests"]["total"] == 240
    assert summary["requests"]["ok"] == 240
    assert summary["requests"]["by_status"] == {"200": 240}
    assert summary["seed"] == 7
    assert summary["procs"] == 2
    for name in ("events.bin", "summary.json", "summary.txt", "timeseries.csv", "scenario.toml"):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["requests"] == summary["requests"]
    assert (out / "scenario.toml").read_text() == scenario.read_text()
    accounting = summary["accounting"]
    assert accounting["complete"] is True
    assert accounting["missing"] == 0


def test_progress_lines_rate_over_wall_time_and_end_with_the_totals(
    tmp_path: Path, z6_port: int
) -> None:
    """Off a terminal, one progress line per second on stderr. 20 VUs that think 0.9 s
    between requests make their requests in bursts, at most 2 bursts (40 requests) per line:
    no line may read more than 50/s (dividing by the span of a burst's request ends read
    thousands, the first line most). The last line comes after every event is in, says
    ``done``, and its totals are the summary's (the last per-second line undercounted by up
    to a third)."""
    scenario = write_scenario(
        tmp_path,
        z6_port,
        "[runtime]\nduration_seconds = 3.5\nvus = 20\n"
        '[[requests]]\nname = "r"\nmethod = "GET"\npath = "/"\n'
        "[think_time]\ntype = 'random'\nmin_ms = 900\nmax_ms = 900\n",
    )
    out = tmp_path / "out"
    proc = run_z6(["run", str(scenario), "--procs", "2", "--out", str(out), "--json"])
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("[")]
    assert len(lines) >= 3, proc.stderr
    *live, last = lines
    for line in live:
        assert "/3.5s]" in line, line
        rps = int(line.split(" rps=")[1].split()[0])
        assert rps <= 50, line
    assert " done " in last
    assert "rps=" not in last
    total = summary["requests"]["total"]
    assert f" reqs={total} " in last
    assert f" errors={summary['requests']['failed']}" in last
    assert 60 <= total <= 100  # bursts at 0, 0.9, 1.8 and 2.7 s


GOALS = """
[runtime]
iterations = 10
vus = 2

[[requests]]
name = "ok"
method = "GET"
path = "/"

[[requests]]
name = "boom"
method = "GET"
path = "/status/503"
weight = {boom_weight}

[assertions]
error_rate_max = 0.0
"""


def test_goal_pass_exit_0_and_fail_exit_1(tmp_path: Path, z6_port: int) -> None:
    good = write_scenario(tmp_path, z6_port, GOALS.format(boom_weight=0), name="good.toml")
    code, summary, err = run_json(good, tmp_path / "good")
    assert code == 0, err
    assert summary["passed"] is True
    [goal] = summary["assertions"]
    assert {k: goal[k] for k in ("name", "expected", "actual", "passed")} == {
        "name": "error_rate_max",
        "expected": 0.0,
        "actual": 0.0,
        "passed": True,
    }

    bad = write_scenario(tmp_path, z6_port, GOALS.format(boom_weight=1), name="bad.toml")
    code, summary, err = run_json(bad, tmp_path / "bad")
    assert code == 1, err
    assert summary["passed"] is False
    assert summary["errors"]["by_kind"].get("status", 0) == summary["requests"]["by_status"]["503"]
    assert summary["requests"]["by_status"]["503"] > 0


PER_REQUEST_GOALS = """
[runtime]
iterations = 20
vus = 2

[[requests]]
name = "ok"
method = "GET"
path = "/"

[[requests]]
name = "boom"
method = "GET"
path = "/status/503"

[assertions]
error_rate_max = 1.0

[assertions.by_name.ok]
error_rate_max = 0.0

[assertions.by_name.boom]
status_5xx_max_rate = {boom_5xx}
"""


@pytest.mark.parametrize(("boom_5xx", "code"), [(1.0, 0), (0.5, 1)])
def test_per_request_goals_decide_the_exit_code_and_analyze_agrees(
    tmp_path: Path, z6_port: int, boom_5xx: float, code: int
) -> None:
    scenario = write_scenario(tmp_path, z6_port, PER_REQUEST_GOALS.format(boom_5xx=boom_5xx))
    got, summary, err = run_json(scenario, tmp_path / "out")
    assert got == code, err
    by_name = summary["requests"]["by_name"]
    assert by_name["boom"]["by_status"] == {"503": by_name["boom"]["total"]}
    assert by_name["ok"]["by_status"] == {"200": by_name["ok"]["total"]}
    assert by_name["boom"]["total"] + by_name["ok"]["total"] == 40  # 20 iterations x 2 VUs
    goals = [(g["name"], g.get("request"), g["actual"], g["passed"]) for g in summary["assertions"]]
    assert goals == [
        ("error_rate_max", None, round(by_name["boom"]["total"] / 40, 6), True),
        ("by_name.ok.error_rate_max", "ok", 0.0, True),
        ("by_name.boom.status_5xx_max_rate", "boom", 1.0, code == 0),
    ]
    analyzed = analyze_logs([tmp_path / "out" / "events.bin"]).summary
    assert analyzed["assertions"] == summary["assertions"]
    assert analyzed["requests"]["by_name"] == by_name


BODY_CHECKS = """
[runtime]
iterations = 20
vus = 3

[[requests]]
name = "good"
method = "{method}"
path = "{path}"
body = '{{"status": "ok", "n": {{{{iteration}}}}}}'
expect_body_contains = "ok"
expect_body_not_contains = ["error", "nope"]

[[requests]]
name = "bad"
method = "{method}"
path = "{path}"
body = '{{"status": "ok"}}'
expect_body_not_contains = "ok"

[[requests]]
name = "missing"
method = "{method}"
path = "{path}"
body = '{{"status": "ok"}}'
expect_body_contains = ["ok", "nope"]

[assertions]
error_rate_max = {error_rate_max}
"""


@pytest.mark.parametrize("engine", ["h11", "httptools"])
@pytest.mark.parametrize("server", ["z6", "hypercorn"])
def test_body_checks_fail_requests_as_body_check_and_analyze_agrees(
    tmp_path: Path, engine: str, server: str
) -> None:
    # z6 serve echoes the body with Content-Length; the hypercorn app answers "ok\n" chunked.
    method, path = ("POST", "/echo") if server == "z6" else ("GET", "/")
    ctx = z6_server(procs=1) if server == "z6" else hypercorn_server(tmp_path)
    with ctx as started:
        port = started if isinstance(started, int) else started[0]
        text = BODY_CHECKS.format(method=method, path=path, error_rate_max=1.0)
        scenario = write_scenario(tmp_path, port, text)
        code, summary, err = run_json(scenario, tmp_path / "out", "--procs", "2", "--http", engine)
    assert code == 0, err  # about two thirds fail (a weighted pick), within the goal
    by_name = summary["requests"]["by_name"]
    assert sum(r["total"] for r in by_name.values()) == 60  # 20 iterations x 3 VUs
    assert by_name["good"]["failed"] == 0
    assert by_name["bad"]["ok"] == by_name["missing"]["ok"] == 0
    failed = by_name["bad"]["total"] + by_name["missing"]["total"]
    assert summary["errors"]["by_kind"] == {"body_check": failed}
    assert summary["requests"]["by_status"] == {"200": 60}
    analyzed = analyze_logs([tmp_path / "out" / "events.bin"]).summary
    assert analyzed["errors"] == summary["errors"]
    assert analyzed["requests"]["by_name"] == by_name


ABORT = """
[runtime]
duration_seconds = 60
vus = 2

[[requests]]
name = "ok"
method = "GET"
path = "/"
weight = 3

[[requests]]
name = "boom"
method = "GET"
path = "/status/503"

[assertions]
rps_min = 1e9
abort_on_fail = {abort}
abort_delay_seconds = 0.5

[assertions.by_name.boom]
error_rate_max = 0.0
"""


def test_abort_on_fail_stops_the_run_at_the_first_failed_goal(tmp_path: Path, z6_port: int) -> None:
    # A 60 s run whose 503s fail a goal: stopped at the first check (0.5 s in), exit 1, the
    # goal named on stderr; rps_min (a rate over part of a run) decided nothing on the way.
    scenario = write_scenario(tmp_path, z6_port, ABORT.format(abort="true"))
    code, summary, err = run_json(scenario, tmp_path / "out")
    assert code == 1, err
    assert summary["outcome"] == "goal_failed"
    assert summary["passed"] is False
    assert summary["duration_s"] < 30  # a stop after 0.5 s plus the graceful stop at most
    assert re.search(
        r"^z6: goal by_name\.boom\.error_rate_max failed \d+\.\d s into the run \(actual 1, "
        r"expected <= 0\); abort_on_fail stopped the run, and its results cover it up to the "
        r"stop$",
        err,
        re.M,
    ), err
    analyzed = analyze_logs([tmp_path / "out" / "events.bin"]).summary
    assert (analyzed["outcome"], analyzed["passed"]) == ("goal_failed", False)
    assert analyzed["assertions"] == summary["assertions"]
    verify = run_z6(["replay", str(tmp_path / "out" / "events.bin"), "--verify"])
    assert verify.returncode == 0, verify.stdout + verify.stderr


SLOW_ABORT = """
[runtime]
duration_seconds = 60
vus = 4
graceful_stop_seconds = 20

[[requests]]
name = "boom"
method = "GET"
path = "/status/500"

[[requests]]
name = "slow"
method = "GET"
path = "/delay/4000"

[sequence]
[[sequence.steps]]
request = "boom"
[[sequence.steps]]
request = "slow"

[assertions]
error_rate_max = 0.6
abort_on_fail = true
abort_delay_seconds = 0.5
"""


def test_a_signal_during_a_goal_s_stop_keeps_the_goal_s_verdict(
    tmp_path: Path, z6_port: int
) -> None:
    # The goal fails at 0.5 s (every request so far a 500); the graceful stop waits for the
    # 4 s requests in flight, and Ctrl-C then came: the run read "interrupted", passed, and
    # analyze exited 0. The goal stopped it first: its verdict stands.
    scenario = write_scenario(tmp_path, z6_port, SLOW_ABORT)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*z6_command(), "run", str(scenario), "--out", str(out), "--json", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    summary = json.loads(stdout)
    assert (summary["outcome"], summary["passed"]) == ("goal_failed", False)
    assert "abort_on_fail stopped the run" in stderr
    assert "interrupted" not in stderr
    analyzed = run_z6(["analyze", str(out / "events.bin")])
    assert analyzed.returncode == 1
    assert "result: FAILED" in analyzed.stdout


def test_base_url_aims_the_scenario_at_another_server(tmp_path: Path, z6_port: int) -> None:
    # k6 users pass the target from outside (-e BASE_URL=...); the file aims at port 9.
    scenario = write_scenario(tmp_path, 9, MIXED)
    code, summary, err = run_json(
        scenario, tmp_path / "out", "--base-url", f"http://127.0.0.1:{z6_port}/"
    )
    assert code == 0, err
    assert summary["requests"]["total"] == 6 * 40
    assert summary["requests"]["failed"] == 0
    assert summary["options"]["base_url"] == f"http://127.0.0.1:{z6_port}/"
    analyzed = analyze_logs([tmp_path / "out" / "events.bin"]).summary
    assert analyzed["requests"] == summary["requests"]
    proc = run_z6(["run", str(scenario), "--base-url", "http://127.0.0.1:1/x", "-q"])
    assert (proc.returncode, proc.stderr) == (
        2,
        "z6: --base-url must be scheme://host[:port] only, got 'http://127.0.0.1:1/x'; put "
        "paths and query strings in each request's path\n",
    )


DELAY = """
[runtime]
duration_seconds = 3
vus = 4

[[requests]]
name = "slow"
method = "GET"
path = "/delay/50"
"""


def test_fixed_delay_latency_and_rps(tmp_path: Path, z6_port: int) -> None:
    scenario = write_scenario(tmp_path, z6_port, DELAY)
    code, summary, err = run_json(scenario, tmp_path / "out", "--procs", "1")
    assert code == 0, err
    p50 = summary["latency_ms"]["p50"]
    # Latency can only be at or above the server's delay; a few percent above it on loopback.
    assert 50.0 <= p50 <= 50.0 * 1.10, p50
    # Closed model: rps ~ VUs / latency.
    expected_rps = 4 / (summary["latency_ms"]["mean"] / 1000)
    assert summary["rps"] == pytest.approx(expected_rps, rel=0.15)


def test_connect_refused_is_recorded_not_crashed(tmp_path: Path) -> None:
    from conftest import free_port

    scenario = write_scenario(
        tmp_path,
        free_port(),
        """
        [runtime]
        iterations = 3
        vus = 2
        [[requests]]
        name = "nothing"
        method = "GET"
        path = "/"
        """,
    )
    out = tmp_path / "out"
    code, summary, err = run_json(scenario, out, "--procs", "1", "--vus", "2", "--http", "h11")
    assert code == 0, err  # no goals: a run full of errors is not judged
    assert summary["requests"]["total"] == 6
    # ...but it says so, with the likely cause, and does not read "PASSED".
    assert "z6: warning: 6 of 6 requests failed (connect_refused: 6); nothing accepted " in err
    assert "result: no goals" in (out / "summary.txt").read_text()
    # What ran beyond the saved scenario.toml: the overrides and the engine.
    assert summary["options"] == {"engine": "h11", "vus": "2"}
    assert "  options engine h11, vus 2\n" in (out / "summary.txt").read_text()
    assert summary["errors"]["by_kind"] == {"connect_refused": 6}
    # Six attempts, no connection: none is "new", and no connect time is averaged.
    assert summary["connections"] == {
        "new": 0,
        "failed": 6,
        "connect_ms": {"mean": None, "max": None},
    }
    assert "Traceback" not in err


def test_the_quickstart_ships_in_the_package() -> None:
    # ``z6 demo`` from an installed wheel (no checkout) finds it beside z6.cli; the file is
    # a link to scenarios/quickstart.toml, so the two cannot drift apart.
    import tomllib

    import z6.cli

    packaged = Path(z6.cli.__file__).parent / "quickstart.toml"
    checkout = Path(__file__).resolve().parent.parent / "scenarios" / "quickstart.toml"
    assert packaged.resolve() == checkout.resolve()  # a link, not a copy that could drift
    data = tomllib.loads((checkout.parent.parent / "pyproject.toml").read_text())
    assert "quickstart.toml" in data["tool"]["setuptools"]["package-data"]["z6.cli"]


def test_demo_runs_on_its_own(tmp_path: Path) -> None:
    proc = run_z6(["demo", "--quiet", "--out", str(tmp_path / "demo")], timeout=180)
    assert proc.returncode in (0, 1), proc.stderr
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["requests"]["total"] > 0
    assert summary["errors"]["by_kind"].get("connect_refused", 0) == 0
    assert "Traceback" not in proc.stderr


def test_demo_ctrl_c_stops_the_run_not_its_server(tmp_path: Path) -> None:
    # A terminal's Ctrl-C reaches the whole foreground process group: the built-in server must
    # not die under the VUs still finishing their requests.
    import os
    import signal
    import subprocess
    import time

    from conftest import z6_command

    out = tmp_path / "demo"
    proc = subprocess.Popen(
        [*z6_command(), "demo", "--quiet", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / "events.bin").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)  # the run is under way
        os.killpg(proc.pid, signal.SIGINT)
        _stdout, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["outcome"] == "interrupted"
    assert summary["requests"]["total"] > 0
    kinds = summary["errors"]["by_kind"]
    assert "connect_refused" not in kinds, kinds
    assert "reset" not in kinds, kinds


TIMEOUT_SEQUENCE = """
[runtime]
iterations = 3
vus = 2

[[requests]]
name = "before"
method = "GET"
path = "/"

[[requests]]
name = "slow"
method = "GET"
path = "/delay/2000"
timeout_ms = 150

[[requests]]
name = "after"
method = "GET"
path = "/bytes/5"

[sequence]
[[sequence.steps]]
request = "before"
[[sequence.steps]]
request = "slow"
[[sequence.steps]]
request = "after"
"""


def test_timeout_mid_sequence_goes_on_with_the_next_step(tmp_path: Path, z6_port: int) -> None:
    """A timed-out step is recorded as 'timeout' and the VU carries on with the next step."""
    scenario = write_scenario(tmp_path, z6_port, TIMEOUT_SEQUENCE)
    out = tmp_path / "out"
    code, summary, err = run_json(scenario, out, "--procs", "2")
    assert code == 0, err
    by_name = summary["requests"]["by_name"]
    assert {n: (v["total"], v["ok"]) for n, v in by_name.items()} == {
        "before": (6, 6),
        "slow": (6, 0),
        "after": (6, 6),
    }
    assert summary["errors"]["by_kind"] == {"timeout": 6}
    # The timeout fired close to its 150 ms deadline, far from the server's 2 s.
    assert 150 <= by_name["slow"]["latency_ms"]["max"] < 1000
    verify = run_z6(["replay", str(out / "events.bin"), "--verify"])
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.parametrize("how", ["event_log_path", "out_dir"])
def test_a_run_never_overwrites_its_own_scenario(tmp_path: Path, how: str) -> None:
    body = "[runtime]\nduration_seconds = 1\nvus = 1\n"
    if how == "event_log_path":
        path = tmp_path / "s.toml"
        body = body.replace("vus = 1\n", f"vus = 1\nevent_log_path = '{path}'\n")
        scenario = write_scenario(
            tmp_path, 9, body + '[[requests]]\nname = "r"\nmethod = "GET"\npath = "/"\n'
        )
        args = ["run", str(scenario), "--procs", "1", "--quiet"]
    else:
        scenario = write_scenario(
            tmp_path,
            9,
            body + '[[requests]]\nname = "r"\nmethod = "GET"\npath = "/"\n',
            name="scenario.toml",
        )
        args = ["run", str(scenario), "--procs", "1", "--quiet", "--out", str(tmp_path)]
    before = scenario.read_bytes()
    proc = run_z6(args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "is the scenario file itself" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert scenario.read_bytes() == before


def test_a_run_into_a_used_out_dir_removes_the_old_summary_first(tmp_path: Path) -> None:
    """While a run goes on (or after it was killed), --out never shows a summary.json of an
    earlier run next to this run's events.bin, nor the temporary files of a run killed while
    it wrote its outputs."""
    out = tmp_path / "out"
    out.mkdir()
    names = ("summary.json", "summary.txt", "timeseries.csv", "scenario.toml")
    for name in names:
        (out / name).write_text("an earlier run's\n")
        (out / f".{name}.z6-tmp").write_text("an earlier run's, half writ")
    scenario = write_scenario(
        tmp_path,
        9,
        "[runtime]\nduration_seconds = 30\nvus = 1\n"
        '[[requests]]\nname = "r"\nmethod = "GET"\npath = "/"\n'
        "[think_time]\ntype = 'random'\nmin_ms = 50\nmax_ms = 50\n",
    )
    proc = subprocess.Popen(
        [*z6_command(), "run", str(scenario), "--procs", "1", "--quiet", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not (out / "events.bin").exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the run never created events.bin"
            time.sleep(0.02)
        assert sorted(p.name for p in out.iterdir()) == ["events.bin"]
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert json.loads((out / "summary.json").read_text())["outcome"] == "interrupted"


def test_outputs_are_whole_or_absent_when_the_disk_fills(tmp_path: Path) -> None:
    """A write that fails midway (a full disk; here the file size limit) leaves no truncated
    summary.json and no temporary file, and the error says where the numbers still are."""
    log = synth_log(tmp_path / "events.bin")
    result = analyze_logs([log])
    out = tmp_path / "out"
    out.mkdir()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200, hard))  # Python ignores SIGXFSZ: EFBIG
    try:
        with pytest.raises(RunError) as info:
            _write_outputs(out, scenario_of(WEIGHTED), result.summary, result.rows(), log_path=log)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert str(info.value) == (
        f"cannot write {out}/summary.json: File too large; the run's events are in {log} "
        f"('z6 analyze {log}' recomputes the summary)"
    )
    assert list(out.iterdir()) == []
    _write_outputs(out, scenario_of(WEIGHTED), result.summary, result.rows(), log_path=log)
    assert json.loads((out / "summary.json").read_text()) == result.summary
    assert sorted(p.name for p in out.iterdir()) == [
        "scenario.toml",
        "summary.json",
        "summary.txt",
        "timeseries.csv",
    ]
