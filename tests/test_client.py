"""The client as a reactor task: keep-alive, reconnects, connect failures, TLS, the hard stop."""

from __future__ import annotations

import contextlib
import errno
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio
from hostile_server import (
    HostileServer,
    backlog_full_port,
    connect_hangs,
    plain_connection,
    refused_port,
    running_hostile_server,
)

import z6.engine.client as client_module
from z6.engine.client import Connection, Outcome, classify_exception, make_ssl_context
from z6.engine.error_kinds import ErrorKind
from z6.engine.errors import ConfigError
from z6.engine.protocol import ClosedEarly, ProtocolViolation, engine_factory
from z6.engine.reactor import Interrupted, Reactor, Semaphore, run_tasks
from z6.engine.requests import PreparedRequest, make_request

Snapshot = tuple[ErrorKind, int, bool, int]  # error, status, new_connection, bytes_received


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    """A plain hostile server for this module."""
    with running_hostile_server() as srv:
        yield srv


@pytest.fixture(params=["h11", "httptools"])
def engine(request: pytest.FixtureRequest) -> str:
    """Each HTTP engine in turn."""
    return str(request.param)


def get(
    path: str, timeout_s: float = 1.0, method: str = "GET", body: bytes = b""
) -> PreparedRequest:
    """A request for ``path`` on the test server."""
    return make_request(method, path, body=body, timeout_s=timeout_s)


def run_sequence(
    port: int,
    reqs: list[PreparedRequest],
    engine: str = "h11",
    *,
    tls: ssl.SSLContext | None = None,
    host: str = "127.0.0.1",
    server_hostname: str | None = None,
    connect_timeout_s: float = 2.0,
) -> list[Snapshot]:
    """Send ``reqs`` in order over one Connection (one reused Outcome); snapshot each."""
    results: list[Snapshot] = []

    async def main() -> None:
        conn = Connection(
            host,
            port,
            tls=tls,
            server_hostname=server_hostname,
            connect_timeout_s=connect_timeout_s,
            parser_factory=engine_factory(engine),
        )
        out = Outcome()
        for req in reqs:
            await conn.request(req, out)
            assert out.end_ns >= out.start_ns
            assert (out.connect_ns > 0) == out.new_connection
            results.append((out.error, out.status, out.new_connection, out.bytes_received))
        conn.close()

    trio.run(run_tasks, main())
    return results


OK_BYTES = len(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")


def test_keep_alive_reuses_the_connection(server: HostileServer, engine: str) -> None:
    """Three requests, one TCP connection: new_connection only on the first."""
    before = server.connections
    got = run_sequence(server.port, [get("/ok"), get("/chunked"), get("/ok")], engine)
    assert [(e, s, n) for e, s, n, _ in got] == [
        (ErrorKind.NONE, 200, True),
        (ErrorKind.NONE, 200, False),
        (ErrorKind.NONE, 200, False),
    ]
    assert got[0][3] == OK_BYTES
    assert server.connections - before == 1


def test_reconnects_after_server_close(server: HostileServer, engine: str) -> None:
    """A close-delimited response ends the connection; the next request opens a new one."""
    got = run_sequence(server.port, [get("/close-delimited"), get("/ok"), get("/ok")], engine)
    assert [(e, s, n) for e, s, n, _ in got] == [
        (ErrorKind.NONE, 200, True),
        (ErrorKind.NONE, 200, True),
        (ErrorKind.NONE, 200, False),
    ]


def test_reconnects_after_errors(server: HostileServer, engine: str) -> None:
    """After a failure the connection is dropped and the next request succeeds on a new one."""
    reqs = [get("/truncated-headers"), get("/ok"), get("/reset"), get("/ok"), get("/ok")]
    got = run_sequence(server.port, reqs, engine)
    assert [(e, n) for e, _, n, _ in got] == [
        (ErrorKind.CLOSED_EARLY, True),
        (ErrorKind.NONE, True),
        # The reset came with no response byte on a reused connection: retried once on a new
        # connection (stale keep-alive rule), which the server resets again.
        (ErrorKind.RESET, True),
        (ErrorKind.NONE, True),
        (ErrorKind.NONE, False),
    ]


def test_status_failure_keeps_the_connection(server: HostileServer, engine: str) -> None:
    """A failed status check is not a transport error: the connection stays usable."""
    got = run_sequence(server.port, [get("/status/500"), get("/ok")], engine)
    assert [(e, s, n) for e, s, n, _ in got] == [
        (ErrorKind.STATUS, 500, True),
        (ErrorKind.NONE, 200, False),
    ]


def test_expect_status_decides_success(server: HostileServer) -> None:
    """expect_status overrides the < 400 rule both ways."""
    want_404 = make_request("GET", "/status/404", expect_status=frozenset({404}))
    want_201 = make_request("GET", "/ok", expect_status=frozenset({201}))
    got = run_sequence(server.port, [want_404, want_201])
    assert [(e, s) for e, s, _, _ in got] == [(ErrorKind.NONE, 404), (ErrorKind.STATUS, 200)]


def test_overlong_body_is_not_reused(server: HostileServer, engine: str) -> None:
    """Extra bytes after the declared body: success, but the next request reconnects."""
    got = run_sequence(server.port, [get("/overlong-body"), get("/ok")], engine)
    assert [(e, s, n) for e, s, n, _ in got] == [
        (ErrorKind.NONE, 200, True),
        (ErrorKind.NONE, 200, True),
    ]


def test_post_body_is_sent(server: HostileServer, engine: str) -> None:
    """The request body reaches the server (echoed back, counted in bytes_received)."""
    body = b'{"hello": "world"}' * 100
    got = run_sequence(server.port, [get("/echo", method="POST", body=body)], engine)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    assert got == [(ErrorKind.NONE, 200, True, len(head) + len(body))]


def test_connect_refused(engine: str) -> None:
    """Nothing listening: CONNECT_REFUSED, and the next attempt tries again."""
    with refused_port() as port:
        got = run_sequence(port, [get("/ok"), get("/ok")], engine)
    assert got == [(ErrorKind.CONNECT_REFUSED, 0, True, 0)] * 2


def test_connect_timeout() -> None:
    """A listener that never accepts (full backlog): CONNECT_TIMEOUT after connect_timeout_s."""
    with backlog_full_port() as port:
        if not connect_hangs(port):
            pytest.skip("this kernel completes connects to a full backlog; no hang to time out")
        got = run_sequence(port, [get("/ok")], connect_timeout_s=0.3)
    assert got == [(ErrorKind.CONNECT_TIMEOUT, 0, True, 0)]


def test_dns_error_for_an_unusable_host_name() -> None:
    """A host name that cannot be resolved is DNS_ERROR (checked locally: an empty label)."""
    got = run_sequence(80, [get("/ok")], host="bad..name")
    assert got == [(ErrorKind.DNS_ERROR, 0, True, 0)]


def test_interrupt_closes_the_socket_and_propagates(server: HostileServer) -> None:
    """The hard stop (Interrupted) propagates out of a request, and the socket is closed."""
    conn = Connection(
        "127.0.0.1",
        server.port,
        tls=None,
        server_hostname=None,
        connect_timeout_s=2.0,
        parser_factory=engine_factory("h11"),
    )
    out = Outcome()
    finished: list[str] = []
    stop_at: list[int] = []

    async def one() -> None:
        try:
            await conn.request(get("/silent", timeout_s=30), out)
        except Interrupted:
            finished.append("interrupted")
            raise
        finished.append("returned")

    async def main() -> None:
        reactor = Reactor()
        reactor.spawn(one())
        reactor.hard_stop_ns = time.perf_counter_ns() + 200_000_000
        stop_at.append(reactor.hard_stop_ns)
        await reactor.run()

    trio.run(main)
    assert finished == ["interrupted"]
    assert conn.is_open is False
    assert out.start_ns > 0
    # The request was cut at the hard stop, not before.
    assert out.end_ns >= stop_at[0]


def test_timeout_then_reconnect(server: HostileServer) -> None:
    """After a request timeout the connection is not reused."""
    got = run_sequence(server.port, [get("/silent", timeout_s=0.3), get("/ok")])
    assert [(e, n) for e, _, n, _ in got] == [(ErrorKind.TIMEOUT, True), (ErrorKind.NONE, True)]


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ConnectionRefusedError(), ErrorKind.CONNECT_REFUSED),
        (ConnectionResetError(), ErrorKind.RESET),
        (BrokenPipeError(), ErrorKind.RESET),
        (ssl.SSLError(1, "bad record"), ErrorKind.TLS_ERROR),
        (ssl.SSLCertVerificationError(1, "self-signed"), ErrorKind.TLS_ERROR),
        (socket.gaierror(socket.EAI_NONAME, "unknown"), ErrorKind.DNS_ERROR),
        (UnicodeError("label empty"), ErrorKind.DNS_ERROR),
        (ProtocolViolation("garbage"), ErrorKind.PROTOCOL_ERROR),
        (ClosedEarly("eof"), ErrorKind.CLOSED_EARLY),
        (TimeoutError(), ErrorKind.TIMEOUT),
        (OSError(errno.EHOSTUNREACH, "unreachable"), ErrorKind.OTHER),
    ],
)
def test_classify_exception(exc: BaseException, kind: ErrorKind) -> None:
    """The one mapping from exceptions to error kinds."""
    assert classify_exception(exc) is kind


def test_bad_ca_bundle_is_a_config_error(tmp_path: Path) -> None:
    """A CA bundle that cannot be read is reported as a configuration problem."""
    with pytest.raises(ConfigError, match="cannot load CA bundle"):
        make_ssl_context(True, str(tmp_path / "missing.pem"))


# -- TLS -------------------------------------------------------------------------------


def test_tls_verification_rejects_self_signed(tls_server: HostileServer, engine: str) -> None:
    """Verification is on by default: an unknown CA is TLS_ERROR."""
    got = run_sequence(tls_server.port, [get("/ok")], engine, tls=make_ssl_context())
    assert got == [(ErrorKind.TLS_ERROR, 0, True, 0)]


def test_tls_without_verification(tls_server: HostileServer, engine: str) -> None:
    """verify_cert = false accepts the certificate; keep-alive works over TLS."""
    ctx = make_ssl_context(verify=False)
    got = run_sequence(tls_server.port, [get("/ok"), get("/chunked")], engine, tls=ctx)
    assert got == [(ErrorKind.NONE, 200, True, OK_BYTES), (ErrorKind.NONE, 200, False, got[1][3])]


def test_tls_with_ca_bundle(
    tls_server: HostileServer, self_signed: tuple[str, str], engine: str
) -> None:
    """Trusting the certificate through ca_bundle verifies it, host name included."""
    ctx = make_ssl_context(verify=True, ca_bundle=self_signed[0])
    reqs = [get("/ok"), get("/close-delimited"), get("/ok")]
    got = run_sequence(tls_server.port, reqs, engine, tls=ctx, server_hostname="localhost")
    assert [(e, s, n) for e, s, n, _ in got] == [
        (ErrorKind.NONE, 200, True),
        (ErrorKind.NONE, 200, False),
        (ErrorKind.NONE, 200, True),
    ]


def test_tls_timeout_then_reconnect(tls_server: HostileServer, engine: str) -> None:
    """Over TLS too, a server that never answers is TIMEOUT, and the next request reconnects."""
    ctx = make_ssl_context(verify=False)
    reqs = [get("/silent", timeout_s=0.3), get("/ok")]
    got = run_sequence(tls_server.port, reqs, engine, tls=ctx)
    assert [(e, s, n) for e, s, n, _ in got] == [
        (ErrorKind.TIMEOUT, 0, True),
        (ErrorKind.NONE, 200, True),
    ]


def test_tls_wrong_host_name(tls_server: HostileServer, self_signed: tuple[str, str]) -> None:
    """A trusted certificate for another name still fails verification."""
    ctx = make_ssl_context(verify=True, ca_bundle=self_signed[0])
    got = run_sequence(tls_server.port, [get("/ok")], tls=ctx, server_hostname="example.org")
    assert got == [(ErrorKind.TLS_ERROR, 0, True, 0)]


def test_the_timeout_runs_from_the_send_not_from_the_wait_for_the_round(
    server: HostileServer, engine: str
) -> None:
    """A request leaves at the end of its reactor round, and the round may wait on a full
    ring (``on_full``). Like its latency, its timeout starts when its bytes are sent: a
    100 ms request held back 300 ms still completes."""
    from z6.engine.reactor import checkpoint

    watch: list[int] = []
    ready: list[int] = []
    got: list[tuple[ErrorKind, int]] = []
    held: list[int] = []

    async def vu() -> None:
        conn = plain_connection(server.port, engine)
        out = Outcome()
        await conn.request(get("/ok"), out)  # connect first
        await checkpoint()
        ready.append(1)
        t0 = time.perf_counter_ns()
        await conn.request(get("/ok", timeout_s=0.1), out)
        got.append((out.error, out.status))
        held.append(out.start_ns - t0)
        conn.close()

    async def filler() -> None:
        while not ready:
            await checkpoint()
        watch.append(1)  # in the same round as the request: on_full runs before the flush

    async def main() -> None:
        async def on_full() -> None:
            watch.clear()
            await trio.sleep(0.3)  # the ring is full for 300 ms

        reactor = Reactor(watch=watch, watch_max=1, on_full=on_full)
        reactor.spawn(vu())
        reactor.spawn(filler())
        await reactor.run()

    trio.run(main)
    assert got == [(ErrorKind.NONE, 200)]
    assert held[0] >= 300_000_000  # it did wait for the ring before leaving


def test_the_wait_for_a_connect_slot_is_bounded_by_the_connect_timeout(
    server: HostileServer, engine: str
) -> None:
    """Connects in flight are capped per worker; a VU that cannot get a slot within the
    connect timeout records CONNECT_TIMEOUT (nothing sent) instead of waiting on."""
    from z6.engine.reactor import Semaphore

    got: list[Snapshot] = []
    waited: list[int] = []

    async def main() -> None:
        conn = plain_connection(
            server.port,
            engine,
            connect_timeout_s=0.2,
            connect_limiter=Semaphore(0),  # every slot taken by others
        )
        out = Outcome()
        await conn.request(get("/ok"), out)
        got.append((out.error, out.status, out.new_connection, out.bytes_received))
        waited.append(out.connect_ns)
        assert not conn.is_open

    async def bounded() -> None:
        reactor = Reactor()
        reactor.spawn(main())
        reactor.hard_stop_ns = time.perf_counter_ns() + 5_000_000_000  # ends it if it hangs
        await reactor.run()

    before = server.requests
    trio.run(bounded)
    assert got == [(ErrorKind.CONNECT_TIMEOUT, 0, True, 0)]
    assert waited[0] >= 200_000_000  # measured, not a limit: it did wait the timeout
    assert server.requests == before


def test_nothing_is_sent_after_the_hard_stop(engine: str) -> None:
    """When the hard stop passes during a round, the requests parked in that round are not
    sent: their VUs are interrupted first."""
    from z6.engine.reactor import checkpoint

    ready: list[int] = []
    seen: list[str] = []

    with running_hostile_server() as srv:

        async def vu() -> None:
            conn = plain_connection(srv.port, engine)
            out = Outcome()
            await conn.request(get("/ok"), out)
            await checkpoint()
            ready.append(1)
            try:
                await conn.request(get("/ok"), out)
            except Interrupted:
                seen.append("interrupted")
                assert out.start_ns == 0  # never sent
                raise
            finally:
                conn.close()

        async def busy(reactor: Reactor) -> None:
            while not ready:
                await checkpoint()
            reactor.hard_stop_ns = time.perf_counter_ns() + 5_000_000
            busy_until = time.perf_counter_ns() + 50_000_000
            while time.perf_counter_ns() < busy_until:
                pass  # a long step (parsing, 50 ms): the hard stop passes in this round

        async def main() -> None:
            reactor = Reactor()
            reactor.spawn(vu())
            reactor.spawn(busy(reactor))
            await reactor.run()

        trio.run(main)
        time.sleep(0.2)  # a request sent by mistake would have reached the server by now
        assert seen == ["interrupted"]
        assert srv.requests == 1


def _listener(timeout_s: float | None = None) -> tuple[socket.socket, int]:
    """A listening socket on 127.0.0.1 (any free port) for a hand-written server, its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(timeout_s)
    return listener, listener.getsockname()[1]


def _two_requests_apart(
    port: int,
    engine: str,
    method: str,
    serve: Callable[[], None],
    listener: socket.socket,
    pause_ns: int,
    tls: ssl.SSLContext | None = None,
    ready: threading.Event | None = None,
) -> list[tuple[ErrorKind, int, bool]]:
    """Two requests on one ``Connection`` (over TLS with ``tls``), ``pause_ns`` apart (and,
    with ``ready``, not before the server has set it, or 5 s have passed: on a loaded machine
    the server's thread ran later than the pause), against ``serve`` (run in a thread;
    ``listener`` is closed after); (error, status, new_connection) of each."""
    from z6.engine.reactor import sleep_until

    results: list[tuple[ErrorKind, int, bool]] = []

    async def main() -> None:
        conn = plain_connection(port, engine)
        if tls is not None:
            conn = Connection(
                "127.0.0.1",
                port,
                tls=tls,
                server_hostname=None,
                connect_timeout_s=2.0,
                parser_factory=engine_factory(engine),
            )
        out = Outcome()
        req = get("/a", method=method, body=b"x" if method == "POST" else b"")
        for _ in range(2):
            await conn.request(req, out)
            results.append((out.error, out.status, out.new_connection))
            await sleep_until(time.perf_counter_ns() + pause_ns)
            give_up = time.perf_counter_ns() + 5_000_000_000
            while ready is not None and not ready.is_set() and time.perf_counter_ns() < give_up:
                await sleep_until(time.perf_counter_ns() + 1_000_000)
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        trio.run(run_tasks, main())
    finally:
        listener.close()
        thread.join(timeout=5)
    return results


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_send_that_fails_is_classified_and_retried_like_any_failure(
    engine: str, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reactor sends a request at the end of its round (``flush_send``): when that send
    fails (the server reset the kept-alive connection), the VU still gets the error. A GET
    is retried once on a fresh connection; a POST is recorded as RESET, never sent twice.
    (The idle check before reuse, which would see the reset first, is turned off.)"""
    import struct

    monkeypatch.setattr(client_module, "_IDLE_CHECK_NS", 1 << 62)

    listener, port = _listener(timeout_s=2.0)
    accepted = 0

    def serve() -> None:
        nonlocal accepted
        for _ in range(2 if method == "GET" else 1):  # a POST is not retried
            conn, _addr = listener.accept()
            accepted += 1
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            # Reset (RST) instead of a quiet close: the client's next send fails at once.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    # 200 ms between the two requests: the RST arrives.
    results = _two_requests_apart(port, engine, method, serve, listener, 200_000_000)
    if method == "GET":
        assert results == [(ErrorKind.NONE, 200, True), (ErrorKind.NONE, 200, True)]
        assert accepted == 2
    else:
        assert results == [(ErrorKind.NONE, 200, True), (ErrorKind.RESET, 0, False)]
        assert accepted == 1


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("unasked", [b"", b"HTTP/1.1 408 Request Timeout\r\n\r\n"])
def test_an_idle_connection_the_server_closed_is_reopened_before_reuse(
    engine: str, method: str, unasked: bytes
) -> None:
    """A kept-alive connection idle past ``_IDLE_CHECK_NS`` that the server closed meanwhile
    (its keep-alive timeout; some servers first write an unasked 408) is not reused: the next
    request, a POST too, goes out on a fresh connection and succeeds."""

    listener, port = _listener(timeout_s=5.0)
    accepted = 0

    def serve() -> None:
        nonlocal accepted
        for _ in range(2):
            conn, _addr = listener.accept()
            accepted += 1
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + unasked)

    # 100 ms between the two requests: the server closes.
    results = _two_requests_apart(port, engine, method, serve, listener, 100_000_000)
    assert results == [(ErrorKind.NONE, 200, True), (ErrorKind.NONE, 200, True)]
    assert accepted == 2


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_an_answer_before_the_upload_was_read_is_the_response(
    engine: str, tls: bool, self_signed: tuple[str, str]
) -> None:
    """A server that answers a large upload after its head (413) and closes without reading
    the body: the client's send fails (reset, broken pipe), but the 413 is in the socket. It
    is the response (status 413, its bytes counted, the connection not reused), not a
    ``reset`` with status 0 and 0 bytes."""
    answer = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig"
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*self_signed)
    listener, port = _listener(timeout_s=5.0)

    def serve() -> None:
        for _ in range(2):
            raw, _addr = listener.accept()
            with raw:
                raw.settimeout(2.0)
                if not tls:
                    raw.recv(1024)  # the head (and a little of the body), no more
                    raw.sendall(answer)
                    continue
                incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
                conn = server_ctx.wrap_bio(incoming, outgoing, server_side=True)
                while True:
                    try:
                        conn.do_handshake()
                        break
                    except ssl.SSLWantReadError:
                        raw.sendall(outgoing.read())
                        incoming.write(raw.recv(65536))
                raw.sendall(outgoing.read())
                incoming.write(raw.recv(1024))
                conn.write(answer)
                raw.sendall(outgoing.read())

    body = b"x" * (16 << 20)  # far more than the socket buffers: the send must fail
    req = get("/upload", method="POST", body=body, timeout_s=5.0)
    ctx = make_ssl_context(verify=False) if tls else None
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        got = run_sequence(port, [req, req], engine, tls=ctx)
    finally:
        listener.close()
        thread.join(timeout=5)
    # Both on a new connection: the first one was not reused.
    assert got == [(ErrorKind.STATUS, 413, True, len(answer))] * 2


def _serve_tls_by_hand(
    raw: socket.socket,
    ctx: ssl.SSLContext,
    answers: int,
    closing: str | None,
    closed: threading.Event | None = None,
) -> None:
    """Serve ``answers`` requests over TLS on ``raw`` (memory buffers: what goes on the wire,
    and when, is this code's). ``closing``: after a 30 ms keep-alive timeout (the alert must
    not arrive with the response), close_notify without waiting for the client's, then the
    FIN at once (``"fin"``, as nginx closes an idle connection) or 0.3 s later
    (``"notify"``), and set ``closed`` once the client can see the close; ``None``: just
    return."""
    with raw:
        raw.settimeout(2.0)
        # Each write leaves at once: Nagle held the response back until the alert came.
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_side=True)

        def pump(step: Callable[[], object]) -> None:
            while True:
                try:
                    step()
                except ssl.SSLWantReadError:
                    raw.sendall(outgoing.read())
                    incoming.write(raw.recv(65536))
                    continue
                raw.sendall(outgoing.read())
                return

        pump(tls.do_handshake)
        for _ in range(answers):
            pump(lambda: tls.read(65536))
            pump(lambda: tls.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
        if closing is not None:
            time.sleep(0.03)
            with contextlib.suppress(ssl.SSLWantReadError):
                tls.unwrap()
            raw.sendall(outgoing.read())
            if closing == "notify":
                if closed is not None:
                    closed.set()
                time.sleep(0.3)
    if closing == "fin" and closed is not None:
        closed.set()  # the FIN left as ``raw`` closed


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("closing", ["fin", "notify", None])
@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"]
)
def test_an_idle_tls_connection_is_reopened_only_when_the_server_closed_it(
    engine: str,
    method: str,
    closing: str | None,
    version: ssl.TLSVersion,
    self_signed: tuple[str, str],
) -> None:
    """Over TLS a server that closes an idle connection sends its close_notify alert before
    the FIN (at once, or later), so the socket has bytes to read: the check before reuse
    must still see the close (a POST went out on the dead connection and failed as
    closed_early, unseen by the server). A server that keeps the connection (TLS 1.3 sends
    session tickets unasked) must keep it in use. (The old check failed with TLS 1.2, as
    nginx negotiated in the audit.)"""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*self_signed)
    server_ctx.maximum_version = version
    listener, port = _listener(timeout_s=5.0)
    accepted = 0
    closes = closing is not None
    closed = threading.Event()

    def serve() -> None:
        nonlocal accepted
        for _ in range(2 if closes else 1):
            try:
                raw, _addr = listener.accept()
            except OSError:
                return
            accepted += 1
            _serve_tls_by_hand(raw, server_ctx, 1 if closes else 2, closing, closed)

    # 100 ms between the two requests, and a closing server has closed by then (a loaded
    # machine ran its thread late: the POST went out before the close).
    results = _two_requests_apart(
        port,
        engine,
        method,
        serve,
        listener,
        100_000_000,
        tls=make_ssl_context(verify=False),
        ready=closed if closes else None,
    )
    assert results == [(ErrorKind.NONE, 200, True), (ErrorKind.NONE, 200, closes)]
    assert accepted == (2 if closes else 1)


def test_a_renegotiation_the_server_asks_for_is_done_not_a_tls_error(
    engine: str, self_signed: tuple[str, str]
) -> None:
    """A TLS 1.2 server that asks for a renegotiation (HelloRequest) on an idle kept-alive
    connection: the next request first completes that handshake, then goes out on the same
    connection. The write used to fail with SSLWantReadError, recorded as ``tls_error``.
    (``openssl s_server``: its stdin goes to the client, and a line ``R`` renegotiates.)"""
    import shutil
    import subprocess

    from conftest import free_port

    from z6.engine.reactor import sleep_until

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    port = free_port()
    cert, key = self_signed
    server = subprocess.Popen(
        [openssl, "s_server", "-accept", str(port), "-cert", cert, "-key", key, "-tls1_2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    stdin, stdout = server.stdin, server.stdout
    assert stdin is not None
    assert stdout is not None
    listening = threading.Event()

    def answer() -> None:
        requests = 0
        for line in stdout:  # s_server's own lines, and what the client sent
            if line.startswith(b"ACCEPT"):
                listening.set()
            elif line.startswith(b"GET "):
                requests += 1
                stdin.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                stdin.flush()
                if requests == 1:
                    time.sleep(0.05)  # the connection is idle now: ask for a renegotiation
                    stdin.write(b"R\n")
                    stdin.flush()

    results: list[tuple[ErrorKind, int, bool]] = []

    async def main() -> None:
        conn = Connection(
            "127.0.0.1",
            port,
            tls=make_ssl_context(verify=False),
            server_hostname=None,
            connect_timeout_s=5.0,
            parser_factory=engine_factory(engine),
        )
        out = Outcome()
        for _ in range(2):
            await conn.request(get("/", timeout_s=5.0), out)
            results.append((out.error, out.status, out.new_connection))
            await sleep_until(time.perf_counter_ns() + 200_000_000)  # the HelloRequest comes
        conn.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        assert listening.wait(10), "openssl s_server did not start"
        trio.run(run_tasks, main())
    finally:
        server.kill()
        server.wait()
        thread.join(timeout=5)
        stdin.close()
        stdout.close()
    assert results == [(ErrorKind.NONE, 200, True), (ErrorKind.NONE, 200, False)]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_stale_keep_alive_connection_is_retried_once(
    engine: str, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that closes an idle kept-alive connection (without saying so) must not turn
    the next idempotent request into an error: it is retried once on a fresh connection. A
    POST is not retried (the server may have acted on it): it is recorded as failed. (The
    close races the next request: the idle check before reuse is turned off.)"""
    import threading

    monkeypatch.setattr(client_module, "_IDLE_CHECK_NS", 1 << 62)

    listener, port = _listener()
    accepted = 0

    def serve() -> None:
        nonlocal accepted
        for _ in range(3):
            try:
                conn, _addr = listener.accept()
            except OSError:  # closed by the test: fewer connections than 3 (POST case)
                return
            accepted += 1
            with conn:
                conn.recv(65536)
                # Keep-alive response, then a silent close: the client still thinks the
                # connection is reusable.
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    reqs = [
        get(p, method=method, body=b"x" if method == "POST" else b"") for p in ["/a", "/b", "/c"]
    ]
    # The POST case makes only two connections: the third accept gives up (OSError) quickly.
    listener.settimeout(1.0)
    try:
        got = run_sequence(port, reqs, engine)
    finally:
        listener.close()
        thread.join(timeout=5)
    if method == "GET":
        assert [(e, s, n) for e, s, n, _ in got] == [
            (ErrorKind.NONE, 200, True),
            (ErrorKind.NONE, 200, True),
            (ErrorKind.NONE, 200, True),
        ]
        assert accepted == 3
    else:
        assert [(s, n) for _, s, n, _ in got] == [(200, True), (0, False), (200, True)]
        assert got[1][0] in (ErrorKind.CLOSED_EARLY, ErrorKind.RESET)


@pytest.mark.parametrize(
    ("new_conn_stall_s", "no_slot", "error"),
    [
        (0.0, False, ErrorKind.NONE),
        (0.15, False, ErrorKind.TIMEOUT),
        (0.0, True, ErrorKind.TIMEOUT),
    ],
    ids=["answered", "out-of-time", "no-connect-slot"],
)
def test_a_retried_request_is_timed_and_bounded_from_its_first_attempt(
    engine: str,
    new_conn_stall_s: float,
    no_slot: bool,
    error: ErrorKind,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server that holds a kept-alive request for 80 ms and then drops the connection
    without a byte: the GET is retried on a new connection, and its latency runs from the
    first attempt's send (the stall was real time the request took; timing the retry alone
    made such a server look fast). The retry has what is left of the 200 ms timeout: a new
    connection that then stalls 150 ms more times out at 200 ms, not 80 + 200; so does a
    reconnect that waits for a connect slot (it waited the 2 s connect timeout, then read
    ``connect_timeout``)."""
    monkeypatch.setattr(client_module, "_IDLE_CHECK_NS", 1 << 62)
    listener, port = _listener(timeout_s=2.0)
    stall_s = 0.08

    def serve() -> None:
        for first_conn in (True, False):
            try:
                conn, _addr = listener.accept()
            except OSError:
                return
            with conn:
                if first_conn:  # answer the first request, then hold the second and drop it
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    conn.recv(65536)
                    time.sleep(stall_s)
                    continue
                conn.recv(65536)
                time.sleep(new_conn_stall_s)
                with contextlib.suppress(OSError):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    got: list[tuple[ErrorKind, bool, bool, int]] = []

    async def main() -> None:
        slots = Semaphore(1)
        conn = plain_connection(port, engine, connect_limiter=slots)
        out = Outcome()
        for path in ("/a", "/b"):
            await conn.request(get(path, timeout_s=0.2), out)
            got.append((out.error, out.new_connection, out.retried, out.latency_ns))
            if no_slot and path == "/a":
                assert await slots.acquire(time.perf_counter_ns() + 10**9)  # none left to reconnect
        conn.close()

    try:
        trio.run(run_tasks, main())
    finally:
        listener.close()
        thread.join(timeout=5)
    assert [g[:3] for g in got] == [(ErrorKind.NONE, True, False), (error, not no_slot, True)]
    latency_s = got[1][3] / 1e9
    if error is ErrorKind.NONE:
        assert stall_s <= latency_s < 0.2
    else:
        assert 0.2 <= latency_s < stall_s + 0.2


@pytest.mark.parametrize("listening", [0, 1, None])
def test_a_name_with_several_addresses_takes_the_first_that_accepts(
    monkeypatch: pytest.MonkeyPatch, listening: int | None
) -> None:
    """``localhost`` is ``::1`` and ``127.0.0.1`` on most systems and a server often listens
    on one only: the run's address is the first that accepts a connection (else the first),
    not every request ``connect_refused`` on the other one."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    # 127.0.0.2 is loopback too, with nothing listening on it: refused at once.
    hosts = ["127.0.0.2", "127.0.0.1"] if listening == 1 else ["127.0.0.1", "127.0.0.2"]
    if listening is None:
        hosts = ["127.0.0.2", "127.0.0.3"]
    infos = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (h, port)) for h in hosts]
    monkeypatch.setattr(client_module.socket, "getaddrinfo", lambda *_a, **_k: infos)
    monkeypatch.setattr(client_module, "_ADDR_CACHE", {})
    monkeypatch.setattr(client_module, "_ADDR_FAILED", {})
    try:
        trio.run(client_module.prefetch_address, "multi.test", port, 1.0)
    finally:
        server.close()
    chosen = client_module._ADDR_CACHE[("multi.test", port)][3]
    assert chosen == (("127.0.0.1" if listening is not None else "127.0.0.2"), port)


def test_an_address_that_never_answers_costs_the_probe_timeout_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A first address whose connects hang (a full accept queue here; a firewall that drops
    SYNs in life) does not hold the choice past the deadline: the later address that
    accepted is taken, and every probe went out before the first wait (together, not one
    timeout after another)."""
    hung = socket.socket()
    hung.bind(("127.0.0.4", 0))
    hung.listen(0)
    fillers = []
    for _ in range(8):  # fill the accept queue: later connects wait for a SYN-ACK
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(hung.getsockname())
        fillers.append(f)
    ok = socket.socket()
    ok.bind(("127.0.0.1", 0))
    ok.listen()
    addrs = [
        (int(socket.AF_INET), int(socket.SOCK_STREAM), 6, hung.getsockname()),
        (int(socket.AF_INET), int(socket.SOCK_STREAM), 6, hung.getsockname()),
        (int(socket.AF_INET), int(socket.SOCK_STREAM), 6, ok.getsockname()),
    ]
    steps: list[str] = []
    real_poll = client_module.select.poll

    class _Poll:
        def __init__(self) -> None:
            self._p = real_poll()

        def register(self, fd: int, mask: int) -> None:
            steps.append("connect")
            self._p.register(fd, mask)

        def unregister(self, fd: int) -> None:
            self._p.unregister(fd)

        def poll(self, timeout: float) -> list[tuple[int, int]]:
            steps.append("wait")
            return self._p.poll(timeout)

    monkeypatch.setattr(client_module.select, "poll", _Poll)
    try:
        assert client_module._first_accepting(addrs, 0.3) == addrs[2]
        # The two hung probes (and the third, unless it connected at once) were all pending
        # before the first wait.
        assert steps.index("wait") >= 2
        assert "connect" not in steps[steps.index("wait") :]
        assert client_module._earliest([None, True]) is None
        assert client_module._earliest([False, True]) == 1
        assert client_module._earliest([False, False]) == -1
    finally:
        for s in (hung, ok, *fillers):
            s.close()


def test_z6_run_chooses_the_address_before_it_forks_the_workers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The choice is made once, before the run's clock starts, and inherited: probing in each
    worker spent the run's first second on a black-holed address."""
    from z6.cli import run_cmd

    calls: list[tuple[str, int]] = []

    class _Chosen(Exception):
        pass

    def choose(host: str, port: int, _timeout_s: float) -> None:
        calls.append((host, port))
        raise _Chosen

    def forked(_setup: object) -> None:
        raise AssertionError("the workers were forked before the address was chosen")

    monkeypatch.setattr(run_cmd, "choose_address", choose)
    monkeypatch.setattr(run_cmd, "run_workers", forked)
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        '[runtime]\nduration_seconds = 1\nvus = 1\n[target]\nbase_url = "http://localhost:9"\n'
        '[[requests]]\nname = "a"\nmethod = "GET"\npath = "/"\n'
    )
    with pytest.raises(_Chosen):
        run_cmd.run_scenario(run_cmd.RunOptions(scenario=scenario, procs=1, out=tmp_path / "o"))
    assert calls == [("localhost", 9)]
