"""End-to-end over HTTPS: ``z6 run`` (workers, reactor, TLS over memory BIOs) against a TLS
server on 127.0.0.1 with a self-signed certificate; counts checked against the server's."""

from __future__ import annotations

import json
import textwrap
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
