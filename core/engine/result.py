"""The run result (`risk-result/1`, shared spec/scenario.md): collected from the engine's events
and its final state, with amounts as exact decimal strings."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.engine.facade import Engine
from core.engine.ledger import CLEARING, INSURANCE_FUND, ROUNDING, fund_summary, trader
from core.engine.views import price_str
from core.model.events import (
    ActionRecorded,
    ActionRefused,
    AdlFill,
    AlertRaised,
    ClawbackComputed,
    DeficitUncovered,
    Event,
    LiquidationFilled,
    SettlementDelayed,
    SettlementDone,
    TradeApplied,
    TradeRefused,
    iso,
)
from core.model.operations import refusal_text
from core.model.units import format_minor

FORMAT = "risk-result/1"


@dataclass
class ResultCollector:
    """Feeds on every tick's events; `result()` assembles the whole document."""

    engine: Engine
    events: list[Event] = field(default_factory=list)

    def feed(self, events: Iterable[Event]) -> None:
        self.events.extend(events)

    def money(self, currency: str, minor: int) -> str:
        return format_minor(minor, self.engine.scenario.currencies[currency].decimals)

    def result(self) -> dict[str, Any]:
        engine = self.engine
        return {
            "format": FORMAT,
            "scenario": engine.scenario.name,
            "positions_at_start": engine.positions_at_start,
            "liquidations": [
                self._liquidation(e) for e in self.events if isinstance(e, LiquidationFilled)
            ],
            "adl": [
                {
                    "time": iso(e.time),
                    "account": e.account,
                    "symbol": e.symbol,
                    "contracts": e.contracts,
                    "price": price_str(e.price),
                    "against": e.against,
                }
                for e in self.events
                if isinstance(e, AdlFill)
            ],
            "insurance_fund": self._fund(),
            "deficit": {
                code: {name: self.money(code, amount) for name, amount in totals.items()}
                for code, totals in engine.deficit_totals.items()
            },
            "settlements": [
                {
                    "time": iso(e.time),
                    "family": e.family,
                    "price": price_str(e.price),
                    "adjusted_from": price_str(e.adjusted_from),
                    "expired": list(e.expired),
                }
                for e in self.events
                if isinstance(e, SettlementDone)
            ],
            "clawbacks": self._clawbacks(),
            "final_balances": self._balances(with_upnl=False),
            "final_equity": self._balances(with_upnl=True),
            "ledger": self._ledger(),
            "refused": [
                {
                    "time": iso(e.time),
                    "operator": e.operator,
                    "action": e.action,
                    "code": e.code,
                    "reason": e.reason,
                    "request": e.request,
                }
                for e in self.events
                if isinstance(e, ActionRefused)
            ],
            "actions": [
                {
                    "time": iso(e.time),
                    "operator": e.operator,
                    "action": e.action,
                    "reason": e.reason,
                    "detail": e.detail,
                    "request": e.request,
                }
                for e in self.events
                if isinstance(e, ActionRecorded)
            ],
            "trades": [self._trade(e) for e in self.events if isinstance(e, TradeApplied)],
            "refused_trades": [
                {
                    "time": iso(e.time),
                    "account": e.account,
                    "symbol": e.symbol,
                    "side": e.side,
                    "contracts": e.contracts,
                    "code": e.code,
                    "reason": e.reason,
                }
                for e in self.events
                if isinstance(e, TradeRefused)
            ],
            "alerts": [
                {
                    "time": iso(e.time),
                    "rule": e.rule,
                    "account": e.account,
                    "symbol": e.symbol,
                    "severity": e.severity,
                    "message": e.message,
                    "value": e.value,
                    "threshold": e.threshold,
                }
                for e in self.events
                if isinstance(e, AlertRaised)
            ],
            "settlement_delays": [
                {
                    "time": iso(e.time),
                    "family": e.family,
                    "scheduled": iso(e.scheduled),
                    "delayed_to": iso(e.delayed_to),
                    "computed_price": price_str(e.computed_price),
                    "indicators": [
                        {
                            "name": i.name,
                            "value": i.value,
                            "threshold": i.threshold,
                            "tripped": i.tripped,
                            "detail": i.detail,
                        }
                        for i in e.indicators
                    ],
                }
                for e in self.events
                if isinstance(e, SettlementDelayed)
            ],
            "timeline": self._timeline(),
            "state_hash": engine.state_hash(),
        }

    def _liquidation(self, e: LiquidationFilled) -> dict[str, Any]:
        return {
            "time": iso(e.started),
            "finished": iso(e.time),
            "account": e.account,
            "symbol": e.symbol,
            "side": e.side,
            "contracts": e.contracts,
            "partial": e.partial,
            "fill_price": price_str(e.fill_price),
            "bankruptcy_price": price_str(e.bankruptcy_price),
            "surplus": self.money(e.currency, e.surplus),
            "deficit": self.money(e.currency, e.deficit),
            "covered_by_fund": self.money(e.currency, e.covered_by_fund),
            "currency": e.currency,
            "fills": e.fills,
        }

    def _trade(self, e: TradeApplied) -> dict[str, Any]:
        return {
            "time": iso(e.time),
            "account": e.account,
            "symbol": e.symbol,
            "side": e.side,
            "contracts": e.contracts,
            "price": price_str(e.price),
            "position": e.position,
            "realized": self.money(e.currency, e.realized),
            "currency": e.currency,
        }

    def _fund(self) -> dict[str, Any]:
        engine = self.engine
        out = {}
        for code in engine.currency_codes:
            summary = fund_summary(engine.ledger, code)
            out[code] = {
                "start": self.money(code, engine.fund_start[code]),
                "surplus_in": self.money(code, summary["surplus_in"]),
                "deficit_out": self.money(code, summary["deficit_out"]),
                "injections": self.money(code, summary["injections"]),
                "end": self.money(code, summary["balance"]),
            }
        return out

    def _clawbacks(self) -> list[dict[str, Any]]:
        """Each clawback once, in the order computed: its decision (applied or rejected) replaces
        the pending entry in place, keeping the settlement's `time`; `decided_at` is when it was
        applied or rejected (null while pending)."""
        out: list[dict[str, Any]] = []
        waiting: dict[tuple[str, str], int] = {}
        for e in self.events:
            if not isinstance(e, ClawbackComputed):
                continue
            key = (e.family, e.currency)
            if e.status == "pending":
                waiting[key] = len(out)
                out.append(self._clawback(e, decided=False))
            elif key in waiting:
                index = waiting.pop(key)
                out[index] = {**self._clawback(e), "time": out[index]["time"]}
            else:
                out.append(self._clawback(e))
        return out

    def _clawback(self, e: ClawbackComputed, *, decided: bool = True) -> dict[str, Any]:
        return {
            "time": iso(e.time),
            "decided_at": iso(e.time) if decided else None,
            "family": e.family,
            "currency": e.currency,
            "deficit": self.money(e.currency, e.deficit),
            "total_profit": self.money(e.currency, e.total_profit),
            "ratio": e.ratio,
            "unrecovered": self.money(e.currency, e.unrecovered),
            "status": e.status,
            "allocations": [
                {
                    "account": account,
                    "profit": self.money(e.currency, profit),
                    "amount": self.money(e.currency, amount),
                }
                for account, profit, amount in e.allocations
            ],
        }

    def _balances(self, *, with_upnl: bool) -> dict[str, dict[str, str]]:
        """The named accounts and every account a liquidation or ADL touched (not the whole crowd)."""
        engine = self.engine
        book = engine.book
        touched = {a.id for a in engine.scenario.accounts}
        for e in self.events:
            if isinstance(e, LiquidationFilled | AdlFill):
                touched.add(e.account)
        upnl = np.zeros((len(book.account_ids), book.n_currencies))
        if with_upnl:
            np.add.at(upnl, (book.account, book.position_currency), engine.valuation.upnl)
        held = np.zeros((len(book.account_ids), book.n_currencies), dtype=bool)
        held[book.account, book.position_currency] = True
        for a_spec in engine.scenario.accounts:
            for code in a_spec.balances:
                held[book.account_index[a_spec.id], engine.currency_codes.index(code)] = True
        out: dict[str, dict[str, str]] = {}
        for name in sorted(touched, key=book.account_index.__getitem__):
            a = book.account_index[name]
            row = {}
            for c, code in enumerate(engine.currency_codes):
                minor = engine.ledger.balance(trader(a), code)
                if with_upnl:
                    scale = engine.currencies[c].scale
                    minor += int(np.floor(upnl[a, c] * scale))
                if minor or held[a, c]:
                    row[code] = self.money(code, minor)
            out[name] = row
        return out

    def _ledger(self) -> dict[str, Any]:
        engine = self.engine
        return {
            "balanced": all(engine.ledger.total(code) == 0 for code in engine.currency_codes),
            "postings": engine.ledger.posting_count,
            "rounding": {
                code: self.money(code, engine.ledger.balance(ROUNDING, code))
                for code in engine.currency_codes
            },
            "clearing": {
                code: self.money(code, engine.ledger.balance(CLEARING, code))
                for code in engine.currency_codes
            },
            "insurance_fund": {
                code: self.money(code, engine.ledger.balance(INSURANCE_FUND, code))
                for code in engine.currency_codes
            },
        }

    def _timeline(self) -> list[dict[str, Any]]:
        """A reader's summary: actions, fund movements over 0, deficits, settlements, clawbacks."""
        lines = []
        for e in self.events:
            if isinstance(e, ActionRecorded):
                text = f"{e.operator}: {e.action} - {e.detail} ({e.reason})"
            elif isinstance(e, ActionRefused):
                text = refusal_text(e.reason, e.code, f"{e.operator}'s {e.action}")
            elif isinstance(e, LiquidationFilled) and (e.contracts >= 1000 or e.deficit):
                text = (
                    f"{e.account} {e.side} {e.contracts} {e.symbol} {'reduced' if e.partial else 'liquidated'}"
                    f" at {price_str(e.fill_price)}, deficit {self.money(e.currency, e.deficit)} {e.currency}"
                )
            elif isinstance(e, DeficitUncovered) and e.amount >= 10 ** max(
                0, self.engine.scenario.currencies[e.currency].decimals - 2
            ):
                text = f"uncovered deficit {self.money(e.currency, e.amount)} {e.currency} ({e.family})"
            elif isinstance(e, AlertRaised):
                text = f"alert {e.rule} ({e.severity}): {e.message}"
            elif isinstance(e, SettlementDelayed):
                tripped = ", ".join(
                    f"{i.name} {i.value:.4g} > {i.threshold:.4g}" for i in e.indicators if i.tripped
                )
                text = (
                    f"settlement of {e.family} delayed from {iso(e.scheduled)} to "
                    f"{iso(e.delayed_to)} ({tripped})"
                )
            elif isinstance(e, TradeRefused):
                subject = f"{e.account}'s {e.side} {e.contracts} {e.symbol}"
                text = refusal_text(e.reason, e.code, subject)
            elif isinstance(e, SettlementDone):
                text = f"settlement of {e.family} at {e.price}" + (
                    f" (adjusted from {e.adjusted_from})" if e.adjusted_from else ""
                )
            elif isinstance(e, ClawbackComputed):
                text = (
                    f"clawback {e.status}: {self.money(e.currency, e.deficit)} {e.currency} over profit "
                    f"{self.money(e.currency, e.total_profit)}, ratio {e.ratio}"
                )
            else:
                continue
            lines.append({"time": iso(e.time), "event": text})
        return lines
