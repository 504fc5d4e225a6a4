"""End-to-end: ``[target] cookies`` with ``z6 run`` against a server that sets a session
cookie on /login and records the Cookie header of every request (docs/scenario.md,
"Cookies")."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_z6
from servers import CookieRecords, cookie_server
from test_run_e2e import run_json, write_scenario

from z6.engine.protocol import httptools_available

pytestmark = pytest.mark.slow

ENGINES = ["h11", *(["httptools"] if httptools_available() else [])]

CLOSED = """
cookies = {cookies}

[runtime]
iterations = 4
vus = 3
prng_seed = 5

[[requests]]
name = "login"
method = "GET"
path = "/login/{{{{vu}}}}"

[[requests]]
name = "data"
method = "GET"
path = "/data/{{{{vu}}}}"

[sequence]
steps = [{{ request = "login" }}, {{ request = "data", repeat = 2 }}]
"""

OPEN = """
cookies = true

[runtime]
duration_seconds = 1
vus = 4
prng_seed = 5

[[requests]]
name = "login"
method = "GET"
path = "/login/{{iteration}}"

[[requests]]
name = "data"
method = "GET"
path = "/data/{{iteration}}"

[sequence]
steps = [{ request = "login" }, { request = "data" }]

[schedule]
type = "arrival_rate"
rate = 20
max_vus = 4
"""


OPEN_SCHEDULE = """
[schedule]
type = "arrival_rate"
rate = 5
"""


def _run(
    tmp: Path, body: str, name: str, *extra: str, tls: tuple[str, str] | None = None
) -> CookieRecords:
    with cookie_server(tls) as (port, records):
        scenario = write_scenario(tmp, port, body, name=f"{name}.toml")
        if tls is not None:
            text = scenario.read_text().replace("http://", "https://")
            scenario.write_text(
                text.replace("cookies = true", "cookies = true\nverify_cert = false")
            )
        code, summary, err = run_json(scenario, tmp / name, *extra)
        assert code == 0, err
        assert summary["requests"]["failed"] == 0
    return records


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("procs", [1, 2])
def test_every_request_carries_its_own_vu_s_session(
    tmp_path: Path, engine: str, procs: int
) -> None:
    records = _run(
        tmp_path, CLOSED.format(cookies="true"), "on", "--procs", str(procs), "--http", engine
    )
    data = [r for r in records.seen if r[0] == "data"]
    logins = [r for r in records.seen if r[0] == "login"]
    assert len(data) == 3 * 4 * 2
    # Cookies change no decision: the log replays.
    replay = run_z6(["replay", str(tmp_path / "on" / "events.bin"), "--verify"])
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert len(logins) == 3 * 4
    assert {key for _, key, _, _ in data} == {"0", "1", "2"}
    for _, key, cookie, session in data:
        # Longer path first (theme: /data), then the session the server gave this VU last;
        # the Max-Age=0 cookie was never kept.
        assert session is not None
        assert cookie == f"theme=dark; session={session}", (key, cookie)
    for _, _key, cookie, session in logins:
        # The jar lives as long as the VU: a later login sends the last session (and not
        # the theme cookie, whose path is /data).
        assert cookie == (None if session is None else f"session={session}")


def test_cookies_belong_to_the_host_the_requests_send(tmp_path: Path) -> None:
    # base_url names the backend's address, Host the public name: a cookie for the public
    # domain is kept (it was dropped: the jar took its host from base_url).
    body = (
        CLOSED.format(cookies="true")
        .replace('name = "login"', 'name = "login"\nheaders = { Host = "shop.example.com" }')
        .replace('name = "data"', 'name = "data"\nheaders = { Host = "shop.example.com" }')
    )
    records = _run(tmp_path, body, "host", "--procs", "1")
    data = [r for r in records.seen if r[0] == "data"]
    assert len(data) == 3 * 4 * 2
    for _, key, cookie, session in data:
        assert cookie == f"theme=dark; session={session}; dom=1", (key, cookie)


@pytest.mark.parametrize("engine", ENGINES)
def test_over_https_secure_cookies_are_kept_and_sent(
    tmp_path: Path, engine: str, self_signed: tuple[str, str]
) -> None:
    # Over http the Secure cookie is never kept (the other tests); over https it is sent.
    body = CLOSED.format(cookies="true")
    records = _run(tmp_path, body, "https", "--procs", "1", "--http", engine, tls=self_signed)
    data = [r for r in records.seen if r[0] == "data"]
    assert len(data) == 3 * 4 * 2
    for _, key, cookie, session in data:
        assert cookie == f"theme=dark; session={session}; sec=1", (key, cookie)


@pytest.mark.parametrize("engine", ENGINES)
def test_without_cookies_nothing_is_sent(tmp_path: Path, engine: str) -> None:
    records = _run(
        tmp_path, CLOSED.format(cookies="false"), "off", "--procs", "1", "--http", engine
    )
    assert len(records.seen) == 3 * 4 * 3
    assert all(cookie is None for _, _, cookie, _ in records.seen)


@pytest.mark.parametrize("engine", ENGINES)
def test_open_model_keeps_one_jar_per_iteration(tmp_path: Path, engine: str) -> None:
    records = _run(tmp_path, OPEN, "open", "--procs", "2", "--http", engine)
    logins = [r for r in records.seen if r[0] == "login"]
    data = [r for r in records.seen if r[0] == "data"]
    assert len(logins) >= 10
    assert len(data) == len(logins)
    # Every iteration starts with an empty jar, whichever pool VU runs it.
    assert all(cookie is None for _, _, cookie, _ in logins)
    replay = run_z6(["replay", str(tmp_path / "open" / "events.bin"), "--verify"])
    assert replay.returncode == 0, replay.stdout + replay.stderr
    for _, key, cookie, session in data:
        assert cookie == f"theme=dark; session={session}", (key, cookie)


@pytest.mark.parametrize(("schedule", "scope"), [("", "VU"), (OPEN_SCHEDULE, "iteration")])
def test_validate_says_cookies_are_kept(tmp_path: Path, schedule: str, scope: str) -> None:
    body = CLOSED.format(cookies="true").replace("iterations = 4", "duration_seconds = 1")
    scenario = write_scenario(tmp_path, 9, body.replace("{{vu}}", "x") + schedule)
    proc = run_z6(["validate", str(scenario)])
    assert proc.returncode == 0, proc.stderr
    assert f"a cookie jar per {scope}" in proc.stdout
    assert "cookies: the target is plain http, so Secure cookies are never kept" in proc.stdout
    assert "different Host headers" not in proc.stdout
    mixed = write_scenario(
        tmp_path,
        9,
        body.replace("{{vu}}", "x").replace(
            'name = "data"', 'name = "data"\nheaders = { Host = "h" }'
        )
        + schedule,
        "mixed.toml",
    )
    assert (
        "cookies: the requests send different Host headers"
        in run_z6(["validate", str(mixed)]).stdout
    )
    off = write_scenario(tmp_path, 9, body.replace("cookies = true", "cookies = false"), "off.toml")
    assert "cookie jar" not in run_z6(["validate", str(off)]).stdout
