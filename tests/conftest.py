"""Shared test fixtures: how to run the z6 CLI as a subprocess."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hostile_server import HostileServer, running_hostile_server

REPO = Path(__file__).resolve().parent.parent
# Scales the example counts of the fuzz tests of the parsers and codecs (loader, event codec,
# ring, log reader, protocol engines): 4 gives one to two thousand examples each in CI;
# `Z6_FUZZ_SCALE=50 pytest tests/*fuzz*` is the long local run (docs/reliability.md).
FUZZ_SCALE = max(1, int(os.environ.get("Z6_FUZZ_SCALE", "4")))


def fuzz_examples(base: int) -> int:
    """``base`` hypothesis examples times ``Z6_FUZZ_SCALE``."""
    return base * FUZZ_SCALE


SCENARIOS = REPO / "scenarios"


def z6_command() -> list[str]:
    """The argv prefix that runs this checkout's z6 CLI."""
    return [sys.executable, "-m", "z6.cli"]


def run_z6(
    args: Sequence[str],
    *,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``z6 ARGS`` to completion and return the finished process (text mode)."""
    full_env = dict(os.environ)
    full_env.pop("COLUMNS", None)
    if env:
        full_env.update(env)
    return subprocess.run(
        [*z6_command(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd,
        check=False,
    )


def one_line_exit_2(proc: subprocess.CompletedProcess[str]) -> str:
    """Assert that a finished z6 reported bad input the documented way: exit 2 and exactly one
    ``z6: ...`` line on stderr, never an internal error or a traceback; return that line."""
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("z6: ")
    assert proc.stderr.count("\n") == 1
    assert "internal error" not in proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def z6() -> object:
    """The ``run_z6`` helper as a fixture."""
    return run_z6


def ring_segments() -> set[str]:
    """Names of z6 ring segments currently in /dev/shm."""
    return {n for n in os.listdir("/dev/shm") if n.startswith("z6r_")}


def creator_gone(segment: str) -> bool:
    """True when the process that created ``z6r_<pid>_<hex>`` no longer exists."""
    try:
        pid = int(segment.split("_")[1])
    except (IndexError, ValueError):
        return False
    return not os.path.exists(f"/proc/{pid}")


@pytest.fixture(autouse=True, scope="session")
def no_ring_segments_left() -> Iterator[None]:
    """After the whole session, no ring segment of this session is left in /dev/shm.

    Other test sessions may share the machine, so only segments that appeared during this one
    and whose creator is gone (or is this process) count; the resource tracker of a killed
    supervisor gets a few seconds to unlink its rings.
    """
    before = ring_segments()
    yield
    me = f"z6r_{os.getpid()}_"
    deadline = time.monotonic() + 5
    while True:
        left = {n for n in ring_segments() - before if n.startswith(me) or creator_gone(n)}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"shared memory left behind: {sorted(left)}"


# -- TLS: one self-signed certificate and one TLS hostile server for the whole session ----


@pytest.fixture(scope="session")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1/localhost: (cert path, key path)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed; cannot make a test certificate")
    d = tmp_path_factory.mktemp("tls")
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
    return str(cert), str(key)


@pytest.fixture(scope="session")
def tls_server(self_signed: tuple[str, str]) -> Iterator[HostileServer]:
    """The hostile server (tests/hostile_server.py) behind TLS with the self-signed
    certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*self_signed)
    with running_hostile_server(ctx) as srv:
        yield srv
