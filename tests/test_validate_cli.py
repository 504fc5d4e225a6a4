"""``z6 validate`` end to end through the real CLI (subprocess)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SCENARIOS, one_line_exit_2, run_z6

from z6.cli.validate_cmd import run_validate
from z6.engine.errors import ScenarioError

GOOD = """\
[runtime]
duration_seconds = 10
vus = 5

[target]
base_url = "http://127.0.0.1:8080"

[[requests]]
name = "a"
method = "GET"
path = "/"
"""


def test_validate_quickstart_exit_0_and_describes() -> None:
    proc = run_z6(["validate", str(SCENARIOS / "quickstart.toml")])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = proc.stdout
    assert "Scenario: quickstart" in out
    for name in ("index", "bytes_1k", "echo", "delay_10ms"):
        assert name in out
    assert "constant, 10 VUs" in out
    assert "p99 latency <= 500 ms" in out
    assert "OK: the scenario is valid." in out


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        (GOOD.replace("vus = 5", "vsu = 5"), "runtime.vsu", 3),
        (GOOD.replace('"GET"', '"FETCH"'), "requests[0].method", 10),
        (GOOD + "[target2]\nx = 1\n", "target2", 12),
        (
            GOOD.replace('"http://127.0.0.1:8080"', '"http://x"\nhttp_version = "http2"'),
            "target.http_version",
            7,
        ),
        (GOOD.replace("vus = 5", "vus = 5 5"), None, 3),
        (GOOD + 'headers = { Host = "h{{vu}}" }\n', "requests[0].headers.Host", 12),
    ],
)
def test_validate_bad_file_exit_2_one_line(
    tmp_path: Path, text: str, key: str | None, line: int
) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    proc = run_z6(["validate", str(p)])
    assert proc.returncode == 2
    assert proc.stdout == ""
    err = proc.stderr
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"z6: {p}:{line}: ")
    if key is not None:
        assert f": {key}: " in lines[0]


def test_validate_http2_says_not_supported_yet(tmp_path: Path) -> None:
    p = tmp_path / "h2.toml"
    p.write_text(GOOD.replace('"http://127.0.0.1:8080"', '"http://x"\nhttp_version = "http2"'))
    proc = run_z6(["validate", str(p)])
    assert proc.returncode == 2
    assert "not supported yet" in proc.stderr


def test_validate_missing_file_exit_2(tmp_path: Path) -> None:
    proc = run_z6(["validate", str(tmp_path / "missing.toml")])
    assert proc.returncode == 2
    assert proc.stderr.startswith("z6: ")
    assert "file not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_validate_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "good.toml"
    p.write_text(GOOD)
    assert run_validate(p) == 0
    out = capsys.readouterr().out
    assert "Scenario: good.toml" in out
    assert "a  GET" in out
    p.write_text(GOOD.replace("vus = 5", "vus = 0"))
    with pytest.raises(ScenarioError, match=r"runtime\.vus"):
        run_validate(p)


def test_validate_deeply_nested_exit_2_one_line(tmp_path: Path) -> None:
    p = tmp_path / "deep.toml"
    p.write_text("x = " + "[" * 5000 + "\n")
    assert "nested too deeply" in one_line_exit_2(run_z6(["validate", str(p)]))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--duration", "inf"], "--duration"),
        (["--duration", "nan"], "--duration"),
        (["--duration", "1e18"], "--duration"),
        (["--duration", "30x"], "--duration: expected seconds (30, 2.5) or a duration with"),
        (["--duration", "400d"], "--duration: expected seconds"),
        (["--vus", "2000000"], "--vus"),
        (["--procs", "99999999999999999999"], "--procs"),
        (["--procs", "1025"], "--procs"),
        (["--shard", "0/99999999999999999999"], "--shard"),
        (["--seed", "-1"], "--seed"),
        (["--seed", str(10**24)], "--seed"),
    ],
)
def test_run_rejects_out_of_range_overrides(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run_z6(
        ["run", str(SCENARIOS / "quickstart.toml"), "-q", "--out", str(tmp_path / "o"), *args],
        timeout=60,
    )
    assert one_line_exit_2(proc).startswith(f"z6: {message}")
