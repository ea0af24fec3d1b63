"""Text typed by people, on its way in and out: refusing text that shows nothing, escaping control
characters for a terminal, and CSV that a spreadsheet cannot turn into formulas or extra rows."""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Iterable
from typing import Any, TextIO

from core.model.errors import InputError

# Categories that draw nothing on their own: controls, format characters (zero-width space,
# joiners, bidi marks), separators and spaces, combining marks without a base, unassigned points.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn", "Zs", "Zl", "Zp", "Mn", "Me"})
# Letters and symbols that are blank by design (Hangul fillers, the blank Braille pattern).
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# What a spreadsheet takes for the start of a formula (OWASP "CSV injection").
FORMULA_LEAD = ("=", "+", "-", "@", "\t", "\r")
# A number as the program writes or shows one: sign, grouped digits, decimals, exponent, percent.
_NUMBER = re.compile(r"[+-]?([0-9][0-9,]*)?(\.[0-9]+)?([eE][+-]?[0-9]+)?%?")
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _invisible(char: str) -> bool:
    return char in _BLANK_LETTERS or unicodedata.category(char) in _INVISIBLE_CATEGORIES


def is_blank(text: str) -> bool:
    """True when `text` shows nothing: empty, or only whitespace and invisible characters."""
    return all(_invisible(char) for char in text)


def require_visible(value: object, field: str) -> str:
    """`value` when it is text with something visible in it; an InputError naming `field`."""
    if not isinstance(value, str):
        raise InputError(field, f"expected text, got {type(value).__name__}")
    if is_blank(value):
        what = "empty" if not value else "only blank or invisible characters"
        raise InputError(field, f"expected visible text, found {what}")
    return value


def printable(text: str) -> str:
    """`text` with every control, format and line-separator character written as an escape
    (`\\n`, `\\x1b`, `\\u202e`) and backslashes doubled, so one stored value is one line that
    cannot move the cursor, recolour the terminal or reorder what follows it."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif unicodedata.category(char) in ("Cc", "Cf", "Cs", "Cn", "Zl", "Zp"):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def csv_cell(value: Any) -> Any:
    """A value safe to put in a CSV cell: text a spreadsheet would run as a formula gets a
    leading apostrophe (shown as text, the formula not evaluated). Numbers written as text
    (`-0.5`, `+3`, `-1,234.5`, `+0.25%`) are left alone: they are data, and a number is no formula."""
    lead = isinstance(value, str) and value.startswith(FORMULA_LEAD)
    if lead and not (any(c.isdigit() for c in value) and _NUMBER.fullmatch(value)):
        return "'" + value
    return value


def csv_row(values: Iterable[Any]) -> list[Any]:
    """`csv_cell` of each value: what every CSV writer of the project passes to `writerow`."""
    return [csv_cell(value) for value in values]


class _LineEnds:
    """Writes each CSV row with "\n" where the writer ends it with "\r\n"."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, line: str) -> int:
        # The writer hands over one whole row a call; its last two characters are the row's end
        # (a field ending in a line break is quoted, so its own break comes before the quote).
        return self.out.write(line[:-2] + "\n" if line.endswith("\r\n") else line)


def csv_writer(out: TextIO) -> Any:
    """The CSV writer every export uses: rows end in "\n", and a field with a "\r" or "\n" in it
    is quoted (with "\n" alone as the row end, the csv module would leave a lone "\r" bare, which
    a spreadsheet reads as a new row whose first cell escaped `csv_cell`). Pass rows through
    `csv_row`."""
    return csv.writer(_LineEnds(out), lineterminator="\r\n")
