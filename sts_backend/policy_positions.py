"""Where each statement of a policy document sits in its text, as IAM's simulator reports it (no I/O).

Theory of operation
-------------------
``SimulatePrincipalPolicy``/``SimulateCustomPolicy`` report each matched statement's
``StartPosition`` and ``EndPosition`` ({Line, Column}, both 1-based) in the document
text as given. Python's ``json`` keeps no offsets, so ``statement_spans`` scans the
text itself: a small tokenizer that understands strings (escapes included) and
nesting, finds the top-level ``Statement`` member (the last one, as ``json.loads``
keeps the last of duplicate keys) and measures each statement object.

IAM's positions are those of a streaming parser (Jackson's current location, whose
column is the 1-based index of the next character to read), taken just before the
statement's ``{`` is read and just after its ``}``:

- the end is the column after the closing ``}``;
- in a ``Statement`` list, the start is just after the previous token: after ``[``
  for the first statement, after the previous statement's ``}`` for the others
  (so a compact ``},{`` reports the comma's column);
- a ``Statement`` object's start is just after its ``{`` (the parser reads the
  value's first character together with the member name's colon).

Observed AWS responses fit this and nothing simpler: a compact
``{"Version": "2012-10-17", "Statement": [{...}]}`` gives Column 41 (the ``{``,
just after ``[``); the AWS CLI's example (``awscli/examples/iam/simulate-custom-policy.rst``)
``{"Version":"2012-10-17","Statement":{...}}`` gives 38 to 167 (``{`` is column 37,
the final statement ``}`` column 166);
AdministratorAccess (two-space indent) gives Line 3 Column 17 to Line 8 Column 6;
and recorded multi-statement responses start later statements at the comma.
Lines end at ``\\n``, ``\\r\\n`` or a lone ``\\r``, as in Jackson.

The text must already be valid JSON (``parse_policy`` checks it first).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

__all__ = ["Position", "Span", "statement_spans"]

_WS = " \t\n\r"
_STRING_BODY = re.compile(r'(?:[^"\\]|\\.)*"', re.DOTALL)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class Position:
    """A 1-based line and column, as IAM's ``Position`` shape carries them."""

    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Span:
    """Where one statement starts and ends (see the module docstring for IAM's convention)."""

    start: Position
    end: Position


class _Scanner:
    """Offsets of tokens in one JSON text; skips values without building them."""

    def __init__(self, text: str) -> None:
        self.text = text

    def ws(self, i: int) -> int:
        text = self.text
        while i < len(text) and text[i] in _WS:
            i += 1
        return i

    def string_end(self, i: int) -> int:
        """Offset after the string whose opening quote is at ``i``."""
        found = _STRING_BODY.match(self.text, i + 1)
        if found is None:
            raise ValueError("unterminated string")
        return found.end()

    def value_end(self, i: int) -> int:
        """Offset after the value starting at ``i`` (no leading whitespace)."""
        text = self.text
        char = text[i]
        if char == '"':
            return self.string_end(i)
        if char not in "{[":
            j = i
            while j < len(text) and text[j] not in ",]}" + _WS:
                j += 1
            return j
        depth = 0
        while True:
            char = text[i]
            if char == '"':
                i = self.string_end(i)
                continue
            if char in "{[":
                depth += 1
            elif char in "}]":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1

    def members(self, i: int):
        """(name, offset of the value) of each member of the object whose ``{`` is at ``i``."""
        i = self.ws(i + 1)
        while self.text[i] != "}":
            end = self.string_end(i)
            name = json.loads(self.text[i:end])
            value = self.ws(self.ws(end) + 1)   # past the colon
            yield name, value
            i = self.ws(self.value_end(value))
            if self.text[i] == ",":
                i = self.ws(i + 1)


def _offset_spans(text: str) -> list[tuple[int, int]]:
    scan = _Scanner(text)
    top = scan.ws(0)
    statement = None
    for name, value in scan.members(top):
        if name == "Statement":
            statement = value
    if statement is None:
        return []
    if text[statement] == "{":
        return [(statement + 1, scan.value_end(statement))]
    spans = []
    cursor = statement + 1                 # just after "["
    i = scan.ws(cursor)
    while text[i] != "]":
        end = scan.value_end(i)
        spans.append((cursor, end))
        cursor = end                       # just after this statement's "}"
        i = scan.ws(end)
        if text[i] == ",":
            i = scan.ws(i + 1)
    return spans


def _position(line_starts: list[int], offset: int) -> Position:
    low, high = 0, len(line_starts) - 1
    while low < high:                      # the last line start <= offset
        mid = (low + high + 1) // 2
        if line_starts[mid] <= offset:
            low = mid
        else:
            high = mid - 1
    return Position(low + 1, offset - line_starts[low] + 1)


def statement_spans(text: str) -> tuple[Span, ...]:
    """The span of each statement of ``text``, in document order.

    Args:
        text: a policy document that is valid JSON with an object at the top.

    Returns:
        One ``Span`` per statement (one for a ``Statement`` object); () when
        there is no ``Statement`` member.

    Raises:
        ValueError: the text is not the JSON it should be.
    """
    try:
        offsets = _offset_spans(text)
    except (IndexError, ValueError) as exc:
        raise ValueError("not a JSON policy document") from exc
    line_starts = [0] + [m.end() for m in _LINE_BREAK.finditer(text)]
    return tuple(Span(_position(line_starts, a), _position(line_starts, b)) for a, b in offsets)
