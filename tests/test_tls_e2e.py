"""End-to-end over HTTPS: ``z6 run`` (workers, reactor, TLS over memory BIOs) against a TLS
server on 127.0.0.1 with a self-signed certificate; counts checked against the server's."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_z6
from hostile_server import HostileServer, running_hostile_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HostileServer, str]]:
    """The hostile server behind TLS: (server, path of its self-signed certificate)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed; cannot make a test certificate")
    d = tmp_path_factory.mktemp("tls-e2e")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    with running_hostile_server(ctx) as srv:
        yield srv, str(cert)


@pytest.mark.parametrize("engine", ["h11", "httptools"])
def test_https_run_counts_match_the_server(
    tls_server: tuple[HostileServer, str], tmp_path: Path, engine: str
) -> None:
    server, cert = tls_server
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
