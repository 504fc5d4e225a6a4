"""Servers the end-to-end tests start on 127.0.0.1: z6's own, nginx and hypercorn.

Each is a context manager yielding the port (and, for third-party servers, the access log
path), and stops the server on exit whatever happened.
"""

from __future__ import annotations

import contextlib
import http.server
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from conftest import free_port, z6_command

_START_TIMEOUT_S = 20.0


def _wait_port(port: int, proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on port {port} in time")


def _stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def z6_server(procs: int = 1) -> Iterator[int]:
    """``z6 serve`` in a subprocess on a free port."""
    port = free_port()
    proc = subprocess.Popen(
        [*z6_command(), "serve", "--port", str(port), "--procs", str(procs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port, proc)
        yield port
    finally:
        _stop(proc)


def nginx_binary() -> str | None:
    """Path of an installed nginx, or None."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def _header_variable(name: str) -> str:
    """nginx's variable for request header ``name``: ``$http_x_request_id``."""
    return "$http_" + name.lower().replace("-", "_")


@contextlib.contextmanager
def nginx_server(workdir: Path, log_header: str | None = None) -> Iterator[tuple[int, Path]]:
    """nginx answering 200 'ok' on every path, with its own access log; with ``log_header``,
    each line ends with ``hdr="VALUE"``, the value of that request header (see
    :func:`logged_header_values`)."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed")
    port = free_port()
    log = workdir / "access.log"
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / sub).mkdir(exist_ok=True)
    log_format = ""
    if log_header is not None:
        log_format = (
            'log_format hdr \'$remote_addr - - [$time_local] "$request" $status '
            f'$body_bytes_sent hdr="{_header_variable(log_header)}"\';'
        )
    conf = workdir / "nginx.conf"
    conf.write_text(
        textwrap.dedent(
            f"""
            worker_processes 1;
            daemon off;
            pid {workdir}/nginx.pid;
            error_log {workdir}/error.log;
            events {{ worker_connections 4096; }}
            http {{
                {log_format}
                access_log {log}{" hdr" if log_header is not None else ""};
                client_body_temp_path {workdir}/body;
                proxy_temp_path {workdir}/proxy;
                fastcgi_temp_path {workdir}/fastcgi;
                uwsgi_temp_path {workdir}/uwsgi;
                scgi_temp_path {workdir}/scgi;
                keepalive_requests 1000000;
                server {{
                    listen 127.0.0.1:{port};
                    location / {{ return 200 "ok\\n"; }}
                }}
            }}
            """
        )
    )
    proc = subprocess.Popen(
        [binary, "-c", str(conf), "-p", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port, proc)
        yield port, log
    finally:
        _stop(proc)


_HYPERCORN_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok\\n"})
"""


@contextlib.contextmanager
def hypercorn_server(workdir: Path, log_header: str | None = None) -> Iterator[tuple[int, Path]]:
    """hypercorn (from PyPI) serving a minimal ASGI app, with its own access log; with
    ``log_header``, each line ends with ``hdr="VALUE"``, as :func:`nginx_server`'s."""
    port = free_port()
    log = workdir / "access.log"
    (workdir / "okapp.py").write_text(_HYPERCORN_APP)
    log_format: list[str] = []
    if log_header is not None:
        atom = "%({" + log_header.lower() + "}i)s"
        log_format = ["--access-logformat", f'%(h)s - - %(t)s "%(r)s" %(s)s %(b)s hdr="{atom}"']
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hypercorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--access-logfile",
            str(log),
            "--workers",
            "1",
            *log_format,
            "okapp:app",
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port, proc)
        yield port, log
    finally:
        _stop(proc)


_REQUEST_LINE = re.compile(r'"([A-Z]+) (\S+) (?:HTTP/)?1\.[01]"')


def count_access_log(path: Path) -> Counter[tuple[str, str]]:
    """Count ``(method, path)`` pairs in a combined-format access log."""
    counts: Counter[tuple[str, str]] = Counter()
    if not path.exists():
        return counts
    for line in path.read_text().splitlines():
        m = _REQUEST_LINE.search(line)
        if m:
            counts[(m.group(1), m.group(2))] += 1
    return counts


_HEADER_VALUE = re.compile(r' hdr="([^"]*)"$')


def logged_header_values(path: Path, expected: int, timeout: float = 5.0) -> Counter[str]:
    """The ``hdr="VALUE"`` values of an access log written with ``log_header``, polled until
    ``expected`` lines (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= expected or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    values: Counter[str] = Counter()
    for line in lines:
        m = _HEADER_VALUE.search(line)
        values[m.group(1) if m else f"<no header value in {line!r}>"] += 1
    return values


def wait_for_log_total(path: Path, expected: int, timeout: float = 5.0) -> Counter[tuple[str, str]]:
    """Access logs may lag a little behind the responses: poll until ``expected`` lines."""
    deadline = time.monotonic() + timeout
    counts = count_access_log(path)
    while sum(counts.values()) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
        counts = count_access_log(path)
    return counts


class CookieRecords:
    """What ``cookie_server`` saw: ``issued[key]`` is the last session given to ``key``;
    ``seen`` holds ``(kind, key, Cookie header or None, session issued to key by then)``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.issued: dict[str, str] = {}
        self.seen: list[tuple[str, str, str | None, str | None]] = []
        self.count = itertools.count()


@contextlib.contextmanager
def cookie_server(
    tls: tuple[str, str] | None = None,
) -> Iterator[tuple[int, CookieRecords]]:
    """An HTTP/1.1 keep-alive server in a thread on 127.0.0.1 (HTTPS with ``tls``, a
    (certificate, key) pair): ``GET /login/KEY`` answers with a new ``session`` cookie
    (Path=/), a ``theme`` cookie for /data, a cookie that deletes itself (Max-Age=0), a
    ``Secure`` one and one for another domain; every request's Cookie header is recorded,
    with the session issued to KEY by then. Stops on exit (daemon threads, 10 s socket
    timeout)."""
    records = CookieRecords()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 10

        def do_GET(self) -> None:
            _, kind, key = ([*self.path.split("?")[0].split("/"), "", ""])[:3]
            cookie = self.headers.get("Cookie")
            headers: list[tuple[str, str]] = []
            with records.lock:
                if kind == "login":
                    session = f"s{next(records.count)}-{key}"
                    headers = [
                        ("Set-Cookie", f"session={session}; Path=/; HttpOnly"),
                        ("Set-Cookie", "theme=dark; Path=/data"),
                        ("Set-Cookie", "gone=1; Max-Age=0"),
                        # Kept only by a client whose Host is shop.example.com.
                        ("Set-Cookie", "dom=1; Domain=shop.example.com; Path=/"),
                        # Kept only over https.
                        ("Set-Cookie", "sec=1; Secure; Path=/"),
                    ]
                    records.seen.append((kind, key, cookie, records.issued.get(key)))
                    records.issued[key] = session
                else:
                    records.seen.append((kind, key, cookie, records.issued.get(key)))
            body = b"ok"
            self.send_response(200)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            # Head and body in one write: the response is eligible for httptools' fast path.
            self._headers_buffer.append(b"\r\n" + body)  # type: ignore[attr-defined]
            self.flush_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], records
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
