"""The incident report's output: the integrity footer identifying the evidence, and a report
written as JSON (all of it, round-trips with `from_dict`) or CSV (every liquidation and clawback
allocation in the range), either with the what-if comparison of the store's branches when it has
some (given by the caller: core.whatif sits above the report)."""

from __future__ import annotations

import hashlib
import json
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import sqlite_utils

from core.desk import audit
from core.model import files
from core.model.errors import InputError
from core.model.text import csv_row, csv_writer
from core.model.units import format_minor, to_minor
from core.report.scope import GROUPS_MAX as GROUPS_MAX  # read by the report's tests
from core.report.scope import (
    LIQUIDATION_COLUMNS,
    Scope,
    liquidation_row,
    liquidation_where,
)
from core.report.series import MAX_POINTS as MAX_POINTS  # read by the report's tests
from core.store.schema import SCHEMA_VERSION
from core.store.store import software_version

# Files larger than this are identified by size only: hashing them would take minutes.
HASH_LIMIT_BYTES = 4 * 1024**3
CSV_COLUMNS = (
    "record",
    "seq",
    "time",
    "started",
    "account",
    "symbol",
    "family",
    "side",
    "contracts",
    "partial",
    "fill_price",
    "bankruptcy_price",
    "surplus",
    "deficit",
    "covered_by_fund",
    "fills",
    "ratio",
    "status",
    "profit",
    "amount",
    "currency",
)


@dataclass(frozen=True, slots=True)
class Integrity:
    """What identifies the evidence: the audit chain's head at export, the store file and the
    engine state hash recorded at the end of the range."""

    audit_head_hash: str
    audit_rows: int
    audit_sound: bool
    audit_problem: str | None
    store_path: str
    store_bytes: int
    store_sha256: str | None
    wal_bytes: int
    schema_version: int
    store_software_version: str
    software_version: str
    state_tick: int | None
    state_hash: str | None


def build_integrity(db: sqlite_utils.Database, scope: Scope, store_path: str | Path) -> Integrity:
    path = Path(store_path).resolve()
    size = path.stat().st_size
    digest = None
    if size <= HASH_LIMIT_BYTES:
        sha = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
        digest = sha.hexdigest()
    wal = Path(f"{path}-wal")
    checked = audit.verify(db)
    state = db.execute(
        "SELECT tick, state_hash FROM journal WHERE kind = 'tick' AND tick <= ? "
        "AND state_hash IS NOT NULL ORDER BY tick DESC LIMIT 1",
        (scope.end_tick,),
    ).fetchone()
    stored_version = db.execute("SELECT value FROM meta WHERE key = 'software_version'").fetchone()
    return Integrity(
        audit_head_hash=audit.head_hash(db),
        audit_rows=checked.rows,
        audit_sound=checked.ok,
        audit_problem=checked.problem,
        store_path=str(path),
        store_bytes=size,
        store_sha256=digest,
        wal_bytes=wal.stat().st_size if wal.exists() else 0,
        schema_version=SCHEMA_VERSION,
        store_software_version=stored_version[0] if stored_version else "unknown",
        software_version=software_version(),
        state_tick=None if state is None else int(state[0]),
        state_hash=None if state is None else str(state[1]),
    )


# ----- JSON ---------------------------------------------------------------------------------


def to_dict(value: Any, decimals: dict[str, int]) -> Any:
    """A report value as plain JSON values; money fields become exact decimal strings."""
    if is_dataclass(value) and not isinstance(value, type):
        out = {}
        currency = getattr(value, "currency", "")
        for f in fields(value):
            item = getattr(value, f.name)
            if f.metadata.get("money") and item is not None:
                places = decimals.get(currency, 0)
                item = (
                    [format_minor(v, places) for v in item]
                    if isinstance(item, tuple)
                    else format_minor(item, places)
                )
                out[f.name] = item
            else:
                out[f.name] = to_dict(item, decimals)
        return out
    if isinstance(value, tuple | list):
        return [to_dict(v, decimals) for v in value]
    if isinstance(value, dict):
        return {k: to_dict(v, decimals) for k, v in value.items()}
    return value


def from_dict(cls: type, data: dict[str, Any], decimals: dict[str, int]) -> Any:
    """The inverse of `to_dict` for the dataclass `cls`."""
    hints = typing.get_type_hints(cls)
    currency = data.get("currency", "")
    values = {}
    for f in fields(cls):
        if f.name not in data:
            raise InputError(f.name, f"missing from the report JSON ({cls.__name__})")
        raw = data[f.name]
        if f.metadata.get("money") and raw is not None:
            places = decimals.get(currency, 0)
            values[f.name] = (
                tuple(to_minor(Decimal(v), places) for v in raw)
                if isinstance(raw, list)
                else to_minor(Decimal(raw), places)
            )
        else:
            values[f.name] = _convert(hints[f.name], raw, decimals)
    return cls(**values)


def _convert(kind: Any, raw: Any, decimals: dict[str, int]) -> Any:
    if raw is None:
        return None
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return _convert(next(a for a in args if a is not type(None)), raw, decimals)
    if isinstance(kind, type) and is_dataclass(kind):
        return from_dict(kind, raw, decimals)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, decimals) for v in raw)
        return tuple(_convert(a, v, decimals) for a, v in zip(args, raw, strict=True))
    if origin is dict:
        return {k: _convert(args[1], v, decimals) for k, v in raw.items()}
    if kind is float:
        return float(raw)
    return raw


def dumps(report: Any, whatif: dict[str, Any] | None = None) -> str:
    """The report's JSON; `whatif`, the risk-whatif/1 comparison of the store's branches, is its
    `whatif` member when given (absent otherwise, so a store without branches writes what it
    always did). `from_dict` reads the report's own members and leaves `whatif` aside."""
    doc = to_dict(report, dict(report.currencies))
    if whatif is not None:
        doc["whatif"] = whatif
    return json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(report: Any, path: str | Path, whatif: dict[str, Any] | None = None) -> None:
    files.write_text(path, dumps(report, whatif))


# ----- CSV ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExtraRecords:
    """Rows of another table written into the report's CSV after its own, each a `record` row
    (the what-if comparison's, `whatif`): the rows are keyed by `columns`."""

    record: str
    columns: tuple[str, ...]
    rows: Iterable[Mapping[str, Any]]


def csv_columns(extra: ExtraRecords | None = None) -> tuple[str, ...]:
    """The report CSV's header: its own columns, then those of `extra` it does not have. The
    existing columns keep their names and places (tools read them), and an extra row read by its
    own table's names is the row that table's CSV holds."""
    if extra is None:
        return CSV_COLUMNS
    return CSV_COLUMNS + tuple(c for c in extra.columns if c not in CSV_COLUMNS)


def write_csv(
    report: Any,
    db: sqlite_utils.Database,
    out: TextIO,
    extra: ExtraRecords | None = None,
) -> int:
    """Every liquidation and every clawback allocation of the report's range and filters, one
    table with a `record` column; amounts are exact decimal strings. `extra` rows (the what-if
    comparison's) follow as records of their own, their columns added. Returns the rows
    written."""
    scope: Scope = report.scope
    decimals = dict(report.currencies)
    columns = csv_columns(extra)
    writer = csv_writer(out)
    writer.writerow(columns)
    count = 0
    where, args = liquidation_where(scope)
    for r in db.execute(
        f"SELECT {LIQUIDATION_COLUMNS} FROM liquidations WHERE {where} ORDER BY seq", args
    ):
        row = liquidation_row(r)
        places = decimals.get(row.currency, 0)
        writer.writerow(
            _csv_row(
                columns,
                record="liquidation",
                seq=row.seq,
                time=row.time,
                started=row.started,
                account=row.account,
                symbol=row.symbol,
                side=row.side,
                contracts=row.contracts,
                partial=int(row.partial),
                fill_price=row.fill_price,
                bankruptcy_price=row.bankruptcy_price or "",
                surplus=format_minor(row.surplus, places),
                deficit=format_minor(row.deficit, places),
                covered_by_fund=format_minor(row.covered_by_fund, places),
                fills=row.fills,
                currency=row.currency,
            )
        )
        count += 1
    acc, acc_args = scope.account_clause("a.account")
    for claw in report.clawbacks:
        places = decimals.get(claw.currency, 0)
        for account, profit, amount in db.execute(
            "SELECT a.account, a.profit, a.amount FROM clawback_allocations a "
            f"WHERE a.clawback = ? {acc} ORDER BY a.amount DESC, a.account",
            (claw.seq, *acc_args),
        ):
            writer.writerow(
                _csv_row(
                    columns,
                    record="allocation",
                    seq=claw.seq,
                    time=claw.time,
                    account=account,
                    family=claw.family,
                    ratio=claw.ratio,
                    status=claw.status,
                    profit=format_minor(profit, places),
                    amount=format_minor(amount, places),
                    currency=claw.currency,
                )
            )
            count += 1
    if extra is not None:
        for row in extra.rows:
            writer.writerow(_csv_row(columns, **{**row, "record": extra.record}))
            count += 1
    return count


def _csv_row(columns: tuple[str, ...] = CSV_COLUMNS, /, **values: Any) -> list[Any]:
    return csv_row(values.get(name, "") for name in columns)
