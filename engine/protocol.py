"""Sans-IO HTTP/1.1 response parsing behind one small interface, with two engines.

**Pure**: no sockets. ``z6.engine.client`` owns the socket and moves bytes; an engine turns
the bytes of one response into ``status``, ``bytes_received`` and ``keep_alive``, or raises
``ProtocolViolation`` / ``ClosedEarly``. One engine object serves one TCP connection. A
request with a body check (``req.body_check``) gets a ``matcher`` that the engine feeds with
the final response's body, framing removed; the client reads its verdict.

- ``H11Engine`` uses h11 (pure Python, always installed).
- ``HttptoolsEngine`` uses httptools (llhttp in C; the ``z6[fast]`` extra), several times
  faster per response. A whole common response in one read skips llhttp (and its Python
  callback per header): see the class docstring.

Both engines give the same outcome for the same bytes; the rules where the underlying parsers
differ are normalized here (the fuzz tests in ``tests/test_protocol_fuzz.py`` hold them to it):

- Only HTTP/1.0 and HTTP/1.1 responses are accepted; bare LF line ends are accepted in the
  head (not in chunked framing); control characters in the reason phrase or header values
  are a violation.
- 1xx interim responses are skipped; ``101`` is a violation (z6 never asks for an upgrade),
  and so is a 1xx in HTTP/1.0 (RFC 9110 forbids sending one to an HTTP/1.0 client; h11 would
  skip it, llhttp would refuse the next message).
- A response head (status line plus headers of one message) over 64 KiB is a violation.
  Both engines add up the parsed parts, and also stop buffering an unfinished head past
  64 KiB; near the limit the two checks can disagree by the few bytes of line syntax.
- ``Transfer-Encoding`` other than exactly ``chunked``, or together with ``Content-Length``,
  is a violation (request-smuggling signals; h11 cannot parse them anyway).
- Blank lines (CR/LF) before the first status line are ignored (llhttp does; h11 is helped).
- An HTTP/1.0 response is never reused (h11 does not do HTTP/1.0 keep-alive).
- Bytes after a complete final response (the server sent more than it declared) make the
  connection not reusable: ``keep_alive`` is False. Exception: bare CR/LF bytes after a
  response are invisible to llhttp, so only the h11 engine then says not reusable.
- EOF completes a close-delimited body; any other EOF before the end is ``ClosedEarly``.

Known differences left as they are (rare, malformed input; listed in the fuzz test): obsolete
header line folding (h11 unfolds, llhttp rejects), irregular line ends inside chunked framing,
malformed chunk extensions (h11 ignores what follows the ``;``, llhttp checks its syntax and
refuses whitespace around ``;`` and ``=``, which RFC 9112 allows),
blank lines between an interim response and the next one (llhttp skips, h11 rejects), and
repeated identical ``Content-Length`` values (h11 keeps one, llhttp rejects; RFC 9110 allows
both), and bytes that look like chunk framing right after a HEAD response declaring chunked
framing (llhttp reads them as framing, so only h11 calls the connection not reusable).
Without EOF, llhttp may report a malformed head before h11, which waits for the blank line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

import h11

from z6.engine.body_check import BodyMatcher
from z6.engine.errors import ConfigError
from z6.engine.requests import PreparedRequest, has_close_token

MAX_HEAD_BYTES = 64 * 1024
"""Largest accepted response head (status line and headers of one message)."""

_MAX_LENGTH_DIGITS = 20  # h11 refuses a longer Content-Length value

ENGINE_NAMES = ("auto", "h11", "httptools")


class ProtocolViolation(Exception):
    """The response bytes are not valid HTTP/1.1 (garbage, bad framing, oversized headers...)."""


class ClosedEarly(Exception):
    """The server closed the connection (EOF) before the response was complete."""


class ResponseParser(Protocol):
    """One connection's response parser (see the module docstring for the shared rules).

    Use: ``data = p.start(req)``; send ``data``; ``p.feed(chunk)`` until it returns True (or
    ``p.feed_eof()`` at EOF); then read ``status``, ``bytes_received`` and ``keep_alive``.
    After a response with ``keep_alive`` False, or after an exception, the parser must not
    be used again (the connection is closed and a new one gets a new parser).
    """

    status: int
    bytes_received: int
    keep_alive: bool
    matcher: BodyMatcher | None
    """The body check of the current request, fed its response's body (None: no check)."""
    set_cookies: Sequence[bytes]
    """The ``Set-Cookie`` values of the final response, once complete; always empty unless
    the parser was made with ``cookies=True`` (``engine_factory``)."""

    def start(self, req: PreparedRequest) -> bytes:
        """Begin a new request on this connection; return the bytes to send."""
        ...

    def feed(self, data: bytes) -> bool:
        """Parse received bytes; True once the final response is complete."""
        ...

    def feed_eof(self) -> bool:
        """EOF: True if it completes a close-delimited body, else raise ``ClosedEarly``."""
        ...


_STATUS_PREFIX = b"HTTP/"
# Control characters h11 rejects in a reason phrase or header value and llhttp lets through.
_find_ctl = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]").search


def _check_prefix(prefix: bytes) -> None:
    """Fail fast when the first bytes of a response cannot be a status line.

    h11 only looks at the head once it is complete (blank line seen), so without this a
    server sending garbage and keeping the socket open would look like a slow server.
    """
    n = min(len(prefix), len(_STATUS_PREFIX))
    if prefix[:n] != _STATUS_PREFIX[:n]:
        raise ProtocolViolation("response does not start with an HTTP status line")


class H11Engine:
    """``ResponseParser`` over one ``h11.Connection`` (pure Python)."""

    __slots__ = (
        "_conn",
        "_cookies",
        "_done",
        "_events",
        "_last_head",
        "_prefix",
        "bytes_received",
        "keep_alive",
        "matcher",
        "set_cookies",
        "status",
    )

    def __init__(
        self,
        event_cache: dict[PreparedRequest, tuple[Any, ...]] | None = None,
        cookies: bool = False,
    ) -> None:
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
        # h11 event objects are immutable, so they are built once per request definition and
        # shared by all connections made by the same factory.
        self._events: dict[PreparedRequest, tuple[Any, ...]] = (
            event_cache if event_cache is not None else {}
        )
        self._prefix = b""
        self._done = False
        # The last head that passed _check_h11_head, (version, reason, raw header items): a
        # server repeats its heads, and the check costs about 6 % of an h11 response.
        self._last_head: tuple[bytes, bytes, list[tuple[bytes, bytes]]] | None = None
        self.status = 0
        self.bytes_received = 0
        self.keep_alive = False
        self.matcher: BodyMatcher | None = None
        self._cookies = cookies
        self.set_cookies: Sequence[bytes] = ()

    def start(self, req: PreparedRequest) -> bytes:
        """Begin a new request on this connection; return the bytes to send."""
        conn = self._conn
        if self.keep_alive:  # the last response completed, both sides DONE (see _pump)
            conn.start_next_cycle()
        elif conn.our_state is not h11.IDLE:
            raise RuntimeError("H11Engine reused after a failed or non-reusable response")
        # Keyed by, and built from, the request definition: a request with fields makes a new
        # request object per send (``render``), and h11 only tracks state from these events
        # (the bytes sent are ``req.raw``), so one set per definition serves every send. Built
        # from the definition, whose Content-Length and body agree: a rendered body's length
        # differs from the definition's header, and h11 refused the pair.
        base = req.base
        events = self._events.get(base)
        if events is None:
            events = _h11_events(base)
            self._events[base] = events
        try:
            for event in events:
                conn.send(event)
        except h11.LocalProtocolError as exc:
            raise ProtocolViolation(f"h11 rejected the request: {exc}") from exc
        self._prefix = b""
        self._done = False
        self.status = 0
        self.bytes_received = 0
        self.keep_alive = False
        check = req.body_check
        self.matcher = None if check is None else check.matcher()
        if self._cookies:
            self.set_cookies = ()
        return req.raw

    def feed(self, data: bytes) -> bool:
        """Parse received bytes; True once the final response is complete."""
        self.bytes_received += len(data)
        prefix = self._prefix
        if len(prefix) < len(_STATUS_PREFIX) and self.status == 0:
            if not prefix and data.startswith(_STATUS_PREFIX):
                self._prefix = _STATUS_PREFIX  # the usual case, decided at once
            else:
                if not prefix:
                    data = data.lstrip(b"\r\n")
                    if not data:
                        return False
                self._prefix = prefix = prefix + data[: len(_STATUS_PREFIX) - len(prefix)]
                _check_prefix(prefix)
        self._conn.receive_data(data)
        return self._pump()

    def feed_eof(self) -> bool:
        """EOF: True if it completes a close-delimited body, else raise ``ClosedEarly``."""
        if self._done:
            return True
        self._conn.receive_data(b"")
        try:
            done = self._pump()
        except ProtocolViolation as exc:
            raise ClosedEarly(str(exc)) from exc
        if not done:
            raise ClosedEarly("connection closed before the response was complete")
        self.keep_alive = False  # the server is gone
        return True

    def _pump(self) -> bool:
        """Pull events until the response completes or h11 needs more data."""
        conn = self._conn
        try:
            while True:
                event = conn.next_event()
                kind = type(event)
                if kind is h11.Data:
                    if self.matcher is not None:
                        self.matcher.feed(cast(h11.Data, event).data)
                    continue
                if event is h11.NEED_DATA:
                    return False
                if kind is h11.EndOfMessage:
                    self._done = True
                    self.keep_alive = (
                        conn.our_state is h11.DONE
                        and conn.their_state is h11.DONE
                        and not conn.trailing_data[0]
                    )
                    return True
                if isinstance(event, h11.Response):
                    self._check_head(event)
                    self.status = event.status_code
                    if self._cookies:
                        # h11 gives header names in lower case.
                        self.set_cookies = [v for n, v in event.headers if n == b"set-cookie"]
                elif isinstance(event, h11.InformationalResponse):
                    self._check_head(event)
                    if event.http_version != b"1.1":
                        raise ProtocolViolation("interim (1xx) response in HTTP/1.0")
                elif kind is h11.ConnectionClosed:
                    raise ClosedEarly("connection closed before the response was complete")
                else:  # PAUSED cannot come before EndOfMessage for a client
                    raise ProtocolViolation(f"unexpected h11 event {event!r}")
        except h11.RemoteProtocolError as exc:
            raise ProtocolViolation(str(exc)) from exc

    def _check_head(self, event: h11.Response | h11.InformationalResponse) -> None:
        """``_check_h11_head``, skipped for a head equal to the last one that passed."""
        head = (event.http_version, event.reason, event.headers.raw_items())
        if head != self._last_head:
            _check_h11_head(event)
            self._last_head = head


def _check_h11_head(event: h11.Response | h11.InformationalResponse) -> None:
    """Apply the shared head rules (version, size, transfer coding) to an h11 response head."""
    if event.http_version not in (b"1.1", b"1.0"):
        raise ProtocolViolation(f"unsupported HTTP version {event.http_version!r}")
    size = len(event.reason)
    # h11 lets control characters other than NUL through; llhttp (strict) refuses them.
    if _find_ctl(event.reason) is not None:
        raise ProtocolViolation("control character in the reason phrase")
    has_length = False
    coding: bytes | None = None
    for name, value in event.headers:
        size += len(name) + len(value) + 4
        if _find_ctl(value) is not None:
            raise ProtocolViolation("control character in a header value")
        if name == b"content-length":
            has_length = True
        elif name == b"transfer-encoding":
            coding = value
    if size > MAX_HEAD_BYTES:
        raise ProtocolViolation("response head larger than 64 KiB")
    if coding is not None and (coding != b"chunked" or has_length):
        raise ProtocolViolation("unsupported or ambiguous Transfer-Encoding")


def _h11_events(req: PreparedRequest) -> tuple[Any, ...]:
    """The h11 events that send ``req``: the request head, the body, the end of message."""
    head = h11.Request(method=req.method, target=req.target, headers=req.headers)
    if req.body:
        return (head, h11.Data(data=req.body), h11.EndOfMessage())
    return (head, h11.EndOfMessage())


# The common response, recognized without llhttp (see HttptoolsEngine._simple): an HTTP/1.1
# final status line and header lines of strict syntax (token names, printable ASCII values),
# then the blank line. No part can match two ways, so matching is linear in the head size.
_simple_head = re.compile(
    rb"HTTP/1\.1 ([2-5][0-9][0-9]) [ -~]*\r\n(?:[-!#$%&'*+.^_`|~0-9A-Za-z]+:[\t -~]*\r\n)*\r\n"
).match
_CONTENT_LENGTH = b"\r\ncontent-length:"
_SIMPLE_HEAD_MAX = 8192
# Verdicts on heads already seen, {head: (status, content length)} or {head: None} when the
# head is not simple: a server repeats the same head until its Date changes, and one dict
# lookup costs a tenth of the checks. Cleared when full (about once per 4 minutes for a
# server that only changes its Date).
_SIMPLE_HEADS: dict[bytes, tuple[int, int] | None] = {}
_SIMPLE_HEADS_MAX = 256


class HttptoolsEngine:
    """``ResponseParser`` over ``httptools.HttpResponseParser`` (llhttp, C).

    The common response arriving whole in one chunk (a strict HTTP/1.1 head with one
    ``Content-Length`` and exactly that many body bytes, no ``Transfer-Encoding``, no
    ``close`` anywhere in the head) is recognized by one regular expression instead: llhttp
    calls back into Python for every header (nine calls for nginx's five headers), which cost
    more than the rest of the parse. Anything else, however slightly different, goes to
    llhttp; the fuzz tests hold both paths to the h11 engine's verdicts.
    """

    __slots__ = (
        "_chunked",
        "_coding_bad",
        "_conn_close",
        "_done",
        "_fresh",
        "_head_fed",
        "_head_msg_open",
        "_head_size",
        "_headers_done",
        "_httptools",
        "_is_head",
        "_last_head",
        "_last_verdict",
        "_length",
        "_msg_lenient_off",
        "_msg_status",
        "_parser",
        "_req_close",
        "_stale",
        "_trailing",
        "_version",
        "bytes_received",
        "keep_alive",
        "matcher",
        "set_cookies",
        "status",
    )

    def __init__(self) -> None:
        import httptools

        self._httptools: Any = httptools
        self._parser: Any = self._new_parser()
        self._fresh = True
        self._msg_lenient_off = False
        self._last_head = b"\r\n\r\n"  # never the start of a response
        self._last_verdict: tuple[int, int] | None = None
        self.status = 0
        self.bytes_received = 0
        self.keep_alive = False
        self.matcher: BodyMatcher | None = None
        self.set_cookies: Sequence[bytes] = ()  # this class never collects them: see below
        self._reset_response(False, False)

    def _new_parser(self) -> Any:
        parser = self._httptools.HttpResponseParser(self)
        # h11 accepts a bare LF as line end; llhttp only when told to. Reuse is decided by our
        # rules alone (_finish): llhttp would also honour ``Proxy-Connection: close``, then
        # refuse the next response while we call the connection reusable.
        parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True, lenient_keep_alive=True)
        return parser

    def _reset_response(self, is_head: bool, req_close: bool) -> None:
        self._stale = False
        self._is_head = is_head
        self._req_close = req_close
        self._done = False
        self._trailing = False
        self._head_msg_open = False
        self._head_fed = 0
        self._begin_message()

    def _begin_message(self) -> None:
        self._version = ""
        self._headers_done = False
        self._head_size = 0
        self._length = False
        self._chunked = False
        self._coding_bad = False
        self._conn_close = False
        self._msg_status = 0

    # -- ResponseParser ------------------------------------------------------------------

    def start(self, req: PreparedRequest) -> bytes:
        """Begin a new request on this connection; return the bytes to send."""
        if not self._fresh:
            if not self.keep_alive:
                raise RuntimeError("HttptoolsEngine reused after a non-reusable response")
            if self._is_head:
                # llhttp does not know the last request was HEAD and may still wait for a
                # body; a fresh parser is cheap.
                self._parser = self._new_parser()
                self._msg_lenient_off = False
        self._fresh = False
        self.status = 0
        self.bytes_received = 0
        self.keep_alive = False
        self._is_head = req.is_head
        self._req_close = req.connection_close
        check = req.body_check
        self.matcher = None if check is None else check.matcher()
        self._done = False
        # The rest of the per-response state only matters to llhttp: reset when it is used
        # (most responses take the fast path and never need it).
        self._stale = True
        return req.raw

    def feed(self, data: bytes) -> bool:
        """Parse received bytes; True once the final response is complete."""
        if not self.bytes_received and self._simple(data):
            return True
        if self._stale:
            self._reset_response(self._is_head, self._req_close)
        self.bytes_received += len(data)
        try:
            self._parser.feed_data(data)
        except self._httptools.HttpParserError as exc:
            if not self._done:
                cause = exc.__context__
                if isinstance(cause, ProtocolViolation):
                    raise cause from None
                raise ProtocolViolation(str(exc) or type(exc).__name__) from exc
            # An error after the final response means unexpected trailing bytes.
            self._trailing = True
        if self._done:
            if self._trailing:
                self.keep_alive = False
            return True
        if not self._headers_done:
            self._head_fed += len(data)
            if self._head_fed > MAX_HEAD_BYTES:
                raise ProtocolViolation("response head larger than 64 KiB")
        return False

    def feed_eof(self) -> bool:
        """EOF: True if it completes a close-delimited body, else raise ``ClosedEarly``."""
        if self._done:
            return True
        if self._stale:
            self._reset_response(self._is_head, self._req_close)
        if (
            self._headers_done
            and not self._length
            and not self._chunked
            and self._msg_status >= 200
            and self._msg_status not in (204, 304)
            and not self._is_head
        ):
            self._done = True
            self.status = self._msg_status
            self.keep_alive = False
            return True
        raise ClosedEarly("connection closed before the response was complete")

    def _simple(self, data: bytes) -> bool:
        """Complete the response at once if ``data``, the first bytes of this response, is
        exactly one common response (see the class docstring); else change nothing."""
        if self._is_head:
            return False
        last = self._last_head
        if data.startswith(last):
            # The same head as this connection's previous response (``last`` holds one blank
            # line, at its end, so the head of ``data`` is exactly ``last``).
            end = len(last)
            verdict = self._last_verdict
        else:
            end = data.find(b"\r\n\r\n") + 4
            if end == 3 or end > _SIMPLE_HEAD_MAX:
                return False
            head = data[:end]
            try:
                verdict = _SIMPLE_HEADS[head]
            except KeyError:  # a new head: about once per second (the Date header)
                verdict = _simple_verdict(head)
                if len(_SIMPLE_HEADS) >= _SIMPLE_HEADS_MAX:
                    _SIMPLE_HEADS.clear()
                _SIMPLE_HEADS[head] = verdict
            self._last_head = head
            self._last_verdict = verdict
        if verdict is None or end + verdict[1] != len(data):
            return False  # not simple, or a body still to come, or bytes after the response
        # llhttp never saw this message and still waits for the next one, as after a parse.
        self.bytes_received = len(data)
        self._done = True
        self._headers_done = True
        self._msg_status = self.status = verdict[0]
        self.keep_alive = not self._req_close
        if self.matcher is not None:
            self.matcher.feed(data[end:])
        return True

    # -- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        """httptools callback: a new message starts."""
        if self._done:
            self._trailing = True
            return
        self._begin_message()
        if self._msg_lenient_off:
            self._parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True)
            self._msg_lenient_off = False

    def on_status(self, reason: bytes) -> None:
        """httptools callback: (part of) the reason phrase."""
        self._head_size += len(reason)
        # "OK" and other all-letter reasons cannot hold a control character: skip the regex.
        if not reason.isalpha() and _find_ctl(reason) is not None:
            raise ProtocolViolation("control character in the reason phrase")

    def on_header(self, name: bytes, value: bytes) -> None:
        """httptools callback: one header field."""
        if self._done:
            return
        n = len(name)
        size = self._head_size + n + len(value) + 4
        self._head_size = size
        if size > MAX_HEAD_BYTES:
            raise ProtocolViolation("response head larger than 64 KiB")
        # No control-character check on the value here: llhttp (strict, as we run it) already
        # rejects every CTL but tab in header values. Only three names matter below; their
        # lengths (14, 17, 10) spare a lower() for every other header.
        if n != 14 and n != 17 and n != 10:
            return
        lname = name.lower()
        if lname == b"content-length":
            if len(value.strip(b" \t")) > _MAX_LENGTH_DIGITS:
                raise ProtocolViolation("bad Content-Length")  # as h11 (llhttp takes any)
            self._length = True
        elif lname == b"transfer-encoding":
            if self._chunked or value.strip().lower() != b"chunked":
                self._coding_bad = True
            self._chunked = True
        elif lname == b"connection" and has_close_token(value):
            self._conn_close = True

    def on_headers_complete(self) -> None:
        """httptools callback: the head of a message is complete."""
        if self._done:
            return
        parser = self._parser
        status = parser.get_status_code()
        self._headers_done = True
        self._head_fed = 0
        self._msg_status = status
        # Bare LF line ends are accepted in heads only, like h11, which wants CRLF in chunks
        # (only chunked framing has line ends after the head).
        if self._chunked:
            parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=False)
            self._msg_lenient_off = True
        if self._head_size > MAX_HEAD_BYTES:
            raise ProtocolViolation("response head larger than 64 KiB")
        if status < 100 or status == 101:
            raise ProtocolViolation(f"unexpected status {status}")
        # httptools formats the version as a new string on every call: once per message.
        version = self._version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise ProtocolViolation("unsupported HTTP version")
        if status < 200 and version != "1.1":
            raise ProtocolViolation("interim (1xx) response in HTTP/1.0")
        if self._coding_bad or (self._chunked and self._length):
            raise ProtocolViolation("unsupported or ambiguous Transfer-Encoding")
        if status >= 200 and self._is_head:
            # No body follows a HEAD response, whatever its headers say.
            self._finish(status)
            self._head_msg_open = True

    def on_body(self, body: bytes) -> None:
        """httptools callback: body bytes, fed to the body check; after a HEAD response (or
        any final one), bytes nobody asked for."""
        if self._done:
            self._trailing = True
        elif self.matcher is not None:
            self.matcher.feed(body)

    def on_message_complete(self) -> None:
        """httptools callback: a whole message (interim or final) was parsed."""
        if self._done:
            if self._head_msg_open:
                # The end of the HEAD response itself (llhttp saw a zero length).
                self._head_msg_open = False
            else:
                self._trailing = True
            return
        if self._msg_status >= 200:
            self._finish(self._msg_status)
        else:
            self._begin_message()

    def _finish(self, status: int) -> None:
        self._done = True
        self.status = status
        # Decided like h11 rather than by llhttp's should_keep_alive(), so that both engines
        # agree (llhttp honours HTTP/1.0 keep-alive and says False for a bodiless HEAD).
        self.keep_alive = (
            self._version == "1.1"
            and not self._conn_close
            and not self._req_close
            and not self._trailing
        )


class HttptoolsCookieEngine(HttptoolsEngine):
    """``HttptoolsEngine`` that also collects the final response's ``Set-Cookie`` values
    (``set_cookies``), for scenarios with ``[target] cookies = true``: a subclass, so that
    the parser of every other scenario runs exactly the code it ran before.

    On the fast path the response is judged as ``HttptoolsEngine`` judges it (heads with a
    new session id each are new heads for its cache, which is cleared when full), then the
    ``Set-Cookie`` lines are read from the head.
    """

    __slots__ = ()

    def start(self, req: PreparedRequest) -> bytes:
        """Begin a new request on this connection; return the bytes to send."""
        self.set_cookies = []
        return super().start(req)

    def _begin_message(self) -> None:
        super()._begin_message()
        self.set_cookies = []  # an interim response's headers are not the final one's

    def _simple(self, data: bytes) -> bool:
        if not super()._simple(data):
            return False
        # A whole simple response: its Set-Cookie lines are in the head.
        lower = data[: data.find(b"\r\n\r\n") + 2].lower()
        i = lower.find(_SET_COOKIE_LINE)
        while i >= 0:
            start = i + len(_SET_COOKIE_LINE)
            stop = lower.index(b"\r\n", start)
            cast(list[bytes], self.set_cookies).append(data[start:stop].strip(b" \t"))
            i = lower.find(_SET_COOKIE_LINE, stop)
        return True

    def on_header(self, name: bytes, value: bytes) -> None:
        """httptools callback: one header field (trailer fields do not count)."""
        super().on_header(name, value)
        if (
            len(name) == 10
            and not self._done
            and not self._headers_done
            and name.lower() == b"set-cookie"
        ):
            cast(list[bytes], self.set_cookies).append(value.strip(b" \t"))


_SET_COOKIE_LINE = b"\r\nset-cookie:"


def _simple_verdict(head: bytes) -> tuple[int, int] | None:
    """``(status, content length)`` when ``head`` (ending with the blank line) is a simple
    response head (see ``HttptoolsEngine``), else None."""
    m = _simple_head(head)
    if m is None or m.end() != len(head):
        return None
    status = int(m.group(1))
    lower = head.lower()
    # find() rather than ``in``: bytes.__contains__ first tries its argument as an int and
    # formats a TypeError (2k instructions).
    if status in (204, 304) or lower.find(b"transfer-encoding") >= 0 or lower.find(b"close") >= 0:
        return None
    i = lower.find(_CONTENT_LENGTH) + 17
    if i == 16 or lower.find(_CONTENT_LENGTH, i) >= 0:
        return None  # none, or several
    value = lower[i : lower.index(b"\r\n", i)].strip(b" \t")
    if not value.isdigit() or len(value) > _MAX_LENGTH_DIGITS:
        return None
    return status, int(value)


def httptools_available() -> bool:
    """True when the optional httptools package can be imported."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return False
    return True


def engine_factory(name: str, cookies: bool = False) -> Callable[[], ResponseParser]:
    """A zero-argument constructor of per-connection parsers for engine ``name``; with
    ``cookies``, parsers that collect the final response's ``Set-Cookie`` values.

    ``auto`` picks httptools when it is installed, else h11. Raises ``ConfigError`` for an
    unknown name, or for ``httptools`` when it is not installed.
    """
    if name == "auto":
        name = "httptools" if httptools_available() else "h11"
    if name == "h11":
        cache: dict[PreparedRequest, tuple[Any, ...]] = {}
        return lambda: H11Engine(cache, cookies)
    if name == "httptools":
        if not httptools_available():
            raise ConfigError(
                "HTTP engine 'httptools' is not installed: install z6[fast] "
                "(pip install 'z6[fast]') or use --http h11"
            )
        return HttptoolsCookieEngine if cookies else HttptoolsEngine
    raise ConfigError(f"unknown HTTP engine {name!r} (choose from {', '.join(ENGINE_NAMES)})")
