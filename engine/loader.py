"""Load a scenario TOML file into a fully validated :class:`~z6.engine.scenario.Scenario`.

Validation runs in three passes so that every problem gets one precise message:

1. **Shape**: the TOML parses; every table and key is known (unknown ones get a 'did you
   mean' from :func:`difflib.get_close_matches`); enumerated strings (method, schedule type,
   ...) are valid; ``[[targets]]`` and HTTP/2 are rejected as not supported yet.
2. **Types**: each table goes through ``msgspec.convert`` into its Struct; a type error names
   the key path and the expected and actual TOML types.
3. **Semantics**: ranges, cross-checks (duration vs iterations, unique names, weights,
   sequence references, schedule parameters, ``[limits]``), ``${ENV}`` references,
   ``body_file`` and the ``[[data]]`` CSV files (read here, once, before any worker forks).

Every failure is a :class:`~z6.engine.errors.ScenarioError` (or its subclass
:class:`~z6.engine.errors.UnsupportedFeatureError`) carrying the file, the key path
(``requests[2].method``, 0-based indexes), the line where one is known and an optional hint.
The full rule set is documented in ``docs/scenario.md``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

import msgspec
import tomli

from z6.engine.body_check import MAX_CHECK_BYTES
from z6.engine.data import ORDERS, DataFileError, encode_path_value, read_csv
from z6.engine.errors import ConfigError, ScenarioError, UnsupportedFeatureError
from z6.engine.goals import GOAL_PERCENTILES, evaluate_goals, is_rate_goal
from z6.engine.scenario import (
    Assertions,
    DataSpec,
    Limits,
    Metadata,
    RateStage,
    RequestGoals,
    RequestSpec,
    Runtime,
    Scenario,
    Schedule,
    Sequence,
    Step,
    Target,
    ThinkTime,
)
from z6.engine.schedule import ArrivalPlan, peak_vus
from z6.engine.templates import MAX_FIELDS, Field, Template, TemplateError, parse_template

__all__ = [
    "HTTP_METHODS",
    "MAX_BODY_BYTES",
    "MAX_DURATION_SECONDS",
    "MAX_ITERATIONS",
    "MAX_MS",
    "MAX_RATE",
    "MAX_SCENARIO_BYTES",
    "MAX_SEED",
    "MAX_VUS",
    "MIN_RATE",
    "base_url_problem",
    "load_scenario",
    "load_scenario_text",
]

T = TypeVar("T", bound=msgspec.Struct)

HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")

# Sanity bounds: far beyond any real test, but they keep nanosecond times inside int64 and
# make absurd values (a typo with extra zeros) fail at load time instead of mid-run.
MAX_DURATION_SECONDS = 365 * 86_400.0
MAX_MS = 86_400_000.0
MAX_VUS = 1_000_000
MAX_ITERATIONS = 1_000_000_000
MAX_RATE = 1_000_000.0
# One arrival per 11.6 days: far below any real test, and 1/rate stays a finite int64 of ns.
MIN_RATE = 1e-6
MAX_BODY_BYTES = 64 * 1024 * 1024
# The scenario text travels in the event log's header, whose frame is limited to 64 MiB; JSON
# at most doubles TOML's allowed characters. Reading stops here, so /dev/zero cannot hang us.
MAX_SCENARIO_BYTES = 16 * 1024 * 1024
_MAX_REPEAT = 1_000_000
_MAX_WEIGHT = 1e12
MAX_SEED = 2**64 - 1
# A log size limit in MiB: 1 PiB, far above any disk, and its bytes stay an int64.
MAX_LOG_MB = 1024.0**3

_TABLES: dict[str, type[msgspec.Struct]] = {
    "metadata": Metadata,
    "runtime": Runtime,
    "target": Target,
    "requests": RequestSpec,
    "schedule": Schedule,
    "think_time": ThinkTime,
    "sequence": Sequence,
    "assertions": Assertions,
    "limits": Limits,
    "data": DataSpec,
}
# Arrays of tables, checked entry by entry.
_ARRAYS = ("requests", "data")
_UNSUPPORTED_TABLES = {
    "targets": "[[targets]] (several weighted targets) is not supported yet; "
    "use one [target] table",
}


def _fields(cls: type[msgspec.Struct], *exclude: str) -> tuple[str, ...]:
    return tuple(f.name for f in msgspec.structs.fields(cls) if f.name not in exclude)


_ALLOWED: dict[str, tuple[str, ...]] = {
    "metadata": _fields(Metadata),
    "runtime": _fields(Runtime),
    "target": _fields(Target),
    # body_bytes is filled by the loader and never read from TOML.
    "requests": _fields(
        RequestSpec, "body_bytes", "path_written", "path_parts", "body_parts", "header_parts"
    ),
    "schedule": _fields(Schedule),
    "schedule.steps": _fields(Step),
    "schedule.stages": _fields(RateStage),
    "think_time": _fields(ThinkTime),
    "sequence": ("type", "steps"),
    "sequence.steps": ("request", "repeat"),
    "assertions": _fields(Assertions),
    "assertions.by_name": _fields(RequestGoals),
    "limits": _fields(Limits),
    # Only these three are read from TOML; the rest is filled by the loader.
    "data": ("name", "file", "order"),
}
# Whole-run goals that a single request has no value for.
_RUN_ONLY_GOALS = {
    "dropped_iterations_max": "iterations are dropped before a request is chosen",
}

_SCHEDULE_KEYS: dict[str, tuple[str, ...]] = {
    "constant": ("vus",),
    "ramp": ("vus", "start_vus", "end_vus", "ramp_duration_seconds", "hold_duration_seconds"),
    "spike": (
        "vus",
        "baseline_vus",
        "spike_vus",
        "spike_start_seconds",
        "spike_duration_seconds",
    ),
    "steps": ("steps",),
    "arrival_rate": ("rate", "max_vus", "stages"),
}
_THINK_KEYS: dict[str, tuple[str, ...]] = {
    "constant": ("duration_ms",),
    "random": ("min_ms", "max_ms"),
}
_HTTP11_NAMES = ("http1.1", "http/1.1", "1.1", "h1", "http11")
_HTTP2_NAMES = ("http2", "http/2", "http/2.0", "2", "2.0", "h2", "h2c", "http2.0")
_HEADER_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_ENV_REF = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)\}")
_FORBIDDEN_HEADERS = ("content-length", "transfer-encoding")
# Headers z6 frames, routes or keeps connections by, fixed per request definition: no fields.
_FIXED_HEADERS = {
    "host": "z6 routes by it (a run's connections all go to the one host of base_url)",
    "content-length": "z6 frames each request by it (and sets it from the body; remove it)",
    "transfer-encoding": "z6 frames each request by it (and sends bodies with Content-Length; "
    "remove it)",
    "connection": "z6 decides by it whether a connection is kept for the next request",
}
_MSGSPEC_TYPES = {
    "int": "integer",
    "float": "number",
    "str": "string",
    "bool": "boolean",
    "array": "array",
    "object": "table",
    "null": "nothing",
    "date": "date",
    "datetime": "datetime",
    "time": "time",
}


# --------------------------------------------------------------------------- public API


def load_scenario(path: str | Path, *, env: Mapping[str, str] | None = None) -> Scenario:
    """Read, parse and validate the scenario file at ``path``.

    ``env`` supplies ``${NAME}`` values (default: ``os.environ``). ``body_file`` and
    ``target.ca_bundle`` resolve relative to the file's directory. Raises
    :class:`ScenarioError` for anything wrong with the file, including a missing file, a
    directory, or bytes that are not UTF-8.
    """
    p = Path(path)
    name = str(path)
    try:
        with p.open("rb") as f:
            data = f.read(MAX_SCENARIO_BYTES + 1)
    except FileNotFoundError:
        raise ScenarioError("file not found", file=name) from None
    except IsADirectoryError:
        raise ScenarioError("is a directory, not a scenario file", file=name) from None
    except PermissionError:
        raise ScenarioError("permission denied", file=name) from None
    except OSError as exc:
        raise ScenarioError(f"cannot read file: {exc.strerror or exc}", file=name) from None
    if len(data) > MAX_SCENARIO_BYTES:
        raise ScenarioError(
            f"larger than {MAX_SCENARIO_BYTES // (1024 * 1024)} MiB; put large bodies in body_file",
            file=name,
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ScenarioError(
            f"file is not valid UTF-8 (byte {exc.start})", file=name, line=line
        ) from None
    return load_scenario_text(text, name, base_dir=p.resolve().parent, env=env)


def load_scenario_text(
    text: str,
    path: str = "<scenario>",
    *,
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    resolve_external: bool = True,
) -> Scenario:
    """Parse and validate scenario ``text``; ``path`` is only used in messages and the model.

    ``base_dir`` is where relative ``body_file`` / ``ca_bundle`` paths resolve; when ``None``
    it is the directory of ``path`` (a pseudo name such as ``<scenario>`` has none, and a
    relative ``body_file`` then raises :class:`ScenarioError`).

    ``resolve_external=False`` rebuilds a scenario without touching the outside world, as
    ``z6 analyze`` / ``z6 replay`` do with the text embedded in an event log: every
    ``${NAME}`` becomes ``""`` (``env`` is not read, and a path with references is not
    checked again: the run checked it resolved), ``body_file`` is not read (``body_bytes``
    stays empty for it), ``[[data]]`` files are not read (their fields' names are checked,
    not their columns) and ``ca_bundle`` is not checked. Everything else is validated as
    usual.
    """
    if base_dir is None and not (path.startswith("<") and path.endswith(">")):
        base_dir = Path(path).resolve().parent
    ctx = _Context(
        file=path,
        text=text,
        base_dir=base_dir,
        env=os.environ if env is None else env,
        resolve_external=resolve_external,
    )
    scenario = _build(ctx)
    scenario.source_path = path
    scenario.source_text = text
    scenario.sha256 = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return scenario


# --------------------------------------------------------------------------- context


class _Context:
    """Per-load state: where we are, the source text for line lookups, the environment."""

    def __init__(
        self,
        *,
        file: str,
        text: str,
        base_dir: Path | None,
        env: Mapping[str, str],
        resolve_external: bool,
    ) -> None:
        self.file = file
        self.text = text
        self.base_dir = base_dir
        self.env = env
        self.resolve_external = resolve_external
        self._lines: dict[str, int] | None = None

    def line_of(self, key: str | None) -> int | None:
        """Best-effort 1-based line of ``key`` (or of its closest enclosing table).

        ``key`` is a key path as messages show it: components may be quoted
        (``assertions.by_name."a.b".rps_min``) and indexed (``requests[2].method``).
        """
        if key is None:
            return None
        if self._lines is None:
            self._lines = _locate_keys(self.text)
        tokens = _path_tokens(key)
        while tokens:
            probe = "".join(
                t if t.startswith("[") or i == 0 else f".{t}" for i, t in enumerate(tokens)
            )
            if probe in self._lines:
                return self._lines[probe]
            # Drop the last component: "a.b[1].c" -> "a.b[1]" -> "a.b" -> "a".
            tokens.pop()
        return None

    def fail(
        self,
        key: str | None,
        message: str,
        *,
        hint: str | None = None,
        line_key: str | None = None,
        cls: type[ScenarioError] = ScenarioError,
    ) -> NoReturn:
        """Raise ``cls`` for ``key``; the line is looked up for ``line_key`` or ``key``."""
        raise cls(
            message,
            file=self.file,
            key=key,
            line=self.line_of(line_key if line_key is not None else key),
            hint=hint,
        )


# --------------------------------------------------------------------------- line locator

_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(#.*)?$")
# A bare key, a basic string (with escapes: "say \"hi\"") or a literal string.
_KEY_PART = r"""[A-Za-z0-9_\-]+|"(?:[^"\\]|\\.)*"|'[^']*'"""
_KEY_RE = re.compile(rf"""^\s*((?:{_KEY_PART})(?:\s*\.\s*(?:{_KEY_PART}))*)\s*=""")
_KEY_PART_RE = re.compile(_KEY_PART)


def _unquote(part: str) -> str:
    """A key component as TOML reads it: a basic string's escapes (nearly JSON's) resolved, a
    literal string's quotes dropped, a bare key as it is."""
    if part.startswith('"'):
        try:
            return str(json.loads(part))
        except ValueError:
            return part[1:-1]
    if part.startswith("'"):
        return part[1:-1]
    return part


def _key_parts(dotted: str) -> list[str]:
    return [_unquote(part) for part in _KEY_PART_RE.findall(dotted)]


_PATH_TOKEN_RE = re.compile(r"""\[\d+\]|"(?:[^"\\]|\\.)*"|'[^']*'|[^."'\[\]]+""")


def _path_tokens(key: str) -> list[str]:
    """A key path's components, unquoted, with each ``[i]`` index a token of its own."""
    return [_unquote(token) for token in _PATH_TOKEN_RE.findall(key)]


def _locate_keys(text: str) -> dict[str, int]:
    """Map key paths (``requests[1].method``, ``schedule``) to the line that defines them.

    A line scanner, not a parser: it follows ``[table]`` / ``[[array]]`` headers and
    ``key =`` lines and skips multi-line strings. Good enough to point a user at a line.
    """
    lines: dict[str, int] = {}
    counts: dict[str, int] = {}
    current = ""
    in_multiline: str | None = None
    # Split on "\n" only: TOML counts lines that way (str.splitlines also splits on \x0c etc.).
    for lineno, raw in enumerate(text.split("\n"), start=1):
        if in_multiline is not None:
            if raw.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        header = _HEADER_RE.match(raw)
        if header is not None:
            is_array = header.group(1) == "[["
            parts = _key_parts(header.group(2))
            path = ""
            for i, part in enumerate(parts):
                path = f"{path}.{part}" if path else part
                if i < len(parts) - 1 and path in counts:
                    path = f"{path}[{counts[path] - 1}]"
            if is_array:
                lines.setdefault(path, lineno)
                counts[path] = counts.get(path, 0) + 1
                path = f"{path}[{counts[path] - 1}]"
            lines.setdefault(path, lineno)
            current = path
            continue
        key = _KEY_RE.match(raw)
        if key is not None:
            full = ".".join(
                [current, *_key_parts(key.group(1))] if current else _key_parts(key.group(1))
            )
            lines.setdefault(full, lineno)
            rest = raw[key.end() :]
            for quote in ('"""', "'''"):
                if rest.count(quote) % 2 == 1:
                    in_multiline = quote
                    break
    return lines


# --------------------------------------------------------------------------- helpers


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


_UNIT_OF_KEY = {"seconds": "seconds", "ms": "milliseconds", "mb": "MiB"}


def _close(word: str, choices: Iterator[str] | tuple[str, ...] | list[str]) -> str | None:
    options = list(choices)
    # The key with its unit spelled out (k6's `duration` is `duration_seconds`, `timeout` is
    # `timeout_ms`): difflib found `iterations` closer to `duration`.
    suffixed = [c for c in options if c.startswith(word + "_")]
    if len(suffixed) == 1:
        return suffixed[0]
    found = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return found[0] if found else None


def _k(key: str) -> str:
    """A key as it may appear in a one-line message: bare when simple, else quoted/escaped."""
    if re.fullmatch(r"[A-Za-z0-9_\-]+", key):
        return key
    return json.dumps(key).replace("\u2028", "\\u2028")


def _q(key: str) -> str:
    """A key quoted for a message: ``'vus'``, or escaped JSON-style when not simple."""
    return f"'{key}'" if _k(key) == key else _k(key)


def _check_keys(ctx: _Context, table: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    """Reject keys of ``table`` (at key path ``where``) that are not in ``allowed``."""
    for key in table:
        if key in allowed:
            continue
        base = where.split("[")[0]
        message = f"unknown key {_q(key)} in [{base}]"
        hint = _close(key, allowed)
        if hint is None:
            owners = [
                t for t, keys in _ALLOWED.items() if "." not in t and key in keys and t != base
            ]
            if owners:
                message += f"; it belongs in [{owners[0]}]"
        ctx.fail(f"{where}.{_k(key)}", message, hint=hint)


def _check_keys_of_type(
    ctx: _Context, raw: dict[str, Any], table: str, keys_by_type: Mapping[str, tuple[str, ...]]
) -> None:
    """Check ``type`` against ``keys_by_type`` and every other key against that type's keys."""
    _check_choice(ctx, raw, "type", tuple(keys_by_type), table)
    kind = raw.get("type", "constant")
    if not isinstance(kind, str):
        return
    for key in raw:
        if key != "type" and key not in keys_by_type[kind]:
            ctx.fail(
                f"{table}.{key}",
                f"does not apply to {table} type '{kind}' "
                f"(its keys: {', '.join(keys_by_type[kind])})",
            )


def _check_choice(
    ctx: _Context, table: dict[str, Any], key: str, choices: tuple[str, ...], where: str
) -> None:
    """Reject a string value of ``table[key]`` outside ``choices`` (non-strings: msgspec)."""
    value = table.get(key)
    if not isinstance(value, str) or value in choices:
        return
    hint = value.upper() if value.upper() in choices else _close(value, choices)
    if hint is None:
        hint = _close(value.lower(), choices)
    ctx.fail(
        f"{where}.{key}",
        f"invalid value {value!r}; expected one of: {', '.join(choices)}",
        hint=hint,
    )


_MSGSPEC_ERR = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def _convert(ctx: _Context, data: Any, cls: type[T], where: str) -> T:
    """``msgspec.convert`` with errors rewritten into our key paths and TOML type names."""
    try:
        return msgspec.convert(data, cls)
    except msgspec.ValidationError as exc:
        m = _MSGSPEC_ERR.match(str(exc))
        msg = m.group("msg") if m else str(exc)
        sub = (m.group("path") or "") if m else ""
        sub = sub.replace("[...]", "")
        key = where + sub
        missing = re.match(r"Object missing required field `([^`]+)`", msg)
        if missing:
            ctx.fail(f"{key}.{missing.group(1)}", "missing required key", line_key=key)
        typed = re.match(r"Expected `([^`]+)`, got `([^`]+)`", msg)
        if typed:
            expected = " or ".join(
                _MSGSPEC_TYPES.get(t.strip(), t.strip())
                for t in typed.group(1).split("|")
                if t.strip() != "null"
            )
            got = _MSGSPEC_TYPES.get(typed.group(2), typed.group(2))
            unit = _UNIT_OF_KEY.get(key.rsplit("_", 1)[-1]) if got == "string" else None
            if unit is not None:
                # "30s" as k6 writes it: the unit is in the key's name.
                got += f" (the value is a number of {unit}, e.g. {key.rsplit('.', 1)[-1]} = 30)"
            ctx.fail(key, f"expected {expected}, got {got}")
        ctx.fail(key, msg[:1].lower() + msg[1:])


def _table(ctx: _Context, raw: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        ctx.fail(name, f"expected a table [{name}], got {_type_name(value)}")
    return value


def _num(
    ctx: _Context,
    key: str,
    value: float | None,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> None:
    """Range check (``low`` inclusive unless ``low_open``; ``high`` inclusive)."""
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        ctx.fail(key, f"must be a finite number, got {value}")
    if low is not None and (value <= low if low_open else value < low):
        ctx.fail(key, f"must be {'>' if low_open else '>='} {_fmt(low)}, got {_fmt(value)}")
    if high is not None and value > high:
        ctx.fail(key, f"must be <= {_fmt(high)}, got {_fmt(value)}")


def _fmt(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


# --------------------------------------------------------------------------- the build


def _build(ctx: _Context) -> Scenario:
    source = ctx.text[1:] if ctx.text.startswith("\ufeff") else ctx.text
    try:
        raw = tomli.loads(source)
    except tomli.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None)
        col = getattr(exc, "colno", None)
        msg = getattr(exc, "msg", None) or re.sub(r"\s*\(at .*\)$", "", str(exc))
        if line is None:
            at = re.search(r"line (\d+), column (\d+)", str(exc))
            if at:
                line, col = int(at.group(1)), int(at.group(2))
        where = f" (column {col})" if col is not None else ""
        raise ScenarioError(f"TOML syntax error: {msg}{where}", file=ctx.file, line=line) from None
    except RecursionError:
        # tomli parses nested arrays and inline tables recursively: thousands of '[' exhaust
        # the stack. No real scenario nests that deep.
        raise ScenarioError(
            "TOML syntax error: arrays or tables nested too deeply", file=ctx.file
        ) from None

    # ---- pass 1: shape
    for key in raw:
        if key in _TABLES:
            continue
        if key in _UNSUPPORTED_TABLES:
            ctx.fail(key, _UNSUPPORTED_TABLES[key], cls=UnsupportedFeatureError)
        kind = "table" if isinstance(raw[key], dict | list) else "top-level key"
        ctx.fail(_k(key), f"unknown {kind} {_q(key)}", hint=_close(key, tuple(_TABLES)))
    for required in ("runtime", "target", "requests"):
        if required not in raw:
            what = "[[requests]]" if required == "requests" else f"[{required}]"
            ctx.fail(required, f"missing required table {what}")

    tables: dict[str, dict[str, Any]] = {}
    for name in _TABLES:
        if name in _ARRAYS:
            continue
        table = _table(ctx, raw, name)
        if table is not None:
            _check_keys(ctx, table, _ALLOWED[name], name)
            tables[name] = table

    raw_requests = raw["requests"]
    if isinstance(raw_requests, dict):
        ctx.fail("requests", "expected an array of tables [[requests]], got a single table")
    if not isinstance(raw_requests, list):
        ctx.fail(
            "requests", f"expected an array of tables [[requests]], got {_type_name(raw_requests)}"
        )
    if not raw_requests:
        ctx.fail("requests", "at least one [[requests]] entry is required")
    for i, req in enumerate(raw_requests):
        if not isinstance(req, dict):
            ctx.fail(f"requests[{i}]", f"expected a table, got {_type_name(req)}")
        _check_keys(ctx, req, _ALLOWED["requests"], f"requests[{i}]")
        _check_choice(ctx, req, "method", HTTP_METHODS, f"requests[{i}]")

    raw_data = raw.get("data", [])
    if not isinstance(raw_data, list):
        ctx.fail("data", f"expected an array of tables [[data]], got {_type_name(raw_data)}")
    for i, entry in enumerate(raw_data):
        if not isinstance(entry, dict):
            ctx.fail(f"data[{i}]", f"expected a table, got {_type_name(entry)}")
        _check_keys(ctx, entry, _ALLOWED["data"], f"data[{i}]")
        _check_choice(ctx, entry, "order", ORDERS, f"data[{i}]")

    if "schedule" in tables:
        sched = tables["schedule"]
        _check_keys_of_type(ctx, sched, "schedule", _SCHEDULE_KEYS)
        for part in ("steps", "stages"):
            entries = sched.get(part)
            if isinstance(entries, list):
                for i, entry in enumerate(entries):
                    if isinstance(entry, dict):
                        _check_keys(
                            ctx, entry, _ALLOWED[f"schedule.{part}"], f"schedule.{part}[{i}]"
                        )
    if "think_time" in tables:
        _check_keys_of_type(ctx, tables["think_time"], "think_time", _THINK_KEYS)
    if "sequence" in tables:
        seq = tables["sequence"]
        _check_choice(ctx, seq, "type", ("ordered",), "sequence")
        steps = seq.get("steps")
        if isinstance(steps, list):
            for i, step in enumerate(steps):
                if isinstance(step, dict):
                    _check_keys(ctx, step, _ALLOWED["sequence.steps"], f"sequence.steps[{i}]")
    if "target" in tables:
        _check_http_version(ctx, tables["target"])

    # ---- pass 2: types
    metadata = _convert(ctx, tables.get("metadata", {}), Metadata, "metadata")
    runtime = _convert(ctx, tables["runtime"], Runtime, "runtime")
    target = _convert(ctx, tables["target"], Target, "target")
    requests = [
        _convert(ctx, req, RequestSpec, f"requests[{i}]") for i, req in enumerate(raw_requests)
    ]
    schedule = _convert(ctx, tables.get("schedule", {}), Schedule, "schedule")
    think = (
        _convert(ctx, tables["think_time"], ThinkTime, "think_time")
        if "think_time" in tables
        else None
    )
    sequence = (
        _convert(ctx, tables["sequence"], Sequence, "sequence") if "sequence" in tables else None
    )
    assertions = _assertions(ctx, tables.get("assertions", {}))
    limits = _convert(ctx, tables.get("limits", {}), Limits, "limits")
    data = [_convert(ctx, entry, DataSpec, f"data[{i}]") for i, entry in enumerate(raw_data)]

    # ---- pass 3: semantics
    _check_runtime(ctx, runtime)
    _check_target(ctx, target)
    open_model = tables.get("schedule", {}).get("type") == "arrival_rate"
    _load_data(ctx, data, open_model)
    _check_requests(ctx, requests, sequence is not None, open_model, data)
    _fill_schedule(ctx, schedule, runtime, explicit="schedule" in tables)
    if think is not None:
        _check_think(ctx, think)
    if sequence is not None:
        _check_sequence(ctx, sequence, requests)
    _check_assertions(ctx, assertions, requests)
    explicit_timeouts = {i for i, req in enumerate(raw_requests) if "timeout_ms" in req}
    _check_limits(ctx, limits, schedule, target, requests, explicit_timeouts)
    return Scenario(
        metadata=metadata,
        runtime=runtime,
        target=target,
        requests=requests,
        schedule=schedule,
        think_time=think,
        sequence=sequence,
        assertions=assertions,
        limits=limits,
        data=data,
    )


def _check_http_version(ctx: _Context, target: dict[str, Any]) -> None:
    value = target.get("http_version")
    if not isinstance(value, str):
        return  # absent (default) or wrong type (msgspec reports it)
    norm = value.strip().lower()
    if norm in _HTTP11_NAMES:
        target["http_version"] = "http1.1"
        return
    if norm in _HTTP2_NAMES or norm.startswith(("http2", "http/2", "h2")):
        ctx.fail(
            "target.http_version",
            f'HTTP/2 is not supported yet (got {value!r}); use http_version = "http1.1"',
            cls=UnsupportedFeatureError,
        )
    if norm in ("http3", "http/3", "h3", "3"):
        ctx.fail(
            "target.http_version",
            f'HTTP/3 is not supported yet (got {value!r}); use http_version = "http1.1"',
            cls=UnsupportedFeatureError,
        )
    ctx.fail(
        "target.http_version",
        f'invalid value {value!r}; expected "http1.1"',
        hint="http1.1" if _close(norm, _HTTP11_NAMES) else None,
    )


def _check_runtime(ctx: _Context, rt: Runtime) -> None:
    if rt.duration_seconds is None and rt.iterations is None:
        ctx.fail(
            "runtime",
            "set exactly one of runtime.duration_seconds or runtime.iterations (neither is set)",
        )
    if rt.duration_seconds is not None and rt.iterations is not None:
        ctx.fail(
            "runtime.iterations",
            "set exactly one of runtime.duration_seconds or runtime.iterations (both are set)",
        )
    _num(
        ctx,
        "runtime.duration_seconds",
        rt.duration_seconds,
        low=0,
        low_open=True,
        high=MAX_DURATION_SECONDS,
    )
    _num(ctx, "runtime.iterations", rt.iterations, low=1, high=MAX_ITERATIONS)
    _num(ctx, "runtime.vus", rt.vus, low=1, high=MAX_VUS)
    _num(ctx, "runtime.prng_seed", rt.prng_seed, low=0, high=MAX_SEED)
    _num(
        ctx,
        "runtime.graceful_stop_seconds",
        rt.graceful_stop_seconds,
        low=0,
        high=MAX_DURATION_SECONDS,
    )
    if rt.event_log_path is not None:
        _check_log_path(ctx, rt.event_log_path)


def _check_log_path(ctx: _Context, value: str) -> None:
    """``runtime.event_log_path`` must name a file (relative paths are the run's working
    directory's, as for ``--out``)."""
    key = "runtime.event_log_path"
    if not value.strip():
        ctx.fail(key, "must not be empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        ctx.fail(key, f"must not contain control characters: {value!r}")
    if value.endswith(("/", os.sep)):
        ctx.fail(key, f"must name a file, not a directory: {value!r}")
    if ctx.resolve_external and Path(value).expanduser().is_dir():
        ctx.fail(key, f"is a directory: {value!r}; name the log file in it (.../events.bin)")


def base_url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as a ``target.base_url`` (``scheme://host[:port]``, an
    optional trailing ``/``), or ``None``; the loader and ``z6 run --base-url`` share it."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return f"must not contain whitespace or control characters: {url!r}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"invalid URL {url!r}: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"must start with http:// or https://, got {url!r}"
    if not parts.hostname:
        return f"has no host: {url!r}"
    if parts.username is not None or parts.password is not None:
        return "must not contain user info (use an Authorization header)"
    if port is not None and port == 0:
        return f"port must be 1..65535, got {port}"
    if parts.path not in ("", "/") or parts.query or parts.fragment or url.endswith(("?", "#")):
        return (
            f"must be scheme://host[:port] only, got {url!r}; put paths and query strings "
            "in each request's path"
        )
    return None


def _check_target(ctx: _Context, target: Target) -> None:
    url = target.base_url
    problem = base_url_problem(url)
    if problem is not None:
        ctx.fail("target.base_url", problem)
    target.base_url = url.rstrip("/")
    https = urlsplit(url).scheme == "https"
    if target.tls is not None and target.tls != https:
        ctx.fail(
            "target.tls",
            f"tls = {str(target.tls).lower()} disagrees with the URL scheme of {url!r}",
        )
    _num(ctx, "target.connection_timeout_ms", target.connection_timeout_ms, low=1, high=MAX_MS)
    _num(ctx, "target.max_connections", target.max_connections, low=1, high=MAX_VUS)
    if target.ca_bundle is not None:
        if not https:
            ctx.fail("target.ca_bundle", "applies only to https:// targets")
        resolved = _resolve_path(ctx, "target.ca_bundle", target.ca_bundle)
        if ctx.resolve_external:
            _check_ca_bundle(ctx, resolved, target.verify_cert)
        target.ca_bundle = str(resolved)


def _check_ca_bundle(ctx: _Context, path: Path, verify: bool) -> None:
    """Load the bundle the way the workers will, so that a file that is not PEM certificates
    fails here (exit 2) rather than in every worker."""
    problem = _not_a_file(path)
    if problem:
        ctx.fail("target.ca_bundle", f"{problem}: {path}")
    from z6.engine.client import make_ssl_context  # trio + ssl: only for scenarios that need it

    try:
        make_ssl_context(verify, str(path))
    except ConfigError as exc:
        ctx.fail("target.ca_bundle", f"not a PEM file of CA certificates: {path} ({exc.__cause__})")


def _resolve_path(ctx: _Context, key: str, value: str) -> Path:
    if not value:
        ctx.fail(key, "must not be empty")
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    if ctx.base_dir is None:
        if not ctx.resolve_external:
            return p
        ctx.fail(key, f"relative path {value!r} needs the scenario file's directory")
    return ctx.base_dir / p


# k6's per-iteration values, written as environment references by a k6 user.
_K6_FIELDS = {"__ITER": "{{iteration}}", "__VU": "{{vu}} (from 0; k6 counts from 1)"}


def _resolve_env(ctx: _Context, key: str, value: str) -> str:
    """Replace ``${NAME}`` from the environment; ``$${NAME}`` stays a literal ``${NAME}``."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(2)
        if m.group(1):
            return "${" + name + "}"
        if not ctx.resolve_external:
            # Rebuilt from a log: the run's values are not recorded, and this process's
            # environment is not the run's.
            return ""
        found = ctx.env.get(name)
        if found is None:
            message = f"environment variable {name} is not set (referenced as ${{{name}}})"
            field = _K6_FIELDS.get(name)
            if field is not None:
                message += f"; k6's {name} is {field} in a z6 request path, body or header value"
            ctx.fail(key, message)
        try:
            found.encode("utf-8")
        except UnicodeEncodeError:
            # Python decodes the environment with surrogateescape: bytes that are not UTF-8
            # came through as lone surrogates, which no request can carry (the workers died
            # encoding them, exit 3).
            ctx.fail(key, f"environment variable {name} is not valid UTF-8")
        return found

    return _ENV_REF.sub(sub, value)


def _check_path(ctx: _Context, key: str, path: str, shown: str) -> None:
    """The rules of a request path (after ``${NAME}`` resolution); ``shown`` is how messages
    show it."""
    if not path.startswith("/"):
        ctx.fail(key, f"must start with '/', got {shown}")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in path):
        ctx.fail(
            key,
            f"must not contain spaces or control characters (percent-encode them): {shown}",
        )
    if not path.isascii():
        ctx.fail(key, f"must be ASCII (percent-encode other characters): {shown}")
    if "#" in path:
        # A fragment is the client's business, never part of the request-target (RFC 9112
        # 3.2): h11 and httptools would send it as it is.
        ctx.fail(
            key,
            f"must not contain '#' (a fragment is never sent; write a literal # as %23): {shown}",
        )


def _literal_braces(key: str) -> str:
    """How to send a literal ``{{`` where ``key`` (a path, body or header value) reads
    fields."""
    if ".headers." in key:
        return "a literal {{ in a header value goes in an environment variable (${NAME})"
    if key.endswith(".body"):
        return "a literal {{ in a body goes in a body_file"
    return "write a literal {{ in a path as %7B%7B"


def _resolved(
    ctx: _Context, key: str, written: str, open_model: bool, data: list[DataSpec]
) -> tuple[Template | None, str, list[str] | None]:
    """A path, body or header value as written: its fields (``None`` without any), its text with
    ``${NAME}`` resolved (each field as ``0``), and its literal parts resolved (``None``
    without fields).

    The fields come from the file only: they are found before ``${NAME}`` is resolved, in the
    literal parts, so a value (a password) holding ``{{`` is sent as it is. ``{{vu}}`` has no
    value in the open model, where which pool VU runs an arrival depends on timing.
    """
    try:
        template = parse_template(written)
    except TemplateError as exc:
        ctx.fail(key, f"{exc}; {_literal_braces(key)}")
    if template is None:
        return None, _resolve_env(ctx, key, written), None
    if open_model and template.uses_vu:
        ctx.fail(
            key,
            "{{vu}} has no value in the open model (arrival_rate): which VU runs an arrival "
            "depends on timing; use {{iteration}}, the arrival's number",
        )
    _check_data_fields(ctx, key, template, data)
    parts = [_resolve_env(ctx, key, p) for p in template.parts]
    return template, "0".join(parts), parts


def _check_requests(
    ctx: _Context,
    requests: list[RequestSpec],
    has_sequence: bool,
    open_model: bool,
    data: list[DataSpec],
) -> None:
    seen: dict[str, int] = {}
    for i, req in enumerate(requests):
        where = f"requests[{i}]"
        if not req.name.strip():
            ctx.fail(f"{where}.name", "must not be empty")
        if not req.name.isprintable():
            ctx.fail(f"{where}.name", "must not contain control or other non-printable characters")
        if req.name in seen:
            ctx.fail(
                f"{where}.name",
                f"duplicate request name {req.name!r} (first used by requests[{seen[req.name]}])",
            )
        seen[req.name] = i
        # ${NAME} as in headers and bodies: an API key in the query string is common, and a
        # reference left as it was went out as "$%7BAPI_KEY%7D". The checks see the resolved
        # path; messages and `z6 validate` show it as written (it may hold a key).
        written = req.path
        # The fields render as digits: the path rules apply to the rest.
        template, checked, req.path_parts = _resolved(
            ctx, f"{where}.path", written, open_model, data
        )
        if template is not None:
            _encode_path_cells(template, data)
        if template is None:
            req.path = checked
        if checked == (written if template is None else template.sample()):
            _check_path(ctx, f"{where}.path", checked, repr(written))
        else:
            if template is None:
                req.path_written = written
            if ctx.resolve_external:
                _check_path(ctx, f"{where}.path", checked, f"{written!r} once resolved")
            # Rebuilt from a log (analyze, replay): the run checked the resolved path, and
            # this process's variables are not the run's.
        resolved_headers: dict[str, str] = {}
        names: dict[str, str] = {}  # lower-case header name -> the name as first written
        # Where each field of the request is (key, fields), in the order of the draw index:
        # path, body, then the header values in file order.
        counts = [(f"{where}.path", 0 if template is None else len(template.fields))]
        header_parts: dict[str, list[str]] = {}
        for name, value in req.headers.items():
            hkey = f"{where}.headers.{_k(name)}"
            if "{{" in name:
                ctx.fail(hkey, f"header name {name!r}: a header name takes no fields, only values")
            if not _HEADER_TOKEN.match(name):
                ctx.fail(hkey, f"invalid header name {name!r}")
            first = names.setdefault(name.lower(), name)
            if first != name:
                # Header names are case-insensitive: one of the two values would be dropped.
                ctx.fail(hkey, f"{name!r} and {first!r} are the same header; keep one")
            why = _FIXED_HEADERS.get(name.lower())
            if why is not None and "{{" in value:
                ctx.fail(hkey, f"{name} takes no fields ({{{{...}}}}): {why}")
            if name.lower() in _FORBIDDEN_HEADERS:
                ctx.fail(hkey, f"{name} is set by z6 from the body; remove it")
            value_template, final, parts = _resolved(ctx, hkey, value, open_model, data)
            if value_template is not None:
                _check_header_cells(ctx, hkey, value_template, data)
            if any(c in "\r\n\0" for c in final):
                ctx.fail(hkey, "header value must not contain CR, LF or NUL")
            if _HEADER_CTL.search(final):
                ctx.fail(hkey, "header value must not contain control characters (tab is fine)")
            if final != final.strip(" \t"):
                # HTTP drops a value's outer white space (RFC 9110 5.5), and h11 refuses to
                # send it: every request failed as protocol_error with --http h11.
                ctx.fail(hkey, "header value must not start or end with a space or tab")
            if parts is None:
                resolved_headers[name] = final
            else:
                resolved_headers[name] = value  # kept as written, like a path: rendered per send
                header_parts[name] = parts
                counts.append((hkey, len(parts) - 1))
        req.headers = resolved_headers
        req.header_parts = header_parts or None
        _num(ctx, f"{where}.timeout_ms", req.timeout_ms, low=1, high=MAX_MS)
        _num(ctx, f"{where}.weight", req.weight, low=0, high=_MAX_WEIGHT)
        if req.expect_status is not None:
            if not req.expect_status:
                ctx.fail(f"{where}.expect_status", "must list at least one status code")
            for j, code in enumerate(req.expect_status):
                if not 100 <= code <= 599:
                    ctx.fail(
                        f"{where}.expect_status[{j}]",
                        f"must be 100..599, got {code}",
                        line_key=f"{where}.expect_status",
                    )
        _check_body_texts(ctx, where, req)
        if req.body is not None and req.body_file is not None:
            ctx.fail(f"{where}.body_file", "body and body_file are mutually exclusive; use one")
        if req.body is not None:
            body_template, text, req.body_parts = _resolved(
                ctx, f"{where}.body", req.body, open_model, data
            )
            req.body_bytes = text.encode("utf-8", "surrogatepass")
            if body_template is None:
                req.body = text
            else:
                counts.insert(1, (f"{where}.body", len(body_template.fields)))
        elif req.body_file is not None:
            path = _resolve_path(ctx, f"{where}.body_file", req.body_file)
            req.body_file = str(path)
            if ctx.resolve_external:
                req.body_bytes = _read_body_file(ctx, f"{where}.body_file", path)
        _check_field_count(ctx, counts)
    if not has_sequence and sum(r.weight for r in requests) <= 0:
        ctx.fail(
            "requests",
            "the request weights sum to 0; at least one weight must be > 0",
            line_key="requests[0].weight",
        )


def _check_body_texts(ctx: _Context, where: str, req: RequestSpec) -> None:
    """``expect_body_contains`` / ``expect_body_not_contains``: a string or a list of
    strings, each non-empty and at most ``MAX_CHECK_BYTES`` in UTF-8; made a list."""
    both = (
        ("expect_body_contains", req.expect_body_contains),
        ("expect_body_not_contains", req.expect_body_not_contains),
    )
    present: list[str] = []
    for name, value in both:
        if value is None:
            continue
        key = f"{where}.{name}"
        texts = [value] if isinstance(value, str) else value
        if not texts:
            ctx.fail(key, "must list at least one text (or remove the key)")
        for j, text in enumerate(texts):
            tkey = key if isinstance(value, str) else f"{key}[{j}]"
            if not text:
                ctx.fail(tkey, "must not be empty", line_key=key)
            size = len(text.encode("utf-8", "surrogatepass"))
            if size > MAX_CHECK_BYTES:
                ctx.fail(tkey, f"at most {MAX_CHECK_BYTES} bytes (UTF-8), got {size}", line_key=key)
            for required in present:
                if text in required:  # only reached for expect_body_not_contains
                    ctx.fail(
                        tkey,
                        f"{_shown(text)} is part of {_shown(required)}, which "
                        "expect_body_contains requires: no body can pass",
                        line_key=key,
                    )
        if name == "expect_body_contains":
            present = list(texts)
        if req.method == "HEAD":
            ctx.fail(key, "a response to HEAD has no body: check a GET instead")
        bodiless = req.expect_status is not None and all(
            c < 200 or c in (204, 304) for c in req.expect_status
        )
        if bodiless and name == "expect_body_contains":
            ctx.fail(
                key,
                "every status in expect_status has no body (1xx, 204, 304): no response can "
                "pass; remove one of the two",
            )
        if name == "expect_body_contains":
            req.expect_body_contains = list(texts)
        else:
            req.expect_body_not_contains = list(texts)


def _check_field_count(ctx: _Context, counts: list[tuple[str, int]]) -> None:
    """At most ``MAX_FIELDS`` fields in one request: ``counts`` gives each key's number, in
    the order of the draw index; the error names the key whose fields go past the limit."""
    total = sum(n for _, n in counts)
    if total <= MAX_FIELDS:
        return
    seen = 0
    for key, n in counts:
        seen += n
        if seen > MAX_FIELDS:
            ctx.fail(
                key,
                f"at most {MAX_FIELDS} fields per request, path, body and header values "
                f"together, got {total}",
            )


def _shown(text: str, limit: int = 60) -> str:
    """``repr(text)`` for an error message, cut to about ``limit`` characters."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _not_a_file(path: Path) -> str | None:
    """Why ``path`` is not a regular file (``file not found``, ``is a directory``,
    ``not a regular file`` for a device or FIFO, the OS's words for the rest, such as a
    symlink loop), or None when it is one."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "file not found"
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return "is a directory"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    return None


def _read_body_file(ctx: _Context, key: str, path: Path, what: str = "bodies") -> bytes:
    """Read a body (or data) file: a regular file of at most ``MAX_BODY_BYTES`` (not a device
    or FIFO, which could block or never end)."""
    try:
        problem = _not_a_file(path)
        if problem:
            ctx.fail(key, f"{problem}: {path}")
        size = path.stat().st_size
        if size > MAX_BODY_BYTES:
            ctx.fail(key, f"{path} is {size} bytes; {what} are limited to {MAX_BODY_BYTES}")
        return path.read_bytes()
    except OSError as exc:
        ctx.fail(key, f"cannot read {path}: {exc.strerror or exc}")


_DATA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _load_data(ctx: _Context, data: list[DataSpec], open_model: bool) -> None:
    """Check each ``[[data]]`` entry and read its CSV file (not when the loader runs without
    external files: ``z6 analyze`` and ``z6 replay`` render no request)."""
    seen: dict[str, int] = {}
    for i, spec in enumerate(data):
        where = f"data[{i}]"
        if not _DATA_NAME.fullmatch(spec.name):
            ctx.fail(
                f"{where}.name",
                f"invalid data name {spec.name!r}: letters, digits and _, not first a digit "
                "(fields name it: {{NAME.COLUMN}})",
            )
        if spec.name in seen:
            ctx.fail(
                f"{where}.name",
                f"duplicate data name {spec.name!r} (first used by data[{seen[spec.name]}])",
            )
        seen[spec.name] = i
        if open_model and spec.order == "per_vu":
            ctx.fail(
                f"{where}.order",
                "per_vu has no meaning in the open model (arrival_rate): which VU runs an "
                "arrival depends on timing; use per_iteration (the arrival's number) or random",
            )
        written = spec.file
        path = _resolve_path(ctx, f"{where}.file", written)
        spec.file = str(path)
        if not ctx.resolve_external:
            continue
        raw = _read_body_file(ctx, f"{where}.file", path, "data files")
        try:
            spec.columns, spec.cells = read_csv(raw)
        except DataFileError as exc:
            ctx.fail(f"{where}.file", f"{written}: {exc}")
        spec.rows = len(spec.cells[0])
        spec.size = len(raw)
        spec.sha256 = hashlib.sha256(raw).hexdigest()


def _field_text(field: Field) -> str:
    return f"{{{{{field.source}.{field.column}}}}}"


def _check_data_fields(ctx: _Context, key: str, template: Template, data: list[DataSpec]) -> None:
    """Each ``{{NAME.COLUMN}}`` names a ``[[data]]`` entry and (once read) one of its
    columns."""
    for field in template.fields:
        if field.kind != "data":
            continue
        names = [d.name for d in data]
        if field.source not in names:
            known = (
                f"the [[data]] names: {', '.join(map(repr, names))}"
                if names
                else "there is no [[data]] table (name, file)"
            )
            ctx.fail(
                key,
                f"{_field_text(field)}: no [[data]] is named {field.source!r}; {known}",
                hint=_close(field.source, names),
            )
        spec = data[names.index(field.source)]
        if spec.rows and field.column not in spec.columns:
            ctx.fail(
                key,
                f"{_field_text(field)}: {Path(spec.file).name} has no column {field.column!r}; "
                f"its columns: {', '.join(map(repr, spec.columns))}",
                hint=_close(field.column, spec.columns),
            )


def _cell_line(spec: DataSpec, row: int) -> int:
    """The 1-based line of ``spec``'s file where ``row`` starts (cells may hold line breaks,
    each of which is a line, as the csv module counts them)."""

    def breaks(cell: str) -> int:
        return cell.count("\n") + cell.count("\r") - cell.count("\r\n")

    line = 2 + sum(breaks(name) for name in spec.columns)
    for column in spec.cells:
        line += sum(breaks(cell) for cell in column[:row])
    return line + row


def _check_header_cells(ctx: _Context, key: str, template: Template, data: list[DataSpec]) -> None:
    """A cell that a header value sends must not hold CR, LF or NUL (it would end the
    header) or another control character, nor start (end) with a space or tab when it starts
    (ends) the value: the first such row is named."""
    last = len(template.fields) - 1
    for k, field in enumerate(template.fields):
        if field.kind != "data":
            continue
        spec = next(d for d in data if d.name == field.source)
        if not spec.rows:
            continue
        first_in_value = k == 0 and not template.parts[0]
        last_in_value = k == last and not template.parts[-1]
        cells = spec.cells[spec.columns.index(field.column)]
        for row, cell in enumerate(cells):
            if "\r" in cell or "\n" in cell or "\0" in cell:
                problem = "a line break or NUL"
            elif _HEADER_CTL.search(cell):
                problem = "a control character"
            elif (first_in_value and cell[:1] in (" ", "\t") and cell) or (
                last_in_value and cell[-1:] in (" ", "\t") and cell
            ):
                problem = "a space or tab at the start or end of the value"
            else:
                continue
            ctx.fail(
                key,
                f"{_field_text(field)}: {Path(spec.file).name} line {_cell_line(spec, row)} "
                f"(row {row}) holds {problem} in column {field.column!r}, which a header value "
                "cannot carry",
            )


_HEADER_CTL = re.compile(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def _encode_path_cells(template: Template, data: list[DataSpec]) -> None:
    """The percent-encoded cells of each column a path uses (``DataSpec.path_cells``),
    computed once, before the workers fork; a cell that needs no encoding is shared."""
    for field in template.fields:
        if field.kind != "data":
            continue
        spec = next(d for d in data if d.name == field.source)
        if not spec.rows:
            continue
        column = spec.columns.index(field.column)
        if column not in spec.path_cells:
            spec.path_cells[column] = [
                cell if _UNRESERVED.fullmatch(cell) else encode_path_value(cell)
                for cell in spec.cells[column]
            ]


def _fill_schedule(ctx: _Context, s: Schedule, rt: Runtime, *, explicit: bool) -> None:
    """Check the schedule for its type and fill in every default (see docs/scenario.md)."""
    duration = rt.duration_seconds

    def vus_default(key: str) -> int:
        if s.vus is not None:
            return s.vus
        if rt.vus is not None:
            return rt.vus
        ctx.fail(key, f"set {key} or runtime.vus", line_key="schedule" if explicit else "runtime")

    _num(ctx, "schedule.vus", s.vus, low=1, high=MAX_VUS)
    if s.type == "constant":
        s.vus = vus_default("schedule.vus")
    elif s.type == "ramp":
        _num(ctx, "schedule.start_vus", s.start_vus, low=0, high=MAX_VUS)
        _num(ctx, "schedule.end_vus", s.end_vus, low=0, high=MAX_VUS)
        _num(
            ctx,
            "schedule.hold_duration_seconds",
            s.hold_duration_seconds,
            low=0,
            high=MAX_DURATION_SECONDS,
        )
        _num(
            ctx,
            "schedule.ramp_duration_seconds",
            s.ramp_duration_seconds,
            low=0,
            low_open=True,
            high=MAX_DURATION_SECONDS,
        )
        if s.start_vus is None:
            s.start_vus = 0
        if s.end_vus is None:
            s.end_vus = vus_default("schedule.end_vus")
        if s.hold_duration_seconds is None:
            s.hold_duration_seconds = 0.0
        if s.ramp_duration_seconds is None:
            if duration is None:
                ctx.fail(
                    "schedule.ramp_duration_seconds",
                    "is required when the run is measured in runtime.iterations",
                )
            s.ramp_duration_seconds = duration - s.hold_duration_seconds
            if s.ramp_duration_seconds <= 0:
                ctx.fail(
                    "schedule.hold_duration_seconds",
                    f"hold of {_fmt(s.hold_duration_seconds)} s leaves no time to ramp "
                    f"within runtime.duration_seconds = {_fmt(duration)}",
                )
        if duration is not None and s.ramp_duration_seconds + s.hold_duration_seconds > duration:
            ctx.fail(
                "schedule.ramp_duration_seconds",
                f"ramp ({_fmt(s.ramp_duration_seconds)} s) + hold "
                f"({_fmt(s.hold_duration_seconds)} s) exceeds runtime.duration_seconds "
                f"({_fmt(duration)} s)",
            )
        s.vus = None
    elif s.type == "spike":
        _num(ctx, "schedule.baseline_vus", s.baseline_vus, low=0, high=MAX_VUS)
        _num(ctx, "schedule.spike_vus", s.spike_vus, low=1, high=MAX_VUS)
        _num(
            ctx,
            "schedule.spike_start_seconds",
            s.spike_start_seconds,
            low=0,
            high=MAX_DURATION_SECONDS,
        )
        _num(
            ctx,
            "schedule.spike_duration_seconds",
            s.spike_duration_seconds,
            low=0,
            low_open=True,
            high=MAX_DURATION_SECONDS,
        )
        if s.baseline_vus is None:
            s.baseline_vus = 0
        if s.spike_vus is None:
            s.spike_vus = vus_default("schedule.spike_vus")
        if s.spike_start_seconds is None:
            ctx.fail(
                "schedule.spike_start_seconds", "is required for type 'spike'", line_key="schedule"
            )
        if s.spike_duration_seconds is None:
            ctx.fail(
                "schedule.spike_duration_seconds",
                "is required for type 'spike'",
                line_key="schedule",
            )
        if duration is not None and s.spike_start_seconds + s.spike_duration_seconds > duration:
            ctx.fail(
                "schedule.spike_duration_seconds",
                f"spike ends at {_fmt(s.spike_start_seconds + s.spike_duration_seconds)} s, "
                f"after runtime.duration_seconds ({_fmt(duration)} s)",
            )
        s.vus = None
    elif s.type == "steps":
        if not s.steps:
            ctx.fail(
                "schedule.steps",
                "type 'steps' needs at least one [[schedule.steps]] entry",
                line_key="schedule",
            )
        for i, step in enumerate(s.steps):
            _num(ctx, f"schedule.steps[{i}].vus", step.vus, low=0, high=MAX_VUS)
        _check_phases(ctx, "steps", [step.duration_seconds for step in s.steps], duration)
        if all(step.vus == 0 for step in s.steps):
            ctx.fail("schedule.steps", "every step has 0 VUs; at least one needs vus >= 1")
    else:  # arrival_rate
        if rt.iterations is not None:
            ctx.fail(
                "schedule.type",
                "type 'arrival_rate' needs runtime.duration_seconds, not runtime.iterations",
            )
        if s.stages:
            _check_stages(ctx, s, duration)
        else:
            if s.rate is None:
                ctx.fail(
                    "schedule.rate", "is required for type 'arrival_rate'", line_key="schedule"
                )
            _num(ctx, "schedule.rate", s.rate, low=MIN_RATE, high=MAX_RATE)
        _num(ctx, "schedule.max_vus", s.max_vus, low=1, high=MAX_VUS)
        if s.max_vus is None:
            if rt.vus is None:
                ctx.fail(
                    "schedule.max_vus", "set schedule.max_vus or runtime.vus", line_key="schedule"
                )
            s.max_vus = rt.vus
    if peak_vus(s) < 1:
        ctx.fail("schedule", "the schedule never has a VU active; at least one VU is needed")


def _check_stages(ctx: _Context, s: Schedule, duration: float | None) -> None:
    """``arrival_rate`` with ``[[schedule.stages]]``: ``rate`` is the starting rate (default
    0, as k6's ``startRate``), each stage's rate 0 ... ``MAX_RATE``, durations > 0, the
    stages no longer than the run, and some arrival due within it."""
    if s.rate is None:
        s.rate = 0.0
    _stage_rate(ctx, "schedule.rate", s.rate)
    for i, stage in enumerate(s.stages):
        _stage_rate(ctx, f"schedule.stages[{i}].rate", stage.rate)
    _check_phases(ctx, "stages", [stage.duration_seconds for stage in s.stages], duration)
    if duration is not None and ArrivalPlan.of(s).total(duration) == 0:
        ctx.fail(
            "schedule.stages",
            "no arrival is due during the run: the rate is 0 throughout; give rate or a stage "
            "a rate above 0",
        )


def _check_phases(
    ctx: _Context, table: str, durations: list[float], duration: float | None
) -> None:
    """``[[schedule.steps]]`` or ``[[schedule.stages]]``: each lasts more than 0 s, and all
    together no longer than the run (``duration``, when it is set)."""
    for i, length in enumerate(durations):
        _num(
            ctx,
            f"schedule.{table}[{i}].duration_seconds",
            length,
            low=0,
            low_open=True,
            high=MAX_DURATION_SECONDS,
        )
    total = sum(durations)
    # At ns resolution: stages of 0.1 s and 0.2 s fill a 0.3 s run (their float sum is
    # 0.30000000000000004).
    if duration is not None and round(total * 1e9) > round(duration * 1e9):
        ctx.fail(
            f"schedule.{table}",
            f"the {table} last {_fmt(total)} s, longer than runtime.duration_seconds "
            f"({_fmt(duration)} s)",
        )


def _stage_rate(ctx: _Context, key: str, rate: float) -> None:
    """A rate of a staged arrival rate: 0, or as ``schedule.rate`` without stages (a rate
    below ``MIN_RATE`` would put its next arrival past the int64 of ns)."""
    _num(ctx, key, rate, high=MAX_RATE)
    if rate != 0 and not rate >= MIN_RATE:
        ctx.fail(key, f"must be 0 or >= {_fmt(MIN_RATE)}, got {_fmt(rate)}")


def _check_think(ctx: _Context, t: ThinkTime) -> None:
    if t.type == "constant":
        if t.duration_ms is None:
            ctx.fail(
                "think_time.duration_ms", "is required for type 'constant'", line_key="think_time"
            )
        _num(ctx, "think_time.duration_ms", t.duration_ms, low=0, high=MAX_MS)
    else:
        if t.min_ms is None:
            ctx.fail("think_time.min_ms", "is required for type 'random'", line_key="think_time")
        if t.max_ms is None:
            ctx.fail("think_time.max_ms", "is required for type 'random'", line_key="think_time")
        _num(ctx, "think_time.min_ms", t.min_ms, low=0, high=MAX_MS)
        _num(ctx, "think_time.max_ms", t.max_ms, low=0, high=MAX_MS)
        if t.min_ms > t.max_ms:
            ctx.fail(
                "think_time.max_ms",
                f"must be >= think_time.min_ms ({_fmt(t.min_ms)}), got {_fmt(t.max_ms)}",
            )


def _check_sequence(ctx: _Context, seq: Sequence, requests: list[RequestSpec]) -> None:
    if not seq.steps:
        ctx.fail(
            "sequence.steps", "needs at least one [[sequence.steps]] entry", line_key="sequence"
        )
    names = [r.name for r in requests]
    for i, step in enumerate(seq.steps):
        if step.request not in names:
            ctx.fail(
                f"sequence.steps[{i}].request",
                f"unknown request {step.request!r}; known: {', '.join(map(repr, names))}",
                hint=_close(step.request, names),
            )
        _num(ctx, f"sequence.steps[{i}].repeat", step.repeat, low=1, high=_MAX_REPEAT)


def _assertions(ctx: _Context, raw: dict[str, Any]) -> Assertions:
    """``[assertions]`` with its ``by_name`` tables converted one by one, so that an error names
    the request (msgspec's own path drops dictionary keys)."""
    by_name_raw = raw.get("by_name", {})
    if not isinstance(by_name_raw, dict):
        ctx.fail(
            "assertions.by_name",
            f"expected a table of request names, got {_type_name(by_name_raw)} "
            "(write [assertions.by_name.NAME] tables)",
        )
    by_name: dict[str, RequestGoals] = {}
    for name, goals in by_name_raw.items():
        where = f"assertions.by_name.{_k(name)}"
        if not isinstance(goals, dict):
            ctx.fail(
                where,
                f"expected a table of goals, got {_type_name(goals)} "
                f"(write [assertions.by_name.{_k(name)}] with keys such as p99_latency_ms)",
            )
        for key, value in goals.items():
            if isinstance(value, dict) and key not in _ALLOWED["assertions.by_name"]:
                # [assertions.by_name.x.y] is the table y inside x: a name with dots.
                dotted = _k(f"{name}.{key}")
                ctx.fail(
                    f"{where}.{_k(key)}",
                    f"a table inside the goals of {_q(name)}: a request name with dots must "
                    f"be quoted, as in [assertions.by_name.{dotted}]",
                )
            if key in _RUN_ONLY_GOALS:
                ctx.fail(
                    f"{where}.{key}",
                    f"applies to the whole run only ({_RUN_ONLY_GOALS[key]}); put it in "
                    "[assertions]",
                )
        _check_keys(ctx, goals, _ALLOWED["assertions.by_name"], where)
        by_name[name] = _convert(ctx, goals, RequestGoals, where)
    rest = {k: v for k, v in raw.items() if k != "by_name"}
    assertions = _convert(ctx, rest, Assertions, "assertions")
    assertions.by_name = by_name
    return assertions


def _check_goals(ctx: _Context, g: RequestGoals, where: str) -> None:
    """Range checks of the goals every [assertions] table shares."""
    for key in GOAL_PERCENTILES:
        _num(ctx, f"{where}.{key}", getattr(g, key), low=0, low_open=True, high=MAX_MS)
    for key in ("error_rate_max", "success_rate_min", "status_5xx_max_rate"):
        _num(ctx, f"{where}.{key}", getattr(g, key), low=0, high=1)
    _num(ctx, f"{where}.rps_min", g.rps_min, low=0, high=1e12)


def _check_assertions(ctx: _Context, a: Assertions, requests: list[RequestSpec]) -> None:
    _check_goals(ctx, a, "assertions")
    names = [r.name for r in requests]
    for name, goals in a.by_name.items():
        where = f"assertions.by_name.{_k(name)}"
        if name not in names:
            ctx.fail(
                where,
                f"no request is named {name!r}; known: {', '.join(map(repr, names))}",
                hint=_close(name, names),
            )
        _check_goals(ctx, goals, where)
    if isinstance(a.abort_on_fail, list):
        _check_abort_goals(ctx, a, a.abort_on_fail)
    _num(
        ctx,
        "assertions.abort_delay_seconds",
        a.abort_delay_seconds,
        low=0,
        high=MAX_DURATION_SECONDS,
    )
    _num(
        ctx,
        "assertions.dropped_iterations_max",
        a.dropped_iterations_max,
        low=0,
        high=MAX_ITERATIONS,
    )


def _check_abort_goals(ctx: _Context, a: Assertions, chosen: list[str]) -> None:
    """``abort_on_fail = ["NAME", ...]``: each a goal that this [assertions] sets, as the
    results name it, and one that can be checked during the run."""
    if not chosen:
        ctx.fail(
            "assertions.abort_on_fail",
            "an empty list checks no goal; write true for every goal, or goal names such as "
            '"error_rate_max" or "by_name.login.p99_latency_ms"',
        )
    set_goals = [g.name for g in evaluate_goals(a, {})]
    for i, name in enumerate(chosen):
        key = f"assertions.abort_on_fail[{i}]"
        if name in chosen[:i]:
            ctx.fail(key, f"{name!r} is listed twice", line_key="assertions.abort_on_fail")
        if name not in set_goals:
            ctx.fail(
                key,
                f"no goal {name!r} is set; the goals are: {', '.join(set_goals) or 'none'}",
                hint=_close(name, set_goals),
                line_key="assertions.abort_on_fail",
            )
        if is_rate_goal(name):
            ctx.fail(
                key,
                f"{name} is not checked during a run (a rate over part of a run, a ramp-up, "
                "says nothing about the whole run): it is judged at the end",
                line_key="assertions.abort_on_fail",
            )


def _check_limits(
    ctx: _Context,
    lim: Limits,
    s: Schedule,
    target: Target,
    requests: list[RequestSpec],
    explicit_timeouts: set[int],
) -> None:
    _num(ctx, "limits.max_vus", lim.max_vus, low=1, high=MAX_VUS)
    _num(ctx, "limits.max_connections", lim.max_connections, low=1, high=MAX_VUS)
    _num(ctx, "limits.request_timeout_ms", lim.request_timeout_ms, low=1, high=MAX_MS)
    _num(
        ctx,
        "limits.max_event_log_size_mb",
        lim.max_event_log_size_mb,
        low=0,
        low_open=True,
        high=MAX_LOG_MB,
    )
    peak = peak_vus(s)
    what = "VU pool" if s.type == "arrival_rate" else "peak"
    if lim.max_vus is not None and peak > lim.max_vus:
        ctx.fail(
            "limits.max_vus",
            f"scenario exceeds [limits]: the schedule's {what} of {peak} VUs is above "
            f"limits.max_vus = {lim.max_vus}",
        )
    checks: list[tuple[str, int | None]] = [
        ("limits.max_connections", lim.max_connections),
        ("target.max_connections", target.max_connections),
    ]
    for key, bound in checks:
        if bound is not None and peak > bound:
            prefix = "scenario exceeds [limits]: " if key.startswith("limits") else ""
            ctx.fail(
                key,
                f"{prefix}the schedule's {what} of {peak} VUs needs {peak} connections "
                f"(one per VU), above {key} = {bound}",
            )
    if lim.request_timeout_ms is not None:
        for i, req in enumerate(requests):
            if i not in explicit_timeouts:
                # An unwritten timeout is the default, capped by the limit: a limit lower than
                # the default should not force every request to spell out its timeout.
                req.timeout_ms = min(req.timeout_ms, lim.request_timeout_ms)
            elif req.timeout_ms > lim.request_timeout_ms:
                ctx.fail(
                    f"requests[{i}].timeout_ms",
                    f"scenario exceeds [limits]: timeout_ms = {req.timeout_ms} is above "
                    f"limits.request_timeout_ms = {lim.request_timeout_ms}",
                )
