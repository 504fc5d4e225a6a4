"""The built-in target server: every endpoint, keep-alive, bad input, processes, stats."""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from z6.cli.serve import MAX_BYTES, serve_async


class _Server:
    """A serve_async instance on its own trio thread."""

    def __init__(self) -> None:
        self._q: queue.Queue[tuple[int, trio.lowlevel.TrioToken, trio.CancelScope]] = queue.Queue()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self._thread.start()
        self.port, self._token, self._scope = self._q.get(timeout=10)

    async def _main(self) -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_async, "127.0.0.1", 0)
            self._q.put((port, trio.lowlevel.current_trio_token(), nursery.cancel_scope))

    def stop(self) -> None:
        trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        self._thread.join(10)
        assert not self._thread.is_alive()


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.stop()


def _conn(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=10)


def _get(port: int, path: str, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    conn = _conn(port)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _stats(port: int) -> dict[str, Any]:
    status, body = _get(port, "/__z6/stats")
    assert status == 200
    data: dict[str, Any] = json.loads(body)
    return data


def _raw(port: int, payload: bytes) -> bytes:
    """Send raw bytes, read until the server closes (bounded by the socket timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def test_root(server: _Server) -> None:
    assert _get(server.port, "/") == (200, b"ok\n")
    assert _get(server.port, "/?x=1") == (200, b"ok\n")


@pytest.mark.parametrize("code", [200, 201, 302, 404, 418, 500, 503, 599])
def test_status_codes(server: _Server, code: int) -> None:
    assert _get(server.port, f"/status/{code}") == (code, b"%d\n" % code)


@pytest.mark.parametrize("code", [204, 304])
def test_status_without_body(server: _Server, code: int) -> None:
    assert _get(server.port, f"/status/{code}") == (code, b"")


@pytest.mark.parametrize("path", ["/status/100", "/status/199", "/status/600", "/status/abc"])
def test_status_rejects_bad_codes(server: _Server, path: str) -> None:
    status, body = _get(server.port, path)
    assert status == 400
    assert b"200-599" in body


def test_delay_waits_at_least(server: _Server) -> None:
    t0 = time.monotonic()
    assert _get(server.port, "/delay/120") == (200, b"ok\n")
    assert time.monotonic() - t0 >= 0.12
    assert _get(server.port, "/delay/x")[0] == 400


def test_delay_does_not_block_other_connections(server: _Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
        slow.sendall(b"GET /delay/3000 HTTP/1.1\r\nHost: x\r\n\r\n")
        # While that request sleeps, other connections are served.
        for _ in range(3):
            assert _get(server.port, "/") == (200, b"ok\n")
        slow.setblocking(False)
        with pytest.raises(BlockingIOError):
            slow.recv(1)  # the delayed answer has not come yet
    # Closing the waiting client early must not hurt the server either.
    assert _get(server.port, "/") == (200, b"ok\n")


@pytest.mark.parametrize("n", [0, 1, 1000, 65536, 65537, 300_000])
def test_bytes(server: _Server, n: int) -> None:
    status, body = _get(server.port, f"/bytes/{n}")
    assert status == 200
    assert body == b"x" * n


def test_bytes_over_cap_rejected(server: _Server) -> None:
    assert _get(server.port, f"/bytes/{MAX_BYTES + 1}")[0] == 400
    assert _get(server.port, "/bytes/-1")[0] == 400


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_echo(server: _Server, method: str) -> None:
    payload = os.urandom(100_000)
    assert _get(server.port, "/echo", method, payload) == (200, payload)


def test_echo_empty_and_head(server: _Server) -> None:
    assert _get(server.port, "/echo", "POST", b"") == (200, b"")
    conn = _conn(server.port)
    conn.request("HEAD", "/bytes/500")
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("content-length") == "500"
    assert resp.read() == b""
    conn.close()


def test_not_found(server: _Server) -> None:
    assert _get(server.port, "/nope") == (404, b"not found\n")
    assert _get(server.port, "/status")[0] == 404


def test_keep_alive_reuses_connection(server: _Server) -> None:
    conn = _conn(server.port)
    conn.request("GET", "/")
    resp = conn.getresponse()
    assert resp.read() == b"ok\n"
    sock = conn.sock
    for path, expected in [("/status/201", 201), ("/bytes/10", 200), ("/nope", 404)]:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == expected
        assert conn.sock is sock  # same socket: the server kept the connection open
    conn.close()


def test_pipelined_requests_answered_in_order(server: _Server) -> None:
    payload = (
        b"GET /status/201 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    out = _raw(server.port, payload)
    assert out.count(b"HTTP/1.1 ") == 3
    first, second, third = (out.index(s) for s in (b" 201 ", b"\r\n\r\nabc", b"\r\n\r\nok\n"))
    assert first < second < third


def test_http10_client_gets_answer_and_close(server: _Server) -> None:
    out = _raw(server.port, b"GET / HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ")
    assert out.endswith(b"\r\n\r\nok\n")


def test_expect_100_continue(server: _Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        interim = s.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 ")
        s.sendall(b"hi")
        rest = b""
        while chunk := s.recv(65536):
            rest += chunk
    assert rest.startswith(b"HTTP/1.1 200 ") or b"HTTP/1.1 200 " in interim
    assert (interim + rest).endswith(b"\r\n\r\nhi")


@pytest.mark.parametrize(
    "payload",
    [
        b"garbage\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"\x00\x01\x02\xff" * 10 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 100_000 + b"\r\n\r\n",
    ],
)
def test_bad_request_gets_400_and_close(server: _Server, payload: bytes) -> None:
    out = _raw(server.port, payload)
    assert out.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 431 "))
    assert _get(server.port, "/") == (200, b"ok\n")  # the server survived


def test_truncated_and_abrupt_closes_do_not_hurt(server: _Server) -> None:
    for payload in [
        b"",
        b"GET / HT",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab",
    ]:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(payload)
    assert _get(server.port, "/") == (200, b"ok\n")


def test_stats_count_requests() -> None:
    srv = _Server()
    try:
        before = _stats(srv.port)
        assert before["requests"] == 0
        assert before["pid"] == os.getpid()
        _get(srv.port, "/")
        _get(srv.port, "/")
        _get(srv.port, "/status/500")
        _get(srv.port, "/bytes/3")
        _get(srv.port, "/echo", "POST", b"z")
        _get(srv.port, "/missing")
        _get(srv.port, "/status/42")
        after = _stats(srv.port)
        assert after["requests"] == 7
        assert after["by_path"] == {
            "/": 2,
            "/status": 1,
            "/bytes": 1,
            "/echo": 1,
            "not_found": 1,
            "bad_request": 1,
        }
    finally:
        srv.stop()


# --- serve() in its own process -----------------------------------------------------------------


def _start(procs: int) -> tuple[subprocess.Popen[str], int]:
    code = (
        "from z6.cli.serve import serve\n"
        f"serve(port=0, procs={procs}, ready=lambda p: print(p, flush=True))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip().isdigit(), proc.stderr.read() if proc.stderr else ""
    return proc, int(line)


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return proc.returncode, err


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_single_process_stops_cleanly(sig: int) -> None:
    proc, port = _start(1)
    try:
        assert _get(port, "/") == (200, b"ok\n")
    finally:
        code, err = _stop(proc, sig)
    assert code == 0
    assert f"z6 serve: listening on http://127.0.0.1:{port}" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_serve_two_processes_share_the_port() -> None:
    proc, port = _start(2)
    try:
        pids = set()
        for _ in range(200):  # fresh connections hash to either process
            pids.add(_stats(port)["pid"])
            if len(pids) == 2:
                break
        assert len(pids) == 2
        assert proc.pid not in pids
        assert _get(port, "/status/503") == (503, b"503\n")
    finally:
        code, err = _stop(proc)
    assert code == 0
    assert err.count("listening on") == 1
    assert "Traceback" not in err
    with pytest.raises(ConnectionRefusedError):  # every server process is gone
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_serve_reports_bind_failure() -> None:
    from z6.engine.errors import ConfigError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]

        async def main() -> None:
            await serve_async("127.0.0.1", port)

        with pytest.raises(ConfigError, match="cannot listen"):
            trio.run(main)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("port", ["70000", "65536", "-1"])
def test_serve_rejects_port_out_of_range(port: str) -> None:
    from conftest import one_line_exit_2, run_z6

    err = one_line_exit_2(run_z6(["serve", "--port", port], timeout=30))
    assert "--port must be between 0 and 65535" in err


def test_serve_function_rejects_port_and_procs_out_of_range() -> None:
    from z6.cli.serve import serve
    from z6.engine.errors import ConfigError

    with pytest.raises(ConfigError, match="--port"):
        serve(port=65536)
    with pytest.raises(ConfigError, match="--procs"):
        serve(port=0, procs=99999999999999999999)


def test_serve_port_in_use_exit_2_one_line() -> None:
    from conftest import one_line_exit_2, run_z6

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        err = one_line_exit_2(run_z6(["serve", "--port", str(port)], timeout=30))
    assert f"cannot listen on 127.0.0.1:{port}" in err


def test_serve_bad_host_exit_2_one_line() -> None:
    from conftest import one_line_exit_2, run_z6

    err = one_line_exit_2(run_z6(["serve", "--host", "999.1.1.1", "--port", "0"], timeout=30))
    assert "cannot listen on 999.1.1.1:0" in err
