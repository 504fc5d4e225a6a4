"""A deliberately misbehaving HTTP/1.1 server on 127.0.0.1 for tests (SPEC section 10).

Plain threads and blocking sockets, so it runs beside any event loop (the client under test
uses trio) and can be started by any test::

    with start_hostile_server() as port:
        ...  # http://127.0.0.1:{port}/ok

Behaviour by request path (any method; HEAD gets no body):

=====================  ===============================================================
``/ok``                200 with Content-Length, keep-alive
``/chunked``           200 chunked with a chunk extension and a trailer, keep-alive
``/close-delimited``   200 without length; the body ends when the server closes
``/interim``           ``100 Continue`` and ``103 Early Hints``, then 200, keep-alive
``/garbage``           random non-HTTP bytes; the connection stays open
``/truncated-status``  ``HTT`` then close
``/truncated-headers`` a status line and half a header, then close
``/closed-mid-body``   Content-Length 1000, 10 bytes, close
``/reset``             reads the request, then closes with RST (SO_LINGER 0)
``/silent``            reads the request, never answers
``/trickle``           a valid response, one byte per second
``/huge-headers``      200 KB of headers
``/overlong-body``     Content-Length 2 followed by more bytes
``/status/CODE``       that status with a short body, keep-alive
``/echo``              200 with the request body echoed back, keep-alive
=====================  ===============================================================

Also ``refused_port()`` (nothing listening) and ``backlog_full_port()`` (a listener whose
accept queue is full, so new connects hang) for connect failures.
"""

from __future__ import annotations

import contextlib
import random
import socket
import ssl
import struct
import threading
from collections.abc import Iterator

from z6.engine.client import Connection
from z6.engine.protocol import engine_factory
from z6.engine.reactor import Semaphore

_HEAD_END = b"\r\n\r\n"
_MAX_HEAD = 1 << 20
# Canned responses; bodies are short so tests can count bytes exactly.
OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
CHUNKED_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: done\r\n\r\n"
)
INTERIM_RESPONSE = (
    b"HTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\ninterim"
)
CLOSE_DELIMITED_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"
OVERLONG_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokAND-THEN-SOME-EXTRA-BYTES"
TRICKLE_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nslow slow slow slow."


class _Request:
    """The parts of a received request the server dispatches on."""

    __slots__ = ("body", "method", "path")

    def __init__(self, method: str, path: str, body: bytes) -> None:
        self.method = method
        self.path = path
        self.body = body


class HostileServer:
    """The server: an accept thread plus one thread per connection.

    ``connections`` counts accepted connections and ``requests`` parsed requests, so tests
    can check keep-alive reuse from the server side.
    """

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)

    def start(self) -> None:
        """Start accepting in the background."""
        self._acceptor.start()

    def stop(self) -> None:
        """Stop accepting, drop every connection and wait (bounded) for the threads."""
        self._stop.set()
        self._acceptor.join(timeout=5)
        self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
        for t in self._threads:
            t.join(timeout=5)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                self.connections += 1
                self._socks.add(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        sock = conn
        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(conn, server_side=True)
                with self._lock:
                    self._socks.add(sock)
            buf = b""
            while not self._stop.is_set():
                req, buf = _read_request(sock, buf)
                if req is None:
                    return
                with self._lock:
                    self.requests += 1
                if not self._respond(sock, req):
                    return
        except (OSError, ValueError):
            return  # the client went away or misbehaved; nothing to report
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            with self._lock:
                self._socks.discard(conn)
                self._socks.discard(sock)

    def _respond(self, sock: socket.socket, req: _Request) -> bool:
        """Answer ``req``; return True to keep reading requests on this connection."""
        path = req.path.split("?", 1)[0]
        head_only = req.method == "HEAD"

        def send(data: bytes) -> None:
            if head_only:  # up to the end of the final response's head
                final = data.rindex(b"HTTP/1.1 ")
                data = data[: data.index(_HEAD_END, final) + len(_HEAD_END)]
            sock.sendall(data)

        if path == "/ok":
            send(OK_RESPONSE)
            return True
        if path == "/chunked":
            send(CHUNKED_RESPONSE)
            return True
        if path == "/interim":
            send(INTERIM_RESPONSE)
            return True
        if path == "/echo":
            sock.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(req.body) + req.body
            )
            return True
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            send(b"HTTP/1.1 %d Status\r\nContent-Length: 6\r\n\r\nstatus" % code)
            return True
        if path == "/close-delimited":
            send(CLOSE_DELIMITED_RESPONSE)
            return False
        if path == "/overlong-body":
            sock.sendall(OVERLONG_RESPONSE)  # one send, so the extra bytes arrive together
            return True
        if path == "/garbage":
            rng = random.Random(6)
            sock.sendall(b"\x16\x03" + bytes(rng.randrange(256) for _ in range(512)))
            self._stop.wait()  # keep the socket open: the client must not wait for more
            return False
        if path == "/truncated-status":
            sock.sendall(b"HTT")
            return False
        if path == "/truncated-headers":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/pl")
            return False
        if path == "/closed-mid-body":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
            return False
        if path == "/reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False  # the close in _serve now sends RST
        if path == "/silent":
            _drain_until_closed(sock, self._stop)
            return False
        if path == "/trickle":
            for byte in TRICKLE_RESPONSE:
                sock.sendall(bytes([byte]))
                if self._stop.wait(1.0):
                    break
            return False
        if path == "/huge-headers":
            filler = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 1000) for i in range(200))
            sock.sendall(b"HTTP/1.1 200 OK\r\n" + filler + b"Content-Length: 0\r\n\r\n")
            return False
        send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found")
        return True


def _drain_until_closed(sock: socket.socket, stop: threading.Event) -> None:
    """Read and discard until the client closes (or the server stops)."""
    while not stop.is_set():
        if not sock.recv(65536):
            return


def _read_request(sock: socket.socket, buf: bytes) -> tuple[_Request | None, bytes]:
    """Read one request (head and Content-Length body); None when the client closed."""
    while _HEAD_END not in buf:
        if len(buf) > _MAX_HEAD:
            return None, b""
        chunk = sock.recv(65536)
        if not chunk:
            return None, b""
        buf += chunk
    head, _, rest = buf.partition(_HEAD_END)
    lines = head.decode("latin-1").split("\r\n")
    method, path, _version = lines[0].split(" ", 2)
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None, b""
        rest += chunk
    return _Request(method, path, rest[:length]), rest[length:]


@contextlib.contextmanager
def running_hostile_server(tls: ssl.SSLContext | None = None) -> Iterator[HostileServer]:
    """A started ``HostileServer`` (plain, or TLS with the given server context)."""
    server = HostileServer(tls)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def start_hostile_server() -> Iterator[int]:
    """Run the hostile server in background threads; yield its port on 127.0.0.1."""
    with running_hostile_server() as server:
        yield server.port


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 where nothing listens (bound but not listening, so not reused)."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    try:
        yield holder.getsockname()[1]
    finally:
        holder.close()


@contextlib.contextmanager
def backlog_full_port(fillers: int = 8) -> Iterator[int]:
    """A listener that never accepts and whose accept queue is full.

    Linux drops further SYNs once the queue of a ``listen(0)`` socket is full, so a new
    connect hangs until the client's own timeout: the connect-timeout case without any
    non-local address. Yields the port; check ``connect_hangs`` before relying on it.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filled: list[socket.socket] = []
    try:
        for _ in range(fillers):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            filled.append(s)
        yield port
    finally:
        for s in filled:
            s.close()
        listener.close()


def connect_hangs(port: int, timeout: float = 0.2) -> bool:
    """True when a blocking connect to ``port`` does not complete within ``timeout``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(("127.0.0.1", port))
        except TimeoutError:
            return True
        except OSError:
            return False
        return False


def plain_connection(
    port: int,
    engine: str,
    *,
    connect_timeout_s: float = 2.0,
    connect_limiter: Semaphore | None = None,
) -> Connection:
    """A plain (no TLS) z6 client connection to 127.0.0.1:``port`` with the given engine."""
    return Connection(
        "127.0.0.1",
        port,
        tls=None,
        server_hostname=None,
        connect_timeout_s=connect_timeout_s,
        parser_factory=engine_factory(engine),
        connect_limiter=connect_limiter,
    )
