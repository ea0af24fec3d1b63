"""One run's outcome for a what-if comparison: liquidations, the fund's path, the deficit and how
it was covered, the clawback, and per account what it paid and what it ended with."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from core.engine.facade import Engine
from core.engine.ledger import fund_summary
from core.model.events import AdlFill, ClawbackComputed, Event, FundPosting, LiquidationFilled, iso


@dataclass(frozen=True, slots=True)
class Coverage:
    """A currency's deficit and what covered it, in minor units; the parts sum to `deficit`.

    The fund's own money (its start and liquidation surplus) is counted as paying first, an
    injection what the fund's own money could not; ADL is what its counterparties gave up against
    the mark where that is a loss (core/whatif/adl_cost.py); the clawback is its allocations, pending ones included."""

    deficit: int
    fund: int
    injection: int
    clawback: int
    adl: int
    uncovered: int


@dataclass(frozen=True, slots=True)
class CurrencyOutcome:
    currency: str
    decimals: int
    liquidations: int
    contracts: int
    notional: int  # minor units of the settle currency, at the fill prices, floored
    fund_start: int
    fund_end: int
    fund_min: int
    fund_path: tuple[tuple[str, int], ...]  # (time, balance after) of every fund posting
    coverage: Coverage
    adl_contracts: int  # closed against liquidated remainders
    clawbacks: tuple[tuple[str, str, str], ...]  # (time, ratio, status)


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """`paid` and `equity` are per account row of the book and per currency (columns in the
    order of `currencies`): what the account paid to the deficit (clawback plus ADL) and its
    equity at the end (ledger balance plus upnl at the last mark, floored to a minor unit)."""

    name: str
    store: str
    state_hash: str
    balanced: bool
    policy: dict[str, Any]
    changes: dict[str, Any]
    currencies: tuple[CurrencyOutcome, ...]
    account_ids: tuple[str, ...]
    clawback_paid: np.ndarray
    adl_paid: np.ndarray
    adl_contracts: np.ndarray
    equity: np.ndarray


def outcome_of(
    name: str,
    store: str,
    engine: Engine,
    events: Iterable[Event],
    adl_cost: dict[tuple[str, str], int],
    changes: dict[str, Any],
) -> RunOutcome:
    events = list(events)
    book = engine.book
    codes = engine.currency_codes
    n = len(book.account_ids)
    clawback_paid = np.zeros((n, len(codes)), dtype=np.int64)
    adl_paid = np.zeros((n, len(codes)), dtype=np.int64)
    clawbacks = _clawbacks(events)
    for e in clawbacks:
        if e.status in ("applied", "pending"):
            c = codes.index(e.currency)
            for account, _profit, amount in e.allocations:
                clawback_paid[book.account_index[account], c] += amount
    for (account, currency), amount in adl_cost.items():
        adl_paid[book.account_index[account], codes.index(currency)] += amount
    adl_contracts = np.zeros((n, len(codes)), dtype=np.int64)
    settle = {i.symbol: codes.index(i.settle_currency) for i in engine.instruments}
    for e in events:
        if type(e) is AdlFill:
            adl_contracts[book.account_index[e.account], settle[e.symbol]] += e.contracts
    upnl = np.zeros((n, len(codes)))
    np.add.at(upnl, (book.account, book.position_currency), engine.valuation.upnl)
    equity = np.zeros((n, len(codes)), dtype=np.int64)
    for c, code in enumerate(codes):
        held = engine.ledger.trader_balances(code)[:n]
        cash = np.zeros(n, dtype=np.int64)
        cash[: held.size] = held
        equity[:, c] = cash + np.floor(upnl[:, c] * engine.currencies[c].scale).astype(np.int64)
    outcomes = tuple(
        _currency(
            engine,
            code,
            events,
            clawbacks,
            int(adl_paid[:, c].sum()),
            int(adl_contracts[:, c].sum()),
        )
        for c, code in enumerate(codes)
    )
    policy = engine.scenario.policy
    return RunOutcome(
        name=name,
        store=store,
        state_hash=engine.state_hash(),
        balanced=all(engine.ledger.total(code) == 0 for code in codes),
        policy={
            "deficit": policy.deficit,
            "fund_reservation": policy.fund_reservation,
            "partial_liquidation": policy.partial_liquidation,
            "clawback_approval": policy.clawback_approval,
        },
        changes=changes,
        currencies=outcomes,
        account_ids=tuple(book.account_ids),
        clawback_paid=clawback_paid,
        adl_paid=adl_paid,
        adl_contracts=adl_contracts,
        equity=equity,
    )


def _clawbacks(events: list[Event]) -> list[ClawbackComputed]:
    """Each clawback once, as last decided (a decision replaces its pending entry), as the
    result's `clawbacks` lists them."""
    out: list[ClawbackComputed] = []
    waiting: dict[tuple[str, str], int] = {}
    for e in events:
        if not isinstance(e, ClawbackComputed):
            continue
        key = (e.family, e.currency)
        if e.status == "pending":
            waiting[key] = len(out)
            out.append(e)
        elif key in waiting:
            out[waiting.pop(key)] = e
        else:
            out.append(e)
    return out


def _currency(
    engine: Engine,
    code: str,
    events: list[Event],
    clawbacks: list[ClawbackComputed],
    adl: int,
    adl_contracts: int,
) -> CurrencyOutcome:
    decimals = engine.scenario.currencies[code].decimals
    instruments = {i.symbol: i for i in engine.instruments}
    count = contracts = 0
    notional = Fraction(0)
    path: list[tuple[str, int]] = []
    for e in events:
        if type(e) is LiquidationFilled and e.currency == code:
            count += 1
            contracts += e.contracts
            if e.contracts:
                notional += instruments[e.symbol].notional(e.contracts, e.fill_price)
        elif type(e) is FundPosting and e.currency == code:
            path.append((iso(e.time), e.balance_after))
    start = engine.fund_start[code]
    summary = fund_summary(engine.ledger, code)
    totals = engine.deficit_totals[code]
    paid = totals["covered_by_fund"]
    own = start + summary["surplus_in"]
    injection = min(summary["injections"], max(0, paid - own))
    shared = [c for c in clawbacks if c.currency == code]
    clawback = sum(a for c in shared if c.status != "rejected" for _, _, a in c.allocations)
    coverage = Coverage(
        deficit=totals["total"] + adl,
        fund=paid - injection,
        injection=injection,
        clawback=clawback,
        adl=adl,
        uncovered=totals["uncovered"] - clawback,
    )
    return CurrencyOutcome(
        currency=code,
        decimals=decimals,
        liquidations=count,
        contracts=contracts,
        notional=int(notional * 10**decimals // 1),
        fund_start=start,
        fund_end=summary["balance"],
        fund_min=min([start, *(b for _, b in path)]),
        fund_path=tuple(path),
        coverage=coverage,
        adl_contracts=adl_contracts,
        clawbacks=tuple((iso(c.time), c.ratio, c.status) for c in shared),
    )
