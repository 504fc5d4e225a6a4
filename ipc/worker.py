"""The worker process: attach to its ring, run the VU runtime in one trio loop, exit.

A worker never aggregates anything; it only produces events. It ignores SIGINT and SIGTERM
(a Ctrl-C on the terminal, or a service manager's SIGTERM, reaches every process of the group;
the supervisor decides what happens) and stops softly when the supervisor sets the shared stop
flag. When the supervisor itself is gone (even killed by SIGKILL) nobody can record anything
any more: the worker notices within ``_STOP_POLL_S`` and exits at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, NoReturn

import trio

from z6.engine.vu import VuRuntime, WorkPlan
from z6.ipc.events import Event, encode_batch
from z6.ipc.ring import Ring

_FULL_WAIT_S = 0.0005
_STOP_POLL_S = 0.05
_EXIT_ORPHANED = 3


@dataclass(frozen=True)
class WorkerArgs:
    """What the supervisor hands a worker process: its plan, its ring, the stop flag."""

    plan: WorkPlan
    ring_name: str
    stop_flag: Any  # multiprocessing.Event of the fork context
    parent_pid: int


class _RingWriter:
    """Encodes batches into one reused buffer and writes them to the ring, waiting when full."""

    def __init__(self, ring: Ring, parent_pid: int) -> None:
        self.ring = ring
        self.parent_pid = parent_pid
        self.buf = bytearray(64 * 1024)
        self.runtime: VuRuntime | None = None

    async def write(self, batch: list[Event]) -> None:
        data = encode_batch(batch, self.buf)
        ring = self.ring
        if len(data) > ring.max_record:
            # Split oversize batches; never the case with BATCH_MAX events, but cheap to handle.
            half = len(batch) // 2
            await self.write(batch[:half])
            await self.write(batch[half:])
            return
        if ring.try_write(data):
            return
        # Full: the aggregator fell behind (a slow disk, a stopped z6). Wait for room, and
        # count it once with its length, however many retries it takes.
        since = time.perf_counter_ns()
        while True:
            if os.getppid() != self.parent_pid:
                # The supervisor (our only consumer) is gone: nobody will ever drain the ring.
                _orphaned()
            await trio.sleep(_FULL_WAIT_S)
            if ring.try_write(data):
                break
        if self.runtime is not None:
            self.runtime.add_ring_wait(time.perf_counter_ns() - since)


async def _main(args: WorkerArgs, ring: Ring) -> None:
    writer = _RingWriter(ring, args.parent_pid)
    runtime = VuRuntime(args.plan, writer.write)
    writer.runtime = runtime

    async def watch_stop(cancel_scope: trio.CancelScope) -> None:
        stopping = False
        while True:
            if os.getppid() != args.parent_pid:
                _orphaned()
            if not stopping and args.stop_flag.is_set():
                stopping = True
                runtime.request_stop()
            await trio.sleep(_STOP_POLL_S)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_stop, nursery.cancel_scope)
        await runtime.run()
        nursery.cancel_scope.cancel()


def _orphaned() -> NoReturn:
    """The supervisor died: exit now, without cleanup (its resource tracker unlinks the rings)."""
    os._exit(_EXIT_ORPHANED)


_PR_SET_TIMERSLACK = 29
_TIMER_SLACK_NS = 1_000


def tighten_timer_slack() -> bool:
    """Let the kernel end this process's short timed waits within 1 µs rather than up to its
    default 50 µs of slack (Linux ``prctl(PR_SET_TIMERSLACK)``): a timer's lateness lands in
    the open model's corrected latency. (For select/poll/epoll the kernel's slack is at least
    0.1 % of the timeout; the reactor allows for that.) True when set; False where it cannot
    be (not Linux, no libc), where waits keep the default slack."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_TIMERSLACK, _TIMER_SLACK_NS, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def worker_main(args: WorkerArgs) -> None:
    """Entry point of a worker process (target of ``multiprocessing.Process``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal: the supervisor decides
    tighten_timer_slack()
    ring = Ring.attach(args.ring_name)
    code = 0
    try:
        trio.run(_main, args, ring)
        ring.mark_closed()
    except BaseException as exc:  # the supervisor reports the death; say why on stderr
        print(f"z6: worker {args.plan.worker_index} failed: {exc!r}", file=sys.stderr)
        code = 3
    finally:
        ring.close()
    with contextlib.suppress(OSError, ValueError, AttributeError):
        sys.stdout.flush()  # a closed or full stdout is the supervisor's to report
    os._exit(code)
