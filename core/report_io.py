"""The incident report's input and output: reading a store for a report (the scope of a time
range, liquidation rows, chart series, the integrity footer) and writing a report as JSON (all of
it, round-trips with `from_dict`) or CSV (every liquidation and clawback allocation in the range)."""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import sqlite_utils

from core import audit
from core.errors import InputError
from core.schema import SCHEMA_VERSION
from core.store import software_version
from core.units import format_minor, to_minor
from core.views import price_str

# Files larger than this are identified by size only: hashing them would take minutes.
HASH_LIMIT_BYTES = 4 * 1024**3
MAX_POINTS = 2000
# Half the window of the close-up price chart around the largest liquidation.
ZOOM_SECONDS = 3600
# Upper edges of the margin-ratio bins (equity / maintenance; liquidation at 1).
RATIO_EDGES = (1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 10.0)
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


def money(default: Any = 0) -> Any:
    """A dataclass field holding minor units (an int, None or a tuple of ints): JSON and CSV write
    it as an exact decimal string in the record's `currency`."""
    return field(default=default, metadata={"money": True})


@dataclass(frozen=True, slots=True)
class Scope:
    """The incident: a time range of a store (ISO UTC, inclusive) and optional filters, with the
    reference data the report needs (instruments in scope, currencies and their decimals)."""

    scenario: str
    description: str
    start: str
    end: str
    start_tick: int
    end_tick: int
    run_start: str
    run_end: str
    accounts: tuple[str, ...]
    instruments: tuple[str, ...]
    symbols: tuple[str, ...]
    symbol_currency: tuple[tuple[str, str], ...]
    symbol_index: tuple[tuple[str, str], ...]
    families: tuple[tuple[str, str], ...]
    currencies: tuple[tuple[str, int], ...]
    fund_opening: tuple[tuple[str, int], ...]

    @property
    def currency_codes(self) -> tuple[str, ...]:
        return tuple(sorted({c for _, c in self.families}))

    def account_clause(self, column: str) -> tuple[str, tuple[str, ...]]:
        if not self.accounts:
            return "", ()
        return f"AND {column} IN ({','.join('?' * len(self.accounts))})", self.accounts

    def symbol_clause(self, column: str) -> tuple[str, tuple[str, ...]]:
        if not self.instruments:
            return "", ()
        return f"AND {column} IN ({','.join('?' * len(self.symbols))})", self.symbols

    def wants_account(self, account: object) -> bool:
        return not self.accounts or str(account) in self.accounts


def parse_time(value: str | datetime, option: str) -> datetime:
    """An ISO 8601 time (UTC when it names no zone) or an aware datetime."""
    if isinstance(value, datetime):
        when = value
    else:
        text = str(value).strip()
        try:
            when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            raise InputError(
                option, f"{value!r} is not an ISO 8601 time such as 2018-07-31T12:00:00Z"
            ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_scope(
    db: sqlite_utils.Database,
    start: str | datetime | None,
    end: str | datetime | None,
    accounts: Iterable[str] | None,
    instruments: Iterable[str] | None,
) -> Scope:
    """Validate the range and filters against the store; errors name the command-line option."""
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    if "scenario" not in meta:
        raise InputError("STORE", "the store holds no run")
    doc = json.loads(meta["scenario"])
    head = db.execute("SELECT max(tick), max(time) FROM journal WHERE kind = 'tick'").fetchone()
    if head[0] is None:
        raise InputError("STORE", "the store holds no tick yet")
    run_start = parse_time(doc["start"], "scenario.start")
    run_end = parse_time(head[1], "journal.time")
    step = int(doc.get("tick_seconds", 1))
    first = run_start if start is None else parse_time(start, "--from")
    last = run_end if end is None else parse_time(end, "--to")
    if first > run_end:
        raise InputError("--from", f"{iso(first)} is after the run's last tick at {iso(run_end)}")
    if last < run_start:
        raise InputError("--to", f"{iso(last)} is before the run's start at {iso(run_start)}")
    if last < first:
        raise InputError("--to", f"{iso(last)} is before --from {iso(first)}")
    start_tick = max(0, math.ceil((first - run_start).total_seconds() / step))
    end_tick = min(int(head[0]), int((last - run_start).total_seconds() // step))
    rows = db.execute("SELECT symbol, family, settle_currency FROM instruments").fetchall()
    known = {r[0] for r in rows}
    chosen = tuple(dict.fromkeys(instruments or ()))
    for symbol in chosen:
        if symbol not in known:
            raise InputError(
                "--symbol", f"no instrument {symbol!r} in the store ({', '.join(sorted(known))})"
            )
    picked = [r for r in rows if not chosen or r[0] in chosen]
    account_list = tuple(dict.fromkeys(str(a) for a in (accounts or ())))
    for account in account_list:
        if db.execute("SELECT 1 FROM accounts WHERE id = ?", (account,)).fetchone() is None:
            raise InputError("--account", f"no account {account!r} in the store")
    index_of = {i["symbol"]: i.get("index", i["symbol"]) for i in doc.get("instruments", [])}
    decimals = {code: int(d) for code, d in doc.get("currencies", {}).items()}
    opening = {
        code: to_minor(Decimal(str(amount)), decimals.get(code, 0))
        for code, amount in doc.get("insurance_fund", {}).items()
    }
    return Scope(
        scenario=str(doc.get("name", "")),
        description=str(doc.get("description", "")),
        start=iso(first),
        end=iso(last),
        start_tick=start_tick,
        end_tick=max(start_tick, end_tick),
        run_start=iso(run_start),
        run_end=iso(run_end),
        accounts=account_list,
        instruments=chosen,
        symbols=tuple(r[0] for r in picked),
        symbol_currency=tuple((r[0], r[2]) for r in picked),
        symbol_index=tuple((r[0], index_of.get(r[0], r[0])) for r in picked),
        families=tuple(sorted({(r[1], r[2]) for r in picked})),
        currencies=tuple(sorted(decimals.items())),
        fund_opening=tuple(sorted(opening.items())),
    )


# ----- operator commands --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MatchedAction:
    """An applied (ActionRecorded) or refused (ActionRefused) command with the command it came
    from (scenario action or journaled console command), which names its account or request."""

    time: str
    refused: bool
    operator: str
    action: str
    reason: str
    detail: str
    command: dict[str, Any] | None


def operator_commands(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """The scenario's actions and the commands given in the console, in time order, with `at`
    as an ISO UTC time to the second."""
    doc = json.loads(db.execute("SELECT value FROM meta WHERE key = 'scenario'").fetchone()[0])
    commands = [dict(a) for a in doc.get("actions", [])]
    commands += [
        json.loads(r[0])
        for r in db.execute("SELECT payload FROM journal WHERE kind = 'command' ORDER BY seq")
    ]
    for command in commands:
        command["at"] = iso(parse_time(command.get("at", doc["start"]), "actions.at"))
    commands.sort(key=lambda c: c["at"])
    return commands


def match_actions(
    db: sqlite_utils.Database, scope: Scope, commands: list[dict[str, Any]]
) -> list[MatchedAction]:
    """Each action outcome of the range, paired with the earliest unused command of the same
    operator and action given at or before it (and with the same reason when it was applied)."""
    used: set[int] = set()
    out = []
    for kind, payload in db.execute(
        "SELECT kind, payload FROM events WHERE kind IN ('ActionRecorded', 'ActionRefused') "
        "AND time <= ? ORDER BY seq",
        (scope.end,),
    ):
        event = json.loads(payload)
        refused = kind == "ActionRefused"
        found = None
        for n, c in enumerate(commands):
            if n in used or c["at"] > event["time"]:
                continue
            same = c.get("operator") == event["operator"] and c.get("action") == event["action"]
            if same and (refused or c.get("reason") == event["reason"]):
                found = n
                break
        if found is not None:
            used.add(found)
        if event["time"] < scope.start:
            continue
        out.append(
            MatchedAction(
                time=event["time"],
                refused=refused,
                operator=event["operator"],
                action=event["action"],
                reason=event["reason"],
                detail=event.get("detail", ""),
                command=None if found is None else commands[found],
            )
        )
    return out


# ----- liquidations -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiquidationRow:
    """One liquidation (finished in the range), as the store holds it."""

    seq: int
    time: str
    started: str
    account: str
    symbol: str
    side: str
    contracts: int
    partial: bool
    fill_price: str
    bankruptcy_price: str | None
    currency: str
    fills: int
    surplus: int = money()
    deficit: int = money()
    covered_by_fund: int = money()


@dataclass(frozen=True, slots=True)
class LiquidationGroup:
    """The smaller liquidations of one instrument finished in one bucket of time (`span`: hour,
    6 hours or day, from `bucket`), added up."""

    bucket: str
    span: str
    symbol: str
    currency: str
    count: int
    contracts: int
    first: str
    last: str
    surplus: int = money()
    deficit: int = money()
    covered_by_fund: int = money()


_LIQ_COLUMNS = (
    "seq, time, started, account, symbol, side, contracts, partial, fill_price, "
    "bankruptcy_price, currency, fills, surplus, deficit, covered_by_fund"
)


def _liq_where(scope: Scope) -> tuple[str, tuple[Any, ...]]:
    sym, sym_args = scope.symbol_clause("symbol")
    acc, acc_args = scope.account_clause("account")
    return f"time BETWEEN ? AND ? {sym} {acc}", (scope.start, scope.end, *sym_args, *acc_args)


def _liq_row(r: tuple[Any, ...]) -> LiquidationRow:
    bankruptcy = None if r[9] is None else price_str(float(r[9]))
    return LiquidationRow(
        int(r[0]), r[1], r[2], r[3], r[4], r[5], int(r[6]), bool(r[7]), str(r[8]), bankruptcy,
        r[10], int(r[11]), int(r[12]), int(r[13]), int(r[14]),
    )  # fmt: skip


def liquidation_totals(db: sqlite_utils.Database, scope: Scope) -> tuple[int, int, int, int]:
    """(count, contracts, accounts, largest contracts) of the liquidations in scope."""
    where, args = _liq_where(scope)
    n, contracts, accounts, biggest = db.execute(
        "SELECT count(*), coalesce(sum(contracts), 0), count(DISTINCT account), "
        f"coalesce(max(contracts), 0) FROM liquidations WHERE {where}",
        args,
    ).fetchone()
    return int(n), int(contracts), int(accounts), int(biggest)


def large_liquidations(
    db: sqlite_utils.Database, scope: Scope, cap: int
) -> tuple[LiquidationRow, ...]:
    """The liquidations listed one by one, in time order: the `cap` largest in contracts, and
    any with a hundredth of the range's deficit or more (at most `cap` more of those)."""
    where, args = _liq_where(scope)
    total = db.execute(
        f"SELECT coalesce(sum(deficit), 0) FROM liquidations WHERE {where}", args
    ).fetchone()[0]
    rows = db.execute(
        f"SELECT {_LIQ_COLUMNS} FROM liquidations WHERE {where} ORDER BY contracts DESC, seq "
        "LIMIT ?",
        (*args, cap),
    ).fetchall()
    if total > 0:
        rows += db.execute(
            f"SELECT {_LIQ_COLUMNS} FROM liquidations WHERE {where} AND deficit * 100 >= ? "
            "ORDER BY deficit DESC, seq LIMIT ?",
            (*args, total, cap),
        ).fetchall()
    unique = {r[0]: r for r in rows}
    return tuple(sorted((_liq_row(r) for r in unique.values()), key=lambda r: (r.started, r.seq)))


# Buckets the other liquidations are added up in: the finest that gives at most GROUPS_MAX rows.
GROUPS_MAX = 48
_BUCKETS = (
    ("hour", "substr(time, 1, 13) || ':00:00Z'"),
    (
        "6 hours",
        "substr(time, 1, 11) || printf('%02d', cast(substr(time, 12, 2) AS INTEGER) / 6 * 6) "
        "|| ':00:00Z'",
    ),
    ("day", "substr(time, 1, 10) || 'T00:00:00Z'"),
)


def liquidation_groups(
    db: sqlite_utils.Database, scope: Scope, listed: Iterable[int]
) -> tuple[LiquidationGroup, ...]:
    """The liquidations not listed one by one, added up per instrument and per hour (or per 6
    hours, or per day, when hours would give more than GROUPS_MAX rows)."""
    where, args = _liq_where(scope)
    seqs = tuple(listed)
    skip = f"AND seq NOT IN ({','.join('?' * len(seqs))})" if seqs else ""
    rows: list[Any] = []
    span = ""
    for name, bucket in _BUCKETS:
        span = name
        rows = db.execute(
            f"SELECT {bucket}, symbol, currency, count(*), sum(contracts), min(time), max(time), "
            "sum(surplus), sum(deficit), sum(covered_by_fund) "
            f"FROM liquidations WHERE {where} {skip} GROUP BY 1, 2, 3 ORDER BY 1, 2",
            (*args, *seqs),
        ).fetchall()
        if len(rows) <= GROUPS_MAX:
            break
    return tuple(
        LiquidationGroup(r[0], span, r[1], r[2], int(r[3]), int(r[4]), r[5], r[6], *map(int, r[7:]))
        for r in rows
    )


# ----- charts -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Series:
    """A price line (index, mark or last of one name), thinned to at most MAX_POINTS points by
    keeping each bucket's low and high."""

    kind: str
    name: str
    times: tuple[str, ...]
    values: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Marker:
    """A listed liquidation on the price chart: when it started, at its average fill price."""

    time: str
    symbol: str
    side: str
    account: str
    contracts: int
    price: float


@dataclass(frozen=True, slots=True)
class FundSeries:
    """The insurance fund's balance after each posting in the range (minor units)."""

    currency: str
    times: tuple[str, ...]
    balances: tuple[int, ...] = money(())


@dataclass(frozen=True, slots=True)
class Distribution:
    """Open positions in scope by margin ratio (equity / maintenance; liquidation at 1)."""

    label: str
    tick: int
    time: str
    bins: tuple[str, ...]
    counts: tuple[int, ...]
    positions: int
    liquidatable: int


@dataclass(frozen=True, slots=True)
class Charts:
    """`zoom` is the prices from ZOOM_SECONDS before to after the start of the largest listed
    liquidation (`zoom_start` to `zoom_end`), when the range is longer than that window."""

    prices: tuple[Series, ...]
    markers: tuple[Marker, ...]
    fund: tuple[FundSeries, ...]
    margin: tuple[Distribution, ...]
    zoom: tuple[Series, ...]
    zoom_start: str | None
    zoom_end: str | None


def build_charts(
    db: sqlite_utils.Database,
    scope: Scope,
    listed: tuple[LiquidationRow, ...],
    store_path: str | Path,
    distributions: bool,
    progress: Callable[[str, int], None],
) -> Charts:
    lines = _price_lines(db, scope, scope.start_tick, scope.end_tick)
    zoom: tuple[Series, ...] = ()
    zoom_start = zoom_end = None
    largest = max(listed, key=lambda r: r.contracts, default=None)
    step = (parse_time(scope.run_end, "end") - parse_time(scope.run_start, "start")).total_seconds()
    step /= max(1, _last_tick(db))
    if largest is not None and (scope.end_tick - scope.start_tick) * step > 4 * ZOOM_SECONDS:
        centre = parse_time(largest.started, "started")
        first = max(parse_time(scope.start, "start"), centre - timedelta(seconds=ZOOM_SECONDS))
        last = min(parse_time(scope.end, "end"), centre + timedelta(seconds=ZOOM_SECONDS))
        zoom_start, zoom_end = iso(first), iso(last)
        ticks = [round((t - parse_time(scope.run_start, "start")).total_seconds() / step)
                 for t in (first, last)]  # fmt: skip
        zoom = _price_lines(db, scope, ticks[0], ticks[1])
    markers = tuple(
        Marker(r.started, r.symbol, r.side, r.account, r.contracts, float(r.fill_price))
        for r in listed
    )
    fund = []
    for code in scope.currency_codes:
        rows = db.execute(
            "SELECT time, balance_after FROM fund_history WHERE currency = ? "
            "AND time BETWEEN ? AND ? ORDER BY tick, seq",
            (code, scope.start, scope.end),
        ).fetchall()
        keep = _thin(np.array([r[1] for r in rows], dtype=np.float64)) if rows else []
        fund.append(
            FundSeries(code, tuple(rows[i][0] for i in keep), tuple(int(rows[i][1]) for i in keep))
        )
    margin: list[Distribution] = []
    if distributions:
        for label, tick, pct in (("before", scope.start_tick, 55), ("after", scope.end_tick, 75)):
            progress(f"margin ratios {label}", pct)
            margin.append(_distribution(store_path, scope, label, tick))
    return Charts(lines, markers, tuple(fund), tuple(margin), zoom, zoom_start, zoom_end)


def _last_tick(db: sqlite_utils.Database) -> int:
    return int(db.execute("SELECT max(tick) FROM journal WHERE kind = 'tick'").fetchone()[0] or 0)


def _price_lines(
    db: sqlite_utils.Database, scope: Scope, first: int, last: int
) -> tuple[Series, ...]:
    """Index lines of the instruments in scope, then each one's mark and last, ticks first..last."""
    lines: list[Series] = []
    wanted = [("index", name) for name in dict.fromkeys(i for _, i in scope.symbol_index)]
    for symbol in scope.symbols:
        wanted += [("mark", symbol), ("last", symbol)]
    for kind, name in wanted:
        rows = db.execute(
            "SELECT time, price FROM prices WHERE kind = ? AND name = ? AND tick BETWEEN ? AND ? "
            "ORDER BY tick",
            (kind, name, first, last),
        ).fetchall()
        rows = [r for r in rows if r[1] is not None and math.isfinite(r[1])]
        if rows:
            keep = _thin(np.array([r[1] for r in rows], dtype=np.float64))
            lines.append(
                Series(kind, name, tuple(rows[i][0] for i in keep), tuple(rows[i][1] for i in keep))
            )
    return tuple(lines)


def _thin(values: np.ndarray) -> list[int]:
    """Indices of at most MAX_POINTS points: first, last, and each bucket's low and high."""
    n = values.size
    if n <= MAX_POINTS:
        return list(range(n))
    edges = np.linspace(0, n, MAX_POINTS // 2 + 1).astype(np.int64)
    keep = {0, n - 1}
    for a, b in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        if b > a:
            chunk = values[a:b]
            keep.add(a + int(np.argmin(chunk)))
            keep.add(a + int(np.argmax(chunk)))
    return sorted(keep)


def ratio_bins() -> tuple[str, ...]:
    labels = [f"<= {RATIO_EDGES[0]:g}"]
    labels += [f"{a:g}-{b:g}" for a, b in itertools.pairwise(RATIO_EDGES)]
    return (*labels, f"> {RATIO_EDGES[-1]:g}")


def _distribution(store_path: str | Path, scope: Scope, label: str, tick: int) -> Distribution:
    from core.session import Session

    session = Session.open(store_path, at=tick)
    try:
        engine = session.engine
        book, valuation = engine.book, engine.valuation
        held = book.contracts > 0
        if scope.instruments:
            wanted = [k for k, i in enumerate(engine.instruments) if i.symbol in scope.symbols]
            held &= np.isin(book.instrument, wanted)
        if scope.accounts:
            ids = [book.account_index[a] for a in scope.accounts if a in book.account_index]
            held &= np.isin(book.account, ids)
        ratio = valuation.margin_ratio[held]
        # A ratio of exactly an edge belongs to the bin it closes (<= 1 is liquidatable).
        counts = np.bincount(
            np.searchsorted(np.array(RATIO_EDGES), ratio, side="left"),
            minlength=len(RATIO_EDGES) + 1,
        )
        return Distribution(
            label=label,
            tick=int(engine.tick),
            time=iso(engine.now),
            bins=ratio_bins(),
            counts=tuple(int(c) for c in counts),
            positions=int(ratio.size),
            liquidatable=int(np.count_nonzero(ratio <= 1.0)),
        )
    finally:
        session.close()


# ----- integrity ----------------------------------------------------------------------------


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


def dumps(report: Any) -> str:
    doc = to_dict(report, dict(report.currencies))
    return json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(report: Any, path: str | Path) -> None:
    Path(path).write_text(dumps(report), encoding="utf-8")


# ----- CSV ----------------------------------------------------------------------------------


def write_csv(report: Any, db: sqlite_utils.Database, out: TextIO) -> int:
    """Every liquidation and every clawback allocation of the report's range and filters, one
    table with a `record` column; amounts are exact decimal strings. Returns the rows written."""
    scope: Scope = report.scope
    decimals = dict(report.currencies)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    count = 0
    where, args = _liq_where(scope)
    for r in db.execute(
        f"SELECT {_LIQ_COLUMNS} FROM liquidations WHERE {where} ORDER BY seq", args
    ):
        row = _liq_row(r)
        places = decimals.get(row.currency, 0)
        writer.writerow(
            _csv_row(
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
    return count


def _csv_row(**values: Any) -> list[Any]:
    return [values.get(name, "") for name in CSV_COLUMNS]


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with Path(path).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def hours(start: str, end: str) -> float:
    """The length of a range in hours (for the summary)."""
    delta: timedelta = parse_time(end, "end") - parse_time(start, "start")
    return delta.total_seconds() / 3600
