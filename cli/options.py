"""Parsing of the command-line options that several commands share (no heavy imports: ``z6
analyze`` must not pay for the run machinery)."""

from __future__ import annotations

from z6.engine.errors import ConfigError
from z6.engine.summary import DEFAULT_PERCENTILES

__all__ = ["parse_percentiles", "parse_shard"]


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
        values.append(v)
    if not values:
        raise ConfigError("--percentiles: give at least one value, e.g. 50,90,99")
    return tuple(values)


def parse_shard(text: str | None) -> tuple[int, int]:
    """Parse ``--shard I/N`` (0-based I); raise ConfigError when malformed."""
    if text is None:
        return (0, 1)
    try:
        i_s, n_s = text.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise ConfigError(f"--shard: expected I/N like 0/4, got '{text}'") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard: need 0 <= I < N, got '{text}'")
    return (i, n)
