"""The supervisor: start the workers, run the aggregator, handle signals and worker death.

The aggregator runs in the supervisor's own thread: it drains every worker's ring, appends
each record unchanged as a frame of ``events.bin`` and feeds the decoded events to the one
``Reducer``. Nothing is ever dropped: a worker waits when its ring is full.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from z6.engine.errors import RunError
from z6.engine.metrics import IntervalStats, Reducer
from z6.engine.vu import WorkPlan
from z6.ipc.eventlog import EventLogWriter, LogFooter, LogHeader
from z6.ipc.events import WorkerFinished, decode_batch
from z6.ipc.ring import Ring
from z6.ipc.worker import WorkerArgs, worker_main

_IDLE_SLEEP_S = 0.002
_FLUSH_EVERY_S = 0.1
_PROGRESS_EVERY_S = 1.0
_DEATH_GRACE_S = 0.2  # after a worker exits, how long its last records may take to show up
RING_CAPACITY = 8 * 1024 * 1024

ProgressFn = Callable[[IntervalStats, float], None]


@dataclass
class RunSetup:
    """What ``run_workers`` needs besides the plan template."""

    plan: WorkPlan  # worker_index is replaced per worker
    log_path: Path
    header: LogHeader
    progress: ProgressFn | None = None
    max_log_bytes: int | None = None


@dataclass
class RunOutcome:
    """What happened: the reducer with every event, and how the run ended."""

    reducer: Reducer
    footer: LogFooter
    interrupted: bool = False
    failed_workers: list[int] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


class _Signals:
    """Counts SIGINT/SIGTERM while installed; restores the previous handlers on exit."""

    def __init__(self) -> None:
        self.count = 0

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Signals]:
        old = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def run_workers(setup: RunSetup) -> RunOutcome:
    """Run the test: fork the workers, aggregate until all finish, write the whole log.

    Raises ``RunError`` when the log cannot be written. Worker death and signals are not
    errors here: they are reported in the returned ``RunOutcome`` and the footer.
    """
    plan = setup.plan
    procs = plan.procs
    sc = plan.scenario
    reducer = Reducer(sc.request_names, open_model=plan.open_model)
    try:
        writer = EventLogWriter(setup.log_path, setup.header)
    except OSError as exc:
        raise RunError(f"cannot write the event log {setup.log_path}: {exc.strerror}") from None

    ctx = multiprocessing.get_context("fork")
    rings: list[Ring] = []
    workers: list[multiprocessing.process.BaseProcess] = []
    received = [0] * procs
    reported = [-1] * procs
    finished = [False] * procs
    dead_since: list[float | None] = [None] * procs
    failed: list[int] = []
    messages: list[str] = []
    stop_flag = ctx.Event()
    sigs = _Signals()
    interrupted = False
    aborted = False
    try:
        with sigs.installed():
            for _ in range(procs):
                rings.append(Ring.create(RING_CAPACITY))
            for w in range(procs):
                wplan = WorkPlan(
                    scenario=plan.scenario,
                    seed=plan.seed,
                    procs=procs,
                    worker_index=w,
                    run_start_ns=plan.run_start_ns,
                    duration_s=plan.duration_s,
                    iterations=plan.iterations,
                    vus=plan.vus,
                    engine=plan.engine,
                    shard_index=plan.shard_index,
                    shard_count=plan.shard_count,
                )
                p = ctx.Process(
                    target=worker_main,
                    args=(WorkerArgs(wplan, rings[w].name, stop_flag, os.getpid()),),
                    name=f"z6-worker-{w}",
                    daemon=True,
                )
                p.start()
                workers.append(p)

            last_flush = last_progress = time.monotonic()
            run_start_perf = plan.run_start_ns
            while True:
                got = 0
                for w in range(procs):
                    for rec in rings[w].read_all():
                        got += 1
                        writer.write_batch(w, rec)
                        events = decode_batch(rec)
                        reducer.add(events, w)
                        received[w] += len(events)
                        last = events[-1]
                        if type(last) is WorkerFinished:
                            finished[w] = True
                            reported[w] = last.events
                now = time.monotonic()
                if now - last_flush >= _FLUSH_EVERY_S:
                    writer.flush()
                    last_flush = now
                    if (
                        setup.max_log_bytes is not None
                        and writer.bytes_written > setup.max_log_bytes
                        and not stop_flag.is_set()
                    ):
                        messages.append(
                            "the event log reached limits.max_event_log_size_mb; run stopped early"
                        )
                        stop_flag.set()
                if setup.progress is not None and now - last_progress >= _PROGRESS_EVERY_S:
                    last_progress = now
                    elapsed = max(0.0, (time.perf_counter_ns() - run_start_perf) / 1e9)
                    setup.progress(reducer.interval(), elapsed)
                # Signals: first = graceful stop, second = abort now.
                if sigs.count >= 1 and not interrupted:
                    interrupted = True
                    stop_flag.set()
                if sigs.count >= 2:
                    aborted = True
                    for p in workers:
                        if p.is_alive():
                            p.kill()
                    messages.append("aborted by a second interrupt: in-flight requests are lost")
                    break
                # Worker death: an exit without its WorkerFinished event.
                all_done = True
                for w, p in enumerate(workers):
                    if finished[w] and p.exitcode is not None:
                        continue
                    all_done = False
                    if not finished[w] and p.exitcode is not None and w not in failed:
                        if dead_since[w] is None:
                            dead_since[w] = now
                        elif now - (dead_since[w] or now) >= _DEATH_GRACE_S:
                            failed.append(w)
                            messages.append(
                                f"worker {w} (pid {p.pid}) died with {_exit_text(p.exitcode)};"
                                " the other workers were stopped"
                            )
                            stop_flag.set()
                if all_done or (failed and _all_settled(workers, finished, failed)):
                    break
                if got == 0:
                    time.sleep(_IDLE_SLEEP_S)
            # Whatever is still in the rings (a dead worker's last records) is kept.
            for w in range(procs):
                for rec in rings[w].read_all():
                    writer.write_batch(w, rec)
                    events = decode_batch(rec)
                    reducer.add(events, w)
                    received[w] += len(events)
                    if type(events[-1]) is WorkerFinished:
                        finished[w] = True
                        reported[w] = events[-1].events
    finally:
        for p in workers:
            if p.is_alive():
                p.kill()
            p.join(timeout=5)
        for ring in rings:
            ring.close()
            ring.unlink()
        if aborted:
            outcome = "aborted"
        elif failed:
            outcome = "worker_failed"
        elif interrupted:
            outcome = "interrupted"
        else:
            outcome = "complete"
        footer = LogFooter(
            worker_events=list(received),
            worker_reported=list(reported),
            end_wall_ns=time.time_ns(),
            outcome=outcome,
            failed_workers=sorted(failed),
            message="; ".join(messages),
        )
        try:
            writer.close(footer)
        except OSError as exc:
            raise RunError(f"cannot finish the event log {setup.log_path}: {exc}") from None
    return RunOutcome(
        reducer=reducer,
        footer=footer,
        interrupted=interrupted or aborted,
        failed_workers=sorted(failed),
        messages=messages,
    )


def _all_settled(
    workers: list[multiprocessing.process.BaseProcess], finished: list[bool], failed: list[int]
) -> bool:
    """True when every worker has exited and each either finished or is known failed."""
    return all(
        p.exitcode is not None and (finished[w] or w in failed) for w, p in enumerate(workers)
    )


def _exit_text(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"
