"""Every misbehaviour of the hostile server ends as the right error kind (SPEC section 10).

Each case runs on both HTTP engines through the real client (sockets on 127.0.0.1, driven by
the VU reactor inside trio).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio
from hostile_server import plain_connection, start_hostile_server

from z6.engine.client import Outcome
from z6.engine.error_kinds import ErrorKind
from z6.engine.reactor import run_tasks
from z6.engine.requests import make_request

TIMEOUT_S = 0.5


@pytest.fixture(scope="module")
def hostile_port() -> Iterator[int]:
    """The hostile server's port, shared by this module's tests."""
    with start_hostile_server() as port:
        yield port


@pytest.fixture(params=["h11", "httptools"])
def engine(request: pytest.FixtureRequest) -> str:
    """Each HTTP engine in turn."""
    return str(request.param)


def fetch(port: int, engine: str, method: str, path: str) -> Outcome:
    """One request on a fresh connection; the filled Outcome."""
    out = Outcome()
    req = make_request(method, path, host=f"127.0.0.1:{port}", timeout_s=TIMEOUT_S)

    async def main() -> None:
        conn = plain_connection(port, engine)
        await conn.request(req, out)
        conn.close()

    trio.run(run_tasks, main())
    return out


# path -> (error kind, status)
CASES = {
    "/ok": (ErrorKind.NONE, 200),
    "/chunked": (ErrorKind.NONE, 200),
    "/close-delimited": (ErrorKind.NONE, 200),
    "/interim": (ErrorKind.NONE, 200),
    "/overlong-body": (ErrorKind.NONE, 200),
    "/status/503": (ErrorKind.STATUS, 503),
    "/status/404": (ErrorKind.STATUS, 404),
    "/status/302": (ErrorKind.NONE, 302),
    "/garbage": (ErrorKind.PROTOCOL_ERROR, 0),
    "/huge-headers": (ErrorKind.PROTOCOL_ERROR, 0),
    "/truncated-status": (ErrorKind.CLOSED_EARLY, 0),
    "/truncated-headers": (ErrorKind.CLOSED_EARLY, 0),
    "/closed-mid-body": (ErrorKind.CLOSED_EARLY, 0),
    "/reset": (ErrorKind.RESET, 0),
    "/silent": (ErrorKind.TIMEOUT, 0),
    "/trickle": (ErrorKind.TIMEOUT, 0),
}


@pytest.mark.parametrize("path", sorted(CASES))
def test_hostile_case(hostile_port: int, engine: str, path: str) -> None:
    """Each server behaviour maps to one error kind (and status when a response completed)."""
    out = fetch(hostile_port, engine, "GET", path)
    assert (out.error, out.status) == CASES[path]
    assert out.new_connection is True
    assert out.end_ns >= out.start_ns > 0


@pytest.mark.parametrize("path", ["/silent", "/trickle"])
def test_timeouts_stop_at_the_deadline(hostile_port: int, engine: str, path: str) -> None:
    """A stalled response ends as TIMEOUT after about timeout_s, not at the server's pace."""
    out = fetch(hostile_port, engine, "GET", path)
    assert out.error is ErrorKind.TIMEOUT
    # Measured, not asserted as a limit: the request did wait for the deadline.
    assert out.latency_ns >= TIMEOUT_S * 1e9 * 0.9


def test_trickle_counts_the_bytes_seen(hostile_port: int, engine: str) -> None:
    """Bytes that arrived before a timeout are still counted."""
    out = fetch(hostile_port, engine, "GET", "/trickle")
    assert out.error is ErrorKind.TIMEOUT
    assert out.bytes_received >= 1


@pytest.mark.parametrize("path", ["/ok", "/chunked", "/interim", "/status/204"])
def test_head_requests(hostile_port: int, engine: str, path: str) -> None:
    """HEAD responses have no body whatever their headers say."""
    out = fetch(hostile_port, engine, "HEAD", path)
    assert out.error is ErrorKind.NONE
    assert out.status in (200, 204)
