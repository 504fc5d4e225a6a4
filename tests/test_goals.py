"""Goals: every [assertions] key against a summary, pass and fail, and the zero-request rule."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from z6.engine.goals import evaluate_goals, live_failure
from z6.engine.scenario import Assertions, RequestGoals


def _summary(
    *,
    total: int = 1000,
    ok: int = 990,
    by_status: dict[str, int] | None = None,
    rps: float = 500.0,
    latency: dict[str, float | None] | None = None,
) -> dict[str, Any]:
    lat = {"p50": 10.0, "p90": 20.0, "p95": 30.0, "p99": 40.0, "p999": 50.0}
    if latency is not None:
        lat.update(latency)
    return {
        "requests": {
            "total": total,
            "ok": ok,
            "failed": total - ok,
            "by_status": by_status if by_status is not None else {"200": ok, "503": total - ok},
        },
        "latency_ms": lat,
        "rps": rps,
        "dropped_iterations": 7,
    }


@pytest.mark.parametrize(
    ("key", "passing", "failing", "actual"),
    [
        ("p50_latency_ms", 10.0, 9.99, 10.0),
        ("p90_latency_ms", 25.0, 19.0, 20.0),
        ("p95_latency_ms", 30.0, 29.0, 30.0),
        ("p99_latency_ms", 100.0, 39.0, 40.0),
        ("p999_latency_ms", 50.0, 49.9, 50.0),
        ("error_rate_max", 0.01, 0.009, 0.01),
        ("success_rate_min", 0.99, 0.995, 0.99),
        ("rps_min", 500.0, 501.0, 500.0),
        ("status_5xx_max_rate", 0.01, 0.005, 0.01),
        ("dropped_iterations_max", 7, 6, 7.0),
    ],
)
def test_each_goal_passes_and_fails(
    key: str, passing: float, failing: float, actual: float
) -> None:
    ok = evaluate_goals(Assertions(**{key: passing}), _summary())
    assert len(ok) == 1
    assert ok[0].name == key
    assert ok[0].expected == passing
    assert ok[0].actual == pytest.approx(actual)
    assert ok[0].passed is True
    bad = evaluate_goals(Assertions(**{key: failing}), _summary())
    assert bad[0].passed is False
    assert bad[0].actual == pytest.approx(actual)


def test_directions() -> None:
    goals = evaluate_goals(
        Assertions(p99_latency_ms=1, rps_min=1, success_rate_min=0.5, error_rate_max=0.5),
        _summary(),
    )
    assert {g.name: g.op for g in goals} == {
        "p99_latency_ms": "<=",
        "error_rate_max": "<=",
        "success_rate_min": ">=",
        "rps_min": ">=",
    }


def test_results_follow_the_assertions_field_order_and_skip_unset_keys() -> None:
    goals = evaluate_goals(Assertions(rps_min=1, p50_latency_ms=100), _summary())
    assert [g.name for g in goals] == ["p50_latency_ms", "rps_min"]
    assert evaluate_goals(Assertions(), _summary()) == []


def test_zero_requests_fail_every_goal_with_no_actual_value() -> None:
    summary = _summary(total=0, ok=0, by_status={}, rps=0.0)
    goals = evaluate_goals(
        Assertions(
            p99_latency_ms=1000,
            error_rate_max=1.0,
            success_rate_min=0.0,
            rps_min=0,
            status_5xx_max_rate=1.0,
        ),
        summary,
    )
    assert len(goals) == 5
    assert all(g.actual is None and g.passed is False for g in goals)


def test_latency_goal_fails_when_no_request_had_a_latency() -> None:
    summary = _summary(latency={"p99": None})
    (goal,) = evaluate_goals(Assertions(p99_latency_ms=1000), summary)
    assert goal.actual is None
    assert goal.passed is False


def test_status_5xx_counts_only_500_to_599() -> None:
    summary = _summary(total=100, ok=80, by_status={"200": 80, "404": 10, "500": 4, "599": 1})
    (goal,) = evaluate_goals(Assertions(status_5xx_max_rate=0.04), summary)
    assert goal.actual == pytest.approx(0.05)
    assert goal.passed is False


def test_rates_compare_exactly_before_rounding() -> None:
    # 1 failure in 3 requests: 0.333333... > 0.333333 although both display the same
    summary = _summary(total=3, ok=2, by_status={"200": 2, "500": 1})
    (goal,) = evaluate_goals(Assertions(error_rate_max=0.333333), summary)
    assert goal.actual == 0.333333
    assert goal.passed is False


# --------------------------------------------------------------------------- per request


def _by_name_summary() -> dict[str, Any]:
    summary = _summary()
    summary["requests"]["by_name"] = {
        "login": {
            "total": 100,
            "ok": 90,
            "failed": 10,
            "rps": 50.0,
            "by_status": {"200": 90, "502": 6, "404": 4},
            "latency_ms": {"p50": 100.0, "p90": 200.0, "p95": 250.0, "p99": 300.0},
        },
        "home": {
            "total": 900,
            "ok": 900,
            "failed": 0,
            "rps": 450.0,
            "by_status": {"200": 900},
            "latency_ms": {"p50": 1.0, "p90": 2.0, "p95": 3.0, "p99": 4.0},
        },
        "never": {"total": 0, "ok": 0, "failed": 0, "rps": 0.0, "by_status": {}},
    }
    return summary


def test_a_request_s_goals_read_its_own_entry_not_the_whole_run() -> None:
    assertions = Assertions(
        p99_latency_ms=50,
        by_name={
            "login": RequestGoals(
                p99_latency_ms=250,
                error_rate_max=0.1,
                success_rate_min=0.95,
                rps_min=50,
                status_5xx_max_rate=0.05,
            ),
            "home": RequestGoals(p95_latency_ms=3),
        },
    )
    goals = evaluate_goals(assertions, _by_name_summary())
    got = {g.name: (g.request, g.op, g.actual, g.passed) for g in goals}
    assert got == {
        "p99_latency_ms": (None, "<=", 40.0, True),
        "by_name.login.p99_latency_ms": ("login", "<=", 300.0, False),
        "by_name.login.error_rate_max": ("login", "<=", 0.1, True),
        "by_name.login.success_rate_min": ("login", ">=", 0.9, False),
        "by_name.login.rps_min": ("login", ">=", 50.0, True),
        "by_name.login.status_5xx_max_rate": ("login", "<=", 0.06, False),
        "by_name.home.p95_latency_ms": ("home", "<=", 3.0, True),
    }
    # Whole-run goals first, then each request's in the order of the table.
    assert [g.name for g in goals][:2] == ["p99_latency_ms", "by_name.login.p99_latency_ms"]


def test_a_request_that_was_never_sent_fails_its_goals() -> None:
    assertions = Assertions(
        by_name={
            "never": RequestGoals(error_rate_max=1.0, rps_min=0),
            "missing": RequestGoals(p50_latency_ms=1000),
        }
    )
    goals = evaluate_goals(assertions, _by_name_summary())
    assert [(g.name, g.actual, g.passed) for g in goals] == [
        ("by_name.never.error_rate_max", None, False),
        ("by_name.never.rps_min", None, False),
        ("by_name.missing.p50_latency_ms", None, False),
    ]


def test_a_whole_run_goal_s_json_has_no_request_key() -> None:
    goals = evaluate_goals(
        Assertions(rps_min=1, by_name={"home": RequestGoals(rps_min=1)}), _by_name_summary()
    )
    run_goal, home_goal = (msgspec.to_builtins(g) for g in goals)
    assert set(run_goal) == {"name", "expected", "actual", "passed", "op"}
    assert home_goal["request"] == "home"


# --------------------------------------------------------------------------- abort_on_fail


def test_the_live_check_returns_the_first_failure_skipping_rps_and_the_unmeasured() -> None:
    summary = _by_name_summary()  # 1% failed overall; login: 10% failed, p99 300 ms
    assertions = Assertions(
        rps_min=1e9,  # fails, but a rate over part of a run decides nothing
        error_rate_max=0.5,
        by_name={
            "never": RequestGoals(error_rate_max=0.0),  # nothing measured yet: not a failure
            "login": RequestGoals(rps_min=1e9, p99_latency_ms=250, error_rate_max=0.05),
        },
    )
    failed = live_failure(assertions, summary)
    assert failed is not None
    assert (failed.name, failed.actual) == ("by_name.login.p99_latency_ms", 300.0)
    assert live_failure(Assertions(rps_min=1e9, error_rate_max=0.5), summary) is None
    assert live_failure(Assertions(dropped_iterations_max=6), summary) is not None  # 7 dropped


def test_abort_settings_are_no_goals() -> None:
    goals = evaluate_goals(
        Assertions(abort_on_fail=True, abort_delay_seconds=5, rps_min=1), _by_name_summary()
    )
    assert [g.name for g in goals] == ["rps_min"]


def test_the_live_check_takes_only_the_goals_abort_on_fail_names() -> None:
    summary = _by_name_summary()  # login: 10% failed, p99 300 ms
    goals = {
        "error_rate_max": 0.5,
        "by_name": {"login": RequestGoals(p99_latency_ms=250, error_rate_max=0.05)},
    }
    only_errors = Assertions(abort_on_fail=["by_name.login.error_rate_max"], **goals)  # type: ignore[arg-type]
    failed = live_failure(only_errors, summary)
    assert failed is not None
    assert failed.name == "by_name.login.error_rate_max"  # the earlier p99 failure is not chosen
    assert live_failure(Assertions(abort_on_fail=["error_rate_max"], **goals), summary) is None  # type: ignore[arg-type]
