"""``z6 serve``: the built-in target server (SPEC section 8), HTTP/1.1 over trio + h11.

Endpoints (any method; ``HEAD`` gets the headers only):

- ``/`` -> 200 ``ok\\n``
- ``/status/CODE`` -> status CODE (200-599) with body ``CODE\\n`` (empty for 204/304); other
  codes -> 400
- ``/delay/MS`` -> 200 ``ok\\n`` after MS milliseconds (0 to 600000)
- ``/bytes/N`` -> N bytes of ``x`` (0 to 100 000 000)
- ``/echo`` -> 200 with the request body
- ``/__z6/stats`` -> JSON ``{"pid", "requests", "by_path"}``: requests this process answered
  (the stats requests themselves excluded), by route: ``/``, ``/status``, ``/delay``,
  ``/bytes``, ``/echo``, ``not_found``, ``bad_request``. A test aid.
- anything else -> 404

Connections are kept alive (HTTP/1.1, or closed after the response for HTTP/1.0 clients),
pipelined requests are answered in order, and malformed input gets a 400 and a close. The query
string is ignored. ``serve(procs=N)`` starts N processes on one port with ``SO_REUSEPORT``.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import h11
import trio

from z6.cli.options import check_port, check_procs
from z6.engine.errors import ConfigError, RunError, sole_error

MAX_BYTES = 100_000_000
MAX_DELAY_MS = 600_000
_RECV_SIZE = 65536
_CHUNK = b"x" * 65536
_BACKLOG = 4096
_READY_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 5.0
_LINGER_S = 1.0
_LINGER_BYTES = 1 << 20

_TEXT = (b"content-type", b"text/plain")
_BINARY = (b"content-type", b"application/octet-stream")
_OK_BODY = b"ok\n"


def _reason(code: int) -> bytes:
    try:
        return HTTPStatus(code).phrase.encode()
    except ValueError:
        return b""


def _response(code: int, length: int | None, content_type: tuple[bytes, bytes] = _TEXT) -> Any:
    """An ``h11.Response`` with Content-Length (omitted when ``length`` is None)."""
    headers = [content_type]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return h11.Response(status_code=code, headers=headers, reason=_reason(code))


# Built once: h11 events are immutable, so fixed responses are reused for every request.
_OK = _response(200, len(_OK_BODY))
_NOT_FOUND_BODY = b"not found\n"
_NOT_FOUND = _response(404, len(_NOT_FOUND_BODY))
_EOM = h11.EndOfMessage()
_OK_DATA = h11.Data(data=_OK_BODY)
_NOT_FOUND_DATA = h11.Data(data=_NOT_FOUND_BODY)
_CONTINUE = h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
_STATUS_CACHE: dict[int, tuple[Any, Any]] = {}


def _status_response(code: int) -> tuple[Any, Any]:
    """(Response, Data or None) for ``/status/CODE``, cached per code."""
    cached = _STATUS_CACHE.get(code)
    if cached is None:
        if code in (204, 304):
            cached = (h11.Response(status_code=code, headers=[], reason=_reason(code)), None)
        else:
            body = b"%d\n" % code
            cached = (_response(code, len(body)), h11.Data(data=body))
        _STATUS_CACHE[code] = cached
    return cached


def _bad_request(message: str, code: int = 400) -> tuple[Any, Any]:
    body = (message + "\n").encode()
    return _response(code, len(body)), h11.Data(data=body)


def _parse_int(raw: bytes, limit: int) -> int | None:
    """A decimal integer in [0, limit], or None (no signs, spaces or underscores)."""
    if not raw.isdigit() or len(raw) > 12:
        return None
    value = int(raw)
    return value if value <= limit else None


class _Stats:
    """Per-server request counters, reported by ``/__z6/stats``."""

    __slots__ = ("by_path", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.by_path: dict[str, int] = {}

    def count(self, route: str) -> None:
        self.requests += 1
        self.by_path[route] = self.by_path.get(route, 0) + 1

    def encode(self) -> bytes:
        return json.dumps(
            {"pid": os.getpid(), "requests": self.requests, "by_path": self.by_path}
        ).encode()


class _ConnectionDone(Exception):
    """The peer closed or broke the connection: stop handling it quietly."""


class _Server:
    """Shared state of one ``serve_async`` call: the stats and the connection handler."""

    def __init__(self) -> None:
        self.stats = _Stats()

    async def handle(self, stream: trio.SocketStream) -> None:
        """Serve one connection until it closes; never lets an exception escape."""
        conn = _Connection(stream, self.stats)
        try:
            await conn.run()
        except (_ConnectionDone, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except h11.RemoteProtocolError as exc:
            await conn.reject(exc)
        except Exception as exc:  # a bug here must not take the whole server down
            print(f"z6 serve: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        finally:
            await trio.aclose_forcefully(stream)


class _Connection:
    """One client connection.

    Responses are appended to ``out`` and written when the server would otherwise wait
    (more input needed, a delay, the end), so pipelined requests cost one write per batch.
    """

    __slots__ = ("conn", "out", "stats", "stream")

    def __init__(self, stream: trio.SocketStream, stats: _Stats) -> None:
        self.stream = stream
        self.stats = stats
        self.conn = h11.Connection(h11.SERVER)
        self.out = bytearray()

    async def flush(self) -> None:
        if self.out:
            data = bytes(self.out)
            self.out.clear()
            await self.stream.send_all(data)

    async def next_event(self) -> Any:
        conn = self.conn
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            if conn.they_are_waiting_for_100_continue:
                self.out += conn.send(_CONTINUE) or b""
            await self.flush()
            try:
                data = await self.stream.receive_some(_RECV_SIZE)
            except (trio.BrokenResourceError, OSError) as exc:
                raise _ConnectionDone from exc
            conn.receive_data(data)

    def respond(self, response: Any, data: Any) -> None:
        """Queue a whole response (``data`` None: no body, as for HEAD)."""
        conn = self.conn
        out = self.out
        out += conn.send(response) or b""
        if data is not None:
            out += conn.send(data) or b""
        out += conn.send(_EOM) or b""

    async def run(self) -> None:
        """Answer requests in order until the peer closes or the protocol says close."""
        conn = self.conn
        stats = self.stats
        respond = self.respond
        while True:
            event = await self.next_event()
            if type(event) is h11.ConnectionClosed:
                break
            request: h11.Request = event
            target = request.target
            q = target.find(b"?")
            path = target if q < 0 else target[:q]
            is_echo = path == b"/echo"
            body = bytearray()
            while True:
                event = await self.next_event()
                if type(event) is h11.EndOfMessage:
                    break
                if is_echo and type(event) is h11.Data:
                    body += event.data
            head = request.method == b"HEAD"
            if path == b"/":
                stats.count("/")
                respond(_OK, None if head else _OK_DATA)
            elif path.startswith(b"/status/"):
                code = _parse_int(path[8:], 599)
                if code is None or code < 200:
                    stats.count("bad_request")
                    response, data = _bad_request("status must be an integer in 200-599")
                else:
                    stats.count("/status")
                    response, data = _status_response(code)
                respond(response, None if head else data)
            elif path.startswith(b"/delay/"):
                ms = _parse_int(path[7:], MAX_DELAY_MS)
                if ms is None:
                    stats.count("bad_request")
                    response, data = _bad_request(f"delay must be an integer in 0-{MAX_DELAY_MS}")
                    respond(response, None if head else data)
                else:
                    stats.count("/delay")
                    await self.flush()
                    await trio.sleep(ms / 1000)
                    respond(_OK, None if head else _OK_DATA)
            elif path.startswith(b"/bytes/"):
                n = _parse_int(path[7:], MAX_BYTES)
                if n is None:
                    stats.count("bad_request")
                    response, data = _bad_request(f"size must be an integer in 0-{MAX_BYTES}")
                    respond(response, None if head else data)
                else:
                    stats.count("/bytes")
                    await self.send_bytes(n, head)
            elif is_echo:
                stats.count("/echo")
                data = None if head else h11.Data(data=bytes(body))
                respond(_response(200, len(body), _BINARY), data)
            elif path == b"/__z6/stats":
                payload = stats.encode()
                response = _response(200, len(payload), (b"content-type", b"application/json"))
                respond(response, None if head else h11.Data(data=payload))
            else:
                stats.count("not_found")
                respond(_NOT_FOUND, None if head else _NOT_FOUND_DATA)
            if conn.our_state is h11.MUST_CLOSE:
                break
            conn.start_next_cycle()
        await self.flush()

    async def send_bytes(self, n: int, head: bool) -> None:
        """Queue or stream ``/bytes/N``: large bodies go out chunk by chunk."""
        conn = self.conn
        self.out += conn.send(_response(200, n, _BINARY)) or b""
        if not head:
            if n <= len(_CHUNK):
                self.out += conn.send(h11.Data(data=_CHUNK[:n])) or b""
            else:
                await self.flush()
                left = n
                while left > 0:
                    # Whole chunks reuse the shared buffer; only the tail is a new slice.
                    chunk = _CHUNK if left >= len(_CHUNK) else _CHUNK[:left]
                    await self.stream.send_all(conn.send(h11.Data(data=chunk)) or b"")
                    left -= len(chunk)
        self.out += conn.send(_EOM) or b""

    async def reject(self, exc: h11.RemoteProtocolError) -> None:
        """Answer malformed input with a 4xx (when still possible); the caller closes."""
        self.stats.count("bad_request")
        conn = self.conn
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        code = exc.error_status_hint if 400 <= exc.error_status_hint < 500 else 400
        response, data = _bad_request("bad request", code)
        response = h11.Response(
            status_code=code, headers=[*response.headers, (b"connection", b"close")]
        )
        with contextlib.suppress(
            h11.LocalProtocolError, trio.BrokenResourceError, trio.ClosedResourceError, OSError
        ):
            # Answers already queued for earlier pipelined requests go out first.
            self.respond(response, data)
            await self.flush()
            # Lingering close: closing with unread input would make the kernel send a reset
            # that can destroy the 400 before the client reads it, so drain briefly first.
            await self.stream.send_eof()
            with trio.move_on_after(_LINGER_S):
                drained = 0
                while drained < _LINGER_BYTES:
                    chunk = await self.stream.receive_some(_RECV_SIZE)
                    if not chunk:
                        break
                    drained += len(chunk)


async def _make_listener(host: str, port: int, reuse_port: bool) -> trio.SocketListener:
    """A listening trio socket on (host, port); raises ``ConfigError`` when it cannot bind."""
    try:
        infos = await trio.socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, type_, proto, _, addr = infos[0]
        sock = trio.socket.socket(family, type_, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            await sock.bind(addr)
            sock.listen(_BACKLOG)
        except BaseException:
            sock.close()
            raise
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return trio.SocketListener(sock)


async def serve_async(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    listeners: list[trio.SocketListener] | None = None,
    reuse_port: bool = False,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``task_status.started(port)`` reports the bound port.

    Use ``port = await nursery.start(serve_async, "127.0.0.1", 0)`` for an in-process server.
    ``listeners`` (already listening) replaces host/port; ``reuse_port`` sets SO_REUSEPORT so
    that several processes can share one port.
    """
    if listeners is None:
        listeners = [await _make_listener(host, port, reuse_port)]
    bound = listeners[0].socket.getsockname()[1]
    server = _Server()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, server.handle, listeners)
        task_status.started(int(bound))


async def _serve_until_signal(
    host: str, port: int, reuse_port: bool, on_ready: Callable[[int], None]
) -> None:
    """Serve until SIGINT/SIGTERM (signals only handled from the main thread)."""
    async with trio.open_nursery() as nursery:
        bound: int = await nursery.start(_serve_kw, host, port, reuse_port)
        on_ready(bound)
        if threading.current_thread() is threading.main_thread():
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    break
            nursery.cancel_scope.cancel()


async def _serve_kw(
    host: str, port: int, reuse_port: bool, *, task_status: trio.TaskStatus[int]
) -> None:
    await serve_async(host, port, reuse_port=reuse_port, task_status=task_status)


def _announce(host: str, port: int, ready: Callable[[int], None] | None) -> None:
    shown = f"[{host}]" if ":" in host else host
    print(f"z6 serve: listening on http://{shown}:{port}", file=sys.stderr, flush=True)
    if ready is not None:
        ready(port)


def _run_server(host: str, port: int, reuse_port: bool, on_ready: Callable[[int], None]) -> None:
    """``trio.run`` the server; a ``ConfigError`` (cannot bind) comes out bare.

    Trio wraps errors raised inside a nursery in an ``ExceptionGroup``; the one real error
    ("cannot listen on ...") is unwrapped so that the user gets its message and exit 2.
    """
    try:
        trio.run(_serve_until_signal, host, port, reuse_port, on_ready)
    except BaseExceptionGroup as group:
        error = sole_error(group)
        if isinstance(error, ConfigError):
            raise error from None
        raise


def _child_main(host: str, port: int, conn: Any) -> None:
    """Entry of one server process of ``serve(procs=N)``: reports readiness over ``conn``."""

    def ready(_: int) -> None:
        conn.send("ready")

    try:
        _run_server(host, port, True, ready)
    except KeyboardInterrupt:
        pass
    except ConfigError as exc:
        conn.send(str(exc))


def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    procs: int = 1,
    *,
    ready: Callable[[int], None] | None = None,
) -> None:
    """Run the server until SIGINT/SIGTERM, then return (no traceback).

    ``port=0`` picks a free port; ``port`` must be in 0..65535 and ``procs`` in 1..1024
    (``MAX_PROCS``). Once every process listens, prints
    ``z6 serve: listening on http://HOST:PORT`` on stderr and calls ``ready(port)``.
    Raises ``ConfigError`` when the address cannot be bound, ``RunError`` when a server
    process dies.
    """
    check_port(port)
    check_procs(procs)
    if procs == 1:
        # Ctrl-C normally arrives through the signal receiver; this covers the instants before.
        with contextlib.suppress(KeyboardInterrupt):
            _run_server(host, port, False, lambda p: _announce(host, p, ready))
        return
    _serve_multi(host, port, procs, ready)


def _reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """Bind (without listening) a SO_REUSEPORT socket to fix the port the children share."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, type_, proto, _, addr = infos[0]
        sock = socket.socket(family, type_, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock, int(sock.getsockname()[1])


def _serve_multi(host: str, port: int, procs: int, ready: Callable[[int], None] | None) -> None:
    ctx = multiprocessing.get_context("spawn")
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    reserved, port = _reserve_port(host, port)
    children: list[Any] = []
    try:
        pipes = []
        for _ in range(procs):
            parent_end, child_end = ctx.Pipe(duplex=False)
            child = ctx.Process(target=_child_main, args=(host, port, child_end), daemon=True)
            child.start()
            child_end.close()
            children.append(child)
            pipes.append(parent_end)
        for k, pipe in enumerate(pipes):
            message = _wait_ready(pipe, children[k], stop)
            if message is None:
                return  # stopped by a signal while starting
            if message != "ready":
                raise ConfigError(message.removeprefix("z6: "))
        reserved.close()
        _announce(host, port, ready)
        while not stop.wait(0.2):
            for k, child in enumerate(children):
                if not child.is_alive():
                    if child.exitcode == 0:
                        return  # it got the same Ctrl-C as we did: a clean stop
                    raise RunError(f"z6 serve: process {k} exited with code {child.exitcode}")
    finally:
        reserved.close()
        _stop_children(children)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _wait_ready(pipe: Any, child: Any, stop: threading.Event) -> str | None:
    """The child's first message, or None when a stop signal came first."""
    waited = 0.0
    while not stop.is_set():
        if pipe.poll(0.1):
            try:
                return str(pipe.recv())
            except EOFError:
                break
        if not child.is_alive():
            break
        waited += 0.1
        if waited > _READY_TIMEOUT_S:
            raise RunError("z6 serve: a server process did not start in time")
    if stop.is_set():
        return None
    raise RunError(f"z6 serve: a server process exited with code {child.exitcode} while starting")


def _stop_children(children: list[Any]) -> None:
    """SIGTERM every child, then SIGKILL whatever is still running after a grace period."""
    for child in children:
        if child.is_alive():
            child.terminate()
    for child in children:
        child.join(_STOP_TIMEOUT_S)
        if child.is_alive():
            child.kill()
            child.join(_STOP_TIMEOUT_S)
