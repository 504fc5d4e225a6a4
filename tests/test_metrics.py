"""The one reducer: counts, HDR percentiles, per-second series, VU counting, merge, bounds."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from conftest import fuzz_examples
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings, strategies as st

from z6.engine.error_kinds import ErrorKind
from z6.engine.metrics import (
    EXCLUDED_FROM_LATENCY,
    WINDOW_SECONDS,
    Reducer,
    bucket_index,
    bucket_value,
    error_label,
    new_histogram,
    sparse_percentiles,
)
from z6.engine.summary import timeseries_rows
from z6.ipc.events import (
    Event,
    IterationDropped,
    RequestEvent,
    VuStarted,
    VuStopped,
    WorkerFinished,
    WorkerStarted,
)

MS = 1_000_000
S = 1_000_000_000


def req(
    *,
    request: int = 0,
    start_ns: int = 0,
    latency_ns: int = MS,
    status: int = 200,
    error: int = 0,
    vu: int = 0,
    iteration: int = 0,
    step: int = 0,
    bytes_received: int = 0,
    new_connection: bool = False,
    connect_ns: int = 0,
    scheduled_ns: int = -1,
    retried: bool = False,
) -> RequestEvent:
    """A request event with sensible defaults."""
    return RequestEvent(
        vu=vu,
        iteration=iteration,
        request=request,
        step=step,
        start_ns=start_ns,
        latency_ns=latency_ns,
        status=status,
        error=error,
        bytes_received=bytes_received,
        new_connection=new_connection,
        connect_ns=connect_ns,
        scheduled_ns=scheduled_ns,
        retried=retried,
    )


def _random_events(seed: int, n: int, *, seconds: float = 3.0, names: int = 3) -> list[Event]:
    rng = random.Random(seed)
    out: list[Event] = []
    for i in range(n):
        err = rng.choice([0, 0, 0, 0, ErrorKind.STATUS, ErrorKind.TIMEOUT, ErrorKind.INTERRUPTED])
        start = int(rng.random() * seconds * S)
        sched = start - rng.randrange(0, 20 * MS)
        out.append(
            req(
                request=rng.randrange(names),
                start_ns=start,
                latency_ns=int(rng.lognormvariate(16, 1)),  # around 9 ms
                status=0 if err in (ErrorKind.TIMEOUT, ErrorKind.INTERRUPTED) else 200,
                error=int(err),
                iteration=i,
                bytes_received=rng.randrange(1000),
                new_connection=rng.random() < 0.1,
                connect_ns=rng.randrange(10 * MS),
                scheduled_ns=sched,
            )
        )
    return out


def _by_request(r: Reducer, *, corrected: bool = False) -> dict[int, Counter[int]]:
    """``{request: {bucket: count}}`` of the requests that have latencies."""
    of = r.latency_buckets_of(corrected=corrected)
    return {q: c for q in range(len(r.request_names) + 1) if (c := of(q))}


def _buckets_equal(a: Reducer, b: Reducer) -> None:
    assert a.latency_buckets() == b.latency_buckets()
    for corrected in (False, True):
        assert _by_request(a, corrected=corrected) == _by_request(b, corrected=corrected)
        # The per-request view (live seconds included) adds up to the whole, which is
        # computed without grouping by request.
        total: Counter[int] = Counter()
        for c in _by_request(a, corrected=corrected).values():
            total.update(c)
        assert total == a.latency_buckets(corrected=corrected)


# ---------------------------------------------------------------- HDR layout


@settings(max_examples=fuzz_examples(50), deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=3_600_000_000), min_size=0, max_size=300))
def test_histogram_mean_equals_the_package(values: list[int]) -> None:
    """Our mean of a histogram is the package's ``get_mean_value()``, to the last bit."""
    from z6.engine.metrics import histogram_mean

    hist = new_histogram()
    for v in values:
        hist.record_value(v)
    assert histogram_mean(hist) == hist.get_mean_value()


def test_bucket_table_matches_bucket_index() -> None:
    """The reducer's lookup table gives the same bucket as the arithmetic, value by value."""
    from z6.engine.metrics import _bucket_table

    limit = 1 << 18
    table = _bucket_table(limit)
    assert len(table) == limit
    assert all(table[v] == bucket_index(v) for v in range(limit))


def test_latency_keys_agree_inside_and_outside_the_table() -> None:
    """Batches below the table limit, above it, and negative or huge (clamped) latencies."""
    from z6.engine.metrics import _KEY_BITS, _MAX_NS, _latency_keys

    lats = [0, 999, 1_000, 2_047_999, 2_048_000, 262_142_999, 262_144_000, 3_600_000_000_000]
    reqs = [i % 3 for i in range(len(lats))]
    fast = _latency_keys(reqs[:6], lats[:6])
    slow = _latency_keys(reqs, lats)
    assert fast == slow[:6]
    assert [k >> _KEY_BITS for k in slow] == reqs
    assert [k & ((1 << _KEY_BITS) - 1) for k in slow] == [bucket_index(x // 1000) for x in lats]
    clamped = _latency_keys([0, 0], [-5, _MAX_NS * 2])
    assert clamped == _latency_keys([0, 0], [0, _MAX_NS])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=-3, max_value=70),
            st.one_of(
                st.integers(min_value=0, max_value=65_536_000),  # per-request key tables
                st.integers(min_value=-10, max_value=270_000_000),  # bucket table, clamping
                st.integers(min_value=0, max_value=2 * 3_600_000_000_000),
            ),
        ),
        max_size=40,
    )
)
def test_latency_keys_equal_the_arithmetic(pairs: list[tuple[int, int]]) -> None:
    """Whichever table serves a batch (per-request key objects, the bucket table, none), the
    keys are ``(request << bits) + bucket`` of the clamped latency, for any request index."""
    from z6.engine.metrics import _KEY_BITS, _MAX_NS, _latency_keys

    reqs = [r for r, _ in pairs]
    lats = [x for _, x in pairs]
    expected = [(r << _KEY_BITS) + bucket_index(min(max(x, 0), _MAX_NS) // 1000) for r, x in pairs]
    assert _latency_keys(reqs, lats) == expected


def test_bucket_index_matches_the_hdr_package() -> None:
    hist = new_histogram()
    rng = random.Random(7)
    values = list(range(0, 5000)) + [rng.randrange(1, 3_600_000_000) for _ in range(3000)]
    values += [2**k for k in range(32)] + [2**k - 1 for k in range(1, 32)]
    for v in values:
        if v > 3_600_000_000:
            continue
        idx = bucket_index(v)
        assert idx == hist._counts_index_for(v), v
        assert bucket_value(idx) == hist.get_highest_equivalent_value(v), v


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=3_600_000_000), min_size=1, max_size=200),
    st.lists(st.floats(min_value=0.1, max_value=100.0), min_size=1, max_size=6),
)
def test_sparse_percentiles_equal_hdr_percentiles(values: list[int], ps: list[float]) -> None:
    hist = new_histogram()
    for v in values:
        hist.record_value(v)
    sparse = sparse_percentiles(Counter(bucket_index(v) for v in values), ps)
    for p in ps:
        assert sparse[p] == hist.get_value_at_percentile(p)


def test_sparse_percentiles_of_nothing_is_empty() -> None:
    assert sparse_percentiles({}, [50.0]) == {}


# ---------------------------------------------------------------- counts


def test_counts_per_name_status_and_kind() -> None:
    r = Reducer(["home", "login"])
    r.add(
        [
            req(request=0, status=200),
            req(request=0, status=200),
            req(request=0, status=404, error=ErrorKind.STATUS),
            req(request=1, status=0, error=ErrorKind.CONNECT_REFUSED, latency_ns=0),
            req(request=1, status=201, bytes_received=500, new_connection=True, connect_ns=2 * MS),
            req(request=1, status=0, error=ErrorKind.TIMEOUT, latency_ns=5 * S),
        ]
    )
    assert (r.total, r.ok, r.failed) == (6, 3, 3)
    assert r.counts_by_request() == {0: (3, 1), 1: (3, 2)}
    assert r.by_status() == {200: 2, 201: 1, 404: 1}  # status 0 left out
    assert r.errors_by_kind() == {
        ErrorKind.CONNECT_REFUSED: 1,
        ErrorKind.TIMEOUT: 1,
        ErrorKind.STATUS: 1,
    }
    assert r.bytes_received == 500
    assert r.new_connections == 1
    assert r.connect_mean_ns == 2 * MS
    assert r.connect_max_ns == 2 * MS


def test_latency_includes_failures_but_not_unsent_or_interrupted_requests() -> None:
    r = Reducer(["a"])
    r.add(
        [
            req(latency_ns=10 * MS),
            req(latency_ns=20 * MS, status=500, error=ErrorKind.STATUS),
            req(latency_ns=30 * MS, status=0, error=ErrorKind.TIMEOUT),
            req(latency_ns=0, status=0, error=ErrorKind.CONNECT_REFUSED),
            req(latency_ns=1, status=0, error=ErrorKind.CONNECT_TIMEOUT),
            req(latency_ns=0, status=0, error=ErrorKind.DNS_ERROR),
            req(latency_ns=0, status=0, error=ErrorKind.TLS_ERROR),
            req(latency_ns=9 * S, status=0, error=ErrorKind.INTERRUPTED),
        ]
    )
    hist = r.histogram()
    assert r.total == 8
    assert hist.get_total_count() == 3
    assert hist.get_max_value() == bucket_value(bucket_index(30_000))
    assert hist.get_min_value() == 10_000


def test_percentiles_of_known_values_within_hdr_precision() -> None:
    r = Reducer(["a", "b"])
    # a: 1..1000 ms once each; b: always 5 ms
    r.add([req(request=0, latency_ns=i * MS, start_ns=0) for i in range(1, 1001)])
    r.add([req(request=1, latency_ns=5 * MS) for _ in range(100)])
    a = r.histogram(0)
    for p, expected_ms in ((50, 500), (90, 900), (99, 990), (99.9, 999)):
        got = a.get_value_at_percentile(p) / 1000
        assert abs(got - expected_ms) <= expected_ms * 0.001 + 0.001
    b = r.histogram(1)
    assert b.get_total_count() == 100
    assert b.get_value_at_percentile(99) == bucket_value(bucket_index(5000))  # 5003
    assert r.histogram().get_total_count() == 1100


def test_out_of_range_latencies_are_clamped() -> None:
    r = Reducer(["a"])
    r.add([req(latency_ns=-5), req(latency_ns=3 * 3600 * S)])
    hist = r.histogram()
    assert hist.get_total_count() == 2
    assert hist.get_min_value() == 0
    assert hist.get_max_value() >= 3_600_000_000


def test_unknown_request_index_and_error_kind_do_not_crash() -> None:
    r = Reducer(["only"])
    r.add([req(request=3, status=0, error=99)])
    assert r.name_of(3) == "request_3"
    assert r.request_indices() == [0, 3]
    assert error_label(99) == "unknown_99"
    assert error_label(ErrorKind.CLOSED_EARLY) == "closed_early"


# ---------------------------------------------------------------- time series


def test_per_second_rows_use_the_end_time() -> None:
    r = Reducer(["a"])
    r.add(
        [
            req(start_ns=100 * MS, latency_ns=10 * MS),  # ends in second 0
            req(start_ns=900 * MS, latency_ns=200 * MS),  # ends in second 1
            req(start_ns=1_500 * MS, latency_ns=10 * MS, status=500, error=ErrorKind.STATUS),
            req(start_ns=3_100 * MS, latency_ns=40 * MS),  # second 3; second 2 is empty
        ]
    )
    rows = r.timeseries()
    assert [x.second for x in rows] == [0, 1, 2, 3]
    assert [x.requests for x in rows] == [1, 2, 0, 1]
    assert [x.errors for x in rows] == [0, 1, 0, 0]
    assert rows[0].p50_us == bucket_value(bucket_index(10_000))
    assert rows[1].p99_us == bucket_value(bucket_index(200_000))
    assert rows[2].p50_us is None


def test_batches_spanning_seconds_equal_one_event_per_batch() -> None:
    events = _random_events(3, 400, seconds=4.0)
    whole = Reducer(["a", "b", "c"], open_model=True)
    whole.add(events)
    single = Reducer(["a", "b", "c"], open_model=True)
    for ev in events:
        single.add([ev])
    assert whole.timeseries() == single.timeseries()
    _buckets_equal(whole, single)


def test_active_vus_is_the_max_of_start_and_end_of_each_second() -> None:
    r = Reducer(["a"])
    r.add([VuStarted(0, 500 * MS), VuStarted(1, 1_500 * MS)])
    r.add([VuStopped(0, 2_500 * MS, 3), VuStopped(1, 4_200 * MS, 4)])
    rows = r.timeseries()
    assert [x.active_vus for x in rows] == [1, 2, 2, 1, 1]
    assert r.active_vus == 0


def test_vu_time_counts_vus_that_start_and_stop_within_a_second() -> None:
    """25 VUs that each run 0.2 s inside second 0 are invisible to ``active_vus`` (0 at its
    start and its end) but are 5 VU-seconds: a mean of 5 active VUs. It merges exactly, with
    an offset of whole seconds too."""
    r = Reducer(["a"])
    r.add([VuStarted(v, 100 * MS + v * 10 * MS) for v in range(25)])
    r.add([VuStopped(v, 300 * MS + v * 10 * MS, 1) for v in range(25)])
    (row,) = r.timeseries()
    assert (row.active_vus, row.vu_ns) == (0, 25 * 200 * MS)
    rows = timeseries_rows(r)
    assert rows[0]["vus_avg"] == 5.0
    # A run that ends 0.5 s into the second: the mean is over the half it covered.
    assert timeseries_rows(r, 0.5)[0]["vus_avg"] == 10.0
    other = Reducer(["a"])
    other.add([VuStarted(0, 1_500 * MS), VuStopped(0, 1_750 * MS, 1)])
    merged = Reducer(["a"])
    merged.merge(r)
    merged.merge(other, offset_ns=2 * S + 123)
    assert [x.vu_ns for x in merged.timeseries()] == [5 * S, 0, 0, 250 * MS]


def test_active_vus_does_not_depend_on_arrival_order() -> None:
    a = Reducer(["a"])
    a.add([VuStarted(0, 100 * MS), VuStopped(0, 2_100 * MS, 1), VuStarted(1, 3_000 * MS)])
    b = Reducer(["a"])
    b.add([VuStarted(1, 3_000 * MS)])
    b.add([VuStopped(0, 2_100 * MS, 1)])
    b.add([VuStarted(0, 100 * MS)])
    assert a.timeseries() == b.timeseries()


def test_memory_stays_bounded_over_a_long_sparse_run() -> None:
    r = Reducer(["a"])
    most = 0
    for s in range(10_000):
        r.add([req(start_ns=s * S + 1000, latency_ns=(1 + s % 7) * MS)])
        most = max(most, r.live_seconds)
    assert most <= WINDOW_SECONDS + 2
    rows = r.timeseries()
    assert len(rows) == 10_000
    assert rows[5000].p50_us == bucket_value(bucket_index((1 + 5000 % 7) * 1000))
    assert all(x.requests == 1 for x in rows)


def test_late_events_count_but_keep_the_finalized_percentiles() -> None:
    r = Reducer(["a"])
    r.add([req(start_ns=0, latency_ns=5 * MS)])
    r.add([req(start_ns=(WINDOW_SECONDS + 3) * S, latency_ns=MS)])  # finalizes second 0
    assert r.live_seconds == 1
    r.add([req(start_ns=100 * MS, latency_ns=800 * MS)])  # late, ends in second 0 too
    row0 = r.timeseries()[0]
    assert row0.requests == 2
    assert row0.p50_us == bucket_value(
        bucket_index(5000)
    )  # the late latency is not in the finalized second
    assert r.histogram().get_total_count() == 3  # but it is in the run's histogram


# ---------------------------------------------------------------- duration & accounting


def test_duration_prefers_the_latest_of_finish_request_end_and_vu_stop() -> None:
    r = Reducer(["a"])
    assert r.duration_ns == 0
    r.add([req(start_ns=2 * S, latency_ns=500 * MS)])
    assert r.duration_ns == 2_500 * MS
    r.add([VuStopped(0, 2_700 * MS, 1)])
    assert r.duration_ns == 2_700 * MS
    r.add([WorkerFinished(0, 3 * S, 3, 1, 0)])
    assert r.duration_ns == 3 * S


def test_an_aborted_run_lasts_to_its_abort() -> None:
    r = Reducer(["a"])
    r.add([req(start_ns=10 * MS, latency_ns=20 * MS)])
    r.add_abort(1_700 * MS)
    assert r.duration_ns == 1_700 * MS
    r.add_abort(MS)  # an earlier instant changes nothing
    assert r.duration_ns == 1_700 * MS


def test_retried_requests_are_counted_and_merged() -> None:
    a, b = Reducer(["a"]), Reducer(["a"])
    a.add([req(), req(retried=True, new_connection=True, connect_ns=MS), req()])
    assert a.retried == 1
    b.add([req(retried=True), req(retried=True, error=ErrorKind.RESET)])
    a.merge(b)
    assert (a.retried, a.total, a.failed) == (3, 5, 1)


def test_accounting_per_worker() -> None:
    r = Reducer(["a"])
    r.add([WorkerStarted(0, 11, 0, 1), VuStarted(0, 0), req(), req()], 0)
    r.add([req(), VuStopped(0, S, 3), WorkerFinished(0, S, 6, 3, 2, 1_500_000_000)], 0)
    r.add([WorkerStarted(1, 12, 0, 1), req(vu=1)], 1)  # worker 1 never finished
    r.add([req()], -1)  # unattributed: counted in metrics only
    accts = {a.worker: a for a in r.workers()}
    assert accts[0].received == 6
    assert accts[0].reported == 6
    assert accts[0].requests_recorded == 3
    assert accts[0].requests_started == 3
    assert accts[1].received == 2
    assert accts[1].reported is None
    assert (r.ring_waits, r.ring_wait_ns) == (2, 1_500_000_000)
    assert r.total == 5
    other = Reducer(["a"])
    other.add([WorkerFinished(0, S, 0, 0, 1, 250_000_000)], 0)
    r.merge(other)
    assert (r.ring_waits, r.ring_wait_ns) == (3, 1_750_000_000)


# ---------------------------------------------------------------- open model


def test_open_model_corrected_latency_started_and_dropped() -> None:
    r = Reducer(["a"], open_model=True)
    r.add(
        [
            req(start_ns=1_010 * MS, latency_ns=5 * MS, scheduled_ns=1_000 * MS),
            req(start_ns=1_200 * MS, latency_ns=5 * MS, scheduled_ns=1_200 * MS),
            req(start_ns=1_300 * MS, latency_ns=5 * MS, scheduled_ns=1_250 * MS, step=1),
            req(start_ns=1_400 * MS, latency_ns=7 * MS, scheduled_ns=-1),
            IterationDropped(9, 2_500 * MS),
            IterationDropped(10, 2_600 * MS),
        ]
    )
    corr = r.histogram(corrected=True)
    assert corr.get_total_count() == 3
    assert corr.get_max_value() == bucket_value(bucket_index(55_000))  # 50 ms late + 5 ms
    assert corr.get_min_value() == 5000
    assert sorted(r.latency_buckets(corrected=True).elements()) == sorted(
        bucket_index(v) for v in (15_000, 5000, 55_000)
    )
    assert r.dropped_iterations == 2
    rows = r.timeseries()
    assert [x.started for x in rows] == [0, 2, 0]  # step 0 only, by scheduled second
    assert [x.dropped for x in rows] == [0, 0, 2]


def test_closed_model_keeps_no_corrected_latency() -> None:
    r = Reducer(["a"])
    r.add([req(scheduled_ns=0, start_ns=10 * MS)])
    assert r.histogram(corrected=True).get_total_count() == 0


# ---------------------------------------------------------------- interval


def test_interval_reports_since_the_previous_call() -> None:
    r = Reducer(["a"])
    r.add([VuStarted(0, 0), VuStarted(1, 0)])
    r.add([req(start_ns=i * 10 * MS, latency_ns=10 * MS) for i in range(100)])  # ends at 1 s
    first = r.interval(S)
    assert (first.requests, first.ok, first.failed) == (100, 100, 0)
    assert first.p50_ms == pytest.approx(10.0, rel=1e-3)
    assert first.rps == pytest.approx(100.0)
    assert first.active_vus == 2
    r.add([req(start_ns=S, latency_ns=S, status=503, error=ErrorKind.STATUS)])  # ends at 2 s
    r.add([IterationDropped(1, S)])
    second = r.interval(S)
    assert (second.requests, second.failed, second.dropped) == (1, 1, 1)
    assert second.p99_ms == pytest.approx(1000.0, rel=1e-3)
    assert second.rps == pytest.approx(1.0)
    assert second.total_requests == 101
    assert second.total_errors == 1
    empty = r.interval(S)
    assert empty.requests == 0
    assert empty.p50_ms is None
    assert empty.rps == 0.0
    assert r.interval(0).rps == 0.0


def test_interval_rate_is_over_the_wall_time_given_not_the_event_time() -> None:
    """50 VUs that think between requests end theirs in a burst: the rate of a 1 s interval
    is 50/s however close together the 50 ends fall (dividing by the 50 ms the ends spanned
    read 1,000/s)."""
    r = Reducer(["a"])
    r.add([req(vu=v, start_ns=S + v * MS, latency_ns=MS) for v in range(50)])
    stats = r.interval(S)
    assert stats.requests == 50
    assert stats.rps == pytest.approx(50.0)
    assert stats.span_s == pytest.approx(1.0)
    r.add([req(vu=v, start_ns=2 * S + v * MS, latency_ns=MS) for v in range(50)])
    assert r.interval(2 * S).rps == pytest.approx(25.0)


# ---------------------------------------------------------------- merge


def test_merge_equals_one_reducer_fed_both() -> None:
    a_events = _random_events(1, 300)
    b_events = _random_events(2, 300)
    a = Reducer(["a", "b", "c"], open_model=True)
    a.add(a_events[:150], 0)
    a.add(a_events[150:], 0)
    b = Reducer(["a", "b", "c"], open_model=True)
    b.add(b_events, 1)
    both = Reducer(["a", "b", "c"], open_model=True)
    both.add(a_events[:150], 0)
    both.add(a_events[150:], 0)
    both.add(b_events, 1)
    before = b.latency_buckets()
    a.merge(b)
    assert b.latency_buckets() == before  # other is untouched
    _buckets_equal(a, both)
    assert (a.total, a.failed) == (both.total, both.failed)
    assert a.by_status() == both.by_status()
    assert a.errors_by_kind() == both.errors_by_kind()
    assert a.bytes_received == both.bytes_received
    assert a.new_connections == both.new_connections
    assert a.connect_max_ns == both.connect_max_ns
    assert a.duration_ns == both.duration_ns
    assert a.timeseries() == both.timeseries()
    assert a.parts == 2


def test_merge_renumbers_parts_and_shifts_by_offset() -> None:
    a = Reducer(["a"])
    a.add([WorkerStarted(0, 1, 0, 1), req(start_ns=0, latency_ns=MS)], 0)
    b = Reducer(["a"])
    b.add([WorkerStarted(0, 2, 0, 1), req(start_ns=0, latency_ns=MS), VuStarted(0, 0)], 0)
    a.merge(b, offset_ns=2 * S)
    assert [(w.part, w.worker) for w in a.workers()] == [(0, 0), (1, 0)]
    rows = a.timeseries()
    assert [x.requests for x in rows] == [1, 0, 1]
    assert [x.active_vus for x in rows] == [0, 0, 1]
    assert a.duration_ns == 2 * S + MS


def test_merge_of_finalized_seconds_adds_counts_and_approximates_percentiles() -> None:
    a = Reducer(["a"])
    a.add([req(start_ns=0, latency_ns=2 * MS)])
    a.add([req(start_ns=20 * S, latency_ns=MS)])  # second 0 finalized in a
    b = Reducer(["a"])
    b.add([req(start_ns=0, latency_ns=8 * MS)] * 3)  # second 0 still live in b
    a.merge(b)
    row0 = a.timeseries()[0]
    assert row0.requests == 4
    v8 = bucket_value(bucket_index(8000))
    assert row0.p99_us == v8  # max of the two p99s
    assert row0.p50_us == round((2000 * 1 + v8 * 3) / 4)  # request-weighted p50
    assert a.histogram().get_total_count() == 5  # the run histogram stays exact


# ---------------------------------------------------------------- batching invariance


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.lists(st.integers(1, 50), max_size=20))
def test_results_do_not_depend_on_how_events_are_batched(seed: int, cuts: list[int]) -> None:
    events: list[Event] = list(_random_events(seed, 120, seconds=2.0))
    events.insert(10, VuStarted(3, 50 * MS))
    events.insert(60, IterationDropped(4, 700 * MS))
    one = Reducer(["a", "b", "c"], open_model=True)
    one.add(events)
    many = Reducer(["a", "b", "c"], open_model=True)
    i = 0
    for c in cuts:
        many.add(events[i : i + c])
        i += c
    many.add(events[i:])
    _buckets_equal(one, many)
    assert one.timeseries() == many.timeseries()
    assert one.by_status() == many.by_status()
    assert one.duration_ns == many.duration_ns


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=0, max_value=10_000),
    st.lists(st.integers(1, 80), max_size=12),
    st.integers(0, 240),
)
def test_run_latency_counts_equal_a_direct_count(seed: int, cuts: list[int], split: int) -> None:
    """The run's latency counts live in the per-second histograms until a second is finalized
    (then they join the run's counts); whatever the batching, the window, late events and
    merges, they equal a direct count of the events."""
    events = _random_events(seed, 240, seconds=3.0 * WINDOW_SECONDS)  # unsorted: late events
    expected: Counter[int] = Counter()
    for e in events:
        assert isinstance(e, RequestEvent)
        if e.error not in EXCLUDED_FROM_LATENCY:
            expected[bucket_index(e.latency_ns // 1000)] += 1
    r = Reducer(["a", "b", "c"])
    i = 0
    for c in [*cuts, len(events)]:
        r.add(events[i : i + c])
        i += c
        seen = sum(1 for e in events[:i] if e.error not in EXCLUDED_FROM_LATENCY)
        assert r.latency_buckets().total() == seen  # reading does not disturb the counts
    assert r.latency_buckets() == expected
    assert sum(c.total() for c in _by_request(r).values()) == expected.total()
    a = Reducer(["a", "b", "c"])
    a.add(events[:split])
    b = Reducer(["a", "b", "c"])
    b.add(events[split:])
    a.merge(b)
    assert a.latency_buckets() == expected


def test_histogram_is_a_real_hdr_histogram() -> None:
    r = Reducer(["a"])
    r.add([req(latency_ns=3 * MS)])
    assert isinstance(r.histogram(), HdrHistogram)


def test_timeseries_of_a_huge_timestamp_stays_small() -> None:
    """A forged event far in the future must not make the series allocate a row per second."""
    from z6.ipc.events import RequestEvent

    r = Reducer(["a"])
    r.add([RequestEvent(0, 0, 0, 0, 1_000_000, 1000, 200, 0, 10, True, 5, -1, 0)], 0)
    r.add([RequestEvent(0, 1, 0, 0, 2**62, 1000, 200, 0, 10, False, 0, -1, 0)], 0)
    rows = r.timeseries()
    assert [row.second for row in rows] == [0, 2**62 // 1_000_000_000]
    assert sum(row.requests for row in rows) == 2


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 0, 0, 1, 70]),  # 70: outside the per-request key tables
            st.sampled_from([200, 200, 200, 404, 0]),
            st.sampled_from([0, 0, 0, 0, int(ErrorKind.STATUS), int(ErrorKind.INTERRUPTED)]),
            st.sampled_from([False, False, False, True]),
            st.integers(min_value=0, max_value=80_000_000),
        ),
        min_size=1,
        max_size=60,
    ),
    st.lists(st.integers(1, 30), max_size=8),
)
def test_uniform_batches_count_like_any_other(
    rows: list[tuple[int, int, int, bool, int]], cuts: list[int]
) -> None:
    """Batches of one request, one status, no error and no new connection take a shortcut in
    the reducer; counts per (request, status, error), new connections and latency keys must
    equal a direct count whichever way the events are batched. The small domains above make
    such batches common."""
    events = [
        req(request=r, status=s, error=e, new_connection=nc, latency_ns=lat, start_ns=i * MS)
        for i, (r, s, e, nc, lat) in enumerate(rows)
    ]
    names = [f"r{i}" for i in range(71)]
    red = Reducer(names)
    i = 0
    for c in [*cuts, len(events)]:
        red.add(events[i : i + c])
        i += c
    codes: Counter[tuple[int, int]] = Counter()
    lat: Counter[int] = Counter()
    for r, _s, e, _nc, x in rows:
        codes[(r, e)] += 1
        if e not in EXCLUDED_FROM_LATENCY:
            lat[bucket_index(x // 1000)] += 1
    assert red.total == len(rows)
    assert red.failed == sum(1 for row in rows if row[2])
    assert red.new_connections == sum(1 for row in rows if row[3])
    assert red.by_status() == dict(sorted(Counter(s for _r, s, *_ in rows if s).items()))
    assert red.counts_by_request() == {
        r: (
            sum(c for (r2, _e), c in codes.items() if r2 == r),
            sum(c for (r2, e), c in codes.items() if r2 == r and e),
        )
        for r in {r for r, *_ in rows}
    }
    assert red.latency_buckets() == lat


@settings(max_examples=fuzz_examples(100), deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["start", "start", "stop", "stop", "dropped", "request"]),
            st.integers(min_value=0, max_value=4_999).map(lambda ms: ms * MS),
        ),
        min_size=1,
        max_size=80,
    ),
    st.lists(st.integers(1, 30), max_size=8),
)
def test_vu_starts_and_stops_count_like_a_direct_tally(
    rows: list[tuple[str, int]], cuts: list[int]
) -> None:
    """The reducer counts VU starts and stops of a batch in bulk; active VUs per second, the
    final count, the measured time and dropped iterations must equal a direct tally of the
    events in any batching, mixed with requests and other lifecycle events."""
    events: list[Event] = [WorkerStarted(0, 1, 0, 1)]
    for i, (kind, t) in enumerate(rows):
        if kind == "start":
            events.append(VuStarted(i, t))
        elif kind == "stop":
            events.append(VuStopped(i, t, 1))
        elif kind == "dropped":
            events.append(IterationDropped(i, t))
        else:
            events.append(req(start_ns=t, latency_ns=MS))
    red = Reducer(["a"], open_model=True)
    i = 0
    for c in [*cuts, len(events)]:
        red.add(events[i : i + c], 0)
        i += c
    delta: Counter[int] = Counter()
    for kind, t in rows:
        if kind in ("start", "stop"):
            delta[t // S] += 1 if kind == "start" else -1
    ends = [t + MS for kind, t in rows if kind == "request"]
    vu_times = [t for kind, t in rows if kind in ("start", "stop")]
    last = max([t // S for kind, t in rows if kind != "request"] + [e // S for e in ends])
    level = 0
    expected_active = []
    for s in range(last + 1):
        before = level
        level += delta[s]
        expected_active.append(max(before, level, 0))
    assert [row.active_vus for row in red.timeseries()] == expected_active
    # VU-time per second: the level integrated over the second, event by event.
    changes = sorted(
        (t, 1 if kind == "start" else -1) for kind, t in rows if kind in ("start", "stop")
    )
    expected_vu_ns = []
    level = 0
    for s in range(last + 1):
        area, at = 0, s * S
        for t, d in changes:
            if s * S <= t < (s + 1) * S:
                area += level * (t - at)
                level, at = level + d, t
        area += level * ((s + 1) * S - at)
        expected_vu_ns.append(max(area, 0))
    assert [row.vu_ns for row in red.timeseries()] == expected_vu_ns
    assert red.active_vus == max(level, 0)
    assert red.duration_ns == max([*ends, *vu_times, 0])
    assert red.dropped_iterations == sum(1 for kind, _ in rows if kind == "dropped")
