"""The worker process's own set-up (``z6.ipc.worker``)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl timer slack is Linux")
def test_worker_timer_slack_is_tightened_to_a_microsecond() -> None:
    """The kernel's default 50 µs of slack would make every timed wait of a worker late by
    that much (and the open model's corrected latency with it)."""
    code = (
        "from z6.ipc.worker import tighten_timer_slack\n"
        "before = open('/proc/self/timerslack_ns').read().strip()\n"
        "ok = tighten_timer_slack()\n"
        "print(before, ok, open('/proc/self/timerslack_ns').read().strip())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    before, ok, after = out.stdout.split()
    assert ok == "True"
    assert after == "1000"
    assert before != after
