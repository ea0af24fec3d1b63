"""The incident report: what a store says about a time range (optionally some accounts and
instruments) as immutable values, with the deficit waterfall, clawbacks and accounts involved.
Money is exact ints in minor units (its values in core/report/money.py); the story is in
core/report/timeline.py, writers in core/report/output.py."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from core.model.errors import InputError
from core.model.units import format_minor
from core.report.money import Allocation, Clawback, Waterfall
from core.report.output import Integrity, build_integrity
from core.report.scope import (
    LiquidationGroup,
    LiquidationRow,
    Scope,
    build_scope,
    iso,
    large_liquidations,
    liquidation_groups,
    match_actions,
    money,
    operator_commands,
    parse_time,
)
from core.report.series import Charts, build_charts
from core.report.timeline import (
    Approval,
    Summary,
    TimelineEntry,
    build_approvals,
    build_summary,
    build_timeline,
)
from core.store.queries import ClawbackRecord, clawback_records

FORMAT = "risk-incident-report/1"
Progress = Callable[[str, int], None]


@dataclass(frozen=True, slots=True)
class AccountRow:
    """An account the incident touched, per currency (currency "" for alerts and actions only).
    `clawback` is what applied clawbacks took from it (a pending one charges nothing yet)."""

    account: str
    currency: str
    liquidations: int
    contracts_liquidated: int
    adl_contracts: int
    alerts: int
    actions: int
    surplus: int = money()
    deficit: int = money()
    clawback: int = money()


@dataclass(frozen=True, slots=True)
class IncidentReport:
    format: str
    generated_at: str
    scope: Scope
    summary: Summary
    timeline: tuple[TimelineEntry, ...]
    waterfalls: tuple[Waterfall, ...]
    clawbacks: tuple[Clawback, ...]
    liquidations: tuple[LiquidationRow, ...]
    liquidation_groups: tuple[LiquidationGroup, ...]
    accounts: tuple[AccountRow, ...]
    accounts_total: int
    approvals: tuple[Approval, ...]
    charts: Charts
    integrity: Integrity
    currencies: dict[str, int] = field(default_factory=dict)

    def fmt(self, currency: str, minor: int) -> str:
        """An amount as an exact decimal string with its currency code."""
        return f"{format_minor(minor, self.currencies.get(currency, 0))} {currency}".strip()


def build_report(
    db: sqlite_utils.Database,
    *,
    start: str | datetime | None = None,
    end: str | datetime | None = None,
    accounts: Iterable[str] | None = None,
    instruments: Iterable[str] | None = None,
    store_path: str | Path,
    generated_at: str | datetime | None = None,
    top: int = 20,
    max_accounts: int = 40,
    distributions: bool = True,
    progress: Progress | None = None,
) -> IncidentReport:
    """The report of the store `db` (opened from `store_path`) over [start, end] (ISO UTC,
    inclusive; the whole run by default), for some accounts and instruments (all by default).

    Bad or inverted times, unknown accounts or symbols are an InputError naming the option
    (`--from`, `--to`, `--account`, `--symbol`); nothing is written to the store. `progress`
    is called with a step name and a percentage; an exception raised from it stops the build."""
    step = progress or (lambda _name, _pct: None)
    if not 1 <= top <= 1000:
        raise InputError("top", f"expected 1 to 1000 accounts, found {top}")
    step("scope", 0)
    scope = build_scope(db, start, end, accounts, instruments)
    when = _generated(generated_at)
    commands = operator_commands(db)
    step("liquidations", 10)
    listed = large_liquidations(db, scope, cap=top)
    groups = liquidation_groups(db, scope, (r.seq for r in listed))
    step("deficit waterfall", 20)
    waterfalls = tuple(_waterfall(db, scope, code) for code in scope.currency_codes)
    clawbacks = _clawbacks(db, scope, top)
    step("timeline", 30)
    matched = match_actions(db, scope, commands)
    timeline = build_timeline(db, scope, listed, groups, clawbacks, matched)
    approvals = build_approvals(db, scope, commands, matched)
    account_rows, total = _accounts(db, scope, commands, max_accounts)
    step("charts", 40)
    charts = build_charts(db, scope, listed, store_path, distributions, step)
    step("integrity", 90)
    integrity = build_integrity(db, scope, store_path)
    decimals = dict(scope.currencies)
    summary = build_summary(db, scope, listed, timeline, waterfalls, clawbacks, decimals)
    step("done", 100)
    return IncidentReport(
        format=FORMAT,
        generated_at=when,
        scope=scope,
        summary=summary,
        timeline=timeline,
        waterfalls=waterfalls,
        clawbacks=clawbacks,
        liquidations=listed,
        liquidation_groups=groups,
        accounts=account_rows,
        accounts_total=total,
        approvals=approvals,
        charts=charts,
        integrity=integrity,
        currencies=decimals,
    )


def _generated(value: str | datetime | None) -> str:
    if value is None:
        value = datetime.now(UTC)
    return iso(parse_time(value, "generated_at"))


def _waterfall(db: sqlite_utils.Database, scope: Scope, currency: str) -> Waterfall:
    """Deficits arising in the range and where they went, from the fund's postings, the uncovered
    deficits, the clawbacks and the ADL fills of the range."""
    span = (scope.start, scope.end)
    settle_ticks = [
        r[0]
        for r in db.execute(
            "SELECT DISTINCT tick FROM settlements WHERE time BETWEEN ? AND ?", span
        ).fetchall()
    ]
    marks = ",".join("?" * len(settle_ticks)) or "NULL"
    fund_rows = db.execute(
        "SELECT kind, tick IN (" + marks + "), sum(amount) FROM fund_history "
        "WHERE currency = ? AND time BETWEEN ? AND ? GROUP BY 1, 2",
        (*settle_ticks, currency, *span),
    ).fetchall()
    flows = {(kind, bool(at_settlement)): int(total) for kind, at_settlement, total in fund_rows}
    out_at_liquidation = flows.get(("deficit_out", False), 0)
    out_at_settlement = flows.get(("deficit_out", True), 0)
    injected = flows.get(("injection", False), 0) + flows.get(("injection", True), 0)
    surplus = flows.get(("surplus_in", False), 0) + flows.get(("surplus_in", True), 0)
    families = [f for f, c in scope.families if c == currency]
    fam_marks = ",".join("?" * len(families)) or "NULL"
    uncovered = db.execute(
        "SELECT coalesce(sum(amount), 0) FROM events WHERE kind = 'DeficitUncovered' "
        f"AND currency = ? AND symbol IN ({fam_marks}) AND time BETWEEN ? AND ?",
        (currency, *families, *span),
    ).fetchone()[0]
    shared, unrecovered, statuses = 0, 0, []
    for record in _clawback_records(db, scope):
        if record.currency != currency or record.family not in families:
            continue
        statuses.append(record.status)
        if record.status == "rejected":
            continue  # nobody was charged: the deficit is still open
        deficit, lost = db.execute(
            "SELECT deficit, unrecovered FROM clawbacks WHERE seq = ?", (record.seq,)
        ).fetchone()
        shared += deficit - lost
        unrecovered += lost
    symbols = [s for s, c in scope.symbol_currency if c == currency]
    sym_marks = ",".join("?" * len(symbols)) or "NULL"
    adl_fills, adl_contracts = db.execute(
        f"SELECT count(*), coalesce(sum(contracts), 0) FROM adl WHERE symbol IN ({sym_marks}) "
        "AND time BETWEEN ? AND ?",
        (*symbols, *span),
    ).fetchone()
    fund_start = _fund_balance(db, scope, currency, before=scope.start)
    fund_end = _fund_balance(db, scope, currency, before=None)
    paid = out_at_liquidation + out_at_settlement
    # The fund pays from its own money (opening balance and surpluses) before an injection.
    injection_used = min(injected, max(0, paid - (fund_start + surplus)))
    deficit = out_at_liquidation + int(uncovered)
    return Waterfall(
        currency=currency,
        deficit=deficit,
        fund=paid - injection_used,
        injection=injection_used,
        clawback=shared,
        unrecovered=unrecovered,
        open=deficit - paid - shared - unrecovered,
        fund_start=fund_start,
        fund_end=fund_end,
        injected=injected,
        surplus_in=surplus,
        clawback_status="/".join(sorted(set(statuses))),
        adl_fills=int(adl_fills),
        adl_contracts=int(adl_contracts),
    )


def _fund_balance(
    db: sqlite_utils.Database, scope: Scope, currency: str, *, before: str | None
) -> int:
    """The fund's balance just before `before` (or at the end of the range when None)."""
    if before is None:
        sql, arg = "time <= ?", scope.end
    else:
        sql, arg = "time < ?", before
    row = db.execute(
        f"SELECT balance_after FROM fund_history WHERE currency = ? AND {sql} "
        "ORDER BY tick DESC, seq DESC LIMIT 1",
        (currency, arg),
    ).fetchone()
    return int(row[0]) if row else dict(scope.fund_opening).get(currency, 0)


def _clawback_records(db: sqlite_utils.Database, scope: Scope) -> list[ClawbackRecord]:
    """The clawbacks computed in the range, each once, with their status at its end."""
    families = {f for f, _ in scope.families}
    return [
        r
        for r in clawback_records(db, until=scope.end)
        if r.family in families and scope.start <= r.computed_at <= scope.end
    ]


def _clawbacks(db: sqlite_utils.Database, scope: Scope, top: int) -> tuple[Clawback, ...]:
    out = []
    for record in _clawback_records(db, scope):
        seq = record.seq
        family, currency, deficit, profit, ratio, lost, status = db.execute(
            "SELECT family, currency, deficit, total_profit, ratio, unrecovered, status "
            "FROM clawbacks WHERE seq = ?",
            (seq,),
        ).fetchone()
        where, args = scope.account_clause("account")
        count, charged, payers = db.execute(
            "SELECT count(*), coalesce(sum(amount), 0), count(nullif(amount, 0)) "
            f"FROM clawback_allocations WHERE clawback = ? {where}",
            (seq, *args),
        ).fetchone()
        biggest = db.execute(
            "SELECT account, profit, amount FROM clawback_allocations "
            f"WHERE clawback = ? {where} ORDER BY amount DESC, account LIMIT ?",
            (seq, *args, top),
        ).fetchall()
        out.append(
            Clawback(
                seq=seq,
                time=record.computed_at,
                decided_at=record.decided_at,
                family=family,
                currency=currency,
                ratio=ratio,
                status=status,
                accounts_charged=int(payers),
                profitable_accounts=int(count),
                deficit=int(deficit),
                total_profit=int(profit),
                unrecovered=int(lost),
                charged=int(charged),
                top=tuple(Allocation(a, currency, int(p), int(m)) for a, p, m in biggest),
            )
        )
    return tuple(out)


def _accounts(
    db: sqlite_utils.Database, scope: Scope, commands: list[dict[str, Any]], limit: int
) -> tuple[tuple[AccountRow, ...], int]:
    """Accounts liquidated, deleveraged, charged a clawback, alerted or acted upon in the range,
    most money first; (the first `limit`, how many in all)."""
    span = (scope.start, scope.end)
    rows: dict[tuple[str, str], dict[str, int]] = {}

    def row(account: str, currency: str) -> dict[str, int]:
        return rows.setdefault((account, currency), dict.fromkeys(_ACCOUNT_FIELDS, 0))

    sym, sym_args = scope.symbol_clause("symbol")
    acc, acc_args = scope.account_clause("account")
    for account, currency, n, contracts, surplus, deficit in db.execute(
        "SELECT account, currency, count(*), sum(contracts), sum(surplus), sum(deficit) "
        f"FROM liquidations WHERE time BETWEEN ? AND ? {sym} {acc} GROUP BY 1, 2",
        (*span, *sym_args, *acc_args),
    ):
        r = row(account, currency)
        r.update(liquidations=n, contracts_liquidated=contracts, surplus=surplus, deficit=deficit)
    currency_of = dict(scope.symbol_currency)
    for account, symbol, contracts in db.execute(
        f"SELECT account, symbol, sum(contracts) FROM adl WHERE time BETWEEN ? AND ? {sym} {acc} "
        "GROUP BY 1, 2",
        (*span, *sym_args, *acc_args),
    ):
        row(account, currency_of.get(symbol, ""))["adl_contracts"] += contracts
    # What the ledger took: a pending clawback shows in the clawback table, not as a charge.
    charged = [r.seq for r in _clawback_records(db, scope) if r.status == "applied"]
    marks = ",".join("?" * len(charged)) or "NULL"
    acc_a, _ = scope.account_clause("a.account")
    for account, currency, amount in db.execute(
        "SELECT a.account, c.currency, sum(a.amount) FROM clawback_allocations a "
        f"JOIN clawbacks c ON c.seq = a.clawback WHERE c.seq IN ({marks}) "
        f"AND a.amount > 0 {acc_a} GROUP BY 1, 2",
        (*charged, *acc_args),
    ):
        row(account, currency)["clawback"] += amount
    for account, n in db.execute(
        "SELECT account, count(*) FROM events WHERE kind = 'AlertRaised' AND account IS NOT NULL "
        f"AND time BETWEEN ? AND ? {acc} GROUP BY 1",
        (*span, *acc_args),
    ):
        _any_row(rows, account)["alerts"] += n
    for entry in commands:
        account = entry.get("account")
        if account and scope.start <= entry["at"] <= scope.end and scope.wants_account(account):
            _any_row(rows, str(account))["actions"] += 1
    ordered = sorted(
        rows.items(),
        key=lambda kv: (
            -(kv[1]["deficit"] + kv[1]["clawback"]),
            -kv[1]["contracts_liquidated"],
            -kv[1]["actions"],
            -kv[1]["alerts"],
            kv[0],
        ),
    )
    out = tuple(
        AccountRow(account=a, currency=c, **{k: int(v) for k, v in values.items()})
        for (a, c), values in ordered[:limit]
    )
    return out, len(ordered)


_ACCOUNT_FIELDS = (
    "liquidations",
    "contracts_liquidated",
    "adl_contracts",
    "alerts",
    "actions",
    "surplus",
    "deficit",
    "clawback",
)


def _any_row(rows: dict[tuple[str, str], dict[str, int]], account: str) -> dict[str, int]:
    """The account's first row in any currency, or a new row without a currency."""
    for (a, _c), values in rows.items():
        if a == account:
            return values
    return rows.setdefault((account, ""), dict.fromkeys(_ACCOUNT_FIELDS, 0))
