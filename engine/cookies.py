"""A VU's cookie jar: a practical subset of RFC 6265 for one target host.

No sockets, and no monotonic clock of its own (the caller passes ``now``, seconds of a
monotonic clock); only an ``Expires`` date is compared with the wall clock once, when it is
stored. Used only when the scenario says ``[target] cookies = true`` (see ``docs/scenario.md``,
"Cookies"):

- ``store`` takes the ``Set-Cookie`` values of one complete final response (any status) and
  keeps ``name=value`` under (name, path). A value that cannot be parsed (no ``=``, an empty
  name, a control character, a name and value over ``MAX_COOKIE_BYTES``) is ignored, never an
  error.
- ``Max-Age`` (digits, optionally ``-``) wins over ``Expires``: ``<= 0`` deletes the cookie,
  otherwise it expires that many seconds after the response. ``Expires`` is read with
  ``email.utils.parsedate_to_datetime`` (the usual ``Wdy, DD Mon YYYY HH:MM:SS GMT``); a date
  in the past deletes, a future one expires then (converted to the monotonic clock); a date
  it cannot read is ignored (a session cookie).
- ``Domain`` (a leading dot dropped, any case) must domain-match the target host (equal to
  it, or a parent domain of a host name); a cookie for another domain is ignored. With one
  target host, a cookie kept is sent on every request whose path matches.
- ``Path``: a missing or relative value takes the default path of the request path (its
  directory, RFC 6265 5.1.4); a cookie is sent only when the request path path-matches.
- ``Secure``: sent only over https; a ``Secure`` cookie set over plain http is ignored
  (RFC 6265bis: it could never be sent, and must not replace one that can).
- ``HttpOnly``, ``SameSite`` and any other attribute are ignored (there is no browser).

``header`` gives the value of one ``Cookie`` header: ``name=value`` pairs joined by ``"; "``,
longer paths first, then in the order they were first set (RFC 6265 5.4); expired cookies are
dropped first. A jar holds at most ``MAX_COOKIES`` cookies; further new ones are ignored.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from z6.engine.requests import PreparedRequest

MAX_COOKIES = 100
"""Cookies one jar holds; new ones past it are ignored (RFC 6265 asks for at least 50)."""
MAX_COOKIE_BYTES = 4096
"""Largest ``name=value`` kept, in bytes (RFC 6265 asks for at least 4096)."""

_NEVER = float("inf")
_MAX_AGE_CAP = 400 * 86400  # RFC 6265bis caps Max-Age and Expires at 400 days
# Control characters but tab: a cookie holding one is ignored (RFC 6265bis), so the Cookie
# header can never carry CR, LF or NUL.
_find_ctl = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]").search
_WS = b" \t"


class _Cookie:
    __slots__ = ("expiry", "order", "pair", "path", "secure")

    def __init__(self, pair: bytes, path: str, secure: bool, expiry: float, order: int) -> None:
        self.pair = pair
        self.path = path
        self.secure = secure
        self.expiry = expiry
        self.order = order


def default_path(request_path: str) -> str:
    """RFC 6265 5.1.4: the directory of ``request_path`` (``/`` at the top)."""
    if not request_path.startswith("/"):
        return "/"
    cut = request_path.rfind("/")
    return "/" if cut == 0 else request_path[:cut]


def path_matches(request_path: str, cookie_path: str) -> bool:
    """RFC 6265 5.1.4: ``cookie_path`` is ``request_path`` or one of its directories."""
    if request_path == cookie_path:
        return True
    return request_path.startswith(cookie_path) and (
        cookie_path.endswith("/") or request_path[len(cookie_path)] == "/"
    )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class CookieJar:
    """The cookies of one VU (closed model) or one iteration (open model) for ``host``."""

    __slots__ = ("_cookies", "_host", "_host_is_ip", "_order")

    def __init__(self, host: str) -> None:
        self._host = host.lower().rstrip(".")
        self._host_is_ip = _is_ip(self._host)
        self._cookies: dict[tuple[bytes, str], _Cookie] = {}
        self._order = 0

    def __len__(self) -> int:
        return len(self._cookies)

    def store(
        self, set_cookie_values: Iterable[bytes], request_path: str, https: bool, now: float
    ) -> None:
        """Keep (or delete) the cookies of ``Set-Cookie`` values received at ``now`` in the
        response to a request for ``request_path`` (its path, no query)."""
        for value in set_cookie_values:
            self._store_one(value, request_path, https, now)

    def header(self, request_path: str, https: bool, now: float) -> bytes | None:
        """The ``Cookie`` header value for a request to ``request_path`` at ``now``, or None
        when no cookie applies."""
        cookies = self._cookies
        if not cookies:
            return None
        expired = [key for key, c in cookies.items() if c.expiry <= now]
        for key in expired:
            del cookies[key]
        chosen = [
            c
            for c in cookies.values()
            if (https or not c.secure) and path_matches(request_path, c.path)
        ]
        if not chosen:
            return None
        chosen.sort(key=lambda c: (-len(c.path), c.order))
        return b"; ".join(c.pair for c in chosen)

    def _store_one(self, line: bytes, request_path: str, https: bool, now: float) -> None:
        pair, _, attrs = line.partition(b";")
        name, eq, value = pair.partition(b"=")
        name = name.strip(_WS)
        value = value.strip(_WS)
        if not eq or not name or len(name) + len(value) + 1 > MAX_COOKIE_BYTES:
            return
        if _find_ctl(name) is not None or _find_ctl(value) is not None:
            return
        path: str | None = None
        secure = False
        max_age: float | None = None
        expires: float | None = None
        domain = b""
        for attr in attrs.split(b";"):
            key, _, arg = attr.partition(b"=")
            key = key.strip(_WS).lower()
            arg = arg.strip(_WS)
            # An attribute that cannot be read is ignored, and the last readable one of a
            # kind wins (RFC 6265 5.2, 5.3): "Max-Age=10; Max-Age=abc" lasts 10 s.
            if key == b"max-age":
                read = _parse_max_age(arg)
                max_age = max_age if read is None else read
            elif key == b"expires":
                read = _parse_expires(arg)
                expires = expires if read is None else read
            elif key == b"domain":
                domain = arg.lstrip(b".").lower() or domain
            elif key == b"path":
                path = arg.decode("latin-1") if arg.startswith(b"/") else None
            elif key == b"secure":
                secure = True
        if domain and not self._domain_matches(domain):
            return
        if secure and not https:
            return
        if path is None:
            path = default_path(request_path)
        if max_age is not None:
            expiry = _NEVER if max_age == _NEVER else (now + max_age if max_age > 0 else -_NEVER)
        elif expires is not None:
            expiry = now + expires if expires > 0 else -_NEVER
        else:
            expiry = _NEVER
        key_ = (bytes(name), path)
        cookies = self._cookies
        old = cookies.get(key_)
        if expiry <= now:
            if old is not None:
                del cookies[key_]
            return
        if old is not None:
            order = old.order  # a replaced cookie keeps its creation time (RFC 6265 5.3)
        elif len(cookies) >= MAX_COOKIES:
            return
        else:
            order = self._order
            self._order += 1
        cookies[key_] = _Cookie(bytes(name) + b"=" + bytes(value), path, secure, expiry, order)

    def _domain_matches(self, domain: bytes) -> bool:
        try:
            text = domain.decode("ascii").rstrip(".")
        except UnicodeDecodeError:
            return False
        host = self._host
        if text == host:
            return True
        return not self._host_is_ip and host.endswith("." + text)


def _parse_max_age(arg: bytes) -> float | None:
    """Seconds from ``Max-Age``, capped; None when it is not ``-?DIGITS``."""
    digits = arg[1:] if arg.startswith(b"-") else arg
    if not digits or not digits.isdigit():
        return None
    if arg.startswith(b"-"):
        return 0.0
    # Compared as text first: int() of a huge digit string is slow and may be refused.
    if len(digits) > 12:
        return float(_MAX_AGE_CAP)
    return float(min(int(digits), _MAX_AGE_CAP))


def _parse_expires(arg: bytes) -> float | None:
    """Seconds from now to an ``Expires`` date (<= 0: in the past), capped; None when the
    date cannot be read."""
    if len(arg) > 64:
        return None
    try:
        when = parsedate_to_datetime(arg.decode("latin-1"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        left = (when - datetime.now(UTC)).total_seconds()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(left, float(_MAX_AGE_CAP))


def cookie_host(requests: Sequence[PreparedRequest], url_host: str) -> str:
    """The host a jar's cookies belong to: the host of the ``Host`` header the requests send
    (a scenario may point ``base_url`` at a backend's address and send the public name in
    ``Host``, and the server's ``Domain`` names the public one), else ``url_host``. Requests
    that send different ``Host`` values keep ``url_host`` (``z6 validate`` notes it)."""
    hosts = {_strip_port(r.host_header) for r in requests}
    if len(hosts) == 1:
        return hosts.pop()
    return url_host


def _strip_port(host_header: str) -> str:
    """``host[:port]`` or ``[v6]:port`` without the port and brackets, lower case."""
    text = host_header.strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text[1:]
    if text.count(":") == 1:
        return text.split(":", 1)[0]
    return text
