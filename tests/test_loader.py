"""Scenario loading and validation (SPEC section 2): one good and one bad case per rule."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import msgspec
import pytest

from z6.engine.describe import describe_scenario
from z6.engine.errors import ScenarioError, UnsupportedFeatureError
from z6.engine.loader import MAX_SCENARIO_BYTES, load_scenario, load_scenario_text
from z6.engine.requests import prepare_requests
from z6.engine.scenario import Scenario
from z6.engine.schedule import peak_vus, schedule_length_s

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((REPO / "scenarios").glob("*.toml"))
ZIG_FIXTURES = sorted((REPO / "tests" / "fixtures" / "scenarios").glob("zig_*.toml"))

RUNTIME = "[runtime]\nduration_seconds = 10\nvus = 5\n"
TARGET = '[target]\nbase_url = "http://127.0.0.1:8080"\n'
REQ_A = '[[requests]]\nname = "a"\nmethod = "GET"\npath = "/"\n'
REQ_B = '[[requests]]\nname = "b"\nmethod = "POST"\npath = "/echo"\n'
BASE = RUNTIME + TARGET + REQ_A


def load(text: str, **kw: object) -> Scenario:
    """Load ``text`` as the file ``test.toml`` with an empty environment."""
    kw.setdefault("env", {})
    return load_scenario_text(text, "test.toml", base_dir=Path("/nonexistent"), **kw)  # type: ignore[arg-type]


def fail(text: str, **kw: object) -> ScenarioError:
    """Load ``text`` and return the ScenarioError it must raise."""
    with pytest.raises(ScenarioError) as info:
        load(text, **kw)
    err = info.value
    assert err.file == "test.toml"
    assert str(err).startswith("test.toml")
    return err


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line of ``text`` containing ``needle``."""
    for i, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in text")


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_every_example_scenario_loads_and_describes(path: Path) -> None:
    s = load_scenario(path, env={})
    assert s.source_path == str(path)
    assert s.source_text == path.read_text("utf-8")
    assert s.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert s.target.base_url == "http://127.0.0.1:8080"
    assert peak_vus(s.schedule) >= 1
    text = describe_scenario(s)
    assert s.name in text
    for req in s.requests:
        assert req.name in text


def test_examples_cover_every_schedule_type() -> None:
    kinds = {load_scenario(p, env={}).schedule.type for p in SCENARIOS}
    assert kinds == {"constant", "ramp", "spike", "steps", "arrival_rate"}
    assert any(load_scenario(p, env={}).sequence is not None for p in SCENARIOS)


def test_quickstart_uses_builtin_server_endpoints() -> None:
    s = load_scenario(REPO / "scenarios" / "quickstart.toml", env={})
    assert s.schedule.type == "constant"
    assert s.schedule.vus == 10
    assert {(r.method, r.path) for r in s.requests} == {
        ("GET", "/"),
        ("GET", "/bytes/1024"),
        ("POST", "/echo"),
        ("GET", "/delay/10"),
    }
    assert s.assertions.p99_latency_ms is not None


@pytest.mark.parametrize("path", ZIG_FIXTURES, ids=lambda p: p.name)
def test_zig_format_fixtures_load_unchanged(path: Path) -> None:
    s = load_scenario(path, env={})
    assert s.target.http_version == "http1.1"
    assert s.target.tls is not None
    assert s.runtime.prng_seed is not None
    assert s.requests


def test_zig_ramp_with_only_vus_ramps_over_whole_duration() -> None:
    s = load_scenario(REPO / "tests/fixtures/scenarios/zig_ramp_weighted.toml", env={})
    sch = s.schedule
    assert (sch.type, sch.start_vus, sch.end_vus) == ("ramp", 0, 100)
    assert sch.ramp_duration_seconds == 120
    assert sch.hold_duration_seconds == 0
    assert [r.weight for r in s.requests] == [70.0, 20.0, 10.0]
    assert s.runtime.flush_interval == 1000
    assert "flush_interval" in describe_scenario(s)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="file not found") as info:
        load_scenario(tmp_path / "nope.toml")
    assert info.value.file == str(tmp_path / "nope.toml")


def test_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="is a directory"):
        load_scenario(tmp_path)


def test_non_utf8_file_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_bytes(BASE.encode() + b'[metadata]\nname = "\xff\xfe"\n')
    with pytest.raises(ScenarioError, match="not valid UTF-8") as info:
        load_scenario(p)
    assert info.value.line == BASE.count("\n") + 2


def test_source_fields_and_sha256(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text(BASE, "utf-8")
    s = load_scenario(p)
    assert s.source_text == BASE
    assert s.sha256 == hashlib.sha256(BASE.encode()).hexdigest()
    assert s.name == "s.toml"  # no metadata name: the file name


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    p = tmp_path / "bom.toml"
    p.write_bytes(b"\xef\xbb\xbf" + BASE.encode())
    assert load_scenario(p).requests[0].name == "a"


# --------------------------------------------------------------------------- syntax / shape


def test_toml_syntax_error_has_line_and_column() -> None:
    text = BASE + "[metadata]\nname = \n"
    err = fail(text)
    assert "TOML syntax error" in err.message
    assert "column" in err.message
    assert err.line == len(text.splitlines())  # the last line: "name = "
    assert err.key is None


def test_did_you_mean_for_misspelled_runtime_key() -> None:
    text = "[runtime]\nduration_seconds = 10\nvsu = 10\n" + TARGET + REQ_A
    err = fail(text)
    assert err.key == "runtime.vsu"
    assert err.hint == "vus"
    assert err.line == 3
    assert "unknown key 'vsu'" in str(err)
    assert "(did you mean 'vus'?)" in str(err)


def test_did_you_mean_for_misspelled_table() -> None:
    text = BASE + "[runtme]\nvus = 3\n"
    err = fail(text)
    assert err.key == "runtme"
    assert err.hint == "runtime"
    assert err.line == line_of(text, "[runtme]")
    assert "unknown table" in err.message


def test_key_in_wrong_table_says_where_it_belongs() -> None:
    text = RUNTIME + 'base_url = "http://x"\n' + TARGET + REQ_A
    err = fail(text)
    assert err.key == "runtime.base_url"
    assert "belongs in [target]" in err.message


def test_unknown_request_key_has_index_and_hint() -> None:
    text = BASE + REQ_B + "timout_ms = 5\n"
    err = fail(text)
    assert err.key == "requests[1].timout_ms"
    assert err.hint == "timeout_ms"
    assert err.line == line_of(text, "timout_ms")


def test_unknown_top_level_key() -> None:
    err = fail('name = "x"\n' + BASE)
    assert err.key == "name"
    assert "unknown top-level key" in err.message
    assert err.line == 1


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        (TARGET + REQ_A, "runtime", "missing required table [runtime]"),
        (RUNTIME + REQ_A, "target", "missing required table [target]"),
        (RUNTIME + TARGET, "requests", "missing required table [[requests]]"),
        ("requests = []\n" + RUNTIME + TARGET, "requests", "at least one"),
        (
            RUNTIME + TARGET + '[requests]\nname = "a"\n',
            "requests",
            "array of tables",
        ),
        ("requests = [1]\n" + RUNTIME + TARGET, "requests[0]", "expected a table, got integer"),
        ("runtime = 5\n" + TARGET + REQ_A, "runtime", "expected a table [runtime], got integer"),
        (BASE + "[[targets]]\nbase_url = 'http://x'\n", "targets", "not supported yet"),
        (
            BASE
            + '[schedule]\ntype = "steps"\n[[schedule.steps]]\n'
            + "vus = 1\nduration_seconds = 1\nvu = 2\n",
            "schedule.steps[0].vu",
            "unknown key",
        ),
        (
            BASE + '[sequence]\n[[sequence.steps]]\nrequest = "a"\nrepeats = 2\n',
            "sequence.steps[0].repeats",
            "unknown key",
        ),
    ],
)
def test_shape_errors(text: str, key: str, fragment: str) -> None:
    err = fail(text)
    assert err.key == key
    assert fragment in err.message


def test_targets_table_is_unsupported_feature() -> None:
    with pytest.raises(UnsupportedFeatureError, match="not supported yet"):
        load(BASE + "[[targets]]\nbase_url = 'http://x'\n")


# --------------------------------------------------------------------------- types


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        (
            "[runtime]\nduration_seconds = 10\nvus = true\n" + TARGET + REQ_A,
            "runtime.vus",
            "expected integer, got boolean",
        ),
        (
            "[runtime]\nduration_seconds = 10\nvus = 2.5\n" + TARGET + REQ_A,
            "runtime.vus",
            "expected integer, got number",
        ),
        (
            "[runtime]\nduration_seconds = '10'\nvus = 2\n" + TARGET + REQ_A,
            "runtime.duration_seconds",
            "expected number, got string",
        ),
        (
            "[runtime]\nduration_seconds = true\n" + TARGET + REQ_A,
            "runtime.duration_seconds",
            "expected number, got boolean",
        ),
        (BASE + "[metadata]\ntags = 'x'\n", "metadata.tags", "expected array, got string"),
        (BASE + "[metadata]\nname = 2020-01-01\n", "metadata.name", "expected string, got date"),
        (
            RUNTIME + TARGET + REQ_A + "headers = { X = 1 }\n",
            "requests[0].headers",
            "expected string, got integer",
        ),
        (
            RUNTIME + TARGET + REQ_A + "expect_status = [200, '201']\n",
            "requests[0].expect_status[1]",
            "expected integer, got string",
        ),
        (
            RUNTIME + TARGET + '[[requests]]\nname = "a"\nmethod = "GET"\n',
            "requests[0].path",
            "missing required key",
        ),
        (RUNTIME + "[target]\nverify_cert = true\n" + REQ_A, "target.base_url", "missing"),
        (
            BASE + '[schedule]\ntype = "steps"\n[[schedule.steps]]\nvus = 1\n',
            "schedule.steps[0].duration_seconds",
            "missing required key",
        ),
        (
            RUNTIME + TARGET + '[[requests]]\nname = "a"\nmethod = 5\npath = "/"\n',
            "requests[0].method",
            "expected",
        ),
        (BASE + "[target]\n", "target", None),  # duplicate table: TOML syntax error
    ],
)
def test_type_errors(text: str, key: str, fragment: str | None) -> None:
    err = fail(text)
    if fragment is None:
        assert "TOML syntax error" in err.message
        return
    assert err.key == key
    assert fragment in err.message


def test_type_error_names_line() -> None:
    text = "[runtime]\nduration_seconds = 10\nvus = true\n" + TARGET + REQ_A
    assert fail(text).line == 3


def test_ints_accepted_for_floats() -> None:
    s = load(BASE.replace("[[requests]]", "[[requests]]\nweight = 3"))
    assert s.requests[0].weight == 3.0
    assert isinstance(s.runtime.duration_seconds, float)


# --------------------------------------------------------------------------- runtime


def _rt(body: str) -> str:
    return "[runtime]\n" + body + TARGET + REQ_A


@pytest.mark.parametrize(
    "body",
    [
        "duration_seconds = 0.5\nvus = 1\n",
        "iterations = 1\nvus = 1\n",
        "duration_seconds = 10\nvus = 1\nprng_seed = 0\n",
        "duration_seconds = 10\nvus = 1\nprng_seed = 18446744073709551615\n",
        "duration_seconds = 10\nvus = 1\ngraceful_stop_seconds = 0\n",
        "duration_seconds = 10\nvus = 1\nevent_log_path = 'out/e.bin'\nflush_interval = 100\n",
    ],
)
def test_runtime_good(body: str) -> None:
    load(_rt(body))


@pytest.mark.parametrize(
    ("body", "key", "fragment"),
    [
        ("vus = 1\n", "runtime", "neither is set"),
        ("duration_seconds = 1\niterations = 2\nvus = 1\n", "runtime.iterations", "both"),
        ("duration_seconds = 0\nvus = 1\n", "runtime.duration_seconds", "must be > 0"),
        ("duration_seconds = -1\nvus = 1\n", "runtime.duration_seconds", "must be > 0"),
        ("duration_seconds = inf\nvus = 1\n", "runtime.duration_seconds", "finite"),
        ("duration_seconds = nan\nvus = 1\n", "runtime.duration_seconds", "finite"),
        ("duration_seconds = 1e12\nvus = 1\n", "runtime.duration_seconds", "must be <="),
        ("iterations = 0\nvus = 1\n", "runtime.iterations", "must be >= 1"),
        ("duration_seconds = 1\nvus = 0\n", "runtime.vus", "must be >= 1"),
        ("duration_seconds = 1\nvus = 99999999999\n", "runtime.vus", "must be <="),
        ("duration_seconds = 1\nvus = 1\nprng_seed = -1\n", "runtime.prng_seed", ">= 0"),
        (
            "duration_seconds = 1\nvus = 1\nprng_seed = 18446744073709551616\n",
            "runtime.prng_seed",
            "<=",
        ),
        (
            "duration_seconds = 1\nvus = 1\ngraceful_stop_seconds = -1\n",
            "runtime.graceful_stop_seconds",
            ">= 0",
        ),
        (
            "duration_seconds = 1\nvus = 1\nevent_log_path = ' '\n",
            "runtime.event_log_path",
            "empty",
        ),
    ],
)
def test_runtime_bad(body: str, key: str, fragment: str) -> None:
    text = _rt(body)
    err = fail(text)
    assert err.key == key
    assert fragment in err.message
    assert err.line is not None


def test_runtime_error_line_points_at_key() -> None:
    text = _rt("duration_seconds = 10\nvus = 0\n")
    assert fail(text).line == 3


# --------------------------------------------------------------------------- target


def _tg(body: str) -> str:
    return RUNTIME + "[target]\n" + body + REQ_A


@pytest.mark.parametrize(
    ("body", "expected_url"),
    [
        ('base_url = "http://127.0.0.1:8080"\n', "http://127.0.0.1:8080"),
        ('base_url = "http://localhost/"\n', "http://localhost"),
        ('base_url = "https://example.test"\ntls = true\n', "https://example.test"),
        ('base_url = "http://x:1"\ntls = false\n', "http://x:1"),
        ('base_url = "http://[::1]:8080"\n', "http://[::1]:8080"),
        ('base_url = "http://x"\nhttp_version = "HTTP/1.1"\n', "http://x"),
        ('base_url = "http://x"\nhttp_version = "1.1"\n', "http://x"),
        ('base_url = "http://x"\nconnection_timeout_ms = 1\nmax_connections = 5\n', "http://x"),
        ('base_url = "https://x"\nverify_cert = false\n', "https://x"),
    ],
)
def test_target_good(body: str, expected_url: str) -> None:
    s = load(_tg(body))
    assert s.target.base_url == expected_url
    assert s.target.http_version == "http1.1"


@pytest.mark.parametrize(
    ("body", "key", "fragment"),
    [
        ('base_url = "ftp://x"\n', "target.base_url", "http:// or https://"),
        ('base_url = "127.0.0.1:8080"\n', "target.base_url", "http:// or https://"),
        ('base_url = "http://"\n', "target.base_url", "no host"),
        ('base_url = "http://x/api"\n', "target.base_url", "scheme://host[:port] only"),
        ('base_url = "http://x?a=1"\n', "target.base_url", "scheme://host[:port] only"),
        ('base_url = "http://x:99999"\n', "target.base_url", "invalid URL"),
        ('base_url = "http://x:0"\n', "target.base_url", "port"),
        ('base_url = "http://u:p@x"\n', "target.base_url", "user info"),
        ('base_url = "http://x y"\n', "target.base_url", "whitespace"),
        ('base_url = "https://x"\ntls = false\n', "target.tls", "disagrees"),
        ('base_url = "http://x"\ntls = true\n', "target.tls", "disagrees"),
        ('base_url = "http://x"\nhttp_version = "http1.0"\n', "target.http_version", "invalid"),
        (
            'base_url = "http://x"\nconnection_timeout_ms = 0\n',
            "target.connection_timeout_ms",
            ">= 1",
        ),
        ('base_url = "http://x"\nmax_connections = 0\n', "target.max_connections", ">= 1"),
        ('base_url = "http://x"\nca_bundle = "ca.pem"\n', "target.ca_bundle", "only to https"),
        ('base_url = "https://x"\nca_bundle = "/nope/ca.pem"\n', "target.ca_bundle", "not found"),
    ],
)
def test_target_bad(body: str, key: str, fragment: str) -> None:
    err = fail(_tg(body))
    assert err.key == key
    assert fragment in err.message


@pytest.mark.parametrize("version", ["http2", "HTTP/2", "h2", "2", "http/2.0"])
def test_http2_rejected_as_not_supported_yet(version: str) -> None:
    text = _tg(f'base_url = "http://x"\nhttp_version = "{version}"\n')
    with pytest.raises(UnsupportedFeatureError, match="not supported yet") as info:
        load(text)
    assert info.value.key == "target.http_version"
    assert "HTTP/2" in info.value.message
    assert info.value.line == line_of(text, "http_version")


def test_ca_bundle_resolves_relative_to_scenario(
    tmp_path: Path, self_signed: tuple[str, str]
) -> None:
    (tmp_path / "ca.pem").write_bytes(Path(self_signed[0]).read_bytes())
    p = tmp_path / "s.toml"
    p.write_text(_tg('base_url = "https://x"\nca_bundle = "ca.pem"\n'))
    assert load_scenario(p).target.ca_bundle == str(tmp_path / "ca.pem")


@pytest.mark.parametrize("verify", ["true", "false"])
def test_a_ca_bundle_that_is_not_pem_certificates_fails_at_load(
    tmp_path: Path, verify: str
) -> None:
    """The workers load the bundle too; a bad one must fail validation, not every worker."""
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    p = tmp_path / "s.toml"
    p.write_text(_tg(f'base_url = "https://x"\nca_bundle = "ca.pem"\nverify_cert = {verify}\n'))
    with pytest.raises(ScenarioError) as info:
        load_scenario(p)
    assert info.value.key == "target.ca_bundle"
    assert info.value.message.startswith(f"not a PEM file of CA certificates: {tmp_path}/ca.pem")
    # Rebuilding from a log's header does not touch the file.
    assert load_scenario_text(p.read_text(), str(p), resolve_external=False).target.ca_bundle


def test_a_scenario_file_larger_than_the_limit_fails_without_reading_it_all(
    tmp_path: Path,
) -> None:
    big = tmp_path / "big.toml"
    with big.open("wb") as f:
        f.write(BASE.encode())
        f.write(b"#" + b"x" * MAX_SCENARIO_BYTES + b"\n")
    for path in (big, Path("/dev/zero")):  # /dev/zero never ends: reading must stop by itself
        with pytest.raises(ScenarioError, match="larger than 16 MiB") as info:
            load_scenario(path)
        assert info.value.file == str(path)
    exact = tmp_path / "exact.toml"
    exact.write_bytes(BASE.encode().ljust(MAX_SCENARIO_BYTES, b"\n"))
    assert load_scenario(exact, env={}).runtime.vus == 5


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("out/", "must name a file, not a directory"),
        ("a\\u0000b", "control characters"),
        ("a\\nb", "control characters"),
        ("DIR", "is a directory"),
    ],
)
def test_event_log_path_must_name_a_file(tmp_path: Path, value: str, fragment: str) -> None:
    value = value.replace("DIR", str(tmp_path))
    err = fail(_rt(f'duration_seconds = 1\nvus = 1\nevent_log_path = "{value}"\n'))
    assert err.key == "runtime.event_log_path"
    assert fragment in err.message


def test_target_max_connections_below_peak_vus() -> None:
    err = fail(_tg('base_url = "http://x"\nmax_connections = 2\n'))
    assert err.key == "target.max_connections"
    assert "one per VU" in err.message


# --------------------------------------------------------------------------- requests


def _req(extra: str, *, more: str = "") -> str:
    return RUNTIME + TARGET + REQ_A + extra + more


@pytest.mark.parametrize(
    "extra",
    [
        "timeout_ms = 1\n",
        "weight = 0\n" + REQ_B,
        "weight = 0.5\n",
        "expect_status = [100, 599]\n",
        'headers = { "X-Token" = "abc", Accept = "*/*" }\n',
        'body = "hello"\n',
        "body = ''\n",
    ],
)
def test_requests_good(extra: str) -> None:
    load(_req(extra))


@pytest.mark.parametrize(
    ("text", "key", "fragment", "hint"),
    [
        (_req('path = "/x"\n'), None, None, None),
        (_req("", more=REQ_A), "requests[1].name", "duplicate request name 'a'", None),
        (_req("").replace('name = "a"', 'name = " "'), "requests[0].name", "empty", None),
        (_req("").replace('"GET"', '"get"'), "requests[0].method", "invalid value", "GET"),
        (_req("").replace('"GET"', '"GETT"'), "requests[0].method", "invalid value", "GET"),
        (_req("").replace('"GET"', '"TRACE"'), "requests[0].method", "invalid value", None),
        (
            _req("").replace('path = "/"', 'path = "api"'),
            "requests[0].path",
            "start with '/'",
            None,
        ),
        (_req("").replace('path = "/"', 'path = "/a b"'), "requests[0].path", "spaces", None),
        (_req("").replace('path = "/"', 'path = "/é"'), "requests[0].path", "ASCII", None),
        (_req("").replace('path = "/"', 'path = "/?q=1#frag"'), "requests[0].path", "'#'", None),
        (_req("timeout_ms = 0\n"), "requests[0].timeout_ms", ">= 1", None),
        (_req("weight = -1\n"), "requests[0].weight", ">= 0", None),
        (_req("weight = 0\n"), "requests", "sum to 0", None),
        (_req("weight = 0\n", more=REQ_B + "weight = 0\n"), "requests", "sum to 0", None),
        (_req("expect_status = [99]\n"), "requests[0].expect_status[0]", "100..599", None),
        (_req("expect_status = [200, 600]\n"), "requests[0].expect_status[1]", "100..599", None),
        (_req("expect_status = []\n"), "requests[0].expect_status", "at least one", None),
        (
            _req('body = "x"\nbody_file = "b.json"\n'),
            "requests[0].body_file",
            "mutually exclusive",
            None,
        ),
        (_req('body_file = "/nope/b.json"\n'), "requests[0].body_file", "not found", None),
        (
            _req('headers = { "Bad Name" = "x" }\n'),
            'requests[0].headers."Bad Name"',
            "invalid",
            None,
        ),
        (
            _req('headers = { "Content-Length" = "3" }\n'),
            "requests[0].headers.Content-Length",
            "set by z6",
            None,
        ),
        (_req('headers = { X = "a\\nb" }\n'), "requests[0].headers.X", "CR, LF", None),
    ],
)
def test_requests_bad(text: str, key: str | None, fragment: str | None, hint: str | None) -> None:
    err = fail(text)
    if key is None:  # the first case: a duplicate key inside one table is a TOML error
        assert "TOML syntax error" in err.message
        return
    assert err.key == key
    assert fragment is not None
    assert fragment in err.message
    assert err.hint == hint


def test_request_error_line_in_second_request() -> None:
    text = _req("", more=REQ_B.replace('"/echo"', '"echo"'))
    err = fail(text)
    assert err.key == "requests[1].path"
    assert err.line == line_of(text, 'path = "echo"')


def test_body_checks_load_as_lists_and_reach_the_prepared_request() -> None:
    s = load(_req("expect_body_contains = '\"ok\"'\nexpect_body_not_contains = ['error', 'é']\n"))
    req = s.requests[0]
    assert (req.expect_body_contains, req.expect_body_not_contains) == (['"ok"'], ["error", "é"])
    check = prepare_requests(s)[0].body_check
    assert check is not None
    assert (check.present, check.absent) == ((b'"ok"',), (b"error", "é".encode()))
    assert prepare_requests(load(BASE))[0].body_check is None
    assert "body contains '\"ok\"', body lacks 'error' and 'é'" in describe_scenario(s)


@pytest.mark.parametrize(
    ("extra", "key", "fragment"),
    [
        ("expect_body_contains = ''\n", "requests[0].expect_body_contains", "must not be empty"),
        (
            "expect_body_not_contains = ['x', '']\n",
            "requests[0].expect_body_not_contains[1]",
            "must not be empty",
        ),
        ("expect_body_contains = []\n", "requests[0].expect_body_contains", "at least one"),
        ("expect_body_contains = 1\n", "requests[0].expect_body_contains", "string or array"),
        ("expect_body_contains = [1]\n", "requests[0].expect_body_contains[0]", "string"),
        (
            "expect_body_contains = '" + "é" * 2049 + "'\n",
            "requests[0].expect_body_contains",
            "at most 4096 bytes (UTF-8), got 4098",
        ),
        (
            "expect_body_contains = ['error_code 0']\nexpect_body_not_contains = 'error'\n",
            "requests[0].expect_body_not_contains",
            "part of 'error_code 0'",
        ),
        (
            "expect_body_contains = 'x'\n",
            "requests[0].expect_body_contains",
            "HEAD has no body",
        ),
        (
            "expect_status = [204, 304]\nexpect_body_contains = 'x'\n",
            "requests[0].expect_body_contains",
            "every status in expect_status has no body",
        ),
        (
            "expect_body_contains = '" + "x" * 100 + "'\nexpect_body_not_contains = 'x'\n",
            "requests[0].expect_body_not_contains",
            "'x' is part of '" + "x" * 57 + "...', which",
        ),
    ],
)
def test_body_checks_bad(extra: str, key: str, fragment: str) -> None:
    text = _req(extra)
    if "HEAD" in fragment:
        text = text.replace('"GET"', '"HEAD"')
    err = fail(text)
    assert err.key == key
    assert fragment in err.message
    assert err.line == line_of(text, key.rsplit(".", 1)[1].split("[")[0] + " =")


def test_body_checks_that_can_pass_with_bodiless_statuses_and_literal_texts() -> None:
    # A 204 passes a forbidden-text check (nothing in it); a text holding ${ or {{ is
    # matched as written, which validate points out.
    s = load(_req("expect_status = [204]\nexpect_body_not_contains = ['${X}', 'ok']\n"))
    assert s.requests[0].expect_body_not_contains == ["${X}", "ok"]
    assert "${NAME} and {{...}} are not resolved in them (a)" in describe_scenario(s)
    assert "are not resolved" not in describe_scenario(load(_req("expect_body_contains = 'x'\n")))


@pytest.mark.parametrize(
    ("value", "env", "fragment"),
    [
        ('" token"', {}, "must not start or end with a space or tab"),
        ('"token\\t"', {}, "must not start or end with a space or tab"),
        ('"${T}"', {"T": "abc "}, "must not start or end with a space or tab"),
        ('"a\\u0001b"', {}, "control characters"),
        ('"a\\u007fb"', {}, "control characters"),
        # Bytes that are not UTF-8 come from os.environ as lone surrogates.
        ('"${T}"', {"T": "ab\udcffcd"}, "environment variable T is not valid UTF-8"),
    ],
)
def test_header_values_h11_could_not_send_are_refused(
    value: str, env: dict[str, str], fragment: str
) -> None:
    # Such a value passed the loader, then failed every request as protocol_error with h11
    # (outer white space), or killed the workers (not UTF-8).
    err = fail(_req(f"headers = {{ X = {value} }}\n"), env=env)
    assert err.key == "requests[0].headers.X"
    assert fragment in err.message
    assert load(_req('headers = { X = "a\\tb", Y = "" }\n')).requests[0].headers["X"] == "a\tb"


@pytest.mark.parametrize(
    ("extra", "key", "fragment"),
    [
        ('headers = { X = "{{a" }\n', "requests[0].headers.X", "in an environment variable"),
        ('body = "{{a"\n', "requests[0].body", "goes in a body_file"),
        ("", "requests[0].path", "as %7B%7B"),
    ],
)
def test_a_literal_double_brace_error_says_how_to_send_one(
    extra: str, key: str, fragment: str
) -> None:
    text = _req(extra) if extra else _req("").replace('path = "/"', 'path = "/{{a"')
    err = fail(text)
    assert err.key == key
    assert fragment in err.message


def test_body_text_goes_into_body_bytes() -> None:
    s = load(_req('body = "héllo"\n'))
    assert s.requests[0].body_bytes == "héllo".encode()
    assert s.requests[0].body == "héllo"
    assert load(_req("")).requests[0].body_bytes == b""


def test_body_file_relative_to_scenario(tmp_path: Path) -> None:
    (tmp_path / "payload.bin").write_bytes(b"\x00\x01binary")
    p = tmp_path / "s.toml"
    p.write_text(_req('body_file = "payload.bin"\n'))
    s = load_scenario(p)
    assert s.requests[0].body_bytes == b"\x00\x01binary"
    assert s.requests[0].body_file == str(tmp_path / "payload.bin")


def test_body_file_missing_names_key_and_line(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    text = _req('body_file = "missing.json"\n')
    p.write_text(text)
    with pytest.raises(ScenarioError, match="file not found") as info:
        load_scenario(p)
    assert info.value.key == "requests[0].body_file"
    assert info.value.line == line_of(text, "body_file")


def test_body_file_is_directory(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    p = tmp_path / "s.toml"
    p.write_text(_req('body_file = "d"\n'))
    with pytest.raises(ScenarioError, match="is a directory"):
        load_scenario(p)


def test_body_file_device_is_rejected() -> None:
    err = fail(_req('body_file = "/dev/zero"\n'))
    assert err.key == "requests[0].body_file"
    assert "not a regular file" in err.message


def test_body_file_symlink_loop_says_so(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    p = tmp_path / "s.toml"
    p.write_text(_req('body_file = "loop"\n'))
    with pytest.raises(ScenarioError, match="Too many levels of symbolic links"):
        load_scenario(p)  # it said "file not found"


@pytest.mark.parametrize(
    ("target", "fragment"),
    [("/dev/zero", "not a regular file"), ("/nonexistent.pem", "file not found")],
)
def test_ca_bundle_that_is_no_file_says_why(target: str, fragment: str) -> None:
    err = fail(_tg(f'base_url = "https://x"\nca_bundle = "{target}"\n'))
    assert err.key == "target.ca_bundle"
    assert fragment in err.message  # /dev/zero said "file not found"


def test_relative_body_file_without_base_dir() -> None:
    with pytest.raises(ScenarioError, match="directory") as info:
        load_scenario_text(_req('body_file = "b.json"\n'), env={})
    assert info.value.key == "requests[0].body_file"


# --------------------------------------------------------------------------- env


def test_env_resolved_in_headers_and_body() -> None:
    text = _req(
        'headers = { Authorization = "Bearer ${TOKEN}" }\nbody = "u=${USER_1}&x=$${KEEP}"\n'
    )
    s = load(text, env={"TOKEN": "s3cret", "USER_1": "bob"})
    req = s.requests[0]
    assert req.headers == {"Authorization": "Bearer s3cret"}
    assert req.body == "u=bob&x=${KEEP}"
    assert req.body_bytes == b"u=bob&x=${KEEP}"
    assert "s3cret" not in s.source_text  # the secret stays out of the embedded text


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('headers = { Authorization = "Bearer ${TOKEN}" }\n', "requests[0].headers.Authorization"),
        ('body = "${TOKEN}"\n', "requests[0].body"),
    ],
)
def test_missing_env_variable(extra: str, key: str) -> None:
    err = fail(_req(extra), env={})
    assert err.key == key
    assert "TOKEN" in err.message
    assert "not set" in err.message


def test_env_resolved_in_the_path_which_then_meets_the_path_rules() -> None:
    """An API key in the query string: the reference used to go out as "$%7BAPI_KEY%7D"."""
    text = RUNTIME + TARGET + REQ_A.replace('path = "/"', 'path = "/items?key=${API_KEY}&x=$${K}"')
    s = load(text, env={"API_KEY": "k-123"})
    assert s.requests[0].path == "/items?key=k-123&x=${K}"
    assert "k-123" not in s.source_text
    err = fail(text, env={})
    assert (err.key, "API_KEY" in err.message) == ("requests[0].path", True)
    err = fail(text, env={"API_KEY": "a b"})  # resolved, then checked
    assert err.key == "requests[0].path"
    assert "spaces" in err.message


def test_a_path_with_env_is_shown_as_written_and_rebuilt_from_a_log_whatever_the_env() -> None:
    """The key stays out of `z6 validate` and of messages; `z6 analyze` / `replay` rebuild the
    scenario of a log without this process's variables (a missing one made the path '' and
    failed 'must start with /'; a set one with a space failed too)."""
    text = RUNTIME + TARGET + REQ_A.replace('path = "/"', 'path = "${ENDPOINT}?k=${KEY}"')
    s = load(text, env={"ENDPOINT": "/items", "KEY": "SECRET123"})
    assert (s.requests[0].path, s.requests[0].path_written) == (
        "/items?k=SECRET123",
        "${ENDPOINT}?k=${KEY}",
    )
    assert "SECRET123" not in describe_scenario(s)
    assert "${ENDPOINT}?k=${KEY}" in describe_scenario(s)
    err = fail(text, env={"ENDPOINT": "/items", "KEY": "has space"})
    assert "SECRET" not in str(err)
    assert "'${ENDPOINT}?k=${KEY}' once resolved" in str(err)
    for env in ({}, {"ENDPOINT": "no-slash", "KEY": "a b"}):
        again = load_scenario_text(text, "events.bin:scenario", env=env, resolve_external=False)
        assert again.requests[0].path == "?k="
        assert again.requests[0].path_written == "${ENDPOINT}?k=${KEY}"


def test_env_value_with_newline_rejected_in_header() -> None:
    err = fail(_req('headers = { X = "${V}" }\n'), env={"V": "a\r\nInjected: 1"})
    assert err.key == "requests[0].headers.X"


def test_header_names_that_differ_only_in_case_are_refused() -> None:
    """HTTP header names are case-insensitive: ``Host`` and ``host`` (or ``X-A`` and ``x-a``)
    are one header, and one of the two values was dropped without a word."""
    err = fail(_req('headers = { "X-A" = "one", "x-a" = "two" }\n'))
    assert err.key == "requests[0].headers.x-a"
    assert "'x-a' and 'X-A' are the same header; keep one" in str(err)
    s = load_scenario_text(_req('headers = { "X-A" = "one", "X-B" = "two" }\n'), env={})
    assert s.requests[0].headers == {"X-A": "one", "X-B": "two"}


def test_resolve_external_false_rebuilds_without_env_or_files() -> None:
    text = _req('headers = { A = "${NOPE}" }\n', more=REQ_B + 'body_file = "/nope/x.bin"\n')
    s = load_scenario_text(text, "embedded.toml", env={}, resolve_external=False)
    assert s.requests[0].headers == {"A": ""}
    assert s.requests[1].body_file == "/nope/x.bin"
    assert s.requests[1].body_bytes == b""
    assert s.sha256 == hashlib.sha256(text.encode()).hexdigest()


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("Z6_TEST_LOADER_VAR", "from-env")
    s = load_scenario_text(_req('body = "${Z6_TEST_LOADER_VAR}"\n'))
    assert s.requests[0].body == "from-env"


# --------------------------------------------------------------------------- schedule


def _sch(runtime: str, schedule: str) -> str:
    return "[runtime]\n" + runtime + TARGET + REQ_A + "[schedule]\n" + schedule


def test_default_schedule_is_constant_at_runtime_vus() -> None:
    s = load(BASE)
    assert (s.schedule.type, s.schedule.vus) == ("constant", 5)


@pytest.mark.parametrize(
    ("runtime", "schedule", "expected"),
    [
        ("duration_seconds = 10\n", 'type = "constant"\nvus = 3\n', {"vus": 3}),
        ("duration_seconds = 10\nvus = 4\n", 'type = "constant"\n', {"vus": 4}),
        ("duration_seconds = 10\nvus = 4\n", "vus = 7\n", {"vus": 7}),
        (
            "duration_seconds = 10\nvus = 4\n",
            'type = "ramp"\n',
            {"start_vus": 0, "end_vus": 4, "ramp_duration_seconds": 10, "hold_duration_seconds": 0},
        ),
        (
            "duration_seconds = 10\n",
            'type = "ramp"\nvus = 8\nhold_duration_seconds = 4\n',
            {"start_vus": 0, "end_vus": 8, "ramp_duration_seconds": 6, "hold_duration_seconds": 4},
        ),
        (
            "iterations = 3\nvus = 2\n",
            'type = "ramp"\nstart_vus = 2\nend_vus = 0\nramp_duration_seconds = 5\n',
            {"start_vus": 2, "end_vus": 0, "ramp_duration_seconds": 5, "hold_duration_seconds": 0},
        ),
        (
            "duration_seconds = 10\nvus = 9\n",
            'type = "spike"\nspike_start_seconds = 2\nspike_duration_seconds = 3\n',
            {"baseline_vus": 0, "spike_vus": 9, "spike_start_seconds": 2},
        ),
        (
            "duration_seconds = 10\n",
            'type = "spike"\nbaseline_vus = 1\nspike_vus = 5\nspike_start_seconds = 0\n'
            "spike_duration_seconds = 10\n",
            {"baseline_vus": 1, "spike_vus": 5},
        ),
        (
            "duration_seconds = 10\n",
            'type = "steps"\nsteps = [{vus = 0, duration_seconds = 1}, '
            "{vus = 3, duration_seconds = 9}]\n",
            {},
        ),
        (
            "duration_seconds = 10\nvus = 6\n",
            'type = "arrival_rate"\nrate = 0.5\n',
            {"rate": 0.5, "max_vus": 6},
        ),
        (
            "duration_seconds = 10\n",
            'type = "arrival_rate"\nrate = 100\nmax_vus = 20\n',
            {"rate": 100, "max_vus": 20},
        ),
    ],
)
def test_schedule_good_and_defaults_filled(
    runtime: str, schedule: str, expected: dict[str, float]
) -> None:
    s = load(_sch(runtime, schedule)).schedule
    for key, value in expected.items():
        assert getattr(s, key) == value, key
    assert peak_vus(s) >= 1


@pytest.mark.parametrize(
    ("runtime", "schedule", "key", "fragment", "hint"),
    [
        ("duration_seconds = 10\n", 'type = "constant"\n', "schedule.vus", "or runtime.vus", None),
        (
            "duration_seconds = 10\n",
            'type = "constnt"\nvus = 1\n',
            "schedule.type",
            "invalid",
            "constant",
        ),
        ("duration_seconds = 10\nvus = 1\n", "vus = 0\n", "schedule.vus", ">= 1", None),
        (
            "duration_seconds = 10\nvus = 1\n",
            'type = "ramp"\nrate = 5\n',
            "schedule.rate",
            "does not apply to schedule type 'ramp'",
            None,
        ),
        (
            "duration_seconds = 10\nvus = 1\n",
            'type = "constant"\nend_vus = 5\n',
            "schedule.end_vus",
            "does not apply to schedule type 'constant'",
            None,
        ),
        ("duration_seconds = 10\n", 'type = "ramp"\n', "schedule.end_vus", "or runtime.vus", None),
        (
            "iterations = 2\nvus = 3\n",
            'type = "ramp"\n',
            "schedule.ramp_duration_seconds",
            "required when",
            None,
        ),
        (
            "duration_seconds = 10\nvus = 3\n",
            'type = "ramp"\nhold_duration_seconds = 10\n',
            "schedule.hold_duration_seconds",
            "no time to ramp",
            None,
        ),
        (
            "duration_seconds = 10\nvus = 3\n",
            'type = "ramp"\nramp_duration_seconds = 8\nhold_duration_seconds = 5\n',
            "schedule.ramp_duration_seconds",
            "exceeds runtime.duration_seconds",
            None,
        ),
        (
            "duration_seconds = 10\nvus = 3\n",
            'type = "ramp"\nramp_duration_seconds = 0\n',
            "schedule.ramp_duration_seconds",
            "> 0",
            None,
        ),
        (
            "duration_seconds = 10\nvus = 3\n",
            'type = "ramp"\nstart_vus = -1\n',
            "schedule.start_vus",
            ">= 0",
            None,
        ),
        (
            "duration_seconds = 10\n",
            'type = "ramp"\nstart_vus = 0\nend_vus = 0\n',
            "schedule",
            "never has a VU",
            None,
        ),
        (
            "duration_seconds = 10\nvus = 3\n",
            'type = "spike"\nspike_duration_seconds = 2\n',
            "schedule.spike_start_seconds",
            "required",
            None,
        ),
        (
            "duration_seconds = 10\nvus = 3\n",
            'type = "spike"\nspike_start_seconds = 2\n',
            "schedule.spike_duration_seconds",
            "required",
            None,
        ),
        (
            "duration_seconds = 10\nvus = 3\n",
            'type = "spike"\nspike_start_seconds = 8\nspike_duration_seconds = 5\n',
            "schedule.spike_duration_seconds",
            "after runtime.duration_seconds",
            None,
        ),
        (
            "duration_seconds = 10\n",
            'type = "spike"\nspike_start_seconds = 1\nspike_duration_seconds = 1\n',
            "schedule.spike_vus",
            "or runtime.vus",
            None,
        ),
        (
            "duration_seconds = 10\nvus = 3\n",
            'type = "spike"\nbaseline_vus = -2\n'
            "spike_start_seconds = 1\nspike_duration_seconds = 1\n",
            "schedule.baseline_vus",
            ">= 0",
            None,
        ),
        ("duration_seconds = 10\n", 'type = "steps"\n', "schedule.steps", "at least one", None),
        (
            "duration_seconds = 10\n",
            'type = "steps"\nsteps = [{vus = -1, duration_seconds = 1}]\n',
            "schedule.steps[0].vus",
            ">= 0",
            None,
        ),
        (
            "duration_seconds = 10\n",
            'type = "steps"\nsteps = [{vus = 1, duration_seconds = 1}, '
            "{vus = 1, duration_seconds = 0}]\n",
            "schedule.steps[1].duration_seconds",
            "> 0",
            None,
        ),
        (
            "duration_seconds = 10\n",
            'type = "steps"\nsteps = [{vus = 0, duration_seconds = 1}]\n',
            "schedule.steps",
            "0 VUs",
            None,
        ),
        (
            "duration_seconds = 10\n",
            'type = "steps"\nsteps = [{vus = 1, duration_seconds = 6}, '
            "{vus = 2, duration_seconds = 6}]\n",
            "schedule.steps",
            "longer than runtime.duration_seconds",
            None,
        ),
        (
            "duration_seconds = 10\nvus = 1\n",
            'type = "steps"\nvus = 3\n',
            "schedule.vus",
            "does not apply to schedule type 'steps'",
            None,
        ),
        (
            "duration_seconds = 10\nvus = 1\n",
            'type = "arrival_rate"\n',
            "schedule.rate",
            "required",
            None,
        ),
        (
            "duration_seconds = 10\nvus = 1\n",
            'type = "arrival_rate"\nrate = 0\n',
            "schedule.rate",
            ">= 1e-06",
            None,
        ),
        (
            "duration_seconds = 10\nvus = 1\n",
            'type = "arrival_rate"\nrate = 1e-300\n',  # 1/rate overflowed in the workers
            "schedule.rate",
            ">= 1e-06, got 1e-300",
            None,
        ),
        (
            "duration_seconds = 10\n",
            'type = "arrival_rate"\nrate = 5\n',
            "schedule.max_vus",
            "or runtime.vus",
            None,
        ),
        (
            "duration_seconds = 10\n",
            'type = "arrival_rate"\nrate = 5\nmax_vus = 0\n',
            "schedule.max_vus",
            ">= 1",
            None,
        ),
        (
            "iterations = 10\nvus = 2\n",
            'type = "arrival_rate"\nrate = 5\n',
            "schedule.type",
            "needs runtime.duration_seconds",
            None,
        ),
    ],
)
def test_schedule_bad(
    runtime: str, schedule: str, key: str, fragment: str, hint: str | None
) -> None:
    text = _sch(runtime, schedule)
    err = fail(text)
    assert err.key == key
    assert fragment in err.message
    assert err.hint == hint
    assert err.line is not None
    assert err.line >= line_of(text, "[schedule]") or key.startswith("runtime")


def test_schedule_steps_array_of_tables_line() -> None:
    text = _sch(
        "duration_seconds = 10\n",
        'type = "steps"\n[[schedule.steps]]\nvus = 1\nduration_seconds = 1\n'
        "[[schedule.steps]]\nvus = -4\nduration_seconds = 1\n",
    )
    err = fail(text)
    assert err.key == "schedule.steps[1].vus"
    assert err.line == line_of(text, "vus = -4")


# --------------------------------------------------------------------------- think time


@pytest.mark.parametrize(
    "body",
    [
        "duration_ms = 0\n",
        'type = "constant"\nduration_ms = 250\n',
        'type = "random"\nmin_ms = 0\nmax_ms = 0\n',
        'type = "random"\nmin_ms = 10\nmax_ms = 20\n',
    ],
)
def test_think_time_good(body: str) -> None:
    s = load(BASE + "[think_time]\n" + body)
    assert s.think_time is not None


@pytest.mark.parametrize(
    ("body", "key", "fragment"),
    [
        ('type = "constant"\n', "think_time.duration_ms", "required"),
        ("duration_ms = -1\n", "think_time.duration_ms", ">= 0"),
        ('type = "random"\nmax_ms = 5\n', "think_time.min_ms", "required"),
        ('type = "random"\nmin_ms = 5\n', "think_time.max_ms", "required"),
        ('type = "random"\nmin_ms = -1\nmax_ms = 5\n', "think_time.min_ms", ">= 0"),
        ('type = "random"\nmin_ms = 9\nmax_ms = 5\n', "think_time.max_ms", "min_ms"),
        ('type = "random"\nduration_ms = 5\n', "think_time.duration_ms", "does not apply"),
        ('type = "gaussian"\n', "think_time.type", "invalid value"),
    ],
)
def test_think_time_bad(body: str, key: str, fragment: str) -> None:
    err = fail(BASE + "[think_time]\n" + body)
    assert err.key == key
    assert fragment in err.message


# --------------------------------------------------------------------------- sequence


def _seq(body: str) -> str:
    return RUNTIME + TARGET + REQ_A + REQ_B + "[sequence]\n" + body


def test_sequence_good() -> None:
    s = load(
        _seq(
            'type = "ordered"\n[[sequence.steps]]\nrequest = "a"\n[[sequence.steps]]\n'
            'request = "b"\nrepeat = 3\n'
        )
    )
    assert s.sequence is not None
    assert [(st.request, st.repeat) for st in s.sequence.steps] == [("a", 1), ("b", 3)]


def test_sequence_ignores_zero_weights() -> None:
    text = (
        RUNTIME + TARGET + REQ_A + "weight = 0\n" + "[sequence]\n"
        '[[sequence.steps]]\nrequest = "a"\n'
    )
    assert load(text).sequence is not None
    assert "sum to 0" in fail(RUNTIME + TARGET + REQ_A + "weight = 0\n").message


@pytest.mark.parametrize(
    ("body", "key", "fragment", "hint"),
    [
        ("", "sequence.steps", "at least one", None),
        (
            '[[sequence.steps]]\nrequest = "c"\n',
            "sequence.steps[0].request",
            "unknown request",
            None,
        ),
        (
            '[[sequence.steps]]\nrequest = "a"\n[[sequence.steps]]\nrequest = "bb"\n',
            "sequence.steps[1].request",
            "unknown request 'bb'",
            "b",
        ),
        (
            '[[sequence.steps]]\nrequest = "a"\nrepeat = 0\n',
            "sequence.steps[0].repeat",
            ">= 1",
            None,
        ),
        ('type = "random"\n[[sequence.steps]]\nrequest = "a"\n', "sequence.type", "invalid", None),
    ],
)
def test_sequence_bad(body: str, key: str, fragment: str, hint: str | None) -> None:
    err = fail(_seq(body))
    assert err.key == key
    assert fragment in err.message
    assert err.hint == hint


def test_sequence_did_you_mean_request_name() -> None:
    text = (
        RUNTIME
        + TARGET
        + REQ_A.replace('"a"', '"login"')
        + '[sequence]\n[[sequence.steps]]\nrequest = "logn"\n'
    )
    err = fail(text)
    assert err.hint == "login"
    assert err.line == line_of(text, 'request = "logn"')


# --------------------------------------------------------------------------- assertions


def test_assertions_good() -> None:
    s = load(
        BASE + "[assertions]\np50_latency_ms = 1\np90_latency_ms = 2\np95_latency_ms = 3\n"
        "p99_latency_ms = 4\np999_latency_ms = 5.5\nerror_rate_max = 0\nsuccess_rate_min = 1\n"
        "rps_min = 0\nstatus_5xx_max_rate = 0.5\n"
    )
    assert s.assertions.p999_latency_ms == 5.5
    assert s.assertions.success_rate_min == 1.0


@pytest.mark.parametrize(
    ("body", "key", "fragment"),
    [
        ("p99_latency_ms = 0\n", "assertions.p99_latency_ms", "> 0"),
        ("p50_latency_ms = -5\n", "assertions.p50_latency_ms", "> 0"),
        ("error_rate_max = 1.5\n", "assertions.error_rate_max", "<= 1"),
        ("success_rate_min = -0.1\n", "assertions.success_rate_min", ">= 0"),
        ("status_5xx_max_rate = 2\n", "assertions.status_5xx_max_rate", "<= 1"),
        ("rps_min = -1\n", "assertions.rps_min", ">= 0"),
        ("p99_latency = 5\n", "assertions.p99_latency", "unknown key"),
    ],
)
def test_assertions_bad(body: str, key: str, fragment: str) -> None:
    text = BASE + "[assertions]\n" + body
    err = fail(text)
    assert err.key == key
    assert fragment in err.message
    assert err.line == line_of(text, body.split(" =")[0])


def test_abort_on_fail_loads_and_is_described() -> None:
    s = load(
        BASE
        + "[assertions]\nerror_rate_max = 0.01\nabort_on_fail = true\nabort_delay_seconds = 10\n"
    )
    assert (s.assertions.abort_on_fail, s.assertions.abort_delay_seconds) == (True, 10.0)
    assert (
        "  abort_on_fail: the goals are checked every 2 s from 10 s into the run, on the "
        "metrics so far (not rps_min); the first that fails stops the run"
    ) in describe_scenario(s)
    assert load(BASE).assertions.abort_on_fail is False


def test_abort_on_fail_may_name_the_goals_it_checks() -> None:
    text = (
        BASE
        + REQ_B
        + (
            "[assertions]\nerror_rate_max = 0.1\np99_latency_ms = 500\n"
            'abort_on_fail = ["by_name.b.error_rate_max", "error_rate_max"]\n'
            "[assertions.by_name.b]\nerror_rate_max = 0\n"
        )
    )
    s = load(text)
    assert s.assertions.abort_on_fail == ["by_name.b.error_rate_max", "error_rate_max"]
    assert (
        "  abort_on_fail: the goals by_name.b.error_rate_max, error_rate_max are checked every 2 s"
    ) in describe_scenario(s)


@pytest.mark.parametrize(
    ("value", "key", "fragment", "hint"),
    [
        ("[]", "assertions.abort_on_fail", "an empty list checks no goal", None),
        (
            '["error_rate"]',
            "assertions.abort_on_fail[0]",
            "no goal 'error_rate' is set; the goals are: error_rate_max, rps_min",
            "error_rate_max",
        ),
        (
            '["error_rate_max", "rps_min"]',
            "assertions.abort_on_fail[1]",
            "rps_min is not checked during a run",
            None,
        ),
        (
            '["by_name.a.error_rate_max"]',
            "assertions.abort_on_fail[0]",
            "no goal",
            "error_rate_max",
        ),
        (
            '["error_rate_max", "error_rate_max"]',
            "assertions.abort_on_fail[1]",
            "'error_rate_max' is listed twice",
            None,
        ),
    ],
)
def test_abort_on_fail_names_only_goals_it_can_check(
    value: str, key: str, fragment: str, hint: str | None
) -> None:
    text = BASE + f"[assertions]\nerror_rate_max = 0.1\nrps_min = 1\nabort_on_fail = {value}\n"
    err = fail(text)
    assert err.key == key
    assert fragment in err.message
    assert err.hint == hint
    assert err.line == line_of(text, "abort_on_fail =")


@pytest.mark.parametrize(
    ("body", "note"),
    [
        ("abort_on_fail = true\n", "abort_on_fail has no goal to check during the run"),
        ("rps_min = 1\nabort_on_fail = true\n", "(rps_min is checked only at the end)"),
        ("abort_delay_seconds = 3\n", "abort_delay_seconds does nothing without abort_on_fail"),
        (
            "error_rate_max = 0\nabort_on_fail = true\nabort_delay_seconds = 10\n",
            "abort_delay_seconds (10 s) is not before the end of the run (10 s)",
        ),
    ],
)
def test_abort_settings_that_can_do_nothing_are_noted(body: str, note: str) -> None:
    assert note in describe_scenario(load(BASE + "[assertions]\n" + body))


@pytest.mark.parametrize(
    ("body", "key", "fragment"),
    [
        (
            "abort_on_fail = 1\n",
            "assertions.abort_on_fail",
            "expected boolean or array, got integer",
        ),
        ("abort_delay_seconds = -1\n", "assertions.abort_delay_seconds", ">= 0"),
        ('abort_delay_seconds = "10s"\n', "assertions.abort_delay_seconds", "number of seconds"),
    ],
)
def test_abort_on_fail_bad(body: str, key: str, fragment: str) -> None:
    err = fail(BASE + "[assertions]\n" + body)
    assert err.key == key
    assert fragment in err.message


def test_assertions_misspelled_key_hint() -> None:
    err = fail(BASE + "[assertions]\np99_latency = 5\n")
    assert err.hint == "p99_latency_ms"


def test_per_request_goals_load_in_file_order() -> None:
    s = load(
        BASE + REQ_B + "[assertions]\np99_latency_ms = 9\n"
        "[assertions.by_name.b]\np95_latency_ms = 2.5\nerror_rate_max = 0\n"
        "[assertions.by_name.a]\nrps_min = 10\nstatus_5xx_max_rate = 0.01\n"
        "success_rate_min = 1\np50_latency_ms = 1\np90_latency_ms = 1\n"
        "p99_latency_ms = 1\np999_latency_ms = 1\n"
    )
    assert s.assertions.p99_latency_ms == 9
    assert list(s.assertions.by_name) == ["b", "a"]
    assert s.assertions.by_name["b"].p95_latency_ms == 2.5
    assert s.assertions.by_name["a"].rps_min == 10
    assert "b: p95 latency <= 2.5 ms  (by_name.b.p95_latency_ms)" in describe_scenario(s)


@pytest.mark.parametrize(
    ("body", "key", "fragment", "hint", "needle"),
    [
        (
            "[assertions.by_name.c]\np99_latency_ms = 5\n",
            "assertions.by_name.c",
            "no request is named 'c'; known: 'a', 'b'",
            None,
            "by_name.c]",
        ),
        (
            "[assertions.by_name.bb]\np99_latency_ms = 5\n",
            "assertions.by_name.bb",
            "no request is named 'bb'",
            "b",
            "by_name.bb]",
        ),
        (
            "[assertions.by_name.b]\np99_latency = 5\n",
            "assertions.by_name.b.p99_latency",
            "unknown key 'p99_latency' in [assertions.by_name.b]",
            "p99_latency_ms",
            "p99_latency =",
        ),
        (
            "[assertions.by_name.b]\ndropped_iterations_max = 0\n",
            "assertions.by_name.b.dropped_iterations_max",
            "applies to the whole run only",
            None,
            "dropped_iterations_max",
        ),
        (
            "[assertions.by_name.b]\np99_latency_ms = 0\n",
            "assertions.by_name.b.p99_latency_ms",
            "must be > 0",
            None,
            "p99_latency_ms",
        ),
        (
            "[assertions.by_name.b]\nerror_rate_max = 2\n",
            "assertions.by_name.b.error_rate_max",
            "must be <= 1",
            None,
            "error_rate_max",
        ),
        (
            '[assertions.by_name.b]\nrps_min = "5"\n',
            "assertions.by_name.b.rps_min",
            "expected number, got string",
            None,
            "rps_min",
        ),
        (
            "[assertions]\nby_name = 3\n",
            "assertions.by_name",
            "expected a table of request names, got integer",
            None,
            "by_name",
        ),
        (
            "[assertions.by_name]\nb = 3\n",
            "assertions.by_name.b",
            "expected a table of goals, got integer",
            None,
            "b = 3",
        ),
    ],
)
def test_per_request_goals_bad(
    body: str, key: str, fragment: str, hint: str | None, needle: str
) -> None:
    text = BASE + REQ_B + body
    err = fail(text)
    assert err.key == key
    assert fragment in err.message
    assert err.hint == hint
    assert err.line == line_of(text, needle)


@pytest.mark.parametrize("name", ["a.b", "with space", 'say "hi"', "ünï ☃"])
def test_errors_in_a_quoted_request_s_goals_have_their_line(name: str) -> None:
    quoted = json.dumps(name, ensure_ascii=False)
    req = f'[[requests]]\nname = {quoted}\nmethod = "GET"\npath = "/"\n'
    text = BASE + req + f"[assertions.by_name.{quoted}]\nrps_min = 1\nerror_rate_max = 2\n"
    err = fail(text)
    assert err.key is not None
    assert err.key.endswith(".error_rate_max")
    assert err.line == line_of(text, "error_rate_max = 2")


def test_an_unquoted_name_with_dots_says_to_quote_it() -> None:
    req = '[[requests]]\nname = "x.y"\nmethod = "GET"\npath = "/"\n'
    text = BASE + req + "[assertions.by_name.x.y]\np99_latency_ms = 5\n"
    err = fail(text)
    assert err.key == "assertions.by_name.x.y"
    assert err.message == (
        "a table inside the goals of 'x': a request name with dots must be quoted, as in "
        '[assertions.by_name."x.y"]'
    )
    assert err.line == line_of(text, "by_name.x.y]")


def test_a_per_request_goal_for_a_name_with_spaces_quotes_it_in_the_key() -> None:
    text = BASE + '[assertions.by_name."a b"]\np99_latency_ms = -1\n'
    err = fail(text)
    assert err.key == 'assertions.by_name."a b"'
    assert "no request is named 'a b'" in err.message


# --------------------------------------------------------------------------- limits


def test_limits_good_and_default_timeout_capped() -> None:
    s = load(
        BASE + REQ_B + "timeout_ms = 500\n[limits]\nmax_vus = 5\nmax_connections = 5\n"
        "request_timeout_ms = 1000\nmax_event_log_size_mb = 10\n"
    )
    assert s.limits.max_vus == 5
    assert s.requests[0].timeout_ms == 1000  # unwritten default capped by the limit
    assert s.requests[1].timeout_ms == 500


@pytest.mark.parametrize(
    ("body", "key", "fragment"),
    [
        ("max_vus = 4\n", "limits.max_vus", "scenario exceeds [limits]"),
        ("max_connections = 4\n", "limits.max_connections", "scenario exceeds [limits]"),
        ("max_vus = 0\n", "limits.max_vus", ">= 1"),
        ("max_event_log_size_mb = 0\n", "limits.max_event_log_size_mb", "> 0"),
        ("request_timeout_ms = 0\n", "limits.request_timeout_ms", ">= 1"),
    ],
)
def test_limits_bad(body: str, key: str, fragment: str) -> None:
    err = fail(BASE + "[limits]\n" + body)
    assert err.key == key
    assert fragment in err.message


def test_limits_request_timeout_exceeded_by_explicit_timeout() -> None:
    text = BASE + "timeout_ms = 2000\n[limits]\nrequest_timeout_ms = 1000\n"
    err = fail(text)
    assert err.key == "requests[0].timeout_ms"
    assert "scenario exceeds [limits]" in err.message
    assert err.line == line_of(text, "timeout_ms = 2000")


def test_limits_max_vus_checks_schedule_peak() -> None:
    text = (
        _sch(
            "duration_seconds = 10\n",
            'type = "steps"\nsteps = [{vus = 2, duration_seconds = 1}, '
            "{vus = 9, duration_seconds = 1}]\n",
        )
        + "[limits]\nmax_vus = 8\n"
    )
    err = fail(text)
    assert "peak of 9 VUs" in err.message


# --------------------------------------------------------------------------- message format


def test_rendered_message_format() -> None:
    text = "[runtime]\nduration_seconds = 10\nvsu = 10\n" + TARGET + REQ_A
    assert str(fail(text)) == (
        "test.toml:3: runtime.vsu: unknown key 'vsu' in [runtime] (did you mean 'vus'?)"
    )


def test_line_locator_skips_multiline_strings() -> None:
    text = (
        RUNTIME
        + TARGET
        + REQ_A
        + "body = '''\n[runtime]\nvus = 1\n'''\n"
        + REQ_B.replace('"POST"', '"FETCH"')
    )
    err = fail(text)
    assert err.key == "requests[1].method"
    assert err.line == line_of(text, '"FETCH"')


def test_describe_mentions_schedule_goals_and_notes() -> None:
    s = load(
        _sch(
            "duration_seconds = 20\nvus = 4\nflush_interval = 5\n",
            'type = "ramp"\nramp_duration_seconds = 10\nhold_duration_seconds = 10\n',
        )
        + REQ_B
        + "weight = 3\n[assertions]\np99_latency_ms = 100\nerror_rate_max = 0.01\n"
        "[think_time]\nduration_ms = 5\n"
    )
    text = describe_scenario(s)
    assert "ramp from 0 to 4 VUs over 10 s, then hold 4 VUs for 10 s" in text
    assert "VU profile" in text
    assert "25.0 %" in text
    assert "75.0 %" in text
    assert "p99 latency <= 100 ms" in text
    assert "error rate <= 1 %" in text
    assert "5 ms after each request" in text
    assert "flush_interval" in text


def test_describe_arrival_rate_shows_rate_and_pool() -> None:
    s = load(_sch("duration_seconds = 10\n", 'type = "arrival_rate"\nrate = 50\nmax_vus = 7\n'))
    text = describe_scenario(s)
    assert "50 iterations/s" in text
    assert "pool of 7 VUs" in text
    assert "500 iterations due" in text


@pytest.mark.parametrize(
    ("rate", "duration", "due"),
    [
        ("1", "0.1", "1 iteration due"),
        ("0.4", "3", "2 iterations due"),
        ("2.5", "1", "3 iterations due"),
    ],
)
def test_describe_arrival_rate_counts_the_arrivals_due(rate: str, duration: str, due: str) -> None:
    # Iteration n is due at n / rate: 2.5/s for 1 s runs three (0, 0.4, 0.8 s), not round(2.5).
    s = load(
        _sch(
            f"duration_seconds = {duration}\n",
            f'type = "arrival_rate"\nrate = {rate}\nmax_vus = 1\n',
        )
    )
    text = describe_scenario(s)
    assert due in text
    assert "pool of 1 VU " in text


STAGES = (
    'type = "arrival_rate"\nmax_vus = 9\n'
    "[[schedule.stages]]\nrate = 400\nduration_seconds = 2\n"
    "[[schedule.stages]]\nrate = 400\nduration_seconds = 2\n"
    "[[schedule.stages]]\nrate = 0\nduration_seconds = 2\n"
)


def test_arrival_rate_stages_load_and_describe() -> None:
    s = load(_sch("duration_seconds = 7\n", STAGES))
    assert s.schedule.rate == 0.0  # the starting rate defaults to 0, as k6's startRate
    assert [(st.rate, st.duration_seconds) for st in s.schedule.stages] == [
        (400, 2),
        (400, 2),
        (0, 2),
    ]
    text = describe_scenario(s)
    assert (
        "arrival rate (open model): from 0 iterations/s, to 400 over 2 s, to 400 over 2 s, "
        "to 0 over 2 s, then 0 to the end, 1600 iterations due, from a pool of 9 VUs"
    ) in text
    assert "Rate profile (iterations/s):" in text
    # The stage ends are rows too: the peak shows, and where the rate turns.
    rows = {
        line.split("|")[0].strip(): line.rsplit(" ", 1)[1]
        for line in text.splitlines()
        if " s |" in line
    }
    assert (rows["2 s"], rows["4 s"], rows["6 s"]) == ("400", "400", "0")
    inline = load(
        _sch(
            "duration_seconds = 4\n",
            'type = "arrival_rate"\nrate = 10\nmax_vus = 2\n'
            "stages = [{rate = 30, duration_seconds = 4}]\n",
        )
    )
    assert "to 30 over 4 s, 80 iterations due" in describe_scenario(inline)


def test_stages_that_add_up_to_the_run_in_decimal_fill_it() -> None:
    # 0.1 + 0.2 is 0.30000000000000004 in floats: compared at ns resolution it fills 0.3 s.
    s = load(
        _sch(
            "duration_seconds = 0.3\n",
            'type = "arrival_rate"\nmax_vus = 2\nrate = 10\n'
            "stages = [{rate = 20, duration_seconds = 0.1}, {rate = 5, duration_seconds = 0.2}]\n",
        )
    )
    assert len(s.schedule.stages) == 2


def test_a_duration_before_the_first_arrival_is_refused() -> None:
    # Nothing is due during the first 2 s: a --duration of 1 s would run and send nothing.
    from z6.engine.errors import ConfigError
    from z6.engine.overrides import apply_overrides

    sc = load(
        _sch(
            "duration_seconds = 4\n",
            'type = "arrival_rate"\nmax_vus = 2\n'
            "stages = [{rate = 0, duration_seconds = 2}, {rate = 50, duration_seconds = 2}]\n",
        )
    )
    with pytest.raises(ConfigError, match=r"--duration 1 s ends the run before the first arrival"):
        apply_overrides(sc, duration=1.0)
    assert apply_overrides(sc, duration=2.5).runtime.duration_seconds == 2.5


@pytest.mark.parametrize(
    ("runtime", "schedule", "key", "fragment"),
    [
        ("duration_seconds = 5\n", STAGES, "schedule.stages", "the stages last 6 s, longer"),
        (
            "duration_seconds = 9\n",
            STAGES.replace("rate = 400", "rate = -1", 1),
            "schedule.stages[0].rate",
            "must be 0 or >= 1e-06, got -1",
        ),
        (
            "duration_seconds = 9\n",
            STAGES.replace("rate = 400", "rate = 2e6", 1),
            "schedule.stages[0].rate",
            "<= 1000000",
        ),
        (
            "duration_seconds = 9\n",
            STAGES.replace("duration_seconds = 2", "duration_seconds = 0", 1),
            "schedule.stages[0].duration_seconds",
            "> 0",
        ),
        (
            "duration_seconds = 9\n",
            STAGES.replace("rate = 400", "rate = 0"),
            "schedule.stages",
            "no arrival is due during the run",
        ),
        (
            "duration_seconds = 9\n",
            STAGES + "[[schedule.stages]]\nvus = 1\nduration_seconds = 1\n",
            "schedule.stages[3].vus",
            "unknown key",
        ),
        (
            "duration_seconds = 9\n",
            STAGES.replace('type = "arrival_rate"\nmax_vus = 9', 'type = "ramp"\nvus = 9'),
            "schedule.stages",
            "does not apply to schedule type 'ramp'",
        ),
        (
            "duration_seconds = 9\n",
            STAGES.replace("max_vus = 9", "max_vus = 9\nrate = -3"),
            "schedule.rate",
            "must be 0 or >= 1e-06, got -3",
        ),
        (
            "duration_seconds = 9\n",
            STAGES.replace("max_vus = 9", "max_vus = 9\nrate = 1e-9"),
            "schedule.rate",
            "must be 0 or >= 1e-06, got 1e-09",
        ),
        # A key after [[schedule.stages]] belongs to the last stage, which has a rate.
        ("duration_seconds = 9\n", STAGES + "rate = -2\n", None, "Cannot overwrite a value"),
    ],
)
def test_arrival_rate_stages_bad(
    runtime: str, schedule: str, key: str | None, fragment: str
) -> None:
    err = fail(_sch(runtime, schedule))
    assert err.key == key
    assert fragment in err.message


def test_describe_iterations_mode_draws_the_vus_started_not_the_ramp_down() -> None:
    s = load(
        _sch(
            "iterations = 20\nvus = 4\n",
            'type = "ramp"\nstart_vus = 4\nend_vus = 0\nramp_duration_seconds = 1\n',
        )
    )
    text = describe_scenario(s)
    rows = [line for line in text.splitlines() if " s |" in line]
    assert rows
    assert all(line.endswith(" 4") for line in rows)
    assert "VUs started by then" in text
    assert "a ramp-down, the end of a spike or a lower step stops none" in text
    # Duration mode still draws the shape itself.
    d = load(
        _sch(
            "duration_seconds = 1\nvus = 4\n",
            'type = "ramp"\nstart_vus = 4\nend_vus = 0\nramp_duration_seconds = 1\n',
        )
    )
    drows = [line for line in describe_scenario(d).splitlines() if " s |" in line]
    assert drows[0].endswith(" 4")
    assert drows[-1].endswith(" 0")


def test_unknown_key_with_newline_renders_on_one_line() -> None:
    err = fail(RUNTIME + '"a\\nb" = 1\n' + TARGET + REQ_A)
    assert err.key == 'runtime."a\\nb"'
    assert len(str(err).splitlines()) == 1
    assert err.line == 4


def test_explicit_base_dir_for_embedded_text(tmp_path: Path) -> None:
    (tmp_path / "b.json").write_bytes(b"{}")
    text = _req('body_file = "b.json"\n')
    s = load_scenario_text(text, "events.bin:scenario", base_dir=tmp_path, env={})
    assert s.requests[0].body_bytes == b"{}"
    assert s.source_path == "events.bin:scenario"


def test_describe_profile_in_iterations_mode_covers_the_ramp() -> None:
    s = load(
        _sch(
            "iterations = 2\nvus = 8\n",
            'type = "ramp"\nramp_duration_seconds = 8\nhold_duration_seconds = 0\n',
        )
    )
    text = describe_scenario(s)
    assert "2 iterations per VU" in text
    rows = [line for line in text.splitlines() if " s |" in line]
    assert len(rows) == 9
    assert rows[0].rstrip().endswith(" 0")
    assert rows[-1].rstrip().endswith(" 8")


@pytest.mark.parametrize("opener", ["[", "{a = "])
def test_deeply_nested_toml_is_a_scenario_error(opener: str) -> None:
    with pytest.raises(ScenarioError, match="nested too deeply"):
        load_scenario_text("x = " + opener * 5000 + "\n", "deep.toml")


def test_overrides_apply_the_loader_bounds() -> None:
    from z6.engine.errors import ConfigError
    from z6.engine.loader import MAX_DURATION_SECONDS, MAX_VUS
    from z6.engine.overrides import apply_overrides

    sc = load_scenario_text(
        '[target]\nbase_url = "http://127.0.0.1:1"\n[runtime]\nvus = 1\nduration_seconds = 1\n'
        '[[requests]]\nname = "a"\nmethod = "GET"\npath = "/"\n',
        "s.toml",
    )
    for bad in (float("inf"), float("nan"), 1e18, MAX_DURATION_SECONDS * 2, 0.0):
        with pytest.raises(ConfigError, match="--duration"):
            apply_overrides(sc, duration=bad)
    with pytest.raises(ConfigError, match="--vus"):
        apply_overrides(sc, vus=MAX_VUS + 1)
    ok = apply_overrides(sc, duration=MAX_DURATION_SECONDS, vus=MAX_VUS)
    assert ok.runtime.duration_seconds == MAX_DURATION_SECONDS


@pytest.mark.parametrize(
    ("table", "key"),
    [("[limits]\nmax_connections = 3\n", "limits"), ("max_connections = 3\n", "target")],
)
def test_vus_override_keeps_the_connection_bounds(table: str, key: str) -> None:
    """``--vus`` must not get past a bound the file's own ``vus`` could not (one socket per VU)."""
    from z6.engine.errors import ConfigError
    from z6.engine.overrides import apply_overrides

    target = '[target]\nbase_url = "http://127.0.0.1:1"\n'
    text = (
        (target + table if key == "target" else target)
        + "[runtime]\nvus = 2\nduration_seconds = 1\n"
        + '[[requests]]\nname = "a"\nmethod = "GET"\npath = "/"\n'
        + (table if key == "limits" else "")
    )
    sc = load_scenario_text(text, "s.toml")
    assert apply_overrides(sc, vus=3).runtime.vus == 3
    with pytest.raises(ConfigError) as info:
        apply_overrides(sc, vus=4)
    assert str(info.value) == (
        f"--vus 4 needs 4 connections (one per VU), above {key}.max_connections = 3"
    )
    # Rebuilding a logged run (analyze, replay) takes what ran: an older z6 let it through.
    assert apply_overrides(sc, vus=4, check_connections=False).runtime.vus == 4


def test_a_duration_override_that_cuts_a_shape_says_so() -> None:
    from z6.engine.overrides import duration_cut_note

    spike = load_scenario(REPO / "scenarios" / "spike.toml", env={})
    assert duration_cut_note(spike, 3.0) == (
        "--duration 3 s ends the run before the end of its spike schedule (20 s long): "
        "the shape is cut at 3 s"
    )
    # The spike is over by 20 s: a shorter run than written that still holds it cuts nothing.
    assert duration_cut_note(spike, 25.0) is None
    assert duration_cut_note(spike, 20.0) is None
    assert duration_cut_note(spike, None) is None
    # Iterations mode: the override replaces the iterations, and cuts a ramp the same way.
    ramp = load_scenario(REPO / "scenarios" / "ramp.toml", env={})
    by_iterations = msgspec.structs.replace(
        ramp, runtime=msgspec.structs.replace(ramp.runtime, duration_seconds=None, iterations=5)
    )
    assert duration_cut_note(by_iterations, 1.5) == (
        "--duration 1.5 s ends the run before the end of its ramp schedule "
        f"({schedule_length_s(ramp.schedule):g} s long): the shape is cut at 1.5 s"
    )
    constant = load_scenario(REPO / "scenarios" / "constant.toml", env={})
    assert duration_cut_note(constant, 1.0) is None


@pytest.mark.parametrize(
    ("text", "key", "says"),
    [
        (
            RUNTIME.replace("duration_seconds", "duration") + TARGET + REQ_A,
            "runtime.duration",
            "did you mean 'duration_seconds'?",
        ),
        (_req("timeout = 100\n"), "requests[0].timeout", "did you mean 'timeout_ms'?"),
        (
            _req('timeout_ms = "100ms"\n'),
            "requests[0].timeout_ms",
            "expected integer, got string (the value is a number of milliseconds, e.g. "
            "timeout_ms = 30)",
        ),
    ],
)
def test_k6_style_keys_and_values_point_at_z6_s_spelling(text: str, key: str, says: str) -> None:
    err = fail(text)
    assert err.key == key
    assert says in str(err)


# --------------------------------------------------------------------------- path fields


def test_a_path_with_fields_loads_and_its_rules_apply_to_the_rest() -> None:
    s = load(
        RUNTIME
        + TARGET
        + '[[requests]]\nname = "a"\nmethod = "GET"\npath = "/i/{{ random 1 9 }}"\n'
    )
    assert s.requests[0].path == "/i/{{ random 1 9 }}"  # kept as written; rendered per send
    err = fail(RUNTIME + TARGET + '[[requests]]\nname = "a"\nmethod = "GET"\npath = "/i {{vu}}"\n')
    assert (err.key, err.line) == ("requests[0].path", 9)
    assert "must not contain spaces" in err.message


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/i/{{rand 1 9}}", "unknown field {{rand 1 9}}; a field is {{vu}}, {{iteration}} or"),
        ("/i/{{random 9 1}}", "{{random 9 1}}: LOW must be <= HIGH"),
        ("/i/{{vu", "'{{' without its '}}'"),
    ],
)
def test_a_field_that_is_not_one_is_refused_with_its_key(path: str, fragment: str) -> None:
    text = RUNTIME + TARGET + f'[[requests]]\nname = "a"\nmethod = "GET"\npath = "{path}"\n'
    err = fail(text)
    assert err.key == "requests[0].path"
    assert fragment in err.message
    assert err.line == line_of(text, "path =")


def test_vu_has_no_value_in_the_open_model() -> None:
    text = (
        '[runtime]\nduration_seconds = 1\n[target]\nbase_url = "http://127.0.0.1:9"\n'
        '[[requests]]\nname = "a"\nmethod = "GET"\npath = "/i/{{vu}}"\n'
        '[schedule]\ntype = "arrival_rate"\nrate = 10\nmax_vus = 2\n'
    )
    err = fail(text)
    assert err.key == "requests[0].path"
    assert err.message.startswith("{{vu}} has no value in the open model (arrival_rate)")
    assert load(text.replace("{{vu}}", "{{iteration}}")).requests[0].path == "/i/{{iteration}}"


def test_k6_iteration_values_written_as_environment_references_point_to_fields() -> None:
    text = RUNTIME + TARGET + '[[requests]]\nname = "a"\nmethod = "GET"\npath = "/i/${__ITER}"\n'
    err = fail(text)
    assert err.message == (
        "environment variable __ITER is not set (referenced as ${__ITER}); k6's __ITER is "
        "{{iteration}} in a z6 request path, body or header value"
    )
    assert "{{vu}} (from 0; k6 counts from 1)" in fail(text.replace("__ITER", "__VU")).message


def test_a_body_with_fields_loads_and_bad_fields_name_the_body() -> None:
    req = '[[requests]]\nname = "a"\nmethod = "POST"\npath = "/"\n'
    s = load(RUNTIME + TARGET + req + 'body = "{{ random 1 9 }}"\n')
    assert s.requests[0].body == "{{ random 1 9 }}"  # kept as written; rendered per send
    err = fail(RUNTIME + TARGET + req + 'body = "{{rand 1 9}}"\n')
    assert err.key == "requests[0].body"
    assert "unknown field {{rand 1 9}}" in err.message
    many = RUNTIME + TARGET + req.replace('path = "/"', 'path = "/' + "{{vu}}" * 10 + '"')
    err = fail(many + 'body = "' + "{{iteration}}" * 7 + '"\n')
    assert (err.key, err.message) == (
        "requests[0].body",
        "at most 16 fields per request, path, body and header values together, got 17",
    )


def test_vu_in_a_body_has_no_value_in_the_open_model() -> None:
    text = (
        '[runtime]\nduration_seconds = 1\n[target]\nbase_url = "http://127.0.0.1:9"\n'
        '[[requests]]\nname = "a"\nmethod = "POST"\npath = "/"\nbody = "{{vu}}"\n'
        '[schedule]\ntype = "arrival_rate"\nrate = 10\nmax_vus = 2\n'
    )
    err = fail(text)
    assert err.key == "requests[0].body"
    assert err.message.startswith("{{vu}} has no value in the open model")


def test_environment_values_are_sent_as_they_are_never_read_as_fields() -> None:
    # A password holding "{{vu}}" went out as "s3cr0"; one holding "{{2}}" was refused with
    # part of it in the message.
    req = '[[requests]]\nname = "a"\nmethod = "POST"\npath = "/u/${P}/{{iteration}}"\n'
    text = RUNTIME + TARGET + req + 'body = \'{"pw": "${PW}", "n": {{iteration}}}\'\n'
    s = load(text, env={"PW": "s3cr{{vu}}", "P": "x{{2}}"})
    (spec,) = s.requests
    assert spec.body_parts == ['{"pw": "s3cr{{vu}}", "n": ', "}"]
    assert spec.path_parts == ["/u/x{{2}}/", ""]
    assert spec.path == "/u/${P}/{{iteration}}"  # shown as written: no value in validate
    (prepared,) = prepare_requests(s)
    sent = prepared.render(1, 0, 0, 4, 0)
    assert sent.body == b'{"pw": "s3cr{{vu}}", "n": 4}'
    assert sent.target == "/u/x%7B%7B2%7D%7D/4"
    assert "s3cr" not in describe_scenario(s)


def test_a_base_url_override_is_checked_as_the_file_s_own() -> None:
    from z6.engine.errors import ConfigError
    from z6.engine.overrides import apply_overrides

    sc = load(BASE)
    assert apply_overrides(sc, base_url="https://Staging.example.com:8443/").target.base_url == (
        "https://Staging.example.com:8443"
    )
    for bad, fragment in (
        ("ftp://x", "--base-url must start with http:// or https://"),
        ("http://h/api", "--base-url must be scheme://host[:port] only"),
        ("http://u:p@h", "--base-url must not contain user info"),
        ("http://h:0", "--base-url port must be 1..65535"),
    ):
        with pytest.raises(ConfigError, match=re.escape(fragment)):
            apply_overrides(sc, base_url=bad)
    tls = load(BASE.replace(TARGET, TARGET + "tls = false\n"))
    with pytest.raises(ConfigError, match=r"disagrees with the scenario's target\.tls = false"):
        apply_overrides(tls, base_url="HTTPS://h")
    assert apply_overrides(tls, base_url="http://other:81").target.base_url == "http://other:81"


# --------------------------------------------------------------------------- header fields

REQ_H = '[[requests]]\nname = "a"\nmethod = "POST"\npath = "/"\n'


def test_a_header_value_with_fields_loads_kept_as_written_with_its_parts() -> None:
    text = RUNTIME + TARGET + REQ_H + 'headers = { "X-Id" = "r-{{ random 1 9 }}", A = "1" }\n'
    (spec,) = load(text).requests
    assert spec.headers == {"X-Id": "r-{{ random 1 9 }}", "A": "1"}
    assert spec.header_parts == {"X-Id": ["r-", ""]}
    (plain,) = load(BASE).requests
    assert plain.header_parts is None


@pytest.mark.parametrize(
    ("headers", "key", "fragment"),
    [
        (
            '{ "X-{{vu}}" = "1" }',
            'requests[0].headers."X-{{vu}}"',
            "header name 'X-{{vu}}': a header name takes no fields, only values",
        ),
        (
            '{ Host = "h{{vu}}" }',
            "requests[0].headers.Host",
            "Host takes no fields ({{...}}): z6 routes by it",
        ),
        (
            '{ "content-length" = "{{random 1 9}}" }',
            "requests[0].headers.content-length",
            "content-length takes no fields ({{...}}): z6 frames each request by it",
        ),
        (
            '{ Connection = "{{iteration}}" }',
            "requests[0].headers.Connection",
            "Connection takes no fields ({{...}}): z6 decides by it whether a connection is kept",
        ),
        (
            '{ "Transfer-Encoding" = "{{vu}}" }',
            "requests[0].headers.Transfer-Encoding",
            "Transfer-Encoding takes no fields ({{...}}): z6 frames each request by it",
        ),
        ('{ "X-Id" = "{{rand 1 9}}" }', "requests[0].headers.X-Id", "unknown field {{rand 1 9}}"),
        ('{ "X-Id" = "{{random 9 1}}" }', "requests[0].headers.X-Id", "LOW must be <= HIGH"),
        ('{ "X-Id" = "a{{vu" }', "requests[0].headers.X-Id", "'{{' without its '}}'"),
    ],
)
def test_fields_where_a_header_takes_none_are_refused_with_their_key(
    headers: str, key: str, fragment: str
) -> None:
    text = RUNTIME + TARGET + REQ_H + f"headers = {headers}\n"
    err = fail(text)
    assert err.key == key
    assert fragment in err.message
    assert err.line == line_of(text, "headers =")


@pytest.mark.parametrize(
    ("path", "body", "headers", "key"),
    [
        # 10 + 5 + 2: the header's fields go past the limit.
        (
            "/" + "{{vu}}" * 10,
            "{{iteration}}" * 5,
            '{ A = "{{vu}}{{vu}}" }',
            "requests[0].headers.A",
        ),
        # The body's are counted before the header values', though written after them: 10 +
        # 1 + 6, the header's go past the limit.
        (
            "/" + "{{vu}}" * 10,
            "{{iteration}}",
            '{ A = "' + "{{vu}}" * 6 + '" }',
            "requests[0].headers.A",
        ),
        # The headers in file order: B's fields are the 17th.
        ("/", "", '{ A = "' + "{{vu}}" * 16 + '", B = "{{vu}}" }', "requests[0].headers.B"),
    ],
)
def test_at_most_16_fields_in_a_request_path_body_and_header_values_together(
    path: str, body: str, headers: str, key: str
) -> None:
    text = RUNTIME + TARGET + REQ_H.replace('path = "/"', f'path = "{path}"')
    text += f'headers = {headers}\nbody = "{body}"\n'
    err = fail(text)
    assert (err.key, err.message) == (
        key,
        "at most 16 fields per request, path, body and header values together, got 17",
    )
    assert load(text.replace("{{vu}}", "1", 1)).requests[0].header_parts  # 16 fields load


def test_vu_in_a_header_value_has_no_value_in_the_open_model() -> None:
    text = (
        '[runtime]\nduration_seconds = 1\n[target]\nbase_url = "http://127.0.0.1:9"\n'
        + REQ_H
        + 'headers = { "X-Id" = "{{vu}}" }\n'
        + '[schedule]\ntype = "arrival_rate"\nrate = 10\nmax_vus = 2\n'
    )
    err = fail(text)
    assert err.key == "requests[0].headers.X-Id"
    assert err.message.startswith("{{vu}} has no value in the open model (arrival_rate)")
    (spec,) = load(text.replace("{{vu}}", "{{iteration}}")).requests
    assert spec.header_parts == {"X-Id": ["", ""]}


def test_environment_values_in_header_values_are_sent_as_they_are() -> None:
    # Fields come from the file only: a token holding "{{vu}}" is sent as written, in a
    # header with fields or without, and validate never shows it.
    headers = 'headers = { "X-Id" = "${TOK}-{{iteration}}", Authorization = "Bearer ${TOK}" }\n'
    s = load(RUNTIME + TARGET + REQ_H + headers, env={"TOK": "s3cr{{vu}}"})
    (spec,) = s.requests
    assert spec.header_parts == {"X-Id": ["s3cr{{vu}}-", ""]}
    assert spec.headers == {"X-Id": "${TOK}-{{iteration}}", "Authorization": "Bearer s3cr{{vu}}"}
    (prepared,) = prepare_requests(s)
    sent = prepared.render(1, 0, 0, 4, 0)
    assert b"\r\nX-Id: s3cr{{vu}}-4\r\n" in sent.raw
    assert b"\r\nAuthorization: Bearer s3cr{{vu}}\r\n" in sent.raw
    described = describe_scenario(s)
    assert "s3cr" not in described
    assert "2 headers (1 with fields, varying: X-Id)" in described
    # A value with {{ that is not a field, from the environment, in Host or Connection: sent.
    s = load(BASE.replace(REQ_A, REQ_H + 'headers = { Connection = "${C}" }\n'), env={"C": "{{"})
    assert s.requests[0].headers == {"Connection": "{{"}
