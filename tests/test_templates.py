"""Request paths with fields: parsing, rendering, determinism, and how a request is rebuilt."""

from __future__ import annotations

import pytest
from conftest import fuzz_examples
from hypothesis import given, settings, strategies as st

from z6.engine.data import Feed
from z6.engine.decisions import ARRIVAL_VU_KEY, draw
from z6.engine.loader import load_scenario_text
from z6.engine.protocol import H11Engine
from z6.engine.requests import PreparedRequest, prepare_requests
from z6.engine.templates import (
    MAX_FIELDS,
    STREAM_PATH,
    TemplateError,
    parse_template,
)


def test_a_path_without_fields_has_no_template() -> None:
    assert parse_template("/items/1?x={y}") is None


def test_fields_split_the_path_into_literal_parts() -> None:
    t = parse_template("/a/{{vu}}/b/{{ iteration }}?r={{random  3 9 }}")
    assert t is not None
    assert t.parts == ("/a/", "/b/", "?r=", "")
    assert [(f.kind, f.low, f.high) for f in t.fields] == [
        ("vu", 0, 0),
        ("iteration", 0, 0),
        ("random", 3, 9),
    ]
    assert t.uses_vu
    assert t.sample() == "/a/0/b/0?r=0"


def test_rendering_is_a_function_of_seed_vu_iteration_and_step() -> None:
    t = parse_template("/i/{{random 10 1000000}}/{{random 0 99}}/{{iteration}}/{{vu}}")
    assert t is not None
    path = t.render(seed=5, vu=3, key_vu=3, iteration=7, step=2)
    first = 10 + draw(5, 3, 7, STREAM_PATH, 2 * MAX_FIELDS + 0) % (1000000 - 10 + 1)
    second = draw(5, 3, 7, STREAM_PATH, 2 * MAX_FIELDS + 1) % 100
    assert path == f"/i/{first}/{second}/7/3"
    assert t.render(5, 3, 3, 7, 2) == path  # no state
    assert t.render(6, 3, 3, 7, 2) != path
    # The open model keys the draws by ARRIVAL_VU_KEY, whatever VU runs the arrival.
    assert (
        t.render(5, 0, ARRIVAL_VU_KEY, 7, 2).split("/")[2:4]
        == t.render(5, 1, ARRIVAL_VU_KEY, 7, 2).split("/")[2:4]
    )


def test_random_values_cover_their_range_and_stay_in_it() -> None:
    t = parse_template("/{{random 1 6}}")
    assert t is not None
    seen = {int(t.render(1, v, v, i, 0)[1:]) for v in range(20) for i in range(20)}
    assert seen == {1, 2, 3, 4, 5, 6}


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/x/{{rand 1 2}}", "unknown field {{rand 1 2}}; a field is"),
        ("/x/{{Iteration}}", "unknown field {{Iteration}} (did you mean {{iteration}}?)"),
        ("/x/{{VU}}", "unknown field {{VU}} (did you mean {{vu}}?)"),
        ("/x/{{}}", "unknown field {{}}"),
        ("/x/{{random 2 1}}", "LOW must be <= HIGH"),
        ("/x/{{random 1 9223372036854775808}}", "LOW must be <= HIGH <= 9223372036854775807"),
        ("/x/{{random 1}}", "write {{random LOW HIGH}} with two whole numbers"),
        ("/x/{{random -1 5}}", "write {{random LOW HIGH}} with two whole numbers"),
        ("/x/{{random ١ ٢}}", "{{random \\u0661 \\u0662}}: a field holds printable ASCII only"),
        ("/x/{{vu", "'{{' without its '}}'"),
        ("/x/{{vu}}{{", "'{{' without its '}}'"),
        ("{{\n{{vu}}", "{{\\x0a{{vu}}: a field holds printable ASCII only"),
        ("/x/{{random 1\r5}}", "{{random 1\\x0d5}}: a field holds printable ASCII only"),
        ("/x/{{random\t1 5}}", "{{random\\x091 5}}: a field holds printable ASCII only"),
        ("/x/{{\u3000random 1 5}}", "{{\\u3000random 1 5}}: a field holds printable ASCII only"),
        ("/" + "{{vu}}" * (MAX_FIELDS + 1), f"at most {MAX_FIELDS} fields per request"),
    ],
)
def test_what_is_not_a_field_is_refused(path: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse_template(path)
    assert fragment in str(info.value)


@settings(max_examples=fuzz_examples(500), deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=6),
            st.sampled_from(
                ["{{", "}}", "{{vu}}", "{{iteration}}", "{{random 1 9}}", "random", "{{u.a}}", "."]
            ),
        ),
        max_size=8,
    ).map("".join)
)
def test_any_path_parses_or_raises_template_error(path: str) -> None:
    try:
        t = parse_template(path)
    except TemplateError:
        return  # the documented error
    if t is None:
        assert "{{" not in path
        return
    for f in t.fields:
        if f.kind == "data":  # the loader checks the names; prepare_requests binds them
            f.bind(Feed("per_vu", 2, 0, 1), ["x", "y"])
    rendered = t.render(1, 2, 2, 3, 4)
    assert "{{" not in "".join(t.parts)
    assert len(t.parts) == len(t.fields) + 1
    assert rendered.startswith(t.parts[0])


SCENARIO = """
[runtime]
iterations = 1
vus = 1
[target]
base_url = "http://127.0.0.1:9"
[[requests]]
name = "item"
method = "POST"
path = "/items/{{random 1 9}}/a|b?n={{iteration}}"
body = "x"
"""


def test_a_request_with_fields_is_rebuilt_per_send_around_its_target() -> None:
    (req,) = prepare_requests(load_scenario_text(SCENARIO, "t.toml"))
    assert req.template is not None
    # The percent-encoding is done on the literal parts, once.
    assert req.template.parts == ("/items/", "/a%7Cb?n=", "")
    sent = req.with_target("/items/7/a%7Cb?n=0")
    assert sent.raw.startswith(b"POST /items/7/a%7Cb?n=0 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n")
    assert sent.raw.endswith(b"Content-Length: 1\r\n\r\nx")
    assert sent.raw == req.raw.replace(req.target.encode(), sent.target.encode())
    assert (sent.base, sent.template, sent.index, sent.headers) == (
        req,
        req.template,
        req.index,
        req.headers,
    )


def test_h11_keeps_one_set_of_events_per_request_definition() -> None:
    (req,) = prepare_requests(load_scenario_text(SCENARIO, "t.toml"))
    engine = H11Engine()
    for n in range(3):
        data = engine.start(req.with_target(f"/items/{n}/a%7Cb?n={n}"))
        assert data.startswith(f"POST /items/{n}/".encode())
        engine.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert list(engine._events) == [req]


BODY = """
[runtime]
iterations = 1
vus = 1
[target]
base_url = "http://127.0.0.1:9"
[[requests]]
name = "create"
method = "POST"
path = "/u/{{random 1 9}}"
body = '{"id": {{random 1 1000000}}, "it": {{iteration}}, "name": "é"}'
"""


def test_a_body_with_fields_is_rendered_with_its_own_content_length() -> None:
    (req,) = prepare_requests(load_scenario_text(BODY, "t.toml"))
    assert req.varies
    assert req.body_template is not None
    sent = req.render(5, 0, 0, 7, 0)
    # The body's field counts after the path's: k = 1.
    path_value = 1 + draw(5, 0, 7, STREAM_PATH, 0) % 9
    body_value = 1 + draw(5, 0, 7, STREAM_PATH, 1) % 1000000
    body = f'{{"id": {body_value}, "it": 7, "name": "é"}}'.encode()
    assert sent.target == f"/u/{path_value}"
    assert sent.body == body
    head, _, tail = sent.raw.partition(b"\r\n\r\n")
    assert tail == body
    assert head.startswith(f"POST /u/{path_value} HTTP/1.1\r\n".encode())
    assert head.endswith(f"Content-Length: {len(body)}".encode())
    assert head.count(b"Content-Length") == 1
    assert req.raw.endswith(req.body_template.sample().encode())  # the definition's sample


def test_h11_takes_rendered_bodies_of_any_length() -> None:
    # h11's events were built from the first rendered request: its body's length disagreed
    # with the definition's Content-Length and h11 refused every such request.
    (req,) = prepare_requests(load_scenario_text(BODY, "t.toml"))
    engine = H11Engine()
    lengths = set()
    for it in range(20):
        sent = req.render(3, 0, 0, it, 0)
        lengths.add(len(sent.body))
        assert engine.start(sent) == sent.raw
        engine.feed(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
    assert len(lengths) > 1


HEADERS = """
[runtime]
iterations = 1
vus = 1
[target]
base_url = "http://127.0.0.1:9"
[[requests]]
name = "create"
method = "POST"
path = "/u/{{random 1 9}}"
body = "n={{random 1 99}}"
[requests.headers]
X-Request-Id = "r-{{random 1 1000000000}}-{{iteration}}"
Accept = "*/*"
User-Agent = "ua-{{vu}}-{{random 5 100000}}"
"""


def _one(text: str) -> PreparedRequest:
    (req,) = prepare_requests(load_scenario_text(text, "t.toml"))
    return req


def test_header_values_with_fields_are_rendered_in_the_head() -> None:
    req = _one(HEADERS)
    assert req.varies
    sent = req.render(5, 2, 2, 7, 3)
    # The draw index: the path's field (k = 0), the body's (1), then the header values' in
    # the order the file writes them (X-Request-Id 2 and 3, User-Agent 4 and 5), whatever order
    # they go on the wire in (User-Agent replaces z6's default in place, second).
    path = 1 + draw(5, 2, 7, STREAM_PATH, 3 * MAX_FIELDS + 0) % 9
    body = f"n={1 + draw(5, 2, 7, STREAM_PATH, 3 * MAX_FIELDS + 1) % 99}".encode()
    request_id = 1 + draw(5, 2, 7, STREAM_PATH, 3 * MAX_FIELDS + 2) % 1000000000
    agent = 5 + draw(5, 2, 7, STREAM_PATH, 3 * MAX_FIELDS + 5) % 99996
    assert (
        sent.raw
        == (
            f"POST /u/{path} HTTP/1.1\r\n"
            "Host: 127.0.0.1:9\r\n"
            f"User-Agent: ua-2-{agent}\r\n"
            f"X-Request-Id: r-{request_id}-7\r\n"
            "Accept: */*\r\n"
            f"Content-Length: {len(body)}\r\n"
            "\r\n"
        ).encode()
        + body
    )
    assert (sent.target, sent.body) == (f"/u/{path}", body)
    # The definition keeps each field as 0: h11 builds its events from it.
    assert sent.base is req
    assert sent.headers is req.headers
    assert (b"X-Request-Id", b"r-0-0") in req.headers
    assert req.render(5, 2, 2, 7, 3).raw == sent.raw  # no state
    assert req.render(5, 2, 2, 8, 3).raw != sent.raw


@pytest.mark.parametrize(
    ("path", "body"),
    [("/u/{{random 1 9}}", "n={{random 1 99}}"), ("/u/1", "n={{random 1 99}}"), ("/u/1", "n=1")],
)
def test_header_fields_count_after_the_path_s_and_the_body_s(path: str, body: str) -> None:
    text = HEADERS.replace("/u/{{random 1 9}}", path).replace("n={{random 1 99}}", body)
    sent = _one(text).render(5, 2, 2, 7, 0)
    k = path.count("{{") + body.count("{{")
    request_id = 1 + draw(5, 2, 7, STREAM_PATH, k) % 1000000000
    assert f"\r\nX-Request-Id: r-{request_id}-7\r\n".encode() in sent.raw
    _, _, tail = sent.raw.partition(b"\r\n\r\n")
    assert tail == sent.body
    if "{{" not in body:
        assert sent.body == b"n=1"
        assert sent.raw.endswith(b"\r\nContent-Length: 3\r\n\r\nn=1")


def test_a_request_without_header_fields_renders_byte_for_byte_as_before() -> None:
    # The paths and bodies of existing scenarios: header fields take draws after theirs only.
    text = HEADERS.replace('"r-{{random 1 1000000000}}-{{iteration}}"', '"r-1"').replace(
        '"ua-{{vu}}-{{random 5 100000}}"', '"ua"'
    )
    req = _one(text)
    assert req.header_templates == ()
    sent = req.render(5, 2, 2, 7, 3)
    path = 1 + draw(5, 2, 7, STREAM_PATH, 3 * MAX_FIELDS + 0) % 9
    body = f"n={1 + draw(5, 2, 7, STREAM_PATH, 3 * MAX_FIELDS + 1) % 99}".encode()
    assert (
        sent.raw
        == (
            f"POST /u/{path} HTTP/1.1\r\nHost: 127.0.0.1:9\r\nUser-Agent: ua\r\n"
            f"X-Request-Id: r-1\r\nAccept: */*\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
    )
    # The same request with header fields sends the same path and body.
    with_fields = _one(HEADERS).render(5, 2, 2, 7, 3)
    assert (with_fields.target, with_fields.body) == (sent.target, sent.body)
    plain = _one(text.replace("/u/{{random 1 9}}", "/u/1").replace("{{random 1 99}}", "1"))
    assert not plain.varies
    assert plain.raw == (
        b"POST /u/1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nUser-Agent: ua\r\nX-Request-Id: r-1\r\n"
        b"Accept: */*\r\nContent-Length: 3\r\n\r\nn=1"
    )


def test_only_header_fields_make_a_request_vary_and_h11_sends_the_rendered_bytes() -> None:
    text = HEADERS.replace("/u/{{random 1 9}}", "/u/1").replace("{{random 1 99}}", "1")
    req = _one(text)
    assert req.varies
    assert (req.template, req.body_template) == (None, None)
    engine = H11Engine()
    seen = set()
    for it in range(5):
        sent = req.render(3, 1, 1, it, 0)
        assert sent.target == "/u/1"
        assert sent.raw.endswith(b"\r\nContent-Length: 3\r\n\r\nn=1")
        seen.add(sent.raw)
        assert engine.start(sent) == sent.raw
        engine.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert len(seen) == 5
    assert list(engine._events) == [req]


def test_a_rendered_request_shares_every_slot_but_target_raw_and_body() -> None:
    # _copy writes the slots out one by one: a slot added to the class and forgotten there
    # would be missing from every rendered request.
    req = _one(HEADERS)
    sent = req.render(1, 0, 0, 0, 0)
    for name in PreparedRequest.__slots__:
        if name not in ("target", "raw", "body"):
            assert getattr(sent, name) is getattr(req, name), name
    assert sent.base is req
    # Each slot to its own place: with a distinct object in every slot, a copy that took one
    # slot's value for another (or a constant) shows.
    marks = {name: object() for name in PreparedRequest.__slots__}
    for name, mark in marks.items():
        object.__setattr__(req, name, mark)
    copy = req._copy("t", b"r", b"b")
    for name, mark in marks.items():
        if name not in ("target", "raw", "body"):
            assert getattr(copy, name) is mark, name
    assert (copy.target, copy.raw, copy.body) == ("t", b"r", b"b")


def test_a_rendered_request_keeps_its_body_check() -> None:
    # A request with fields is a new object per send: its body check must come along.
    req = _one(
        HEADERS.replace(
            'body = "n={{random 1 99}}"', 'body = "n={{random 1 99}}"\nexpect_body_contains = "ok"'
        )
    )
    sent = req.render(1, 0, 0, 0, 0)
    engine = H11Engine()
    engine.start(sent)
    assert engine.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnope")
    assert engine.matcher is not None
    assert not engine.matcher.ok


def test_text_around_a_header_field_goes_out_as_utf8() -> None:
    req = _one(HEADERS.replace('"r-{{random 1 1000000000}}-{{iteration}}"', '"é{{vu}}☃ x"'))
    sent = req.render(1, 4, 4, 0, 0)
    assert "X-Request-Id: é4☃ x\r\n".encode() in sent.raw
    assert "X-Request-Id: é0☃ x\r\n".encode() in req.raw  # the definition: fields as 0
