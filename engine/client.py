"""The I/O edge: one keep-alive HTTP/1.1 connection over trio sockets.

A ``Connection`` belongs to one VU. ``request()`` sends a ``PreparedRequest``, reads the whole
response through a sans-IO parser from ``z6.engine.protocol`` and fills an ``Outcome``. It
never raises for network or protocol trouble: every failure becomes an ``ErrorKind`` (mapped in
one place, ``classify_exception``) and closes the socket, so the next request reconnects. Only
cancellation (``trio.Cancelled``) and other ``BaseException``s propagate, after the socket is
closed.

Speed: plain HTTP calls the non-blocking stdlib socket directly and only parks in
``trio.lowlevel.wait_readable``/``wait_writable`` when the kernel says it would block (the
``trio.socket`` wrappers cost several microseconds per call); TCP_NODELAY is set. HTTPS goes
through ``trio.SSLStream``. Name resolution happens once per (host, port) per process
(``_ADDR_CACHE``); a load test targets one host whose address is not expected to move.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any

import trio

from z6.engine.error_kinds import ErrorKind
from z6.engine.errors import ConfigError
from z6.engine.protocol import ClosedEarly, ProtocolViolation, ResponseParser
from z6.engine.requests import PreparedRequest
from z6.engine.timeouts import TimeoutGuard

RECV_SIZE = 65536

_NONE = ErrorKind.NONE
_TIMEOUT = ErrorKind.TIMEOUT
_STATUS = ErrorKind.STATUS
# A kept-alive connection the server closed while it sat idle fails the next request with no
# response byte at all; like Go's net/http (k6) we retry such a request once on a new
# connection instead of reporting an error the server never made.
# Only idempotent methods are retried: the request bytes were written, and a POST/PATCH may
# have been acted on before the server closed.
_STALE = (ErrorKind.CLOSED_EARLY, ErrorKind.RESET)
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})

# (host, port) -> (family, type, proto, sockaddr) of the first getaddrinfo answer.
_ADDR_CACHE: dict[tuple[str, int], tuple[int, int, int, Any]] = {}

# What a transfer may raise for reasons outside z6; anything else is a bug and propagates.
_TRANSPORT_ERRORS = (
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    ProtocolViolation,
    ClosedEarly,
)


_wait_readable = trio.lowlevel.wait_readable
_wait_writable = trio.lowlevel.wait_writable


class Outcome:
    """The result of one request, filled by ``Connection.request``.

    One instance is reused by its caller for every request (no allocation per request).
    Times are ``time.perf_counter_ns()`` values: ``start_ns`` just before the first byte is
    written, ``end_ns`` when the last byte was parsed or the failure happened; ``connect_ns``
    is the setup time (DNS, TCP, TLS) when ``new_connection`` is True, else 0. ``status`` is 0
    unless a complete response was read.
    """

    __slots__ = (
        "bytes_received",
        "connect_ns",
        "end_ns",
        "error",
        "new_connection",
        "start_ns",
        "status",
    )

    def __init__(self) -> None:
        self.status = 0
        self.error = ErrorKind.NONE
        self.bytes_received = 0
        self.new_connection = False
        self.connect_ns = 0
        self.start_ns = 0
        self.end_ns = 0

    @property
    def latency_ns(self) -> int:
        """``end_ns - start_ns``."""
        return self.end_ns - self.start_ns

    def __repr__(self) -> str:
        return (
            f"Outcome(status={self.status}, error={self.error.name}, "
            f"bytes={self.bytes_received}, new={self.new_connection})"
        )


def classify_exception(exc: BaseException) -> ErrorKind:
    """Map an exception raised while connecting or transferring to its ``ErrorKind``.

    The one place that knows OS, ssl and trio exception types. Wrapped exceptions (trio's
    ``BrokenResourceError`` carries the OS or TLS error as its cause) are unwrapped first.
    A ``TimeoutError`` from the kernel maps to ``TIMEOUT``; the connect phase turns that into
    ``CONNECT_TIMEOUT``.
    """
    if isinstance(exc, ProtocolViolation):
        return ErrorKind.PROTOCOL_ERROR
    if isinstance(exc, ClosedEarly):
        return ErrorKind.CLOSED_EARLY
    if isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError):
        cause = exc.__cause__ or exc.__context__
        if cause is None or cause is exc:
            return ErrorKind.RESET
        return classify_exception(cause)
    if isinstance(exc, socket.gaierror | UnicodeError):
        return ErrorKind.DNS_ERROR
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return ErrorKind.TLS_ERROR
    if isinstance(exc, ConnectionRefusedError):
        return ErrorKind.CONNECT_REFUSED
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return ErrorKind.RESET
    if isinstance(exc, TimeoutError):
        return ErrorKind.TIMEOUT
    return ErrorKind.OTHER


def make_ssl_context(verify: bool = True, ca_bundle: str | None = None) -> ssl.SSLContext:
    """The client TLS context: certificates and host names verified unless ``verify`` is False.

    ``ca_bundle`` adds a PEM file of trusted CAs (used instead of the system store). Raises
    ``ConfigError`` when the bundle cannot be read.
    """
    try:
        if verify:
            ctx = ssl.create_default_context(cafile=ca_bundle)
        else:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            if ca_bundle:
                ctx.load_verify_locations(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load CA bundle {ca_bundle!r}: {exc}") from exc
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def _resolve(host: str, port: int) -> tuple[int, int, int, Any]:
    """The first stream address of ``host:port``, cached per process."""
    key = (host, port)
    addr = _ADDR_CACHE.get(key)
    if addr is None:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        if not infos:
            raise socket.gaierror(f"no address for {host!r}")
        family, type_, proto, _canon, sockaddr = infos[0]
        addr = (int(family), int(type_), proto, sockaddr)
        _ADDR_CACHE[key] = addr
    return addr


class Connection:
    """One keep-alive connection to ``host:port`` (TLS when ``tls`` is a context).

    Opened lazily by ``request()`` and reopened after any failure or non-reusable response.
    ``server_hostname`` is the name checked against the certificate (defaults to ``host``).
    """

    __slots__ = (
        "_parser",
        "_raw",
        "_sock",
        "_stream",
        "connect_limiter",
        "connect_timeout_s",
        "host",
        "parser_factory",
        "port",
        "server_hostname",
        "tls",
    )

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None,
        server_hostname: str | None,
        connect_timeout_s: float,
        parser_factory: Callable[[], ResponseParser],
        connect_limiter: trio.Semaphore | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.server_hostname = server_hostname or host
        self.connect_timeout_s = connect_timeout_s
        # Caps connects in progress across the VUs sharing it: 10,000 simultaneous SYNs
        # overflow a server's listen backlog (somaxconn) and turn into seconds of SYN retries.
        self.connect_limiter = connect_limiter
        self.parser_factory = parser_factory
        self._sock: trio.socket.SocketType | None = None
        # The same file descriptor as ``_sock``, as a plain non-blocking stdlib socket.
        self._raw: socket.socket | None = None
        self._stream: trio.SSLStream[trio.SocketStream] | None = None
        self._parser: ResponseParser | None = None

    @property
    def is_open(self) -> bool:
        """True while a socket is open (the next request reuses it)."""
        return self._sock is not None

    async def request(
        self, req: PreparedRequest, out: Outcome, guard: TimeoutGuard | None = None
    ) -> None:
        """Send ``req``, read its response and fill ``out`` (see ``Outcome``).

        Bounds: the connect by ``connect_timeout_s`` (``CONNECT_TIMEOUT``), the exchange by
        ``req.timeout_s`` (``TIMEOUT``). A complete response failing ``req.is_success`` is
        ``STATUS``. Never raises for network or protocol problems.

        With ``guard`` (the VU runtime's fast path) the exchange is bounded by arming the guard
        instead of a CancelScope of its own: when the deadline passes, the guard's scope (owned
        by the caller) is cancelled, so ``trio.Cancelled`` propagates out of this call with
        ``guard.fired`` set and ``out`` filled as far as it got; the caller records the
        timeout.
        """
        out.status = 0
        out.error = _NONE
        out.bytes_received = 0
        out.new_connection = False
        out.connect_ns = 0
        out.start_ns = 0
        parser: ResponseParser | None = None
        try:
            reused = self._sock is not None
            while True:
                if self._sock is None:
                    limiter = self.connect_limiter
                    if limiter is not None:
                        await limiter.acquire()
                    try:
                        t0 = perf_counter_ns()  # after the wait for a connect slot
                        error = await self._connect()
                        t1 = perf_counter_ns()
                    finally:
                        if limiter is not None:
                            limiter.release()
                    out.new_connection = True
                    out.connect_ns = t1 - t0
                    if error is not _NONE:
                        out.error = error
                        out.start_ns = out.end_ns = t1
                        return
                parser = self._parser
                assert parser is not None
                out.start_ns = 0
                if guard is None:
                    with trio.CancelScope(deadline=trio.current_time() + req.timeout_s) as scope:
                        error = await self._exchange(req, parser, out)
                    if scope.cancelled_caught:
                        error = _TIMEOUT
                elif self._stream is None:
                    # The VU runtime's plain-HTTP fast path, inlined (one coroutine frame less).
                    guard.arm(perf_counter_ns() + req.timeout_ns)
                    error = _NONE
                    try:
                        data = parser.start(req)
                        out.start_ns = perf_counter_ns()
                        await self._exchange_plain(data, parser)
                    except _TRANSPORT_ERRORS as exc:
                        error = classify_exception(exc)
                    guard.disarm()
                else:
                    guard.arm(perf_counter_ns() + req.timeout_ns)
                    error = await self._exchange(req, parser, out)
                    guard.disarm()
                out.end_ns = perf_counter_ns()
                if out.start_ns == 0:  # the request could not even be started
                    out.start_ns = out.end_ns
                out.bytes_received = parser.bytes_received
                if error is _NONE:
                    break
                self._close()
                if (
                    reused
                    and error in _STALE
                    and parser.bytes_received == 0
                    and req.method in _IDEMPOTENT
                ):
                    reused = False  # retry once, on a fresh connection
                    continue
                out.error = error
                return
            out.status = status = parser.status
            expect = req.expect_status  # inlined req.is_success(): once per request
            if (status not in expect) if expect is not None else status >= 400:
                out.error = _STATUS
            if not parser.keep_alive:
                self._close()
        except BaseException:
            # Cancellation (timeout guard, graceful stop over) or an interrupt: never leak the
            # socket, and leave ``out`` describing how far the request got.
            out.end_ns = perf_counter_ns()
            if out.start_ns == 0:
                out.start_ns = out.end_ns
            if parser is not None:
                out.bytes_received = parser.bytes_received
            if guard is not None:
                guard.disarm()  # never leave this request's deadline armed for the next one
            self._close()
            raise

    async def _exchange(
        self, req: PreparedRequest, parser: ResponseParser, out: Outcome
    ) -> ErrorKind:
        """Write the request and read the whole response; return ``NONE`` or why it failed."""
        try:
            data = parser.start(req)
            out.start_ns = perf_counter_ns()
            if self._stream is None:
                await self._exchange_plain(data, parser)
            else:
                await self._exchange_tls(data, parser)
        except _TRANSPORT_ERRORS as exc:
            return classify_exception(exc)
        return _NONE

    async def _exchange_plain(self, data: bytes, parser: ResponseParser) -> None:
        raw = self._raw
        assert raw is not None
        waited = False
        try:
            sent = raw.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            view = memoryview(data)
            while sent < len(data):
                await _wait_writable(raw)
                waited = True
                with contextlib.suppress(BlockingIOError):
                    sent += raw.send(view[sent:])
        recv = raw.recv
        feed = parser.feed
        # Right after a send the answer is practically never there yet: park first instead of
        # paying for a recv that fails with EAGAIN.
        await _wait_readable(raw)
        waited = True
        while True:
            try:
                chunk = recv(RECV_SIZE)
            except BlockingIOError:
                await _wait_readable(raw)
                continue
            if not chunk:
                parser.feed_eof()  # True for a close-delimited body, else raises ClosedEarly
                break
            if feed(chunk):
                break
        if not waited:
            # Every request must be a checkpoint (cancellation, fairness between VUs) even
            # when the kernel had the whole response ready.
            await trio.lowlevel.checkpoint()

    async def _exchange_tls(self, data: bytes, parser: ResponseParser) -> None:
        stream = self._stream
        assert stream is not None
        await stream.send_all(data)
        receive = stream.receive_some
        feed = parser.feed
        while True:
            chunk = await receive(RECV_SIZE)
            if not chunk:
                parser.feed_eof()
                return
            if feed(bytes(chunk)):
                return

    async def _connect(self) -> ErrorKind:
        """Open the socket (and TLS); return ``NONE`` or why it failed."""
        sock: trio.socket.SocketType | None = None
        try:
            with trio.move_on_after(self.connect_timeout_s):
                family, type_, proto, sockaddr = await _resolve(self.host, self.port)
                raw = socket.socket(family, type_, proto)
                raw.setblocking(False)
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock = trio.socket.from_stdlib_socket(raw)
                await sock.connect(sockaddr)
                stream = None
                if self.tls is not None:
                    stream = trio.SSLStream(
                        trio.SocketStream(sock),
                        self.tls,
                        server_hostname=self.server_hostname,
                        # Servers often close without close_notify; treat that as EOF.
                        https_compatible=True,
                    )
                    await stream.do_handshake()
                self._sock = sock
                self._raw = raw
                self._stream = stream
                self._parser = self.parser_factory()
                return _NONE
            kind = ErrorKind.CONNECT_TIMEOUT
        except (*_TRANSPORT_ERRORS, UnicodeError) as exc:
            kind = classify_exception(exc)
            if kind is _TIMEOUT:
                kind = ErrorKind.CONNECT_TIMEOUT
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        if sock is not None:
            sock.close()
        return kind

    def _close(self) -> None:
        """Drop the connection at once (no TLS close_notify: the peer sees a plain close)."""
        sock = self._sock
        self._sock = None
        self._raw = None
        self._stream = None
        self._parser = None
        if sock is not None:
            sock.close()

    async def aclose(self) -> None:
        """Close the connection; the next ``request`` would open a new one."""
        self._close()
        await trio.lowlevel.checkpoint()
