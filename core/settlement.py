"""Settlement cycles: the schedule, the settlement price (mean of the index over the last hour, or
an approved adjustment), realization of PnL, delivery at expiry, and the clawback of the period.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np

from core.controls import Refusal
from core.deficit import ClawbackAllocation, allocate_clawback
from core.events import ClawbackComputed, SettlementDone
from core.ledger import CLEARING, Reason, TraderBatch
from core.scenario_model import ActionSpec
from core.units import decimal_str

if TYPE_CHECKING:
    from core.engine import Engine

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True, slots=True)
class PendingClawback:
    """A computed clawback waiting for a supervisor; its allocation is frozen with a hash."""

    family: str
    currency: str
    deficit: int
    allocation: ClawbackAllocation
    profits: np.ndarray
    digest: str


class Settlements:
    """The settlement schedule of one engine and what each settlement does."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.schedule = self._schedule()
        self.done = 0
        self.pending: dict[tuple[str, str], PendingClawback] = {}

    def state_repr(self) -> str:
        return f"{self.done}|{sorted((k, p.digest) for k, p in self.pending.items())}"

    def _schedule(self) -> list[tuple[datetime, str]]:
        """(time, family) for the policy's cycle and every expiry within the run. Only families
        with dated futures settle on the cycle; perpetuals have no settlement."""
        scenario = self.engine.scenario
        policy = scenario.policy.settlement
        start, end = scenario.start, scenario.end
        dated = sorted({i.family for i in scenario.instruments.values() if i.expiry is not None})
        times: set[tuple[datetime, str]] = set()
        if policy.every in ("day", "week") and dated:
            hour, minute = (int(part) for part in policy.time.split(":"))
            first = datetime.combine(start.date(), time(hour, minute), tzinfo=start.tzinfo)
            step = timedelta(days=1 if policy.every == "day" else 7)
            if policy.every == "week":
                first += timedelta(days=(WEEKDAYS.index(policy.weekday) - first.weekday()) % 7)
            while first <= start:
                first += step
            while first <= end:
                times.update((first, family) for family in dated)
                first += step
        for inst in scenario.instruments.values():
            if inst.expiry is not None and start < inst.expiry <= end:
                times.add((inst.expiry, inst.family))
        return sorted(times)

    def run_due(self, now: datetime) -> None:
        while self.done < len(self.schedule) and self.schedule[self.done][0] <= now:
            when, family = self.schedule[self.done]
            self.done += 1
            if self.done >= 2 and self.schedule[self.done - 2] == (when, family):
                continue
            self.settle(when, family)

    def computed_price(self, when: datetime, family: str) -> Decimal:
        engine = self.engine
        inst = next(i for i in engine.instruments if i.family == family)
        seconds = int((when - engine.scenario.start).total_seconds())
        return engine.windows[inst.index].mean(seconds, tick_size=inst.tick_size)

    def settle(self, when: datetime, family: str) -> None:
        engine, book = self.engine, self.engine.book
        price = computed = self.computed_price(when, family)
        adjusted_from: Decimal | None = None
        if family in engine.controls.adjustments:
            _, adjusted = engine.controls.adjustments.pop(family)
            price, adjusted_from = Decimal(str(adjusted)), computed
        expired: list[str] = []
        for k, inst in enumerate(engine.instruments):
            if inst.family != family:
                continue
            units = inst.price_units(price)
            expiring = inst.expiry is not None and inst.expiry <= when
            if expiring:
                expired.append(inst.symbol)
                engine.desk.close_at(k, units)
            for row in np.flatnonzero((book.instrument == k) & (book.contracts > 0)).tolist():
                engine.realize(row, units, close=expiring)
        engine.emit(SettlementDone(engine.now, family, price, adjusted_from, tuple(expired)))
        for currency in sorted(
            {i.settle_currency for i in engine.instruments if i.family == family}
        ):
            self._clawback(family, currency)
            engine.period_pnl[(family, currency)][:] = 0

    def _clawback(self, family: str, currency: str) -> None:
        engine = self.engine
        deficit = engine.uncovered[(family, currency)]
        if deficit <= 0:
            return
        engine.uncovered[(family, currency)] = 0
        # The fund (with any injection since the deficit arose) pays first; only the rest is shared.
        from_fund = max(0, min(deficit, engine.desk.fund_free(currency)))
        engine.fund_out(currency, from_fund, at_settlement=True)
        deficit -= from_fund
        if deficit == 0:
            return
        profits = engine.period_pnl[(family, currency)].copy()
        allocation = allocate_clawback(deficit, profits)
        digest = hashlib.sha256(allocation.amounts.tobytes() + f"{deficit}".encode()).hexdigest()
        pending = PendingClawback(family, currency, deficit, allocation, profits, digest)
        if engine.scenario.policy.clawback_approval == "auto":
            self._apply(pending)
            status = "applied"
        else:
            self.pending[(family, currency)] = pending
            status = "pending"
        self._emit(pending, status)

    def _emit(self, pending: PendingClawback, status: str) -> None:
        engine = self.engine
        allocation, profits = pending.allocation, pending.profits
        ids = engine.book.account_ids
        rows = np.flatnonzero(profits > 0)
        engine.emit(
            ClawbackComputed(
                engine.now,
                pending.family,
                pending.currency,
                pending.deficit,
                allocation.total_profit,
                decimal_str(allocation.ratio, 12) if allocation.total_profit else "0",
                allocation.unrecovered,
                status,
                tuple((ids[r], int(profits[r]), int(allocation.amounts[r])) for r in rows.tolist()),
            )
        )

    def _apply(self, pending: PendingClawback) -> None:
        engine = self.engine
        amounts = np.ascontiguousarray(pending.allocation.amounts, dtype=np.int64)
        engine.ledger.post_many(
            [TraderBatch(amounts, CLEARING, pending.currency, Reason.CLAWBACK, "from_traders")]
        )
        c = engine.currency_codes.index(pending.currency)
        engine.book.balances[:, c] -= amounts
        engine.book.refresh()

    def approve_clawback(self, action: ActionSpec) -> str:
        key = (str(action.params["family"]), str(action.params["currency"]))
        pending = self.pending.pop(key, None)
        if pending is None:
            raise Refusal("no_clawback", f"no clawback of {key[0]} {key[1]} awaits approval")
        self._apply(pending)
        self._emit(pending, "applied")
        return f"clawback of {key[0]} {key[1]} applied ({pending.digest[:12]})"
