"""Prepared requests: the bytes of each ``[[requests]]`` entry, built once before the run.

**Pure**: no sockets. A VU sends the same request definition thousands of times, so everything
that does not change between sends (request line, headers, body, timeout, status check) is
computed here once and shared read-only by every connection.

Header rules (documented in ``docs/scenario.md``):

- z6 sends ``Host`` (``host[:port]``, the port only when it is not the scheme's default) and
  ``User-Agent: z6/<version>`` first; a user header of the same name (case-insensitive)
  replaces the default value in place.
- ``Content-Length`` is added when the request has a body, and as ``0`` for an empty
  POST/PUT/PATCH (many servers answer 411 otherwise). The loader rejects a user
  ``Content-Length`` or ``Transfer-Encoding``: z6 always frames bodies by length itself.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from z6.engine.body_check import BodyCheck
from z6.engine.data import Feed
from z6.engine.errors import ScenarioError
from z6.engine.scenario import DataSpec, Scenario
from z6.engine.schedule import peak_vus
from z6.engine.templates import Template, parse_template
from z6.engine.version import __version__

USER_AGENT = f"z6/{__version__}".encode("ascii")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
# Characters left as they are in a request target; everything else (spaces, non-ASCII) is
# percent-encoded so the request line stays valid HTTP.
_SAFE_TARGET_CHARS = "/:@!$&'()*+,;=?#%~[]-._"


class PreparedRequest:
    """One request definition, serialized once and reused for every send.

    ``headers`` holds the header fields in sending order as ``(name, value)`` bytes;
    ``raw`` the complete request (request line, headers, blank line, body).
    ``is_head`` tells the response parser that the response has no body, and
    ``connection_close`` that the user asked for ``Connection: close``; ``body_check``, when
    set, is what the response body must (not) contain. A path with fields
    (``{{random 1 100}}``, see ``templates``) has its ``template`` (over the percent-encoded
    target), a body with fields its ``body_template``, header values with fields their
    ``header_templates``; such a request ``varies``, and each send then uses :meth:`render`,
    whose result's ``base`` is this request (its ``headers`` and ``raw`` hold each field as
    ``0``). Treat instances as immutable.
    """

    __slots__ = (
        "_after",
        "_before",
        "_head",
        "_mid",
        "base",
        "body",
        "body_check",
        "body_template",
        "connection_close",
        "expect_status",
        "header_templates",
        "headers",
        "host_header",
        "index",
        "is_head",
        "method",
        "name",
        "raw",
        "target",
        "template",
        "timeout_ns",
        "timeout_s",
        "varies",
    )

    def __init__(
        self,
        *,
        index: int,
        name: str,
        method: str,
        target: str,
        host_header: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout_s: float,
        expect_status: frozenset[int] | None,
        template: Template | None = None,
        body_template: Template | None = None,
        body_check: BodyCheck | None = None,
        header_templates: tuple[tuple[int, Template, int], ...] = (),
    ) -> None:
        self.base = self
        self.body_check = body_check
        self.template = template
        self.body_template = body_template
        self.header_templates = tuple(sorted(header_templates, key=lambda h: h[0]))
        self.varies = template is not None or body_template is not None or bool(header_templates)
        self.index = index
        self.name = name
        self.method = method
        self.target = target
        self.host_header = host_header
        self.headers = headers
        self.body = body
        self.timeout_s = timeout_s
        self.timeout_ns = round(timeout_s * 1_000_000_000)
        self.expect_status = expect_status
        self.is_head = method == "HEAD"
        self.connection_close = any(
            n.lower() == b"connection" and has_close_token(v) for n, v in headers
        )
        self._before, self._after = _serialize(method, headers, body)
        self.raw = self._before + target.encode("ascii") + self._after
        # A body with fields: the head after the target up to Content-Length, which each send
        # appends with the rendered body's length.
        self._mid = b""
        if body_template is not None:
            others = [(n, v) for n, v in headers if n.lower() != b"content-length"]
            self._mid = _serialize(method, others, b"")[1][:-2]  # without the blank line
        # Header values with fields: the bytes after the target around each of them (up to
        # Content-Length when the body has fields, to the end of the body otherwise).
        self._head: tuple[bytes, ...] = ()
        if header_templates:
            self._head = _head_around(
                headers, {i for i, _, _ in header_templates}, body, body_template is not None
            )

    def render(self, seed: int, vu: int, key_vu: int, iteration: int, step: int) -> PreparedRequest:
        """This request as sent by ``vu`` in ``step`` of ``iteration`` (a request that
        ``varies``): its fields rendered (``templates``), the rest shared."""
        if self.header_templates:
            return self._render_headers(seed, vu, key_vu, iteration, step)
        template = self.template
        target = (
            self.target if template is None else template.render(seed, vu, key_vu, iteration, step)
        )
        body_template = self.body_template
        if body_template is None:
            return self.with_target(target)
        first = 0 if template is None else template.indexed
        body = body_template.render(seed, vu, key_vu, iteration, step, first).encode(
            "utf-8", "surrogatepass"
        )
        raw = b"".join(
            (
                self._before,
                target.encode("ascii"),
                self._mid,
                b"Content-Length: %d\r\n\r\n" % len(body),
                body,
            )
        )
        return self._copy(target, raw, body)

    def _render_headers(
        self, seed: int, vu: int, key_vu: int, iteration: int, step: int
    ) -> PreparedRequest:
        """:meth:`render` for a request with header values with fields: its head is rebuilt
        around the rendered values (``_head``)."""
        template = self.template
        target = (
            self.target if template is None else template.render(seed, vu, key_vu, iteration, step)
        )
        head = self._head
        out = [self._before, target.encode("ascii"), head[0]]
        for k, (_, value, first) in enumerate(self.header_templates, start=1):
            out.append(value.render(seed, vu, key_vu, iteration, step, first).encode("utf-8"))
            out.append(head[k])
        body_template = self.body_template
        body = self.body
        if body_template is not None:
            first = 0 if template is None else template.indexed
            body = body_template.render(seed, vu, key_vu, iteration, step, first).encode(
                "utf-8", "surrogatepass"
            )
            out += (b"Content-Length: %d\r\n\r\n" % len(body), body)
        return self._copy(target, b"".join(out), body)

    def with_target(self, target: str) -> PreparedRequest:
        """This request sent to ``target`` (a rendered ``template``): a copy that shares
        everything but ``target`` and ``raw``; its ``base`` is this request (what per-request
        caches key on)."""
        return self._copy(target, self._before + target.encode("ascii") + self._after, self.body)

    def with_cookie(self, cookie: bytes) -> PreparedRequest:
        """This request (as rendered) with the jar's ``cookie`` (``a=1; b=2``) in its
        ``Cookie`` header: appended after ``; `` to the value of the user's own ``Cookie``
        header, else a header of its own at the end of the head. Only ``raw`` changes: the
        framing does not, so h11's events of the definition (``base``) still apply."""
        raw = self.raw
        end = raw.find(b"\r\n\r\n")  # header values hold no CR/LF: the end of the head
        head = raw[: end + 2]
        at = head.lower().find(b"\r\ncookie:")
        if at < 0:
            new = b"".join((head, b"Cookie: ", cookie, b"\r\n", raw[end + 2 :]))
        else:
            eol = head.index(b"\r\n", at + 2)
            value = raw[at + 9 : eol].strip(b" \t")
            sep = b"" if not value else b" " if value.endswith(b";") else b"; "
            new = b"".join((raw[:eol], sep, cookie, raw[eol:]))
        return self._copy(self.target, new, self.body)

    def _copy(self, target: str, raw: bytes, body: bytes) -> PreparedRequest:
        # Every slot but target, raw and body, written out: a loop of getattr/setattr cost
        # about 1 µs per send, a third of a render (a test checks that every slot is copied).
        copy = PreparedRequest.__new__(PreparedRequest)
        copy._after = self._after
        copy._before = self._before
        copy._head = self._head
        copy._mid = self._mid
        copy.base = self.base
        copy.body_check = self.body_check
        copy.body_template = self.body_template
        copy.connection_close = self.connection_close
        copy.expect_status = self.expect_status
        copy.header_templates = self.header_templates
        copy.headers = self.headers
        copy.host_header = self.host_header
        copy.index = self.index
        copy.is_head = self.is_head
        copy.method = self.method
        copy.name = self.name
        copy.template = self.template
        copy.timeout_ns = self.timeout_ns
        copy.timeout_s = self.timeout_s
        copy.varies = self.varies
        copy.target = target
        copy.raw = raw
        copy.body = body
        return copy

    def is_success(self, status: int) -> bool:
        """True when ``status`` passes the check: in ``expect_status``, else below 400."""
        if self.expect_status is not None:
            return status in self.expect_status
        return status < 400

    def __repr__(self) -> str:
        return f"PreparedRequest({self.index}, {self.name!r}, {self.method} {self.target})"


def has_close_token(value: bytes) -> bool:
    """True when a ``Connection`` header value lists ``close``: the token rule h11 uses
    (one element of the comma-separated list, any case; ``closed`` does not count)."""
    lvalue = value.lower()
    # Most values say "keep-alive": the substring test settles them without splitting.
    return lvalue.find(b"close") >= 0 and any(t.strip() == b"close" for t in lvalue.split(b","))


def _head_around(
    headers: list[tuple[bytes, bytes]], varying: set[int], body: bytes, body_varies: bool
) -> tuple[bytes, ...]:
    """The bytes after the target, cut out around the values of ``headers[i]`` for ``i`` in
    ``varying``: ``len(varying) + 1`` pieces. They end with the body, or, when the body
    ``varies``, before the Content-Length line, which each send writes with its length."""
    pieces: list[bytes] = []
    piece = [b" HTTP/1.1\r\n"]
    for i, (name, value) in enumerate(headers):
        if body_varies and name.lower() == b"content-length":
            continue
        if i in varying:
            piece += [name, b": "]
            pieces.append(b"".join(piece))
            piece = [b"\r\n"]
        else:
            piece += [name, b": ", value, b"\r\n"]
    if not body_varies:
        piece += [b"\r\n", body]
    pieces.append(b"".join(piece))
    return tuple(pieces)


def _serialize(method: str, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[bytes, bytes]:
    """The request as it goes on the wire, before and after its target."""
    parts = [b" HTTP/1.1\r\n"]
    for name, value in headers:
        parts += [name, b": ", value, b"\r\n"]
    parts.append(b"\r\n")
    parts.append(body)
    return method.encode("ascii") + b" ", b"".join(parts)


def parse_base_url(url: str) -> tuple[str, str, int, str]:
    """Split ``base_url`` into ``(scheme, host, port, path_prefix)``.

    The port defaults to 80/443; ``path_prefix`` has no trailing slash (``""`` when the URL
    has no path). Raises ``ValueError`` for a scheme other than http/https or a missing host
    (the loader validates URLs first, so this only guards direct callers).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} (use http:// or https://)")
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in URL {url!r}")
    port = parts.port or _DEFAULT_PORTS[scheme]
    return scheme, host, port, parts.path.rstrip("/")


def host_header_value(scheme: str, host: str, port: int) -> str:
    """The ``Host`` header for a target: ``host`` or ``host:port``, IPv6 in brackets."""
    shown = f"[{host}]" if ":" in host else host
    if port != _DEFAULT_PORTS.get(scheme):
        shown += f":{port}"
    return shown


def join_target(prefix: str, path: str) -> str:
    """Join the base URL's path prefix with a request path, with exactly one slash between."""
    if not path.startswith("/"):
        path = "/" + path
    if prefix:
        path = prefix.rstrip("/") + path
    return _quote_target(path)


def _quote_target(text: str) -> str:
    return quote(text, safe=_SAFE_TARGET_CHARS)


def _check_header(index: int, name: str, value: str) -> None:
    """Reject header text that would break the request framing (CR, LF, NUL, empty name)."""
    bad = ("\r", "\n", "\0")
    if not name or any(c in name for c in (*bad, ":", " ", "\t")):
        raise ScenarioError(f"invalid header name {name!r}", key=f"requests[{index}].headers")
    if any(c in value for c in bad):
        raise ScenarioError(
            f"header {name!r} contains a line break or NUL", key=f"requests[{index}].headers"
        )


def prepare_requests(scenario: Scenario) -> list[PreparedRequest]:
    """Build one ``PreparedRequest`` per ``[[requests]]`` entry, indexed like the scenario.

    Raises ``ScenarioError`` for headers that cannot be sent (line breaks, a
    ``Content-Length`` that disagrees with the body, ``Transfer-Encoding``).
    """
    scheme, host, port, prefix = parse_base_url(scenario.target.base_url)
    default_host = host_header_value(scheme, host, port)
    prepared: list[PreparedRequest] = []
    feeds = _feeds(scenario)
    for index, spec in enumerate(scenario.requests):
        body = spec.body_bytes
        body_template = _with_parts(spec.body, spec.body_parts, feeds)
        if body_template is not None:
            # Each send renders it: the request keeps a sample (fields as 0) for its
            # Content-Length and for h11's one set of events per definition.
            body = body_template.sample().encode("utf-8", "surrogatepass")
        elif not body and spec.body is not None:
            body = spec.body.encode("utf-8")
        # Defaults first, so a user header of the same name replaces the value in place.
        fields: dict[str, tuple[str, str]] = {
            "host": ("Host", default_host),
            "user-agent": ("User-Agent", USER_AGENT.decode("ascii")),
        }
        # Header values with fields, in file order: their templates, sent with each field as
        # 0 in the definition (for h11's events), rendered per send.
        value_templates: dict[str, Template] = {}
        header_parts = spec.header_parts or {}
        for name, value in spec.headers.items():
            value_template = _with_parts(value, header_parts.get(name), feeds)
            if value_template is not None:
                value_templates[name.lower()] = value_template
                value = value_template.sample()
            _check_header(index, name, value)
            fields[name.lower()] = (name, value)
        if "transfer-encoding" in fields:
            raise ScenarioError(
                "Transfer-Encoding cannot be set: z6 sends bodies with Content-Length",
                file=scenario.source_path or None,
                key=f"requests[{index}].headers",
            )
        user_length = fields.pop("content-length", None)
        if user_length is not None and user_length[1].strip() != str(len(body)):
            raise ScenarioError(
                f"Content-Length {user_length[1]!r} does not match the body ({len(body)} bytes)",
                file=scenario.source_path or None,
                key=f"requests[{index}].headers",
            )
        if body or spec.method in _METHODS_WITH_BODY or user_length is not None:
            fields["content-length"] = ("Content-Length", str(len(body)))
        headers = [(n.encode("utf-8"), v.encode("utf-8")) for n, v in fields.values()]
        template = _with_parts(spec.path, spec.path_parts, feeds, path=True)
        # The draw index of a header value's first field: after the path's and the body's.
        next_field = (0 if template is None else template.indexed) + (
            0 if body_template is None else body_template.indexed
        )
        header_templates: list[tuple[int, Template, int]] = []
        wire = list(fields)  # lower-case names in sending order
        for lower, value_template in value_templates.items():
            header_templates.append((wire.index(lower), value_template, next_field))
            next_field += value_template.indexed
        if template is not None:
            # The fields render as digits: encoding the literal parts encodes the whole target.
            first, *rest = template.parts
            template = Template(
                (join_target(prefix, first), *map(_quote_target, rest)), template.fields
            )
        prepared.append(
            PreparedRequest(
                index=index,
                name=spec.name,
                method=spec.method,
                target=(join_target(prefix, spec.path) if template is None else template.sample()),
                host_header=fields["host"][1],
                headers=headers,
                body=body,
                timeout_s=spec.timeout_ms / 1000.0,
                expect_status=(
                    frozenset(spec.expect_status) if spec.expect_status is not None else None
                ),
                template=template,
                body_template=body_template,
                body_check=_body_check(spec.expect_body_contains, spec.expect_body_not_contains),
                header_templates=tuple(header_templates),
            )
        )
    return prepared


def _body_check(
    present: str | list[str] | None, absent: str | list[str] | None
) -> BodyCheck | None:
    """The ``BodyCheck`` of a request's ``expect_body_contains`` / ``..._not_contains``."""

    def texts(value: str | list[str] | None) -> tuple[bytes, ...]:
        if value is None:
            return ()
        texts = [value] if isinstance(value, str) else value
        return tuple(t.encode("utf-8", "surrogatepass") for t in texts)

    if present is None and absent is None:
        return None
    return BodyCheck(texts(present), texts(absent))


_Feeds = dict[str, tuple[Feed, DataSpec]]


def _feeds(scenario: Scenario) -> _Feeds:
    """The row choice of each ``[[data]]`` source, by name, with its loaded cells."""
    if not scenario.data:
        return {}  # and no schedule needed: scenarios built by hand may have none filled in
    peak = peak_vus(scenario.schedule)
    return {
        spec.name: (Feed(spec.order, spec.rows, index, peak), spec)
        for index, spec in enumerate(scenario.data)
        if spec.rows > 0  # not read (analyze, replay): no field can be rendered
    }


def _with_parts(
    written: str | None, parts: list[str] | None, feeds: _Feeds, *, path: bool = False
) -> Template | None:
    """The template of a path, body or header value with fields: its fields as written in
    the file, its literal parts as the loader resolved them (``${NAME}``); ``None`` without
    fields. Its data fields are bound to their feeds and cells (percent-encoded in a
    ``path``, ``engine/data.encode_path_value``)."""
    if written is None or parts is None:
        return None
    template = parse_template(written)
    if template is None or len(template.parts) != len(parts):
        raise ScenarioError(f"{written!r}: the loader's parts do not match its fields")
    for field in template.fields:
        if field.kind != "data":
            continue
        feed, spec = feeds.get(field.source, (None, None))
        cells = None
        if feed is not None and spec is not None and field.column in spec.columns:
            column = spec.columns.index(field.column)
            cells = spec.path_cells.get(column) if path else spec.cells[column]
        if feed is None or cells is None:
            # The loader read the file and encoded the path's columns: only a scenario built
            # without them (analyze, replay, a hand-made one) gets here.
            raise ScenarioError(
                f"{written!r}: {{{{{field.source}.{field.column}}}}} has no loaded data"
            )
        field.bind(feed, cells)
    return Template(tuple(parts), template.fields)


def make_request(
    method: str,
    target: str,
    *,
    host: str = "127.0.0.1",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    timeout_s: float = 30.0,
    expect_status: frozenset[int] | None = None,
    index: int = 0,
    name: str = "request",
    body_check: BodyCheck | None = None,
) -> PreparedRequest:
    """A ``PreparedRequest`` built directly (tests, ``z6 demo``), with Host/User-Agent added.

    ``Content-Length`` is added under the same rule as ``prepare_requests``.
    """
    fields: list[tuple[bytes, bytes]] = [
        (b"Host", host.encode("ascii")),
        (b"User-Agent", USER_AGENT),
    ]
    fields += headers or []
    if body or method in _METHODS_WITH_BODY:
        fields.append((b"Content-Length", str(len(body)).encode("ascii")))
    return PreparedRequest(
        index=index,
        name=name,
        method=method,
        target=target,
        host_header=host,
        headers=fields,
        body=body,
        timeout_s=timeout_s,
        expect_status=expect_status,
        body_check=body_check,
    )
