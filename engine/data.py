"""Data files (``[[data]]``): CSV rows whose cells fill ``{{NAME.COLUMN}}`` fields.

**Pure.** :func:`read_csv` turns a file's bytes into column names and cells (the loader reads
the file, once, before the workers fork); :class:`Feed` chooses the row of an iteration, a
function of the seed, the VU and the iteration only (``docs/determinism.md``), so every layout
sends the same rows; :func:`encode_path_value` is how a cell goes into a request path.

Rows are numbered from 0 (row 0 is the first line after the column names), as in the
formulas; messages also give the 1-based line where a row starts.
"""

from __future__ import annotations

import csv
import re
from urllib.parse import quote

from z6.engine.decisions import ARRIVAL_VU_KEY, draw_keyed, vu_key

__all__ = [
    "ORDERS",
    "STREAM_DATA",
    "DataFileError",
    "Feed",
    "encode_path_value",
    "read_csv",
]

STREAM_DATA = 4
"""Stream id of the ``random`` row choice: ``draw(seed, vu, iteration, STREAM_DATA, index)``
with ``index`` the data source's position among the ``[[data]]`` tables (no other decision
uses this stream, so no other draw moves)."""

ORDERS = ("per_iteration", "per_vu", "random")
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


class DataFileError(ValueError):
    """A CSV file that cannot be used: ``message`` says why; ``line`` (1-based) is where,
    when one line is to blame."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line

    def __str__(self) -> str:
        return self.message if self.line is None else f"line {self.line}: {self.message}"


def read_csv(data: bytes) -> tuple[list[str], list[list[str]]]:
    """The column names and the cells, column by column (``cells[c][r]`` is row ``r``'s
    value of column ``c``), of a CSV file: RFC 4180 as Python's ``csv`` module reads it
    (``,`` between cells, ``"`` around a cell holding a comma, quote or line break, ``""``
    for a quote inside), UTF-8 with an optional byte-order mark. The first row names the
    columns (stripped of outer white space, each non-empty and unique); then at least one
    row, each with exactly one cell per column. Raises :class:`DataFileError` naming the line
    (and row) at fault."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Line ends as the reader splits them: CRLF, CR or LF.
        before = data[: exc.start]
        line = before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n") + 1
        raise DataFileError(f"not valid UTF-8 (byte {exc.start})", line) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text:
        raise DataFileError("is empty: its first line names the columns (email,password)")
    # The lines as io.StringIO(text, newline="") gives them (ends kept, at CRLF, CR or LF),
    # without its copy of the text (four bytes per character: 140 MB for a 37 MB file).
    reader = csv.reader((m.group() for m in _LINE.finditer(text)), strict=True)
    start = 1  # the line where the next record starts
    try:
        header = next(reader)
        start = reader.line_num + 1
        if not header:
            raise DataFileError("the first line is blank: it names the columns", 1)
        # Names are stripped: "email, password" (a space after the comma) names "password",
        # which a field can write ({{users.password}}); cells are kept as they are.
        header = [name.strip() for name in header]
        seen: dict[str, int] = {}
        for c, name in enumerate(header):
            if not name:
                raise DataFileError(f"column {c + 1} has no name", 1)
            if name in seen:
                raise DataFileError(
                    f"column {name!r} is named twice (columns {seen[name] + 1} and {c + 1})", 1
                )
            seen[name] = c
        width = len(header)
        columns: list[list[str]] = [[] for _ in header]
        row = 0
        for cells in reader:
            where = f"row {row}"
            if not cells:
                raise DataFileError(
                    f'{where} is blank (a one-column file writes an empty value as "")', start
                )
            if len(cells) != width:
                raise DataFileError(
                    f"{where} has {len(cells)} cell{'s' if len(cells) != 1 else ''}, the first "
                    f"line names {width} column{'s' if width != 1 else ''}",
                    start,
                )
            for column, cell in zip(columns, cells, strict=True):
                column.append(cell)
            row += 1
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataFileError(f"not valid CSV: {exc}", start) from None
    if row == 0:
        raise DataFileError("has no data rows: only the line of column names")
    return list(header), columns


def encode_path_value(value: str) -> str:
    """A cell as it goes into a request path: every character but the unreserved ones
    (``A-Z a-z 0-9 - . _ ~``) percent-encoded as UTF-8, ``/``, ``?``, ``#``, ``%``, ``&``,
    ``=`` and ``+`` included: a value is data and never changes the path's structure (a
    segment, the query, a parameter), and the server decodes it back to the cell."""
    return quote(value, safe="")


class Feed:
    """The row choice of one data source of ``rows`` rows, ``index``-th among the ``[[data]]``
    tables, for a schedule of ``peak`` VUs (see :meth:`row`)."""

    __slots__ = ("_keys", "index", "order", "peak", "rows")

    def __init__(self, order: str, rows: int, index: int, peak: int) -> None:
        if order not in ORDERS or rows < 1 or peak < 1:
            raise ValueError(f"bad feed: order {order!r}, {rows} rows, peak {peak}")
        self.order = order
        self.rows = rows
        self.index = index
        self.peak = peak
        self._keys: dict[tuple[int, int], int] = {}

    def row(self, seed: int, vu: int, key_vu: int, iteration: int) -> int:
        """The row used by every field of this source in ``iteration`` of ``vu`` (``key_vu``
        is ``ARRIVAL_VU_KEY`` in the open model, where ``iteration`` is the arrival number):

        - ``per_vu``: ``vu % rows`` (closed model only);
        - ``per_iteration``: ``(iteration * peak + vu) % rows``; open model
          ``iteration % rows``;
        - ``random``: ``draw(seed, key_vu, iteration, STREAM_DATA, index) % rows``.
        """
        order = self.order
        if order == "per_iteration":
            if key_vu == ARRIVAL_VU_KEY:
                return iteration % self.rows
            return (iteration * self.peak + vu) % self.rows
        if order == "per_vu":
            return vu % self.rows
        key = self._keys.get((seed, key_vu))
        if key is None:
            key = self._keys[seed, key_vu] = vu_key(seed, key_vu, STREAM_DATA)
        return draw_keyed(key, iteration, self.index) % self.rows
