"""The incident report's story: the timeline of what surveillance, operators and the engine did
in the range, the requests that needed a second person, and the plain-language summary."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlite_utils

from core.model.operations import refusal_text
from core.model.units import format_minor
from core.report.scope import (
    LiquidationGroup,
    LiquidationRow,
    MatchedAction,
    Scope,
    iso,
    liquidation_totals,
    money,
    parse_time,
)

if TYPE_CHECKING:
    from core.report.money import Clawback, Waterfall


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


# ----- the summary --------------------------------------------------------------------------


def build_summary(
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
        if c.status == "rejected":
            lines.append(
                f"The {c.family} clawback computed at {c.time} would have taken {c.ratio} of each "
                f"profitable account's profit ({fmt(c.currency, c.total_profit)} in all); it was "
                f"rejected at {c.decided_at}, so nobody was charged and its deficit stays open."
            )
            continue
        decided = f" at {c.decided_at}" if c.decided_at and c.decided_at != c.time else ""
        lines.append(
            f"The {c.family} clawback computed at {c.time} takes {c.ratio} of each profitable "
            f"account's profit ({fmt(c.currency, c.total_profit)} in all) from "
            f"{c.accounts_charged:,} accounts; its status is {c.status}{decided}."
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

DECISIONS = ("approve", "reject", "approve_clawback", "reject_clawback")
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


def build_timeline(
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
                refusal_text(m.reason, subject=m.action),
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
        # One line per clawback, at its computation, with its status at the end of the range.
        status = c.status
        if c.decided_at and c.decided_at != c.time:
            status = f"computed, {c.status} at {c.decided_at}"
        charged = (
            "nobody charged, the deficit stays open"
            if c.status == "rejected"
            else f"charged to {c.accounts_charged:,} accounts"
        )
        text = (
            f"clawback {status}: ratio {c.ratio} of profit "
            f"{format_minor(c.total_profit, _places(scope, c.currency))} {c.currency}, {charged}"
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
                None if c.status == "rejected" else c.deficit - c.unrecovered,
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


def build_approvals(
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
                refusals.append(refusal_text(m.reason, subject=m.operator))
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
