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
    position: dict[type, int] = {}
    groups: list[list[Any]] = []
    order = []
    for record in value:
        at = position.get(type(record))
        if at is None:
            at = position[type(record)] = len(groups)
            groups.append([])
        groups[at].append(record)
        order.append(at)
    classes = []
    for cls, records in zip(position, groups, strict=True):
        kind = KINDS[cls]
        columns = {
            name: _column(writer, list(map(attrgetter(name), records))) for name in kind.fields
        }
        classes.append([kind.tag, columns])
    return [writer.array(np.asarray(order, dtype=np.uint16)), classes]


def _column(writer: _Writer, values: list[Any]) -> list[Any]:
    types = set(map(type, values))
    if types <= _PLAIN and _json_safe(values, types):
        return ["c", values]
    if types == {Decimal}:
        return ["cD", [str(v) for v in values]]
    if types == {datetime} and all(v.tzinfo is UTC for v in values):
        texts: dict[datetime, str] = {}
        for v in values:
            if v not in texts:
                texts[v] = v.replace(tzinfo=None).isoformat()
        return ["cT", [texts[v] for v in values]]
    return ["c*", [writer.node(v) for v in values]]


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
    if type(column) is not list or len(column) != 2 or type(column[1]) is not list:
        raise SnapshotFormatError(f"holds a malformed column {kind.tag}.{name}")
    tag, values = column
    if len(values) != count:
        raise SnapshotFormatError(f"holds {len(values)} values of {kind.tag}.{name}, not {count}")
    if tag == "c" and {type(v) for v in values} <= _PLAIN:
        return values
    if tag == "c*":
        return [reader.node(v) for v in values]
    if tag in ("cD", "cT") and all(type(v) is str and len(v) <= 100 for v in values):
        try:
            moments: list[Any] = (
                [Decimal(v) for v in values]
                if tag == "cD"
                else [datetime.fromisoformat(v) for v in values]
            )
        except (InvalidOperation, ValueError):
            raise SnapshotFormatError(f"holds an unreadable {kind.tag}.{name}") from None
        if tag == "cD":
            return moments
        if any(m.tzinfo is not None for m in moments):
            raise SnapshotFormatError(f"holds a time with an offset as {kind.tag}.{name}")
        return [m.replace(tzinfo=UTC) for m in moments]
    raise SnapshotFormatError(f"holds a malformed column {kind.tag}.{name}")
