"""The scenario model: one msgspec Struct per TOML table of SPEC section 2.

These classes are plain data. ``z6.engine.loader.load_scenario`` builds them from a file and
validates them completely; code that receives a ``Scenario`` may trust every invariant listed
in ``docs/scenario.md`` (exactly one of duration/iterations, unique request names, weights
summing to more than zero, a schedule whose parameters fit its type, ...).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Method = Literal["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
ScheduleType = Literal["constant", "ramp", "spike", "steps", "arrival_rate"]

DEFAULT_GRACEFUL_STOP_SECONDS = 5.0
ABORT_CHECK_SECONDS = 2.0  # how often [assertions] abort_on_fail checks the goals (as k6)
DEFAULT_REQUEST_TIMEOUT_MS = 30_000
DEFAULT_CONNECTION_TIMEOUT_MS = 10_000


class Metadata(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[metadata]``: descriptive only, never changes what runs."""

    name: str = ""
    description: str = ""
    version: str = ""
    author: str = ""
    tags: list[str] = msgspec.field(default_factory=list)


class Runtime(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[runtime]``: how long the test runs and with how many VUs."""

    duration_seconds: float | None = None
    iterations: int | None = None
    vus: int | None = None
    prng_seed: int | None = None
    graceful_stop_seconds: float = DEFAULT_GRACEFUL_STOP_SECONDS
    event_log_path: str | None = None
    flush_interval: Any = None  # accepted for Zig-Z6 compatibility; z6 flushes on its own


class Target(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[target]``: where requests go and how connections are made."""

    base_url: str
    http_version: str = "http1.1"
    verify_cert: bool = True
    ca_bundle: str | None = None
    connection_timeout_ms: int = DEFAULT_CONNECTION_TIMEOUT_MS
    max_connections: int | None = None
    tls: bool | None = None  # Zig-Z6 key; must agree with the URL scheme
    cookies: bool = False  # a cookie jar per VU (closed model) or per iteration (open model)


class RequestSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One ``[[requests]]`` entry.

    After loading, ``body`` holds the final body text (``${NAME}`` resolved) and
    ``body_file`` the absolute path of a body file whose bytes are in ``body_bytes``.
    """

    name: str
    method: Method
    path: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    body: str | None = None
    body_file: str | None = None
    timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS
    weight: float = 1.0
    expect_status: list[int] | None = None
    # A string or a list of strings in TOML; the loader makes it a list.
    expect_body_contains: str | list[str] | None = None
    expect_body_not_contains: str | list[str] | None = None
    # Filled by the loader, never read from TOML: the exact bytes to send as the body, and
    # the path as written when it had ${NAME} references (shown instead of the resolved one,
    # which may hold a secret). A path, body or header value with {{fields}} stays as written,
    # and its literal parts, ${NAME} resolved, are in path_parts/body_parts/header_parts (by
    # header name, in file order; None when no header value has fields): a value is sent as
    # it is, never read as a field.
    body_bytes: bytes = b""
    path_written: str | None = None
    path_parts: list[str] | None = None
    body_parts: list[str] | None = None
    header_parts: dict[str, list[str]] | None = None


DataOrder = Literal["per_iteration", "per_vu", "random"]


class DataSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One ``[[data]]`` entry: a CSV file whose cells fill ``{{NAME.COLUMN}}`` fields.

    After loading, ``file`` is the absolute path, and (unless the loader ran without external
    files, as ``z6 analyze`` does) ``columns`` the column names, ``cells[c][r]`` the value of
    column ``c`` in row ``r`` (column by column: no per-row object), ``rows`` their number,
    ``size`` and ``sha256`` the file's, and ``path_cells[c]`` column ``c``'s cells
    percent-encoded, for the columns some request path uses.
    """

    name: str
    file: str
    order: DataOrder = "per_iteration"
    # Filled by the loader, never read from TOML.
    columns: list[str] = msgspec.field(default_factory=list)
    cells: list[list[str]] = msgspec.field(default_factory=list)
    rows: int = 0
    size: int = 0
    sha256: str = ""
    path_cells: dict[int, list[str]] = msgspec.field(default_factory=dict)


class Step(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One ``[[schedule.steps]]`` entry: hold ``vus`` VUs for ``duration_seconds``."""

    vus: int
    duration_seconds: float


class RateStage(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One ``[[schedule.stages]]`` entry of ``arrival_rate``: move the rate linearly to
    ``rate`` iterations/s over ``duration_seconds``."""

    rate: float
    duration_seconds: float


class Schedule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[schedule]``: the load shape. Which fields apply depends on ``type``.

    After loading, every field the type needs is filled (defaults applied), so consumers
    never re-derive defaults: constant → ``vus``; ramp → ``start_vus``, ``end_vus``,
    ``ramp_duration_seconds``, ``hold_duration_seconds``; spike → ``baseline_vus``,
    ``spike_vus``, ``spike_start_seconds``, ``spike_duration_seconds``; steps → ``steps``;
    arrival_rate → ``rate``, ``max_vus`` (and ``stages``, possibly empty).
    """

    type: ScheduleType = "constant"
    vus: int | None = None
    start_vus: int | None = None
    end_vus: int | None = None
    ramp_duration_seconds: float | None = None
    hold_duration_seconds: float | None = None
    baseline_vus: int | None = None
    spike_vus: int | None = None
    spike_start_seconds: float | None = None
    spike_duration_seconds: float | None = None
    steps: list[Step] = msgspec.field(default_factory=list)
    rate: float | None = None
    max_vus: int | None = None
    stages: list[RateStage] = msgspec.field(default_factory=list)


class ThinkTime(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[think_time]``: pause after each request; ``constant`` or seeded uniform ``random``."""

    type: Literal["constant", "random"] = "constant"
    duration_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None


class SequenceStep(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One ``[[sequence.steps]]`` entry: send request ``request`` ``repeat`` times."""

    request: str
    repeat: int = 1


class Sequence(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[sequence]``: each iteration walks all steps in order instead of a weighted pick."""

    type: Literal["ordered"] = "ordered"
    steps: list[SequenceStep] = msgspec.field(default_factory=list)


class RequestGoals(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[assertions.by_name.NAME]``: goals on the requests named NAME only; each key optional.

    The keys are those of :class:`Assertions` that a request name has a value for.
    """

    p50_latency_ms: float | None = None
    p90_latency_ms: float | None = None
    p95_latency_ms: float | None = None
    p99_latency_ms: float | None = None
    p999_latency_ms: float | None = None
    error_rate_max: float | None = None
    success_rate_min: float | None = None
    rps_min: float | None = None
    status_5xx_max_rate: float | None = None


class Assertions(RequestGoals, kw_only=True, forbid_unknown_fields=True):
    """``[assertions]``: goals checked on the final metrics; each key is optional.

    ``by_name`` holds the goals of single requests, by request name, in file order.
    ``abort_on_fail`` stops the run at the first goal that fails on the live metrics, checked
    every ``ABORT_CHECK_SECONDS`` from ``abort_delay_seconds`` into the run (k6's
    ``abortOnFail`` and ``delayAbortEval``): ``true`` for every goal, or a list of goal names
    (``"error_rate_max"``, ``"by_name.login.p99_latency_ms"``), as k6 sets it per threshold.
    """

    dropped_iterations_max: int | None = None  # open model: iterations with no free VU
    by_name: dict[str, RequestGoals] = msgspec.field(default_factory=dict)
    abort_on_fail: bool | list[str] = False
    abort_delay_seconds: float = 0.0


class Limits(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[limits]`` (Zig-Z6): upper bounds checked at load time and enforced during the run."""

    max_vus: int | None = None
    max_connections: int | None = None
    request_timeout_ms: int | None = None
    max_event_log_size_mb: float | None = None


class Scenario(msgspec.Struct, kw_only=True):
    """A fully loaded and validated scenario.

    ``source_text`` is the file exactly as read and ``sha256`` its hex digest; the event log
    embeds both so that ``z6 analyze`` and ``z6 replay`` can rebuild this object.
    ``schedule`` is always set (a constant schedule at ``runtime.vus`` when the file has none).
    """

    metadata: Metadata = msgspec.field(default_factory=Metadata)
    runtime: Runtime
    target: Target
    requests: list[RequestSpec]
    schedule: Schedule = msgspec.field(default_factory=Schedule)
    think_time: ThinkTime | None = None
    sequence: Sequence | None = None
    assertions: Assertions = msgspec.field(default_factory=Assertions)
    limits: Limits = msgspec.field(default_factory=Limits)
    data: list[DataSpec] = msgspec.field(default_factory=list)
    source_path: str = ""
    source_text: str = ""
    sha256: str = ""

    @property
    def request_names(self) -> list[str]:
        """Names of the requests, indexed like the ``request`` field of events."""
        return [r.name for r in self.requests]

    @property
    def name(self) -> str:
        """The scenario's display name: metadata name, else the file name."""
        if self.metadata.name:
            return self.metadata.name
        return self.source_path.rsplit("/", 1)[-1] or "scenario"
