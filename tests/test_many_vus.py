"""10,000 VUs in one worker stay healthy, and z6 raises a too-low open-files limit itself.

Each VU makes one request and then thinks for 30 s, so the run holds 10,000 idle keep-alive
connections for its whole duration. ``z6 run`` starts with a soft open-files limit of 1024
(set by a small exec wrapper) and must raise it, and say so, before the worker opens its
sockets. The built-in server runs as a separate process with its limit raised to the hard one.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, z6_command
from servers import _stop, _wait_port

from z6.ipc.eventlog import EventLogReader
from z6.ipc.events import RequestEvent

pytestmark = pytest.mark.slow

VUS = 10_000
LOW_SOFT_LIMIT = 1024
_HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
_ENOUGH = VUS + 1000  # sockets of one side plus headroom

# Exec z6 with a given soft open-files limit (avoids preexec_fn in a threaded pytest).
_WITH_NOFILE = (
    "import os, resource, sys; "
    "soft = int(sys.argv[1]); hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
)


def _with_nofile(soft: int, argv: list[str]) -> list[str]:
    return [sys.executable, "-c", _WITH_NOFILE, str(soft), *argv[1:]]


@pytest.fixture
def big_server() -> Iterator[int]:
    """``z6 serve`` with its open-files limit at the hard limit."""
    port = free_port()
    soft = _HARD if _HARD != resource.RLIM_INFINITY else 1 << 20
    proc = subprocess.Popen(
        _with_nofile(soft, [*z6_command(), "serve", "--port", str(port)]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port, proc)
        yield port
    finally:
        _stop(proc)


@pytest.mark.skipif(
    _HARD != resource.RLIM_INFINITY and _HARD < _ENOUGH,
    reason=f"hard open-files limit {_HARD} is below {_ENOUGH}",
)
def test_ten_thousand_idle_vus_in_one_worker(tmp_path: Path, big_server: int) -> None:
    scenario = tmp_path / "many.toml"
    scenario.write_text(
        textwrap.dedent(
            f"""
            [metadata]
            name = "many vus"
            [runtime]
            duration_seconds = 6
            vus = {VUS}
            prng_seed = 11
            graceful_stop_seconds = 1
            [target]
            base_url = "http://127.0.0.1:{big_server}"
            connection_timeout_ms = 20000
            [[requests]]
            name = "home"
            method = "GET"
            path = "/"
            timeout_ms = 20000
            [think_time]
            type = "constant"
            duration_ms = 30000
            """
        )
    )
    out = tmp_path / "out"
    env = dict(os.environ)
    env.pop("COLUMNS", None)
    argv = [*z6_command(), "run", str(scenario), "--procs", "1", "--out", str(out), "--json"]
    proc = subprocess.run(
        _with_nofile(LOW_SOFT_LIMIT, argv),
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert f"z6: raised the open-files limit from {LOW_SOFT_LIMIT} to " in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["requests"]["total"] >= VUS
    assert summary["errors"]["total"] == 0
    assert summary["requests"]["by_status"] == {"200": summary["requests"]["total"]}
    assert summary["accounting"]["complete"] is True
    # Every VU made its first request (one per VU: the think time outlasts the run).
    reader = EventLogReader(out / "events.bin")
    vus = {e.vu for _w, evs in reader.batches() for e in evs if isinstance(e, RequestEvent)}
    assert vus == set(range(VUS))
