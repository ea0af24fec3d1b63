"""What an incident report reads from a store about its range: the scope (time range, filters,
instruments and currencies), the operator commands matched to their outcomes, and the liquidation
rows listed one by one or added up per bucket of time."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlite_utils

from core.engine.views import price_str
from core.model.errors import InputError
from core.model.events import iso
from core.model.units import to_minor


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


LIQUIDATION_COLUMNS = (
    "seq, time, started, account, symbol, side, contracts, partial, fill_price, "
    "bankruptcy_price, currency, fills, surplus, deficit, covered_by_fund"
)


def liquidation_where(scope: Scope) -> tuple[str, tuple[Any, ...]]:
    sym, sym_args = scope.symbol_clause("symbol")
    acc, acc_args = scope.account_clause("account")
    return f"time BETWEEN ? AND ? {sym} {acc}", (scope.start, scope.end, *sym_args, *acc_args)


def liquidation_row(r: tuple[Any, ...]) -> LiquidationRow:
    bankruptcy = None if r[9] is None else price_str(float(r[9]))
    return LiquidationRow(
        int(r[0]), r[1], r[2], r[3], r[4], r[5], int(r[6]), bool(r[7]), str(r[8]), bankruptcy,
        r[10], int(r[11]), int(r[12]), int(r[13]), int(r[14]),
    )  # fmt: skip


def liquidation_totals(db: sqlite_utils.Database, scope: Scope) -> tuple[int, int, int, int]:
    """(count, contracts, accounts, largest contracts) of the liquidations in scope."""
    where, args = liquidation_where(scope)
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
    where, args = liquidation_where(scope)
    total = db.execute(
        f"SELECT coalesce(sum(deficit), 0) FROM liquidations WHERE {where}", args
    ).fetchone()[0]
    rows = db.execute(
        f"SELECT {LIQUIDATION_COLUMNS} FROM liquidations WHERE {where} ORDER BY contracts DESC, seq "
        "LIMIT ?",
        (*args, cap),
    ).fetchall()
    if total > 0:
        rows += db.execute(
            f"SELECT {LIQUIDATION_COLUMNS} FROM liquidations WHERE {where} AND deficit * 100 >= ? "
            "ORDER BY deficit DESC, seq LIMIT ?",
            (*args, total, cap),
        ).fetchall()
    unique = {r[0]: r for r in rows}
    return tuple(
        sorted((liquidation_row(r) for r in unique.values()), key=lambda r: (r.started, r.seq))
    )


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
    where, args = liquidation_where(scope)
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
