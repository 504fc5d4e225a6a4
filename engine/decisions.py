"""The determinism contract (SPEC section 3): every VU decision as a pure function.

Each decision of VU ``v`` in iteration ``i`` (which request, each think time) is derived from
``(seed, scenario, v, i)`` by a counter-based generator: a chain of splitmix64 mixes over the
inputs, with no state carried between calls. The result is therefore independent of
``--procs``, of timing, of other VUs and of the order in which decisions are asked for.
``z6 replay`` re-derives every decision with the same functions; the exact formulas are in
``docs/determinism.md`` so that other implementations can reproduce them bit for bit.

This module also fixes how VU ids are split across shards and worker processes.
"""

from __future__ import annotations

import secrets
from bisect import bisect_right
from collections.abc import Iterator, Sequence as SequenceABC
from itertools import accumulate

from z6.engine.scenario import Scenario, ThinkTime

MASK64 = (1 << 64) - 1
GOLDEN_GAMMA = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB

STREAM_REQUEST = 1
"""Stream id of the weighted request choice."""
STREAM_THINK = 2
"""Stream id of random think times."""

ARRIVAL_VU_KEY = MASK64
"""The ``vu`` input of every decision in the open model (``arrival_rate``).

Which pool VU runs an arrival depends on timing, so open-model decisions are keyed by the
global iteration number alone: ``plan(ARRIVAL_VU_KEY, n)``. No closed-model VU id can reach
this value, so the two key spaces never collide.
"""

_INV_2_53 = 1.0 / (1 << 53)


class SliceError(ValueError):
    """Raised for an impossible worker or shard index (a programming error, not user input)."""


class InvalidWeightsError(ValueError):
    """Raised by ``RequestPicker`` for negative weights or weights summing to zero.

    The loader rejects such scenarios first, so this only signals a programming error.
    """


def splitmix64(x: int) -> int:
    """The splitmix64 output for state ``x``: add the golden gamma, then mix (64-bit).

    Applied to ``0, γ, 2γ, ...`` it yields the reference splitmix64 sequence seeded with 0
    (``0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F, ...``).
    """
    z = (x + GOLDEN_GAMMA) & MASK64
    z = ((z ^ (z >> 30)) * _MIX1) & MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & MASK64
    return z ^ (z >> 31)


def vu_key(seed: int, vu: int, stream: int) -> int:
    """The per-(seed, vu, stream) prefix of ``draw``; cache it to make draws cheaper."""
    h = splitmix64(seed & MASK64)
    h = splitmix64(h ^ (stream & MASK64))
    return splitmix64(h ^ (vu & MASK64))


def draw_keyed(key: int, iteration: int, step: int = 0) -> int:
    """Finish a draw from a ``vu_key`` prefix.

    ``draw_keyed(vu_key(s, v, k), i, j) == draw(s, v, i, k, j)``.
    """
    h = splitmix64(key ^ (iteration & MASK64))
    return splitmix64(h ^ (step & MASK64))


def draw(seed: int, vu: int, iteration: int, stream: int, step: int = 0) -> int:
    """A 64-bit value that depends only on its inputs.

    ``h = sm(seed); h = sm(h ^ stream); h = sm(h ^ vu); h = sm(h ^ iteration);
    return sm(h ^ step)`` with ``sm = splitmix64`` and every input taken modulo 2**64.
    """
    return draw_keyed(vu_key(seed, vu, stream), iteration, step)


def uniform(seed: int, vu: int, iteration: int, stream: int, step: int = 0) -> float:
    """A float in [0, 1): the top 53 bits of ``draw(...)`` divided by 2**53."""
    return (draw(seed, vu, iteration, stream, step) >> 11) * _INV_2_53


class RequestPicker:
    """Weighted request choice: request ``k`` is chosen with probability ``w[k] / sum(w)``.

    The choice for (seed, vu, iteration) is ``bisect_right(cumulative, u * total)`` with
    ``u = uniform(seed, vu, iteration, STREAM_REQUEST)``; zero-weight requests are never
    chosen. With a single request of positive weight no draw is made at all.
    """

    __slots__ = ("_cumulative", "_last", "_only", "_total")

    def __init__(self, weights: SequenceABC[float]) -> None:
        if not weights or any(w < 0 for w in weights):
            raise InvalidWeightsError(f"weights must be non-negative and non-empty: {weights!r}")
        cumulative = list(accumulate(float(w) for w in weights))
        total = cumulative[-1]
        if not total > 0:
            raise InvalidWeightsError(f"weights sum to zero: {weights!r}")
        positive = [k for k, w in enumerate(weights) if w > 0]
        self._cumulative = cumulative
        self._total = total
        # Index of the last positive weight: where rounding at u * total ~ total must land.
        self._last = positive[-1]
        self._only = positive[0] if len(positive) == 1 else -1

    def pick(self, seed: int, vu: int, iteration: int) -> int:
        """The request index VU ``vu`` sends in iteration ``iteration`` (weighted mode)."""
        if self._only >= 0:
            return self._only
        u = (draw(seed, vu, iteration, STREAM_REQUEST) >> 11) * _INV_2_53
        k = bisect_right(self._cumulative, u * self._total)
        return k if k <= self._last else self._last


class Planner:
    """The requests of each iteration for one scenario and seed, cheap on the hot path.

    In weighted mode an iteration is one request chosen by ``RequestPicker``; with a
    ``[sequence]`` it is every step in order, each repeated ``repeat`` times (expanded once
    here and returned as the same cached tuple for every iteration).
    """

    __slots__ = ("_picker", "_seed", "_sequence", "_singles")

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self._seed = seed
        self._sequence: tuple[int, ...] | None = None
        self._picker: RequestPicker | None = None
        if scenario.sequence is not None:
            index = {name: k for k, name in enumerate(scenario.request_names)}
            expanded: list[int] = []
            for step in scenario.sequence.steps:
                expanded.extend([index[step.request]] * step.repeat)
            self._sequence = tuple(expanded)
        else:
            self._picker = RequestPicker([r.weight for r in scenario.requests])
        # One shared 1-tuple per request so that weighted plans allocate nothing.
        self._singles = tuple((k,) for k in range(len(scenario.requests)))

    @property
    def sequence(self) -> tuple[int, ...] | None:
        """The expanded sequence walk, or ``None`` in weighted mode."""
        return self._sequence

    def plan(self, vu: int, iteration: int) -> tuple[int, ...]:
        """Request indices of iteration ``iteration`` of VU ``vu``, in sending order."""
        if self._sequence is not None:
            return self._sequence
        assert self._picker is not None
        return self._singles[self._picker.pick(self._seed, vu, iteration)]


def iteration_plan(
    scenario: Scenario, picker: RequestPicker | None, seed: int, vu: int, iteration: int
) -> list[int]:
    """Request indices for one iteration (the uncached form of ``Planner.plan``).

    With ``scenario.sequence`` the expanded steps; otherwise ``[picker.pick(...)]`` (a picker
    is built from the scenario's weights when ``picker`` is ``None``).
    """
    if scenario.sequence is not None:
        index = {name: k for k, name in enumerate(scenario.request_names)}
        return [index[s.request] for s in scenario.sequence.steps for _ in range(s.repeat)]
    if picker is None:
        picker = RequestPicker([r.weight for r in scenario.requests])
    return [picker.pick(seed, vu, iteration)]


def think_ns(think: ThinkTime | None, seed: int, vu: int, iteration: int, step: int) -> int:
    """The pause after request ``step`` of an iteration, in ns.

    ``None`` -> 0; constant -> ``duration_ms``; random -> ``min_ms + u * (max_ms - min_ms)``
    with ``u = uniform(seed, vu, iteration, STREAM_THINK, step)``; rounded to whole ns.
    """
    if think is None:
        return 0
    if think.type == "constant":
        return round((think.duration_ms or 0.0) * 1_000_000)
    lo = think.min_ms or 0.0
    hi = think.max_ms if think.max_ms is not None else lo
    u = uniform(seed, vu, iteration, STREAM_THINK, step)
    return round((lo + u * (hi - lo)) * 1_000_000)


def worker_vus(vu_ids: SequenceABC[int], procs: int, index: int) -> list[int]:
    """The VUs of worker ``index`` of ``procs``: those at positions ``p % procs == index``."""
    _check_part(index, procs, "worker")
    return list(vu_ids[index::procs])


def shard_vus(total_vus: int, shard_index: int, shard_count: int) -> list[int]:
    """VU ids ``v`` in ``range(total_vus)`` with ``v % shard_count == shard_index``."""
    _check_part(shard_index, shard_count, "shard")
    return list(range(shard_index, total_vus, shard_count))


def worker_slice(
    total_vus: int, procs: int, index: int, shard_index: int = 0, shard_count: int = 1
) -> list[int]:
    """The VU ids worker ``index`` runs: its share of this shard's VUs.

    With one shard this is exactly ``v % procs == index`` (SPEC section 3).
    """
    return worker_vus(shard_vus(total_vus, shard_index, shard_count), procs, index)


def open_model_worker_iterations(
    n_total: int,
    procs: int,
    index: int,
    shard_index: int = 0,
    shard_count: int = 1,
    pool: int | None = None,
) -> Iterator[int]:
    """Open model: the global iteration numbers worker ``index`` of shard ``shard_index``
    schedules, in increasing order; ``pool`` is the whole test's VU pool (``max_vus``).

    Arrival ``n`` goes to whoever owns VU slot ``n % pool``: VU ids are split over shards
    (``v % shard_count``) and then over a shard's workers (position ``% procs``), and the
    arrivals follow, so every shard and worker gets arrivals in proportion to its share of the
    pool and the shards together make exactly the unsharded test. (An even split sent half
    the arrivals of a 1-VU pool to a worker, or shard, with no VU, which dropped them all.)
    ``pool`` None or 0: split evenly, ``n % shard_count`` then position ``% procs``.
    """
    _check_part(index, procs, "worker")
    _check_part(shard_index, shard_count, "shard")
    if not pool:
        yield from range(shard_index + index * shard_count, n_total, shard_count * procs)
        return
    mine = range(shard_index + index * shard_count, pool, shard_count * procs)
    for base in range(0, n_total, pool):
        for slot in mine:
            n = base + slot
            if n >= n_total:
                return
            yield n


def open_model_arrival_owner(
    n: int, procs: int, shard_index: int = 0, shard_count: int = 1, pool: int | None = None
) -> int | None:
    """The worker of shard ``shard_index`` that schedules arrival ``n`` (the inverse of
    :func:`open_model_worker_iterations`; ``pool`` is the whole test's), or ``None`` when
    ``n`` is another shard's."""
    if n < 0:
        return None
    slot = n % pool if pool else n
    if slot % shard_count != shard_index:
        return None
    return ((slot - shard_index) // shard_count) % procs


def open_model_shard_arrivals(
    n_total: int, shard_index: int = 0, shard_count: int = 1, pool: int | None = None
) -> int:
    """How many of the arrivals ``0 .. n_total - 1`` shard ``shard_index`` schedules (see
    :func:`open_model_worker_iterations`)."""
    if not pool:
        return len(range(shard_index, n_total, shard_count))
    full, rest = divmod(n_total, pool)
    return full * len(range(shard_index, pool, shard_count)) + len(
        range(shard_index, rest, shard_count)
    )


def resolve_seed(cli_seed: int | None, scenario_seed: int | None) -> int:
    """The run's seed: ``--seed``, else ``runtime.prng_seed``, else a fresh random 63-bit value."""
    if cli_seed is not None:
        return cli_seed & MASK64
    if scenario_seed is not None:
        return scenario_seed & MASK64
    return secrets.randbits(63)


def _check_part(index: int, count: int, what: str) -> None:
    """Reject impossible (index, count) pairs: they are programming errors, not user input."""
    if count < 1 or not 0 <= index < count:
        raise SliceError(f"{what} index {index} out of range for {count} {what}s")
