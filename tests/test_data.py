"""Data files ([[data]]): CSV reading, the row of each iteration, rendering, and the loader's
checks (docs/scenario.md, "Data files"; docs/determinism.md, "Rows of data files")."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest
from conftest import fuzz_examples
from hypothesis import HealthCheck, given, settings, strategies as st

from z6.engine.data import STREAM_DATA, DataFileError, Feed, encode_path_value, read_csv
from z6.engine.decisions import ARRIVAL_VU_KEY, STREAM_REQUEST, STREAM_THINK, draw
from z6.engine.describe import describe_scenario
from z6.engine.errors import ScenarioError
from z6.engine.loader import MAX_BODY_BYTES, load_scenario_text
from z6.engine.requests import prepare_requests
from z6.engine.scenario import Scenario
from z6.engine.templates import MAX_FIELDS, STREAM_PATH, parse_template

USERS = b"email,password,tenant\na@x.com,p1,t1\nb@x.com,p2,t2\nc@x.com,p3,t3\n"

# --------------------------------------------------------------------------- read_csv


def test_a_csv_file_gives_its_column_names_and_its_cells_column_by_column() -> None:
    columns, cells = read_csv(USERS)
    assert columns == ["email", "password", "tenant"]
    assert cells == [["a@x.com", "b@x.com", "c@x.com"], ["p1", "p2", "p3"], ["t1", "t2", "t3"]]


@pytest.mark.parametrize(
    "data",
    [
        b"a,b\r\n1,2\r\n3,4\r\n",  # CRLF, as RFC 4180 writes it
        b"a,b\n1,2\n3,4",  # no line break at the end
        b"\xef\xbb\xbfa,b\n1,2\n3,4\n",  # a byte-order mark
    ],
    ids=["crlf", "no-final-newline", "bom"],
)
def test_line_ends_and_a_byte_order_mark_change_nothing(data: bytes) -> None:
    assert read_csv(data) == (["a", "b"], [["1", "3"], ["2", "4"]])


def test_quoted_cells_hold_commas_quotes_line_breaks_and_any_text() -> None:
    data = 'id,text\n1,"a, b"\n2,"say ""hi"""\n3,"two\r\nlines"\n4,"x\ny"\n5,é ü 日本\n6,\n'
    columns, cells = read_csv(data.encode("utf-8"))
    assert columns == ["id", "text"]
    assert cells[1] == ["a, b", 'say "hi"', "two\r\nlines", "x\ny", "é ü 日本", ""]
    # As the csv module writes them: a file it wrote reads back as it was.
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows(zip(*cells, strict=True))
    assert read_csv(out.getvalue().encode("utf-8")) == (columns, cells)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty: its first line names the columns"),
        (b"\xef\xbb\xbf", "is empty"),
        (b"\nx\n", "line 1: the first line is blank"),
        (b"a,,c\n1,2,3\n", "line 1: column 2 has no name"),
        (b"a,b,a\n1,2,3\n", "line 1: column 'a' is named twice (columns 1 and 3)"),
        (b"a,b\n", "has no data rows: only the line of column names"),
        (b"a,b\n1,2\n3\n", "line 3: row 1 has 1 cell, the first line names 2 columns"),
        (b"a,b\n1,2\n3,4,5\n", "line 3: row 1 has 3 cells, the first line names 2 columns"),
        # A cell over two lines: the next row starts on line 4.
        (b'a,b\n1,"2\n2"\n3,4,5\n', "line 4: row 1 has 3 cells"),
        (b"a,b\n1,2\n\n3,4\n", "line 3: row 1 is blank"),
        (b"a,b\n1,2\n3,\xff\n", "line 3: not valid UTF-8 (byte 10)"),
        (b"a,b\r1,2\r3,\xff\r", "line 3: not valid UTF-8 (byte 10)"),  # CR-only line ends
        (b"a,b\r\n1,2\r\n3,\xff\r\n", "line 3: not valid UTF-8 (byte 12)"),
        (b"a, a\n1,2\n", "line 1: column 'a' is named twice (columns 1 and 2)"),
        (b'a,b\n1,2\n"3"4,5\n', "line 3: not valid CSV: ',' expected after '\"'"),
        (b'a,b\n1,"2\n3,4\n', "line 2: not valid CSV: unexpected end of data"),
    ],
)
def test_every_refusal_names_its_line_and_row(data: bytes, message: str) -> None:
    with pytest.raises(DataFileError) as info:
        read_csv(data)
    assert str(info.value).startswith(message), str(info.value)


# --------------------------------------------------------------------------- rows


def test_column_names_are_stripped_cells_are_not() -> None:
    # "email, password" (a space after the comma) names a column a field can write.
    assert read_csv(b"email, password \n a , b\n") == (["email", "password"], [[" a "], [" b"]])
    with pytest.raises(DataFileError, match="column 2 has no name"):
        read_csv(b"a, \n1,2\n")


def test_per_vu_gives_each_vu_its_row() -> None:
    feed = Feed("per_vu", rows=3, index=0, peak=5)
    assert [feed.row(9, vu, vu, it) for vu in range(5) for it in range(2)] == [
        vu % 3 for vu in range(5) for _ in range(2)
    ]


def test_per_iteration_gives_each_vu_and_iteration_its_own_row_until_the_rows_wrap() -> None:
    feed = Feed("per_iteration", rows=1000, index=0, peak=4)
    rows = [feed.row(9, vu, vu, it) for vu in range(4) for it in range(250)]
    assert sorted(rows) == list(range(1000))  # each row once
    assert feed.row(9, 3, 3, 7) == (7 * 4 + 3) % 1000
    small = Feed("per_iteration", rows=7, index=0, peak=4)
    assert small.row(9, 3, 3, 7) == (7 * 4 + 3) % 7
    # The open model: the arrival number, whatever pool VU runs it.
    assert small.row(9, 0, ARRIVAL_VU_KEY, 12) == small.row(9, 2, ARRIVAL_VU_KEY, 12) == 12 % 7


def test_random_rows_are_draws_of_their_own_stream_keyed_by_the_source_s_index() -> None:
    assert STREAM_DATA not in (STREAM_REQUEST, STREAM_THINK, STREAM_PATH)
    first = Feed("random", rows=1000, index=0, peak=4)
    second = Feed("random", rows=1000, index=1, peak=4)
    for vu, it in ((0, 0), (3, 7), (ARRIVAL_VU_KEY, 5)):
        assert first.row(9, vu, vu, it) == draw(9, vu, it, STREAM_DATA, 0) % 1000
        assert second.row(9, vu, vu, it) == draw(9, vu, it, STREAM_DATA, 1) % 1000
    # Another seed, other rows; all rows come up.
    assert [first.row(9, 1, 1, i) for i in range(20)] != [first.row(8, 1, 1, i) for i in range(20)]
    small = Feed("random", rows=4, index=0, peak=1)
    assert {small.row(1, 0, 0, i) for i in range(100)} == {0, 1, 2, 3}


def test_a_feed_needs_rows_a_peak_and_a_known_order() -> None:
    for args in (("per_vu", 0, 0, 1), ("per_vu", 1, 0, 0), ("sequential", 1, 0, 1)):
        with pytest.raises(ValueError, match="bad feed"):
            Feed(*args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- rendering


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("abc-XYZ_0.9~", "abc-XYZ_0.9~"),
        ("a/b", "a%2Fb"),
        ("a b", "a%20b"),
        ("x?y#z", "x%3Fy%23z"),
        ("50%", "50%25"),
        ("a&b=c+d", "a%26b%3Dc%2Bd"),
        ("a@x.com", "a%40x.com"),
        ("é", "%C3%A9"),
        ("\r\n\0", "%0D%0A%00"),
    ],
)
def test_a_value_in_a_path_is_percent_encoded_except_unreserved_characters(
    value: str, encoded: str
) -> None:
    assert encode_path_value(value) == encoded


def test_data_fields_take_their_cell_in_the_row_of_the_iteration_and_no_draw_index() -> None:
    t = parse_template("/u/{{ users.email }}/{{random 1 1000000}}/{{users.tenant}}")
    assert t is not None
    assert [(f.kind, f.source, f.column) for f in t.fields][::2] == [
        ("data", "users", "email"),
        ("data", "users", "tenant"),
    ]
    assert t.indexed == 1
    assert t.sample() == "/u/0/0/0"
    feed = Feed("per_iteration", rows=3, index=0, peak=2)
    t.fields[0].bind(feed, ["a", "b", "c"])
    t.fields[2].bind(feed, ["t1", "t2", "t3"])
    for vu, it in ((0, 0), (1, 0), (0, 1), (1, 4)):
        row = (it * 2 + vu) % 3
        random = 1 + draw(5, vu, it, STREAM_PATH, 3 * MAX_FIELDS + 0) % 1000000
        expected = f"/u/{'abc'[row]}/{random}/t{row + 1}"
        assert t.render(5, vu, vu, it, 3) == expected
    # Each field but the data ones counts: the second random field is k = 3, not 5.
    t = parse_template(
        "/{{users.email}}{{random 1 9}}/{{iteration}}/{{users.email}}/{{vu}}/{{random 1 99999}}"
    )
    assert t is not None
    t.fields[0].bind(feed, ["a", "b", "c"])
    t.fields[3].bind(feed, ["a", "b", "c"])

    def rnd(high: int, k: int) -> int:
        return 1 + draw(5, 1, 4, STREAM_PATH, 3 * MAX_FIELDS + k) % high

    cell = "abc"[(4 * 2 + 1) % 3]
    assert t.render(5, 1, 1, 4, 3) == f"/{cell}{rnd(9, 0)}/4/{cell}/1/{rnd(99999, 3)}"
    with pytest.raises(ValueError, match="2 cells for a feed of 3 rows"):
        t.fields[0].bind(feed, ["too", "few"])
    unbound = parse_template("/{{users.email}}")
    assert unbound is not None
    with pytest.raises(RuntimeError, match="not bound"):
        unbound.render(1, 0, 0, 0, 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{users.}}", "a data field is {{NAME.COLUMN}}"),
        ("{{1users.email}}", "a data field is {{NAME.COLUMN}}"),
        ("{{.email}}", "a data field is {{NAME.COLUMN}}"),
        ("{{random 1.5 9}}", "write {{random LOW HIGH}} with two whole numbers"),
    ],
)
def test_a_data_field_needs_a_name_and_a_column(text: str, message: str) -> None:
    from z6.engine.templates import TemplateError

    with pytest.raises(TemplateError, match=message.replace("{", r"\{").replace(".", r"\.")):
        parse_template(text)


# --------------------------------------------------------------------------- the loader

BASE = """
[runtime]
iterations = 2
vus = 2
prng_seed = 3
[target]
base_url = "http://127.0.0.1:9"
"""
DATA = '[[data]]\nname = "users"\nfile = "users.csv"\n'
LOGIN = """
[[requests]]
name = "login"
method = "POST"
path = "/login/{{users.email}}"
body = '{"user": "{{users.email}}", "password": "{{users.password}}"}'
headers = { "X-Tenant" = "{{users.tenant}}" }
"""


def load_in(tmp: Path, text: str, csv_bytes: bytes | None = USERS, **kw: object) -> Scenario:
    """Load ``text`` as ``tmp/s.toml``, with ``csv_bytes`` in ``tmp/users.csv``."""
    if csv_bytes is not None:
        (tmp / "users.csv").write_bytes(csv_bytes)
    kw.setdefault("env", {})
    return load_scenario_text(text, str(tmp / "s.toml"), **kw)  # type: ignore[arg-type]


def fail_in(tmp: Path, text: str, csv_bytes: bytes | None = USERS, **kw: object) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_in(tmp, text, csv_bytes, **kw)
    return info.value


@pytest.mark.parametrize(
    ("schedule", "vus_override", "peak"),
    [
        ("", 4, 4),  # --vus sets the peak of a constant schedule
        (
            '[schedule]\ntype = "ramp"\nstart_vus = 1\nend_vus = 4\nramp_duration_seconds = 1\n',
            None,
            4,
        ),
        (
            '[schedule]\ntype = "steps"\nsteps = [{vus = 2, duration_seconds = 1}, '
            "{vus = 5, duration_seconds = 1}, {vus = 1, duration_seconds = 1}]\n",
            None,
            5,
        ),
    ],
)
def test_per_iteration_rows_use_the_peak_as_run(
    tmp_path: Path, schedule: str, vus_override: int | None, peak: int
) -> None:
    # P in (i * P + v) % R is the schedule's peak after any --vus, not runtime.vus or the
    # starting VUs.
    from z6.engine.overrides import apply_overrides

    base = BASE.replace("iterations = 2", "duration_seconds = 3")
    rows = b"email,password,tenant\n" + b"".join(b"u%d@x.com,p,t\n" % i for i in range(100))
    s = load_in(tmp_path, base + schedule + DATA + LOGIN, rows)
    if vus_override is not None:
        s = apply_overrides(s, vus=vus_override)
    (req,) = prepare_requests(s)
    for vu, iteration in ((0, 0), (1, 3), (3, 7)):
        row = (iteration * peak + vu) % 100
        assert req.render(3, vu, vu, iteration, 0).target == f"/login/u{row}%40x.com"


def test_a_scenario_with_a_data_file_loads_its_rows_and_sends_them(tmp_path: Path) -> None:
    s = load_in(tmp_path, BASE + DATA + LOGIN)
    (spec,) = s.data
    assert (spec.name, spec.order, spec.rows) == ("users", "per_iteration", 3)
    assert spec.file == str(tmp_path / "users.csv")
    assert spec.columns == ["email", "password", "tenant"]
    assert spec.path_cells == {0: ["a%40x.com", "b%40x.com", "c%40x.com"]}
    (req,) = prepare_requests(s)
    for vu, it in ((0, 0), (1, 0), (0, 1), (1, 1)):
        row = (it * 2 + vu) % 3
        email, password, tenant = (c[row] for c in spec.cells)
        raw = req.render(3, vu, vu, it, 0).raw
        assert raw.startswith(f"POST /login/{email.replace('@', '%40')} HTTP/1.1\r\n".encode())
        assert f"\r\nX-Tenant: {tenant}\r\n".encode() in raw
        assert raw.endswith(f'{{"user": "{email}", "password": "{password}"}}'.encode())
    described = describe_scenario(s)
    assert "Data (1):" in described
    assert f"users: {spec.file}, order per_iteration, 3 rows, columns email, password, " in (
        described
    )
    assert f"sha256 {spec.sha256[:16]}" in described


def test_every_step_of_a_sequence_uses_the_iteration_s_row(tmp_path: Path) -> None:
    text = BASE + DATA + 'order = "random"\n' + LOGIN
    text += '[[requests]]\nname = "me"\nmethod = "GET"\npath = "/me?u={{users.email}}"\n'
    text += '[sequence]\nsteps = [{request = "login"}, {request = "me", repeat = 2}]\n'
    s = load_in(tmp_path, text)
    login, me = prepare_requests(s)
    for vu, it in ((0, 0), (1, 5), (0, 9)):
        row = draw(3, vu, it, STREAM_DATA, 0) % 3
        email = s.data[0].cells[0][row].replace("@", "%40")
        assert login.render(3, vu, vu, it, 0).target == f"/login/{email}"
        for step in (1, 2):
            assert me.render(3, vu, vu, it, step).target == f"/me?u={email}"


def test_a_data_field_shifts_no_other_field_s_draw(tmp_path: Path) -> None:
    # The same random values with the data field and without it: it takes no draw index.
    req = (
        '[[requests]]\nname = "a"\nmethod = "POST"\npath = "/{{random 1 999999}}"\n'
        "body = 'n={{random 1 999999}}'\n"
        'headers = { "X-Id" = "{{random 1 999999}}" }\n'
    )
    with_data = (
        req.replace('"/{{', '"/{{users.tenant}}/{{')
        .replace("'n=", "'{{users.email}}n=")
        .replace('"{{random 1 999999}}" }', '"{{users.tenant}}{{random 1 999999}}" }')
    )
    (plain,) = prepare_requests(load_in(tmp_path, BASE + req))
    (data,) = prepare_requests(load_in(tmp_path, BASE + DATA + with_data))
    for vu, it in ((0, 0), (1, 3)):
        row = (it * 2 + vu) % 3
        a, b = plain.render(3, vu, vu, it, 0), data.render(3, vu, vu, it, 0)
        tenant, email = f"t{row + 1}", "abc"[row] + "@x.com"
        assert b.target == f"/{tenant}" + a.target
        assert b.body == email.encode() + a.body
        x_id = a.raw.split(b"X-Id: ")[1].split(b"\r\n")[0]
        assert f"\r\nX-Id: {tenant}".encode() + x_id + b"\r\n" in b.raw


@pytest.mark.parametrize(
    ("extra", "key", "message", "hint"),
    [
        (
            DATA + LOGIN.replace('users.email}}"', 'user.email}}"'),
            "requests[0].path",
            "{{user.email}}: no [[data]] is named 'user'; the [[data]] names: 'users'",
            "users",
        ),
        (
            LOGIN,
            "requests[0].path",
            "{{users.email}}: no [[data]] is named 'users'; there is no [[data]] table",
            None,
        ),
        (
            DATA + LOGIN.replace("users.password", "users.pasword"),
            "requests[0].body",
            "{{users.pasword}}: users.csv has no column 'pasword'; its columns: 'email', "
            "'password', 'tenant'",
            "password",
        ),
        (
            DATA + DATA + LOGIN,
            "data[1].name",
            "duplicate data name 'users' (first used by data[0])",
            None,
        ),
        (
            DATA.replace('"users"', '"my-users"') + LOGIN,
            "data[0].name",
            "invalid data name 'my-users': letters, digits and _, not first a digit",
            None,
        ),
        (
            DATA.replace("users.csv", "nope.csv") + LOGIN,
            "data[0].file",
            "file not found: ",
            None,
        ),
        (
            DATA + 'order = "per-vu"\n' + LOGIN,
            "data[0].order",
            "invalid value 'per-vu'; expected one of: per_iteration, per_vu, random",
            "per_vu",
        ),
        (
            DATA.replace("file =", "path =") + LOGIN,
            "data[0].path",
            "unknown key 'path' in [data]",
            None,
        ),
        (
            DATA + 'name = "x"\n' + LOGIN,
            None,
            "TOML syntax error",
            None,
        ),
        (
            "data = 3\n" + LOGIN,
            "data",
            "expected an array of tables [[data]], got integer",
            None,
        ),
    ],
)
def test_each_data_error_names_its_key(
    tmp_path: Path, extra: str, key: str | None, message: str, hint: str | None
) -> None:
    text = (extra + BASE) if extra.startswith("data =") else BASE + extra
    err = fail_in(tmp_path, text)
    assert (err.key, err.hint) == (key, hint), str(err)
    assert message in err.message, err.message
    assert err.file == str(tmp_path / "s.toml")


@pytest.mark.parametrize(
    ("csv_bytes", "message"),
    [
        (b"", "users.csv: is empty"),
        (b"email,password,tenant\n", "users.csv: has no data rows"),
        (USERS + b"d@x.com,p4\n", "users.csv: line 5: row 3 has 2 cells, the first line names 3"),
        (b"email,email\n1,2\n", "users.csv: line 1: column 'email' is named twice"),
    ],
)
def test_a_bad_file_is_refused_with_its_name_and_line(
    tmp_path: Path, csv_bytes: bytes, message: str
) -> None:
    err = fail_in(tmp_path, BASE + DATA + LOGIN, csv_bytes)
    assert err.key == "data[0].file"
    assert err.message.startswith(message), err.message


def test_a_data_file_is_limited_to_64_mib(tmp_path: Path) -> None:
    big = tmp_path / "users.csv"
    with big.open("wb") as f:
        f.truncate(MAX_BODY_BYTES + 1)  # sparse: no 64 MiB written
    err = fail_in(tmp_path, BASE + DATA + LOGIN, None)
    assert err.key == "data[0].file"
    assert f"is {MAX_BODY_BYTES + 1} bytes; data files are limited to {MAX_BODY_BYTES}" in (
        err.message
    )
    os.truncate(big, 0)


def test_a_line_break_in_a_cell_a_header_sends_is_refused_naming_its_row(tmp_path: Path) -> None:
    bad = b'email,password,tenant\na@x.com,p1,t1\n"b\nx@x.com",p2,t2\nc@x.com,p3,"t\r3"\n'
    err = fail_in(tmp_path, BASE + DATA + LOGIN, bad)
    assert err.key == "requests[0].headers.X-Tenant"
    assert err.message == (
        "{{users.tenant}}: users.csv line 5 (row 2) holds a line break or NUL in column "
        "'tenant', which a header value cannot carry"
    )
    # The same cells in a path (encoded) and a body (as they are) are fine.
    s = load_in(tmp_path, BASE + DATA + LOGIN.replace("{{users.tenant}}", "t"), bad)
    (req,) = prepare_requests(s)
    assert req.render(3, 1, 1, 0, 0).target == "/login/b%0Ax%40x.com"
    nul = USERS.replace(b"t2", b"t\x002")
    assert "line 3 (row 1)" in fail_in(tmp_path, BASE + DATA + LOGIN, nul).message


@pytest.mark.parametrize(
    ("tenant", "header", "problem"),
    [
        (b"t\x012", "{{users.tenant}}", "a control character"),
        (b" t2", "{{users.tenant}}", "a space or tab at the start or end of the value"),
        (b"t2 ", "{{users.tenant}}", "a space or tab at the start or end of the value"),
        (b"t2\t", "x-{{users.tenant}}", "a space or tab at the start or end of the value"),
    ],
)
def test_a_cell_a_header_value_cannot_carry_is_refused(
    tmp_path: Path, tenant: bytes, header: str, problem: str
) -> None:
    # h11 refuses to send a value with outer white space or (some) control characters.
    text = BASE + DATA + LOGIN.replace("{{users.tenant}}", header)
    err = fail_in(tmp_path, text, USERS.replace(b"t2", tenant))
    assert err.message == (
        f"{{{{users.tenant}}}}: users.csv line 3 (row 1) holds {problem} in column 'tenant', "
        "which a header value cannot carry"
    )
    # Inside the value, a space is fine.
    load_in(
        tmp_path,
        BASE + DATA + LOGIN.replace("{{users.tenant}}", "x-{{users.tenant}}-y"),
        USERS.replace(b"t2", b" t 2 "),
    )


def test_per_vu_has_no_meaning_in_the_open_model(tmp_path: Path) -> None:
    open_model = (
        '[runtime]\nduration_seconds = 1\n[target]\nbase_url = "http://127.0.0.1:9"\n'
        '[schedule]\ntype = "arrival_rate"\nrate = 10\nmax_vus = 2\n'
    )
    per_vu = DATA + 'order = "per_vu"\n'
    err = fail_in(tmp_path, open_model + per_vu + LOGIN)
    assert err.key == "data[0].order"
    assert err.message.startswith("per_vu has no meaning in the open model (arrival_rate)")
    # per_iteration takes the arrival's number.
    s = load_in(tmp_path, open_model + DATA + LOGIN)
    (req,) = prepare_requests(s)
    for n in range(5):
        email = s.data[0].cells[0][n % 3].replace("@", "%40")
        assert req.render(3, n % 2, ARRIVAL_VU_KEY, n, 0).target == f"/login/{email}"


def test_without_external_files_the_data_file_is_not_read(tmp_path: Path) -> None:
    # analyze and replay rebuild the scenario from the log: the file may be gone.
    s = load_in(tmp_path, BASE + DATA + LOGIN, None, resolve_external=False)
    (spec,) = s.data
    assert (spec.rows, spec.columns, spec.cells) == (0, [], [])
    assert "(file not read)" in describe_scenario(s)
    # Names are still checked; columns cannot be.
    bad_name = LOGIN.replace('users.email}}"', 'usr.email}}"')
    err = fail_in(tmp_path, BASE + DATA + bad_name, None, resolve_external=False)
    assert err.key == "requests[0].path"
    load_in(tmp_path, BASE + DATA + LOGIN.replace("password", "nope"), None, resolve_external=False)
    with pytest.raises(ScenarioError, match="has no loaded data"):
        prepare_requests(s)


def test_data_fields_count_toward_the_16_fields_of_a_request(tmp_path: Path) -> None:
    path = "/" + "/".join(["{{users.email}}"] * 8 + ["{{iteration}}"] * 8)
    req = f'[[requests]]\nname = "a"\nmethod = "GET"\npath = "{path}"\n'
    load_in(tmp_path, BASE + DATA + req)
    err = fail_in(tmp_path, BASE + DATA + req + 'headers = { "X" = "{{users.tenant}}" }\n')
    assert err.key == "requests[0].headers.X"
    assert "at most 16 fields per request" in err.message


def test_environment_values_are_never_read_as_data_fields(tmp_path: Path) -> None:
    req = '[[requests]]\nname = "a"\nmethod = "POST"\npath = "/"\nbody = "${B}{{users.email}}"\n'
    s = load_in(tmp_path, BASE + DATA + req, env={"B": "{{users.password}}"})
    (prepared,) = prepare_requests(s)
    assert prepared.render(3, 0, 0, 0, 0).body == b"{{users.password}}a@x.com"
    # A cell holding ${NAME} or {{...}} is sent as it is.
    s = load_in(
        tmp_path, BASE + DATA + req, USERS.replace(b"a@x.com", b"${B}{{vu}}"), env={"B": ""}
    )
    (prepared,) = prepare_requests(s)
    assert prepared.render(3, 0, 0, 0, 0).body == b"${B}{{vu}}"


_ALPHABET = st.sampled_from('ab,"\r\n\0é \ufeff')
_CELL = st.text(alphabet=_ALPHABET, max_size=4)


def _written(rows: list[list[str]]) -> str:
    """``rows`` under the header ``a,b`` as the csv module writes them (quoted as needed)."""
    out = io.StringIO()
    csv.writer(out).writerows([["a", "b"], *rows])
    return out.getvalue()


# Files the csv module wrote (valid, with any cells), text after a header that has the
# column (mostly invalid in some way), and any text.
_CSV_TEXT = st.one_of(
    st.lists(st.lists(_CELL, min_size=2, max_size=2), min_size=1, max_size=4).map(_written),
    st.tuples(
        st.sampled_from(["a,b\n", "a\n", "b,a\r\n", "\ufeffa,b\n", '"a",b\n']),
        st.text(alphabet=_ALPHABET, max_size=30),
    ).map("".join),
    st.text(alphabet=_ALPHABET, max_size=30),
)
# As bytes, and bytes that need not be UTF-8 (after a header of the column, mostly).
_CSV_BYTES = st.one_of(
    _CSV_TEXT.map(lambda text: text.encode("utf-8")),
    st.tuples(st.sampled_from([b"a,b\n", b""]), st.binary(max_size=20)).map(b"".join),
)


@settings(
    max_examples=fuzz_examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(_CSV_BYTES, st.sampled_from(["path", "body", "header"]))
def test_any_csv_file_loads_or_raises_scenario_error(
    tmp_path: Path, data: bytes, where: str
) -> None:
    # The column used is "a"; whatever the file, the load ends in a Scenario or ScenarioError.
    req = '[[requests]]\nname = "r"\nmethod = "POST"\npath = "/x"\n'
    if where == "path":
        req = req.replace('"/x"', '"/x/{{users.a}}"')
    elif where == "body":
        req += 'body = "{{users.a}}"\n'
    else:
        req += 'headers = { "X-A" = "{{users.a}}" }\n'
    try:
        s = load_in(tmp_path, BASE + DATA + req, data)
    except ScenarioError as exc:
        key = exc.key
    else:
        key = None
        check_loaded(s, where)
    # A refusal names its key: the file's, the field's for a file without a column "a", or
    # the header's for a line break in a cell.
    field = {"path": "requests[0].path", "body": "requests[0].body"}
    assert key in (None, "data[0].file", field.get(where, "requests[0].headers.X-A"))


def check_loaded(s: Scenario, where: str) -> None:
    """The loaded cells of column "a" are what each send carries."""
    (spec,) = s.data
    assert spec.rows >= 1
    assert all(len(column) == spec.rows for column in spec.cells)
    (prepared,) = prepare_requests(s)
    for vu in range(2):
        sent = prepared.render(3, vu, vu, 0, 0)
        cell = spec.cells[spec.columns.index("a")][vu % spec.rows]
        if where == "path":
            assert sent.target == "/x/" + encode_path_value(cell)
            sent.target.encode("ascii")
            assert " " not in sent.target
            assert "#" not in sent.target
        elif where == "body":
            assert sent.body == cell.encode("utf-8")
        else:
            assert f"\r\nX-A: {cell}\r\n".encode() in sent.raw
