"""A store's positions (the engine's book at a tick) as an Arrow table, written as Parquet or CSV:
the columns the positions import reads (docs/exchange-data.md), exact decimals, and the valuation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import sqlite_utils

from core.engine.facade import Engine
from core.model import files
from core.model.errors import InputError
from core.scenario.decimal_columns import decimal_array, decimal_scale


def positions_table(engine: Engine) -> pa.Table:
    """One row per open position, in book order."""
    book, valuation = engine.book, engine.valuation
    rows = np.flatnonzero(book.contracts > 0)
    k = book.instrument[rows]
    units = [decimal_scale(inst.price_unit) for inst in book.instruments]
    price_scale = max(s for _, s in units)
    factor = np.array([m * 10 ** (price_scale - s) for m, s in units], dtype=np.int64)
    money_scale = max(c.decimals for c in book.currencies)
    money_factor = np.array([10 ** (money_scale - c.decimals) for c in book.currencies])
    currency = book.position_currency[rows]
    isolated = book.isolated[rows]
    margin = decimal_array(book.iso_margin[rows] * money_factor[currency], money_scale)
    balance = book.balances[book.account[rows], currency] * money_factor[currency]
    ids = pa.array(book.account_ids, pa.string())
    symbols = pa.array([inst.symbol for inst in book.instruments], pa.string())
    return pa.table(
        {
            "account": ids.take(pa.array(book.account[rows])),
            "symbol": symbols.take(pa.array(k)),
            "side": pa.array(np.where(book.side[rows] > 0, "long", "short")),
            "contracts": pa.array(book.contracts[rows]),
            "entry_price": decimal_array(book.entry_units[rows] * factor[k], price_scale),
            "margin_mode": pa.array(np.where(isolated, "isolated", "cross")),
            "margin": _masked(margin, ~isolated),
            "leverage": pa.array(book.leverage[rows]),
            "balance": decimal_array(balance, money_scale),
            "mark_price": pa.array(engine.marks[k]),
            "notional": pa.array(valuation.notional[rows]),
            "upnl": pa.array(valuation.upnl[rows]),
            "maintenance_margin": pa.array(valuation.maintenance[rows]),
        }
    )


def _masked(column: pa.Array, empty: np.ndarray) -> pa.Array:
    """`column` with nulls where `empty` (a cross position has no margin of its own)."""
    return pc.if_else(pa.array(empty), pa.scalar(None, column.type), column)


def write_table(table: pa.Table, fmt: str, path: Path) -> int:
    """Write `table` to `path` whole (replacing it only when complete); returns the rows."""
    with files.replacing_path(path) as temp:
        if fmt == "parquet":
            pq.write_table(table, temp)
        elif fmt == "csv":
            pacsv.write_csv(table, temp)
        else:
            raise InputError("--format", f"expected parquet or csv for this table, found {fmt!r}")
    return table.num_rows


def store_table(db: sqlite_utils.Database, table: str, hidden: tuple[str, ...]) -> pa.Table:
    """A whole table of the store as Arrow columns (for Parquet)."""
    columns = [c.name for c in db[table].columns if c.name not in hidden]
    selected = ", ".join(f'"{c}"' for c in columns)
    rows = db.execute(f'SELECT {selected} FROM "{table}" ORDER BY rowid').fetchall()
    data = list(zip(*rows, strict=True)) if rows else [[] for _ in columns]
    return pa.table(
        {name: pa.array(list(values)) for name, values in zip(columns, data, strict=True)}
    )
