"""The determinism contract: splitmix64 draws, request choice, think times, VU slicing."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings, strategies as st

from z6.engine.decisions import (
    ARRIVAL_VU_KEY,
    GOLDEN_GAMMA,
    MASK64,
    STREAM_REQUEST,
    STREAM_THINK,
    InvalidWeightsError,
    Planner,
    RequestPicker,
    SliceError,
    draw,
    draw_keyed,
    iteration_plan,
    open_model_arrival_owner,
    open_model_shard_arrivals,
    open_model_worker_iterations,
    resolve_seed,
    shard_vus,
    splitmix64,
    think_ns,
    uniform,
    vu_key,
    worker_slice,
    worker_vus,
)
from z6.engine.scenario import (
    RequestSpec,
    Runtime,
    Scenario,
    Sequence,
    SequenceStep,
    Target,
    ThinkTime,
)

U64 = st.integers(min_value=0, max_value=MASK64)
SMALL = st.integers(min_value=0, max_value=10_000)


def _scenario(weights: list[float], sequence: list[tuple[str, int]] | None = None) -> Scenario:
    requests = [
        RequestSpec(name=f"r{k}", method="GET", path=f"/{k}", weight=w)
        for k, w in enumerate(weights)
    ]
    seq = None
    if sequence is not None:
        seq = Sequence(steps=[SequenceStep(request=n, repeat=r) for n, r in sequence])
    return Scenario(
        runtime=Runtime(iterations=1, vus=1),
        target=Target(base_url="http://127.0.0.1:1"),
        requests=requests,
        sequence=seq,
    )


# --- splitmix64 and draws -------------------------------------------------------------------


def test_splitmix64_reference_sequence_from_state_zero() -> None:
    # The reference generator adds gamma then mixes, so output k is splitmix64(k * gamma).
    expected = [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    got = [splitmix64((k * GOLDEN_GAMMA) & MASK64) for k in range(3)]
    assert got == expected


def test_draw_formula_is_the_documented_chain() -> None:
    seed, vu, it, stream, step = 42, 7, 1234, STREAM_REQUEST, 3
    h = splitmix64(seed)
    h = splitmix64(h ^ stream)
    h = splitmix64(h ^ vu)
    h = splitmix64(h ^ it)
    assert draw(seed, vu, it, stream, step) == splitmix64(h ^ step)


def test_draw_known_vector() -> None:
    # Pinned so that any change to the formula (and so to every replayed log) is noticed.
    assert draw(0, 0, 0, 1, 0) == draw_keyed(vu_key(0, 0, 1), 0, 0)
    assert draw(42, 1, 2, STREAM_REQUEST) == 0x5DFCAA920F7DAA76


@settings(max_examples=300, deadline=None)
@given(U64, U64, U64, st.sampled_from([STREAM_REQUEST, STREAM_THINK]), SMALL)
def test_draw_is_64_bit_and_keyed_form_agrees(
    seed: int, vu: int, it: int, stream: int, step: int
) -> None:
    value = draw(seed, vu, it, stream, step)
    assert 0 <= value <= MASK64
    assert value == draw_keyed(vu_key(seed, vu, stream), it, step)
    u = uniform(seed, vu, it, stream, step)
    assert 0.0 <= u < 1.0
    assert u == (value >> 11) / 2**53


def test_streams_and_inputs_separate_values() -> None:
    base = draw(1, 2, 3, STREAM_REQUEST)
    assert base != draw(1, 2, 3, STREAM_THINK)
    assert base != draw(2, 2, 3, STREAM_REQUEST)
    assert base != draw(1, 3, 3, STREAM_REQUEST)
    assert base != draw(1, 2, 4, STREAM_REQUEST)
    assert base != draw(1, 2, 3, STREAM_REQUEST, 1)


def test_uniform_is_roughly_uniform() -> None:
    values = [uniform(9, v, i, STREAM_THINK) for v in range(100) for i in range(200)]
    mean = sum(values) / len(values)
    assert 0.49 < mean < 0.51
    buckets = Counter(int(x * 10) for x in values)
    assert all(1800 < buckets[b] < 2200 for b in range(10))


# --- request choice ---------------------------------------------------------------------------


def test_picker_frequencies_follow_weights() -> None:
    picker = RequestPicker([70, 20, 10])
    counts = Counter(picker.pick(5, vu, it) for vu in range(100) for it in range(1000))
    total = sum(counts.values())
    assert total == 100_000
    for k, share in enumerate([0.7, 0.2, 0.1]):
        assert abs(counts[k] / total - share) < 0.01


def test_zero_weight_never_picked() -> None:
    picker = RequestPicker([0, 3, 0, 1, 0])
    seen = Counter(picker.pick(11, vu, it) for vu in range(50) for it in range(400))
    assert set(seen) == {1, 3}


def test_single_positive_weight_always_chosen() -> None:
    picker = RequestPicker([0, 0, 2.5])
    assert {picker.pick(3, v, i) for v in range(10) for i in range(10)} == {2}


@pytest.mark.parametrize("weights", [[], [0, 0], [1, -1]])
def test_picker_rejects_bad_weights(weights: list[float]) -> None:
    with pytest.raises(InvalidWeightsError):
        RequestPicker(weights)


def test_picker_is_pure_and_order_independent() -> None:
    picker = RequestPicker([1, 1, 1, 1])
    keys = [(v, i) for v in range(20) for i in range(50)]
    forward = {k: picker.pick(77, *k) for k in keys}
    backward = {k: RequestPicker([1, 1, 1, 1]).pick(77, *k) for k in reversed(keys)}
    assert forward == backward
    assert len(set(forward.values())) == 4
    other_seed = {k: picker.pick(78, *k) for k in keys}
    assert other_seed != forward


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=8),
    U64,
    SMALL,
    SMALL,
)
def test_picker_returns_positive_weight_index_or_raises(
    weights: list[float], seed: int, vu: int, it: int
) -> None:
    try:
        picker = RequestPicker(weights)
    except InvalidWeightsError:
        assert sum(weights) == 0
        return
    k = picker.pick(seed, vu, it)
    assert 0 <= k < len(weights)
    assert weights[k] > 0


# --- iteration plans --------------------------------------------------------------------------


def test_planner_weighted_matches_picker_and_iteration_plan() -> None:
    scenario = _scenario([3, 1])
    planner = Planner(scenario, 99)
    picker = RequestPicker([3, 1])
    assert planner.sequence is None
    for vu in range(5):
        for it in range(50):
            plan = planner.plan(vu, it)
            assert plan == (picker.pick(99, vu, it),)
            assert list(plan) == iteration_plan(scenario, picker, 99, vu, it)
            assert list(plan) == iteration_plan(scenario, None, 99, vu, it)


def test_planner_sequence_expands_repeats_once() -> None:
    scenario = _scenario([1, 1, 1], sequence=[("r2", 2), ("r0", 1), ("r1", 3)])
    planner = Planner(scenario, 1)
    expected = (2, 2, 0, 1, 1, 1)
    assert planner.sequence == expected
    assert planner.plan(0, 0) == expected
    assert planner.plan(17, 5) is planner.plan(3, 9)  # cached, no per-iteration work
    assert iteration_plan(scenario, None, 1, 4, 4) == list(expected)


def test_arrival_key_is_outside_closed_vu_ids() -> None:
    planner = Planner(_scenario([1, 1, 1, 1]), 5)
    picks = [planner.plan(ARRIVAL_VU_KEY, n)[0] for n in range(200)]
    assert len(set(picks)) == 4
    assert picks == [planner.plan(ARRIVAL_VU_KEY, n)[0] for n in range(200)]


# --- think time -------------------------------------------------------------------------------


def test_think_none_and_constant() -> None:
    assert think_ns(None, 1, 2, 3, 0) == 0
    const = ThinkTime(type="constant", duration_ms=12.5)
    assert {think_ns(const, 1, v, i, s) for v in range(3) for i in range(3) for s in range(3)} == {
        12_500_000
    }


def test_think_random_range_and_determinism() -> None:
    think = ThinkTime(type="random", min_ms=10, max_ms=30)
    values = [think_ns(think, 8, v, i, s) for v in range(20) for i in range(20) for s in range(3)]
    assert all(10_000_000 <= x <= 30_000_000 for x in values)
    assert min(values) < 11_000_000
    assert max(values) > 29_000_000
    again = [think_ns(think, 8, v, i, s) for v in range(20) for i in range(20) for s in range(3)]
    assert values == again
    # Exactly the documented formula.
    u = uniform(8, 3, 4, STREAM_THINK, 2)
    assert think_ns(think, 8, 3, 4, 2) == round((10 + u * 20) * 1_000_000)


def test_think_random_steps_differ() -> None:
    think = ThinkTime(type="random", min_ms=0, max_ms=1000)
    assert len({think_ns(think, 1, 0, 0, s) for s in range(10)}) == 10


# --- slicing and shards -----------------------------------------------------------------------


@pytest.mark.parametrize("total", [0, 1, 7, 100])
@pytest.mark.parametrize("procs", [1, 2, 3, 8])
def test_worker_slices_partition_vus(total: int, procs: int) -> None:
    slices = [worker_slice(total, procs, w) for w in range(procs)]
    flat = [v for s in slices for v in s]
    assert sorted(flat) == list(range(total))
    assert len(flat) == len(set(flat))
    for w, s in enumerate(slices):
        assert all(v % procs == w for v in s)  # SPEC: v % procs == worker_index


@pytest.mark.parametrize(("total", "shards"), [(10, 3), (7, 7), (5, 8), (100, 4)])
def test_shards_partition_exactly(total: int, shards: int) -> None:
    parts = [shard_vus(total, i, shards) for i in range(shards)]
    assert sorted(v for p in parts for v in p) == list(range(total))
    assert all(v % shards == i for i, p in enumerate(parts) for v in p)


@pytest.mark.parametrize("procs", [1, 2, 5])
def test_sharded_worker_slices_cover_each_shard(procs: int) -> None:
    total, shards = 23, 3
    everything: list[int] = []
    for s in range(shards):
        shard = shard_vus(total, s, shards)
        got = [v for w in range(procs) for v in worker_slice(total, procs, w, s, shards)]
        assert sorted(got) == shard
        assert worker_vus(shard, procs, 0) == shard[0::procs]
        everything += got
    assert sorted(everything) == list(range(total))


def test_open_model_iterations_partition() -> None:
    n_total, procs, shards = 101, 3, 2
    got = [
        n
        for s in range(shards)
        for w in range(procs)
        for n in open_model_worker_iterations(n_total, procs, w, s, shards)
    ]
    assert sorted(got) == list(range(n_total))
    assert list(open_model_worker_iterations(10, 3, 1)) == [1, 4, 7]


@given(
    n_total=st.integers(0, 200),
    procs=st.integers(1, 4),
    shards=st.integers(1, 4),
    pool=st.integers(1, 12),
)
def test_open_model_arrivals_go_to_the_owner_of_their_pool_slot(
    n_total: int, procs: int, shards: int, pool: int
) -> None:
    """Arrival n runs where VU n % pool lives (its shard, its worker): each shard and worker
    gets arrivals in proportion to its VUs, none without VUs gets any, and the shards together
    are exactly the unsharded test."""
    got: list[int] = []
    for s in range(shards):
        in_shard = 0
        for w in range(procs):
            mine = list(open_model_worker_iterations(n_total, procs, w, s, shards, pool))
            assert mine == sorted(mine)
            vus = set(worker_slice(pool, procs, w, s, shards))
            assert all(n % pool in vus for n in mine)
            assert len(mine) == sum(1 for n in range(n_total) if n % pool in vus)
            # The replay verifier's inverse names this worker for each of them.
            assert {open_model_arrival_owner(n, procs, s, shards, pool) for n in mine} <= {w}
            in_shard += len(mine)
            got.extend(mine)
        assert in_shard == open_model_shard_arrivals(n_total, s, shards, pool)
    assert sorted(got) == list(range(n_total))


def test_open_model_routing_examples() -> None:
    assert list(open_model_worker_iterations(10, 2, 1, pool=1)) == []
    assert list(open_model_worker_iterations(10, 2, 0, pool=3)) == [0, 2, 3, 5, 6, 8, 9]
    # max_vus = 1 over 2 shards: shard 1 owns no VU, so no arrival (it dropped them all).
    assert list(open_model_worker_iterations(10, 1, 0, 1, 2, pool=1)) == []
    assert open_model_shard_arrivals(10, 0, 2, pool=1) == 10
    # Arrival 7 of a 3-VU pool is slot 1: VU 1, shard 1 of 2, its worker 0.
    assert open_model_arrival_owner(7, 2, 1, 2, pool=3) == 0
    assert open_model_arrival_owner(7, 2, 0, 2, pool=3) is None


def test_bad_slice_index_raises() -> None:
    with pytest.raises(SliceError):
        worker_slice(10, 2, 2)
    with pytest.raises(SliceError):
        shard_vus(10, 0, 0)


# --- seeds ------------------------------------------------------------------------------------


def test_resolve_seed_priority() -> None:
    assert resolve_seed(5, 7) == 5
    assert resolve_seed(None, 7) == 7
    assert resolve_seed(0, 7) == 0
    drawn = {resolve_seed(None, None) for _ in range(5)}
    assert all(0 <= s < 2**63 for s in drawn)
    assert len(drawn) > 1
