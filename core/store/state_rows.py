"""Long lists of immutable records (the run's events) in a snapshot, written by column: one text
per field per class instead of one tagged object per record, which made a 1M-account cascade's
snapshots cost more than its engine. Read back with every check an object of the tree passes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import is_dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from operator import attrgetter
from typing import Any, Protocol

import numpy as np

from core.model.errors import SnapshotFormatError
from core.model.records import maker
from core.store.state_classes import FIELDS_SINCE, KINDS, Kind, kind_by_tag

ROWS_FROM = 64  # shorter lists are written as lists
INT_JSON = range(-(2**63), 2**63)
_PLAIN = frozenset({str, bool, int, float, type(None)})
# Columns of one of these types are written as one array (a JSON list of 190,000 numbers held
# the interpreter lock for most of a 1M-account snapshot's chunk).
_ARRAY_TYPES: dict[type, type] = {int: np.int64, float: np.float64, bool: np.bool_}
_ARRAY_TAGS = {np.dtype(np.int64), np.dtype(np.float64), np.dtype(np.bool_)}
_CODE_TYPES = {np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.uint32)}


class _Writer(Protocol):
    def node(self, value: Any) -> Any: ...
    def array(self, value: np.ndarray) -> int: ...


class _Reader(Protocol):
    def node(self, value: Any) -> Any: ...
    def take_array(self, index: Any) -> np.ndarray: ...
    def remember(self, n: Any, value: object) -> None: ...


def _is_record(cls: type) -> bool:
    kind = KINDS.get(cls)
    return (
        kind is not None
        and kind.shape == "object"
        and not kind.setstate
        and is_dataclass(cls)
        and cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    )


# Only frozen dataclasses: a record's identity never matters, so its copies need no references.
RECORDS = frozenset(cls for cls in KINDS if _is_record(cls))


def are_records(value: list[Any]) -> bool:
    return (
        len(value) >= ROWS_FROM
        and type(value[0]) in RECORDS
        and {type(v) for v in value} <= RECORDS
    )


def write_rows(writer: _Writer, value: list[Any]) -> list[Any]:
    """[order array, [[tag, {field: column}], ...]]: which class each record is, then each
    class's records by column."""
    kinds = list(map(type, value))
    position = {cls: at for at, cls in enumerate(dict.fromkeys(kinds))}
    order = np.fromiter(map(position.__getitem__, kinds), np.uint16, count=len(kinds))
    classes = []
    for cls, at in position.items():
        records = list(map(value.__getitem__, np.flatnonzero(order == at).tolist()))
        kind = KINDS[cls]
        columns = {
            name: _column(writer, list(map(attrgetter(name), records))) for name in kind.fields
        }
        classes.append([kind.tag, columns])
    return [writer.array(order), classes]


def _column(writer: _Writer, values: list[Any]) -> list[Any]:
    types = set(map(type, values))
    if len(types) == 1 and (kind := next(iter(types))) in _ARRAY_TYPES:
        try:
            return ["ca", writer.array(np.array(values, dtype=_ARRAY_TYPES[kind]))]
        except OverflowError:  # an int beyond int64 is written as a tagged value below
            pass
    if types == {float, type(None)}:
        nones = [v is None for v in values]
        numbers = [0.0 if v is None else v for v in values]
        floats = writer.array(np.array(numbers, dtype=np.float64))
        return ["caN", floats, writer.array(np.array(nones, dtype=bool))]
    if (
        types == {str}
        and _repeats(values)
        and len(texts := dict.fromkeys(values)) * 2 <= len(values)
    ):
        return ["cs", *_coded(writer, values, texts, str)]
    if types == {Decimal}:  # by text: 1.0 and 1.00 are equal, and each must come back as it was
        texts = list(map(str, values))
        return ["csD", *_coded(writer, texts, dict.fromkeys(texts), str)]
    if types == {datetime}:
        moments = dict.fromkeys(values)
        if all(v.tzinfo is UTC for v in moments):
            return ["csT", *_coded(writer, values, moments, _utc_text)]
    if types <= _PLAIN and _json_safe(values, types):
        return ["c", values]
    return ["c*", [writer.node(v) for v in values]]


def _coded(
    writer: _Writer, values: list[Any], distinct: dict[Any, None], text: Callable[[Any], str]
) -> tuple[list[str], int]:
    """Each distinct value once as text and the values as numbers into them: a cascade's
    symbols, sides, times and prices repeat, and parsing or dumping each one cost seconds."""
    number = dict(zip(distinct, range(len(distinct)), strict=True))
    dtype = np.uint8 if len(number) <= 256 else np.uint16 if len(number) <= 65536 else np.uint32
    codes = np.fromiter(map(number.__getitem__, values), dtype, count=len(values))
    return list(map(text, distinct)), writer.array(codes)


def _repeats(texts: list[str]) -> bool:
    """Whether the first values repeat: an account column rarely does, and a million distinct
    texts are not worth coding."""
    head = texts[:1024]
    return len(set(head)) * 2 <= len(head)


def _utc_text(moment: datetime) -> str:
    return moment.replace(tzinfo=None).isoformat()


def _json_safe(values: list[Any], types: set[type]) -> bool:
    if int in types:
        ints = [v for v in values if type(v) is int]
        if min(ints) not in INT_JSON or max(ints) not in INT_JSON:
            return False
    if float in types:
        floats = np.array([v for v in values if type(v) is float])
        if not np.isfinite(floats).all():
            return False
    return True


def read_rows(reader: _Reader, value: list[Any]) -> list[Any]:
    if len(value) != 4 or type(value[3]) is not list:
        raise SnapshotFormatError("holds a malformed list of records")
    out: list[Any] = []
    reader.remember(value[1], out)
    order = reader.take_array(value[2])
    if order.ndim != 1 or order.dtype != np.uint16:
        raise SnapshotFormatError("holds a malformed order of records")
    classes = value[3]
    counts = np.bincount(order, minlength=len(classes)) if order.size else np.zeros(0, int)
    if len(counts) != len(classes):
        raise SnapshotFormatError("names a class of records it does not hold")
    made = [_records(reader, entry, int(n)) for entry, n in zip(classes, counts, strict=True)]
    pulls = [iter(records) for records in made]
    out.extend(next(pulls[k]) for k in order.tolist())
    return out


def _records(reader: _Reader, entry: Any, count: int) -> list[Any]:
    if type(entry) is not list or len(entry) != 2 or type(entry[1]) is not dict:
        raise SnapshotFormatError("holds a malformed class of records")
    kind = kind_by_tag(entry[0]) if type(entry[0]) is str else None
    if kind is None or kind.cls not in RECORDS:
        raise SnapshotFormatError(f"names {entry[0]!r:.60}, which a list of records may not hold")
    columns = entry[1]
    since = FIELDS_SINCE.get(kind.cls, {})
    needed = [name for name in kind.fields if name not in since or name in columns]
    if len(columns) != len(needed) or not all(name in columns for name in needed):
        raise SnapshotFormatError(f"holds {kind.tag} records without fields {sorted(needed)}")
    values = []
    for name, allowed in zip(kind.fields, kind.types or [None] * len(kind.fields), strict=True):
        column = (
            _read_column(reader, columns[name], count, kind, name)
            if name in columns
            else [since[name]] * count
        )
        # By the types present, not value by value: a cascade's column holds 600,000 values.
        if allowed is not None and not all(issubclass(t, allowed) for t in set(map(type, column))):
            raise SnapshotFormatError(
                f"holds a value as {kind.tag}.{name}, which holds "
                + " or ".join(sorted({t.__name__ for t in allowed}))
            )
        values.append(column)
    return list(map(_maker(kind), *values)) if values else []


@cache
def _maker(kind: Kind) -> Callable[..., Any]:
    return maker(kind.cls)


def _read_column(reader: _Reader, column: Any, count: int, kind: Kind, name: str) -> list[Any]:
    where = f"{kind.tag}.{name}"
    if type(column) is not list or not column or type(column[0]) is not str:
        raise SnapshotFormatError(f"holds a malformed column {where}")
    tag = column[0]
    if tag == "ca" and len(column) == 2:
        return _array(reader, column[1], count, where, _ARRAY_TAGS).tolist()
    if tag == "caN" and len(column) == 3:
        numbers = _array(reader, column[1], count, where, {np.dtype(np.float64)}).tolist()
        nones = _array(reader, column[2], count, where, {np.dtype(np.bool_)})
        for i in np.flatnonzero(nones).tolist():
            numbers[i] = None
        return numbers
    if tag in ("cs", "csD", "csT") and len(column) == 3:
        return _decoded(reader, tag, column[1], column[2], count, where)
    if len(column) != 2 or type(column[1]) is not list:
        raise SnapshotFormatError(f"holds a malformed column {where}")
    values = column[1]
    if len(values) != count:
        raise SnapshotFormatError(f"holds {len(values)} values of {where}, not {count}")
    if tag == "c" and {type(v) for v in values} <= _PLAIN:
        return values
    if tag == "c*":
        return [reader.node(v) for v in values]
    if tag in ("cD", "cT"):  # texts one per value: the format's version 2
        return _decoded(reader, "csD" if tag == "cD" else "csT", values, None, count, where)
    raise SnapshotFormatError(f"holds a malformed column {where}")


def _array(reader: _Reader, index: Any, count: int, where: str, dtypes: set[Any]) -> np.ndarray:
    values = reader.take_array(index)
    if values.ndim != 1 or values.dtype not in dtypes or len(values) != count:
        raise SnapshotFormatError(f"holds a malformed column {where}")
    return values


def _decoded(
    reader: _Reader, tag: str, texts: Any, codes: Any, count: int, where: str
) -> list[Any]:
    longest = 10_000 if tag == "cs" else 100
    if type(texts) is not list or not all(type(v) is str and len(v) <= longest for v in texts):
        raise SnapshotFormatError(f"holds a malformed column {where}")
    if codes is not None:
        numbers = _array(reader, codes, count, where, _CODE_TYPES)
        if numbers.size and int(numbers.max()) >= len(texts):
            raise SnapshotFormatError(f"holds a value of {where} it does not name")
    try:
        values: list[Any] = (
            texts
            if tag == "cs"
            else [Decimal(v) for v in texts]
            if tag == "csD"
            else [datetime.fromisoformat(v) for v in texts]
        )
    except (InvalidOperation, ValueError):
        raise SnapshotFormatError(f"holds an unreadable {where}") from None
    if tag == "csT":
        if any(m.tzinfo is not None for m in values):
            raise SnapshotFormatError(f"holds a time with an offset as {where}")
        values = [m.replace(tzinfo=UTC) for m in values]
    if codes is None:
        return values
    return [values[k] for k in numbers.tolist()]
