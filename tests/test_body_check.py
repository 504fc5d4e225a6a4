"""Body checks (``expect_body_contains`` / ``expect_body_not_contains``): the pure matcher,
and both response engines feeding it the body (whole, a byte at a time, chunked,
close-delimited, with bytes after the response)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from conftest import fuzz_examples
from hypothesis import given, settings, strategies as st

from z6.engine.body_check import BodyCheck, BodyMatcher
from z6.engine.protocol import H11Engine, HttptoolsEngine, ResponseParser
from z6.engine.requests import make_request


def _verdict(check: BodyCheck, pieces: list[bytes] | list[bytes | bytearray]) -> bool:
    m = check.matcher()
    for piece in pieces:
        m.feed(piece)
    return m.ok


def _expected(check: BodyCheck, body: bytes) -> bool:
    return all(t in body for t in check.present) and not any(t in body for t in check.absent)


def test_texts_required_and_forbidden() -> None:
    check = BodyCheck((b'"ok"', b"id"), (b"error",))
    assert _verdict(check, [b'{"status": "ok", "id": 7}'])
    assert not _verdict(check, [b'{"status": "ok"}'])  # "id" missing
    assert not _verdict(check, [b'{"status": "ok", "id": 7, "error": 1}'])
    assert not _verdict(check, [])  # an empty body holds nothing


def test_forbidden_only_passes_an_empty_body() -> None:
    assert _verdict(BodyCheck((), (b"error",)), [])
    assert _verdict(BodyCheck((), (b"error",)), [b"all fine"])


def test_a_text_split_across_pieces_is_found() -> None:
    check = BodyCheck((b"hello world",), (b"bad thing",))
    body = b"xx hello world yy"
    for cut in range(len(body) + 1):
        assert _verdict(check, [body[:cut], body[cut:]]), cut
    assert _verdict(check, [bytes([b]) for b in body])
    bad = b"ok bad thing ok hello world"
    assert not _verdict(check, [bytes([b]) for b in bad])


def test_the_matcher_keeps_only_a_short_tail() -> None:
    """A large body is never held: between pieces the matcher keeps ``longest - 1`` bytes."""
    check = BodyCheck((b"needle",), (b"nope!",))
    m = check.matcher()
    for _ in range(100):
        m.feed(b"x" * 65536)
    m.feed(b"a needle")
    assert m.ok
    assert len(m._tail) == len(b"needle") - 1


def test_bytearray_pieces() -> None:
    # h11 may hand the body over as bytearray pieces.
    check = BodyCheck((b"abc",), ())
    assert _verdict(check, [bytearray(b"xxab"), bytearray(b"c")])
    assert _verdict(check, [b"xxab", bytearray(b"c")])


@pytest.mark.parametrize(("present", "absent"), [((), ()), ((b"",), ()), ((), (b"x", b""))])
def test_a_check_needs_non_empty_texts(
    present: tuple[bytes, ...], absent: tuple[bytes, ...]
) -> None:
    with pytest.raises(ValueError, match="text"):
        BodyCheck(present, absent)


def _small_bytes(min_size: int, max_size: int) -> st.SearchStrategy[bytes]:
    return st.lists(st.sampled_from(b"ab\r\n"), min_size=min_size, max_size=max_size).map(bytes)


_texts = st.lists(_small_bytes(1, 6), max_size=3)


@settings(max_examples=fuzz_examples(300), deadline=None)
@given(
    present=_texts,
    absent=_texts,
    body=_small_bytes(0, 80),
    cuts=st.lists(st.integers(0, 80), max_size=8),
)
def test_any_split_gives_the_verdict_of_the_whole_body(
    present: list[bytes], absent: list[bytes], body: bytes, cuts: list[int]
) -> None:
    """The verdict is ``all(present in body) and not any(absent in body)``, however the body
    is cut into pieces (a small alphabet makes texts straddle cuts often)."""
    if not present and not absent:
        return
    check = BodyCheck(tuple(present), tuple(absent))
    points = sorted({min(c, len(body)) for c in cuts} | {0, len(body)})
    pieces = [body[a:b] for a, b in itertools.pairwise(points)]
    assert _verdict(check, pieces) == _expected(check, body)


# ------------------------------------------------------------------ through both engines

ENGINES: list[Callable[[], ResponseParser]] = [H11Engine, HttptoolsEngine]
CHECKED = make_request("GET", "/", body_check=BodyCheck((b"hello",), (b"error",)))


def _length_response(body: bytes, status: int = 200) -> bytes:
    return b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n" % (status, len(body)) + body


def _chunked_response(body: bytes) -> bytes:
    pieces = [body[i : i + 3] for i in range(0, len(body), 3)]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"


def _feed(make: Callable[[], ResponseParser], pieces: list[bytes], eof: bool = False) -> bool:
    parser = make()
    parser.start(CHECKED)
    done = False
    for piece in pieces:
        done = parser.feed(piece)
        if done:
            break
    if not done and eof:
        done = parser.feed_eof()
    assert done
    assert parser.matcher is not None
    return parser.matcher.ok


@pytest.mark.parametrize("make", ENGINES, ids=["h11", "httptools"])
@pytest.mark.parametrize(
    ("body", "ok"),
    [(b"say hello", True), (b"hello, error", False), (b"nothing", False), (b"", False)],
)
@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_engines_feed_the_whole_body_whole_or_byte_by_byte(
    make: Callable[[], ResponseParser], body: bytes, ok: bool, framing: str
) -> None:
    if framing == "length":
        data = _length_response(body)
    elif framing == "chunked":
        data = _chunked_response(body)
    else:
        data = b"HTTP/1.1 200 OK\r\n\r\n" + body
    eof = framing == "close"
    assert _feed(make, [data], eof) is ok
    assert _feed(make, [bytes([b]) for b in data], eof) is ok


@pytest.mark.parametrize("make", ENGINES, ids=["h11", "httptools"])
def test_bytes_after_the_response_are_not_its_body(make: Callable[[], ResponseParser]) -> None:
    """The server sent more than it declared: the extra bytes (here a forbidden text) are not
    checked as the body; the connection is not reused (``test_protocol``)."""
    assert _feed(make, [_length_response(b"hello") + b"error"])
    assert _feed(make, [_length_response(b"hello") + _length_response(b"error")])


@pytest.mark.parametrize("make", ENGINES, ids=["h11", "httptools"])
def test_interim_responses_are_not_the_body(make: Callable[[], ResponseParser]) -> None:
    data = b"HTTP/1.1 100 Continue\r\nX: error\r\n\r\n" + _length_response(b"hello")
    assert _feed(make, [data])


@pytest.mark.parametrize("make", ENGINES, ids=["h11", "httptools"])
def test_each_response_on_a_connection_is_checked_alone(make: Callable[[], ResponseParser]) -> None:
    """A text seen in one response does not count for the next one on the same connection."""
    parser = make()
    verdicts = []
    for body in (b"hello", b"bye", b"hello", b"hello error"):
        parser.start(CHECKED)
        assert parser.feed(_length_response(body))
        assert parser.matcher is not None
        verdicts.append(parser.matcher.ok)
    assert verdicts == [True, False, True, False]


@pytest.mark.parametrize("make", ENGINES, ids=["h11", "httptools"])
def test_a_request_without_check_has_no_matcher(make: Callable[[], ResponseParser]) -> None:
    parser = make()
    parser.start(CHECKED)
    parser.feed(_length_response(b"hello"))
    parser.start(make_request("GET", "/"))
    assert parser.matcher is None
    assert parser.feed(_length_response(b"error"))


def test_matcher_type() -> None:
    assert isinstance(CHECKED.body_check, BodyCheck)
    assert isinstance(CHECKED.body_check.matcher(), BodyMatcher)
