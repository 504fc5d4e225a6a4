"""The cookie jar ([target] cookies, docs/scenario.md "Cookies"): the pure jar, the engines'
Set-Cookie collection, and the Cookie header added to a request."""

from __future__ import annotations

from collections.abc import Callable
from email.utils import formatdate

import h11
import pytest
from hypothesis import given, settings, strategies as st

from z6.engine.cookies import MAX_COOKIES, CookieJar, cookie_host, default_path, path_matches
from z6.engine.protocol import (
    H11Engine,
    HttptoolsCookieEngine,
    HttptoolsEngine,
    ResponseParser,
    engine_factory,
    httptools_available,
)
from z6.engine.requests import PreparedRequest, make_request

HOST = "app.example.com"


def jar_with(*lines: bytes, path: str = "/", https: bool = False, now: float = 0.0) -> CookieJar:
    jar = CookieJar(HOST)
    jar.store(lines, path, https, now)
    return jar


# -- the jar -------------------------------------------------------------------------------


def test_name_value_pairs_are_kept_and_sent_in_one_header() -> None:
    jar = jar_with(b"session=abc123", b"theme = dark ; HttpOnly; SameSite=Lax")
    assert jar.header("/", False, 1.0) == b"session=abc123; theme=dark"


def test_an_attribute_that_cannot_be_read_is_ignored_and_the_last_readable_wins() -> None:
    # RFC 6265 5.2: "Max-Age=abc" is ignored, so the earlier Max-Age=10 stands.
    jar = jar_with(b"a=1; Max-Age=10; Max-Age=abc")
    assert jar.header("/", False, 5.0) == b"a=1"
    assert jar.header("/", False, 20.0) is None
    assert jar_with(b"a=1; Max-Age=10; Max-Age=0").header("/", False, 1.0) is None
    # The last Domain wins, and an empty one is ignored.
    assert jar_with(b"a=1; Domain=other.com; Domain=example.com").header("/", False, 0) == b"a=1"
    assert jar_with(b"a=1; Domain=example.com; Domain=other.com").header("/", False, 0) is None
    assert jar_with(b"a=1; Domain=example.com; Domain=").header("/", False, 0) == b"a=1"


def test_the_jar_host_is_the_host_the_requests_send() -> None:
    def req(host: str) -> PreparedRequest:
        return make_request("GET", "/", host=host)

    assert cookie_host([req("shop.example.com"), req("shop.example.com:8443")], "10.0.0.5") == (
        "shop.example.com"
    )
    assert cookie_host([req("[::1]:8080")], "x") == "::1"
    assert cookie_host([req("a.example.com"), req("b.example.com")], "10.0.0.5") == "10.0.0.5"
    jar = CookieJar(cookie_host([req("Shop.Example.com")], "10.0.0.5"))
    jar.store([b"s=1; Domain=shop.example.com"], "/", False, 0.0)
    assert jar.header("/", False, 0.0) == b"s=1"


def test_cookie_paths_leave_the_query_out() -> None:
    from z6.engine.vu import _cookie_path

    assert _cookie_path("/a/login?next=/b/c") == "/a/login"
    assert _cookie_path("/x") == "/x"


def test_no_cookie_no_header() -> None:
    assert CookieJar(HOST).header("/", False, 0.0) is None
    assert jar_with(b"a=1; Path=/admin").header("/public", False, 0.0) is None


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"novalue",
        b"=onlyvalue",
        b" =x",
        b";a=1",
        b"a\x00b=1",
        b"a=1\x01",
        b"a=b\nc",
        b"a=b\rc",
        b"a=" + b"x" * 5000,
    ],
)
def test_bad_set_cookie_lines_are_ignored(line: bytes) -> None:
    jar = jar_with(line, b"ok=1")
    assert jar.header("/", False, 0.0) == b"ok=1"


def test_an_empty_value_is_a_cookie() -> None:
    assert jar_with(b"a=").header("/", False, 0.0) == b"a="


def test_a_later_set_cookie_replaces_the_value_and_keeps_the_place() -> None:
    jar = jar_with(b"a=1", b"b=2")
    jar.store([b"a=3"], "/", False, 1.0)
    assert jar.header("/", False, 2.0) == b"a=3; b=2"


@pytest.mark.parametrize(
    ("request_path", "expected"),
    [("", "/"), ("x", "/"), ("/", "/"), ("/login", "/"), ("/a/b", "/a"), ("/a/b/", "/a/b")],
)
def test_default_path(request_path: str, expected: str) -> None:
    assert default_path(request_path) == expected


@pytest.mark.parametrize(
    ("request_path", "cookie_path", "match"),
    [
        ("/", "/", True),
        ("/a", "/", True),
        ("/a/b", "/a", True),
        ("/a/b", "/a/", True),
        ("/a", "/a", True),
        ("/ab", "/a", False),
        ("/a", "/a/", False),
        ("/b", "/a", False),
    ],
)
def test_path_match(request_path: str, cookie_path: str, match: bool) -> None:
    assert path_matches(request_path, cookie_path) is match


def test_path_attribute_and_default_path_decide_where_a_cookie_goes() -> None:
    jar = CookieJar(HOST)
    jar.store([b"auth=1; Path=/api", b"relative=1; Path=api"], "/login/form", False, 0.0)
    jar.store([b"here=1"], "/shop/cart", False, 0.0)
    assert jar.header("/api/items", False, 1.0) == b"auth=1"
    assert jar.header("/apix", False, 1.0) is None
    # A relative Path takes the default path of the request: /login.
    assert jar.header("/login", False, 1.0) == b"relative=1"
    assert jar.header("/shop/other", False, 1.0) == b"here=1"
    assert jar.header("/", False, 1.0) is None


def test_longer_paths_first_then_the_order_they_were_set() -> None:
    jar = jar_with(b"root=1", b"deep=1; Path=/a/b", b"mid=1; Path=/a", b"root2=1")
    assert jar.header("/a/b/c", False, 1.0) == b"deep=1; mid=1; root=1; root2=1"


def test_same_name_on_two_paths_are_two_cookies() -> None:
    jar = jar_with(b"a=root", b"a=deep; Path=/x")
    assert jar.header("/x/y", False, 1.0) == b"a=deep; a=root"
    assert jar.header("/y", False, 1.0) == b"a=root"


def test_max_age_expires_relative_to_the_response_time() -> None:
    jar = jar_with(b"a=1; Max-Age=10", now=100.0)
    assert jar.header("/", False, 109.9) == b"a=1"
    assert jar.header("/", False, 110.0) is None
    assert len(jar) == 0  # dropped once expired


@pytest.mark.parametrize("age", [b"0", b"-1", b"-100"])
def test_max_age_zero_or_negative_deletes(age: bytes) -> None:
    jar = jar_with(b"a=1", b"b=2")
    jar.store([b"a=gone; Max-Age=" + age], "/", False, 5.0)
    assert jar.header("/", False, 5.0) == b"b=2"


@pytest.mark.parametrize("age", [b"", b"abc", b"1.5", b"+5", b"- 1", b"1e3"])
def test_a_malformed_max_age_is_ignored(age: bytes) -> None:
    jar = jar_with(b"a=1; Max-Age=" + age)
    assert jar.header("/", False, 1e9) == b"a=1"


def test_max_age_wins_over_expires() -> None:
    past = formatdate(0, usegmt=True).encode()
    jar = jar_with(b"a=1; Expires=" + past + b"; Max-Age=100", now=0.0)
    assert jar.header("/", False, 50.0) == b"a=1"


def test_expires_in_the_past_deletes_in_the_future_expires() -> None:
    past = formatdate(86400, usegmt=True).encode()  # 1970
    jar = jar_with(b"a=1", b"b=2")
    jar.store([b"a=1; Expires=" + past], "/", False, 1.0)
    assert jar.header("/", False, 1.0) == b"b=2"
    import time

    soon = formatdate(time.time() + 60, usegmt=True).encode()
    jar.store([b"c=3; Expires=" + soon], "/", False, 1000.0)
    assert jar.header("/", False, 1030.0) == b"b=2; c=3"
    assert jar.header("/", False, 1061.0) == b"b=2"


def test_an_unreadable_expires_is_a_session_cookie() -> None:
    jar = jar_with(b"a=1; Expires=someday", b"b=1; Expires=")
    assert jar.header("/", False, 1e9) == b"a=1; b=1"


def test_secure_cookies_go_over_https_only_and_are_refused_over_http() -> None:
    jar = jar_with(b"s=1; Secure", b"p=1", https=True)
    assert jar.header("/", True, 1.0) == b"s=1; p=1"
    assert jar.header("/", False, 1.0) == b"p=1"
    # Set over plain http, a Secure cookie is ignored (it does not replace one either).
    plain = jar_with(b"s=1; Secure", https=False)
    assert plain.header("/", True, 1.0) is None


@pytest.mark.parametrize(
    ("domain", "kept"),
    [
        (b"app.example.com", True),
        (b".app.example.com", True),
        (b"APP.Example.COM", True),
        (b"example.com", True),
        (b".example.com", True),
        (b"", True),  # an empty Domain is ignored: host-only
        (b"other.com", False),
        (b"pp.example.com", False),
        (b"sub.app.example.com", False),
        (b"com.", True),  # no public suffix list: the cookie only goes to the target host
        (b"\xff.com", False),
    ],
)
def test_domain_must_domain_match_the_target_host(domain: bytes, kept: bool) -> None:
    jar = jar_with(b"a=1; Domain=" + domain)
    assert (jar.header("/", False, 1.0) == b"a=1") is kept


def test_an_ip_host_takes_only_its_own_address_as_domain() -> None:
    jar = CookieJar("10.0.0.1")
    jar.store([b"a=1; Domain=0.0.1", b"b=1; Domain=10.0.0.1"], "/", False, 0.0)
    assert jar.header("/", False, 1.0) == b"b=1"


def test_the_jar_holds_at_most_max_cookies() -> None:
    jar = jar_with(*[b"c%d=1" % i for i in range(MAX_COOKIES + 5)])
    assert len(jar) == MAX_COOKIES
    jar.store([b"c0=new"], "/", False, 1.0)  # replacing one still works
    header = jar.header("/", False, 1.0)
    assert header is not None
    assert header.startswith(b"c0=new; c1=1")


_text = st.binary(max_size=120) | st.text(
    alphabet=st.sampled_from(list("ab=; ,-/.0129\t\r\nPathDomainMax-AgeExpiresSecure")),
    max_size=120,
).map(lambda s: s.encode())


@settings(max_examples=400, deadline=None)
@given(
    lines=st.lists(_text, max_size=6),
    path=st.sampled_from(["/", "/a", "/a/b", ""]),
    https=st.booleans(),
    now=st.floats(min_value=0, max_value=1e9),
)
def test_arbitrary_set_cookie_text_parses_or_is_ignored(
    lines: list[bytes], path: str, https: bool, now: float
) -> None:
    jar = CookieJar(HOST)
    jar.store(lines, path, https, now)  # never raises
    header = jar.header(path or "/", https, now)
    if header is not None:
        assert b"\r" not in header
        assert b"\n" not in header
        assert b"\x00" not in header
        # It goes on the wire through h11 unchanged.
        h11.Request(method="GET", target="/", headers=[("Host", "x"), ("Cookie", header)])


# -- the engines ---------------------------------------------------------------------------


ENGINES = ["h11", *(["httptools"] if httptools_available() else [])]
GET = make_request("GET", "/")
HEAD = make_request("HEAD", "/")
FAST = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: a=1; Path=/\r\n"
    b"Server: x\r\nset-cookie:  b=2 \r\n\r\nok"
)
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nSet-Cookie: a=1; Path=/\r\n"
    b"SET-COOKIE: b=2\r\n\r\n2\r\nok\r\n0\r\nSet-Cookie: trailer=1\r\n\r\n"
)
INTERIM = (
    b"HTTP/1.1 103 Early Hints\r\nSet-Cookie: early=1\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: a=1; Path=/\r\nSet-Cookie: b=2\r\n"
    b"\r\nok"
)
LLHTTP = (  # HTTP/1.0: not a fast-path head
    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nSet-Cookie: a=1; Path=/\r\nSet-Cookie: b=2\r\n\r\nok"
)


def _collect(parser: ResponseParser, data: bytes, req: object = GET, split: int = 0) -> list[bytes]:
    parser.start(GET if req is GET else HEAD)
    chunks = [data] if not split else [data[i : i + split] for i in range(0, len(data), split)]
    done = False
    for chunk in chunks:
        done = parser.feed(chunk)
        if done:
            break
    if not done:
        assert parser.feed_eof()
    return [v.strip() for v in parser.set_cookies]


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize(
    "data", [FAST, CHUNKED, INTERIM, LLHTTP], ids=["fast", "chunked", "1xx", "llhttp"]
)
@pytest.mark.parametrize("split", [0, 1, 7])
def test_engines_collect_the_final_response_s_set_cookie_values(
    name: str, data: bytes, split: int
) -> None:
    parser = engine_factory(name, cookies=True)()
    assert _collect(parser, data, split=split) == [b"a=1; Path=/", b"b=2"]


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize(
    "data", [FAST, CHUNKED, INTERIM, LLHTTP], ids=["fast", "chunked", "1xx", "llhttp"]
)
def test_engines_collect_nothing_when_cookies_are_off(name: str, data: bytes) -> None:
    parser = engine_factory(name)()
    assert _collect(parser, data) == []


@pytest.mark.parametrize("name", ENGINES)
def test_each_response_has_its_own_values_on_a_kept_alive_connection(name: str) -> None:
    parser = engine_factory(name, cookies=True)()
    plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert _collect(parser, FAST) == [b"a=1; Path=/", b"b=2"]
    assert _collect(parser, plain) == []
    assert _collect(parser, FAST.replace(b"a=1", b"a=9")) == [b"a=9; Path=/", b"b=2"]
    assert _collect(parser, HEAD_RESPONSE, req=HEAD) == [b"h=1"]
    assert _collect(parser, plain) == []
    assert _collect(parser, plain) == []  # a repeated head (httptools: the shortcut)
    assert _collect(parser, FAST) == [b"a=1; Path=/", b"b=2"]


HEAD_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\nSet-Cookie: h=1\r\n\r\n"


def test_the_factory_picks_the_cookie_parsers() -> None:
    assert isinstance(engine_factory("h11", cookies=True)(), H11Engine)
    if httptools_available():
        assert engine_factory("httptools") is HttptoolsEngine
        assert engine_factory("httptools", cookies=True) is HttptoolsCookieEngine


@pytest.mark.skipif(not httptools_available(), reason="httptools not installed")
def test_a_repeated_head_gives_its_cookies_every_time() -> None:
    # The fast path knows a head it has judged before (the connection's last one, or the
    # shared cache); its Set-Cookie lines are still read each time, and a head without
    # any gives none.
    parser = HttptoolsCookieEngine()
    for _ in range(3):
        assert _collect(parser, FAST) == [b"a=1; Path=/", b"b=2"]
    assert _collect(parser, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") == []
    for i in range(3):
        assert _collect(parser, FAST.replace(b"a=1", b"a=%d" % i))[0] == b"a=%d; Path=/" % i


@pytest.mark.parametrize("name", ENGINES)
def test_a_set_cookie_head_that_is_not_whole_still_completes_right(name: str) -> None:
    # Body still to come on the fast path: falls back to llhttp, values collected once.
    parser = engine_factory(name, cookies=True)()
    parser.start(GET)
    head, body = FAST[:-2], FAST[-2:]
    assert not parser.feed(head)
    assert parser.feed(body)
    assert [v.strip() for v in parser.set_cookies] == [b"a=1; Path=/", b"b=2"]
    assert parser.status == 200
    assert parser.keep_alive


# -- the request ---------------------------------------------------------------------------


def _parsed(raw: bytes) -> tuple[h11.Request, bytes]:
    server = h11.Connection(h11.SERVER)
    server.receive_data(raw)
    req = server.next_event()
    assert isinstance(req, h11.Request)
    body = b""
    while True:
        ev = server.next_event()
        if isinstance(ev, h11.Data):
            body += ev.data
        else:
            assert isinstance(ev, h11.EndOfMessage)
            return req, body


def test_with_cookie_adds_one_header_and_keeps_the_rest() -> None:
    req = make_request("POST", "/x?q=1", body=b"hi", headers=[(b"Accept", b"*/*")])
    sent = req.with_cookie(b"a=1; b=2")
    assert sent.base is req
    assert sent.target == req.target
    assert sent.body == req.body
    parsed, body = _parsed(sent.raw)
    assert body == b"hi"
    assert parsed.target == b"/x?q=1"
    assert [v for n, v in parsed.headers if n == b"cookie"] == [b"a=1; b=2"]
    assert [n for n, _ in parsed.headers if n != b"cookie"] == [
        n for n, _ in _parsed(req.raw)[0].headers
    ]


@pytest.mark.parametrize(
    ("user", "expected"), [(b"x=0", b"x=0; a=1"), (b"", b"a=1"), (b"x=0;", b"x=0; a=1")]
)
def test_with_cookie_appends_to_the_user_s_cookie_header(user: bytes, expected: bytes) -> None:
    req = make_request("GET", "/", headers=[(b"cookie", user), (b"X-After", b"1")])
    parsed, _ = _parsed(req.with_cookie(b"a=1").raw)
    assert [v for n, v in parsed.headers if n == b"cookie"] == [expected]
    assert (b"x-after", b"1") in parsed.headers


def test_a_request_with_cookie_goes_through_h11_and_httptools_unchanged() -> None:
    req = make_request("POST", "/p", body=b"abc").with_cookie(b"a=1")
    factory: Callable[[], ResponseParser]
    for factory in [engine_factory(n, cookies=True) for n in ENGINES]:
        parser = factory()
        assert parser.start(req) == req.raw


_value = st.text(alphabet=st.sampled_from(list("ab=; ,-/.09\tPathMax")), max_size=30)


@pytest.mark.skipif(not httptools_available(), reason="httptools not installed")
@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(_value, max_size=4),
    version=st.sampled_from(["1.1", "1.0"]),
    chunked=st.booleans(),
    cut=st.integers(min_value=0, max_value=400),
)
def test_both_engines_collect_the_same_values(
    values: list[str], version: str, chunked: bool, cut: int
) -> None:
    head = f"HTTP/{version} 200 OK\r\n" + "".join(f"Set-Cookie: {v}\r\n" for v in values)
    if chunked and version == "1.1":
        data = (head + "Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n").encode()
    else:
        data = (head + "Content-Length: 2\r\n\r\nok").encode()
    got = []
    for name in ("h11", "httptools"):
        parser = engine_factory(name, cookies=True)()
        parser.start(GET)
        done = parser.feed(data[:cut]) if cut else False
        if not done:
            done = parser.feed(data[cut:])
        assert done
        got.append([v.strip(b" \t") for v in parser.set_cookies])
    assert got[0] == got[1] == [v.strip(" \t").encode() for v in values]
