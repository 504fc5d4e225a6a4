"""End-to-end over HTTPS: ``z6 run`` (workers, reactor, TLS over memory BIOs) against a TLS
server on 127.0.0.1 with a self-signed certificate; counts checked against the server's."""

from __future__ import annotations

import json
import socket
import struct
import textwrap
import threading
from pathlib import Path

import pytest
from conftest import run_z6
from hostile_server import HostileServer

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("engine", ["h11", "httptools"])
def test_https_run_counts_match_the_server(
    tls_server: HostileServer, self_signed: tuple[str, str], tmp_path: Path, engine: str
) -> None:
    server, cert = tls_server, self_signed[0]
    scenario = tmp_path / "tls.toml"
    scenario.write_text(
        textwrap.dedent(
            f"""
            [metadata]
            name = "tls-e2e"
            [runtime]
            iterations = 25
            vus = 4
            [target]
            base_url = "https://localhost:{server.port}"
            ca_bundle = "{cert}"
            [[requests]]
            name = "ok"
            method = "GET"
            path = "/ok"
            [[requests]]
            name = "chunked"
            method = "GET"
            path = "/chunked"
            """
        )
    )
    before = server.requests
    out = tmp_path / "out"
    proc = run_z6(
        ["run", str(scenario), "--procs", "2", "--quiet", "--http", engine, "--out", str(out)]
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["requests"]["total"] == 100
    assert summary["requests"]["failed"] == 0
    assert summary["accounting"]["complete"] is True
    assert server.requests - before == 100


def test_a_handshake_the_server_resets_is_a_failed_connect(tmp_path: Path) -> None:
    """A server that accepts and resets at once: every attempt fails in the TLS handshake.
    That is a failed connect (``tls_error`` or ``connect_refused``, ``connections.failed``),
    not a new connection
    and a request failed with a latency of zero."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    done = threading.Event()

    def reset_every_connection() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            # SO_LINGER 0: close() sends an RST instead of a FIN.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    thread = threading.Thread(target=reset_every_connection, daemon=True)
    thread.start()
    scenario = tmp_path / "rst.toml"
    scenario.write_text(
        textwrap.dedent(
            f"""
            [runtime]
            iterations = 5
            vus = 2
            [target]
            base_url = "https://127.0.0.1:{port}"
            [[requests]]
            name = "r"
            method = "GET"
            path = "/"
            """
        )
    )
    try:
        proc = run_z6(["run", str(scenario), "--out", str(tmp_path / "o"), "--json", "--quiet"])
    finally:
        done.set()
        thread.join(timeout=5)
        listener.close()
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["requests"]["total"] == 10
    # Reset before the TCP connect completed (connect_refused) or during the handshake.
    kinds = summary["errors"]["by_kind"]
    assert set(kinds) <= {"tls_error", "connect_refused"}
    assert sum(kinds.values()) == 10
    assert summary["connections"] == {
        "new": 0,
        "failed": 10,
        "connect_ms": {"mean": None, "max": None},
    }
    assert summary["latency_ms"]["p50"] is None  # no request was sent: no latency
