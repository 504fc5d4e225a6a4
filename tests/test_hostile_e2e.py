"""End to end against the hostile server: ``z6 run --procs 2`` survives every misbehaviour.

One scenario walks every hostile path in order (a ``[sequence]``), so each VU meets each case;
a second scenario aims at a port where nothing listens. The per-name outcomes of
``summary.json`` must match what each case is (SPEC section 10): valid HTTP succeeds, the rest
ends as its own error kind, and the run finishes with exit 0 (no goals) and no traceback.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import run_z6
from hostile_server import refused_port, start_hostile_server

from z6.ipc.eventlog import EventLogReader

pytestmark = pytest.mark.slow

VUS = 2
ITERATIONS = 2
SHORT_TIMEOUT_MS = 300

# request name -> (path, expected error kind label or None for success, status or None)
CASES: dict[str, tuple[str, str | None, int | None]] = {
    "ok": ("/ok", None, 200),
    "chunked": ("/chunked", None, 200),
    "close_delimited": ("/close-delimited", None, 200),
    "interim": ("/interim", None, 200),
    "overlong": ("/overlong-body", None, 200),
    "s503": ("/status/503", "status", 503),
    "garbage": ("/garbage", "protocol_error", None),
    "huge_headers": ("/huge-headers", "protocol_error", None),
    "truncated_status": ("/truncated-status", "closed_early", None),
    "truncated_headers": ("/truncated-headers", "closed_early", None),
    "closed_mid_body": ("/closed-mid-body", "closed_early", None),
    "reset": ("/reset", "reset", None),
    "silent": ("/silent", "timeout", None),
    "trickle": ("/trickle", "timeout", None),
    # Body checks on the same responses (the lines in CHECKS): the text spanning two chunks
    # is found, a trailer and a 1xx head are not body, bytes after the response are not
    # either, and a failed status comes first.
    "chunked_checked": ("/chunked", None, 200),
    "chunked_forbidden": ("/chunked", "body_check", 200),
    "interim_checked": ("/interim", "body_check", 200),
    "close_checked": ("/close-delimited", "body_check", 200),
    "overlong_checked": ("/overlong-body", None, 200),
    "s503_checked": ("/status/503", "status", 503),
}
CHECKS = {
    "chunked_checked": "expect_body_contains = 'lo wo'\nexpect_body_not_contains = 'done'",
    "chunked_forbidden": "expect_body_not_contains = 'o w'",
    "interim_checked": "expect_body_contains = 'Early'",
    "close_checked": "expect_body_not_contains = 'the end'",
    "overlong_checked": "expect_body_contains = 'ok'\nexpect_body_not_contains = 'EXTRA'",
    "s503_checked": "expect_body_contains = 'nope'",
}


def _scenario(port: int, names: list[str]) -> str:
    parts = [
        textwrap.dedent(
            f"""
            [metadata]
            name = "hostile"
            [runtime]
            iterations = {ITERATIONS}
            vus = {VUS}
            prng_seed = 3
            graceful_stop_seconds = 2
            [target]
            base_url = "http://127.0.0.1:{port}"
            connection_timeout_ms = 2000
            """
        )
    ]
    for name in names:
        path = CASES[name][0]
        parts.append(
            f'[[requests]]\nname = "{name}"\nmethod = "GET"\npath = "{path}"\n'
            f"timeout_ms = {SHORT_TIMEOUT_MS}\n{CHECKS.get(name, '')}\n"
        )
    parts.append('[sequence]\ntype = "ordered"\n')
    for name in names:
        parts.append(f'[[sequence.steps]]\nrequest = "{name}"\n')
    return "\n".join(parts)


def _z6_segments() -> set[str]:
    """Names of z6 ring segments in /dev/shm."""
    return {n for n in os.listdir("/dev/shm") if n.startswith("z6r_")}


def _run(scenario: Path, out: Path) -> tuple[int, dict[str, Any], str]:
    before = _z6_segments()
    proc = run_z6(
        ["run", str(scenario), "--procs", "2", "--out", str(out), "--json", "--quiet"],
        timeout=90,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    # The run's own segments are named z6r_<its pid>_...: none may outlive it.
    leaked = {n for n in _z6_segments() - before if _creator_gone(n)}
    assert not leaked, leaked
    summary = json.loads((out / "summary.json").read_text())
    return proc.returncode, summary, proc.stderr


def _creator_gone(segment: str) -> bool:
    """True when the process that created ``z6r_<pid>_<hex>`` no longer exists."""
    try:
        pid = int(segment.split("_")[1])
    except (IndexError, ValueError):
        return False
    return not os.path.exists(f"/proc/{pid}")


def test_every_hostile_case_ends_as_its_error_kind(tmp_path: Path) -> None:
    names = list(CASES)
    with start_hostile_server() as port:
        scenario = tmp_path / "hostile.toml"
        scenario.write_text(_scenario(port, names))
        code, summary, err = _run(scenario, tmp_path / "out")
    assert code == 0, err
    per_name = VUS * ITERATIONS
    by_name = summary["requests"]["by_name"]
    expected_kinds: dict[str, int] = {}
    for name, (_path, kind, _status) in CASES.items():
        entry = by_name[name]
        assert entry["total"] == per_name, (name, entry)
        if kind is None:
            assert entry["failed"] == 0, (name, entry)
        else:
            assert entry["ok"] == 0, (name, entry)
            expected_kinds[kind] = expected_kinds.get(kind, 0) + per_name
    assert summary["requests"]["total"] == per_name * len(CASES)
    assert summary["errors"]["by_kind"] == expected_kinds
    assert len(expected_kinds) >= 3
    assert summary["requests"]["by_status"]["503"] == 2 * per_name  # s503 and s503_checked
    assert summary["accounting"]["complete"] is True
    # The log holds the same requests, each with its error kind, and a complete footer.
    reader = EventLogReader(tmp_path / "out" / "events.bin")
    n_requests = sum(
        1 for _w, events in reader.batches() for e in events if type(e).__name__ == "RequestEvent"
    )
    assert n_requests == per_name * len(CASES)
    assert reader.damage is None
    assert reader.footer is not None
    assert reader.footer.outcome == "complete"


def test_nothing_listening_is_connect_refused(tmp_path: Path) -> None:
    with refused_port() as port:
        scenario = tmp_path / "refused.toml"
        scenario.write_text(_scenario(port, ["ok", "s503"]))
        code, summary, err = _run(scenario, tmp_path / "out")
    assert code == 0, err
    total = VUS * ITERATIONS * 2
    assert summary["requests"]["total"] == total
    assert summary["errors"]["by_kind"] == {"connect_refused": total}
    assert summary["accounting"]["complete"] is True
