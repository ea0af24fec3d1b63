"""The snapshot format: an engine's object graph as plain JSON plus numpy arrays (.npy, written and
read with allow_pickle=False). Classes are named only from core/store/state_classes.py and built field
by field; nothing in a blob is imported, called or evaluated."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import Enum
from fractions import Fraction
from typing import Any

import numpy as np
import orjson

from core.model.errors import InputError, SnapshotFormatError
from core.store.state_classes import (
    BEFORE_SETSTATE,
    FIELDS_SINCE,
    KINDS,
    NUMPY_SCALARS,
    Kind,
    kind_by_tag,
)
from core.store.state_rows import INT_JSON, are_records, read_rows, write_rows

FORMAT_VERSION = 3  # 3: a list of records' numeric columns as arrays, its texts coded
READS = frozenset({2, FORMAT_VERSION})
MAGIC = b"RCSNAP\x00" + bytes([FORMAT_VERSION])
_HEADER = struct.Struct("<cQ")  # b"Z" (zlib) or b"R" (raw), then the JSON part's length
# A zlib body can claim any size: what a snapshot of the biggest supported book can need.
MAX_RAW_BYTES = 8 << 30
ARRAY_KINDS = frozenset("biuf")  # bool, signed, unsigned, float: no objects, no strings
_AS_IS = frozenset({str, bool, type(None)})  # values that are the same in JSON and in Python


# ----- writing -----------------------------------------------------------------------------


class _Writer:
    def __init__(self) -> None:
        self.memo: dict[int, int] = {}
        self.keep: list[object] = []  # ids stay unique while the objects live
        self.arrays: list[memoryview] = []

    def ref(self, value: object) -> int | None:
        known = self.memo.get(id(value))
        if known is None:
            self.memo[id(value)] = len(self.memo)
            self.keep.append(value)
        return known

    def node(self, value: Any) -> Any:
        kind = type(value)
        if value is None or kind is str or kind is bool:
            return value
        if kind is int:
            return value if value in INT_JSON else ["I", str(value)]
        if kind is float:
            return value if np.isfinite(value) else ["F", repr(value)]
        if isinstance(value, Enum) and kind in KINDS:
            return ["e", KINDS[kind].tag, value.value]  # a member is itself wherever it appears
        if kind in (list, tuple, set, frozenset, dict, np.ndarray) or kind in KINDS:
            known = self.ref(value)
            if known is not None:
                return ["r", known]
            n = self.memo[id(value)]
            if kind is list and are_records(value):
                return ["L", n, *write_rows(self, value)]
            if kind is list or kind is tuple:
                return ["l" if kind is list else "t", n, *self.items(value)]
            if kind is set or kind is frozenset:
                items = [self.node(v) for v in sorted(value, key=_order)]
                return ["s" if kind is set else "fs", n, *items]
            if kind is dict:
                return ["d", n, *(self.node(x) for kv in value.items() for x in kv)]
            if kind is np.ndarray:
                return ["a", n, self.array(value)]
            return self.instance(KINDS[kind], n, value)
        if kind is Decimal:
            return ["D", str(value)]
        if kind is datetime:
            if value.tzinfo is not None and value.utcoffset() != timedelta(0):
                raise TypeError(f"a snapshot holds UTC times only, found {value!r}")
            return ["T", value.replace(tzinfo=None).isoformat(), value.tzinfo is not None]
        if kind is timedelta:
            return ["dt", value.days, value.seconds, value.microseconds]
        if kind is date:
            return ["date", value.isoformat()]
        if kind is Fraction:
            return ["Q", str(value.numerator), str(value.denominator)]
        if kind.__name__ in NUMPY_SCALARS and NUMPY_SCALARS[kind.__name__] is kind:
            return ["n", kind.__name__, self.node(value.item())]
        raise TypeError(f"{kind.__module__}.{kind.__qualname__} cannot be written to a snapshot")

    def items(self, value: list[Any] | tuple[Any, ...]) -> Any:
        # A million account ids: texts are written as they are, without a call each.
        if {type(v) for v in value} <= _AS_IS:
            return value
        return map(self.node, value)

    def array(self, value: np.ndarray) -> int:
        if value.dtype.kind not in ARRAY_KINDS or value.dtype.fields is not None:
            raise TypeError(f"a snapshot holds numeric arrays only, found dtype {value.dtype}")
        out = io.BytesIO()
        np.save(out, value, allow_pickle=False)
        self.arrays.append(out.getbuffer())  # no copy: the blob is joined from these once
        return len(self.arrays) - 1

    def instance(self, kind: Kind, n: int, value: Any) -> Any:
        if kind.shape == "tuple":
            return ["nt", n, kind.tag, *map(self.node, value)]
        if kind.setstate:
            state = value.__getstate__()
        elif hasattr(value, "__dict__"):
            state = vars(value)
        else:
            state = {name: getattr(value, name) for name in kind.fields}
        if tuple(sorted(state)) != tuple(sorted(kind.fields)):
            extra = sorted(set(state) - set(kind.fields))
            missing = sorted(set(kind.fields) - set(state))
            raise TypeError(
                f"{kind.tag} holds {extra} beyond, and lacks {missing} of, its snapshot fields "
                "(core/store/state_classes.py)"
            )
        return ["o", n, kind.tag, {name: self.node(state[name]) for name in kind.fields}]


def _order(value: object) -> tuple[str, str]:
    """Sets are written sorted so that the same state gives the same bytes."""
    return (type(value).__name__, repr(value))


def dump(state: object, *, compress: bool) -> bytes:
    """A snapshot blob of `state`: the magic and format version, then the JSON tree and the
    arrays as .npy files one after the other (zlib level 1 when `compress`)."""
    return b"".join(dump_parts(state, compress=compress))


def dump_parts(state: object, *, compress: bool) -> list[bytes | memoryview]:
    """`dump`'s blob in the parts it is made of, to be written one after the other: joining
    a big book's ~120 MB holds the interpreter lock (and freezes the console) throughout."""
    writer = _Writer()
    root = writer.node(state)
    offsets, at = [], 0
    for data in writer.arrays:
        offsets.append([at, len(data)])
        at += len(data)
    tree = orjson.dumps({"arrays": offsets, "root": root})
    if compress:
        body = zlib.compress(b"".join((tree, *writer.arrays)), 1)
        return [MAGIC + _HEADER.pack(b"Z", len(tree)) + body]
    return [MAGIC + _HEADER.pack(b"R", len(tree)), tree, *writer.arrays]


# ----- reading -----------------------------------------------------------------------------


class _Reader:
    def __init__(self, arrays: list[memoryview]) -> None:
        self.arrays = arrays
        self.used: set[int] = set()
        self.memo: dict[int, object] = {}
        self.handlers: dict[str, Callable[[list[Any]], Any]] = {
            "r": self.ref,
            "l": self.list_,
            "L": lambda n: read_rows(self, n),
            "t": self.tuple_,
            "s": self.set_,
            "fs": self.set_,
            "d": self.dict_,
            "a": self.array,
            "o": self.instance,
            "nt": self.named_tuple,
            "e": self.enum,
            "I": lambda n: int(_str(n, 1)),
            "F": self.float_,
            "D": self.decimal,
            "T": self.time,
            "dt": lambda n: timedelta(_int(n, 1), _int(n, 2), _int(n, 3)),
            "date": lambda n: date.fromisoformat(_str(n, 1)),
            "Q": lambda n: Fraction(int(_str(n, 1)), int(_str(n, 2))),
            "n": self.scalar,
        }

    def node(self, value: Any) -> Any:
        kind = type(value)
        if value is None or kind is str or kind is int or kind is float or kind is bool:
            return value
        if kind is not list or not value or type(value[0]) is not str:
            raise SnapshotFormatError(f"holds {_brief(value)} where a value belongs")
        handler = self.handlers.get(value[0])
        if handler is None:
            raise SnapshotFormatError(f"holds an unknown kind of value {value[0][:40]!r}")
        return handler(value)

    def remember(self, n: Any, value: object) -> None:
        if type(n) is not int or n in self.memo:
            raise SnapshotFormatError(f"numbers its values wrongly (at {_brief(n)})")
        self.memo[n] = value

    def ref(self, value: list[Any]) -> Any:
        n = value[1] if len(value) == 2 else None
        if type(n) is not int or n not in self.memo:
            raise SnapshotFormatError(f"refers to a value it never wrote ({_brief(n)})")
        return self.memo[n]

    def list_(self, value: list[Any]) -> list[Any]:
        out: list[Any] = []
        self.remember(_at(value, 1), out)
        out.extend(self.items(value))
        return out

    def tuple_(self, value: list[Any]) -> tuple[Any, ...]:
        out = tuple(self.items(value))
        self.remember(_at(value, 1), out)
        return out

    def items(self, value: list[Any]) -> Any:
        items = value[2:]
        if {type(v) for v in items} <= _AS_IS:
            return items
        return map(self.node, items)

    def set_(self, value: list[Any]) -> set[Any] | frozenset[Any]:
        try:
            items = set(map(self.node, value[2:]))
        except TypeError:
            raise SnapshotFormatError("holds a set of unhashable values") from None
        out = items if value[0] == "s" else frozenset(items)
        self.remember(_at(value, 1), out)
        return out

    def dict_(self, value: list[Any]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        self.remember(_at(value, 1), out)
        items = value[2:]
        if len(items) % 2:
            raise SnapshotFormatError("holds a mapping with a key and no value")
        try:
            for i in range(0, len(items), 2):
                out[self.node(items[i])] = self.node(items[i + 1])
        except TypeError:
            raise SnapshotFormatError("holds a mapping with an unhashable key") from None
        return out

    def array(self, value: list[Any]) -> np.ndarray:
        out = self.take_array(_int(value, 2))
        self.remember(_at(value, 1), out)
        return out

    def take_array(self, index: Any) -> np.ndarray:
        if type(index) is not int:
            raise SnapshotFormatError(f"holds {_brief(index)} where a count belongs")
        if not 0 <= index < len(self.arrays) or index in self.used:
            raise SnapshotFormatError(f"names array {index}, which it does not hold once")
        self.used.add(index)
        try:
            out = np.load(io.BytesIO(self.arrays[index]), allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise SnapshotFormatError(f"holds an unreadable array ({error})") from None
        if not isinstance(out, np.ndarray) or out.dtype.kind not in ARRAY_KINDS:
            raise SnapshotFormatError(f"holds an array of {getattr(out, 'dtype', out)}")
        return out

    def kind(self, tag: Any, shape: str) -> Kind:
        kind = kind_by_tag(tag) if type(tag) is str else None
        if kind is None or kind.shape != shape:
            raise SnapshotFormatError(f"names {_brief(tag)}, which a snapshot may not hold")
        return kind

    def instance(self, value: list[Any]) -> object:
        if len(value) != 4 or type(value[3]) is not dict:
            raise SnapshotFormatError(f"holds a malformed object {_brief(value[:3])}")
        kind, state = self.kind(value[2], "object"), value[3]
        since = FIELDS_SINCE.get(kind.cls, {})
        needed = [name for name in kind.fields if name not in since or name in state]
        if len(state) != len(needed) or not all(name in state for name in needed):
            missing = sorted(set(needed) - set(state))
            extra = sorted(set(state) - set(kind.fields))[:5]
            raise SnapshotFormatError(
                f"holds a {kind.tag} without {missing} or with fields it does not have {extra}"
            )
        out = object.__new__(kind.cls)
        self.remember(_at(value, 1), out)
        values = {
            name: self.node(state[name]) if name in state else since[name] for name in kind.fields
        }
        for (name, item), allowed in zip(values.items(), kind.types, strict=False):
            if allowed is not None and not isinstance(item, allowed):
                raise SnapshotFormatError(
                    f"holds {_brief(item)} as {kind.tag}.{name}, which holds "
                    + " or ".join(sorted({t.__name__ for t in allowed}))
                )
        if kind.setstate:
            check = BEFORE_SETSTATE.get(kind.cls)
            if check is not None:
                check(values)
            out.__setstate__(values)  # type: ignore[attr-defined]
        else:
            for name, item in values.items():
                object.__setattr__(out, name, item)
        return out

    def named_tuple(self, value: list[Any]) -> tuple[Any, ...]:
        kind = self.kind(_at(value, 2), "tuple")
        items = [self.node(v) for v in value[3:]]
        if len(items) != len(kind.fields):
            raise SnapshotFormatError(f"holds a {kind.tag} of {len(items)} values")
        out = tuple.__new__(kind.cls, items)
        self.remember(_at(value, 1), out)
        return out

    def enum(self, value: list[Any]) -> Enum:
        kind = self.kind(_at(value, 1), "enum")
        try:
            return kind.cls(_at(value, 2))  # type: ignore[no-any-return]
        except (ValueError, TypeError):
            raise SnapshotFormatError(f"holds {_brief(value[2])} as a {kind.tag}") from None

    def float_(self, value: list[Any]) -> float:
        text = _str(value, 1)
        if text not in ("nan", "inf", "-inf"):
            raise SnapshotFormatError(f"holds {_brief(text)} as a float")
        return float(text)

    def decimal(self, value: list[Any]) -> Decimal:
        try:
            return Decimal(_str(value, 1))
        except InvalidOperation:
            raise SnapshotFormatError(f"holds {_brief(value[1])} as a decimal") from None

    def time(self, value: list[Any]) -> datetime:
        moment = datetime.fromisoformat(_str(value, 1))
        if moment.tzinfo is not None:
            raise SnapshotFormatError(f"holds {_brief(value[1])} as a UTC time")
        return moment.replace(tzinfo=UTC) if _at(value, 2) is True else moment

    def scalar(self, value: list[Any]) -> np.generic:
        kind = NUMPY_SCALARS.get(_str(value, 1))
        item = self.node(_at(value, 2))
        if kind is None or type(item) not in (bool, int, float):
            raise SnapshotFormatError(f"holds {_brief(value)} as a number")
        return kind(item)  # type: ignore[no-any-return]


def _at(value: list[Any], i: int) -> Any:
    if len(value) <= i:
        raise SnapshotFormatError(f"holds a truncated {_brief(value[0])} value")
    return value[i]


def _str(value: list[Any], i: int) -> str:
    item = _at(value, i)
    if type(item) is not str or len(item) > 10_000:
        raise SnapshotFormatError(f"holds {_brief(item)} where a text belongs")
    return item


def _int(value: list[Any], i: int) -> int:
    item = _at(value, i)
    if type(item) is not int:
        raise SnapshotFormatError(f"holds {_brief(item)} where a count belongs")
    return item


def _brief(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def load(blob: bytes) -> Any:
    """The state a blob holds, or SnapshotFormatError naming what is wrong with it."""
    if blob[: len(MAGIC) - 1] != MAGIC[:-1]:
        raise SnapshotFormatError(
            "is not in a format this version reads (stores written before snapshot format "
            f"{min(READS)} are not read: run the scenario again into a new store)"
        )
    start = len(MAGIC) + _HEADER.size
    if len(blob) < start:
        raise SnapshotFormatError("is truncated")
    if blob[len(MAGIC) - 1] not in READS:
        raise SnapshotFormatError(
            f"is in format {blob[len(MAGIC) - 1]}; this version reads formats "
            + " and ".join(map(str, sorted(READS)))
        )
    mode, tree_length = _HEADER.unpack_from(blob, len(MAGIC))
    body: bytes | memoryview = memoryview(blob)[start:]
    if mode == b"Z":
        unpack = zlib.decompressobj()
        try:
            body = unpack.decompress(body, MAX_RAW_BYTES)
        except zlib.error as error:
            raise SnapshotFormatError(f"does not decompress ({error})") from None
        if unpack.unconsumed_tail or not unpack.eof:
            raise SnapshotFormatError("is truncated or larger than a snapshot can be")
    elif mode != b"R":
        raise SnapshotFormatError(f"has an unknown body kind {mode!r}")
    view = memoryview(body)
    if tree_length > len(view):
        raise SnapshotFormatError("is truncated")
    try:
        document = orjson.loads(view[:tree_length])
    except orjson.JSONDecodeError as error:
        raise SnapshotFormatError(f"holds invalid JSON ({error})") from None
    if type(document) is not dict or set(document) != {"arrays", "root"}:
        raise SnapshotFormatError("lacks its array table or its root")
    arrays = []
    data = view[tree_length:]
    end = 0
    for entry in document["arrays"] if type(document["arrays"]) is list else [None]:
        if (
            type(entry) is not list
            or len(entry) != 2
            or not all(type(x) is int for x in entry)
            or entry[0] != end
            or entry[1] < 0
        ):
            raise SnapshotFormatError(f"has a malformed array table entry {_brief(entry)}")
        end = entry[0] + entry[1]
        arrays.append(data[entry[0] : end])
    if end != len(data):
        raise SnapshotFormatError("has bytes its array table does not account for")
    reader = _Reader(arrays)
    try:
        root = reader.node(document["root"])
    except RecursionError:
        raise SnapshotFormatError("nests deeper than any snapshot does") from None
    except InputError:
        raise
    except Exception as error:  # whatever the data makes fail, it is the data's fault
        raise SnapshotFormatError(f"cannot be rebuilt ({type(error).__name__}: {error})") from None
    if len(reader.used) != len(arrays):
        raise SnapshotFormatError("holds arrays nothing refers to")
    return root
