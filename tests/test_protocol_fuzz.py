"""Property tests: both response engines survive any bytes and agree with each other.

Invariant: feeding any byte string, split anywhere, ends as complete (with a status), a
``ProtocolViolation``, a ``ClosedEarly`` or "needs more data" — never another exception — and
the h11 and httptools engines agree on complete-vs-error and on the status when complete.

Documented, normalized differences (see ``z6.engine.protocol``):
- without EOF, one engine may already report an error while the other still waits for the end
  of the head (llhttp validates byte by byte, h11 once the blank line arrives);
- ``keep_alive`` is compared except when the bytes after the response are only CR/LF (llhttp
  skips them silently) or when the response was split so that trailing bytes arrive late.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from conftest import fuzz_examples
from hypothesis import given, settings, strategies as st

from z6.engine.body_check import BodyCheck
from z6.engine.protocol import (
    ClosedEarly,
    H11Engine,
    HttptoolsEngine,
    ProtocolViolation,
    ResponseParser,
)
from z6.engine.requests import PreparedRequest, make_request

GET = make_request("GET", "/")
HEAD = make_request("HEAD", "/")
# A body check whose texts occur in VALID's bodies ("hello", "busy"), in pieces of framing
# ("\r\n0") and heads ("OK\r\n": a head fed as body fails it), split by chunk boundaries of
# any kind.
CHECKED = make_request("GET", "/", body_check=BodyCheck((b"ll",), (b"usy", b"\r\n0", b"OK\r\n")))

VALID = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\nclose delimited",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: x\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbusy",
    b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n",
]


@dataclass(frozen=True)
class Result:
    """One engine's verdict."""

    kind: str  # complete | violation | closed_early | pending
    status: int = 0
    keep_alive: bool = False
    body_ok: bool | None = None  # the body check's verdict (None: no check)


def run(
    make: Callable[[], ResponseParser], req: PreparedRequest, chunks: list[bytes], eof: bool
) -> Result:
    """Feed ``chunks`` (and EOF) to a fresh engine; any other exception fails the test."""
    parser = make()
    parser.start(req)

    def complete() -> Result:
        m = parser.matcher
        return Result("complete", parser.status, parser.keep_alive, None if m is None else m.ok)

    try:
        for chunk in chunks:
            if parser.feed(chunk):
                return complete()
        if eof and parser.feed_eof():
            return complete()
    except ProtocolViolation:
        return Result("violation")
    except ClosedEarly:
        return Result("closed_early")
    return Result("pending")


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given positions (taken modulo its length, sorted)."""
    if not data:
        return [b""]
    points = sorted({c % len(data) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


_INTERIM = re.compile(rb"HTTP/\d\.\d 1\d\d")
_EXTRA_BLANK = re.compile(rb"\n\r?\n[\r\n]")
_OBS_FOLD = re.compile(rb"\n[ \t]")
_ODD_LINE_END = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_CHUNK_EXT_LINE = re.compile(rb"\n[0-9A-Fa-f]+[ \t]*;([^\n]*)")
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_CONTENT_LENGTH_FIELD = re.compile(rb"(?im)^content-length:([^\r\n]*)")
# What llhttp accepts after the chunk size: no whitespace outside quoted values.
_VALID_EXTS = re.compile(rb"(?:;" + _TOKEN + rb"(?:=(?:" + _TOKEN + rb'|"[^"\r\n]*"))?)*\r?')


def known_difference(data: bytes) -> bool:
    """Inputs where the engines legitimately differ, documented rather than normalized.

    - A lone CR or a bare LF after a chunked head: h11 reads chunk-size lines with a loose
      pattern (a CR may hide in a chunk extension) but insists on CRLF line ends there, llhttp
      the other way round. Neither parser exposes the chunk lines, and servers do not send
      this.
    - Blank lines between an interim (1xx) response and the next message: llhttp skips them,
      h11 reports "no response line" (z6 only helps h11 before the first message).
    - A malformed chunk extension (``5; =b``): h11 skips everything after the ``;`` of a
      chunk-size line, llhttp checks the ``name[=value]`` syntax. That includes whitespace
      around ``;`` and ``=`` (``5; a=b``), which RFC 9112 allows and llhttp refuses.
    - Obsolete line folding (a header line starting with space or tab): h11 unfolds it,
      llhttp rejects it. RFC 9112 allows either.
    - Repeated identical ``Content-Length`` values (two fields, or ``2, 2``): h11 keeps one,
      llhttp rejects the response. RFC 9110 (8.6) allows either.
    """
    if _INTERIM.search(data) is not None and _EXTRA_BLANK.search(data) is not None:
        return True
    lengths = _CONTENT_LENGTH_FIELD.findall(data)
    if len(lengths) > 1 or any(b"," in v for v in lengths):
        return True
    if _OBS_FOLD.search(data) is not None:
        return True
    for m in _CHUNK_EXT_LINE.finditer(data):
        if _VALID_EXTS.fullmatch(b";" + m.group(1)) is None:
            return True
    head_end = data.find(b"\r\n\r\n")
    return (
        b"chunked" in data[: head_end if head_end >= 0 else len(data)]
        and _ODD_LINE_END.search(data, head_end if head_end >= 0 else 0) is not None
    )


def check_agree(req: PreparedRequest, data: bytes, cuts: list[int], eof: bool) -> None:
    """Both engines on the same input: valid outcomes that agree."""
    chunks = split(data, cuts)
    a = run(H11Engine, req, chunks, eof)
    b = run(HttptoolsEngine, req, chunks, eof)
    for r in (a, b):
        assert r.kind in {"complete", "violation", "closed_early", "pending"}
        if r.kind == "complete":
            assert 100 <= r.status <= 999
    if known_difference(data):
        return
    if a.kind == "complete" or b.kind == "complete":
        assert (a.kind, a.status, a.body_ok) == (b.kind, b.status, b.body_ok), (data, chunks, a, b)
    elif eof:
        # Neither completed; with EOF both must have failed (no "pending" left).
        assert a.kind != "pending"
        assert b.kind != "pending"


def mutate(data: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, byte) edits: replace, insert, delete, truncate."""
    buf = bytearray(data)
    for kind, pos, value in ops:
        if not buf:
            buf.append(value)
            continue
        i = pos % len(buf)
        if kind == 0:
            buf[i] = value
        elif kind == 1:
            buf.insert(i, value)
        elif kind == 2:
            del buf[i]
        else:
            del buf[i:]
    return bytes(buf)


cuts_st = st.lists(st.integers(min_value=0, max_value=10_000), max_size=6)
req_st = st.sampled_from([GET, HEAD, CHECKED])


@settings(max_examples=fuzz_examples(300), deadline=None)
@given(data=st.binary(max_size=200), cuts=cuts_st, eof=st.booleans(), req=req_st)
def test_random_bytes(data: bytes, cuts: list[int], eof: bool, req: PreparedRequest) -> None:
    """Arbitrary bytes: never a crash, engines agree."""
    check_agree(req, data, cuts, eof)


@settings(max_examples=fuzz_examples(400), deadline=None)
@given(
    base=st.sampled_from(VALID),
    ops=st.lists(
        st.tuples(
            st.integers(0, 3),
            st.integers(0, 10_000),
            st.sampled_from(list(b"\r\n :;/0123456789aHTP\x00\xff")),
        ),
        max_size=4,
    ),
    cuts=cuts_st,
    eof=st.booleans(),
    req=req_st,
)
def test_mutated_valid_responses(
    base: bytes,
    ops: list[tuple[int, int, int]],
    cuts: list[int],
    eof: bool,
    req: PreparedRequest,
) -> None:
    """Valid responses with a few edits: never a crash, engines agree."""
    check_agree(req, mutate(base, ops), cuts, eof)


@settings(max_examples=fuzz_examples(300), deadline=None)
@given(
    base=st.sampled_from(VALID),
    extra=st.sampled_from([b"", b"x", b"HTTP/1.1 200 OK\r\n\r\n", b"garbage\r\n\r\n"]),
    cuts=cuts_st,
    req=req_st,
)
def test_valid_responses_any_split(
    base: bytes, extra: bytes, cuts: list[int], req: PreparedRequest
) -> None:
    """Valid responses split anywhere complete identically, keep-alive included."""
    data = base + extra
    chunks = split(data, cuts)
    a = run(H11Engine, req, chunks, True)
    b = run(HttptoolsEngine, req, chunks, True)
    assert a.kind == "complete"
    assert (a.kind, a.status, a.body_ok) == (b.kind, b.status, b.body_ok)
    if len(chunks) == 1:
        # Trailing bytes all visible at once: the reuse decision must match too.
        assert a.keep_alive == b.keep_alive, (data, a, b)


# ---------------------------------------------------------------- the httptools fast path


class _LlhttpOnly(HttptoolsEngine):
    """The httptools engine with its fast path for common responses turned off."""

    def _simple(self, data: bytes) -> bool:
        return False


_printable = st.binary(max_size=12).map(lambda v: bytes(32 + b % 95 for b in v))
_plain_field = st.tuples(
    st.sampled_from([b"Server", b"Date", b"Content-Type", b"X-A", b"etag", b"Keep-Alive"]),
    _printable,
)
_odd_field = st.tuples(
    st.sampled_from(
        [
            b"Content-Length",
            b"CONTENT-LENGTH",
            b"Content-Length ",
            b"Transfer-Encoding",
            b"Connection",
            b"X-Closet",
            b"Bad Name",
            b"",
            b"X\x80",
        ]
    ),
    st.one_of(
        st.sampled_from(
            [
                *(b"0", b"2", b" 2 ", b"+2", b"1_0", b"2, 2", b"", b"keep-alive", b"close"),
                *(b"Keep-Alive, Close", b"chunked", b"\x80", b"a\x7fb", b"\t"),
            ]
        ),
        st.binary(max_size=6).filter(lambda v: b"\r" not in v and b"\n" not in v),
    ),
)


@st.composite
def _near_simple_response(draw: st.DrawFn) -> tuple[bytes, bool]:
    """Responses around the fast path's edge: about half exactly what it takes, the rest with
    one or two things off; and whether CR/LF may follow the response (llhttp skips those
    bytes: see the module doc)."""
    odd = draw(st.integers(0, 3)) if draw(st.booleans()) else 0
    version = b"HTTP/1.1"
    status = draw(st.sampled_from([b"200", b"404", b"503"]))
    reason = draw(st.sampled_from([b"OK", b"", b"Not Found"]))
    eol = b"\r\n"
    body = draw(_printable)
    length_delta = 0
    fields = draw(st.lists(_plain_field, max_size=5))
    extra = b""
    for _ in range(odd):
        what = draw(st.integers(0, 7))
        if what == 0:
            version = draw(st.sampled_from([b"HTTP/1.0", b"HTTP/2.0", b"http/1.1"]))
        elif what == 1:
            status = draw(st.sampled_from([b"204", b"304", b"100", b"101", b"600", b"20"]))
        elif what == 2:
            reason = draw(st.sampled_from([b"Close", b"\x01", b"\x80", b"O\tK"]))
        elif what == 3:
            eol = b"\n"
        elif what == 4:
            length_delta = draw(st.sampled_from([-1, 1, None]))  # None: no Content-Length
        elif what == 5:
            fields.insert(draw(st.integers(0, len(fields))), draw(_odd_field))
        elif what == 6:
            extra = draw(
                st.sampled_from([b"x", b"\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
            )
        else:
            body = draw(st.binary(max_size=8))
    if length_delta is not None:
        cl = (b"Content-Length", b"%d" % (len(body) + length_delta))
        fields.insert(draw(st.integers(0, len(fields))), cl)
    head = version + b" " + status + b" " + reason + eol
    head += b"".join(
        n + b":" + draw(st.sampled_from([b" ", b"", b"\t"])) + v + eol for n, v in fields
    )
    # Conservative: any CR/LF at the very end may be bytes after the response.
    return head + eol + body + extra, (body + extra).endswith((b"\r", b"\n"))


@settings(max_examples=fuzz_examples(600), deadline=None)
@given(case=_near_simple_response(), cuts=cuts_st, req=req_st)
def test_fast_path_agrees_with_llhttp_and_h11(
    case: tuple[bytes, bool], cuts: list[int], req: PreparedRequest
) -> None:
    """Fed whole (where the fast path applies) or split, the httptools engine gives exactly
    the verdict of llhttp alone, and agrees with h11 on completion, status and reuse."""
    data, crlf_after = case
    for chunks in ([data], split(data, cuts)):
        fast = run(HttptoolsEngine, req, chunks, True)
        slow = run(_LlhttpOnly, req, chunks, True)
        assert fast == slow, (data, chunks, fast, slow)
        if known_difference(data) or chunks != [data]:
            continue
        h11_result = run(H11Engine, req, chunks, True)
        if fast.kind == "complete" or h11_result.kind == "complete":
            assert (fast.kind, fast.status, fast.body_ok) == (
                h11_result.kind,
                h11_result.status,
                h11_result.body_ok,
            ), data
            if not crlf_after:
                assert fast.keep_alive == h11_result.keep_alive, (data, fast, h11_result)


def test_fast_path_takes_the_common_response_and_nothing_else() -> None:
    """nginx's answer is recognized without llhttp; near misses are left to llhttp."""
    nginx = (
        b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 10:50:57 GMT\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
    )
    p = HttptoolsEngine()
    p.start(GET)
    assert p._simple(nginx)
    assert (p.status, p.keep_alive, p.bytes_received) == (200, True, len(nginx))
    misses = [
        nginx + b"x",  # bytes after the response
        nginx[:-1],  # body not complete yet
        nginx.replace(b"keep-alive", b"close"),
        nginx.replace(b"Content-Length: 2", b"Transfer-Encoding: chunked"),
        nginx.replace(b"Content-Length: 2\r\n", b""),
        nginx.replace(b"Content-Length: 2", b"Content-Length: 2\r\nContent-Length: 2"),
        nginx.replace(b"Content-Length: 2", b"Content-Length: +2"),
        nginx.replace(b"HTTP/1.1", b"HTTP/1.0"),
        nginx.replace(b"200 OK", b"204 No Content"),
        nginx.replace(b"\r\nServer", b"\nServer"),
        nginx.replace(b"nginx/", b"nginx\x80"),
        nginx.replace(b"Server", b"Ser ver"),
    ]
    for data in misses:
        p = HttptoolsEngine()
        p.start(GET)
        assert not p._simple(data), data
        assert (p.status, p.bytes_received, p.keep_alive) == (0, 0, False)
    p = HttptoolsEngine()
    p.start(HEAD)
    assert not p._simple(nginx)


def test_fast_path_verdicts_are_cached_per_head_only() -> None:
    """A head seen before is judged from the cache; the body length is checked every time."""
    from z6.engine.protocol import _SIMPLE_HEADS

    head = b"HTTP/1.1 404 Not Found\r\nX-Seen: twice\r\nContent-Length: 3\r\n\r\n"
    _SIMPLE_HEADS.pop(head, None)
    for data, simple in [(head + b"abc", True), (head + b"abc", True), (head + b"ab", False)]:
        p = HttptoolsEngine()
        p.start(GET)
        assert p._simple(data) is simple
        assert _SIMPLE_HEADS[head] == (404, 3)
    bad = b"HTTP/1.1 200 OK\r\nX-Seen: \x80\r\nContent-Length: 0\r\n\r\n"
    for _ in range(2):
        p = HttptoolsEngine()
        p.start(GET)
        assert not p._simple(bad)
        assert _SIMPLE_HEADS[bad] is None


@settings(max_examples=fuzz_examples(200), deadline=None)
@given(st.lists(st.sampled_from(VALID[:4] + VALID[7:] + [VALID[0]] * 3), min_size=2, max_size=5))
def test_fast_path_and_llhttp_take_turns_on_one_connection(responses: list[bytes]) -> None:
    """Responses with and without the fast path, one after another on one parser, give the
    same results as h11 (llhttp's state is untouched by a message it never saw)."""
    fast = HttptoolsEngine()
    ref = H11Engine()
    for data in responses:
        results = []
        for p in (fast, ref):
            p.start(GET)
            done = p.feed(data) or p.feed_eof()
            results.append((done, p.status, p.keep_alive, p.bytes_received))
        assert results[0] == results[1], (data, results)
        if not results[0][2]:
            break


def test_proxy_connection_close_does_not_poison_the_next_response() -> None:
    """llhttp treats ``Proxy-Connection: close`` like ``Connection: close`` and would refuse
    the next response; reuse is decided by z6's rules alone (as h11 does), however the next
    response arrives (found by review: the fast path made it depend on the chunking)."""
    pc = b"HTTP/1.1 200 OK\r\nProxy-Connection: close\r\nContent-Length: 2\r\n\r\nhi"
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    for make in (HttptoolsEngine, _LlhttpOnly, H11Engine):
        p = make()
        for chunks in ([pc], [ok[:5], ok[5:]], [ok]):
            p.start(GET)
            assert any(p.feed(c) for c in chunks)
            assert (p.status, p.keep_alive) == (200, True), make


@pytest.mark.parametrize(
    ("digits", "kind"), [(b"0" * 19 + b"2", "complete"), (b"0" * 20 + b"2", "violation")]
)
def test_content_length_of_more_than_20_digits_is_refused_by_every_engine(
    digits: bytes, kind: str
) -> None:
    """h11 refuses a Content-Length value longer than 20 digits; so do the other paths."""
    data = b"HTTP/1.1 200 OK\r\nContent-Length: " + digits + b"\r\n\r\nhi"
    for make in (HttptoolsEngine, _LlhttpOnly, H11Engine):
        for chunks in ([data], [data[:20], data[20:]]):
            assert run(make, GET, chunks, True).kind == kind, (make, chunks)
