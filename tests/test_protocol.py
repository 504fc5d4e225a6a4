"""The two HTTP/1.1 response engines, fed a table of raw responses in several ways.

Every case runs on both engines and three feeding modes (whole, one byte at a time, whole
plus the bytes of a following response); both engines must give the same outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import h11
import pytest

from z6.engine.errors import ConfigError, ScenarioError
from z6.engine.protocol import (
    MAX_HEAD_BYTES,
    ClosedEarly,
    H11Engine,
    HttptoolsEngine,
    ProtocolViolation,
    ResponseParser,
    engine_factory,
)
from z6.engine.requests import (
    USER_AGENT,
    PreparedRequest,
    make_request,
    parse_base_url,
    prepare_requests,
)
from z6.engine.scenario import RequestSpec, Runtime, Scenario, Target

ENGINES: dict[str, Callable[[], ResponseParser]] = {
    "h11": H11Engine,
    "httptools": HttptoolsEngine,
}

GET = make_request("GET", "/")
HEAD = make_request("HEAD", "/")
NEXT = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass(frozen=True)
class Outcome:
    """What an engine made of a byte stream."""

    kind: str  # complete | violation | closed_early | pending
    status: int = 0
    keep_alive: bool = False


def drive(
    parser: ResponseParser, req: PreparedRequest, chunks: Iterable[bytes], eof: bool
) -> Outcome:
    """Start ``req`` on ``parser``, feed ``chunks`` (then EOF if asked) and classify."""
    parser.start(req)
    try:
        for chunk in chunks:
            if parser.feed(chunk):
                return Outcome("complete", parser.status, parser.keep_alive)
        if eof and parser.feed_eof():
            return Outcome("complete", parser.status, parser.keep_alive)
    except ProtocolViolation:
        return Outcome("violation")
    except ClosedEarly:
        return Outcome("closed_early")
    return Outcome("pending")


@dataclass(frozen=True)
class Case:
    """One table row: response bytes, whether EOF follows, the request, the expected result."""

    id: str
    data: bytes
    expect: Outcome
    eof: bool = False
    req: PreparedRequest = GET
    extra: bool = False  # bytes beyond the declared end (invisible when fed byte by byte)


def ok(status: int = 200, keep_alive: bool = True) -> Outcome:
    """Shorthand for a complete outcome."""
    return Outcome("complete", status, keep_alive)


CASES = [
    Case("content-length", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", ok()),
    Case(
        "chunked-ext-trailers",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n",
        ok(),
    ),
    Case(
        "close-delimited", b"HTTP/1.1 200 OK\r\n\r\nhello until close", ok(keep_alive=False), True
    ),
    Case("close-delimited-no-eof", b"HTTP/1.1 200 OK\r\n\r\nhello", Outcome("pending")),
    Case("204-no-body", b"HTTP/1.1 204 No Content\r\n\r\n", ok(204)),
    Case("304-with-length", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", ok(304)),
    Case("head", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", ok(), req=HEAD),
    Case("head-no-length", b"HTTP/1.1 200 OK\r\n\r\n", ok(), req=HEAD),
    Case(
        "head-then-body",
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody",
        ok(keep_alive=False),
        req=HEAD,
        extra=True,
    ),
    Case(
        "interim-100-103",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nhi",
        ok(201),
    ),
    Case(
        "interim-in-http10",
        b"HTTP/1.0 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
        Outcome("violation"),
    ),
    Case("server-error", b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", ok(503)),
    Case(
        "connection-close",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
        ok(keep_alive=False),
    ),
    Case("http10", b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi", ok(keep_alive=False)),
    Case(
        "http10-keep-alive-header",
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi",
        ok(keep_alive=False),
    ),
    Case("leading-blank-lines", b"\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", ok()),
    Case("garbage", b"\x16\x03\x01 this is not http at all\r\n\r\n", Outcome("violation")),
    Case("garbage-no-newline", b"SSH-2.0-OpenSSH_9.6", Outcome("violation")),
    Case("truncated-status", b"HTT", Outcome("closed_early"), True),
    Case("truncated-headers", b"HTTP/1.1 200 OK\r\nContent-Le", Outcome("closed_early"), True),
    Case("nothing", b"", Outcome("closed_early"), True),
    Case(
        "body-short",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly ten b",
        Outcome("closed_early"),
        True,
    ),
    Case(
        "chunked-cut",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        Outcome("closed_early"),
        True,
    ),
    Case(
        "huge-headers",
        b"HTTP/1.1 200 OK\r\n"
        + b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 1000) for i in range(200))
        + b"Content-Length: 0\r\n\r\n",
        Outcome("violation"),
    ),
    Case(
        "body-longer-than-declared",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi and then some more",
        ok(keep_alive=False),
        extra=True,
    ),
    Case(
        "switching-protocols", b"HTTP/1.1 101 Switching\r\nUpgrade: x\r\n\r\n", Outcome("violation")
    ),
    Case(
        "transfer-encoding-gzip",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx",
        Outcome("violation"),
    ),
    Case(
        "transfer-encoding-and-length",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        Outcome("violation"),
    ),
    Case("bad-status-code", b"HTTP/1.1 2x0 OK\r\n\r\n", Outcome("violation")),
    Case(
        "bad-chunk-size",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        Outcome("violation"),
    ),
]


def _ids(case: Case) -> str:
    return case.id


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest) -> Callable[[], ResponseParser]:
    """Each engine's constructor in turn."""
    return ENGINES[request.param]


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_whole(engine: Callable[[], ResponseParser], case: Case) -> None:
    """The response fed in one piece."""
    assert drive(engine(), case.req, [case.data], case.eof) == case.expect


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_byte_by_byte(engine: Callable[[], ResponseParser], case: Case) -> None:
    """The response fed one byte at a time gives the same outcome."""
    chunks = [case.data[i : i + 1] for i in range(len(case.data))]
    expect = case.expect
    if case.extra:
        # The response completes before the extra bytes arrive; they then spoil the next
        # response instead (see test_extra_bytes_spoil_next_response).
        expect = ok(expect.status, keep_alive=True)
    assert drive(engine(), case.req, chunks, case.eof) == expect


def test_extra_bytes_spoil_next_response(engine: Callable[[], ResponseParser]) -> None:
    """Bytes beyond Content-Length that arrive late make the next response a violation."""
    parser = engine()
    assert drive(parser, GET, [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"], False) == ok()
    assert drive(parser, GET, [b" and then some more", NEXT], False) == Outcome("violation")


@pytest.mark.parametrize("case", [c for c in CASES if c.expect.keep_alive and not c.eof], ids=_ids)
def test_trailing_next_response(engine: Callable[[], ResponseParser], case: Case) -> None:
    """Unexpected bytes after a complete response: same status, connection not reusable."""
    got = drive(engine(), case.req, [case.data + NEXT], case.eof)
    assert got == ok(case.expect.status, keep_alive=False)


def test_bytes_received_counts_everything(engine: Callable[[], ResponseParser]) -> None:
    """bytes_received is the size of all bytes fed for the response, head and body."""
    data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    parser = engine()
    parser.start(GET)
    assert parser.feed(data[:20]) is False
    assert parser.feed(data[20:]) is True
    assert parser.bytes_received == len(data)


def test_keep_alive_reuse(engine: Callable[[], ResponseParser]) -> None:
    """One parser serves several requests in a row on a kept-alive connection."""
    parser = engine()
    responses = [
        (GET, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na", 200),
        (HEAD, b"HTTP/1.1 204 No Content\r\n\r\n", 204),
        (HEAD, b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", 200),
        (GET, b"HTTP/1.1 404 Nope\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 404),
        (GET, b"HTTP/1.1 201 OK\r\nContent-Length: 3\r\n\r\nxyz", 201),
    ]
    for req, data, status in responses:
        assert parser.start(req) == req.raw
        assert parser.feed(data) is True
        assert (parser.status, parser.keep_alive, parser.bytes_received) == (
            status,
            True,
            len(data),
        )


def test_a_repeated_head_is_checked_again_once_it_changes(
    engine: Callable[[], ResponseParser],
) -> None:
    """Both engines remember heads already judged (httptools: its fast path; h11: the last
    head that passed the shared rules). A head that differs from a remembered one by one
    control character, or by a second framing header, is still refused on a kept-alive
    parser, and an identical head still passes."""
    good = b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 2\r\n\r\nok"
    bad_heads = [
        b"HTTP/1.1 200 OK\r\nServer: \x01\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 O\x01K\r\nServer: x\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 2\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    ]
    for bad in bad_heads:
        parser = engine()
        for _ in range(2):
            parser.start(GET)
            assert parser.feed(good) is True
            assert (parser.status, parser.keep_alive) == (200, True)
        parser.start(GET)
        with pytest.raises(ProtocolViolation):
            parser.feed(bad)


def test_request_connection_close_is_not_reused(engine: Callable[[], ResponseParser]) -> None:
    """A request that says Connection: close is never followed by another on that socket."""
    req = make_request("GET", "/", headers=[(b"Connection", b"close")])
    got = drive(engine(), req, [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"], False)
    assert got == ok(keep_alive=False)


def test_reuse_after_close_is_a_bug(engine: Callable[[], ResponseParser]) -> None:
    """Starting a request after a non-reusable response is a programming error."""
    parser = engine()
    drive(
        parser, GET, [b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"], False
    )
    with pytest.raises(RuntimeError):
        parser.start(GET)


def test_head_limit_boundary(engine: Callable[[], ResponseParser]) -> None:
    """A head comfortably under the limit is fine; one over it is a violation."""
    small = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES // 2) + b"\r\n\r\n"
    assert drive(engine(), HEAD, [small], False) == ok()
    big = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 10) + b"\r\n\r\n"
    assert drive(engine(), HEAD, [big], False) == Outcome("violation")


def test_request_body_is_sent() -> None:
    """start() returns the prepared bytes including the body, for both engines."""
    req = make_request("POST", "/echo", body=b'{"a": 1}')
    for make in ENGINES.values():
        assert make().start(req).endswith(b'\r\n\r\n{"a": 1}')


def test_engine_factory_names() -> None:
    """auto picks an installed engine; unknown names are a ConfigError."""
    assert isinstance(engine_factory("h11")(), H11Engine)
    assert isinstance(engine_factory("httptools")(), HttptoolsEngine)
    assert isinstance(engine_factory("auto")(), HttptoolsEngine)
    with pytest.raises(ConfigError, match="unknown HTTP engine 'h2'"):
        engine_factory("h2")


def test_engine_factory_without_httptools(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without httptools, auto falls back to h11 and an explicit request says what to do."""
    import z6.engine.protocol as protocol

    monkeypatch.setattr(protocol, "httptools_available", lambda: False)
    assert isinstance(engine_factory("auto")(), H11Engine)
    with pytest.raises(ConfigError, match=r"z6\[fast\]"):
        engine_factory("httptools")


def test_h11_factory_shares_event_cache() -> None:
    """Two connections from one h11 factory can send the same request definition."""
    make = engine_factory("h11")
    a, b = make(), make()
    assert a.start(GET) == b.start(GET) == GET.raw


# -- prepared requests (engine/requests.py) ----------------------------------------------


def _scenario(base_url: str, **request: Any) -> Scenario:
    spec = {"name": "r", "method": "GET", "path": "/x", **request}
    return Scenario(
        runtime=Runtime(iterations=1, vus=1),
        target=Target(base_url=base_url),
        requests=[RequestSpec(**spec)],
    )


def _parse_with_h11_server(raw: bytes) -> tuple[h11.Request, bytes]:
    """Parse our request bytes as a server would: a check that they are valid HTTP/1.1."""
    server = h11.Connection(h11.SERVER)
    server.receive_data(raw)
    head = server.next_event()
    assert isinstance(head, h11.Request)
    body = b""
    while True:
        event = server.next_event()
        if isinstance(event, h11.Data):
            body += event.data
        else:
            assert isinstance(event, h11.EndOfMessage)
            return head, body


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8080", ("http", "127.0.0.1", 8080, "")),
        ("https://example.com", ("https", "example.com", 443, "")),
        ("http://h/api/", ("http", "h", 80, "/api")),
        ("http://[::1]:9000/v1", ("http", "::1", 9000, "/v1")),
    ],
)
def test_parse_base_url(url: str, expected: tuple[str, str, int, str]) -> None:
    """Scheme, host, port (defaulted) and path prefix without trailing slash."""
    assert parse_base_url(url) == expected


def test_parse_base_url_rejects_other_schemes() -> None:
    """Only http and https."""
    with pytest.raises(ValueError, match="scheme"):
        parse_base_url("ftp://h/")


@pytest.mark.parametrize(
    ("base", "path", "target", "host"),
    [
        ("http://127.0.0.1:8080", "/users/1", "/users/1", "127.0.0.1:8080"),
        ("http://h/api", "/users", "/api/users", "h"),
        ("http://h/api/", "users?x=1", "/api/users?x=1", "h"),
        ("https://h:443/", "/", "/", "h"),
        ("http://[::1]:81", "/", "/", "[::1]:81"),
    ],
)
def test_prepare_target_and_host(base: str, path: str, target: str, host: str) -> None:
    """Path prefix joined with one slash; Host carries the port only when non-default."""
    (req,) = prepare_requests(_scenario(base, path=path))
    assert (req.target, req.host_header) == (target, host)
    head, _ = _parse_with_h11_server(req.raw)
    assert head.target == target.encode()
    assert dict(head.headers)[b"host"] == host.encode()


def test_prepare_headers_body_and_user_override() -> None:
    """User headers win by case-insensitive name (Host too); Content-Length matches the body."""
    sc = _scenario(
        "http://h:8080",
        method="POST",
        headers={"host": "api.example", "User-Agent": "me", "X-Token": "s3cret"},
        body='{"a": 1}',
        body_bytes=b'{"a": 1}',
        timeout_ms=2500,
        expect_status=[200, 201],
    )
    (req,) = prepare_requests(sc)
    names = [n.lower() for n, _ in req.headers]
    assert names == [b"host", b"user-agent", b"x-token", b"content-length"]
    head, body = _parse_with_h11_server(req.raw)
    got = dict(head.headers)
    assert got[b"host"] == b"api.example"
    assert got[b"user-agent"] == b"me"
    assert got[b"content-length"] == b"8"
    assert body == b'{"a": 1}'
    assert req.timeout_s == 2.5
    assert (req.is_success(201), req.is_success(204), req.is_head) == (True, False, False)


def test_prepare_defaults() -> None:
    """Default User-Agent, no Content-Length on a bodiless GET, 0 on an empty POST."""
    get_req, post_req = prepare_requests(
        Scenario(
            runtime=Runtime(iterations=1, vus=1),
            target=Target(base_url="http://h"),
            requests=[
                RequestSpec(name="g", method="GET", path="/"),
                RequestSpec(name="p", method="POST", path="/"),
            ],
        )
    )
    assert (b"User-Agent", USER_AGENT) in get_req.headers
    assert all(n != b"Content-Length" for n, _ in get_req.headers)
    assert (b"Content-Length", b"0") in post_req.headers
    assert (get_req.index, post_req.index) == (0, 1)
    assert get_req.is_success(399)
    assert not get_req.is_success(400)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Transfer-Encoding": "chunked"}, "Transfer-Encoding"),
        ({"Content-Length": "99"}, "does not match"),
        ({"X-Bad": "a\r\nInjected: 1"}, "line break"),
        ({"Bad Name": "v"}, "invalid header name"),
    ],
)
def test_prepare_rejects_unsendable_headers(headers: dict[str, str], message: str) -> None:
    """Headers that would break framing are a ScenarioError naming the request."""
    with pytest.raises(ScenarioError, match=message) as info:
        prepare_requests(_scenario("http://h", headers=headers, body="x", body_bytes=b"x"))
    assert info.value.key == "requests[0].headers"


def test_connection_close_header_is_noticed() -> None:
    """A user 'Connection: close' marks the request so engines never reuse the socket."""
    (req,) = prepare_requests(_scenario("http://h", headers={"Connection": "Close"}))
    assert req.connection_close is True


@pytest.mark.parametrize(
    ("value", "close"),
    [("keep-alive, close", True), (" close ", True), ("closed", False), ("x-close", False)],
)
def test_connection_close_is_a_token_not_a_substring(value: str, close: bool) -> None:
    """The same rule as h11's: 'close' must be one element of the comma-separated list."""
    (req,) = prepare_requests(_scenario("http://h", headers={"Connection": value}))
    assert req.connection_close is close
