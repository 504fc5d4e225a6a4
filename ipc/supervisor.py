"""The supervisor: start the workers, run the aggregator, handle signals and worker death.

The aggregator runs in the supervisor's own thread: it drains every worker's ring, appends
each record unchanged as a frame of ``events.bin`` and feeds the decoded events to the one
``Reducer``. Nothing is ever dropped: a worker waits when its ring is full.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from z6.engine.errors import RunError
from z6.engine.goals import live_failure
from z6.engine.metrics import IntervalStats, Reducer, WorkerAccount
from z6.engine.scenario import ABORT_CHECK_SECONDS
from z6.engine.summary import RunMeta, build_summary, note_abort
from z6.engine.vu import WorkPlan
from z6.ipc.eventlog import EventLogWriter, LogFooter, LogHeader
from z6.ipc.events import WorkerFinished, decode_batch
from z6.ipc.ring import Ring
from z6.ipc.worker import WorkerArgs, worker_main

_IDLE_SLEEP_S = 0.002
_FLUSH_EVERY_S = 0.1
_PROGRESS_EVERY_S = 1.0
_DEATH_GRACE_S = 0.2  # after a worker exits, how long its last records may take to show up
_STOP_MARGIN_S = 5.0  # past graceful stop + this, a worker that still runs is killed
_JOIN_S = 5.0
# A gap this much longer than the loop's own pace means the supervisor was stopped (Ctrl-Z,
# SIGSTOP of the process group) or starved: the watchdog deadline moves back by the gap.
_PAUSE_GAP_S = 1.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
RING_CAPACITY = 8 * 1024 * 1024

# (stats of the interval, seconds since the run start, final): the final call comes once,
# after the last event was drained, with the run's totals.
ProgressFn = Callable[[IntervalStats, float, bool], None]


@dataclass
class RunSetup:
    """What ``run_workers`` needs besides the plan template."""

    plan: WorkPlan  # worker_index is replaced per worker
    log_path: Path
    header: LogHeader
    progress: ProgressFn | None = None
    max_log_bytes: int | None = None
    # Handlers the caller already installed (``signals_held``): the run uses their count and
    # leaves them installed on return, so a signal just after the run is not lost.
    signals: Signals | None = None


@dataclass
class RunOutcome:
    """What happened: the reducer with every event, and how the run ended."""

    reducer: Reducer
    footer: LogFooter
    interrupted: bool = False
    limited: bool = False  # stopped early by limits.max_event_log_size_mb
    goal_failed: bool = False  # stopped early by [assertions] abort_on_fail
    failed_workers: list[int] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


class Signals:
    """Counts SIGINT/SIGTERM/SIGHUP while installed; restores the previous handlers on exit."""

    def __init__(self) -> None:
        self.count = 0

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1

    @contextlib.contextmanager
    def installed(self) -> Iterator[Signals]:
        old = {s: signal.signal(s, self._handler) for s in STOP_SIGNALS}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def signals_held() -> contextlib.AbstractContextManager[Signals]:
    """Count SIGINT/SIGTERM/SIGHUP from here on (pass the result as ``RunSetup.signals``).

    ``z6 run`` holds them from before the run until its outputs are written: a signal that
    arrives after the workers finished neither kills z6 nor loses summary.json."""
    return Signals().installed()


def run_workers(setup: RunSetup) -> RunOutcome:
    """Run the test: fork the workers, aggregate until all finish, write the whole log.

    Raises ``RunError`` when the log cannot be written (then the workers are killed, the rings
    unlinked and the log closed without footer) or the rings or workers cannot be created.
    Worker death and signals are not errors here: they are reported in the returned
    ``RunOutcome`` and the footer. SIGINT/SIGTERM/SIGHUP are handled for the whole call,
    cleanup included, so an impatient Ctrl-C (or a closed terminal) never leaves a ring or a
    worker behind.
    """
    plan = setup.plan
    sc = plan.scenario
    # Interval latencies feed only the live view: without one (--quiet) they are not kept.
    reducer = Reducer(sc.request_names, open_model=plan.open_model, live=setup.progress is not None)
    try:
        writer = EventLogWriter(setup.log_path, setup.header)
    except OSError as exc:
        raise RunError(f"cannot write the event log {setup.log_path}: {exc.strerror}") from None

    held = setup.signals
    with contextlib.nullcontext(held) if held is not None else Signals().installed() as sigs:
        agg = _Aggregator(setup, reducer, writer, sigs)
        ok = False
        try:
            agg.start()
            agg.loop()
            agg.drain()
            agg.show_progress(time.perf_counter_ns(), final=True)
            ok = True
        finally:
            agg.cleanup()
            footer = agg.footer()
            try:
                writer.close(footer if ok else None)
            except RunError:
                if ok:  # otherwise the first error is already on its way up
                    raise
            except OSError as exc:
                if ok:
                    raise RunError(
                        f"cannot finish the event log {setup.log_path}: {exc.strerror or exc}"
                    ) from None
    agg.check_accounting()
    note_abort(reducer, footer, setup.header.wall_start_ns)
    return RunOutcome(
        reducer=reducer,
        footer=footer,
        interrupted=agg.interrupted or agg.aborted,
        limited=agg.limited,
        goal_failed=agg.goal_failed,
        failed_workers=sorted(agg.failed),
        messages=agg.messages,
    )


class _Aggregator:
    """State of one run on the supervisor side: workers, rings, counts, how it ended."""

    def __init__(
        self, setup: RunSetup, reducer: Reducer, writer: EventLogWriter, sigs: Signals
    ) -> None:
        self.setup = setup
        self.plan = setup.plan
        self.reducer = reducer
        self.writer = writer
        self.sigs = sigs
        procs = setup.plan.procs
        self.ctx = multiprocessing.get_context("fork")
        self.rings: list[Ring] = []
        self.workers: list[multiprocessing.process.BaseProcess] = []
        # Events received per worker, not counting its WorkerFinished (like the worker's count).
        self.received = [0] * procs
        self.reported = [-1] * procs
        self.finished = [False] * procs
        self.dead_since: list[float | None] = [None] * procs
        self.failed: list[int] = []
        self.messages: list[str] = []
        self.stop_flag = self.ctx.Event()
        self.interrupted = False
        self.aborted = False
        self.aborted_wall_ns = 0  # when the second interrupt came (the footer's end then)
        self.limited = False
        self.goal_failed = False
        assertions = setup.plan.scenario.assertions
        # abort_on_fail: when the goals are checked next (perf_counter ns; never when off).
        self._next_goal_check_ns: float = (
            setup.plan.run_start_ns + assertions.abort_delay_seconds * 1e9
            if assertions.abort_on_fail
            else math.inf
        )
        self.progress_off = False
        self._progress_ns = setup.plan.run_start_ns  # end of the interval last shown
        self.graceful_s = setup.plan.scenario.runtime.graceful_stop_seconds
        # Watchdog: past this perf_counter instant, workers that still run are killed. Set at
        # the planned end (duration runs) and at every stop request.
        self.deadline_ns: float = math.inf
        if setup.plan.duration_s is not None:
            self.deadline_ns = (
                setup.plan.run_start_ns + (setup.plan.duration_s + self.graceful_s) * 1e9
            ) + _STOP_MARGIN_S * 1e9

    # -- start -----------------------------------------------------------------------------

    def start(self) -> None:
        """Create one ring per worker and fork the workers."""
        plan = self.plan
        _start_resource_tracker()
        try:
            for _ in range(plan.procs):
                self.rings.append(Ring.create(RING_CAPACITY))
        except OSError as exc:
            raise RunError(f"cannot create a shared-memory ring: {exc.strerror or exc}") from None
        for w in range(plan.procs):
            wplan = dataclasses.replace(plan, worker_index=w)
            p = self.ctx.Process(
                target=worker_main,
                args=(WorkerArgs(wplan, self.rings[w].name, self.stop_flag, os.getpid()),),
                name=f"z6-worker-{w}",
                daemon=True,
            )
            try:
                p.start()
            except OSError as exc:
                raise RunError(f"cannot start worker {w}: {exc.strerror or exc}") from None
            self.workers.append(p)

    # -- the loop --------------------------------------------------------------------------

    def _consume(self, w: int, rec: bytes) -> None:
        self.writer.write_batch(w, rec)
        events = decode_batch(rec)
        self.reducer.add(events, w)
        last = events[-1]
        if type(last) is WorkerFinished:
            self.finished[w] = True
            self.reported[w] = last.events
            self.received[w] += len(events) - 1
        else:
            self.received[w] += len(events)

    def _request_stop(self, now_ns: int) -> None:
        if not self.stop_flag.is_set():
            self.stop_flag.set()
        self.deadline_ns = min(self.deadline_ns, now_ns + (self.graceful_s + _STOP_MARGIN_S) * 1e9)

    def loop(self) -> None:
        """Drain the rings into the log and the reducer until every worker is accounted for."""
        setup = self.setup
        rings = self.rings
        procs = self.plan.procs
        last_flush = last_progress = time.monotonic()
        last_round_ns = time.perf_counter_ns()
        while True:
            self._skip_pause(last_round_ns)
            last_round_ns = time.perf_counter_ns()
            got = 0
            for w in range(procs):
                for rec in rings[w].read_all():
                    got += 1
                    self._consume(w, rec)
            now = time.monotonic()
            now_ns = time.perf_counter_ns()
            if now - last_flush >= _FLUSH_EVERY_S:
                self.writer.flush()
                last_flush = now
                if (
                    setup.max_log_bytes is not None
                    and self.writer.bytes_written > setup.max_log_bytes
                    and not self.stop_flag.is_set()
                ):
                    self.limited = True
                    self.messages.append(
                        "the event log reached limits.max_event_log_size_mb; run stopped early"
                    )
                    self._request_stop(now_ns)
            if now_ns >= self._next_goal_check_ns:
                self._check_goals(now_ns)
            if (
                setup.progress is not None
                and not self.progress_off
                and now - last_progress >= _PROGRESS_EVERY_S
            ):
                last_progress = now
                self.show_progress(now_ns)
            # Signals: first = graceful stop, second = abort now. A goal that already stopped
            # the run (abort_on_fail) stays its verdict: the first signal changes nothing then.
            if self.sigs.count >= 1 and not self.interrupted and not self.goal_failed:
                self.interrupted = True
                self._request_stop(now_ns)
                # Said on stderr like any interrupted z6 (the summary's outcome says it too).
                self.messages.append(
                    "interrupted: the run stopped early; its results cover it up to the stop"
                )
            if self.sigs.count >= 2:
                self.aborted = True
                self.aborted_wall_ns = time.time_ns()
                self._kill_all()
                self.messages.append("aborted by a second interrupt: in-flight requests are lost")
                return
            if self._check_workers(now, now_ns):
                return
            if got == 0:
                time.sleep(_IDLE_SLEEP_S)

    def _check_goals(self, now_ns: int) -> None:
        """``abort_on_fail``: stop the run (gracefully, as SIGINT) at the first goal that fails
        on the metrics so far (:func:`~z6.engine.goals.live_failure`).

        A check builds the summary so far: tens of ms for a few request names over millions of
        requests, but seconds for hundreds of names with widely spread latencies (2.8 s for 300
        names and 2.9 million latency buckets). The next check waits ten times as long as this
        one took, so checks never take more than a tenth of the aggregator's time and the
        rings keep draining.
        """
        self._next_goal_check_ns = now_ns + ABORT_CHECK_SECONDS * 1e9
        if self.stop_flag.is_set():
            self._next_goal_check_ns = math.inf  # stopping already: the end decides
            return
        assertions = self.plan.scenario.assertions
        summary = build_summary(
            self.reducer,
            RunMeta.from_header(self.setup.header),
            assertions,
            percentiles=(),
            only_names=set(assertions.by_name),
        )
        failed = live_failure(assertions, summary)
        took_ns = time.perf_counter_ns() - now_ns
        self._next_goal_check_ns = now_ns + max(ABORT_CHECK_SECONDS * 1e9, 10 * took_ns)
        if failed is None:
            return
        self.goal_failed = True
        self._next_goal_check_ns = math.inf
        at_s = max(0.0, (now_ns - self.plan.run_start_ns) / 1e9)
        self.messages.append(
            f"goal {failed.name} failed {at_s:.1f} s into the run (actual {failed.actual:g}, "
            f"expected {failed.op} {failed.expected:g}); abort_on_fail stopped the run, and "
            "its results cover it up to the stop"
        )
        self._request_stop(now_ns)

    def show_progress(self, now_ns: int, *, final: bool = False) -> None:
        """Hand the interval since the last call to the live view (if any): its rate is over
        the wall time since then (0 before the run starts)."""
        show = self.setup.progress
        if show is None or self.progress_off:
            return
        span_ns = now_ns - max(self._progress_ns, self.plan.run_start_ns)
        self._progress_ns = max(now_ns, self._progress_ns)
        elapsed = max(0.0, (now_ns - self.plan.run_start_ns) / 1e9)
        try:
            show(self.reducer.interval(span_ns), elapsed, final)
        except OSError:
            # The terminal is gone (SIGHUP, closed pty: EIO): the run goes on unseen.
            self.progress_off = True

    def _skip_pause(self, last_round_ns: int) -> None:
        """After a pause of the supervisor (SIGSTOP/SIGCONT, Ctrl-Z then ``fg``) the workers
        were paused too, or at least could not be drained: move the watchdog back by the gap
        so healthy workers are not killed for time nobody could use."""
        gap_ns = time.perf_counter_ns() - last_round_ns
        if gap_ns > _PAUSE_GAP_S * 1e9 and self.deadline_ns != math.inf:
            self.deadline_ns += gap_ns

    def _check_workers(self, now: float, now_ns: int) -> bool:
        """Notice dead and stuck workers; True when every worker is accounted for."""
        all_done = True
        for w, p in enumerate(self.workers):
            if self.finished[w] and p.exitcode is not None:
                continue
            if w in self.failed:
                if p.exitcode is None:
                    all_done = False
                continue
            all_done = False
            if p.exitcode is None:
                continue
            # Exited without its WorkerFinished event: give its last records a moment.
            since = self.dead_since[w]
            if since is None:
                self.dead_since[w] = now
            elif now - since >= _DEATH_GRACE_S and not self.finished[w]:
                self.failed.append(w)
                self.messages.append(
                    f"worker {w} (pid {p.pid}) died with {_exit_text(p.exitcode)};"
                    " the other workers were stopped"
                )
                self._request_stop(now_ns)
        if all_done:
            return True
        if now_ns > self.deadline_ns:
            for w, p in enumerate(self.workers):
                if p.exitcode is None:
                    p.kill()
                    if not self.finished[w] and w not in self.failed:
                        self.failed.append(w)
                        self.messages.append(
                            f"worker {w} (pid {p.pid}) did not stop within the graceful stop"
                            f" + {_STOP_MARGIN_S:g} s and was killed"
                        )
            self.deadline_ns = math.inf  # killed: the exits show up on the next rounds
        return False

    def drain(self) -> None:
        """Keep whatever is still in the rings (a dead worker's last records)."""
        for p in self.workers:
            p.join(timeout=_JOIN_S)
        for w, ring in enumerate(self.rings):
            for rec in ring.read_all():
                self._consume(w, rec)

    # -- the end ---------------------------------------------------------------------------

    def _kill_all(self) -> None:
        for p in self.workers:
            if p.exitcode is None:
                p.kill()

    def cleanup(self) -> None:
        """Kill what still runs, reap every worker, unmap and unlink every ring."""
        self._kill_all()
        for p in self.workers:
            p.join(timeout=_JOIN_S)
        for ring in self.rings:
            ring.close()
            ring.unlink()

    def footer(self) -> LogFooter:
        """The footer frame that says how the run ended."""
        if self.aborted:
            outcome = "aborted"
        elif self.failed:
            outcome = "worker_failed"
        elif self.interrupted:
            outcome = "interrupted"
        elif self.limited:
            outcome = "limit_reached"
        elif self.goal_failed:
            outcome = "goal_failed"
        else:
            outcome = "complete"
        return LogFooter(
            worker_events=list(self.received),
            worker_reported=list(self.reported),
            # An aborted run ends at the abort, not after killing the workers and draining.
            end_wall_ns=self.aborted_wall_ns if self.aborted else time.time_ns(),
            outcome=outcome,
            failed_workers=sorted(self.failed),
            message="; ".join(self.messages),
        )

    def check_accounting(self) -> None:
        """Nothing lost (SPEC 10): add a message for every worker whose counts disagree."""
        if self.aborted:
            return  # workers were killed on purpose; the abort message says what was lost
        self.messages.extend(
            accounting_problems(self.reducer.workers(), self.received, skip=self.failed)
        )


def accounting_problems(
    accounts: Sequence[WorkerAccount], received: Sequence[int], skip: Collection[int] = ()
) -> list[str]:
    """One line per broken accounting invariant of a run; empty when nothing was lost.

    For each worker ``w`` (``received[w]`` = events the aggregator took from its ring and
    wrote to the log, not counting ``WorkerFinished``): every worker reported its count
    (``WorkerFinished.events``), that count equals the events received and reduced, and the
    requests it started equal the request events recorded (completed + failed +
    interrupted). Workers in ``skip`` (known dead, already reported) are not checked.
    """
    problems: list[str] = []
    seen = {acc.worker for acc in accounts if acc.part == 0}
    for w in range(len(received)):
        if w not in seen and w not in skip:
            problems.append(f"accounting: no event arrived from worker {w}")
    for acc in accounts:
        w = acc.worker
        if acc.part != 0 or w in skip or not 0 <= w < len(received):
            continue
        if acc.reported is None:
            problems.append(f"accounting: worker {w} never reported its event count")
            continue
        if acc.reported != received[w] or acc.received != received[w]:
            problems.append(
                f"accounting: worker {w} produced {acc.reported} events but {received[w]} arrived"
            )
        if acc.requests_started != acc.requests_recorded:
            problems.append(
                f"accounting: worker {w} started {acc.requests_started} requests but"
                f" {acc.requests_recorded} were recorded"
            )
    return problems


# The resource tracker's own warnings, all of them starting "resource_tracker:" (3.11-3.13),
# e.g. "UserWarning: resource_tracker: There appear to be 2 leaked shared_memory objects to
# clean up at shutdown" plus the source line, after a kill -9 of the supervisor.
_TRACKER_QUIET = "ignore:resource_tracker:UserWarning:multiprocessing.resource_tracker"


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (it unlinks the rings if the supervisor dies)
    with SIGHUP blocked and its warnings off.

    SIGHUP blocked: the tracker inherits the block. It ignores SIGINT/SIGTERM itself, and a
    SIGHUP to the process group (terminal closed) must not kill it either. A SIGHUP that
    arrives meanwhile stays pending for the supervisor and is handled once unblocked.

    Warnings off: after the supervisor was killed (SIGKILL, the OOM killer), unlinking the
    rings it left is the tracker's job and what z6 wants, but it also printed a two-line
    Python ``UserWarning`` about "leaked shared_memory objects" on z6's stderr: noise to the
    user, who knows z6 was killed. The tracker is a new interpreter (``python -c``) that
    inherits the environment, so a ``PYTHONWARNINGS`` filter set while it starts silences
    exactly those warnings there, through Python's documented warning control rather than
    multiprocessing's internals. (Where it cannot, the warning shows as before: z6 run as
    ``python -W ACTION ...`` passes that option on to the tracker, where it ranks above the
    environment; ``-E``/``-I`` make the tracker ignore the environment; a tracker that already
    runs keeps its settings.) z6's own environment is restored at once; the workers are
    forked later."""
    from multiprocessing import resource_tracker

    old_env = os.environ.get("PYTHONWARNINGS")
    # Appended: the last filter given wins over the user's own, for these warnings only.
    os.environ["PYTHONWARNINGS"] = f"{old_env},{_TRACKER_QUIET}" if old_env else _TRACKER_QUIET
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        resource_tracker.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        if old_env is None:
            del os.environ["PYTHONWARNINGS"]
        else:
            os.environ["PYTHONWARNINGS"] = old_env


def _exit_text(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"
