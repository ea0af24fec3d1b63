"""What a snapshot may hold and must hold: the engine's classes a snapshot names (each with the
fields it is written and rebuilt with, and the types they may hold), and the checks a store's
snapshot passes before a session starts from it."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from fractions import Fraction
from typing import Any

import numpy as np

from core.engine import (
    controls,
    deficit,
    ledger,
    liquidation,
    liquidation_orders,
    manipulation,
    result,
    settlement,
    surveillance,
    trading,
)
from core.engine.facade import Engine
from core.market import depth as book
from core.market import prices
from core.model import events, instruments, operations, thresholds, units
from core.model import scenario_values as scenario_model
from core.model import settlement as settlement_values
from core.model.errors import InputError, SnapshotFormatError
from core.risk import positions

# Classes with a plain __dict__ list the attributes a snapshot holds; dataclasses and slotted
# classes hold their fields or slots. Engine and PositionBook rebuild what they leave out
# through their own __setstate__.
_DICT_FIELDS: dict[type, tuple[str, ...]] = {
    Engine: (
        "book",
        "controls",
        "currencies",
        "currency_codes",
        "deficit_totals",
        "desk",
        "events",
        "fund_start",
        "index_now",
        "index_paths",
        "instruments",
        "ledger",
        "liquidity",
        "mark_rules",
        "marks",
        "now",
        "period_pnl",
        "positions_at_start",
        "scenario",
        "settlements",
        "surveillance",
        "tick",
        "ticks_total",
        "trading",
        "uncovered",
        "valuation",
        "windows",
    ),
    positions.PositionBook: (
        "account",
        "account_ids",
        "balances",
        "contracts",
        "currencies",
        "currency_scale",
        "entry_units",
        "inst_currency",
        "inst_cv",
        "inst_inverse",
        "inst_price_unit",
        "instrument",
        "instruments",
        "iso_margin",
        "isolated",
        "leverage",
        "n_currencies",
        "n_groups",
        "side",
    ),
    controls.Controls: ("adjustments", "engine", "flags", "pending_actions", "requests", "roles"),
    ledger.Ledger: ("_books", "_posting_count"),
    liquidation.LiquidationDesk: (
        "_currency",
        "_currency_index",
        "_price_unit",
        "_started_at",
        "engine",
        "o",
        "reserved",
    ),
    liquidation_orders.OrderColumns: (
        "bankruptcy",
        "collateral",
        "covered",
        "deficit",
        "entry_units",
        "filled_value",
        "fills",
        "instrument",
        "kind",
        "partial",
        "posted",
        "remaining",
        "reserved",
        "row",
        "side",
        "started",
        "surplus",
        "total",
    ),
    manipulation.TickSeries: ("_length", "_times", "_values", "retention_seconds"),
    manipulation.VolumeTape: ("_rows", "retention_seconds"),
    manipulation.WindowWatch: (
        "_last_prints",
        "_tick_events",
        "engine",
        "observed_since",
        "series",
        "symbols",
        "tape",
    ),
    settlement.Settlements: (
        "assessments",
        "checks",
        "delays",
        "done",
        "engine",
        "pending",
        "schedule",
        "watch",
    ),
    surveillance.Surveillance: (
        "engine",
        "last_run",
        "n_instruments",
        "standing",
        "standing_markets",
        "thresholds",
    ),
    trading.Trading: (
        "_chain",
        "_extra_rows",
        "_order",
        "_sorted_keys",
        "engine",
        "log_change",
        "log_key",
        "log_seconds",
        "n_instruments",
        "next",
        "symbols",
        "trades",
        "volume",
    ),
}
# Every event the engine emits (a plain frozen dataclass of core/model/events.py) may be in a snapshot.
_EVENTS = tuple(
    v
    for v in vars(events).values()
    if isinstance(v, type)
    and v.__module__ == events.__name__
    and (is_dataclass(v) or v.__bases__ == (tuple,))
)
_VALUE_CLASSES: tuple[type, ...] = (
    *_EVENTS,
    book.BookState,
    book.DepthBook,
    book.FillAtMark,
    book.Fill,
    operations.Request,
    deficit.ClawbackAllocation,
    instruments.Instrument,
    instruments.TierLevel,
    instruments.TierTable,
    ledger.AccountKind,
    ledger.Flow,
    ledger.LedgerKey,
    ledger.Posting,
    ledger.TraderBatch,
    ledger._CurrencyBook,
    liquidation_orders.Order,
    settlement_values.SettlementChecks,
    settlement_values.WindowAssessment,
    prices.MarkPriceEMA,
    prices.PinnedMark,
    prices.PricePath,
    prices.SettlementWindow,
    result.ResultCollector,
    scenario_model.AccountSpec,
    scenario_model.ActionSpec,
    scenario_model.BookSpec,
    scenario_model.CrowdSpec,
    scenario_model.Market,
    scenario_model.OperatorSpec,
    scenario_model.Policy,
    scenario_model.PositionSpec,
    scenario_model.Scenario,
    scenario_model.SettlementPolicy,
    settlement_values.ClawbackPreview,
    settlement_values.PendingClawback,
    settlement_values.SettlementReview,
    thresholds.Thresholds,
    trading.TradeSpec,
    units.Currency,
    units.Rounding,
)
NUMPY_SCALARS = {
    t.__name__: t
    for t in (
        np.bool_,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.float32,
        np.float64,
    )
}


@dataclass(frozen=True, slots=True)
class Kind:
    """How one allowed class is written and rebuilt."""

    cls: type
    tag: str
    fields: tuple[str, ...]
    shape: str  # "object", "enum" or "tuple" (a NamedTuple)
    setstate: bool  # rebuilt through the class's own __setstate__ (what it leaves out)
    types: tuple[tuple[type, ...] | None, ...] = ()  # per field what it may hold; None: anything


def _kind(cls: type) -> Kind:
    tag = cls.__qualname__  # unique among the allowed classes (checked below), whatever its module
    if issubclass(cls, Enum):
        return Kind(cls, tag, (), "enum", False)
    if issubclass(cls, tuple):
        return Kind(cls, tag, tuple(cls._fields), "tuple", False)  # type: ignore[attr-defined]
    if is_dataclass(cls):
        names = tuple(f.name for f in fields(cls))
        types = tuple(_allowed(str(f.type)) for f in fields(cls))
        return Kind(cls, tag, names, "object", False, types)
    if cls in _DICT_FIELDS:
        own = "__setstate__" in vars(cls)
        notes: dict[str, object] = {}
        for base in reversed(cls.__mro__):
            notes.update(inspect.get_annotations(base))
        types = tuple(_allowed(str(notes.get(name, ""))) for name in _DICT_FIELDS[cls])
        return Kind(cls, tag, _DICT_FIELDS[cls], "object", own, types)
    slots = tuple(s for c in cls.__mro__ for s in vars(c).get("__slots__", ()))
    if not slots or any("__dict__" in vars(c) for c in cls.__mro__[:-1]):
        raise TypeError(f"{tag} declares no snapshot fields")
    return Kind(cls, tag, tuple(sorted(slots)), "object", False)


_PLAIN: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int, np.integer),
    "float": (float, int, np.floating, np.integer),
    "bool": (bool, np.bool_),
    "None": (type(None),),
    "datetime": (datetime,),
    "Decimal": (Decimal,),
    "Fraction": (Fraction,),
    "tuple": (tuple,),
    "list": (list,),
    "dict": (dict,),
    "set": (set,),
    "frozenset": (frozenset,),
    "np.ndarray": (np.ndarray,),
    "Literal": (str, int),
    **{cls.__name__: (cls,) for cls in (*_DICT_FIELDS, *_VALUE_CLASSES)},
}


def _allowed(annotation: str) -> tuple[type, ...] | None:
    """The types a field annotated `annotation` may hold, read from its outer names only (no
    annotation is evaluated); None where a name is not a plain one (a type alias, say)."""
    out: list[type] = []
    depth, start, parts = 0, 0, []
    for i, char in enumerate(annotation + "|"):
        depth += (char == "[") - (char == "]")
        if char == "|" and depth == 0:
            parts.append(annotation[start:i].strip())
            start = i + 1
    for part in parts:
        known = _PLAIN.get(part.split("[", 1)[0])
        if known is None:
            return None
        out.extend(known)
    return tuple(out)


KINDS = {k.cls: k for k in map(_kind, (*_DICT_FIELDS, *_VALUE_CLASSES))}
BY_TAG = {k.tag: k for k in KINDS.values()}
if len(BY_TAG) != len(KINDS):
    raise TypeError("two classes a snapshot may hold share a name")


def kind_by_tag(tag: str) -> Kind | None:
    """The allowed class a snapshot's tag names. Snapshots written before the packages named a
    class by its old module as well (`core.positions.PositionBook`): the name alone decides."""
    kind = BY_TAG.get(tag)
    if kind is None and tag.startswith("core."):
        kind = BY_TAG.get(tag.rpartition(".")[2])
    return kind


# ----- what a store's snapshots must hold ----------------------------------------------------

_POSITION_COLUMNS = {
    "account": np.int64,
    "contracts": np.int64,
    "entry_units": np.int64,
    "instrument": np.int64,
    "iso_margin": np.int64,
    "isolated": np.bool_,
    "leverage": np.float64,
    "side": np.int8,
}
_INSTRUMENT_COLUMNS = {
    "inst_currency": np.int64,
    "inst_cv": np.float64,
    "inst_inverse": np.bool_,
    "inst_price_unit": np.float64,
}


def _column(where: str, value: object, dtype: type, length: int) -> None:
    if not isinstance(value, np.ndarray) or value.dtype != dtype or value.shape != (length,):
        found = f"{getattr(value, 'dtype', type(value).__name__)}{getattr(value, 'shape', '')}"
        raise SnapshotFormatError(
            f"holds {where} as {found} where {np.dtype(dtype)}({length},) belongs"
        )


def _check_book(state: dict[str, Any]) -> None:
    """A position book's columns agree with one another, before it rebuilds its indexes."""
    accounts, instruments = state["account_ids"], state["instruments"]
    count = state["n_currencies"]
    if type(accounts) is not list or type(instruments) is not tuple or type(count) is not int:
        raise SnapshotFormatError("holds a position book without its accounts or instruments")
    rows = getattr(state["contracts"], "shape", (0,))[0]
    for name, dtype in _POSITION_COLUMNS.items():
        _column(f"PositionBook.{name}", state[name], dtype, rows)
    for name, dtype in _INSTRUMENT_COLUMNS.items():
        _column(f"PositionBook.{name}", state[name], dtype, len(instruments))
    _column("PositionBook.currency_scale", state["currency_scale"], np.float64, count)
    balances = state["balances"]
    if (
        not isinstance(balances, np.ndarray)
        or balances.dtype != np.int64
        or balances.shape != (len(accounts), count)
    ):
        raise SnapshotFormatError(
            f"holds PositionBook.balances of shape {getattr(balances, 'shape', None)} for "
            f"{len(accounts)} accounts in {count} currencies"
        )
    for name, limit in (("account", len(accounts)), ("instrument", len(instruments))):
        column = state[name]
        if rows and not (int(column.min()) >= 0 and int(column.max()) < limit):
            raise SnapshotFormatError(f"holds PositionBook.{name} beyond the {limit} it lists")
    currency = state["inst_currency"]
    if len(instruments) and not (int(currency.min()) >= 0 and int(currency.max()) < count):
        raise SnapshotFormatError("holds PositionBook.inst_currency beyond its currencies")


# Fields a class gained after stores were written, with what a snapshot without them meant:
# an instrument written before conventions existed valued its margin at the mark, with no fee.
FIELDS_SINCE: dict[type, dict[str, object]] = {
    instruments.Instrument: {"margin_convention": "mark", "close_fee_rate": Decimal(0)},
}

# Checks a class's decoded fields pass before its own __setstate__ rebuilds from them.
BEFORE_SETSTATE: dict[type, Callable[[dict[str, Any]], None]] = {
    positions.PositionBook: _check_book,
}


def _check_engine(engine: Engine) -> None:
    """The engine's counts, clock and columns agree with its book (what the hash check below
    does not cover: a column of another dtype or length, a count of another type)."""
    for name, allowed in (("tick", int), ("ticks_total", int), ("now", datetime)):
        if type(getattr(engine, name)) is not allowed:
            raise SnapshotFormatError(f"holds {getattr(engine, name)!r:.60} as Engine.{name}")
    book = engine.book
    if type(book) is not positions.PositionBook:
        raise SnapshotFormatError("holds no position book")
    if book.n_currencies != len(engine.currency_codes) or len(book.instruments) != len(
        engine.instruments
    ):
        raise SnapshotFormatError("holds a book of other currencies or instruments")
    accounts = len(book.account_ids)
    _column("Engine.marks", engine.marks, np.float64, len(engine.instruments))
    _column("Controls.flags", engine.controls.flags, np.int8, accounts)
    for key, pnl in engine.period_pnl.items():
        _column(f"Engine.period_pnl[{key!r}]", pnl, np.int64, accounts)


def check_state(state: object, recorded_hash: str | None) -> tuple[Any, Any]:
    """A snapshot's (engine, result collector), checked: the shapes above, and the state hash
    the journal recorded at its tick (the engine rebuilt from it must give that hash)."""
    if (
        type(state) is not tuple
        or len(state) != 2
        or type(state[0]) is not Engine
        or type(state[1]) is not result.ResultCollector
        or state[1].engine is not state[0]
    ):
        raise SnapshotFormatError("does not hold an engine and its result collector")
    try:
        _check_engine(state[0])
        actual = state[0].state_hash()
    except InputError:
        raise
    except Exception as error:  # any failure here means a snapshot of another shape
        raise SnapshotFormatError(f"cannot be rebuilt ({type(error).__name__}: {error})") from None
    if recorded_hash is not None and actual != recorded_hash:
        raise SnapshotFormatError(
            f"at tick {state[0].tick} gives another state than the run recorded there"
        )
    return state


def check_events(chunk: object) -> list[Any]:
    """An event chunk: a list of engine events and nothing else."""
    if type(chunk) is not list or not all(type(e) in _EVENT_CLASSES for e in chunk):
        raise SnapshotFormatError("holds an event chunk that is not a list of events")
    return chunk


_EVENT_CLASSES = frozenset(cls for cls in _EVENTS if is_dataclass(cls))
