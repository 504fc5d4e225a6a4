"""z6 ipc: the events, the shared-memory rings that carry them from the workers, the event log,
the worker process and the supervisor that runs them.

The names below are the public API; each is imported from its module on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from z6.engine._exports import lazy_getattr

_EXPORTS: dict[str, str] = {
    "Event": "events",
    "IterationDropped": "events",
    "RequestEvent": "events",
    "VuStarted": "events",
    "VuStopped": "events",
    "WorkerFinished": "events",
    "WorkerStarted": "events",
    "decode_batch": "events",
    "encode_batch": "events",
    "Ring": "ring",
    "RingCorruptError": "ring",
    "EventLogReader": "eventlog",
    "EventLogWriter": "eventlog",
    "LogDamage": "eventlog",
    "LogFooter": "eventlog",
    "LogHeader": "eventlog",
    "FORMAT_VERSION": "eventlog",
    "MAGIC": "eventlog",
    "RunOutcome": "supervisor",
    "RunSetup": "supervisor",
    "run_workers": "supervisor",
    "signals_held": "supervisor",
    "WorkerArgs": "worker",
    "worker_main": "worker",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from z6.ipc.eventlog import (
        FORMAT_VERSION as FORMAT_VERSION,
        MAGIC as MAGIC,
        EventLogReader as EventLogReader,
        EventLogWriter as EventLogWriter,
        LogDamage as LogDamage,
        LogFooter as LogFooter,
        LogHeader as LogHeader,
    )
    from z6.ipc.events import (
        Event as Event,
        IterationDropped as IterationDropped,
        RequestEvent as RequestEvent,
        VuStarted as VuStarted,
        VuStopped as VuStopped,
        WorkerFinished as WorkerFinished,
        WorkerStarted as WorkerStarted,
        decode_batch as decode_batch,
        encode_batch as encode_batch,
    )
    from z6.ipc.ring import Ring as Ring, RingCorruptError as RingCorruptError
    from z6.ipc.supervisor import (
        RunOutcome as RunOutcome,
        RunSetup as RunSetup,
        run_workers as run_workers,
        signals_held as signals_held,
    )
    from z6.ipc.worker import WorkerArgs as WorkerArgs, worker_main as worker_main


__getattr__ = lazy_getattr(__name__, _EXPORTS)
