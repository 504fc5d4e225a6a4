"""Goals: each ``[assertions]`` key checked against the final summary.

A goal passes when its actual value is on the right side of the expected one: latencies,
``error_rate_max`` and ``status_5xx_max_rate`` must be at most the expected value,
``success_rate_min`` and ``rps_min`` at least; ``dropped_iterations_max`` bounds the open
model's dropped iterations (which no latency includes: a run that drops is not measured as
slow). A run that recorded no request at all fails every goal (its actual value is ``None``):
with nothing measured, nothing was shown to be good. A latency goal also fails with ``None``
when no request had a latency (for example every connection was refused). See
``docs/metrics.md``.

Goals of one request (``[assertions.by_name.NAME]``) are checked the same way against that
request's entry in ``requests.by_name``; their result names are ``by_name.NAME.KEY`` and carry
``request``. A request that was never sent fails its goals.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from z6.engine.scenario import Assertions, RequestGoals

__all__ = [
    "GOAL_PERCENTILES",
    "GoalResult",
    "checked_live",
    "evaluate_goals",
    "is_rate_goal",
    "live_failure",
]

GOAL_PERCENTILES: dict[str, float] = {
    "p50_latency_ms": 50.0,
    "p90_latency_ms": 90.0,
    "p95_latency_ms": 95.0,
    "p99_latency_ms": 99.0,
    "p999_latency_ms": 99.9,
}
"""The latency goals, each with the percentile it needs in the summary's ``latency_ms``."""

# Goal key -> its key in ``latency_ms`` ("p999_latency_ms" -> "p999").
_LATENCY_KEYS = {key: key.removesuffix("_latency_ms") for key in GOAL_PERCENTILES}

_AT_MOST = "<="
_AT_LEAST = ">="
_OPS: dict[str, Callable[[float, float], bool]] = {_AT_MOST: operator.le, _AT_LEAST: operator.ge}


class GoalResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One goal: the assertion key, the expected bound, the measured value and the verdict.

    ``op`` is ``"<="`` (the actual value must not exceed ``expected``) or ``">="``.
    ``request`` is the request name of a per-request goal (``name`` is then
    ``by_name.NAME.KEY``), ``None`` (left out of the JSON) for a whole-run goal.
    """

    name: str
    expected: float
    actual: float | None
    passed: bool
    op: str
    request: str | None = None


# The goal keys, in field order: a request's, and the whole run's (which adds the drops).
_REQUEST_KEYS = RequestGoals.__struct_fields__
_RUN_KEYS = (*_REQUEST_KEYS, "dropped_iterations_max")


def _direction(name: str) -> str:
    return _AT_LEAST if name in ("success_rate_min", "rps_min") else _AT_MOST


def _actual(name: str, counts: Mapping[str, Any], summary: Mapping[str, Any]) -> float | None:
    """The measured value for goal ``name``, or ``None`` when it cannot be measured.

    ``counts`` holds ``total``/``ok``/``failed``/``by_status`` and ``summary`` the
    ``latency_ms`` and ``rps``: the summary's ``requests`` and the summary itself for the
    whole run, one ``requests.by_name`` entry (both roles) for one request.
    """
    total = int(counts.get("total", 0))
    if total <= 0:
        return None
    if name in _LATENCY_KEYS:
        value = summary.get("latency_ms", {}).get(_LATENCY_KEYS[name])
        return None if value is None else float(value)
    if name == "error_rate_max":
        return int(counts.get("failed", 0)) / total
    if name == "success_rate_min":
        return int(counts.get("ok", 0)) / total
    if name == "rps_min":
        value = summary.get("rps")
        return None if value is None else float(value)
    if name == "status_5xx_max_rate":
        by_status: Mapping[str, int] = counts.get("by_status", {})
        n5xx = sum(n for code, n in by_status.items() if 500 <= int(code) <= 599)
        return n5xx / total
    if name == "dropped_iterations_max":
        return float(summary.get("dropped_iterations", 0))
    return None  # pragma: no cover - every Assertions field is handled above


def _check(
    goals: RequestGoals,
    counts: Mapping[str, Any],
    summary: Mapping[str, Any],
    request: str | None,
) -> list[GoalResult]:
    results: list[GoalResult] = []
    keys = _RUN_KEYS if isinstance(goals, Assertions) else _REQUEST_KEYS
    for key in keys:
        expected = getattr(goals, key)
        if expected is None:
            continue
        op = _direction(key)
        actual = _actual(key, counts, summary)
        results.append(
            GoalResult(
                name=key if request is None else f"by_name.{request}.{key}",
                expected=float(expected),
                actual=None if actual is None else round(actual, 6),
                passed=actual is not None and _OPS[op](actual, float(expected)),
                op=op,
                request=request,
            )
        )
    return results


def evaluate_goals(assertions: Assertions, summary: Mapping[str, Any]) -> list[GoalResult]:
    """Check every set ``[assertions]`` key against ``summary`` (the dict of ``build_summary``).

    Whole-run goals come first, in the field order of
    :class:`~z6.engine.scenario.Assertions`, then each ``by_name`` table's in file order.
    Comparisons use exact rates computed from the request counts; ``actual`` is rounded to 6
    decimals for display.
    """
    requests = summary.get("requests", {})
    results = _check(assertions, requests, summary, None)
    by_name: Mapping[str, Any] = requests.get("by_name", {})
    for name, goals in assertions.by_name.items():
        entry = by_name.get(name, {})
        results.extend(_check(goals, entry, entry, name))
    return results


def live_failure(assertions: Assertions, summary: Mapping[str, Any]) -> GoalResult | None:
    """The first goal that fails on the metrics of a run still going (``abort_on_fail``), or
    ``None``.

    With ``abort_on_fail`` a list of goal names, only those are checked. Goals with nothing
    measured yet (``actual`` None) are not failures here: the end decides them. ``rps_min`` is
    not checked: a rate over the part of a run that ran (a ramp-up) says nothing about the
    whole run.
    """
    for goal in evaluate_goals(assertions, summary):
        if goal.passed or goal.actual is None or not checked_live(assertions, goal.name):
            continue
        return goal
    return None


def is_rate_goal(name: str) -> bool:
    """True for ``rps_min`` and a request's ``by_name.NAME.rps_min``: never checked during a
    run (``abort_on_fail``), since a rate over part of a run says nothing of the whole."""
    return name.rsplit(".", 1)[-1] == "rps_min"


def checked_live(assertions: Assertions, name: str) -> bool:
    """Whether ``abort_on_fail`` checks goal ``name`` during the run: the listed ones with a
    list (the loader refuses a listed rate goal), else every goal but the rate goals."""
    chosen = assertions.abort_on_fail
    if isinstance(chosen, list):
        return name in chosen
    return not is_rate_goal(name)
