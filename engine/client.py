"""The I/O edge: one keep-alive HTTP/1.1 (or HTTPS) connection of one VU.

A ``Connection`` belongs to one VU. ``request()`` sends a ``PreparedRequest``, reads the whole
response through a sans-IO parser from ``z6.engine.protocol`` and fills an ``Outcome``. It
never raises for network or protocol trouble: every failure, the request timeout included,
becomes an ``ErrorKind`` (mapped in one place, ``classify_exception``) and closes the socket,
so the next request reconnects. Only ``Interrupted`` (the hard stop) and other
``BaseException``s propagate, after the socket is closed.

It runs as a task of a ``z6.engine.reactor.Reactor`` (never directly under trio): it calls
the non-blocking stdlib socket directly and parks in the reactor's ``wait_readable`` /
``wait_writable`` only when the kernel says it would block; TCP_NODELAY is set. TLS runs over
``ssl.SSLObject`` and memory BIOs on the same socket. Name resolution happens once per
(host, port) per process (``_ADDR_CACHE``, filled by ``prefetch_address`` before the VUs
start); a load test targets one host whose address is not expected to move.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import ssl
from collections.abc import Callable, Sequence
from time import perf_counter_ns
from typing import Any, Protocol

import trio

from z6.engine.error_kinds import ErrorKind
from z6.engine.errors import ConfigError
from z6.engine.protocol import ClosedEarly, ProtocolViolation, ResponseParser
from z6.engine.reactor import (
    DeadlineExceeded,
    Semaphore,
    TimeoutGuard,
    checkpoint,
    current_reactor,
    send_then_wait_readable,
    wait_readable,
    wait_writable,
)
from z6.engine.requests import PreparedRequest

RECV_SIZE = 65536

_NONE = ErrorKind.NONE
_TIMEOUT = ErrorKind.TIMEOUT
_STATUS = ErrorKind.STATUS
_BODY_CHECK = ErrorKind.BODY_CHECK
# A kept-alive connection the server closed while it sat idle fails the next request with no
# response byte at all; like Go's net/http (k6) we retry such a request once on a new
# connection instead of reporting an error the server never made.
# Only idempotent methods are retried: the request bytes were written, and a POST/PATCH may
# have been acted on before the server closed.
_STALE = (ErrorKind.CLOSED_EARLY, ErrorKind.RESET)
# A kept-alive connection idle longer than this is checked before reuse (one MSG_PEEK recv):
# a server that closed it meanwhile (its keep-alive timeout) would fail the next request, and
# a POST is not retried. Back-to-back requests skip the check.
_IDLE_CHECK_NS = 1_000_000
_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})

# (host, port) -> (family, type, proto, sockaddr): the first getaddrinfo answer, or with
# several the first that accepted a connection (prefetch_address).
_ADDR_CACHE: dict[tuple[str, int], tuple[int, int, int, Any]] = {}
# (host, port) -> why prefetch_address could not resolve it.
_ADDR_FAILED: dict[tuple[str, int], BaseException] = {}

# What a transfer may raise for reasons outside z6; anything else is a bug and propagates.
_TRANSPORT_ERRORS = (OSError, ProtocolViolation, ClosedEarly)
_CONNECTING = (errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY)


class _ConnectTimedOut(Exception):
    """The connect deadline passed while connecting or in the TLS handshake."""


class _Feed(Protocol):
    """What ``_read_what_came`` feeds: a response parser, or TLS in front of one."""

    def feed(self, data: bytes) -> bool: ...

    def feed_eof(self) -> bool: ...


def _read_what_came(raw: socket.socket, sink: _Feed) -> bool:
    """After a failed send: feed what the server sent before it closed (read without
    waiting); True when that holds a whole response. Anything else (nothing there, a
    partial or malformed answer) leaves the send's own error to be reported."""
    try:
        while True:
            try:
                chunk = raw.recv(RECV_SIZE)
            except BlockingIOError:
                return False
            except OSError:
                # A reset is no EOF: a close-delimited body it cuts is not whole (the
                # read loop of a normal exchange says ``reset`` there too).
                return False
            if not chunk:
                return sink.feed_eof()
            if sink.feed(chunk):
                return True
    except (ProtocolViolation, ClosedEarly, ssl.SSLError):
        return False


class _TlsFeed:
    """Received TLS bytes in, decrypted bytes on to the parser (see ``_read_what_came``)."""

    def __init__(self, obj: ssl.SSLObject, incoming: ssl.MemoryBIO, parser: ResponseParser):
        self._obj = obj
        self._incoming = incoming
        self._parser = parser

    def feed(self, data: bytes) -> bool:
        self._incoming.write(data)
        return self._drain()

    def feed_eof(self) -> bool:
        self._incoming.write_eof()
        return self._drain() or self._parser.feed_eof()

    def _drain(self) -> bool:
        while True:
            try:
                chunk = self._obj.read(RECV_SIZE)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return False
            if not chunk:
                return False
            if self._parser.feed(chunk):
                return True


_NEVER_NS = 1 << 62


def _retry_out_of_time(out: Outcome, first_start_ns: int) -> None:
    """A retry whose request timeout ran out while it reconnected: ``TIMEOUT``, timed from the
    first attempt's send to ``out.end_ns``; nothing was sent again, and no new connection
    counts (its connect did not finish in time, or finished too late to be used)."""
    out.error = _TIMEOUT
    out.new_connection = False
    out.connect_ns = 0
    out.start_ns = first_start_ns


class Outcome:
    """The result of one request, filled by ``Connection.request``.

    One instance is reused by its caller for every request (no allocation per request).
    Times are ``time.perf_counter_ns()`` values: ``start_ns`` just before the first byte is
    written, ``end_ns`` when the last byte was parsed or the failure happened; ``connect_ns``
    is the setup time (DNS, TCP, TLS) when ``new_connection`` is True, else 0. ``status`` is 0
    unless a complete response was read. ``retried``: the first attempt failed on a stale
    kept-alive connection and the request went again on a new one; ``start_ns`` is then the
    first attempt's, so the latency holds both attempts and the reconnect (except when the
    reconnect itself failed: a failed connect has ``start_ns == end_ns``, no latency).
    ``set_cookies``: the ``Set-Cookie`` values of the complete response (only collected by
    a parser made with ``cookies=True``; read it only when ``status`` is not 0).
    """

    __slots__ = (
        "bytes_received",
        "connect_ns",
        "end_ns",
        "error",
        "new_connection",
        "retried",
        "set_cookies",
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
        self.retried = False
        self.set_cookies: Sequence[bytes] = ()

    @property
    def latency_ns(self) -> int:
        """``end_ns - start_ns``."""
        return self.end_ns - self.start_ns

    def __repr__(self) -> str:
        return (
            f"Outcome(status={self.status}, error={self.error.name}, "
            f"bytes={self.bytes_received}, new={self.new_connection}, retried={self.retried})"
        )


def classify_exception(exc: BaseException) -> ErrorKind:
    """Map an exception raised while connecting or transferring to its ``ErrorKind``.

    The one place that knows OS and ssl exception types. A ``TimeoutError`` from the kernel
    maps to ``TIMEOUT``; the connect phase turns that into ``CONNECT_TIMEOUT``.
    """
    if isinstance(exc, ProtocolViolation):
        return ErrorKind.PROTOCOL_ERROR
    if isinstance(exc, ClosedEarly):
        return ErrorKind.CLOSED_EARLY
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


_Address = tuple[int, int, int, Any]  # family, type, proto, sockaddr


def _addresses(host: str, port: int) -> list[_Address]:
    """The distinct stream addresses of ``host:port``, in getaddrinfo's order (blocking)."""
    out: list[_Address] = []
    for family, type_, proto, _canon, sockaddr in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    ):
        addr = (int(family), int(type_), proto, sockaddr)
        if addr not in out:
            out.append(addr)
    if not out:
        raise socket.gaierror(f"no address for {host!r}")
    return out


def _resolve(host: str, port: int) -> _Address:
    """The stream address of ``host:port`` to connect to, cached per process.

    Blocking on a cache miss: the VU runtime resolves its target with ``prefetch_address``
    (in a trio thread) before any VU starts, so a miss only happens in tools and tests.
    """
    key = (host, port)
    addr = _ADDR_CACHE.get(key)
    if addr is None:
        failed = _ADDR_FAILED.get(key)
        if failed is not None:
            raise failed.with_traceback(None)  # no frames piling up on the shared object
        addr = _ADDR_CACHE[key] = _addresses(host, port)[0]
    return addr


def choose_address(host: str, port: int, probe_timeout_s: float = 1.0) -> None:
    """Resolve ``host:port`` into the process's cache (blocking): ``z6 run`` calls it before
    it starts the run's clock and forks the workers, which inherit the cache.

    With several addresses the run takes the first, in getaddrinfo's order, that accepts a
    TCP connection: ``localhost`` is ``::1`` and ``127.0.0.1`` on most systems, and a server
    often listens on only one of them (``z6 serve`` on 127.0.0.1, many dev servers on
    ``::1``); every request failed ``connect_refused`` when the other came first. Browsers
    and Go's dialer (k6) fall back the same way. The probes go out together and take at
    most ``probe_timeout_s`` in all (an address that drops connections costs that once);
    when none accepts in time, the first address is the run's. Each probe connection is
    closed at once, before any request.

    A failure is remembered for the process (``_ADDR_FAILED``): every connect then reports
    ``DNS_ERROR`` at once instead of blocking the VUs' loop on a resolver timeout each time.
    """
    key = (host, port)
    if key in _ADDR_CACHE or key in _ADDR_FAILED:
        return
    try:
        addrs = _addresses(host, port)
    except (OSError, UnicodeError) as exc:
        _ADDR_FAILED[key] = exc
        return
    _ADDR_CACHE[key] = addrs[0] if len(addrs) == 1 else _first_accepting(addrs, probe_timeout_s)


async def prefetch_address(host: str, port: int, probe_timeout_s: float = 1.0) -> None:
    """:func:`choose_address` in a trio thread: a no-op in a worker of ``z6 run`` (its parent
    chose before forking it); for a ``VuRuntime`` started otherwise (tests, tools)."""
    key = (host, port)
    if key not in _ADDR_CACHE and key not in _ADDR_FAILED:
        await trio.to_thread.run_sync(choose_address, host, port, probe_timeout_s)


def _first_accepting(addrs: list[_Address], timeout_s: float) -> _Address:
    """The earliest of ``addrs`` that accepts a connection within ``timeout_s``, else the
    first; all are tried at once."""
    accepted: list[bool | None] = [None] * len(addrs)  # None: no answer yet
    pending: dict[int, tuple[int, socket.socket]] = {}  # fd -> (index, socket)
    poller = select.poll()
    try:
        for i, (family, type_, proto, sockaddr) in enumerate(addrs):
            try:
                sock = socket.socket(family, type_, proto)
            except OSError:
                accepted[i] = False  # a family this machine lacks (IPv6 off)
                continue
            try:
                sock.setblocking(False)
                err = sock.connect_ex(sockaddr)
            except (OSError, TypeError, ValueError):
                err = -1  # an address this socket cannot take: not an answer to wait for
            if err in _CONNECTING:
                pending[sock.fileno()] = (i, sock)
                poller.register(sock.fileno(), select.POLLOUT)
            else:
                accepted[i] = err == 0
                sock.close()
        deadline = perf_counter_ns() + int(timeout_s * 1e9)
        while pending:
            decided = _earliest(accepted)
            if decided is not None:
                return addrs[decided] if decided >= 0 else addrs[0]
            left_ms = (deadline - perf_counter_ns()) / 1e6
            if left_ms <= 0:
                break
            for fd, _mask in poller.poll(max(left_ms, 1)):
                i, sock = pending.pop(fd)
                poller.unregister(fd)
                accepted[i] = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                sock.close()
    finally:
        for _i, sock in pending.values():
            sock.close()
    # The deadline passed (or all answered): the earliest that accepted, else the first.
    return next((a for a, ok in zip(addrs, accepted, strict=True) if ok), addrs[0])


def _earliest(accepted: list[bool | None]) -> int | None:
    """Index of the earliest address that accepted once every earlier one refused; -1 when
    all refused; ``None`` while an earlier one has not answered."""
    for i, ok in enumerate(accepted):
        if ok is None:
            return None
        if ok:
            return i
    return -1


class Connection:
    """One keep-alive connection to ``host:port`` (TLS when ``tls`` is a context).

    Opened lazily by ``request()`` and reopened after any failure or non-reusable response.
    ``server_hostname`` is the name checked against the certificate (defaults to ``host``).
    """

    __slots__ = (
        "_fd",
        "_flush_guard",
        "_flush_timeout_ns",
        "_guard",
        "_idle_since_ns",
        "_out",
        "_parser",
        "_raw",
        "_send_error",
        "_sent",
        "_sent_ns",
        "_tls_in",
        "_tls_obj",
        "_tls_out",
        "connect_limiter",
        "connect_timeout_ns",
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
        connect_limiter: Semaphore | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.server_hostname = server_hostname or host
        self.connect_timeout_ns = round(connect_timeout_s * 1e9)
        # Caps connects in progress across the VUs sharing it: 10,000 simultaneous SYNs
        # overflow a server's listen backlog (somaxconn) and turn into seconds of SYN retries.
        self.connect_limiter = connect_limiter
        self.parser_factory = parser_factory
        self._raw: socket.socket | None = None
        self._fd = -1
        self._tls_obj: ssl.SSLObject | None = None
        self._tls_in: ssl.MemoryBIO | None = None
        self._tls_out: ssl.MemoryBIO | None = None
        self._parser: ResponseParser | None = None
        self._guard: TimeoutGuard | None = None
        # The request handed to the reactor by ``send_then_wait_readable``, and what
        # ``flush_send`` made of it.
        self._out = b""
        self._sent = 0
        self._sent_ns = 0
        self._send_error: OSError | None = None
        self._flush_guard: TimeoutGuard | None = None
        self._flush_timeout_ns = 0
        self._idle_since_ns = 0  # when the last response on this connection was complete

    @property
    def is_open(self) -> bool:
        """True while a socket is open (the next request reuses it)."""
        return self._raw is not None

    async def request(
        self, req: PreparedRequest, out: Outcome, guard: TimeoutGuard | None = None
    ) -> None:
        """Send ``req``, read its response and fill ``out`` (see ``Outcome``).

        Bounds: the connect by ``connect_timeout_s`` (``CONNECT_TIMEOUT``), the exchange by
        ``req.timeout_s`` (``TIMEOUT``), through ``guard`` (the VU's; a private one when
        None); a retry (see ``_STALE``) has what is left of the first attempt's timeout. A
        complete response failing ``req.is_success`` is ``STATUS``; one passing it whose body
        fails ``req.body_check`` is ``BODY_CHECK``. Never raises for network
        or protocol problems.
        """
        out.status = 0
        out.error = _NONE
        out.bytes_received = 0
        out.new_connection = False
        out.connect_ns = 0
        out.start_ns = 0
        out.retried = False
        first_start_ns = 0  # of the failed first attempt, when the request is retried
        deadline_ns = 0
        if guard is None:
            guard = self._guard
            if guard is None:
                guard = self._guard = TimeoutGuard()
        parser: ResponseParser | None = None
        try:
            reused = self._raw is not None
            if (
                reused
                and perf_counter_ns() - self._idle_since_ns > _IDLE_CHECK_NS
                and self._peer_gone()
            ):
                self.close()  # reopened below, like a first request
                reused = False
            while True:
                if self._raw is None:
                    # A retry's reconnect is bounded by what is left of the request's
                    # timeout too: past it, the request timed out.
                    limit_ns = deadline_ns if first_start_ns else _NEVER_NS
                    limiter = self.connect_limiter
                    if limiter is not None:
                        # Waiting for a connect slot counts as connecting: it is bounded by
                        # the connect timeout too (then CONNECT_TIMEOUT, nothing was sent).
                        w0 = perf_counter_ns()
                        if not await limiter.acquire(min(w0 + self.connect_timeout_ns, limit_ns)):
                            out.end_ns = perf_counter_ns()
                            if out.end_ns >= limit_ns:
                                _retry_out_of_time(out, first_start_ns)
                                return
                            out.new_connection = True
                            out.error = ErrorKind.CONNECT_TIMEOUT
                            out.connect_ns = out.end_ns - w0
                            out.start_ns = out.end_ns
                            return
                    try:
                        t0 = perf_counter_ns()  # after the wait for a connect slot
                        error = await self._connect(min(t0 + self.connect_timeout_ns, limit_ns))
                        t1 = perf_counter_ns()
                    finally:
                        if limiter is not None:
                            limiter.release()
                    if t1 >= limit_ns and error in (_NONE, ErrorKind.CONNECT_TIMEOUT):
                        # A connection that came up too late is closed: counted nowhere, it
                        # must not carry the next request either (connections.new = the
                        # server's count of connections).
                        self.close()
                        out.end_ns = t1
                        _retry_out_of_time(out, first_start_ns)
                        await checkpoint()
                        return
                    out.new_connection = True
                    out.connect_ns = t1 - t0
                    if error is not _NONE:
                        out.error = error
                        # No request time, a retry's reconnect included (``retried`` still
                        # tells of the first attempt): the reducer knows a failed connect by
                        # start == end.
                        out.start_ns = out.end_ns = t1
                        # A connect can fail without ever parking (cached DNS failure,
                        # EMFILE...): every request must still let the other VUs, timers
                        # and the flusher run.
                        await checkpoint()
                        return
                parser = self._parser
                assert parser is not None
                out.start_ns = 0
                if not deadline_ns:
                    deadline_ns = perf_counter_ns() + req.timeout_ns
                guard.arm(deadline_ns)
                error = _NONE
                early = False  # answered before the request was all sent: never reused
                try:
                    data = parser.start(req)
                    raw = self._raw
                    if self._tls_obj is None and raw is not None:
                        # The plain exchange, inlined: one coroutine frame less to resume on
                        # every wake-up of the hot path.
                        fd = self._fd
                        self._out = data
                        self._sent_ns = 0
                        # The send starts the timeout, except a retry's (see below).
                        self._flush_guard = None if first_start_ns else guard
                        self._flush_timeout_ns = req.timeout_ns
                        # The reactor sends it at the end of its round (``flush_send``).
                        try:
                            readable = await send_then_wait_readable(fd, self)
                        finally:  # a timeout or the hard stop may end the wait
                            out.start_ns = self._sent_ns
                        if not readable:
                            try:
                                exc = self._send_error
                                if exc is not None:
                                    self._send_error = None
                                    raise exc
                                await self._send_rest(raw, fd, memoryview(data), self._sent)
                            except OSError:
                                # The server may answer before it read the whole request (a
                                # 413 to an upload) and close: its answer is in the socket.
                                if not _read_what_came(raw, parser):
                                    raise
                                early = True
                        while not early:
                            # Park before every read: right after a send the answer is
                            # practically never there yet (a recv would fail with EAGAIN), and
                            # a long body read chunk after chunk must not keep the other VUs,
                            # the timers and the flusher waiting.
                            if not readable:
                                await wait_readable(fd)
                            readable = False
                            try:
                                chunk = raw.recv(RECV_SIZE)
                            except BlockingIOError:
                                continue
                            if not chunk:
                                parser.feed_eof()  # True for a close-delimited body, else
                                break  # raises ClosedEarly
                            if parser.feed(chunk):
                                break
                    else:
                        out.start_ns = perf_counter_ns()
                        early = await self._exchange_tls(data, parser)
                except _TRANSPORT_ERRORS as exc:
                    error = classify_exception(exc)
                except DeadlineExceeded:
                    error = _TIMEOUT
                guard.disarm()
                out.end_ns = perf_counter_ns()
                if first_start_ns:
                    out.start_ns = first_start_ns
                elif out.start_ns == 0:  # the request could not even be started
                    out.start_ns = out.end_ns
                out.bytes_received = parser.bytes_received
                if error is _NONE:
                    break
                self.close()
                if (
                    reused
                    and error in _STALE
                    and parser.bytes_received == 0
                    and req.method in _IDEMPOTENT
                ):
                    reused = False  # retry once, on a fresh connection
                    out.retried = True
                    first_start_ns = out.start_ns
                    # What is left of the timeout, which ran from the first send.
                    deadline_ns = first_start_ns + req.timeout_ns
                    continue
                out.error = error
                await checkpoint()  # the failure may have come before any park (see above)
                return
            out.status = status = parser.status
            out.set_cookies = parser.set_cookies
            self._idle_since_ns = out.end_ns
            expect = req.expect_status  # inlined req.is_success(): once per request
            if (status not in expect) if expect is not None else status >= 400:
                out.error = _STATUS
            elif parser.matcher is not None and not parser.matcher.ok:
                out.error = _BODY_CHECK
            if early or not parser.keep_alive:
                self.close()
        except BaseException:
            # The hard stop (Interrupted) or an interrupt: never leak the socket, and leave
            # ``out`` describing how far the request got: ``start_ns`` stays 0 when nothing
            # was sent (cut while connecting, or parked for the send at the end of a round).
            out.end_ns = perf_counter_ns()
            if first_start_ns:
                out.start_ns = first_start_ns
            if parser is not None:
                out.bytes_received = parser.bytes_received
            guard.disarm()  # never leave this request's deadline armed for the next one
            self.close()
            raise

    def _peer_gone(self) -> bool:
        """True when the idle kept-alive socket can no longer carry a request: the server
        closed or reset it, or wrote something nobody asked for, which would be taken as the
        next response. Over TLS, records arriving unasked are normal (session tickets), and
        a closing server sends its close_notify alert before (or long before) the FIN: what
        waits is handed to the TLS object, which tells tickets from a close."""
        raw = self._raw
        assert raw is not None
        try:
            data = raw.recv(1, _PEEK)
        except BlockingIOError:
            return False
        except OSError:
            return True
        obj = self._tls_obj
        if not data or obj is None:
            return True
        incoming = self._tls_in
        assert incoming is not None
        while True:
            try:
                chunk = raw.recv(RECV_SIZE)
            except BlockingIOError:
                break
            except OSError:
                return True
            if not chunk:
                return True  # the FIN
            incoming.write(chunk)
        try:
            obj.read(RECV_SIZE)
        except ssl.SSLWantReadError:
            return False  # only TLS housekeeping (tickets): the connection is still good
        except ssl.SSLError:
            return True  # close_notify (SSLZeroReturnError), or anything else gone wrong
        return True  # response bytes nobody asked for

    def flush_send(self) -> bool:
        """Send the request handed over by ``send_then_wait_readable`` (the reactor calls it
        at the end of the round); True when the sending VU must wake: short send or error.

        The send time is taken here, so a request's latency starts when its bytes leave.
        """
        self._sent_ns = now = perf_counter_ns()
        guard = self._flush_guard
        if guard is not None and guard.deadline_ns:
            # The timeout runs from the send, like the latency (a later deadline is re-queued
            # lazily by the reactor's guard heap).
            guard.deadline_ns = now + self._flush_timeout_ns
        raw = self._raw
        assert raw is not None
        data = self._out
        self._out = b""
        try:
            sent = raw.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._send_error = exc
            return True
        self._sent = sent
        return sent < len(data)

    @staticmethod
    async def _send_rest(raw: socket.socket, fd: int, view: memoryview, sent: int) -> None:
        while sent < len(view):
            await wait_writable(fd)
            with contextlib.suppress(BlockingIOError):
                sent += raw.send(view[sent:])

    # -- TLS over memory BIOs ------------------------------------------------------------

    async def _tls_flush(self, deadline_ns: int = 0) -> None:
        """Send whatever the TLS object has written to its outgoing BIO."""
        out = self._tls_out
        raw = self._raw
        assert out is not None
        assert raw is not None
        data = out.read()
        if not data:
            return
        view = memoryview(data)
        sent = 0
        while sent < len(view):
            try:
                sent += raw.send(view[sent:])
            except BlockingIOError:
                if not await wait_writable(self._fd, deadline_ns):
                    raise _ConnectTimedOut from None

    async def _tls_fill(self, deadline_ns: int = 0) -> None:
        """Move received bytes (or the EOF) into the TLS object's incoming BIO.

        Parks before every read, like the plain exchange (fairness, timeouts).
        """
        incoming = self._tls_in
        raw = self._raw
        assert incoming is not None
        assert raw is not None
        while True:
            if not await wait_readable(self._fd, deadline_ns):
                raise _ConnectTimedOut
            try:
                chunk = raw.recv(RECV_SIZE)
            except BlockingIOError:
                continue
            if chunk:
                incoming.write(chunk)
            else:
                incoming.write_eof()
            return

    async def _tls_handshake(self, deadline_ns: int) -> None:
        obj = self._tls_obj
        assert obj is not None
        while True:
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                await self._tls_flush(deadline_ns)
                await self._tls_fill(deadline_ns)
                continue
            await self._tls_flush(deadline_ns)
            return

    async def _exchange_tls(self, data: bytes, parser: ResponseParser) -> bool:
        """One request and its response over TLS; True when the server answered before the
        request was all sent (then the connection must not be reused)."""
        obj = self._tls_obj
        assert obj is not None
        while True:
            try:
                obj.write(data)
                break
            except ssl.SSLWantReadError:
                # A renegotiation the server asked for (TLS 1.2 HelloRequest, seen by the idle
                # check or the last read): finish that handshake, then write.
                await self._tls_flush()
                await self._tls_fill()
        try:
            await self._tls_flush()
        except OSError:
            # As in the plain exchange: an answer sent before the request was read (a 413),
            # then a close, is the response.
            raw = self._raw
            incoming = self._tls_in
            assert raw is not None
            assert incoming is not None
            if not _read_what_came(raw, _TlsFeed(obj, incoming, parser)):
                raise
            return True
        feed = parser.feed
        while True:
            try:
                chunk = obj.read(RECV_SIZE)
            except ssl.SSLWantReadError:
                await self._tls_flush()  # renegotiation or session tickets may need to go out
                await self._tls_fill()
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                # Servers often close without close_notify (like trio's https_compatible):
                # treat that as EOF.
                chunk = b""
            if not chunk:
                parser.feed_eof()
                return False
            if feed(chunk):
                return False

    # -- opening and closing -------------------------------------------------------------

    async def _connect(self, deadline_ns: int) -> ErrorKind:
        """Open the socket (and TLS) before ``deadline_ns``; return ``NONE`` or why not."""
        raw: socket.socket | None = None
        handshaking = False
        try:
            family, type_, proto, sockaddr = _resolve(self.host, self.port)
            raw = socket.socket(family, type_, proto)
            raw.setblocking(False)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            fd = raw.fileno()
            err = raw.connect_ex(sockaddr)
            if err in _CONNECTING:
                if not await wait_writable(fd, deadline_ns):
                    raise _ConnectTimedOut
                err = raw.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
            self._raw = raw
            self._fd = fd
            if self.tls is not None:
                self._tls_in = ssl.MemoryBIO()
                self._tls_out = ssl.MemoryBIO()
                self._tls_obj = self.tls.wrap_bio(
                    self._tls_in, self._tls_out, server_hostname=self.server_hostname
                )
                handshaking = True
                await self._tls_handshake(deadline_ns)
            self._parser = self.parser_factory()
            return _NONE
        except _ConnectTimedOut:
            kind = ErrorKind.CONNECT_TIMEOUT
        except (*_TRANSPORT_ERRORS, UnicodeError) as exc:
            kind = classify_exception(exc)
            if kind is _TIMEOUT:
                kind = ErrorKind.CONNECT_TIMEOUT
            elif kind in (ErrorKind.RESET, ErrorKind.CLOSED_EARLY):
                # The peer dropped the connection while it was being set up: a failed
                # connect (no request was sent), not a failed request with a latency of 0.
                kind = ErrorKind.TLS_ERROR if handshaking else ErrorKind.CONNECT_REFUSED
        except BaseException:
            self._drop(raw)
            raise
        self._drop(raw)
        return kind

    def _drop(self, raw: socket.socket | None) -> None:
        """Forget and close a socket that did not become this connection's."""
        if raw is not None and raw is not self._raw:
            _forget(raw)
            raw.close()
        self.close()

    def close(self) -> None:
        """Drop the connection at once (no TLS close_notify: the peer sees a plain close)."""
        raw = self._raw
        self._raw = None
        self._fd = -1
        self._tls_obj = None
        self._tls_in = None
        self._tls_out = None
        self._parser = None
        if raw is not None:
            _forget(raw)
            raw.close()


def _forget(raw: socket.socket) -> None:
    """Take the socket out of the running reactor's epoll set before it is closed."""
    try:
        reactor = current_reactor()
    except RuntimeError:
        return
    fd = raw.fileno()
    if fd >= 0:
        reactor.forget(fd)
