"""``z6 replay --verify`` and ``z6.engine.replay``: re-derived decisions against the log.

The synthetic-log helpers here (``synth_log`` & co.) are shared with the analyze, diff and
fuzz tests: they write logs with :class:`EventLogWriter` whose events follow the determinism
contract exactly, like a real run would.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from conftest import run_z6

from z6.engine.decisions import (
    ARRIVAL_VU_KEY,
    Planner,
    open_model_worker_iterations,
    think_ns,
    worker_slice,
)
from z6.engine.error_kinds import ErrorKind
from z6.engine.loader import load_scenario_text
from z6.engine.replay import ReplayVerifier, verify_batches, verify_log
from z6.engine.scenario import Scenario
from z6.engine.schedule import arrival_instant_ns, arrivals_total, peak_vus, vu_windows
from z6.ipc.eventlog import EventLogReader, EventLogWriter, LogFooter, LogHeader
from z6.ipc.events import (
    Event,
    IterationDropped,
    RequestEvent,
    VuStarted,
    VuStopped,
    WorkerFinished,
    WorkerStarted,
    decode_batch,
    encode_batch,
)

# --------------------------------------------------------------------------- helpers

WEIGHTED = """
[metadata]
name = "synthetic"
[runtime]
iterations = 5
vus = 4
prng_seed = 11
[target]
base_url = "http://127.0.0.1:9"
[[requests]]
name = "a"
method = "GET"
path = "/a"
weight = 3
[[requests]]
name = "b"
method = "GET"
path = "/b"
weight = 1
[think_time]
type = "random"
min_ms = 0
max_ms = 5
"""

SEQUENCE = """
[runtime]
iterations = 3
vus = 3
[target]
base_url = "http://127.0.0.1:9"
[[requests]]
name = "login"
method = "POST"
path = "/login"
[[requests]]
name = "list"
method = "GET"
path = "/list"
[sequence]
[[sequence.steps]]
request = "login"
[[sequence.steps]]
request = "list"
repeat = 2
"""

RAMP = """
[runtime]
iterations = 2
vus = 4
[target]
base_url = "http://127.0.0.1:9"
[[requests]]
name = "a"
method = "GET"
path = "/"
[schedule]
type = "ramp"
start_vus = 0
end_vus = 4
ramp_duration_seconds = 4
hold_duration_seconds = 1
"""

OPEN = """
[runtime]
duration_seconds = 2
vus = 3
[target]
base_url = "http://127.0.0.1:9"
[[requests]]
name = "a"
method = "GET"
path = "/a"
weight = 1
[[requests]]
name = "b"
method = "GET"
path = "/b"
weight = 1
[think_time]
type = "constant"
duration_ms = 2
[schedule]
type = "arrival_rate"
rate = 10
max_vus = 3
"""


def scenario_of(text: str) -> Scenario:
    """Load a scenario text as a log's embedded scenario."""
    return load_scenario_text(textwrap.dedent(text), "synthetic.toml", resolve_external=False)


def latency_of(vu: int, iteration: int, step: int) -> int:
    """A deterministic, varied latency in ns (1 .. ~3 ms)."""
    return 1_000_000 + 41_000 * ((vu * 7 + iteration * 3 + step) % 50)


def closed_worker_events(
    sc: Scenario, seed: int, procs: int, w: int, shard: tuple[int, int] = (0, 1)
) -> list[Event]:
    """Every event worker ``w`` of a closed-model iterations run would produce."""
    planner = Planner(sc, seed)
    n_iter = sc.runtime.iterations or 0
    vus = worker_slice(peak_vus(sc.schedule), procs, w, shard[0], shard[1])
    events: list[Event] = [WorkerStarted(w, 1000 + w, 0, len(vus))]
    requests = 0
    end = 0
    for vu in vus:
        windows = vu_windows(sc.schedule, vu, float("inf"))
        t = round(windows[0][0] * 1e9) + 1000
        events.append(VuStarted(vu, t))
        for i in range(n_iter):
            for step, r in enumerate(planner.plan(vu, i)):
                lat = latency_of(vu, i, step)
                think = think_ns(sc.think_time, seed, vu, i, step)
                first = i == 0 and step == 0
                events.append(
                    RequestEvent(vu, i, r, step, t, lat, 200, 0, 10, first, 50_000 if first else 0)
                )
                events[-1].think_ns = think
                requests += 1
                t += lat + think
        events.append(VuStopped(vu, t, n_iter))
        end = max(end, t)
    events.append(WorkerFinished(w, end + 1, len(events), requests, 0))
    return events


def open_worker_events(sc: Scenario, seed: int, procs: int, w: int) -> list[Event]:
    """Every event worker ``w`` of an open-model run would produce; arrival n % 7 == 6 drops."""
    planner = Planner(sc, seed)
    rate = float(sc.schedule.rate or 0)
    total = arrivals_total(rate, sc.runtime.duration_seconds or 0)
    pool = peak_vus(sc.schedule)
    vus = worker_slice(pool, procs, w)
    events: list[Event] = [WorkerStarted(w, 1000 + w, 0, len(vus))]
    requests = 0
    end = 0
    for n in open_model_worker_iterations(total, procs, w, pool=pool):
        due = arrival_instant_ns(rate, n)
        if n % 7 == 6:
            events.append(IterationDropped(n, due))
            continue
        vu = n % pool  # the pool slot the arrival is routed by, a VU of this worker
        events.append(VuStarted(vu, due + 500))
        t = due + 1000
        for step, r in enumerate(planner.plan(ARRIVAL_VU_KEY, n)):
            lat = latency_of(vu, n, step)
            think = think_ns(sc.think_time, seed, ARRIVAL_VU_KEY, n, step)
            ev = RequestEvent(vu, n, r, step, t, lat, 200, 0, 10, False, 0, due, think)
            events.append(ev)
            requests += 1
            t += lat + think
        events.append(VuStopped(vu, t, 1))
        end = max(end, t)
    events.append(WorkerFinished(w, end + 1, len(events), requests, 0))
    return events


def frames_of(per_worker: list[list[Event]], batch: int = 7) -> list[tuple[int, list[Event]]]:
    """Round-robin ``batch``-sized frames over the workers, like the aggregator's drain."""
    queues = [[evs[i : i + batch] for i in range(0, len(evs), batch)] for evs in per_worker]
    out: list[tuple[int, list[Event]]] = []
    k = 0
    while any(k < len(q) for q in queues):
        for w, q in enumerate(queues):
            if k < len(q):
                out.append((w, q[k]))
        k += 1
    return out


def header_of(
    text: str,
    seed: int,
    procs: int,
    *,
    options: dict[str, str] | None = None,
    wall_start_ns: int = 1_700_000_000_000_000_000,
) -> LogHeader:
    """A log header for a synthetic run of ``text``."""
    sc = scenario_of(text)
    return LogHeader(
        z6_version="0.1.0",
        seed=seed,
        scenario_text=sc.source_text,
        scenario_sha256=sc.sha256,
        scenario_path="synthetic.toml",
        procs=procs,
        wall_start_ns=wall_start_ns,
        options=options or {"engine": "h11"},
    )


def write_frames(
    path: Path,
    header: LogHeader,
    frames: list[tuple[int, list[Event]]],
    *,
    outcome: str | None = "complete",
) -> None:
    """Write ``frames`` as a log; ``outcome=None`` leaves the footer out (unfinished run)."""
    procs = header.procs
    counts = [0] * procs
    for w, evs in frames:
        counts[w] += len(evs)
    writer = EventLogWriter(path, header)
    for w, evs in frames:
        writer.write_batch(w, encode_batch(evs))
    footer = None
    if outcome is not None:
        footer = LogFooter(
            worker_events=[c - 1 for c in counts],  # WorkerFinished itself is not counted
            worker_reported=[c - 1 for c in counts],
            end_wall_ns=header.wall_start_ns + 10**9,
            outcome=outcome,
        )
    writer.close(footer)


def synth_log(
    path: Path,
    text: str = WEIGHTED,
    *,
    seed: int = 11,
    procs: int = 2,
    outcome: str | None = "complete",
    edit: Callable[[list[list[Event]]], None] | None = None,
    wall_start_ns: int = 1_700_000_000_000_000_000,
) -> Path:
    """Write a synthetic log of ``text`` that follows the determinism contract.

    ``edit`` may change the per-worker event lists before they are written; ``wall_start_ns``
    tells runs apart (two logs of one start instant are one run's to ``z6 analyze``).
    """
    sc = scenario_of(text)
    make = open_worker_events if sc.schedule.type == "arrival_rate" else closed_worker_events
    per_worker = [make(sc, seed, procs, w) for w in range(procs)]
    if edit is not None:
        edit(per_worker)
    header = header_of(text, seed, procs, wall_start_ns=wall_start_ns)
    write_frames(path, header, frames_of(per_worker), outcome=outcome)
    return path


def first_request(per_worker: list[list[Event]], worker: int = 0, nth: int = 0) -> RequestEvent:
    """The ``nth`` request event of ``worker``."""
    reqs = [e for e in per_worker[worker] if isinstance(e, RequestEvent)]
    return reqs[nth]


def verify_path(path: Path, text: str) -> tuple[int, list[str], list[str]]:
    """verify_log on a file: (mismatch count, mismatch kinds, notes)."""
    reader = EventLogReader(path)
    result = verify_log(reader, scenario_of(text))
    return result.mismatch_count, [m.kind for m in result.mismatches], result.notes


# --------------------------------------------------------------------------- pure checks


@pytest.mark.parametrize("text", [WEIGHTED, SEQUENCE, RAMP, OPEN])
def test_untouched_synthetic_logs_verify(tmp_path: Path, text: str) -> None:
    path = synth_log(tmp_path / "events.bin", text)
    reader = EventLogReader(path)
    result = verify_log(reader, scenario_of(text))
    assert result.ok, [m.describe() for m in result.mismatches]
    sc = scenario_of(text)
    if sc.schedule.type == "arrival_rate":
        total = arrivals_total(10.0, 2.0)
        dropped = len([n for n in range(total) if n % 7 == 6])
        assert result.dropped_seen == dropped
        assert result.iterations_seen == total - dropped
        assert result.events_checked == (total - dropped)  # one request per arrival
    else:
        steps = len(Planner(sc, 11).plan(0, 0))
        vus = peak_vus(sc.schedule)
        n = sc.runtime.iterations or 0
        assert result.events_checked == vus * n * steps
        assert result.iterations_seen == vus * n
        assert result.vus_seen == vus
        assert result.completeness_checked


def test_edited_request_is_reported_with_vu_and_iteration(tmp_path: Path) -> None:
    found: dict[str, int] = {}

    def edit(per_worker: list[list[Event]]) -> None:
        ev = first_request(per_worker, 1, 3)
        found.update(vu=ev.vu, iteration=ev.iteration, request=ev.request)
        ev.request = 1 - ev.request

    path = synth_log(tmp_path / "events.bin", edit=edit)
    result = verify_log(EventLogReader(path), scenario_of(WEIGHTED))
    assert result.mismatch_count == 1
    m = result.mismatches[0]
    assert (m.kind, m.vu, m.iteration, m.step) == ("request", found["vu"], found["iteration"], 0)
    names = ["a", "b"]
    assert m.describe() == (
        f"mismatch: vu {found['vu']} iteration {found['iteration']} step 0: expected request "
        f"'{names[found['request']]}', found '{names[1 - found['request']]}'"
    )


def test_edited_think_time_is_reported(tmp_path: Path) -> None:
    def edit(per_worker: list[list[Event]]) -> None:
        first_request(per_worker, 0, 2).think_ns += 1

    count, kinds, _ = verify_path(synth_log(tmp_path / "e.bin", edit=edit), WEIGHTED)
    assert (count, kinds) == (1, ["think"])


@pytest.mark.parametrize(
    ("where", "think", "kinds"),
    [("last", 0, []), ("last", 5, ["think"]), ("middle", 0, ["order"])],
)
def test_an_interrupted_request_ends_its_vu_and_draws_no_think_time(
    tmp_path: Path, where: str, think: int, kinds: list[str]
) -> None:
    # The hard stop records its cut request with think time 0 and ends the VU: a think
    # time, or more requests of that VU after it, are not what z6 writes.
    def edit(per_worker: list[list[Event]]) -> None:
        reqs = [e for e in per_worker[0] if isinstance(e, RequestEvent)]
        ev = [e for e in reqs if e.vu == reqs[0].vu][-1 if where == "last" else 2]
        ev.error = int(ErrorKind.INTERRUPTED)
        ev.think_ns = think

    path = synth_log(tmp_path / "e.bin", edit=edit, outcome="interrupted")
    count, found, _ = verify_path(path, WEIGHTED)
    assert found[:1] == kinds
    assert count >= len(kinds)


def test_vu_in_the_wrong_worker_is_reported(tmp_path: Path) -> None:
    sc = scenario_of(WEIGHTED)
    per_worker = [closed_worker_events(sc, 11, 2, w) for w in range(2)]
    # Worker 1 claims to have run VU 0 (owned by worker 0): move VU 0's events over.
    moved = [e for e in per_worker[0] if getattr(e, "vu", None) == 0]
    per_worker[0] = [e for e in per_worker[0] if getattr(e, "vu", None) != 0]
    per_worker[1][1:1] = moved
    result = verify_batches(sc, header_of(WEIGHTED, 11, 2), frames_of(per_worker), complete=True)
    assert [m.kind for m in result.mismatches] == ["worker"]
    assert result.mismatches[0].describe() == (
        "mismatch: vu 0: recorded by worker 1, expected worker 0"
    )


def test_unknown_vu_is_reported_once(tmp_path: Path) -> None:
    def edit(per_worker: list[list[Event]]) -> None:
        for e in per_worker[0]:
            if isinstance(e, RequestEvent | VuStarted | VuStopped) and e.vu == 0:
                e.vu = 40

    count, kinds, _ = verify_path(synth_log(tmp_path / "e.bin", edit=edit), WEIGHTED)
    # 'vu 40 is not part of the run' once, then VU 0 is missing from the completeness check.
    assert kinds == ["unknown_vu", "incomplete"]
    assert count == 2


def test_ramp_start_before_the_window_is_reported(tmp_path: Path) -> None:
    sc = scenario_of(RAMP)
    # VU 3 starts at 4 s on this ramp (0 -> 4 over 4 s); pretend it started at 1 s.
    assert vu_windows(sc.schedule, 3, float("inf"))[0][0] == pytest.approx(4.0, abs=1e-6)

    def edit(per_worker: list[list[Event]]) -> None:
        for evs in per_worker:
            for i, e in enumerate(evs):
                if isinstance(e, VuStarted) and e.vu == 3:
                    evs[i] = VuStarted(3, 1_000_000_000)

    count, kinds, _ = verify_path(synth_log(tmp_path / "e.bin", RAMP, edit=edit), RAMP)
    assert (count, kinds) == (1, ["start"])


def test_late_start_within_iterations_is_fine(tmp_path: Path) -> None:
    def edit(per_worker: list[list[Event]]) -> None:
        for evs in per_worker:
            for i, e in enumerate(evs):
                if isinstance(e, VuStarted):
                    evs[i] = VuStarted(e.vu, e.t_ns + 5_000_000_000)

    count, _, _ = verify_path(synth_log(tmp_path / "e.bin", RAMP, edit=edit), RAMP)
    assert count == 0


RAMP_DOWN = """
[runtime]
duration_seconds = 4
vus = 2
[target]
base_url = "http://127.0.0.1:9"
[[requests]]
name = "a"
method = "GET"
path = "/"
[schedule]
type = "ramp"
start_vus = 2
end_vus = 0
ramp_duration_seconds = 4
hold_duration_seconds = 0
"""
MS = 1_000_000


def _ramp_down_events(
    vu1_iterations: list[int] | None = None, vu1_stop_ms: int = 2_050, new_connection: bool = False
) -> list[Event]:
    """A duration-mode run of RAMP_DOWN: VU 0 active 0-4 s, VU 1 0-2 s, an iteration every
    100 ms. ``vu1_iterations`` gives VU 1's iteration start times in ms (None: VU 1 never
    started)."""
    events: list[Event] = [WorkerStarted(0, 1, 0, 2), VuStarted(0, 1_000)]
    for i in range(40):
        events.append(RequestEvent(0, i, 0, 0, i * 100 * MS, MS, 200, 0, 10, i == 0, 0))
    events.append(VuStopped(0, 4_001 * MS, 40))
    if vu1_iterations is not None:
        events.append(VuStarted(1, 1_000))
        for i, at in enumerate(vu1_iterations):
            events.append(
                RequestEvent(1, i, 0, 0, at * MS, MS, 200, 0, 10, i == 0 or new_connection, 0)
            )
        events.append(VuStopped(1, vu1_stop_ms * MS, len(vu1_iterations)))
    events.append(WorkerFinished(0, 4_002 * MS, len(events), 40 + len(vu1_iterations or []), 0))
    return events


def _verify_ramp_down(events: list[Event], complete: bool = True) -> list[str]:
    result = verify_batches(
        scenario_of(RAMP_DOWN), header_of(RAMP_DOWN, 1, 1), [(0, events)], complete=complete
    )
    return [m.describe() for m in result.mismatches]


def test_duration_mode_keeps_the_schedule_windows() -> None:
    """Duration mode (closed model): an iteration may not begin after its VU's window
    stopped (a ramp-down that never happened), a VU may not stop before its window ends, and
    a complete run must have started every window that began at least 1 s before the end.
    Lateness within 1 s is a reactor round, within the connect timeouts a connect."""
    on_time = list(range(0, 2_000, 100))
    assert _verify_ramp_down(_ramp_down_events(on_time)) == []
    # Its last iteration decided just before 2 s, sent 0.9 s later (a busy round): fine.
    assert _verify_ramp_down(_ramp_down_events([*on_time, 2_900], vu1_stop_ms=2_901)) == []
    assert _verify_ramp_down(_ramp_down_events([*on_time, 3_500], vu1_stop_ms=3_501)) == [
        "mismatch: vu 1 iteration 20: began at 3.500000 s, after its schedule window stopped "
        "at 2.000000 s"
    ]
    # ...unless that request had to connect first (a connect slot, then the connect).
    late_connect = _ramp_down_events([*on_time, 3_500], vu1_stop_ms=3_501, new_connection=True)
    assert _verify_ramp_down(late_connect) == []
    # Stopped at 1 s with its window open until 2 s: a mismatch of a complete run only.
    early = _ramp_down_events(list(range(0, 1_000, 100)), vu1_stop_ms=1_000)
    assert _verify_ramp_down(early) == [
        "mismatch: vu 1: stopped at 1.000000 s, before its schedule window's stop at 2.000000 s"
    ]
    assert _verify_ramp_down(early, complete=False) == []
    # VU 1 never ran.
    assert _verify_ramp_down(_ramp_down_events(None)) == [
        "mismatch: vu 1: started 0 time(s), its schedule has 1 window(s) beginning at least "
        "1 s before the end (next at 0.000000 s)"
    ]
    assert _verify_ramp_down(_ramp_down_events(None), complete=False) == []


def test_duration_mode_schedule_checks_spare_legitimate_lateness() -> None:
    """What a real run does that looks late but is not: a request cut at the hard stop
    (in older logs its start was the cut, maybe while it waited to connect); the retry on a
    fresh connection
    of a request that first failed on a stale one, up to its timeout later; and a VU whose
    request hung from one window past the opening of its next, until the hard stop, so that
    it never started that window."""
    on_time = list(range(0, 2_000, 100))
    cut = _ramp_down_events([*on_time, 4_000], vu1_stop_ms=4_001)
    vu1_last = [e for e in cut if isinstance(e, RequestEvent) and e.vu == 1][-1]
    vu1_last.error = ErrorKind.INTERRUPTED
    assert _verify_ramp_down(cut) == []
    # 2 s + 1 s + 2 x 10 s of connect + 30 s of timeout_ms: a retry may start until 53 s.
    retried = _ramp_down_events([*on_time, 52_000], vu1_stop_ms=52_001, new_connection=True)
    assert _verify_ramp_down(retried) == []
    too_late = _ramp_down_events([*on_time, 54_000], vu1_stop_ms=54_001, new_connection=True)
    assert [m.split(":")[0] for m in _verify_ramp_down(too_late)] == ["mismatch"]

    steps = RAMP_DOWN.replace(
        'type = "ramp"\nstart_vus = 2\nend_vus = 0\nramp_duration_seconds = 4\n'
        "hold_duration_seconds = 0\n",
        'type = "steps"\nsteps = [{vus = 2, duration_seconds = 1}, '
        "{vus = 1, duration_seconds = 1}, {vus = 2, duration_seconds = 2}]\n",
    )
    assert vu_windows(scenario_of(steps).schedule, 1, 4.0) == [(0.0, 1.0), (2.0, 4.0)]

    def run(vu1_stop_ms: int, cut: bool, recorded: bool = True) -> list[str]:
        events: list[Event] = [WorkerStarted(0, 1, 0, 2), VuStarted(0, 1_000)]
        events += [
            RequestEvent(0, i, 0, 0, i * 100 * MS, MS, 200, 0, 10, i == 0, 0) for i in range(40)
        ]
        events.append(VuStopped(0, 4_001 * MS, 40))
        events.append(VuStarted(1, 1_000))
        error = ErrorKind.INTERRUPTED if cut else 0
        if recorded:
            events.append(
                RequestEvent(1, 0, 0, 0, 0, vu1_stop_ms * MS, 0 if cut else 200, error, 0, True, 0)
            )
        else:  # one request done, the next still connecting at the hard stop: not recorded
            events.append(RequestEvent(1, 0, 0, 0, 500 * MS, MS, 200, 0, 0, True, 0))
        events.append(VuStopped(1, vu1_stop_ms * MS, 0 if cut else 1))
        events.append(WorkerFinished(0, 5_002 * MS, len(events), 41, 0))
        result = verify_batches(
            scenario_of(steps), header_of(steps, 1, 1), [(0, events)], complete=True
        )
        return [m.describe() for m in result.mismatches]

    assert run(5_000, cut=True) == []  # hung until the hard stop: window 2 could not start
    # Connecting from 0.9 s until the hard stop, which left no record of that request; ending
    # earlier, it would have had to start window 2.
    assert run(9_000, cut=False, recorded=False) == []  # 4 s + the default 5 s graceful stop
    never_back = [
        "mismatch: vu 1: started 1 time(s), its schedule has 2 window(s) beginning at least "
        "1 s before the end (next at 2.000000 s)"
    ]
    assert run(1_000, cut=False) == never_back  # stopped at its window's end, never came back
    # Its request ended at 3 s, before the hard stop: it had to start window 2 then, late.
    assert run(3_000, cut=False) == never_back
    assert run(7_000, cut=False, recorded=False) == never_back  # 2 s before the hard stop


def test_missing_iteration_is_incomplete_only_when_the_run_completed(tmp_path: Path) -> None:
    def edit(per_worker: list[list[Event]]) -> None:
        ev = first_request(per_worker, 0, len(first_reqs(per_worker[0])) - 1)
        per_worker[0].remove(ev)

    def first_reqs(evs: list[Event]) -> list[RequestEvent]:
        return [e for e in evs if isinstance(e, RequestEvent)]

    count, kinds, _ = verify_path(synth_log(tmp_path / "a.bin", edit=edit), WEIGHTED)
    assert (count, kinds) == (1, ["incomplete"])
    count, _, notes = verify_path(
        synth_log(tmp_path / "b.bin", edit=edit, outcome="interrupted"), WEIGHTED
    )
    assert count == 0
    assert any("interrupted" in n for n in notes)
    count, _, notes = verify_path(synth_log(tmp_path / "c.bin", edit=edit, outcome=None), WEIGHTED)
    assert count == 0
    assert notes[0] == "no footer: the run did not finish"


def test_iteration_beyond_the_limit_is_reported(tmp_path: Path) -> None:
    sc = scenario_of(WEIGHTED)
    planner = Planner(sc, 11)
    extra = RequestEvent(0, 5, planner.plan(0, 5)[0], 0, 10**9, 1000, 200, 0, 1, False, 0)
    extra.think_ns = think_ns(sc.think_time, 11, 0, 5, 0)

    def edit(per_worker: list[list[Event]]) -> None:
        stop = next(i for i, e in enumerate(per_worker[0]) if isinstance(e, VuStopped))
        per_worker[0].insert(stop, extra)

    count, kinds, _ = verify_path(synth_log(tmp_path / "e.bin", edit=edit), WEIGHTED)
    assert kinds == ["iterations", "incomplete"]  # VU 0 now did 6 of 5
    assert count == 2


def test_sequence_order_and_step_range(tmp_path: Path) -> None:
    def swap(per_worker: list[list[Event]]) -> None:
        evs = per_worker[0]
        i = next(k for k, e in enumerate(evs) if isinstance(e, RequestEvent))
        evs[i], evs[i + 1] = evs[i + 1], evs[i]

    count, kinds, _ = verify_path(synth_log(tmp_path / "a.bin", SEQUENCE, edit=swap), SEQUENCE)
    # step 1 arrives first (out of order; the request 'list' is right for step 1), then step 0.
    assert "order" in kinds
    assert count >= 1

    def bad_step(per_worker: list[list[Event]]) -> None:
        first_request(per_worker, 0, 2).step = 9

    count, kinds, _ = verify_path(synth_log(tmp_path / "b.bin", SEQUENCE, edit=bad_step), SEQUENCE)
    assert kinds[0] == "step"


def test_open_model_checks(tmp_path: Path) -> None:
    def wrong_schedule(per_worker: list[list[Event]]) -> None:
        ev = first_request(per_worker, 0, 1)
        ev.scheduled_ns += 1

    count, kinds, _ = verify_path(synth_log(tmp_path / "a.bin", OPEN, edit=wrong_schedule), OPEN)
    assert (count, kinds) == (1, ["arrival"])

    def twice(per_worker: list[list[Event]]) -> None:
        drop = next(e for e in per_worker[0] if isinstance(e, IterationDropped))
        executed = first_request(per_worker, 0, 0)
        per_worker[0].append(IterationDropped(executed.iteration, executed.scheduled_ns))
        del drop

    count, kinds, _ = verify_path(synth_log(tmp_path / "b.bin", OPEN, edit=twice), OPEN)
    assert (count, kinds) == (1, ["arrival"])

    def wrong_worker(per_worker: list[list[Event]]) -> None:
        drop = next(e for e in per_worker[0] if isinstance(e, IterationDropped))
        per_worker[0].remove(drop)
        per_worker[1].insert(1, drop)

    count, kinds, _ = verify_path(synth_log(tmp_path / "c.bin", OPEN, edit=wrong_worker), OPEN)
    assert (count, kinds) == (1, ["worker"])

    def lost(per_worker: list[list[Event]]) -> None:
        drop = next(e for e in per_worker[0] if isinstance(e, IterationDropped))
        per_worker[0].remove(drop)

    # An arrival neither run nor dropped: a mismatch in a complete run, a note otherwise.
    count, kinds, _ = verify_path(synth_log(tmp_path / "d.bin", OPEN, edit=lost), OPEN)
    assert (count, kinds) == (1, ["incomplete"])
    stopped = synth_log(tmp_path / "e.bin", OPEN, edit=lost, outcome="interrupted")
    count, kinds, notes = verify_path(stopped, OPEN)
    assert (count, kinds) == (0, [])
    assert any("arrivals due never started (the run stopped early" in n for n in notes)


def test_wrong_worker_vu_count_is_reported(tmp_path: Path) -> None:
    def edit(per_worker: list[list[Event]]) -> None:
        ws = per_worker[0][0]
        assert isinstance(ws, WorkerStarted)
        per_worker[0][0] = WorkerStarted(ws.worker, ws.pid, ws.t_ns, ws.vus + 1)

    count, kinds, _ = verify_path(synth_log(tmp_path / "e.bin", edit=edit), WEIGHTED)
    assert (count, kinds) == (1, ["worker"])


def test_scenario_hash_mismatch_is_reported() -> None:
    sc = scenario_of(WEIGHTED)
    header = msgspec.structs.replace(header_of(WEIGHTED, 11, 1), scenario_sha256="0" * 64)
    result = verify_batches(sc, header, [], complete=False)
    assert [m.kind for m in result.mismatches] == ["scenario"]


def test_damaged_log_is_checked_up_to_the_damage(tmp_path: Path) -> None:
    path = synth_log(tmp_path / "e.bin")
    data = bytearray(path.read_bytes())
    data[len(data) * 4 // 5] ^= 0xFF
    path.write_bytes(bytes(data))
    reader = EventLogReader(path)
    result = verify_log(reader, scenario_of(WEIGHTED))
    assert result.ok
    assert 0 < result.events_checked < 20
    assert result.notes[0].startswith("log damaged at frame ")
    assert not result.completeness_checked
    # The command does not say "every decision matches", and fails: part of the log was
    # never checked.
    proc = run_z6(["replay", str(path), "--verify"])
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.endswith(
        ": no mismatch before the damage; the rest of the log is unreadable\n"
    )
    assert "every decision matches" not in proc.stdout
    assert "z6: note: log damaged at frame " in proc.stderr


@pytest.mark.parametrize(("procs", "shard"), [(1, (0, 1)), (3, (0, 1)), (2, (1, 3)), (4, (2, 5))])
def test_owner_of_vu_agrees_with_worker_slice(procs: int, shard: tuple[int, int]) -> None:
    sc = scenario_of(WEIGHTED.replace("vus = 4", "vus = 23"))
    verifier = ReplayVerifier(sc, 1, procs, shard_index=shard[0], shard_count=shard[1])
    owners: dict[int, int] = {}
    for w in range(procs):
        for vu in worker_slice(23, procs, w, shard[0], shard[1]):
            owners[vu] = w
    assert {vu: verifier.owner_of_vu(vu) for vu in range(23) if vu in owners} == owners
    assert all(verifier.owner_of_vu(vu) is None for vu in range(23) if vu not in owners)
    assert verifier.owner_of_vu(23) is None


def test_sharded_log_verifies(tmp_path: Path) -> None:
    text = WEIGHTED.replace("vus = 4", "vus = 7")
    sc = scenario_of(text)
    shard = (1, 3)
    per_worker = [closed_worker_events(sc, 11, 2, w, shard) for w in range(2)]
    header = msgspec.structs.replace(header_of(text, 11, 2), shard_index=1, shard_count=3)
    result = verify_batches(sc, header, frames_of(per_worker), complete=True)
    assert result.ok, [m.describe() for m in result.mismatches]
    assert result.vus_seen == len(range(1, 7, 3))


# --------------------------------------------------------------------------- CLI


def test_cli_replay_verify_untouched_and_edited(tmp_path: Path) -> None:
    good = synth_log(tmp_path / "good.bin")
    proc = run_z6(["replay", str(good), "--verify"])
    assert proc.returncode == 0, proc.stderr
    assert "replay: 20 request events checked (4 VUs, 20 iterations): every decision matches" in (
        proc.stdout
    )

    def edit(per_worker: list[list[Event]]) -> None:
        ev = first_request(per_worker, 0, 0)
        ev.request = 1 - ev.request

    bad = synth_log(tmp_path / "bad.bin", edit=edit)
    proc = run_z6(["replay", str(bad), "--verify"])
    assert proc.returncode == 1
    assert proc.stdout.startswith("mismatch: vu 0 iteration 0 step 0: expected request ")
    assert "1 mismatch(es)" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_cli_replay_without_verify_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_z6(["replay", str(synth_log(tmp_path / "e.bin"))])
    assert proc.returncode == 2
    assert "--verify" in proc.stderr
    assert "seed 11" in proc.stdout


def test_cli_replay_not_a_log(tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(b"hello")
    proc = run_z6(["replay", str(tmp_path / "x.bin"), "--verify"])
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("z6: ")


# --------------------------------------------------------------------------- real run


def rewrite_with_edit(src: Path, dst: Path, edit: Callable[[RequestEvent], bool]) -> None:
    """Copy the log ``src`` to ``dst`` frame by frame (valid CRCs), letting ``edit`` change
    request events until it returns True once."""
    reader = EventLogReader(src)
    writer = EventLogWriter(dst, reader.header)
    done = False
    for worker, payload in reader.raw_frames():
        events = decode_batch(payload)
        if not done:
            for ev in events:
                if isinstance(ev, RequestEvent) and edit(ev):
                    done = True
                    break
            payload = encode_batch(events)
        writer.write_batch(worker, payload)
    assert done
    assert reader.damage is None
    writer.close(reader.footer)


@pytest.mark.slow
def test_real_run_replays_and_an_edited_event_is_caught(tmp_path: Path) -> None:
    from servers import z6_server

    with z6_server() as port:
        scenario = tmp_path / "s.toml"
        scenario.write_text(
            textwrap.dedent(WEIGHTED)
            .replace("127.0.0.1:9", f"127.0.0.1:{port}")
            .replace("iterations = 5", "iterations = 20")
            .replace("vus = 4", "vus = 3")
            .replace("max_ms = 5", "max_ms = 1")
        )
        out = tmp_path / "out"
        proc = run_z6(["run", str(scenario), "--out", str(out), "--json", "--quiet", "-p", "2"])
        assert proc.returncode == 0, proc.stderr
    log = out / "events.bin"
    proc = run_z6(["replay", str(log), "--verify"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "replay: 60 request events checked (3 VUs, 60 iterations)" in proc.stdout

    target: dict[str, int] = {}

    def edit(ev: RequestEvent) -> bool:
        if ev.iteration != 7:
            return False
        target.update(vu=ev.vu, request=ev.request)
        ev.request = 1 - ev.request
        return True

    rewrite_with_edit(log, tmp_path / "edited.bin", edit)
    proc = run_z6(["replay", str(tmp_path / "edited.bin"), "--verify"])
    assert proc.returncode == 1
    names = ["a", "b"]
    assert proc.stdout.splitlines()[0] == (
        f"mismatch: vu {target['vu']} iteration 7 step 0: expected request "
        f"'{names[target['request']]}', found '{names[1 - target['request']]}'"
    )
    assert "60 request events checked" in proc.stdout
