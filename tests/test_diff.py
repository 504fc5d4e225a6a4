"""``z6 diff A B``: two runs (directories, summary files or logs) compared with deltas."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import run_z6
from test_replay import WEIGHTED, synth_log

from z6.cli.analyze_cmd import analyze_logs, load_run_summary
from z6.cli.options import parse_max_regression
from z6.cli.report import diff_dict, gate_result, render_diff
from z6.engine.errors import ConfigError


def test_log_directory_and_summary_file_give_the_same_summary(tmp_path: Path) -> None:
    log = synth_log(tmp_path / "events.bin")
    summary = analyze_logs([log]).summary
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text(json.dumps(summary))
    only_log = tmp_path / "only_log"
    only_log.mkdir()
    shutil.copy(log, only_log / "events.bin")
    assert load_run_summary(log) == summary
    assert load_run_summary(run_dir) == summary
    assert load_run_summary(run_dir / "summary.json") == summary
    assert load_run_summary(only_log) == summary


def test_bad_inputs_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_run_summary(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"neither summary\.json nor events\.bin"):
        load_run_summary(tmp_path / "empty")
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="not a z6 summary"):
        load_run_summary(tmp_path / "x.json")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ConfigError, match="neither an event log nor a JSON summary"):
        load_run_summary(tmp_path / "x.txt")
    log = synth_log(tmp_path / "events.bin")
    proc = run_z6(["diff", str(log), str(tmp_path / "missing")])
    assert proc.returncode == 2
    assert proc.stderr == f"z6: {tmp_path / 'missing'}: no such file or directory\n"
    proc = run_z6(["diff", str(log), str(log), "--format", "csv"])
    assert proc.returncode == 2


def test_diff_of_identical_logs_is_unchanged(tmp_path: Path) -> None:
    log = synth_log(tmp_path / "events.bin")
    proc = run_z6(["diff", str(log), str(log), "--format", "json"])
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["metrics"]["requests.total"] == {
        "a": 20,
        "b": 20,
        "delta": 0,
        "relative": 0.0,
        "change": "n/a",
    }
    assert d["metrics"]["latency_ms.p99"]["change"] == "unchanged"
    other = synth_log(tmp_path / "other.bin", WEIGHTED.replace("iterations = 5", "iterations = 6"))
    proc = run_z6(["diff", str(log), str(other)])
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if "requests.total" in line)
    assert row.split()[1:5] == ["20", "24", "+4", "+20.0%"]


SCENARIO = """
[metadata]
name = "diff-e2e"
[runtime]
iterations = 20
vus = 3
prng_seed = 5
[target]
base_url = "http://127.0.0.1:{port}"
[[requests]]
name = "r"
method = "GET"
path = "{path}"
"""


@pytest.mark.slow
def test_diff_of_two_runs_shows_the_p99_delta(tmp_path: Path) -> None:
    from servers import z6_server

    outs = []
    with z6_server() as port:
        for name, path in (("fast", "/"), ("slow", "/delay/20")):
            scenario = tmp_path / f"{name}.toml"
            scenario.write_text(textwrap.dedent(SCENARIO).format(port=port, path=path))
            out = tmp_path / name
            proc = run_z6(["run", str(scenario), "--out", str(out), "--quiet", "-p", "1"])
            assert proc.returncode == 0, proc.stderr
            outs.append(out)
    a = json.loads((outs[0] / "summary.json").read_text())
    b = json.loads((outs[1] / "summary.json").read_text())
    proc = run_z6(["diff", str(outs[0]), str(outs[1]), "--format", "json"])
    assert proc.returncode == 0, proc.stderr
    p99 = json.loads(proc.stdout)["metrics"]["latency_ms.p99"]
    assert p99["a"] == a["latency_ms"]["p99"]
    assert p99["b"] == b["latency_ms"]["p99"]
    assert p99["delta"] == pytest.approx(b["latency_ms"]["p99"] - a["latency_ms"]["p99"])
    assert p99["delta"] > 15  # /delay/20 answers after 20 ms
    assert p99["change"] == "regression"
    # The text form (directory A against log B) shows the same row.
    proc = run_z6(["diff", str(outs[0]), str(outs[1] / "events.bin")])
    assert proc.returncode == 0, proc.stderr
    row = next(
        line for line in proc.stdout.splitlines() if line.strip().startswith("latency_ms.p99")
    )
    assert "WORSE" in row
    assert row.split()[3].startswith("+")

    # As a gate: the slow run fails a 50 % bound (exit 1), passes a generous one; a baseline
    # against itself passes even a 0 % bound.
    proc = run_z6(["diff", str(outs[0]), str(outs[1]), "--max-regression", "50"])
    assert proc.returncode == 1, proc.stderr
    verdict = proc.stdout.splitlines()[-1]
    assert verdict.startswith("  gate: FAILED (regressed over 50%: latency_ms.p50 ")
    proc = run_z6(["diff", str(outs[0]), str(outs[1]), "--max-regression", "1000000"])
    assert proc.returncode == 0, proc.stdout
    proc = run_z6(["diff", str(outs[0]), str(outs[0]), "--max-regression", "0%"])
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.splitlines()[-1].startswith("  gate: PASSED (no regression over 0% in ")


def _summary(
    *, total: int = 1000, failed: int = 0, rps: float | None = 1000.0, **latency: Any
) -> dict[str, Any]:
    """A summary with the keys the diff reads; ``latency`` gives ``latency_ms`` (p99=...)."""
    return {
        "requests": {"total": total, "ok": total - failed, "failed": failed},
        "rps": rps,
        "duration_s": 1.0,
        "latency_ms": latency,
        "errors": {"by_kind": {"timeout": failed} if failed else {}},
    }


def test_the_gate_fails_on_regressions_over_the_bound_only() -> None:
    a = _summary(p50=10.0, p95=10.0, p99=10.0)
    b = _summary(failed=1, rps=880.0, p50=10.9, p95=5.0, p99=11.5)  # +9 %, better, +15 %
    verdict = gate_result(a, b, 10.0)
    assert verdict["metrics"] == [
        "latency_ms.p50",
        "latency_ms.p95",
        "latency_ms.p99",
        "error_rate",
        "rps",
    ]
    assert verdict["failed"] == [
        {"metric": "latency_ms.p99", "a": 10.0, "b": 11.5, "relative": 0.15},
        # errors from none: no relative change is small
        {"metric": "error_rate", "a": 0.0, "b": 0.001, "relative": None},
        {"metric": "rps", "a": 1000.0, "b": 880.0, "relative": -0.12},
    ]
    assert gate_result(a, b, 20.0, ["latency_ms.p50", "latency_ms.p99", "rps"])["passed"]
    assert gate_result(a, b, 5.0, ["latency_ms.p95"])["passed"]  # improvements never fail
    # Error kinds a run does not list are 0 there, and can be gated.
    assert not gate_result(a, b, 1000.0, ["errors.timeout"])["passed"]


def test_a_regression_equal_to_the_bound_passes() -> None:
    # (107 - 100) / 100 * 100 is 7.000000000000001 in floating point.
    assert gate_result(_summary(p99=100.0), _summary(p99=107.0), 7.0)["passed"]
    assert not gate_result(_summary(p99=100.0), _summary(p99=107.01), 7.0)["passed"]


def test_the_gate_fails_a_latency_that_b_no_longer_has() -> None:
    # Every request of B failed: no latency, and that must not read as "no regression".
    verdict = gate_result(_summary(p99=10.0), _summary(p99=None), 1000.0, ["latency_ms.p99"])
    assert verdict["failed"] == [
        {"metric": "latency_ms.p99", "a": 10.0, "b": None, "relative": None}
    ]


def test_the_default_gate_skips_what_one_run_does_not_report() -> None:
    # B ran with --percentiles 50,99 (or closed against open model): p95 is not compared.
    a = _summary(p50=10.0, p95=20.0, p99=30.0)
    b = _summary(p50=10.0, p99=30.0)
    verdict = gate_result(a, b, 0.0)
    assert verdict["passed"] is True
    assert "latency_ms.p95" not in verdict["metrics"]
    with pytest.raises(ConfigError, match=r"--gate: latency_ms\.p95 is only reported by A"):
        gate_result(a, b, 0.0, ["latency_ms.p95"])


@pytest.mark.parametrize(
    ("label", "fragment"),
    [
        ("latency_ms.p42", r"--gate: no metric 'latency_ms\.p42' in these runs; they have: "),
        ("requests.total", r"--gate: requests\.total is neither better nor worse"),
        ("duration_s", r"--gate: duration_s is neither better nor worse"),
    ],
)
def test_a_gate_on_a_metric_that_cannot_fail_is_a_usage_error(label: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        gate_result(_summary(p99=1.0), _summary(p99=1.0), 10.0, [label])


def test_a_gated_value_that_is_no_number_is_a_malformed_summary(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"latency_ms\.p99 is 'slow', not a number"):
        gate_result(_summary(p99=1.0), _summary(p99="slow"), 10.0)
    (tmp_path / "a.json").write_text(json.dumps(_summary(p99=1.0)))
    (tmp_path / "b.json").write_text(json.dumps(_summary(p99="slow")))
    proc = run_z6(
        ["diff", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--max-regression", "5"]
    )
    assert proc.returncode == 2
    assert "not a z6 summary (malformed fields: latency_ms.p99 is 'slow'" in proc.stderr


@pytest.mark.parametrize(
    ("text", "value"), [("10", 10.0), ("10%", 10.0), (" 2.5 % ", 2.5), ("0", 0.0)]
)
def test_max_regression_takes_a_percentage(text: str, value: float) -> None:
    assert parse_max_regression(text) == value


@pytest.mark.parametrize(
    "text", ["", "-5", "x", "nan", "inf", "1e3", "١٠", "1_0", "1.2.3", "%", ".", "1000001"]
)
def test_max_regression_refuses_anything_else(text: str) -> None:
    with pytest.raises(
        ConfigError,
        match=r"--max-regression: .* is not a percentage from 0 to 1e\+06 \(e\.g\. 10 or 10%\)",
    ):
        parse_max_regression(text)


def test_gate_options_on_the_command_line(tmp_path: Path) -> None:
    log = synth_log(tmp_path / "events.bin")
    proc = run_z6(["diff", str(log), str(log), "--gate", "rps"])
    assert (proc.returncode, proc.stderr) == (2, "z6: --gate needs --max-regression PCT\n")
    proc = run_z6(["diff", str(log), str(log), "--max-regression", "5", "--format", "json"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["gate"]["passed"] is True


def _with_names(s: dict[str, Any], **names: tuple[int, int, float]) -> dict[str, Any]:
    """``s`` with ``requests.by_name`` entries NAME=(total, failed, p99)."""
    s["requests"]["by_name"] = {
        name: {
            "total": t,
            "ok": t - f,
            "failed": f,
            "rps": float(t),
            "latency_ms": {"min": 1.0, "p99": p99},
        }
        for name, (t, f, p99) in names.items()
    }
    return s


def test_each_request_has_its_own_rows_and_can_be_gated() -> None:
    a = _with_names(_summary(p99=10.0), login=(100, 0, 50.0), home=(900, 0, 5.0))
    b = _with_names(_summary(p99=10.0), login=(100, 2, 80.0), home=(900, 0, 5.0))
    metrics = diff_dict(a, b)["metrics"]
    assert metrics["by_name.login.latency_ms.p99"]["change"] == "regression"
    assert metrics["by_name.login.error_rate"] == {
        "a": 0.0,
        "b": 0.02,
        "delta": 0.02,
        "relative": None,
        "change": "regression",
    }
    assert "by_name.login.latency_ms.min" not in metrics
    # The whole run did not move: the default gate passes, a gate on login fails.
    assert gate_result(a, b, 10.0)["passed"]
    verdict = gate_result(a, b, 10.0, ["by_name.login.latency_ms.p99", "by_name.home.rps"])
    assert [f["metric"] for f in verdict["failed"]] == ["by_name.login.latency_ms.p99"]
    # The text shows a request's rows, and counts them, only when asked.
    plain = render_diff(a, b)
    assert "by_name." not in plain
    assert "0 improved, 0 regressed" in plain
    detailed = render_diff(a, b, by_name=True)
    row = next(ln for ln in detailed.splitlines() if "by_name.login.error_rate" in ln)
    assert row.split()[1:3] == ["0%", "2%"]
    assert "0 improved, 2 regressed" in detailed


@pytest.mark.parametrize("outcome", ["goal_failed", "interrupted", "worker_failed"])
def test_a_run_that_stopped_early_fails_the_gate_and_is_noted(outcome: str) -> None:
    # An audit's CI gate passed a run that abort_on_fail had stopped at 3 s of 8: its partial
    # numbers compared well, and nothing said it was partial.
    a = _summary(p99=10.0) | {"outcome": "complete", "passed": True}
    b = _summary(p99=10.0) | {"outcome": outcome, "passed": False}
    verdict = gate_result(a, b, 50.0)
    assert verdict["failed"] == [
        {
            "metric": "outcome",
            "a": "complete",
            "b": outcome,
            "relative": None,
            "reason": f"outcome {outcome}",
        }
    ]
    text = render_diff(a, b, verdict)
    assert f"note: B did not run to its end (outcome {outcome}): its numbers cover only" in text
    assert text.endswith(f"  gate: FAILED (B did not run to its end (outcome {outcome}))")
    assert diff_dict(a, b)["b"]["outcome"] == outcome
    # A partial baseline is noted, not failed; a summary without these keys is complete.
    assert gate_result(b, a, 50.0)["passed"]
    assert "note: A did not run to its end" in render_diff(b, a)
    assert gate_result(_summary(p99=1.0), _summary(p99=1.0), 0.0)["passed"]


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"damaged_logs": ["x.bin"]}, "its event log is damaged"),
        ({"accounting": {"complete": False}}, "outcome unknown: no footer"),
    ],
)
def test_a_log_cut_short_fails_the_gate_too(extra: dict[str, Any], reason: str) -> None:
    # A log whose z6 was killed has no footer, hence no outcome: it passed the gate with 283
    # of 468 requests.
    verdict = gate_result(_summary(p99=1.0), _summary(p99=1.0) | extra, 1000.0)
    assert [f["reason"] for f in verdict["failed"]] == [reason]


def test_a_summary_of_z6_before_per_request_rates_has_no_rps_row() -> None:
    old = _with_names(_summary(p99=1.0), login=(10, 0, 5.0))
    del old["requests"]["by_name"]["login"]["rps"]
    new = _with_names(_summary(p99=1.0), login=(10, 0, 5.0))
    assert "by_name.login.rps" not in diff_dict(old, old)["metrics"]
    with pytest.raises(ConfigError, match=r"by_name\.login\.rps is only reported by B"):
        gate_result(old, new, 5.0, ["by_name.login.rps"])
