"""z6 engine: the scenario model and its loader, the deterministic decisions, the HTTP client
and its protocol engines, the metrics reducer, the summary and the goals.

The names below are the public API; each is imported from its module on first use (see
``_exports``), so that importing one of them does not import the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from z6.engine._exports import lazy_getattr

_EXPORTS: dict[str, str] = {
    # the scenario model and its loading
    "Assertions": "scenario",
    "DataSpec": "scenario",
    "Limits": "scenario",
    "Metadata": "scenario",
    "RequestGoals": "scenario",
    "RequestSpec": "scenario",
    "Runtime": "scenario",
    "Scenario": "scenario",
    "Schedule": "scenario",
    "Sequence": "scenario",
    "SequenceStep": "scenario",
    "Step": "scenario",
    "Target": "scenario",
    "ThinkTime": "scenario",
    "load_scenario": "loader",
    "load_scenario_text": "loader",
    "apply_overrides": "overrides",
    "describe_scenario": "describe",
    # errors
    "ConfigError": "errors",
    "ErrorKind": "error_kinds",
    "InvalidTransitionError": "errors",
    "LogFormatError": "errors",
    "RunError": "errors",
    "ScenarioError": "errors",
    "UnsupportedFeatureError": "errors",
    "Z6Error": "errors",
    # decisions and schedules
    "iteration_plan": "decisions",
    "resolve_seed": "decisions",
    "peak_vus": "schedule",
    "schedule_length_s": "schedule",
    # the client's protocol engines and body checks
    "BodyCheck": "body_check",
    "BodyMatcher": "body_check",
    "H11Engine": "protocol",
    "HttptoolsEngine": "protocol",
    "ResponseParser": "protocol",
    "engine_factory": "protocol",
    "httptools_available": "protocol",
    # metrics, summary, goals, replay
    "GoalResult": "goals",
    "Reducer": "metrics",
    "RunMeta": "summary",
    "build_summary": "summary",
    "evaluate_goals": "goals",
    "Mismatch": "replay",
    "ReplayResult": "replay",
    "verify_log": "replay",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from z6.engine.body_check import BodyCheck as BodyCheck, BodyMatcher as BodyMatcher
    from z6.engine.decisions import iteration_plan as iteration_plan, resolve_seed as resolve_seed
    from z6.engine.describe import describe_scenario as describe_scenario
    from z6.engine.error_kinds import ErrorKind as ErrorKind
    from z6.engine.errors import (
        ConfigError as ConfigError,
        InvalidTransitionError as InvalidTransitionError,
        LogFormatError as LogFormatError,
        RunError as RunError,
        ScenarioError as ScenarioError,
        UnsupportedFeatureError as UnsupportedFeatureError,
        Z6Error as Z6Error,
    )
    from z6.engine.goals import GoalResult as GoalResult, evaluate_goals as evaluate_goals
    from z6.engine.loader import (
        load_scenario as load_scenario,
        load_scenario_text as load_scenario_text,
    )
    from z6.engine.metrics import Reducer as Reducer
    from z6.engine.overrides import apply_overrides as apply_overrides
    from z6.engine.protocol import (
        H11Engine as H11Engine,
        HttptoolsEngine as HttptoolsEngine,
        ResponseParser as ResponseParser,
        engine_factory as engine_factory,
        httptools_available as httptools_available,
    )
    from z6.engine.replay import (
        Mismatch as Mismatch,
        ReplayResult as ReplayResult,
        verify_log as verify_log,
    )
    from z6.engine.scenario import (
        Assertions as Assertions,
        DataSpec as DataSpec,
        Limits as Limits,
        Metadata as Metadata,
        RequestGoals as RequestGoals,
        RequestSpec as RequestSpec,
        Runtime as Runtime,
        Scenario as Scenario,
        Schedule as Schedule,
        Sequence as Sequence,
        SequenceStep as SequenceStep,
        Step as Step,
        Target as Target,
        ThinkTime as ThinkTime,
    )
    from z6.engine.schedule import peak_vus as peak_vus, schedule_length_s as schedule_length_s
    from z6.engine.summary import RunMeta as RunMeta, build_summary as build_summary


__getattr__ = lazy_getattr(__name__, _EXPORTS)
