"""Property tests: the loader returns a Scenario or raises ScenarioError, never anything else."""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import msgspec
from conftest import fuzz_examples
from hypothesis import HealthCheck, given, settings, strategies as st

from z6.engine.describe import describe_scenario
from z6.engine.errors import ScenarioError
from z6.engine.loader import load_scenario, load_scenario_text
from z6.engine.requests import prepare_requests
from z6.engine.scenario import (
    Assertions,
    Limits,
    Metadata,
    RequestSpec,
    Runtime,
    Scenario,
    Schedule,
    Sequence,
    Target,
    ThinkTime,
)

FUZZ = settings(
    max_examples=fuzz_examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# Real keys and table names, so that generated documents often get past the unknown-key check
# and exercise the type and semantic passes.
TABLES = [
    "metadata",
    "runtime",
    "target",
    "schedule",
    "think_time",
    "sequence",
    "assertions",
    "limits",
]
KEYS = [
    "name", "description", "version", "tags", "duration_seconds", "iterations", "vus",
    "prng_seed", "graceful_stop_seconds", "event_log_path", "flush_interval", "base_url",
    "http_version", "verify_cert", "ca_bundle", "connection_timeout_ms", "max_connections",
    "tls", "method", "path", "headers", "body", "body_file", "timeout_ms", "weight",
    "expect_status", "type", "start_vus", "end_vus", "ramp_duration_seconds",
    "hold_duration_seconds", "baseline_vus", "spike_vus", "spike_start_seconds",
    "spike_duration_seconds", "steps", "rate", "max_vus", "duration_ms", "min_ms", "max_ms",
    "request", "repeat", "p50_latency_ms", "p99_latency_ms", "error_rate_max",
    "success_rate_min", "rps_min", "status_5xx_max_rate", "request_timeout_ms",
    "max_event_log_size_mb", "by_name", "dropped_iterations_max", "expect_body_contains",
    "expect_body_not_contains", "stages",
]  # fmt: skip
STRINGS = [
    "", "a", "GET", "get", "POST", "/", "/x", "x", "http://127.0.0.1:8080", "https://h",
    "http1.1", "http2", "constant", "ramp", "spike", "steps", "arrival_rate", "random",
    "ordered", "${X}", "$${X}", "/dev/null", "é", "a b", "/x/{{vu}}", "/{{random 1 9}}",
    "/{{iteration}}{{", "/{{random 9 1}}",
]  # fmt: skip

keys = st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=8))
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-3, max_value=200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(STRINGS),
    st.text(max_size=12),
    st.dates(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(keys, inner, max_size=4),
    ),
    max_leaves=8,
)
tables = st.dictionaries(keys, values, max_size=8)


def _str(text: str) -> str:
    """A TOML basic string: escape quotes, backslashes and control characters only."""
    out = []
    for ch in text:
        if ch in '"\\' or ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(k: str) -> str:
    return _str(k)


def _value(v: Any) -> str:
    """Inline TOML for ``v`` (a minimal writer: enough for the generated documents)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _str(v)
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def to_toml(doc: dict[str, Any]) -> str:
    """Serialize ``doc``: dict values become ``[tables]``, lists of dicts ``[[arrays]]``."""
    lines: list[str] = []
    for name, value in doc.items():
        if isinstance(value, dict):
            lines.append(f"[{_key(name)}]")
            lines.extend(f"{_key(k)} = {_value(v)}" for k, v in value.items())
        elif isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
            for item in value:
                lines.append(f"[[{_key(name)}]]")
                lines.extend(f"{_key(k)} = {_value(v)}" for k, v in item.items())
        else:
            lines.insert(0, f"{_key(name)} = {_value(value)}")
    return "\n".join(lines) + "\n"


VALID: dict[str, Any] = {
    "runtime": {"duration_seconds": 10, "vus": 3},
    "target": {"base_url": "http://127.0.0.1:8080"},
    "requests": [{"name": "a", "method": "GET", "path": "/"}],
}


def _load(text: str, resolve_external: bool) -> Scenario | ScenarioError:
    """Load ``text``; return the Scenario or the ScenarioError (anything else propagates)."""
    with tempfile.TemporaryDirectory() as d:
        try:
            return load_scenario_text(
                text,
                str(Path(d) / "fuzz.toml"),
                env={"X": "1"},
                resolve_external=resolve_external,
            )
        except ScenarioError as exc:
            return exc


def _check(text: str, resolve_external: bool = True) -> None:
    result = _load(text, resolve_external)
    if isinstance(result, ScenarioError):
        rendered = str(result)
        assert rendered.startswith(result.file or "<scenario>")
        assert len(rendered.splitlines()) == 1, rendered  # the CLI prints one line
        assert result.message
    else:
        assert describe_scenario(result)


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "fuzz.toml"
        p.write_bytes(data)
        with contextlib.suppress(ScenarioError):
            load_scenario(p, env={})


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text(text: str) -> None:
    _check(text)


@FUZZ
@given(st.dictionaries(st.one_of(st.sampled_from([*TABLES, "requests"]), keys), tables, max_size=5))
def test_arbitrary_documents(doc: dict[str, Any]) -> None:
    _check(to_toml(doc))


HEADER_NAMES = ["X-Id", "Host", "Connection", "User-Agent", "Accept", "X-{{vu}}", "x-id", "a b"]
HEADER_TEXT = st.lists(
    st.one_of(
        st.text(max_size=4),
        st.sampled_from(
            ["{{", "}}", "{{vu}}", "{{iteration}}", "{{random 1 9}}", "{{random 9 1}}", "${X}"]
        ),
    ),
    max_size=6,
).map("".join)


@FUZZ
@given(st.dictionaries(st.sampled_from(HEADER_NAMES), HEADER_TEXT, max_size=3), st.booleans())
def test_header_values_load_and_render_or_raise_scenario_error(
    headers: dict[str, str], open_model: bool
) -> None:
    # Header values take fields: any text loads, and then every send renders a head of the
    # same header lines, or the loader raises ScenarioError.
    doc = json.loads(json.dumps(VALID))
    doc["requests"][0]["headers"] = headers
    if open_model:
        doc["schedule"] = {"type": "arrival_rate", "rate": 10, "max_vus": 2}
    result = _load(to_toml(doc), True)
    if isinstance(result, ScenarioError):
        assert len(str(result).splitlines()) == 1
        return
    (req,) = prepare_requests(result)
    sent = req.render(1, 2, 2, 3, 4) if req.varies else req
    assert sent.base is req
    lines = sent.raw.split(b"\r\n")
    assert len(lines) == len(req.raw.split(b"\r\n")) == len(req.headers) + 3
    assert [line.split(b":")[0] for line in lines[1:-2]] == [n for n, _ in req.headers]
    assert req.varies == any("{{" in v for v in headers.values())


TABLE_KEYS: dict[str, list[str]] = {
    name: [f.name for f in msgspec.structs.fields(cls)]
    for name, cls in [
        ("metadata", Metadata),
        ("runtime", Runtime),
        ("target", Target),
        ("requests", RequestSpec),
        ("schedule", Schedule),
        ("think_time", ThinkTime),
        ("sequence", Sequence),
        ("assertions", Assertions),
        ("limits", Limits),
    ]
}


@st.composite
def mutation(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A table name and extra keys for it, mostly keys that table really has."""
    table = draw(st.sampled_from(sorted(TABLE_KEYS)))
    own = st.sampled_from(TABLE_KEYS[table])
    extra = draw(st.dictionaries(st.one_of(own, own, own, keys), values, max_size=4))
    return table, extra


@FUZZ
@given(st.dictionaries(st.one_of(st.just("a"), keys), values, max_size=3))
def test_per_request_goal_tables(by_name: dict[str, Any]) -> None:
    # "a" is VALID's request, so the goal tables often get past the name check.
    doc = json.loads(json.dumps(VALID))
    doc["assertions"] = {"by_name": by_name}
    _check(to_toml(doc), resolve_external=True)


@FUZZ
@given(mutation(), st.booleans())
def test_mutations_of_a_valid_document(change: tuple[str, dict[str, Any]], external: bool) -> None:
    table, extra = change
    doc = json.loads(json.dumps(VALID))
    if table == "requests":
        doc["requests"].append(extra)
    else:
        doc.setdefault(table, {}).update(extra)
    _check(to_toml(doc), resolve_external=external)


def test_writer_round_trips_valid_document() -> None:
    s = load_scenario_text(to_toml(VALID), env={})
    assert s.runtime.vus == 3
    assert s.requests[0].path == "/"
