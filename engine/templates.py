"""Paths, bodies and header values that vary per request: ``{{vu}}``, ``{{iteration}}``,
``{{random LOW HIGH}}``.

**Pure.** A path such as ``/items/{{random 1 10000}}?page={{iteration}}`` (or a body, or a
header value) is parsed
once into literal parts and fields; each send renders it with values that depend only on the
seed, the VU, the iteration and the step (``docs/determinism.md``), so the same seed sends the
same requests in any worker layout. Fields:

- ``{{vu}}``: the VU id (0-based, as in the event log). Not in the open model, where the VU
  that runs an arrival depends on timing.
- ``{{iteration}}``: the VU's iteration (0-based); in the open model the arrival number.
- ``{{random LOW HIGH}}``: an integer from LOW to HIGH, both included (0 <= LOW <= HIGH <
  2**63), uniform (a splitmix64 draw reduced modulo the span: a bias below 2**-31 for spans up
  to 2**32).
- ``{{NAME.COLUMN}}``: the cell of column COLUMN of ``[[data]]`` source NAME in the row of the
  iteration (``engine/data.py``). Parsed here by name; the loader checks the names and
  ``prepare_requests`` binds the field to its cells (:meth:`Field.bind`). It takes no draw
  index: the indexes of the other fields are what they would be without it.

Spaces inside the braces are allowed (``{{ random 1 10 }}``). Anything else between ``{{`` and
``}}``, or a ``{{`` without its ``}}``, is a :class:`TemplateError`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from z6.engine.decisions import MASK64, draw_keyed, vu_key

if TYPE_CHECKING:
    from z6.engine.data import Feed

__all__ = [
    "MAX_FIELDS",
    "STREAM_PATH",
    "DataTemplate",
    "Field",
    "Template",
    "TemplateError",
    "parse_template",
]

STREAM_PATH = 3
"""Stream id of the ``{{random}}`` draws: ``draw(seed, vu, iteration, STREAM_PATH, step *
MAX_FIELDS + k)`` for field ``k`` of the request of step ``step``, counting the path's fields
first, then the body's, then the header values' (in the order the headers are written)."""

MAX_FIELDS = 16
"""Fields one request may hold, path, body and header values together (the draw's last input
packs the step and the field's index)."""

_MAX_RANDOM = 2**63 - 1
_FIELD_RE = re.compile(r"\{\{(.*?)\}\}", re.S)
_FIELD_TEXT_RE = re.compile(r"[ -~]*")  # printable ASCII: spaces, no tab or line break
_KINDS = "{{vu}}, {{iteration}} or {{random LOW HIGH}} (or {{NAME.COLUMN}}, a [[data]] cell)"
_DATA_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\.(.*?)\s*")


class TemplateError(ValueError):
    """Raised by :func:`parse_template` for a ``{{...}}`` that is not a field it knows;
    the message says what is wrong (the loader adds the key path)."""


class Field:
    """One ``{{...}}`` of a path, body or header value: ``kind`` is ``"vu"``,
    ``"iteration"``, ``"random"`` or ``"data"``; ``low``/``high`` bound a random field (both
    included); a data field names its ``source`` and ``column``, and once bound holds the
    ``feed`` that chooses the row and the column's ``cells``."""

    __slots__ = ("cells", "column", "feed", "high", "kind", "low", "source")

    def __init__(
        self, kind: str, low: int = 0, high: int = 0, source: str = "", column: str = ""
    ) -> None:
        self.kind = kind
        self.low = low
        self.high = high
        self.source = source
        self.column = column
        self.feed: Feed | None = None
        self.cells: list[str] = []

    def bind(self, feed: Feed, cells: list[str]) -> None:
        """Give a data field its row choice and its column's cells (as they are sent)."""
        if len(cells) != feed.rows:
            raise ValueError(f"{len(cells)} cells for a feed of {feed.rows} rows")
        self.feed = feed
        self.cells = cells

    def __repr__(self) -> str:
        if self.kind == "data":
            return f"Field('data', {self.source!r}, {self.column!r})"
        return f"Field({self.kind!r}, {self.low}, {self.high})"


class Template:
    """A path, body or header value split into ``len(fields) + 1`` literal ``parts`` around
    its ``fields``."""

    __slots__ = ("_keys", "fields", "indexed", "parts", "uses_vu")

    def __new__(cls, parts: tuple[str, ...], fields: tuple[Field, ...]) -> Template:
        # A text with data fields is a DataTemplate: this class's render stays as it was for
        # every other text (no test per send).
        if cls is Template and any(f.kind == "data" for f in fields):
            cls = DataTemplate
        return object.__new__(cls)

    def __init__(self, parts: tuple[str, ...], fields: tuple[Field, ...]) -> None:
        self.parts = parts
        self.fields = fields
        self.uses_vu = any(f.kind == "vu" for f in fields)
        # Data fields take no draw index: ``indexed`` fields do (the next text's ``first``
        # moves by it).
        self.indexed = sum(f.kind != "data" for f in fields)
        # (seed, key_vu) -> vu_key(...): a third of a render's cost, the same for every
        # request of a VU. One entry per VU (or one in the open model).
        self._keys: dict[tuple[int, int], int] = {}

    def sample(self) -> str:
        """The text with every field as ``0``: what the checks of a path see (fields render as
        digits only)."""
        return "0".join(self.parts)

    def render(
        self, seed: int, vu: int, key_vu: int, iteration: int, step: int, first: int = 0
    ) -> str:
        """The text of ``step`` of ``iteration``, run by ``vu``; ``key_vu`` is the VU input of
        the draws (``ARRIVAL_VU_KEY`` in the open model, as for the other decisions), and
        ``first`` the index of this text's first field in its request (a body's fields come
        after its path's, a header value's after the body's and the earlier headers')."""
        parts = self.parts
        out = [parts[0]]
        key = -1
        for k, f in enumerate(self.fields):
            if f.kind == "random":
                if key < 0:
                    found = self._keys.get((seed, key_vu))
                    if found is None:
                        found = self._keys[seed, key_vu] = vu_key(seed, key_vu, STREAM_PATH)
                    key = found
                value = draw_keyed(key, iteration, (step * MAX_FIELDS + first + k) & MASK64)
                out.append(str(f.low + value % (f.high - f.low + 1)))
            elif f.kind == "iteration":
                out.append(str(iteration))
            else:
                out.append(str(vu))
            out.append(parts[k + 1])
        return "".join(out)


class DataTemplate(Template):
    """A :class:`Template` with data fields (``Template(...)`` makes one when it has them)."""

    __slots__ = ()

    def render(
        self, seed: int, vu: int, key_vu: int, iteration: int, step: int, first: int = 0
    ) -> str:
        """:meth:`Template.render` for a text with data fields: each takes its cell in the
        row its feed chooses; the other fields count their draw index without them."""
        parts = self.parts
        out = [parts[0]]
        index = first
        for k, f in enumerate(self.fields):
            kind = f.kind
            if kind == "data":
                feed = f.feed
                if feed is None:
                    raise RuntimeError(f"data field {{{{{f.source}.{f.column}}}}} is not bound")
                out.append(f.cells[feed.row(seed, vu, key_vu, iteration)])
                out.append(parts[k + 1])
                continue
            if kind == "random":
                key = self._keys.get((seed, key_vu))
                if key is None:
                    key = self._keys[seed, key_vu] = vu_key(seed, key_vu, STREAM_PATH)
                value = draw_keyed(key, iteration, (step * MAX_FIELDS + index) & MASK64)
                out.append(str(f.low + value % (f.high - f.low + 1)))
            elif kind == "iteration":
                out.append(str(iteration))
            else:
                out.append(str(vu))
            index += 1
            out.append(parts[k + 1])
        return "".join(out)


def parse_template(path: str) -> Template | None:
    """The template of ``path`` (or a body or header value), or ``None`` when it has no
    ``{{``."""
    if "{{" not in path:
        return None
    parts: list[str] = []
    fields: list[Field] = []
    pos = 0
    for m in _FIELD_RE.finditer(path):
        parts.append(path[pos : m.start()])
        fields.append(_field(m.group(1)))
        pos = m.end()
    parts.append(path[pos:])
    if any("{{" in part for part in parts):
        raise TemplateError(f"'{{{{' without its '}}}}' (a field is {_KINDS})")
    if len(fields) > MAX_FIELDS:
        raise TemplateError(
            f"at most {MAX_FIELDS} fields per request, path, body and header values together, "
            f"got {len(fields)}"
        )
    return Template(tuple(parts), tuple(fields))


def _field(text: str) -> Field:
    if not _FIELD_TEXT_RE.fullmatch(text):
        # Printable ASCII only: a tab, CR or other white space passed str.split() and printed
        # raw, and a control character has no place in a one-line message.
        shown = text.encode("ascii", "backslashreplace").decode("ascii")
        shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in shown)
        raise TemplateError(
            f"{{{{{shown}}}}}: a field holds printable ASCII only (spaces, no tab or line "
            f"break); a field is {_KINDS}"
        )
    words = text.split()  # spaces only: other white space was refused above
    if "." in text and not (words and words[0] == "random"):
        data = _DATA_RE.fullmatch(text)
        if data is None or not data.group(2):
            raise TemplateError(
                f"{{{{{text}}}}}: a data field is {{{{NAME.COLUMN}}}}, NAME a [[data]] name "
                "(letters, digits and _, not first a digit), e.g. {{users.email}}"
            )
        return Field("data", source=data.group(1), column=data.group(2))
    if words == ["vu"]:
        return Field("vu")
    if words == ["iteration"]:
        return Field("iteration")
    if words and words[0] == "random":
        if len(words) != 3 or not all(
            w.isascii() and w.isdigit() and len(w) <= 40 for w in words[1:]
        ):
            raise TemplateError(
                f"{{{{{text}}}}}: write {{{{random LOW HIGH}}}} with two whole numbers, "
                "e.g. {{random 1 10000}}"
            )
        low, high = int(words[1]), int(words[2])
        if high > _MAX_RANDOM or low > high:
            raise TemplateError(
                f"{{{{{text}}}}}: LOW must be <= HIGH <= {_MAX_RANDOM}, got {low} and {high}"
            )
        return Field("random", low, high)
    known = {"vu": "{{vu}}", "iteration": "{{iteration}}", "random": "{{random LOW HIGH}}"}
    hint = known.get(words[0].lower()) if words else None
    close = f" (did you mean {hint}?)" if hint is not None else ""
    raise TemplateError(f"unknown field {{{{{text}}}}}{close}; a field is {_KINDS}")
