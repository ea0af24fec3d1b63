"""Settlement cycles under human control: the schedule, manipulation checks over each window (and
the delay they call for), the settlement price (mean of the index over the last hour, or an
approved adjustment), realization of PnL, delivery at expiry, and the clawback of the period as a
previewed request a supervisor approves.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING

import numpy as np

from core.engine.deficit import allocate_clawback
from core.engine.ledger import CLEARING, INT64_MAX, Reason, TraderBatch
from core.engine.manipulation import WindowWatch
from core.market.prices import PriceUnavailableError
from core.model.errors import InputError
from core.model.events import ClawbackComputed, SettlementDelayed, SettlementDone
from core.model.instruments import Instrument
from core.model.operations import Refusal
from core.model.scenario_values import ActionSpec
from core.model.settlement import (
    ClawbackPreview,
    PendingClawback,
    SettlementChecks,
    SettlementReview,
    WindowAssessment,
)
from core.risk.pnl import realized_pnl

if TYPE_CHECKING:
    from core.engine.state import EngineState

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# Price samples and fills are kept for one window plus the longest delay.
RETENTION_SECONDS = 2 * 3600


class Settlements:
    """The settlement schedule of one engine and what each settlement does."""

    def __init__(self, engine: EngineState, checks: SettlementChecks | None = None) -> None:
        self.engine = engine
        self.checks = checks or SettlementChecks()
        self.schedule = self._schedule()
        self.done = 0
        self.pending: dict[tuple[str, str], PendingClawback] = {}
        self.delays: list[tuple[str, datetime, datetime]] = []  # family, scheduled, delayed to
        self.assessments: dict[str, WindowAssessment] = {}  # family -> at its last settlement
        self.watch = WindowWatch(engine, RETENTION_SECONDS)

    def state_repr(self) -> str:
        pending = sorted((k, p.digest) for k, p in self.pending.items())
        return (
            f"{self.done}|{pending}|{self.schedule[self.done :]}|{self.delays}|"
            f"{self.checks}|{self.watch.digest()}"
        )

    # ----- the schedule -------------------------------------------------------------------

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
        ahead = self.schedule[self.done][0] if self.done < len(self.schedule) else None
        # Prices and fills are recorded from an hour before the next settlement on.
        watching = ahead is not None and (ahead - now).total_seconds() <= (
            self.checks.window_seconds + self.engine.scenario.tick_seconds
        )
        self.watch.observe(self._seconds(now), watching)
        while self.done < len(self.schedule) and self.schedule[self.done][0] <= now:
            when, family = self.schedule[self.done]
            self.done += 1
            if self.done >= 2 and self.schedule[self.done - 2] == (when, family):
                continue
            if not self._delay_if_suspect(when, family):
                self.settle(when, family)

    def _delay_if_suspect(self, when: datetime, family: str) -> bool:
        """Check the window; when suspect (and not delayed already) put the settlement off."""
        assessment = self.assess(family, when)
        self.assessments[family] = assessment
        if not assessment.suspected or any(f == family and to == when for f, _, to in self.delays):
            return False
        delayed_to = when + timedelta(seconds=self.checks.delay_seconds)
        self.delays.append((family, when, delayed_to))
        rest = [*self.schedule[self.done :], (delayed_to, family)]
        self.schedule[self.done :] = sorted(rest)
        try:
            computed: Decimal | None = self.computed_price(when, family)
        except PriceUnavailableError:
            computed = None
        self.engine.emit(
            SettlementDelayed(
                self.engine.now, family, when, delayed_to, computed, assessment.tripped
            )
        )
        return True

    def next_settlement(self, family: str) -> tuple[datetime | None, datetime | None]:
        """(time of the family's next settlement, the time it was delayed from or None)."""
        for when, name in self.schedule[self.done :]:
            if name == family:
                original = [s for f, s, to in self.delays if f == family and to == when]
                return when, original[0] if original else None
        return None, None

    def _seconds(self, moment: datetime) -> int:
        delta = moment - self.engine.scenario.start
        return delta.days * 86_400 + delta.seconds

    def assess(self, family: str, until: datetime) -> WindowAssessment:
        """The manipulation checks of `family` over the window ending at `until`."""
        return self.watch.assess(self.checks, family, self._seconds(until))

    # ----- settling -----------------------------------------------------------------------

    def computed_price(self, when: datetime, family: str) -> Decimal:
        engine = self.engine
        inst = next(i for i in engine.instruments if i.family == family)
        seconds = int((when - engine.scenario.start).total_seconds())
        return engine.windows[inst.index].mean(seconds, tick_size=inst.tick_size)

    def check_price(self, family: str, price: Decimal) -> Decimal:
        """An operator's settlement price for `family`: positive and on every instrument's tick."""
        instruments = self._family(family)
        if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
            raise InputError("price", f"expected a positive decimal price, found {price!r}")
        for inst in instruments:
            if price % inst.tick_size:
                raise InputError(
                    "price", f"{price} is not on the {inst.symbol} tick of {inst.tick_size}"
                )
        return price

    def _family(self, family: str) -> list[Instrument]:
        instruments = [i for i in self.engine.instruments if i.family == family]
        if not instruments:
            raise InputError("family", f"no instrument of family {family!r}")
        return instruments

    def settle(self, when: datetime, family: str) -> None:
        engine, book = self.engine, self.engine.book
        price = computed = self.computed_price(when, family)
        adjusted_from: Decimal | None = None
        if family in engine.controls.adjustments:
            _, adjusted = engine.controls.adjustments.pop(family)
            price, adjusted_from = _on_tick(self._family(family), Decimal(str(adjusted))), computed
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
            self._clawback(family, currency, price)
            engine.period_pnl[(family, currency)][:] = 0

    # ----- the clawback -------------------------------------------------------------------

    def preview(self, family: str, currency: str, price: Decimal) -> ClawbackPreview:
        """The clawback the next settlement of `family` would compute in `currency` at `price`,
        without changing anything. Settling at that price with the same inputs gives the same
        digest (liquidation orders still in the book at an expiry may add to the deficit)."""
        engine, book = self.engine, self.engine.book
        price = self.check_price(family, price)
        key = (family, currency)
        if key not in engine.period_pnl:
            raise InputError("currency", f"{family} does not settle in {currency!r}")
        profits = engine.period_pnl[key].copy()
        for k, inst in enumerate(engine.instruments):
            if inst.family != family or inst.settle_currency != currency:
                continue
            rows = np.flatnonzero((book.instrument == k) & (book.contracts > 0))
            pnl = realized_pnl(
                inst,
                engine.decimals(k),
                book.side[rows],
                book.contracts[rows],
                book.entry_units[rows],
                inst.price_units(price),
            )
            if pnl.size:
                bound = int(np.abs(pnl).max()) * pnl.size + int(np.abs(profits).max())
                if bound > INT64_MAX:
                    raise OverflowError(f"profits of {family} {currency} would leave int64")
                np.add.at(profits, book.account[rows], pnl)
        deficit = engine.uncovered[key]
        fund_pays = max(0, min(deficit, engine.desk.fund_free(currency)))
        accounts = np.flatnonzero(profits > 0)
        return _preview(
            family, currency, price, deficit - fund_pays, fund_pays, accounts, profits[accounts]
        )

    def _clawback(self, family: str, currency: str, price: Decimal) -> None:
        engine = self.engine
        key = (family, currency)
        deficit = engine.uncovered[key]
        if deficit <= 0:
            return
        # The fund (with any injection since the deficit arose) pays first; only the rest is shared.
        from_fund = max(0, min(deficit, engine.desk.fund_free(currency)))
        engine.fund_out(currency, from_fund, at_settlement=True)
        engine.uncovered[key] = deficit - from_fund
        if key in self.pending:
            # A request still waiting stays as approved-to-be; the rest waits for the next
            # settlement rather than rewrite it.
            return
        engine.uncovered[key] = 0
        deficit -= from_fund
        if deficit == 0:
            return
        profits = engine.period_pnl[key]
        accounts = np.flatnonzero(profits > 0)
        preview = _preview(
            family, currency, price, deficit, from_fund, accounts, profits[accounts].copy()
        )
        if engine.scenario.policy.clawback_approval == "auto":
            self._apply(preview)
            self._emit(preview, "applied")
            return
        request = f"clawback-{family}-{currency}-{engine.now.strftime('%Y%m%dT%H%M%SZ')}"
        self.pending[key] = PendingClawback(request, engine.now, preview)
        self._emit(preview, "pending")

    def _emit(self, preview: ClawbackPreview, status: str) -> None:
        """The clawback's event; a rejected one charges nobody, so it lists no allocations."""
        ids = self.engine.book.account_ids
        charged = status != "rejected"
        self.engine.emit(
            ClawbackComputed(
                self.engine.now,
                preview.family,
                preview.currency,
                preview.deficit,
                preview.total_profit,
                preview.ratio_text,
                preview.unrecovered,
                status,
                tuple(
                    (ids[a], p, m)
                    for a, p, m in zip(
                        preview.accounts.tolist(),
                        preview.profits.tolist(),
                        preview.amounts.tolist(),
                        strict=True,
                    )
                    if charged
                ),
            )
        )

    def _apply(self, preview: ClawbackPreview) -> None:
        """Deduct exactly the previewed amounts from the accounts' balances."""
        engine = self.engine
        batch = TraderBatch(
            np.ascontiguousarray(preview.amounts, dtype=np.int64),
            CLEARING,
            preview.currency,
            Reason.CLAWBACK,
            "from_traders",
            trader_ids=np.ascontiguousarray(preview.accounts, dtype=np.int64),
        )
        engine.ledger.post_many([batch])
        c = engine.currency_codes.index(preview.currency)
        engine.book.balances[preview.accounts, c] -= preview.amounts
        engine.book.refresh()

    def approve_clawback(self, action: ActionSpec) -> str:
        """Apply a pending clawback exactly as previewed; refused ("changed") when the action names
        the digest of another preview than the one frozen in the request."""
        key, pending = self._decided(action)
        self._apply(pending.preview)
        self._emit(pending.preview, "applied")
        return f"clawback of {key[0]} {key[1]} applied ({pending.digest[:12]})"

    def reject_clawback(self, action: ActionSpec) -> str:
        """Drop a pending clawback: nobody is charged and its deficit is uncovered again, so the
        next settlement of the family offers it anew after the fund (with any injection approved
        meanwhile) has paid what it can (docs/operators.md, "Clawbacks")."""
        key, pending = self._decided(action)
        self.engine.uncovered[key] += pending.preview.deficit
        self._emit(pending.preview, "rejected")
        return (
            f"clawback of {key[0]} {key[1]} rejected ({pending.digest[:12]}): "
            f"its deficit stays uncovered until the next settlement"
        )

    def _decided(self, action: ActionSpec) -> tuple[tuple[str, str], PendingClawback]:
        """The pending clawback an approval or rejection names, taken off the pending list; refused
        when there is none, or ("changed") when the action names the digest of another preview."""
        key = (str(action.params["family"]), str(action.params["currency"]))
        pending = self.pending.get(key)
        if pending is None:
            raise Refusal("no_clawback", f"no clawback of {key[0]} {key[1]} awaits a decision")
        digest = action.params.get("digest")
        if digest is not None and digest != pending.digest:
            raise Refusal(
                "changed",
                f"the clawback of {key[0]} {key[1]} changed since the preview "
                f"{str(digest)[:12]}: it is now {pending.digest[:12]}",
            )
        del self.pending[key]
        return key, pending

    # ----- the settlement view ------------------------------------------------------------

    def review(self, family: str) -> SettlementReview:
        """Everything the settlement view shows for `family` now (see `SettlementReview`)."""
        engine = self.engine
        instruments = self._family(family)
        window = engine.windows[instruments[0].index]
        end = self._seconds(engine.now)
        times, units = window.snapshot()
        keep = (times > end - self.checks.window_seconds) & (times <= end)
        index_times, index_prices = times[keep], units[keep] / window.scale
        index_times.flags.writeable = index_prices.flags.writeable = False
        try:
            computed: Decimal | None = window.mean(end, tick_size=instruments[0].tick_size)
        except PriceUnavailableError:
            computed = None
        scheduled, delayed_from = self.next_settlement(family)
        adjustment = engine.controls.adjustments.get(family)
        proposals = tuple(
            (r.id, r.action.operator, Decimal(str(r.action.params["price"])))
            for r in engine.controls.requests.values()
            if r.status == "pending"
            and r.action.action == "adjust_settlement_price"
            and r.action.params.get("family") == family
        )
        currencies = sorted({i.settle_currency for i in instruments})
        return SettlementReview(
            family,
            engine.now,
            scheduled,
            delayed_from,
            computed,
            index_times,
            index_prices,
            self.assess(family, engine.now),
            Decimal(str(adjustment[1])) if adjustment is not None else None,
            proposals,
            {c: engine.uncovered[(family, c)] for c in currencies},
            {c: engine.desk.fund_free(c) for c in currencies},
            {c: p for (f, c), p in self.pending.items() if f == family},
        )


def _on_tick(instruments: list[Instrument], price: Decimal) -> Decimal:
    """An approved price on the family's coarsest tick (half-even), so every instrument takes it."""
    tick = max(i.tick_size for i in instruments)
    return (price / tick).quantize(Decimal(1), rounding=ROUND_HALF_EVEN) * tick


def _preview(
    family: str,
    currency: str,
    price: Decimal,
    deficit: int,
    fund_pays: int,
    accounts: np.ndarray,
    profits: np.ndarray,
) -> ClawbackPreview:
    """Allocate `deficit` over the profitable `accounts` and seal the result with a digest."""
    accounts = np.ascontiguousarray(accounts, dtype=np.int64)
    profits = np.ascontiguousarray(profits, dtype=np.int64)
    allocation = allocate_clawback(deficit, profits)
    amounts = np.ascontiguousarray(allocation.amounts, dtype=np.int64)
    for array in (accounts, profits, amounts):
        array.flags.writeable = False
    head = f"{family}|{currency}|{format(price.normalize(), 'f')}|{deficit}|{fund_pays}|"
    digest = hashlib.sha256(
        head.encode() + accounts.tobytes() + profits.tobytes() + amounts.tobytes()
    ).hexdigest()
    return ClawbackPreview(
        family,
        currency,
        price,
        deficit,
        fund_pays,
        allocation.total_profit,
        allocation.ratio,
        allocation.unrecovered,
        accounts,
        profits,
        amounts,
        digest,
    )
