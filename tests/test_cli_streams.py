"""The CLI's edges that are not the scenario: standard streams that are closed, full or of
another encoding, option values that only look valid, inputs a run's outputs would overwrite,
and files that are not summaries (each through the real CLI, as a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SCENARIOS, one_line_exit_2, run_z6, z6_command
from servers import z6_server

from z6.cli.options import parse_percentiles, parse_shard
from z6.cli.run_cmd import _lock_dir, _prepare_out_dir
from z6.engine.errors import ConfigError


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    """One ``z6 serve`` for the module."""
    with z6_server(procs=1) as p:
        yield p


def scenario(tmp: Path, port: int, *, name: str = "streams", extra: str = "") -> Path:
    """A 1-VU, 3-iteration scenario on ``z6 serve``'s ``GET /``."""
    path = tmp / "s.toml"
    path.write_text(
        f"""
[metadata]
name = "{name}"
[runtime]
iterations = 3
vus = 1
[target]
base_url = "http://127.0.0.1:{port}"
[[requests]]
name = "root"
method = "GET"
path = "/"
{extra}
""",
        encoding="utf-8",
    )
    return path


def z6_with(args: list[str], **popen: object) -> tuple[int, str]:
    """Run z6 with its streams set by ``popen`` (``stdout=``, ``stderr=``); return the exit
    code and what it wrote on stderr when stderr was captured."""
    proc = subprocess.run(
        [*z6_command(), *args],
        timeout=120,
        check=False,
        text=True,
        **popen,  # type: ignore[call-overload]
    )
    return proc.returncode, proc.stderr or ""


@pytest.mark.parametrize(
    "args", [["version"], ["--help"], ["validate", str(SCENARIOS / "quickstart.toml")]]
)
def test_a_full_stdout_is_exit_3_with_one_line(args: list[str]) -> None:
    with open("/dev/full", "w") as full:
        code, err = z6_with(args, stdout=full, stderr=subprocess.PIPE)
    assert code == 3
    assert err == "z6: cannot write the output: No space left on device\n"


def test_a_run_with_stderr_closed_still_runs(tmp_path: Path, port: int) -> None:
    """Closed stderr: Python's ``sys.stderr`` is None (the progress display failed, exit 4),
    and the event log could have taken descriptor 2."""
    out = tmp_path / "o"
    code, _ = z6_with(
        ["run", str(scenario(tmp_path, port)), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=(),
        preexec_fn=lambda: os.close(2),
    )
    assert code == 0
    assert json.loads((out / "summary.json").read_text())["requests"]["total"] == 3


def test_a_run_with_stdout_closed_writes_its_files_without_tracebacks(
    tmp_path: Path, port: int
) -> None:
    out = tmp_path / "o"
    code, err = z6_with(
        ["run", str(scenario(tmp_path, port)), "--out", str(out), "--quiet"],
        stderr=subprocess.PIPE,
        preexec_fn=lambda: os.close(1),
    )
    assert (code, err) == (0, "")  # the workers printed a traceback each
    assert json.loads((out / "summary.json").read_text())["requests"]["total"] == 3


def test_a_unicode_scenario_under_the_c_locale(tmp_path: Path, port: int) -> None:
    """The outputs are UTF-8 whatever the locale (summary.txt was left as an empty temporary
    file, exit 4), and the report escapes what the terminal cannot show."""
    out = tmp_path / "o"
    proc = run_z6(
        ["run", str(scenario(tmp_path, port, name="tést☃")), "--out", str(out), "-q"],
        env={"LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""},
    )
    assert proc.returncode == 0, proc.stderr
    assert "t\\xe9st\\u2603" in proc.stdout
    assert "scenario: tést☃" in (out / "summary.txt").read_text(encoding="utf-8")
    assert sorted(p.name for p in out.iterdir()) == [
        "events.bin",
        "scenario.toml",
        "summary.json",
        "summary.txt",
        "timeseries.csv",
    ]


def test_an_empty_out_is_refused_not_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text("mine")
    proc = run_z6(["run", str(SCENARIOS / "quickstart.toml"), "--out", ""], cwd=tmp_path)
    assert "--out: empty directory name" in one_line_exit_2(proc)
    assert (tmp_path / "summary.json").read_text() == "mine"


@pytest.mark.parametrize("where", ["event_log_path", "out"])
def test_a_run_never_overwrites_a_body_file(tmp_path: Path, where: str) -> None:
    """The outputs may not replace any input: a body_file named as the event log, or lying in
    ``--out`` under an output's name, was overwritten (exit 0)."""
    body = tmp_path / ("payload.bin" if where == "event_log_path" else "o/summary.json")
    body.parent.mkdir(exist_ok=True)
    body.write_bytes(b"precious")
    log_line = f'event_log_path = "{body}"' if where == "event_log_path" else ""
    path = tmp_path / "s.toml"
    path.write_text(
        f"""
[runtime]
iterations = 1
vus = 1
{log_line}
[target]
base_url = "http://127.0.0.1:9"
[[requests]]
name = "up"
method = "PUT"
path = "/"
body_file = "{body}"
"""
    )
    args = ["run", str(path), "-q"]
    if where == "out":
        args += ["--out", str(body.parent)]
    line = one_line_exit_2(run_z6(args, cwd=tmp_path))
    assert "is the body_file of request 'up': z6 run would overwrite it" in line
    assert body.read_bytes() == b"precious"


def test_an_oversized_event_log_limit_is_a_scenario_error(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        (SCENARIOS / "quickstart.toml").read_text() + "\n[limits]\nmax_event_log_size_mb = 1e308\n"
    )
    line = one_line_exit_2(run_z6(["validate", str(path)]))
    assert "limits.max_event_log_size_mb: must be <= 1073741824" in line


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "larger than 64 MiB"),
        (b"[" * 200_000, "neither an event log nor a JSON summary"),
        (b'{"requests": {"total": NaN}}', "NaN is not a number a z6 summary holds"),
        (b'{"requests": {"total": ' + b"9" * 5000 + b"}}", "neither an event log nor"),
    ],
    ids=["dev-zero", "deep", "nan", "huge-int"],
)
def test_diff_of_files_that_are_no_summary(tmp_path: Path, content: bytes | None, why: str) -> None:
    good = tmp_path / "a.json"
    good.write_text(json.dumps({"requests": {"total": 1, "ok": 1, "failed": 0}}))
    if content is None:
        other = "/dev/zero"  # read whole, it took 24 GB before the kernel killed z6
    else:
        (tmp_path / "b.json").write_bytes(content)
        other = str(tmp_path / "b.json")
    assert why in one_line_exit_2(run_z6(["diff", str(good), other]))


def test_percentiles_that_no_key_can_name_are_refused() -> None:
    assert parse_percentiles("50,50,99.9") == (50.0, 99.9)
    assert parse_percentiles("0.0001,99.9999") == (0.0001, 99.9999)
    for bad in ("99.99999999999", "1e-300", "0.00001"):
        with pytest.raises(ConfigError, match="cannot be named in the summary"):
            parse_percentiles(bad)


def test_a_shard_in_other_digits_is_refused() -> None:
    assert parse_shard(" 1 / 2 ") == (1, 2)
    with pytest.raises(ConfigError, match="expected I/N"):
        parse_shard("١/٢")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        # click's "(Possible options: --out)" for --foo is no help: only near-misses are
        # offered.
        (["run", "--foo", "x"], "z6: No such option: --foo (see"),
        (["run", "--verbose", "x"], "z6: No such option: --verbose (see"),
        (["run", "--proc", "1", "x"], "z6: No such option: --proc; did you mean --procs? (see"),
        (["run", "--output", "o", "x"], "z6: No such option: --output; did you mean --out? (see"),
        (["run", "--dur", "1", "x"], "z6: No such option: --dur; did you mean --duration? (see"),
        (["analyze", "--fromat", "json"], "z6: No such option: --fromat; did you mean --format?"),
        (["run"], "z6: Missing argument 'scenario'."),
        (["run", "s.toml", "--procs", "abc"], "z6: Invalid value for '--procs'"),
        (["frob"], "z6: No such command 'frob'."),
    ],
)
def test_usage_errors_are_one_line(args: list[str], line: str) -> None:
    """click's usage block (Usage, Try, blank, Error: 4 lines) is one ``z6:`` line, like every
    other error, with where to look."""
    err = one_line_exit_2(run_z6(args))
    assert err.startswith(line)
    assert err.rstrip().endswith("--help')")


def test_a_full_stderr_keeps_the_exit_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("x =\n")
    with open("/dev/full", "w") as full:
        code, _ = z6_with(["validate", str(bad)], stderr=full)
    assert code == 2  # the message could not be written; the code still says what happened


def test_a_reader_that_went_away_is_exit_3_without_a_word() -> None:
    """``z6 validate ... | head`` with head gone: a broken pipe is no error to report to
    anyone (it was exit 4, an internal error), but the output was cut."""
    r, w = os.pipe()
    os.close(r)  # the reader is gone before z6 writes
    with os.fdopen(w, "w") as gone:
        code, err = z6_with(
            ["validate", str(SCENARIOS / "quickstart.toml")], stdout=gone, stderr=subprocess.PIPE
        )
    assert (code, err) == (3, "")


def test_a_run_whose_report_cannot_be_printed_is_not_a_success(tmp_path: Path, port: int) -> None:
    """``z6 run --json > summary.json`` on a full disk: the goals passed, but the report went
    nowhere, and exit 0 told the script that read that file it was fine. The files are on
    disk and the message says where."""
    out = tmp_path / "o"
    with open("/dev/full", "w") as full:
        code, err = z6_with(
            ["run", str(scenario(tmp_path, port)), "--out", str(out), "-q", "--json"],
            stdout=full,
            stderr=subprocess.PIPE,
        )
    assert code == 3
    assert err == f"z6: cannot print the report: No space left on device; it is in {out}/\n"
    assert json.loads((out / "summary.json").read_text())["passed"] is True


def test_a_failed_run_whose_report_cannot_be_printed_says_so(tmp_path: Path, port: int) -> None:
    # It exited 1 with nothing on stderr: the report was gone and nothing said where it was.
    out = tmp_path / "o"
    failing = scenario(tmp_path, port, extra="[assertions]\np50_latency_ms = 0.000001\n")
    with open("/dev/full", "w") as full:
        code, err = z6_with(
            ["run", str(failing), "--out", str(out), "-q", "--json"],
            stdout=full,
            stderr=subprocess.PIPE,
        )
    assert code == 1  # the goal failed: that is what the exit code says first
    assert err == f"z6: cannot print the report: No space left on device; it is in {out}/\n"
    assert json.loads((out / "summary.json").read_text())["passed"] is False


def test_json_without_out_says_on_stderr_where_the_results_are(tmp_path: Path, port: int) -> None:
    # stdout is the JSON alone: the directory z6 chose was written nowhere.
    code, err = z6_with(
        ["run", str(scenario(tmp_path, port)), "-q", "--json"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert code == 0, err
    (made,) = (tmp_path / "results").iterdir()
    assert err == f"z6: results: results/{made.name}/\n"
    assert json.loads((made / "summary.json").read_text())["passed"] is True


def test_a_second_run_into_a_directory_in_use_is_refused(tmp_path: Path) -> None:
    # Two runs into one --out at once both exited 0; one's results were lost and the event
    # log interleaved. The second is now refused before it touches anything.
    out = tmp_path / "o"
    out.mkdir()
    (out / "summary.json").write_text("{}")  # the running run's, so far
    locks: list[int] = []
    _lock_dir(out, locks)  # the run in progress
    try:
        _lock_dir(out, locks)  # the same process again: no conflict with itself
        assert len(locks) == 1
        proc = run_z6(["run", str(SCENARIOS / "quickstart.toml"), "--out", str(out), "-q"])
        assert proc.returncode == 2
        assert proc.stderr == (
            f"z6: another z6 run is writing to {out}: give each run its own --out\n"
        )
        assert [p.name for p in out.iterdir()] == ["summary.json"]
    finally:
        for fd in locks:
            os.close(fd)
    other: list[int] = []
    _lock_dir(out, other)  # free again once the holder closed it
    os.close(other[0])


def test_a_refused_run_writes_nothing_into_the_locked_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The write probe used to come before the lock: the refused run created and removed a
    # file in the directory the running one held.
    holder: list[int] = []
    _lock_dir(tmp_path, holder)
    writes: list[Path] = []
    write_bytes = Path.write_bytes

    def recording(self: Path, data: bytes) -> int:
        writes.append(self)
        return write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", recording)
    try:
        with pytest.raises(ConfigError, match="another z6 run is writing to"):
            _prepare_out_dir(tmp_path, [], [])
    finally:
        os.close(holder[0])
    assert writes == []
    locks: list[int] = []
    _prepare_out_dir(tmp_path, [], locks)  # free now: locked, then probed
    assert len(locks) == 1
    assert writes == [tmp_path / f".z6-write-test-{os.getpid()}"]
    os.close(locks[0])


def test_the_output_directory_records_only_the_directories_it_made(tmp_path: Path) -> None:
    # "new/../results/x": results/ existed (empty), so the early-failure cleanup must not
    # take it for one of z6's; new/ is z6's (the path as written goes through it).
    (tmp_path / "results").mkdir()
    created: list[Path] = []
    _prepare_out_dir(tmp_path / "new" / ".." / "results" / "x", created)
    assert created == [tmp_path / "new", tmp_path / "new" / ".." / "results" / "x"]
    assert (tmp_path / "results" / "x").is_dir()


def test_a_run_that_fails_before_it_starts_leaves_no_empty_results_dir(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        (SCENARIOS / "quickstart.toml")
        .read_text()
        .replace("[runtime]\n", '[runtime]\nevent_log_path = "/proc/z6-test/events.bin"\n', 1)
    )
    proc = run_z6(["run", str(path), "-q"], cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    # It left results/<time>/ behind, then the empty results/ it had made for it.
    assert not (tmp_path / "results").exists()
    # A results/ that was there before stays.
    (tmp_path / "results").mkdir()
    proc = run_z6(["run", str(path), "-q"], cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert list((tmp_path / "results").iterdir()) == []


@pytest.mark.parametrize(
    ("soft", "hard", "fails", "said"),
    [
        (8000, 9000, False, None),
        (1024, -1, False, "raised the open-files limit from 1024 to 5256"),
        (1024, 8000, False, "raised the open-files limit from 1024 to 5256"),
        (
            1024,
            4096,
            False,
            "warning: the open-files limit is 4096 (hard limit 4096), below the 5256",
        ),
        (
            1024,
            8000,
            True,
            "warning: the open-files limit is 1024 (hard limit 8000), below the 5256",
        ),
    ],
)
def test_an_open_files_limit_that_stays_too_low_is_a_warning(
    monkeypatch: pytest.MonkeyPatch, soft: int, hard: int, fails: bool, said: str | None
) -> None:
    """A hard limit below what the VUs need used to read "raised the open-files limit from
    1024 to 4096", and then 1,848 of 10,000 VUs failed every request without a word why."""
    import resource

    from z6.cli import run_cmd

    hard_limit = resource.RLIM_INFINITY if hard == -1 else hard
    set_to: list[tuple[int, int]] = []

    def setrlimit(_what: int, limits: tuple[int, int]) -> None:
        if fails:
            raise ValueError("not allowed")
        set_to.append(limits)

    monkeypatch.setattr(run_cmd.resource, "getrlimit", lambda _what: (soft, hard_limit))
    monkeypatch.setattr(run_cmd.resource, "setrlimit", setrlimit)
    note = run_cmd._raise_nofile_limit(5256)
    if said is None:
        assert note is None
        assert set_to == []
    else:
        assert note is not None
        assert note.startswith(said)
        if not fails:
            assert set_to == [(min(5256, hard_limit if hard != -1 else 5256), hard_limit)]


def test_the_ring_wait_note_says_how_long() -> None:
    from z6.cli.run_cmd import _ring_wait_note

    assert _ring_wait_note({"ring_waits": 0, "ring_wait_s": 0.0}) is None
    assert _ring_wait_note({"ring_waits": 2, "ring_wait_s": 2.086}) == (
        "note: the workers found their rings full 2 time(s) and waited 2.086 s in all for the "
        "aggregator (a slow disk, or z6 itself stopped): requests in flight meanwhile have "
        "that wait in their latency"
    )
    note = _ring_wait_note({"ring_waits": 1, "ring_wait_s": 0.0})
    assert note is not None
    assert "waited under 1 ms in all" in note


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("2.5", 2.5), ("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("1h30m", 5400.0)],
)
def test_duration_takes_seconds_or_units_as_k6_does(text: str, seconds: float) -> None:
    from z6.cli.options import parse_duration

    assert parse_duration(text) == seconds
