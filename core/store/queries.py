"""What the console and the command line read from a store: top accounts, one account's history,
the fund's history, liquidations in a time range, clawback allocations, and table export. Every
query is paged and served by an index."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import sqlite_utils

from core.engine.facade import Engine
from core.model import files
from core.model.errors import InputError
from core.model.text import csv_row, csv_writer

# Tables `export` writes, with the columns it leaves out (password material never leaves).
EXPORTABLE: dict[str, tuple[str, ...]] = {
    "liquidation_starts": (),
    "liquidations": (),
    "adl": (),
    "fund_history": (),
    "settlements": (),
    "clawbacks": (),
    "clawback_allocations": (),
    "events": (),
    "account_state": (),
    "prices": (),
    "journal": (),
    "accounts": (),
    "instruments": (),
    "requests": (),
    "audit_log": (),
    "alerts": (),
    "operators": ("salt", "password_hash", "scrypt_n", "scrypt_r", "scrypt_p"),
}
# Not a table of the store: the engine's book at the store's last tick (core/store/positions_export.py).
POSITIONS = "positions"
# The per-account table: a big book's is brought to the store's last tick when it is exported.
ACCOUNT_STATE = "account_state"
# Each ordering is served by an index on (currency, column); accounts that need no maintenance
# margin have no margin ratio and are not listed by risk.
ORDER = {
    "notional": ("positions > 0", "notional DESC"),
    "risk": ("margin_ratio IS NOT NULL", "margin_ratio ASC"),
}


def account_state_rows(engine: Engine) -> Iterator[tuple[Any, ...]]:
    """Per account and currency with money or positions: cash (minor units) and the valuation
    (major-unit floats) at the engine's last revaluation."""
    book, valuation = engine.book, engine.valuation
    groups = book.n_groups
    scale = np.repeat(
        np.array([c.scale for c in engine.currencies], dtype=np.float64)[None, :],
        len(book.account_ids),
        axis=0,
    ).ravel()
    cash = book.balances.ravel()
    held = book.contracts > 0
    upnl = np.bincount(book.group, weights=valuation.upnl, minlength=groups)
    margin = np.bincount(book.group, weights=book.iso_margin / scale[book.group], minlength=groups)
    equity = cash / scale + upnl + margin
    notional = np.bincount(
        book.group, weights=np.where(held, valuation.notional, 0.0), minlength=groups
    )
    maintenance = np.bincount(
        book.group, weights=np.where(held, valuation.maintenance, 0.0), minlength=groups
    )
    positions = np.bincount(book.group, weights=held, minlength=groups).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(maintenance > 0, equity / maintenance, np.nan)
    live = np.flatnonzero((cash != 0) | (positions > 0))
    ids, codes, n = book.account_ids, engine.currency_codes, len(engine.currency_codes)
    tick = engine.tick
    for g, c, e, no, m, r, p in zip(
        live.tolist(),
        cash[live].tolist(),
        equity[live].tolist(),
        notional[live].tolist(),
        maintenance[live].tolist(),
        ratio[live].tolist(),
        positions[live].tolist(),
        strict=True,
    ):
        yield (ids[g // n], codes[g % n], tick, c, e, no, m, None if r != r else r, p)


def _page(limit: int, offset: int) -> tuple[int, int]:
    if not 1 <= limit <= 10_000:
        raise InputError("limit", f"expected 1 to 10000 rows, found {limit}")
    if offset < 0:
        raise InputError("offset", f"expected 0 or more, found {offset}")
    return limit, offset


def top_accounts(
    db: sqlite_utils.Database, currency: str, by: str = "notional", limit: int = 50, offset: int = 0
) -> list[dict[str, Any]]:
    """The largest (by notional) or riskiest (lowest margin ratio) accounts in a currency."""
    if by not in ORDER:
        raise InputError("by", f"expected one of {', '.join(ORDER)}, found {by!r}")
    limit, offset = _page(limit, offset)
    return list(
        db.query(
            f"SELECT * FROM account_state WHERE currency = ? AND {ORDER[by][0]} "
            f"ORDER BY {ORDER[by][1]} LIMIT ? OFFSET ?",
            [currency, limit, offset],
        )
    )


def account_history(
    db: sqlite_utils.Database, account: str, limit: int = 200, offset: int = 0
) -> list[dict[str, Any]]:
    """Everything that happened to one account, oldest first: its events and clawback deductions
    (each clawback once: the applied row, or the pending one while it waits)."""
    limit, offset = _page(limit, offset)
    charged = ",".join(str(r.seq) for r in clawback_records(db)) or "NULL"
    return list(
        db.query(
            "SELECT tick, time, kind, symbol, currency, amount, payload FROM events "
            "WHERE account = :account "
            "UNION ALL "
            "SELECT tick, time, 'LiquidationFilled', symbol, currency, -deficit, "
            "json_object('started', started, 'side', side, 'contracts', contracts, "
            "'partial', partial, 'fill_price', fill_price, 'bankruptcy_price', bankruptcy_price, "
            "'surplus', surplus, 'deficit', deficit, 'covered_by_fund', covered_by_fund) "
            "FROM liquidations WHERE account = :account "
            "UNION ALL "
            "SELECT tick, time, 'LiquidationStarted', symbol, currency, NULL, "
            "json_object('side', side, 'contracts', contracts, 'partial', partial, "
            "'bankruptcy_price', bankruptcy_price, 'reserved', reserved) "
            "FROM liquidation_starts WHERE account = :account "
            "UNION ALL "
            "SELECT tick, time, 'AdlFill', symbol, NULL, NULL, "
            "json_object('contracts', contracts, 'price', price, 'against', against) "
            "FROM adl WHERE account = :account "
            "UNION ALL "
            "SELECT c.tick, c.time, 'ClawbackDeduction', c.family, c.currency, -a.amount, "
            "json_object('profit', a.profit, 'amount', a.amount, 'ratio', c.ratio, "
            "'status', c.status) "
            "FROM clawback_allocations a JOIN clawbacks c ON c.seq = a.clawback "
            f"WHERE a.account = :account AND a.amount > 0 AND c.seq IN ({charged}) "
            "ORDER BY tick, kind LIMIT :limit OFFSET :offset",
            {"account": account, "limit": limit, "offset": offset},
        )
    )


@dataclass(frozen=True, slots=True)
class ClawbackRecord:
    """One clawback as it stands at a moment. The store keeps a row per event: a pending row when
    a settlement computes it, then a row when a supervisor applies or rejects it; the decision
    replaces the pending row. `seq` is the row holding the status and the allocations (the
    decision once made, else the pending row); `computed_at` is the settlement's time and
    `decided_at` the decision's ("" while pending; the same time when applied at once)."""

    seq: int
    computed_at: str
    decided_at: str
    family: str
    currency: str
    status: str  # applied, pending, rejected


def clawback_records(db: sqlite_utils.Database, until: str | None = None) -> list[ClawbackRecord]:
    """Every clawback of the store once, in the order computed, with its status as of `until`
    (ISO UTC; the end of the run when None): a decision made later leaves it pending."""
    out: list[ClawbackRecord] = []
    waiting: dict[tuple[str, str], int] = {}  # (family, currency) -> index of its pending record
    for seq, time, family, currency, status in db.execute(
        "SELECT seq, time, family, currency, status FROM clawbacks ORDER BY seq"
    ).fetchall():
        key = (family, currency)
        if status == "pending":
            # A settlement computes a new one only once the one before it was decided.
            waiting[key] = len(out)
            out.append(ClawbackRecord(seq, time, "", family, currency, status))
        elif key in waiting:
            index = waiting.pop(key)
            if until is None or time <= until:
                computed = out[index].computed_at
                out[index] = ClawbackRecord(seq, computed, time, family, currency, status)
        else:
            out.append(ClawbackRecord(seq, time, time, family, currency, status))
    return out


def fund_history(
    db: sqlite_utils.Database, currency: str, limit: int = 1000, offset: int = 0
) -> list[dict[str, Any]]:
    """Every movement of the insurance fund in a currency, with the balance after it."""
    limit, offset = _page(limit, offset)
    return list(
        db.query(
            "SELECT * FROM fund_history WHERE currency = ? ORDER BY tick, seq LIMIT ? OFFSET ?",
            [currency, limit, offset],
        )
    )


def liquidations_between(
    db: sqlite_utils.Database, start: str, end: str, limit: int = 1000, offset: int = 0
) -> list[dict[str, Any]]:
    """Liquidations finished in [start, end] (ISO UTC times), oldest first."""
    limit, offset = _page(limit, offset)
    return list(
        db.query(
            "SELECT * FROM liquidations WHERE time BETWEEN ? AND ? ORDER BY time, seq "
            "LIMIT ? OFFSET ?",
            [start, end, limit, offset],
        )
    )


def clawback_allocations(
    db: sqlite_utils.Database, clawback: int, limit: int = 1000, offset: int = 0
) -> list[dict[str, Any]]:
    """One clawback's allocations, largest first."""
    limit, offset = _page(limit, offset)
    return list(
        db.query(
            "SELECT * FROM clawback_allocations WHERE clawback = ? "
            "ORDER BY amount DESC, account LIMIT ? OFFSET ?",
            [clawback, limit, offset],
        )
    )


def export_table(db: sqlite_utils.Database, table: str, fmt: str, out: TextIO) -> int:
    """Write a whole table as CSV (a header row) or JSON (a list of objects); returns the rows."""
    check_export(table, fmt)
    hidden = EXPORTABLE[table]
    columns = [c.name for c in db[table].columns if c.name not in hidden]
    selected = ", ".join(f'"{c}"' for c in columns)
    cursor = db.execute(f'SELECT {selected} FROM "{table}" ORDER BY rowid')
    count = 0
    if fmt == "csv":
        writer = csv_writer(out)
        writer.writerow(csv_row(columns))
        for row in cursor:
            writer.writerow(csv_row(_cell(v) for v in row))
            count += 1
        return count
    out.write("[")
    for row in cursor:
        out.write(",\n" if count else "\n")
        out.write(json.dumps(dict(zip(columns, (_cell(v) for v in row), strict=True))))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def check_export(table: str, fmt: str) -> None:
    """Refuse an unknown table or format (before anything is opened for writing)."""
    if table not in EXPORTABLE and table != POSITIONS:
        names = ", ".join((*EXPORTABLE, POSITIONS))
        raise InputError("--table", f"expected one of {names}, found {table!r}")
    if fmt not in ("csv", "json", "parquet"):
        raise InputError("--format", f"expected csv, json or parquet, found {fmt!r}")
    if table == POSITIONS and fmt == "json":
        raise InputError("--format", "expected parquet or csv for the positions table")


def _cell(value: object) -> object:
    return value.hex() if isinstance(value, bytes) else value


def export_to(db: sqlite_utils.Database, table: str, fmt: str, path: Path | None) -> int:
    if path is None:
        import sys

        return export_table(db, table, fmt, sys.stdout)
    check_export(table, fmt)
    with files.replacing(path) as out:
        return export_table(db, table, fmt, out)
