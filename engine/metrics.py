"""The one reducer: turns batches of events into counts, HDR histograms and a time series.

``z6 run`` (live, from the rings) and ``z6 analyze`` (from ``events.bin``) feed the same
batches in the same order to a :class:`Reducer` and then build the summary from it, so they
print identical numbers. Nothing here reads a clock: every figure is a function of the events
(and of the order of the batches, which both paths share).

Latencies are kept as counts per HDR bucket (the bucket layout of
``HdrHistogram(1, 3_600_000_000, 3)``: microseconds, 1 us .. 1 hour, 3 significant digits).
The hot path only computes bucket indices and lets ``collections.Counter`` (C code) count them
per batch; real :class:`hdrh.histogram.HdrHistogram` objects are built from those counts when
the summary asks (:meth:`Reducer.histogram`). Memory is bounded by the bucket count per request
name, whatever the run length. The choices (which requests have a latency, how per-second rows
are formed) are documented in ``docs/metrics.md``.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from hdrh.histogram import HdrHistogram

from z6.engine.error_kinds import CONNECT_FAILURES, ErrorKind
from z6.ipc.events import (
    Event,
    IterationDropped,
    RequestEvent,
    VuStarted,
    VuStopped,
    WorkerFinished,
    WorkerStarted,
)

__all__ = [
    "EXCLUDED_FROM_LATENCY",
    "HDR_HIGHEST_US",
    "HDR_LOWEST_US",
    "HDR_SIGNIFICANT_DIGITS",
    "WINDOW_SECONDS",
    "IntervalStats",
    "Reducer",
    "SecondRow",
    "WorkerAccount",
    "bucket_index",
    "bucket_value",
    "error_label",
    "histogram_mean",
    "histogram_of",
    "new_histogram",
    "sparse_percentiles",
]

HDR_LOWEST_US = 1
HDR_HIGHEST_US = 3_600_000_000  # one hour
HDR_SIGNIFICANT_DIGITS = 3
WINDOW_SECONDS = 5
"""Per-second histograms older than this (relative to the newest request end) are finalized."""

EXCLUDED_FROM_LATENCY: frozenset[int] = frozenset(
    {
        ErrorKind.INTERRUPTED,
        ErrorKind.CONNECT_REFUSED,
        ErrorKind.CONNECT_TIMEOUT,
        ErrorKind.DNS_ERROR,
        ErrorKind.TLS_ERROR,
    }
)
"""Error kinds whose request has no meaningful latency: no request was sent, or z6 cut it."""

_NS = 1_000_000_000
_add = operator.add
_second_of = _NS.__rfloordiv__  # t_ns -> its second (t_ns // _NS), callable from C


def new_histogram() -> HdrHistogram:
    """An empty histogram with z6's layout (us, 1 us .. 1 h, 3 significant digits)."""
    return HdrHistogram(HDR_LOWEST_US, HDR_HIGHEST_US, HDR_SIGNIFICANT_DIGITS)


# The bucket layout, read from the package so that our index arithmetic is the package's.
_REF = new_histogram()
if _REF.unit_magnitude != 0:  # pragma: no cover - only if the package changed its layout
    raise ImportError("hdrhistogram: unexpected unit magnitude for a lowest value of 1")
_HALF_MAG: int = _REF.sub_bucket_half_count_magnitude  # 10 for 3 digits
_HALF: int = _REF.sub_bucket_half_count  # 1024
_MASK: int = _REF.sub_bucket_mask  # 2047
_SHIFT_BITS: int = _HALF_MAG + 1  # 11
_COUNTS_LEN: int = _REF.counts_len
_MAX_INDEX = _COUNTS_LEN - 1
_MAX_NS = HDR_HIGHEST_US * 1000
_KEY_BITS = _COUNTS_LEN.bit_length()  # a latency key is (request << _KEY_BITS) | bucket
_KEY_LOW = (1 << _KEY_BITS) - 1
del _REF


def bucket_index(value_us: int) -> int:
    """The HDR counts index of ``value_us`` (same as the package's ``_counts_index_for``)."""
    b = (value_us | _MASK).bit_length() - _SHIFT_BITS
    return (b << _HALF_MAG) + (value_us >> b)


def _bucket_table(limit_us: int) -> list[int]:
    """``bucket_index(v)`` for every ``v < limit_us``, built run by run (each bucket of
    magnitude b covers 2**b consecutive values) rather than value by value."""
    table = list(range(min(limit_us, _MASK + 1)))
    b = 1
    while len(table) < limit_us:
        lo = len(table)
        step = 1 << b
        for v in range(lo, min(lo * 2, limit_us), step):
            table.extend([(b << _HALF_MAG) + (v >> b)] * step)
        b += 1
    del table[limit_us:]
    return table


# Latencies below 2**18 us (262 ms) find their bucket with one list lookup, about four times
# cheaper than the arithmetic of ``bucket_index`` in the reducer's hot loop (2 MB of table,
# built on first use: a few ms that commands which reduce nothing should not pay).
_TABLE_LIMIT_US = 1 << 18
_TABLE_LIMIT_NS = _TABLE_LIMIT_US * 1000
_BUCKET_OF_US: list[int] = []

# Below 2**16 us (65 ms) the first 64 request indices go one step further: a table per request
# holds the finished key objects, one object per bucket. No int is allocated per event, and
# the Counter lookups that follow match keys by identity instead of comparing values (together
# about 50 ns of the reducer's ~800 per event). 0.7 MB per request index actually seen.
_KEYTAB_LIMIT_US = 1 << 16
_KEYTAB_LIMIT_NS = _KEYTAB_LIMIT_US * 1000
_KEYTAB_REQUESTS = 64
_KEYTABS: dict[int, list[int]] = {}


def _bucket_of_us() -> list[int]:
    table = _BUCKET_OF_US
    if not table:
        table.extend(_bucket_table(_TABLE_LIMIT_US))
    return table


def _add_keytabs(reqs: Iterable[int]) -> bool:
    """Build the key tables of the request indices in ``reqs``; False (nothing built) when one
    of them is outside ``0 .. _KEYTAB_REQUESTS - 1``."""
    missing = set(reqs).difference(_KEYTABS)
    if not all(0 <= r < _KEYTAB_REQUESTS for r in missing):
        return False
    buckets = _bucket_of_us()[:_KEYTAB_LIMIT_US]
    for r in missing:
        base = r << _KEY_BITS
        objs = [base + b for b in range(buckets[-1] + 1)]
        _KEYTABS[r] = [objs[b] for b in buckets]
    return True


def _latency_keys(reqs: Sequence[int], lats: Sequence[int]) -> list[int]:
    """The histogram keys ``(request << _KEY_BITS) + bucket`` of latencies in ns (clamped to
    the histogram's range)."""
    if not lats:
        return []
    lo = min(lats)
    hi = max(lats)
    if lo >= 0 and hi < _TABLE_LIMIT_NS:
        if hi < _KEYTAB_LIMIT_NS:
            tabs = _KEYTABS
            r0 = reqs[0]
            if reqs.count(r0) == len(reqs) and (r0 in tabs or _add_keytabs((r0,))):
                # One request definition in the batch (the common case): no per-event
                # tuple or dict lookup (about 45 against 70 ns per event).
                tab = tabs[r0]
                return [tab[x // 1000] for x in lats]
            try:
                return [tabs[r][x // 1000] for r, x in zip(reqs, lats, strict=True)]
            except KeyError:
                if _add_keytabs(reqs):
                    return [tabs[r][x // 1000] for r, x in zip(reqs, lats, strict=True)]
        table = _bucket_of_us()
        return [(r << _KEY_BITS) + table[x // 1000] for r, x in zip(reqs, lats, strict=True)]
    if lo < 0 or hi > _MAX_NS:
        lats = [min(max(x, 0), _MAX_NS) for x in lats]
    # Batches with a latency of 262 ms or more: rare, so the plain function will do.
    return [(r << _KEY_BITS) + bucket_index(x // 1000) for r, x in zip(reqs, lats, strict=True)]


def bucket_value(index: int) -> int:
    """The highest value (us) equivalent to bucket ``index`` — what HDR reports for it."""
    b = (index >> _HALF_MAG) - 1
    if b < 0:
        return index
    return (((index & (_HALF - 1)) + _HALF) << b) + (1 << b) - 1


def histogram_of(buckets: Mapping[int, int]) -> HdrHistogram:
    """A real ``HdrHistogram`` holding the counts of a sparse ``{bucket index: count}``."""
    hist = new_histogram()
    for idx, n in sorted(buckets.items()):
        if n > 0:
            hist.record_value(_bucket_low(idx), n)
    return hist


def histogram_mean(hist: HdrHistogram) -> float:
    """``hist.get_mean_value()`` (each recorded bucket at its median equivalent value), without
    the package's Python iterator, which steps through every bucket up to the maximum and took
    a third of a second per summary of five histograms."""
    total: int = hist.get_total_count()
    if not total:
        return 0.0
    weighted: int = 0
    for idx, n in enumerate(hist.counts):
        if n:
            value = hist.get_value_from_index(idx)
            low = hist.get_lowest_equivalent_value(value)
            high = hist.get_highest_equivalent_value(value)
            weighted += n * (low + ((high - low + 1) >> 1))
    return float(weighted) / total


def _bucket_low(index: int) -> int:
    b = (index >> _HALF_MAG) - 1
    if b < 0:
        return index
    return ((index & (_HALF - 1)) + _HALF) << b


def sparse_percentiles(counts: Mapping[int, int], percentiles: Iterable[float]) -> dict[float, int]:
    """Percentile values (us) of a sparse histogram ``{bucket index: count}``.

    Follows ``HdrHistogram.get_value_at_percentile`` exactly (target count rounded half up,
    at least 1; the highest equivalent value of the bucket reached), so these numbers equal the
    package's for the same data. Returns an empty dict when ``counts`` is empty.
    """
    total = sum(counts.values())
    if total <= 0:
        return {}
    items = sorted(counts.items())
    out: dict[float, int] = {}
    for p in sorted(set(percentiles)):
        target = max(int(min(p, 100.0) * total / 100 + 0.5), 1)
        running = 0
        for idx, n in items:
            running += n
            if running >= target:
                out[p] = bucket_value(idx) if p else _bucket_low(idx)
                break
    return out


def error_label(kind: int) -> str:
    """The summary label of an error kind value; unknown values become ``unknown_<n>``."""
    try:
        return ErrorKind(kind).label
    except ValueError:
        return f"unknown_{kind}"


def _add_times(tsum: Counter[int], times: list[int], sign: int) -> None:
    """Add ``sign`` times the sum of ``times`` to ``tsum``, per second. A batch's VU starts
    and stops nearly always fall in one second: one C-level sum then, not a Python loop (the
    loop cost the open model's reducer about a fifth of its speed)."""
    lo, hi = min(times), max(times)
    if lo // _NS == hi // _NS:
        tsum[lo // _NS] += sign * sum(times)
        return
    for t_ns in times:
        tsum[t_ns // _NS] += sign * t_ns


class IntervalStats(msgspec.Struct, kw_only=True):
    """What the live view shows, for the interval since the previous :meth:`Reducer.interval`.

    ``rps`` divides the interval's requests by ``span_s``, the wall time the caller says the
    interval covered. ``p50_ms``/``p99_ms`` are ``None`` when the interval had no request with
    a latency. ``total_*`` are run totals so far.
    """

    requests: int
    ok: int
    failed: int
    dropped: int
    bytes_received: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    active_vus: int
    span_s: float
    total_requests: int
    total_errors: int
    total_dropped: int


class SecondRow(msgspec.Struct, kw_only=True):
    """One second of the time series (second ``s`` covers event time ``[s, s+1)`` s).

    ``requests``/``errors`` count requests that *ended* in the second; ``p50_us``/``p99_us``
    are ``None`` when none of them had a latency. ``started``/``dropped`` count open-model
    iterations by their *scheduled* second. ``active_vus`` is the larger of the number of
    active VUs at the start and at the end of the second; ``vu_ns`` is the time VUs were
    active within it, summed over VUs (VU-nanoseconds: their mean number is ``vu_ns / 1e9``),
    which also counts VUs that start and stop within the second.
    """

    second: int
    requests: int
    errors: int
    p50_us: int | None
    p99_us: int | None
    active_vus: int
    started: int
    dropped: int
    vu_ns: int = 0


@dataclass(frozen=True)
class WorkerAccount:
    """Event accounting of one worker: what arrived versus what the worker said it produced.

    ``part`` tells merged logs apart (0 for a single log; merged reducers number theirs on).
    ``reported`` and ``requests_started`` are ``None`` until the worker's ``WorkerFinished``.
    ``received`` excludes the ``WorkerFinished`` event itself, like the worker's own count.
    """

    part: int
    worker: int
    received: int
    reported: int | None
    requests_recorded: int
    requests_started: int | None


_astuple = msgspec.structs.astuple
_FIELDS = RequestEvent.__struct_fields__
_REQUEST_WIDTH = len(_FIELDS)
_F_REQUEST = _FIELDS.index("request")
_F_STEP = _FIELDS.index("step")
_F_START = _FIELDS.index("start_ns")
_F_LATENCY = _FIELDS.index("latency_ns")
_F_STATUS = _FIELDS.index("status")
_F_ERROR = _FIELDS.index("error")
_F_BYTES = _FIELDS.index("bytes_received")
_F_NEW_CONNECTION = _FIELDS.index("new_connection")
_F_CONNECT = _FIELDS.index("connect_ns")
_F_SCHEDULED = _FIELDS.index("scheduled_ns")
_F_RETRIED = _FIELDS.index("retried")
# Reducer.add tells an all-request batch by the width of its columns.
if any(
    len(t.__struct_fields__) >= _REQUEST_WIDTH
    for t in (VuStarted, VuStopped, IterationDropped, WorkerStarted, WorkerFinished)
):  # pragma: no cover - only if an event type grows
    raise ImportError("a lifecycle event has as many fields as RequestEvent")


class _Second:
    """Mutable per-second state; ``hist`` is folded into the run's counts and dropped (set to
    None) once finalized."""

    __slots__ = ("dropped", "errors", "hist", "n_lat", "p50", "p99", "requests", "started")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.started = 0
        self.dropped = 0
        self.hist: Counter[int] | None = Counter()
        self.n_lat = 0  # latencies behind p50/p99 once finalized (for approximate merges)
        self.p50: int | None = None
        self.p99: int | None = None

    def finalize(self, into: Counter[int]) -> None:
        """Compute p50/p99, add the histogram's counts to ``into`` and drop it."""
        hist = self.hist
        if hist is None:
            return
        into.update(hist)
        self.n_lat = sum(hist.values())
        pct = sparse_percentiles(_strip_request(hist), (50.0, 99.0))
        self.p50 = pct.get(50.0)
        self.p99 = pct.get(99.0)
        self.hist = None


def _strip_request(keys: Mapping[int, int]) -> Counter[int]:
    """Sum a ``{(request << bits) | bucket: n}`` mapping over requests."""
    out: Counter[int] = Counter()
    for key, n in keys.items():
        out[key & _KEY_LOW] += n
    return out


class Reducer:
    """Reduces event batches to run metrics. See the module docstring and docs/metrics.md.

    ``request_names`` are indexed like ``RequestEvent.request``; ``open_model`` turns on the
    coordinated-omission corrected latency and the started/dropped series. ``live=False``
    (``z6 analyze``) skips the interval latencies that only :meth:`interval` reads.
    """

    def __init__(
        self, request_names: Sequence[str], *, open_model: bool = False, live: bool = True
    ) -> None:
        self.request_names: list[str] = list(request_names)
        self.open_model = open_model
        # (request, status, error) -> count: gives totals, per name, per status, per kind.
        self._codes: Counter[tuple[int, int, int]] = Counter()
        # (request << _KEY_BITS) | bucket -> count, of finalized seconds; the rest is in the
        # histograms of the live seconds (see _latency_counts).
        self._lat: Counter[int] = Counter()
        self._corr: Counter[int] = Counter()  # same, corrected latency (open model)
        self.bytes_received = 0
        self.new_connections = 0  # connections opened (the connect succeeded)
        self.failed_connects = 0  # attempts whose connect failed: nothing was sent
        self.retried = 0  # requests sent again after a stale kept-alive connection failed
        self._connect_sum_ns = 0
        self._connect_max_ns = 0
        self.dropped_iterations = 0
        self.ring_waits = 0
        self.ring_wait_ns = 0
        self._max_end_ns = 0
        self._max_vu_ns = 0
        self._max_finished_ns = 0
        self._active = 0
        self._vu_delta: Counter[int] = Counter()  # second -> net VU starts - stops
        # second -> sum of its VuStarted times - sum of its VuStopped times: with _vu_delta it
        # gives the VU-time of the second (see timeseries), in any batch order, and merges.
        self._vu_tsum: Counter[int] = Counter()
        self._seconds: dict[int, _Second] = {}
        self._live: dict[int, _Second] = {}  # seconds whose histogram is still kept
        self._newest_sec = -1
        # accounting, keyed by (part, worker)
        self._received: Counter[tuple[int, int]] = Counter()
        self._req_recorded: Counter[tuple[int, int]] = Counter()
        self._reported: dict[tuple[int, int], tuple[int, int]] = {}
        self._workers_seen: set[tuple[int, int]] = set()
        self._parts = 1
        # live interval
        self._iv_lat: Counter[int] = Counter()
        # Only the live view reads interval latencies; `z6 analyze` skips that Counter
        # (a tenth of the reducer's time). Every other number is the same either way.
        self._track_interval = live
        self._iv_requests = 0
        self._iv_failed = 0
        self._iv_dropped = 0
        self._iv_bytes = 0

    # ------------------------------------------------------------------ hot path

    def add(self, events: Sequence[Event], worker: int = -1) -> None:
        """Reduce one batch of events; ``worker`` is the producing worker (for accounting).

        Batches from ``-1`` (unknown worker) count in every metric but not in the per-worker
        accounting.
        """
        if not events:
            return
        # One pass turns the batch into columns (field tuples): each event is touched once,
        # in C, instead of once per field read (attribute passes cost twice as much, mostly
        # in cache misses on freshly decoded events). Every other event type has fewer
        # fields than RequestEvent and zip() stops at the shortest row, so full-width
        # columns also prove that the batch holds requests only, the common case.
        cols = list(zip(*map(_astuple, events), strict=False))
        if len(cols) == _REQUEST_WIDTH:
            n_req = len(events)
        else:
            reqs = [e for e in events if type(e) is RequestEvent]
            n_req = len(reqs)
            cols = list(zip(*map(_astuple, reqs), strict=False))
        n_finished = 0
        if n_req != len(events):
            others = [e for e in events if type(e) is not RequestEvent]
            n_finished = sum(1 for e in others if type(e) is WorkerFinished)
            self._add_lifecycle(others, worker)
        if worker >= 0:
            key = (0, worker)
            # The worker's own count excludes its WorkerFinished event; so does ours.
            self._received[key] += len(events) - n_finished
            self._req_recorded[key] += n_req
            self._workers_seen.add(key)
        if n_req:
            self._add_requests(cols, n_req)

    def _add_requests(self, cols: list[tuple[Any, ...]], n: int) -> None:
        req = cols[_F_REQUEST]
        lat = cols[_F_LATENCY]
        start = cols[_F_START]
        err = cols[_F_ERROR]
        newconn = cols[_F_NEW_CONNECTION]
        # (request, status, error, new connection) -> count: a handful of keys per batch.
        all_codes = self._codes
        failed = 0
        nc = 0
        excluded = False
        status = cols[_F_STATUS]
        s0 = status[0]
        r0 = req[0]
        if err.count(0) == n and status.count(s0) == n and not any(newconn):
            # The common batch: one status, no error, no new connection. Counting tuples
            # of four per event was a fifth of ``z6 analyze``.
            if req.count(r0) == n:
                all_codes[(r0, s0, 0)] += n
            else:
                for r, c in Counter(req).items():
                    all_codes[(r, s0, 0)] += c
        else:
            codes = Counter(zip(req, status, err, newconn, strict=True))
            for (r, s, e, new), c in codes.items():
                all_codes[(r, s, e)] += c
                if new:
                    nc += c
                if e:
                    failed += c
                    if e in EXCLUDED_FROM_LATENCY:
                        excluded = True
        retried = cols[_F_RETRIED]
        if any(retried):
            self.retried += sum(retried)
        b = sum(cols[_F_BYTES])
        self.bytes_received += b
        self._iv_bytes += b
        self._iv_requests += n
        self._iv_failed += failed
        if nc:
            # A failed connect is an event with a new connection, a connect-phase error and
            # no time spent on a request (the client sets start = end): an attempt, not a
            # connection, and its time is not a connect time.
            cts = [
                x
                for x, f, e, t in zip(cols[_F_CONNECT], newconn, err, lat, strict=True)
                if f and not (t == 0 and e in CONNECT_FAILURES)
            ]
            self.new_connections += len(cts)
            self.failed_connects += nc - len(cts)
            if cts:
                self._connect_sum_ns += sum(cts)
                m = max(cts)
                if m > self._connect_max_ns:
                    self._connect_max_ns = m

        ends = list(map(_add, start, lat))
        hi = max(ends)
        if hi > self._max_end_ns:
            self._max_end_ns = hi

        # Latency keys of the requests that have one.
        keep: list[bool] | None = None
        if excluded:
            keep = [e not in EXCLUDED_FROM_LATENCY for e in err]
            lreq: Sequence[int] = [r for r, k in zip(req, keep, strict=True) if k]
            llat: Sequence[int] = [x for x, k in zip(lat, keep, strict=True) if k]
            lend: Sequence[int] = [x for x, k in zip(ends, keep, strict=True) if k]
        else:
            lreq, llat, lend = req, lat, ends
        keys = _latency_keys(lreq, llat)
        if self._track_interval:
            self._iv_lat.update(keys)

        # Per-second rows, by end second. The run's latency counts are not updated here:
        # they stay in the second's histogram and join ``_lat`` when it is finalized (one
        # count per event instead of two).
        lo_s = min(ends) // _NS
        hi_s = hi // _NS
        if lo_s == hi_s:
            sec = self._second(hi_s)
            sec.requests += n
            sec.errors += failed
            (self._lat if sec.hist is None else sec.hist).update(keys)
        else:
            self._spread_seconds(ends, err, lend, keys)
        if self.open_model:
            self._add_open(req, cols[_F_STEP], start, lat, cols[_F_SCHEDULED], keep)
        if hi_s > self._newest_sec:
            self._newest_sec = hi_s
            self._finalize_old()

    def _spread_seconds(
        self,
        ends: list[int],
        err: Sequence[int],
        lend: Sequence[int],
        keys: list[int],
    ) -> None:
        secs = [x // _NS for x in ends]
        for s, c in Counter(secs).items():
            self._second(s).requests += c
        for s, c in Counter(s for s, e in zip(secs, err, strict=True) if e).items():
            self._second(s).errors += c
        by_sec: dict[int, list[int]] = {}
        for x, k in zip(lend, keys, strict=True):
            by_sec.setdefault(x // _NS, []).append(k)
        for s, ks in by_sec.items():
            hist = self._second(s).hist
            (self._lat if hist is None else hist).update(ks)

    def _add_open(
        self,
        req: Sequence[int],
        step: Sequence[int],
        start: Sequence[int],
        lat: Sequence[int],
        sched: Sequence[int],
        keep: list[bool] | None,
    ) -> None:
        if keep is not None:
            sel = [k and q >= 0 for k, q in zip(keep, sched, strict=True)]
        else:
            sel = [q >= 0 for q in sched]
        rs = [r for r, k in zip(req, sel, strict=True) if k]
        vals = [s - q + x for s, q, x, k in zip(start, sched, lat, sel, strict=True) if k]
        self._corr.update(_latency_keys(rs, vals))
        started = Counter(q // _NS for q, st in zip(sched, step, strict=True) if st == 0 and q >= 0)
        for s, c in started.items():
            self._second(s).started += c

    def _second(self, s: int) -> _Second:
        sec = self._seconds.get(s)
        if sec is None:
            sec = self._seconds[s] = _Second()
            if s < self._newest_sec - WINDOW_SECONDS:
                sec.finalize(self._lat)  # outside the window: never keep a histogram for it
            else:
                self._live[s] = sec
        return sec

    def _finalize_old(self) -> None:
        cutoff = self._newest_sec - WINDOW_SECONDS
        old = [s for s in self._live if s < cutoff]
        for s in old:
            self._live.pop(s).finalize(self._lat)

    def _add_lifecycle(self, events: list[Event], worker: int) -> None:
        # VU starts and stops are most lifecycle events (the open model has one of each per
        # iteration, as many as its requests): count them per second in bulk.
        up = [ev.t_ns for ev in events if type(ev) is VuStarted]
        down = [ev.t_ns for ev in events if type(ev) is VuStopped]
        delta = self._vu_delta
        tsum = self._vu_tsum
        if up:
            self._active += len(up)
            delta.update(map(_second_of, up))
            _add_times(tsum, up, 1)
            self._max_vu_ns = max(self._max_vu_ns, max(up))
        if down:
            self._active -= len(down)
            for s, c in Counter(map(_second_of, down)).items():
                delta[s] -= c
            _add_times(tsum, down, -1)
            self._max_vu_ns = max(self._max_vu_ns, max(down))
        if len(up) + len(down) == len(events):
            return
        for ev in events:
            t = type(ev)
            if t is VuStarted or t is VuStopped:
                continue
            if t is IterationDropped:
                assert isinstance(ev, IterationDropped)
                self.dropped_iterations += 1
                self._iv_dropped += 1
                self._second(ev.scheduled_ns // _NS).dropped += 1
            elif t is WorkerFinished:
                assert isinstance(ev, WorkerFinished)
                self.ring_waits += ev.ring_waits
                self.ring_wait_ns += ev.ring_wait_ns
                self._max_finished_ns = max(self._max_finished_ns, ev.t_ns)
                w = ev.worker if worker < 0 else worker
                self._reported[(0, w)] = (ev.events, ev.requests_started)
                self._workers_seen.add((0, w))
            elif t is WorkerStarted:
                assert isinstance(ev, WorkerStarted)
                self._workers_seen.add((0, ev.worker if worker < 0 else worker))

    # ------------------------------------------------------------------ live view

    def interval(self, span_ns: int) -> IntervalStats:
        """Stats since the previous call (then reset); cheap: only the interval's buckets.

        ``span_ns`` is the wall time since the previous call (the caller's clock): ``rps`` is
        the interval's requests over it. Dividing by the event time that passed instead (the
        newest request end minus the previous one) read 3,027/s for 50 VUs that think 0.9 s,
        since their requests end in bursts.
        """
        pct = sparse_percentiles(_strip_request(self._iv_lat), (50.0, 99.0))
        span_ns = max(span_ns, 0)
        stats = IntervalStats(
            requests=self._iv_requests,
            ok=self._iv_requests - self._iv_failed,
            failed=self._iv_failed,
            dropped=self._iv_dropped,
            bytes_received=self._iv_bytes,
            rps=self._iv_requests * _NS / span_ns if span_ns else 0.0,
            p50_ms=_us_to_ms(pct.get(50.0)),
            p99_ms=_us_to_ms(pct.get(99.0)),
            active_vus=max(self._active, 0),
            span_s=span_ns / _NS,
            total_requests=self.total,
            total_errors=self.failed,
            total_dropped=self.dropped_iterations,
        )
        self._iv_lat = Counter()
        self._iv_requests = self._iv_failed = self._iv_dropped = self._iv_bytes = 0
        return stats

    # ------------------------------------------------------------------ merge

    def add_abort(self, t_ns: int) -> None:
        """The run was aborted (a second interrupt) at ``t_ns`` from its start.

        Its cut VUs record no stop and its workers no finish, so without this the measured
        time would end at the last request that did end, however long the run went on after
        it (a second Ctrl-C 1.7 s into a run of 2 s requests read 0.03 s and 50x the rate).
        Callers take ``t_ns`` from the log footer (``end_wall_ns - wall_start_ns``), so that
        ``z6 run`` and ``z6 analyze`` agree.
        """
        self._max_finished_ns = max(self._max_finished_ns, t_ns)

    def merge(self, other: Reducer, *, offset_ns: int = 0) -> None:
        """Add ``other`` (another log or shard) into this reducer; ``other`` is unchanged.

        Counts and latency histograms merge exactly. ``offset_ns`` shifts ``other``'s times
        (the time series by whole seconds: ``offset_ns // 1e9``). Per-second p50/p99 merge
        exactly while both sides still hold that second's histogram; for seconds one side
        already finalized they are approximated (request-weighted mean of the p50s, max of
        the p99s) — see docs/metrics.md.
        """
        if len(other.request_names) > len(self.request_names):
            self.request_names.extend(other.request_names[len(self.request_names) :])
        self.open_model = self.open_model or other.open_model
        self._codes.update(other._codes)
        self._lat.update(other._lat)  # finalized seconds; the live ones merge below
        self._corr.update(other._corr)
        self.bytes_received += other.bytes_received
        self.new_connections += other.new_connections
        self.failed_connects += other.failed_connects
        self.retried += other.retried
        self._connect_sum_ns += other._connect_sum_ns
        self._connect_max_ns = max(self._connect_max_ns, other._connect_max_ns)
        self.dropped_iterations += other.dropped_iterations
        self.ring_waits += other.ring_waits
        self.ring_wait_ns += other.ring_wait_ns
        if other._max_end_ns:
            self._max_end_ns = max(self._max_end_ns, other._max_end_ns + offset_ns)
        if other._max_vu_ns:
            self._max_vu_ns = max(self._max_vu_ns, other._max_vu_ns + offset_ns)
        if other._max_finished_ns:
            self._max_finished_ns = max(self._max_finished_ns, other._max_finished_ns + offset_ns)
        self._active += other._active
        off_s = offset_ns // _NS
        for s, d in other._vu_delta.items():
            self._vu_delta[s + off_s] += d
        for s, t in other._vu_tsum.items():
            # Each start or stop time moves by off_s whole seconds, so the sum moves by the
            # net count times that.
            self._vu_tsum[s + off_s] += t + other._vu_delta.get(s, 0) * off_s * _NS
        for s, osec in sorted(other._seconds.items()):
            self._merge_second(s + off_s, osec)
        if other._newest_sec >= 0 and other._newest_sec + off_s > self._newest_sec:
            self._newest_sec = other._newest_sec + off_s
        self._finalize_old()
        base = self._parts
        for (p, w), c in other._received.items():
            self._received[(p + base, w)] += c
        for (p, w), c in other._req_recorded.items():
            self._req_recorded[(p + base, w)] += c
        for (p, w), v in other._reported.items():
            self._reported[(p + base, w)] = v
        for p, w in other._workers_seen:
            self._workers_seen.add((p + base, w))
        self._parts += other._parts
        self._iv_lat.update(other._iv_lat)
        self._iv_requests += other._iv_requests
        self._iv_failed += other._iv_failed
        self._iv_dropped += other._iv_dropped
        self._iv_bytes += other._iv_bytes

    def _merge_second(self, s: int, osec: _Second) -> None:
        mine = self._seconds.get(s)
        if mine is None:
            mine = self._seconds[s] = _Second()
            if osec.hist is not None:
                mine.hist = Counter(osec.hist)
                self._live[s] = mine
            else:
                mine.hist = None
                mine.n_lat, mine.p50, mine.p99 = osec.n_lat, osec.p50, osec.p99
        elif mine.hist is not None and osec.hist is not None:
            mine.hist.update(osec.hist)
        else:
            # At least one side dropped its histogram: only an approximation is possible.
            if osec.hist is not None:
                tmp = _Second()
                tmp.hist = Counter(osec.hist)
                tmp.finalize(self._lat)
                theirs = (tmp.n_lat, tmp.p50, tmp.p99)
            else:
                theirs = (osec.n_lat, osec.p50, osec.p99)
            self._live.pop(s, None)
            mine.finalize(self._lat)
            mine.n_lat, mine.p50, mine.p99 = _combine_pcts((mine.n_lat, mine.p50, mine.p99), theirs)
        mine.requests += osec.requests
        mine.errors += osec.errors
        mine.started += osec.started
        mine.dropped += osec.dropped

    # ------------------------------------------------------------------ accessors

    @property
    def total(self) -> int:
        """Requests recorded (ok + failed)."""
        return sum(self._codes.values())

    @property
    def failed(self) -> int:
        """Requests that failed (any error kind, including a failed status check)."""
        return sum(c for (_r, _s, e), c in self._codes.items() if e)

    @property
    def ok(self) -> int:
        """Requests that succeeded."""
        return self.total - self.failed

    @property
    def live_seconds(self) -> int:
        """How many per-second histograms are currently kept (bounded by the window)."""
        return len(self._live)

    def name_of(self, request: int) -> str:
        """The name of request index ``request`` (``request_<i>`` when out of range)."""
        if 0 <= request < len(self.request_names):
            return self.request_names[request]
        return f"request_{request}"

    def request_indices(self) -> list[int]:
        """Indices of all named requests plus any index seen in events, sorted."""
        seen = {r for (r, _s, _e) in self._codes}
        return sorted(seen | set(range(len(self.request_names))))

    def counts_by_request(self) -> dict[int, tuple[int, int]]:
        """``{request index: (total, failed)}`` for requests seen in events."""
        out: dict[int, list[int]] = {}
        for (r, _s, e), c in self._codes.items():
            row = out.setdefault(r, [0, 0])
            row[0] += c
            if e:
                row[1] += c
        return {r: (t, f) for r, (t, f) in out.items()}

    def by_status(self) -> dict[int, int]:
        """``{HTTP status: count}``; requests without a response (status 0) are left out."""
        out: Counter[int] = Counter()
        for (_r, s, _e), c in self._codes.items():
            if s:
                out[s] += c
        return dict(sorted(out.items()))

    def by_status_of_request(self) -> dict[int, dict[int, int]]:
        """``{request index: {HTTP status: count}}``, statuses sorted; as :meth:`by_status`."""
        out: dict[int, Counter[int]] = {}
        for (r, s, _e), c in self._codes.items():
            if s:
                out.setdefault(r, Counter())[s] += c
        return {r: dict(sorted(codes.items())) for r, codes in out.items()}

    def errors_by_kind(self) -> dict[int, int]:
        """``{ErrorKind value: count}`` of failed requests."""
        out: Counter[int] = Counter()
        for (_r, _s, e), c in self._codes.items():
            if e:
                out[e] += c
        return dict(sorted(out.items()))

    def _latency_sources(self, corrected: bool) -> list[Mapping[int, int]]:
        """Where the latency counts so far are: the finalized seconds' counts, plus the live
        seconds' histograms merged (a few seconds' worth: small). Never a copy of the large
        one, which holds an entry per (request, bucket) ever seen (docs/metrics.md)."""
        if corrected:
            return [self._corr]
        live: Counter[int] = Counter()
        for sec in self._live.values():
            if sec.hist:
                live.update(sec.hist)
        return [self._lat, live] if live else [self._lat]

    def latency_buckets(
        self, request: int | None = None, *, corrected: bool = False
    ) -> Counter[int]:
        """Sparse ``{bucket index: count}`` of one request (or all when ``None``)."""
        if request is not None:
            return self.latency_buckets_of(corrected=corrected)(request)
        out: Counter[int] = Counter()
        for src in self._latency_sources(corrected):
            out.update(_strip_request(src))
        return out

    def latency_buckets_of(self, *, corrected: bool = False) -> Callable[[int], Counter[int]]:
        """A function giving one request's ``{bucket index: count}`` at a time.

        One pass groups the keys by request (a list of references, 8 bytes a key); each call
        then builds only that request's counts. Grouping the counts themselves by request
        took as much memory again as the counts, which hold an entry per (request, bucket):
        2.7 million of them for 300 names with latencies spread from 1 ms to 2 s."""
        groups: list[tuple[Mapping[int, int], dict[int, list[int]]]] = []
        for src in self._latency_sources(corrected):
            by_request: dict[int, list[int]] = {}
            for key in src:
                keys = by_request.get(key >> _KEY_BITS)
                if keys is None:
                    keys = by_request[key >> _KEY_BITS] = []
                keys.append(key)
            groups.append((src, by_request))

        def of(request: int) -> Counter[int]:
            out: Counter[int] = Counter()
            for src, by_request in groups:
                for key in by_request.get(request, ()):
                    out[key & _KEY_LOW] += src[key]
            return out

        return of

    def histogram(self, request: int | None = None, *, corrected: bool = False) -> HdrHistogram:
        """A real ``HdrHistogram`` (us) of one request's latencies, or of all of them."""
        return histogram_of(self.latency_buckets(request, corrected=corrected))

    @property
    def connect_mean_ns(self) -> float | None:
        """Mean connection setup time over new connections, or ``None`` without any."""
        if not self.new_connections:
            return None
        return self._connect_sum_ns / self.new_connections

    @property
    def connect_max_ns(self) -> int | None:
        """Longest connection setup time, or ``None`` without any new connection."""
        return self._connect_max_ns if self.new_connections else None

    @property
    def active_vus(self) -> int:
        """VUs active after the events seen so far."""
        return max(self._active, 0)

    @property
    def duration_ns(self) -> int:
        """Measured time from the run start: the latest worker finish, request end or VU stop."""
        return max(self._max_finished_ns, self._max_end_ns, self._max_vu_ns, 0)

    @property
    def activity_ns(self) -> int:
        """Time from the run start to the latest request end or VU stop (no worker finish)."""
        return max(self._max_end_ns, self._max_vu_ns, 0)

    def workers(self) -> list[WorkerAccount]:
        """Per-worker accounting, sorted by (part, worker)."""
        out = []
        for key in sorted(self._workers_seen):
            rep = self._reported.get(key)
            out.append(
                WorkerAccount(
                    part=key[0],
                    worker=key[1],
                    received=self._received.get(key, 0),
                    reported=rep[0] if rep else None,
                    requests_recorded=self._req_recorded.get(key, 0),
                    requests_started=rep[1] if rep else None,
                )
            )
        return out

    @property
    def parts(self) -> int:
        """How many logs were merged into this reducer (1 when none)."""
        return self._parts

    def timeseries(self) -> list[SecondRow]:
        """One row per second from 0 to the last second with any event; does not finalize."""
        return list(self.iter_timeseries())

    def iter_timeseries(self) -> Iterator[SecondRow]:
        """:meth:`timeseries` one row at a time (a month-long run has 2.6 million rows)."""
        last = max(
            max(self._seconds, default=-1),
            max(self._vu_delta, default=-1),
        )
        level = sum(d for s, d in self._vu_delta.items() if s < 0)
        seconds: Iterable[int] = range(0, last + 1)
        if last > _DENSE_SECONDS_MAX:
            # Longer than any sane run (or a forged log): rows only for seconds with events,
            # so memory follows the data rather than the largest timestamp.
            seconds = sorted(s for s in {*self._seconds, *self._vu_delta} if s >= 0)
        for s in seconds:
            start_level = level
            net = self._vu_delta.get(s, 0)
            level += net
            # Each VU active all second adds 1 s; one started at t adds (s+1) s - t, one
            # stopped at t takes that away again.
            vu_ns = start_level * _NS + net * (s + 1) * _NS - self._vu_tsum.get(s, 0)
            sec = self._seconds.get(s)
            p50 = p99 = None
            if sec is not None:
                if sec.hist is not None:
                    pct = sparse_percentiles(_strip_request(sec.hist), (50.0, 99.0))
                    p50, p99 = pct.get(50.0), pct.get(99.0)
                else:
                    p50, p99 = sec.p50, sec.p99
            yield (
                SecondRow(
                    second=s,
                    requests=sec.requests if sec else 0,
                    errors=sec.errors if sec else 0,
                    p50_us=p50,
                    p99_us=p99,
                    active_vus=max(start_level, level, 0),
                    started=sec.started if sec else 0,
                    dropped=sec.dropped if sec else 0,
                    vu_ns=max(vu_ns, 0),
                )
            )


_DENSE_SECONDS_MAX = 31 * 24 * 3600  # a month of per-second rows


def _combine_pcts(
    a: tuple[int, int | None, int | None], b: tuple[int, int | None, int | None]
) -> tuple[int, int | None, int | None]:
    """Approximate p50/p99 of two finalized seconds (see :meth:`Reducer.merge`)."""
    n_a, p50_a, p99_a = a
    n_b, p50_b, p99_b = b
    if p50_a is None or n_a == 0:
        return b
    if p50_b is None or n_b == 0:
        return a
    p50 = round((p50_a * n_a + p50_b * n_b) / (n_a + n_b))
    p99 = max(p99_a or 0, p99_b or 0)
    return n_a + n_b, p50, p99


def _us_to_ms(value: int | None) -> float | None:
    return None if value is None else round(value / 1000, 3)
