"""Exact decimal columns with pyarrow: decimal text to scaled int64 and back, vectorized in
pyarrow's compute kernels and numpy (no Python loop per row), for imports and Parquet exports.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.model.limits import MAX_NUMBER_CHARS, clip

_INT64_MAX = 2**63 - 1
# A plain decimal as the scenario format writes it: no exponent, no sign but a leading minus.
_PLAIN = r"^(?P<sign>-?)(?P<whole>[0-9]+)(?:\.(?P<frac>[0-9]+))?$"
_MAX_SCALE = 18  # 10**18 < 2**63: the fraction's digits fit an int64


class CellError(ValueError):
    """One bad cell: `row` counts from 0 over the column; the caller names file and column."""

    def __init__(self, row: int, message: str) -> None:
        super().__init__(message)
        self.row = row
        self.message = message


@dataclass(frozen=True, slots=True)
class Scaled:
    """A decimal column as int64 counts of 10**-scale; `given` is False where the cell was empty."""

    values: np.ndarray
    given: np.ndarray


def decimal_scale(unit: Decimal) -> tuple[int, int]:
    """A positive decimal as (m, s) with unit == m * 10**-s (a price unit, 0.00005 -> (5, 5))."""
    sign, digits, exponent = unit.normalize().as_tuple()
    assert isinstance(exponent, int) and not sign
    whole = int("".join(map(str, digits)))
    return (whole, -exponent) if exponent < 0 else (whole * 10**exponent, 0)


def first_row(mask: pa.Array | np.ndarray) -> int | None:
    """The first row where `mask` is true (nulls count as false), or None."""
    array = np.asarray(
        mask.fill_null(False).to_numpy(zero_copy_only=False) if isinstance(mask, pa.Array) else mask
    )
    rows = np.flatnonzero(array)
    return int(rows[0]) if rows.size else None


def cell_text(column: pa.Array, row: int) -> str:
    """A cell as an error message quotes it."""
    value = column[row].as_py()
    return "an empty cell" if value is None else repr(clip(str(value)))


def as_text(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A text, integer or decimal column as one string array; None for a float column (the caller
    refuses it: a binary float has already lost the decimal that was meant)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    kind = array.type
    if pa.types.is_dictionary(kind):
        array = array.dictionary_decode()
        kind = array.type
    if pa.types.is_string(kind):
        return array
    if pa.types.is_large_string(kind) or pa.types.is_integer(kind) or pa.types.is_decimal(kind):
        return pc.cast(array, pa.string())
    if pa.types.is_null(kind):
        return pa.nulls(len(array), pa.string())
    return None  # type: ignore[return-value]


def scaled_column(column: pa.Array, scale: int, *, allow_empty: bool = False) -> Scaled:
    """`scaled_integers` of any column `as_text` takes: integer and DECIMAL columns straight from
    their values (no text in between), text columns parsed."""
    kind = column.type
    if not (pa.types.is_integer(kind) or pa.types.is_decimal128(kind)):
        return scaled_integers(as_text(column), scale, allow_empty=allow_empty)
    given = column.is_valid().to_numpy(zero_copy_only=False)
    if not allow_empty and (row := first_row(~given)) is not None:
        raise CellError(row, "expected a value, found an empty cell")
    if pa.types.is_integer(kind):
        values, shift = column.fill_null(0).to_numpy().astype(np.int64), scale
        if pa.types.is_uint64(kind):
            wrapped = first_row(values < 0)
            if wrapped is not None:
                raise CellError(
                    wrapped, f"expected a number int64 can hold, found {column[wrapped]}"
                )
    else:
        words = np.frombuffer(column.buffers()[1], dtype=np.int64)
        words = words[2 * column.offset : 2 * (column.offset + len(column))].reshape(-1, 2)
        values = np.where(given, words[:, 0], 0)
        wide = first_row(given & (words[:, 1] != words[:, 0] >> 63))
        if wide is not None:
            raise CellError(wide, f"expected a number int64 can hold, found {column[wide]}")
        shift = scale - kind.scale
        if shift < 0:
            finer = first_row(values % 10**-shift != 0)
            if finer is not None:
                raise CellError(finer, f"expected at most {scale} decimals, found {column[finer]}")
            return Scaled(values // 10**-shift, given)
    limit = _INT64_MAX // 10**shift
    over = first_row(np.abs(values) > limit)
    if over is not None:
        raise CellError(over, f"expected a number int64 can hold, found {column[over]}")
    return Scaled(values * 10**shift, given)


def scaled_integers(text: pa.Array, scale: int, *, allow_empty: bool = False) -> Scaled:
    """Decimal text as exact int64 counts of 10**-scale. Raises CellError at the first cell that is
    empty (unless `allow_empty`: it counts as 0 with `given` False), not a plain decimal, finer than
    10**-scale, or beyond int64."""
    if not 0 <= scale <= _MAX_SCALE:
        raise ValueError(f"scale {scale} outside 0..{_MAX_SCALE}")
    given = text.is_valid()
    if not allow_empty and (row := first_row(pc.invert(given))) is not None:
        raise CellError(row, "expected a value, found an empty cell")
    filled = text.fill_null("0") if text.null_count else text
    long = first_row(pc.greater(pc.utf8_length(filled), MAX_NUMBER_CHARS))
    if long is not None:
        raise CellError(long, f"expected at most {MAX_NUMBER_CHARS} characters, found more")
    parts = pc.extract_regex(filled, _PLAIN)
    bad = first_row(pc.invert(parts.is_valid()))
    if bad is not None:
        found = cell_text(text, bad)
        raise CellError(bad, f'expected a plain decimal number such as "1.5", found {found}')
    whole, frac = parts.field("whole"), parts.field("frac")
    finer = first_row(pc.match_substring_regex(pc.utf8_slice_codeunits(frac, scale), "[1-9]"))
    if finer is not None:
        raise CellError(finer, f"expected at most {scale} decimals, found {cell_text(text, finer)}")
    digits = pc.utf8_length(pc.utf8_ltrim(whole, characters="0")).to_numpy()
    # more whole digits than int64 holds after scaling is refused before any cast could overflow
    wide = first_row(digits > 19 - scale)
    if wide is not None:
        raise CellError(wide, f"expected a number int64 can hold, found {cell_text(text, wide)}")
    whole_values = pc.cast(whole, pa.uint64()).to_numpy()
    values = whole_values.astype(np.uint64) * np.uint64(10**scale)
    if scale:
        head = pc.utf8_rpad(pc.utf8_slice_codeunits(frac, 0, scale), scale, "0")
        values = values + pc.cast(head, pa.uint64()).to_numpy()
    over = first_row((whole_values > _INT64_MAX // 10**scale) | (values > _INT64_MAX))
    if over is not None:
        raise CellError(over, f"expected a number int64 can hold, found {cell_text(text, over)}")
    signed = values.astype(np.int64)
    negative = pc.equal(parts.field("sign"), "-").to_numpy(zero_copy_only=False)
    return Scaled(np.where(negative, -signed, signed), given.to_numpy(zero_copy_only=False))


def decimal_array(values: np.ndarray, scale: int) -> pa.Array:
    """Exact int64 counts of 10**-scale as a decimal128(38, scale) column (written as Parquet's
    DECIMAL, read back exactly by pandas, polars and DuckDB)."""
    if sys.byteorder != "little":  # decimal128 is two little-endian 64-bit words
        raise RuntimeError("decimal columns are built for little-endian machines")
    ints = np.ascontiguousarray(values, dtype=np.int64)
    words = np.empty((ints.size, 2), dtype=np.int64)
    words[:, 0] = ints
    words[:, 1] = ints >> 63  # the sign extended into the high word
    buffer = pa.py_buffer(words.tobytes())
    return pa.Array.from_buffers(pa.decimal128(38, scale), ints.size, [None, buffer])
