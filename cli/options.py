"""Parsing of the command-line options that several commands share (no heavy imports: ``z6
analyze`` must not pay for the run machinery)."""

from __future__ import annotations

import contextlib
import math
import re
from pathlib import Path

from z6.engine.errors import ConfigError
from z6.engine.summary import DEFAULT_PERCENTILES, percentile_key

__all__ = [
    "MAX_PROCS",
    "MAX_REGRESSION_PCT",
    "MAX_SHARDS",
    "check_port",
    "check_procs",
    "check_seed",
    "parse_duration",
    "parse_gate",
    "parse_max_regression",
    "parse_out",
    "parse_percentiles",
    "parse_shard",
]

# Sanity bounds of the process-count options: far beyond any machine or cluster, but they turn
# a typo with extra digits into a usage error instead of an OverflowError deep in the run.
MAX_PROCS = 1024
MAX_SHARDS = 1024
MAX_PORT = 65535


_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+|[0-9]+\.)(ms|s|m|h)")
_DURATION = re.compile(r"(?:(?:[0-9]*\.?[0-9]+|[0-9]+\.)(?:ms|s|m|h))+")
_DURATION_MAX_CHARS = 64
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | None) -> float | None:
    """Parse ``--duration``: seconds (``30``, ``2.5``) or, as k6 and wrk take it, a duration
    with units (``30s``, ``500ms``, ``2m``, ``1h30m``); raise ConfigError on anything else.
    The range is checked where the override is applied."""
    if text is None:
        return None
    t = text.strip()
    bad = ConfigError(
        f"--duration: expected seconds (30, 2.5) or a duration with units (30s, 500ms, 2m, "
        f"1h30m), got {text[:_DURATION_MAX_CHARS]!r}" + ("..." if len(text) > 64 else "")
    )
    # ASCII digits only (float() takes "١" and "1_000"); checked whole before any search.
    if len(t) > _DURATION_MAX_CHARS or not t.isascii() or "_" in t:
        raise bad
    try:
        value = float(t)
    except ValueError:
        if not _DURATION.fullmatch(t):
            raise bad from None
        value = sum(float(n) * _UNIT_S[u] for n, u in _DURATION_PART.findall(t))
    if not math.isfinite(value):
        raise ConfigError(f"--duration must be a finite number of seconds, got {text!r}")
    return value


def parse_percentiles(text: str | None) -> tuple[float, ...]:
    """Parse ``--percentiles 50,90,99.9``; raise ConfigError on anything else."""
    if text is None:
        return DEFAULT_PERCENTILES
    values: list[float] = []
    for part in text.split(","):
        part = part.strip()
        try:
            v = float(part)
        except ValueError:
            raise ConfigError(f"--percentiles: '{part}' is not a number") from None
        if not 0 < v <= 100:
            raise ConfigError(f"--percentiles: {part} is not in (0, 100]")
        shown = format(v, "g")
        if "e" in shown or float(shown) != v:
            # Its summary key would name another value (99.99999999999 -> p100) or read
            # p1e-05: at most 6 significant digits, at least 0.0001.
            raise ConfigError(
                f"--percentiles: {part} cannot be named in the summary (it would read "
                f"{percentile_key(v)}): use at most 6 significant digits, from 0.0001"
            )
        if v not in values:  # 50,50 is 50 once
            values.append(v)
    if not values:
        raise ConfigError("--percentiles: give at least one value, e.g. 50,90,99")
    return tuple(values)


MAX_REGRESSION_PCT = 1e6  # a million percent: 10,000 times worse; any larger bound is a typo


def parse_max_regression(text: str | None) -> float | None:
    """Parse ``--max-regression 10`` or ``10%`` (a percentage, finite, >= 0)."""
    if text is None:
        return None
    body = text.strip().removesuffix("%").strip()
    value: float | None = None
    # ASCII digits only: float() also takes "١٠" and "1_0", and "nan"/"inf".
    if body and len(body) <= 32 and all(c in "0123456789." for c in body):
        with contextlib.suppress(ValueError):
            value = float(body)
    if value is None or value > MAX_REGRESSION_PCT:
        raise ConfigError(
            f"--max-regression: {text!r} is not a percentage from 0 to "
            f"{MAX_REGRESSION_PCT:g} (e.g. 10 or 10%)"
        )
    return value


def parse_gate(text: str | None) -> tuple[str, ...] | None:
    """Parse ``--gate latency_ms.p99,error_rate`` into labels (checked against the runs
    later, when their metrics are known)."""
    if text is None:
        return None
    labels = tuple(part.strip() for part in text.split(",") if part.strip())
    if not labels:
        raise ConfigError("--gate: give at least one metric, e.g. latency_ms.p99,error_rate")
    return labels


def parse_shard(text: str | None) -> tuple[int, int]:
    """Parse ``--shard I/N`` (0-based I); raise ConfigError when malformed."""
    if text is None:
        return (0, 1)
    try:
        i_s, n_s = text.split("/")
        if not (i_s.strip().isascii() and n_s.strip().isascii()):
            raise ValueError(text)  # int() also takes other scripts' digits
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise ConfigError(f"--shard: expected I/N like 0/4, got '{text}'") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard: need 0 <= I < N, got '{text}'")
    if n > MAX_SHARDS:
        raise ConfigError(f"--shard: N must be at most {MAX_SHARDS}, got '{text}'")
    return (i, n)


def parse_out(text: str | None, option: str = "--out") -> Path | None:
    """``--out DIR`` as a path (None: the default directory); an empty value is refused.

    ``--out "$DIR"`` with ``DIR`` unset would otherwise name the current directory, and a
    run replaces the summary files of its output directory."""
    if text is None:
        return None
    if not text.strip():
        raise ConfigError(f"{option}: empty directory name (use {option} . for this directory)")
    return Path(text)


def check_procs(procs: int | None, option: str = "--procs") -> int | None:
    """Return ``procs`` (None: the default) when in 1..MAX_PROCS; raise ConfigError otherwise."""
    if procs is not None and not 1 <= procs <= MAX_PROCS:
        raise ConfigError(f"{option} must be between 1 and {MAX_PROCS}, got {procs}")
    return procs


def check_seed(seed: int | None) -> int | None:
    """Return ``seed`` when it fits the range of ``runtime.prng_seed``; raise ConfigError."""
    from z6.engine.loader import MAX_SEED

    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"--seed must be between 0 and {MAX_SEED} (2**64 - 1), got {seed}")
    return seed


def check_port(port: int) -> int:
    """Return ``port`` when in 0..65535 (0: any free port); raise ConfigError otherwise."""
    if not 0 <= port <= MAX_PORT:
        raise ConfigError(f"--port must be between 0 and {MAX_PORT} (0: any free port), got {port}")
    return port
