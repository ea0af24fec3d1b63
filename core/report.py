"""The incident report: what a store says about a time range (optionally some accounts and
instruments) as immutable values: summary, timeline, charts, deficit waterfall, clawback, accounts
involved and an integrity footer. Money is exact ints in minor units; writers are in report_io."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from core.errors import InputError
from core.report_io import (
    Charts,
    Integrity,
    LiquidationGroup,
    LiquidationRow,
    MatchedAction,
    Scope,
    build_charts,
    build_integrity,
    build_scope,
    iso,
    large_liquidations,
    liquidation_groups,
    liquidation_totals,
    match_actions,
    money,
    operator_commands,
    parse_time,
)
from core.units import format_minor

FORMAT = "risk-incident-report/1"
Progress = Callable[[str, int], None]


@dataclass(frozen=True, slots=True)
class Summary:
    """What happened, when, how large: counts over the range and a plain-language account."""

    title: str
    scenario: str
    description: str
    liquidations: int
    liquidated_accounts: int
    contracts_liquidated: int
    largest: LiquidationRow | None
    alerts: int
    actions: int
    refusals: int
    settlements: int
    adl_fills: int
    narrative: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Waterfall:
    """Where the deficits of one currency went. `deficit` equals the sum of the other amounts:
    the fund's own money (opening balance and surpluses) pays before an injection made in the
    range; `clawback` is the part shared by profitable accounts (applied or pending approval);
    `open` is what was still uncovered at the end of the range (negative: the range settled
    deficits that arose before it)."""

    currency: str
    deficit: int = money()
    fund: int = money()
    injection: int = money()
    clawback: int = money()
    unrecovered: int = money()
    open: int = money()
    fund_start: int = money()
    fund_end: int = money()
    injected: int = money()
    surplus_in: int = money()
    clawback_status: str = ""
    adl_fills: int = 0
    adl_contracts: int = 0

    def steps(self) -> tuple[tuple[str, int], ...]:
        return (
            ("insurance fund", self.fund),
            ("company injection", self.injection),
            (
                "clawback" + (f" ({self.clawback_status})" if self.clawback_status else ""),
                self.clawback,
            ),
            ("unrecovered", self.unrecovered),
            ("open at the end of the range", self.open),
        )


@dataclass(frozen=True, slots=True)
class Allocation:
    account: str
    currency: str
    profit: int = money()
    amount: int = money()


@dataclass(frozen=True, slots=True)
class Clawback:
    """One clawback with its most affected accounts (every allocation is in the CSV)."""

    seq: int
    time: str
    family: str
    currency: str
    ratio: str
    status: str
    accounts_charged: int
    profitable_accounts: int
    deficit: int = money()
    total_profit: int = money()
    unrecovered: int = money()
    charged: int = money()
    top: tuple[Allocation, ...] = ()


@dataclass(frozen=True, slots=True)
class AccountRow:
    """An account the incident touched, per currency (currency "" for alerts and actions only)."""

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
class TimelineEntry:
    """One line of the timeline. `kind`: alert, alerts (several added up), action, approval,
    refusal, trade_refused, liquidation, liquidations (added up), fund, settlement,
    settlement_delayed, clawback, audit. `actor` is the operator, account or "system"."""

    time: str
    kind: str
    actor: str
    subject: str
    text: str
    reason: str
    count: int = 1
    currency: str = ""
    amount: int | None = money(None)


@dataclass(frozen=True, slots=True)
class Approval:
    """A request that needed a second person, and what became of it."""

    request: str
    action: str
    requested_by: str
    requested_at: str
    reason: str
    status: str
    decided_by: str
    decided_at: str
    decision_reason: str
    outcome: str


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
    timeline = _timeline(db, scope, listed, groups, clawbacks, matched)
    approvals = _approvals(db, scope, commands, matched)
    account_rows, total = _accounts(db, scope, commands, max_accounts)
    step("charts", 40)
    charts = build_charts(db, scope, listed, store_path, distributions, step)
    step("integrity", 90)
    integrity = build_integrity(db, scope, store_path)
    decimals = dict(scope.currencies)
    summary = _summary(db, scope, listed, timeline, waterfalls, clawbacks, decimals)
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
    for deficit, lost, status in db.execute(
        "SELECT deficit, unrecovered, status FROM clawbacks WHERE currency = ? "
        f"AND family IN ({fam_marks}) AND time BETWEEN ? AND ? ORDER BY seq",
        (currency, *families, *span),
    ):
        shared += deficit - lost
        unrecovered += lost
        statuses.append(status)
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


def _clawbacks(db: sqlite_utils.Database, scope: Scope, top: int) -> tuple[Clawback, ...]:
    families = [f for f, _ in scope.families]
    marks = ",".join("?" * len(families)) or "NULL"
    out = []
    for seq, time, family, currency, deficit, profit, ratio, lost, status in db.execute(
        "SELECT seq, time, family, currency, deficit, total_profit, ratio, unrecovered, status "
        f"FROM clawbacks WHERE family IN ({marks}) AND time BETWEEN ? AND ? ORDER BY seq",
        (*families, scope.start, scope.end),
    ).fetchall():
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
                time=time,
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
    families = [f for f, _ in scope.families]
    marks = ",".join("?" * len(families)) or "NULL"
    acc_a, _ = scope.account_clause("a.account")
    for account, currency, amount in db.execute(
        "SELECT a.account, c.currency, sum(a.amount) FROM clawback_allocations a "
        "JOIN clawbacks c ON c.seq = a.clawback WHERE c.time BETWEEN ? AND ? "
        f"AND c.family IN ({marks}) AND a.amount > 0 {acc_a} GROUP BY 1, 2",
        (*span, *families, *acc_args),
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


def _summary(
    db: sqlite_utils.Database,
    scope: Scope,
    listed: tuple[LiquidationRow, ...],
    timeline: tuple[TimelineEntry, ...],
    waterfalls: tuple[Waterfall, ...],
    clawbacks: tuple[Clawback, ...],
    decimals: dict[str, int],
) -> Summary:
    count, contracts, accounts, _ = liquidation_totals(db, scope)
    largest = max(listed, key=lambda r: (r.contracts, -r.seq), default=None)
    alerts = sum(e.count for e in timeline if e.kind in ("alert", "alerts"))
    actions = sum(1 for e in timeline if e.kind in ("action", "approval"))
    refusals = sum(1 for e in timeline if e.kind in ("refusal", "trade_refused"))

    def fmt(code: str, minor: int) -> str:
        return f"{format_minor(minor, decimals.get(code, 0))} {code}"

    lines = [
        f"From {scope.start} to {scope.end} (UTC), {_plural(count, 'liquidation')} closed "
        f"{_plural(contracts, 'contract')} of {_plural(accounts, 'account')}."
    ]
    if largest is not None:
        lines.append(_story(largest, timeline, fmt))
    for w in waterfalls:
        if w.deficit == 0 and w.injected == 0 and w.adl_fills == 0:
            continue
        parts = [
            f"Deficits in {w.currency} came to {fmt(w.currency, w.deficit)}",
            f"the insurance fund ({fmt(w.currency, w.fund_start)} at the start of the range) "
            f"paid {fmt(w.currency, w.fund)}",
        ]
        if w.injected:
            parts.append(
                f"the company injected {fmt(w.currency, w.injected)}, of which "
                f"{fmt(w.currency, w.injection)} went to the deficit"
            )
        if w.clawback:
            parts.append(
                f"{fmt(w.currency, w.clawback)} is shared by clawback ({w.clawback_status})"
            )
        if w.unrecovered:
            parts.append(f"{fmt(w.currency, w.unrecovered)} could not be recovered")
        if w.open:
            parts.append(f"{fmt(w.currency, w.open)} was still open at the end of the range")
        if w.adl_fills:
            parts.append(
                f"{w.adl_contracts:,} contracts were closed against opposite positions "
                f"(auto-deleveraging, {w.adl_fills:,} fills)"
            )
        lines.append("; ".join(parts) + ".")
    for c in clawbacks:
        lines.append(
            f"The {c.family} clawback computed at {c.time} takes {c.ratio} of each profitable "
            f"account's profit ({fmt(c.currency, c.total_profit)} in all) from "
            f"{c.accounts_charged:,} accounts; its status is {c.status}."
        )
    lines.append(
        f"Surveillance raised {_plural(alerts, 'alert')}; operators recorded "
        f"{_plural(actions, 'action')} and approvals; "
        + (
            "1 action or order was refused."
            if refusals == 1
            else f"{refusals:,} actions or orders were refused."
        )
    )
    return Summary(
        title=f"Incident report: {scope.scenario}",
        scenario=scope.scenario,
        description=scope.description,
        liquidations=count,
        liquidated_accounts=accounts,
        contracts_liquidated=contracts,
        largest=largest,
        alerts=alerts,
        actions=actions,
        refusals=refusals,
        settlements=sum(1 for e in timeline if e.kind == "settlement"),
        adl_fills=sum(w.adl_fills for w in waterfalls),
        narrative=tuple(lines),
    )


_VERBS = {
    "warn": "warned",
    "restrict": "restricted",
    "freeze": "froze",
    "unfreeze": "unfroze",
    "cancel_orders": "cancelled the orders of",
    "force_reduce": "asked to force-reduce",
}


def _price(text: str | None) -> str:
    """A price for reading: two decimals (the rows keep every digit)."""
    return "none" if text is None else f"{float(text):,.2f}"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _story(
    largest: LiquidationRow, timeline: tuple[TimelineEntry, ...], fmt: Callable[[str, int], str]
) -> str:
    """The largest liquidation with what surveillance and operators did about its account first."""
    before = [e for e in timeline if e.time <= largest.started and e.subject == largest.account]
    first_alert = next((e for e in before if e.kind in ("alert", "alerts")), None)
    verbs = [(e, e.text.split(":")[0]) for e in before if e.kind == "action"]
    acts = [f"{e.actor} {_VERBS.get(verb, verb)} it at {e.time}" for e, verb in verbs]
    text = f"The largest was account {largest.account}'s {largest.side} of {largest.contracts:,} "
    text += f"{largest.symbol}"
    if first_alert is not None:
        rule = first_alert.text.split(" (")[0]
        text += f", flagged by surveillance ({rule}) at {first_alert.time}"
    if acts:
        text += "; " + ", ".join(acts)
    return (
        text + f"; it was taken over at {largest.started} (bankruptcy price "
        f"{_price(largest.bankruptcy_price)}) and filled by {largest.time} at an average of "
        f"{_price(largest.fill_price)}, leaving a deficit of {fmt(largest.currency, largest.deficit)}."
    )


# ----- the timeline -------------------------------------------------------------------------

DECISIONS = ("approve", "reject", "approve_clawback")
# Alerts of a rule are listed one by one up to this many in the range; beyond, added up per day.
ALERTS_EACH = 8
_ORDER = {
    "alert": 0,
    "alerts": 0,
    "action": 1,
    "approval": 1,
    "refusal": 1,
    "trade_refused": 2,
    "fund": 3,
    "liquidation": 4,
    "liquidations": 4,
    "settlement_delayed": 5,
    "settlement": 6,
    "clawback": 7,
    "audit": 8,
}
# Audit rows that repeat what the engine's events already put in the timeline.
_AUDIT_COVERED = ("outcome", "request", "approval", "rejection", "action")


def _timeline(
    db: sqlite_utils.Database,
    scope: Scope,
    listed: tuple[LiquidationRow, ...],
    groups: tuple[LiquidationGroup, ...],
    clawbacks: tuple[Clawback, ...],
    matched: list[MatchedAction],
) -> tuple[TimelineEntry, ...]:
    span = (scope.start, scope.end)
    out = _alerts(db, scope)
    for m in matched:
        params = m.command or {}
        account = params.get("account")
        if account is not None and not scope.wants_account(account):
            continue
        subject = str(account or params.get("request") or params.get("family") or "")
        subject = subject or str(params.get("currency") or "")
        if m.refused:
            kind, text, reason = (
                "refusal",
                f"{m.action} refused: {m.reason}",
                params.get("reason", ""),
            )
        else:
            kind = "approval" if m.action in DECISIONS else "action"
            text, reason = f"{m.action}: {m.detail}", m.reason
        out.append(TimelineEntry(m.time, kind, m.operator, subject, text, str(reason)))
    acc, acc_args = scope.account_clause("account")
    sym, sym_args = scope.symbol_clause("symbol")
    for payload in db.execute(
        f"SELECT payload FROM events WHERE kind = 'TradeRefused' AND time BETWEEN ? AND ? {acc} "
        f"{sym} ORDER BY seq",
        (*span, *acc_args, *sym_args),
    ):
        e = json.loads(payload[0])
        text = f"order refused: {e['side']} {e['contracts']:,} {e['symbol']} ({e['code']})"
        out.append(
            TimelineEntry(e["time"], "trade_refused", e["account"], e["account"], text, e["reason"])
        )
    for r in listed:
        text = (
            f"liquidation: {r.side} {r.contracts:,} {r.symbol}{' (partial)' if r.partial else ''}"
            f", bankruptcy price {_price(r.bankruptcy_price)}, filled by {r.time} at "
            f"{_price(r.fill_price)} in {r.fills} fills; surplus {format_minor(r.surplus, _places(scope, r.currency))}, "
            f"fund covered {format_minor(r.covered_by_fund, _places(scope, r.currency))}"
        )
        out.append(
            TimelineEntry(
                r.started, "liquidation", r.account, r.account, text, "", 1, r.currency, r.deficit
            )
        )
    for g in groups:
        text = (
            f"{_plural(g.count, 'smaller liquidation')} of {g.symbol} in the {g.span} from "
            f"{g.bucket}: {g.contracts:,} contracts, surplus "
            f"{format_minor(g.surplus, _places(scope, g.currency))}, fund covered "
            f"{format_minor(g.covered_by_fund, _places(scope, g.currency))}"
        )
        out.append(
            TimelineEntry(
                g.first,
                "liquidations",
                "system",
                g.symbol,
                text,
                "",
                g.count,
                g.currency,
                g.deficit,
            )
        )
    codes = scope.currency_codes
    for time, currency, amount, after in db.execute(
        "SELECT time, currency, amount, balance_after FROM fund_history WHERE kind = 'injection' "
        "AND time BETWEEN ? AND ? ORDER BY tick, seq",
        span,
    ):
        if currency in codes:
            text = f"injection into the {currency} insurance fund; balance after {format_minor(after, _places(scope, currency))}"
            out.append(
                TimelineEntry(time, "fund", "company", currency, text, "", 1, currency, amount)
            )
    families = {f for f, _ in scope.families}
    for time, family, price, adjusted, expired in db.execute(
        "SELECT time, family, price, adjusted_from, expired FROM settlements WHERE time BETWEEN ? "
        "AND ? ORDER BY seq",
        span,
    ):
        if family in families:
            text = f"settlement of {family} at {price}"
            text += f" (adjusted from {adjusted})" if adjusted else ""
            gone = json.loads(expired or "[]")
            text += f"; expired: {', '.join(gone)}" if gone else ""
            out.append(TimelineEntry(time, "settlement", "system", family, text, ""))
    for payload in db.execute(
        "SELECT payload FROM events WHERE kind = 'SettlementDelayed' AND time BETWEEN ? AND ?", span
    ):
        e = json.loads(payload[0])
        if e["family"] in families:
            tripped = [f"{i[0]} {i[1]:.4g} > {i[2]:.4g}" for i in e["indicators"] if i[3]]
            text = f"settlement delayed from {e['scheduled']} to {e['delayed_to']}"
            out.append(
                TimelineEntry(
                    e["time"], "settlement_delayed", "system", e["family"], text, "; ".join(tripped)
                )
            )
    for c in clawbacks:
        text = (
            f"clawback {c.status}: ratio {c.ratio} of profit "
            f"{format_minor(c.total_profit, _places(scope, c.currency))} {c.currency}, "
            f"charged to {c.accounts_charged:,} accounts"
        )
        out.append(
            TimelineEntry(
                c.time,
                "clawback",
                "system",
                c.family,
                text,
                "",
                1,
                c.currency,
                c.deficit - c.unrecovered,
            )
        )
    out += _audit_entries(db, scope)
    out.sort(key=lambda e: (e.time, _ORDER.get(e.kind, 9)))
    return tuple(out)


def _places(scope: Scope, currency: str) -> int:
    return dict(scope.currencies).get(currency, 0)


def _alerts(db: sqlite_utils.Database, scope: Scope) -> list[TimelineEntry]:
    """Alerts raised in the range about accounts and instruments in scope; a rule with many
    alerts is added up per day (its first message as the example)."""
    wanted = {*scope.symbols, *scope.currency_codes, *(f"{f}/{c}" for f, c in scope.families)}
    alerts = []
    for payload in db.execute(
        "SELECT payload FROM events WHERE kind = 'AlertRaised' AND time BETWEEN ? AND ? ORDER BY seq",
        (scope.start, scope.end),
    ):
        e = json.loads(payload[0])
        if e["account"] is not None and not scope.wants_account(e["account"]):
            continue
        if scope.accounts and e["account"] is None:
            continue
        if scope.instruments and e["symbol"] is not None and e["symbol"] not in wanted:
            continue
        alerts.append(e)
    per_rule: dict[str, int] = {}
    for e in alerts:
        per_rule[e["rule"]] = per_rule.get(e["rule"], 0) + 1
    out, days = [], {}
    for e in alerts:
        if per_rule[e["rule"]] <= ALERTS_EACH:
            text = f"{e['rule']} ({e['severity']}): {e['message']}"
            subject = e["account"] or e["symbol"] or ""
            out.append(TimelineEntry(e["time"], "alert", "surveillance", subject, text, ""))
            continue
        key = (e["time"][:10], e["rule"])
        first, count, critical = days.get(key, (e, 0, 0))
        days[key] = (first, count + 1, critical + (e["severity"] == "critical"))
    for (_day, rule), (first, count, critical) in days.items():
        text = (
            f"{count} {rule} alerts this day ({critical} critical); the first: {first['message']}"
        )
        out.append(TimelineEntry(first["time"], "alerts", "surveillance", "", text, "", count))
    return out


def _audit_entries(db: sqlite_utils.Database, scope: Scope) -> list[TimelineEntry]:
    """Audit rows of the range that no engine event repeats (log-ins, alert handling, operator
    changes): placed at the engine time they name, or at their own time."""
    out = []
    marks = ",".join("?" * len(_AUDIT_COVERED))
    for at, operator, kind, subject, reason, after in db.execute(
        "SELECT at, operator, kind, subject, reason, after FROM audit_log "
        f"WHERE kind NOT IN ({marks}) ORDER BY seq",
        _AUDIT_COVERED,
    ):
        detail = json.loads(after) if after else None
        when = at
        if isinstance(detail, dict):
            when = str(detail.get("engine_time") or detail.get("at") or at)
        when = iso(parse_time(when, "audit_log.at"))
        if scope.start <= when <= scope.end:
            out.append(
                TimelineEntry(when, "audit", operator, subject, f"{kind}: {subject}", reason)
            )
    return out


def _approvals(
    db: sqlite_utils.Database,
    scope: Scope,
    commands: list[dict[str, Any]],
    matched: list[MatchedAction],
) -> tuple[Approval, ...]:
    """Requests made in the range that needed a second person, with each decision: from the
    commands and their outcomes, and from the store's requests table (clawback approvals)."""
    outcome = {id(m.command): m for m in matched if m.command is not None}
    out, seen = [], set()
    for request in commands:
        rid = request.get("id")
        if not rid or not scope.start <= request["at"] <= scope.end:
            continue
        seen.add(rid)
        status, decided_by, decided_at, why, result = "pending", "", "", "", ""
        refusals = []
        for decision in commands:
            if decision.get("request") != rid or decision.get("action") not in DECISIONS:
                continue
            m = outcome.get(id(decision))
            if m is None:
                continue
            if m.refused:
                refusals.append(f"{m.operator} refused: {m.reason}")
                continue
            status = "rejected" if decision["action"] == "reject" else "approved"
            decided_by, decided_at, why, result = m.operator, m.time, m.reason, m.detail
            break
        if status == "pending" and refusals:
            result = "; ".join(refusals)
        out.append(
            Approval(
                request=str(rid),
                action=str(request.get("action", "")),
                requested_by=str(request.get("operator", "")),
                requested_at=request["at"],
                reason=str(request.get("reason", "")),
                status=status,
                decided_by=decided_by,
                decided_at=decided_at,
                decision_reason=why,
                outcome=result,
            )
        )
    for row in db.execute(
        "SELECT id, action, operator, created_at, reason, status, decided_by, decided_at, comment "
        "FROM requests ORDER BY created_at, id"
    ):
        if (
            row[0] in seen
            or not scope.start <= iso(parse_time(row[3], "requests.created_at")) <= scope.end
        ):
            continue
        out.append(Approval(*(str(v or "") for v in row), outcome=""))
    return tuple(out)
