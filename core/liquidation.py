"""The liquidation process: partial step-down, takeover at bankruptcy, band-limited orders against
the book, relisting, fund reservation and release, surplus and deficit, and auto-deleveraging.

The desk holds the engine's orders; every money movement goes through the engine's ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from core.book import band_limit
from core.deficit import adl_order, adl_ranking, allocate_clawback, effective_leverage
from core.events import AdlFill, LiquidationFilled, LiquidationStarted
from core.instruments import realized_pnl_minor
from core.ledger import CLEARING, INSURANCE_FUND, ROUNDING, Reason, trader
from core.units import Rounding, round_fraction

if TYPE_CHECKING:
    from core.engine import Engine


@dataclass(slots=True)
class Order:
    """One liquidation or reduction being worked. `kind` is `takeover` (the engine holds the
    position at its bankruptcy price) or `reduce` (a partial step or a force-reduce: the trader
    keeps the position and realizes each fill)."""

    kind: str
    row: int
    instrument: int
    side: int  # the trader's side: +1 long (the order sells), -1 short
    entry_units: int
    total: int
    remaining: int
    collateral: int  # takeover: what the trader lost at the bankruptcy price, minor units
    collateral_posted: int
    started: datetime
    bankruptcy_price: float | None
    reserved: int = 0
    filled_value: int = 0  # sum of contracts * price units, for the VWAP
    surplus: int = 0
    deficit: int = 0
    covered: int = 0
    fills: int = 0
    partial: bool = False


class LiquidationDesk:
    """Works the orders of one engine, tick by tick."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.orders: list[Order] = []
        self.reserved: dict[str, int] = dict.fromkeys(engine.currency_codes, 0)

    # ----- starting -----------------------------------------------------------------------

    def start(self, rows: np.ndarray, bankruptcy: np.ndarray) -> None:
        """Start the liquidation of flagged rows: a partial step where the policy and the tier
        allow, otherwise a takeover (cross rows are taken over with their whole account group)."""
        engine, book = self.engine, self.engine.book
        taken_groups: set[int] = set()
        cross_rows = rows[~book.isolated[rows]]
        rows_of_group: dict[int, list[int]] = {}
        for row, group in zip(cross_rows.tolist(), book.group[cross_rows].tolist(), strict=True):
            rows_of_group.setdefault(group, []).append(row)
        partial = engine.scenario.policy.partial_liquidation
        targets = {row: self._step_target(row) if partial else None for row in rows.tolist()}
        # A cross account steps its positions above the lowest tier down first; it is taken over
        # as a whole only once none can step (a takeover would also take the rows being reduced).
        stepping_groups = {
            int(book.group[row])
            for row, target in targets.items()
            if target is not None and not book.isolated[row] and book.contracts[row] > 0
        }
        for row in rows.tolist():
            if book.contracts[row] == 0:
                continue
            price = float(bankruptcy[row]) if np.isfinite(bankruptcy[row]) else None
            target = targets[row]
            if target is not None:
                self._add_reduce(row, int(book.contracts[row]) - target, price, partial=True)
                continue
            if book.isolated[row]:
                self._take_over(row, int(book.iso_margin[row]), price)
                book.iso_margin[row] = 0
                book.refresh(np.array([row]))
                continue
            group = int(book.group[row])
            if group in taken_groups or group in stepping_groups:
                continue
            taken_groups.add(group)
            self._take_over_group(group, np.array(rows_of_group[group], dtype=np.int64), bankruptcy)

    def _step_target(self, row: int) -> int | None:
        """Contracts at the top of the next lower tier, or None in the lowest tier."""
        book = self.engine.book
        level = int(book.tier[row])
        if level == 0:
            return None
        inst = book.instruments[book.instrument[row]]
        top = inst.tiers.levels[level - 1].max
        if inst.tiers.basis == "contracts":
            return int(top)
        mark = self.engine.marks[book.instrument[row]]
        return int(Fraction(top) / inst.notional(1, Decimal(repr(float(mark)))))

    def _take_over_group(self, group: int, rows: np.ndarray, bankruptcy: np.ndarray) -> None:
        """Take over the open cross `rows` of one account group; the liquidation flag is the
        group's, so every open row of a flagged group is among the flagged rows."""
        engine, book = self.engine, self.engine.book
        account, currency = divmod(group, book.n_currencies)
        rows = rows[book.contracts[rows] > 0]
        cash = int(book.balances[account, currency])
        weights = book.size_per_x[rows] * engine.x_marks[book.instrument[rows]]
        shares = _split_exact(cash, weights)
        book.balances[account, currency] = 0
        for row, share in zip(rows.tolist(), shares, strict=True):
            price = float(bankruptcy[row]) if np.isfinite(bankruptcy[row]) else None
            self._take_over(row, share, price)

    def _take_over(self, row: int, collateral: int, bankruptcy_price: float | None) -> None:
        """The engine takes the position over: the trader loses `collateral` to the clearing
        house, and the engine works the position out through the book."""
        engine, book = self.engine, self.engine.book
        account = int(book.account[row])
        currency = engine.currency_codes[book.position_currency[row]]
        if collateral > 0:
            engine.ledger.post(trader(account), CLEARING, currency, collateral, Reason.REALIZED_PNL)
        elif collateral < 0:
            engine.ledger.post(
                CLEARING, trader(account), currency, -collateral, Reason.REALIZED_PNL
            )
        engine.add_period_pnl(row, -collateral)
        for pending in self.orders:
            if pending.kind == "reduce" and pending.row == row:
                _cut(pending, 0)  # the takeover supersedes a reduction still being worked
        order = Order(
            kind="takeover",
            row=row,
            instrument=int(book.instrument[row]),
            side=int(book.side[row]),
            entry_units=int(book.entry_units[row]),
            total=int(book.contracts[row]),
            remaining=int(book.contracts[row]),
            collateral=collateral,
            collateral_posted=0,
            started=engine.now,
            bankruptcy_price=bankruptcy_price,
        )
        book.contracts[row] = 0
        book.refresh(np.array([row]))
        self.orders.append(order)
        self._reserve(order)
        engine.emit(
            LiquidationStarted(
                engine.now,
                book.account_ids[account],
                engine.symbol(order.instrument),
                _side_name(order.side),
                order.total,
                False,
                bankruptcy_price,
                order.reserved,
                currency,
            )
        )

    def _add_reduce(self, row: int, contracts: int, price: float | None, *, partial: bool) -> None:
        book = self.engine.book
        self.orders.append(
            Order(
                kind="reduce",
                row=row,
                instrument=int(book.instrument[row]),
                side=int(book.side[row]),
                entry_units=int(book.entry_units[row]),
                total=contracts,
                remaining=contracts,
                collateral=0,
                collateral_posted=0,
                started=self.engine.now,
                bankruptcy_price=price,
                partial=partial,
            )
        )

    def force_reduce(self, row: int, contracts: int) -> None:
        """An operator's force-reduce, worked like a partial step until done."""
        self._add_reduce(
            row, min(contracts, int(self.engine.book.contracts[row])), None, partial=True
        )

    # ----- the fund -----------------------------------------------------------------------

    def fund_free(self, currency: str) -> int:
        return self.engine.ledger.balance(INSURANCE_FUND, currency) - self.reserved[currency]

    def _worst_loss(self, order: Order) -> int:
        """The deficit if the whole remainder filled at the band's limit now (minor units)."""
        engine = self.engine
        inst = engine.book.instruments[order.instrument]
        mark = engine.marks[order.instrument]
        limit = band_limit(_book_side(order.side), mark, float(inst.liquidation_band))
        limit_units = max(1, int(limit / float(inst.price_unit)))
        pnl = realized_pnl_minor(
            inst,
            engine.decimals(order.instrument),
            order.side,
            order.remaining,
            order.entry_units,
            limit_units,
        )
        return max(0, -(order.collateral - order.collateral_posted + pnl))

    def _reserve(self, order: Order) -> bool:
        """Reserve the remainder's worst loss where the policy asks; False when the fund is short."""
        engine = self.engine
        adl = engine.scenario.policy.deficit == "adl"
        if order.kind != "takeover" or not (engine.scenario.policy.fund_reservation or adl):
            return True
        currency = engine.currency_of(order.instrument)
        needed = self._worst_loss(order) - order.reserved
        if needed <= 0:
            return True
        take = max(0, min(needed, self.fund_free(currency)))
        order.reserved += take
        self.reserved[currency] += take
        return take == needed

    # ----- working the orders -------------------------------------------------------------

    def work(self) -> None:
        """One tick: top up reservations (ADL where the fund cannot), then execute against the books."""
        engine = self.engine
        if engine.scenario.policy.deficit == "adl":
            for order in [o for o in self.orders if o.kind == "takeover"]:
                if not self._reserve(order):
                    self._deleverage(order)
        elif engine.scenario.policy.fund_reservation:
            for order in self.orders:
                self._reserve(order)
        # Reductions of one position (force-reduces, steps) never add up to more than it holds.
        left: dict[int, int] = {}
        for order in self.orders:
            if order.kind == "reduce":
                budget = left.get(order.row, int(engine.book.contracts[order.row]))
                _cut(order, min(order.remaining, budget))
                left[order.row] = budget - order.remaining
        groups: dict[tuple[int, int, str], list[Order]] = {}
        for order in self.orders:
            if order.remaining > 0:
                groups.setdefault((order.instrument, order.side, order.kind), []).append(order)
        # Takeovers go to the book before reductions: they carry the exchange's risk.
        for key in sorted(groups, key=lambda k: (k[0], k[1], k[2] != "takeover")):
            self._execute(key[0], key[1], groups[key])
        self._finish()

    def _execute(self, instrument: int, side: int, orders: list[Order]) -> None:
        engine = self.engine
        inst = engine.book.instruments[instrument]
        wanted = sum(o.remaining for o in orders)
        mark = engine.marks[instrument]
        book_side = _book_side(side)
        limit = band_limit(book_side, mark, float(inst.liquidation_band))
        fill = engine.liquidity[instrument].execute(
            book_side, wanted, limit, engine.fair_mid(instrument)
        )
        if fill.contracts_filled == 0:
            self._after_unfilled(orders)
            return
        price_units = max(1, round(fill.average_price / float(inst.price_unit)))
        remaining = np.array([o.remaining for o in orders], dtype=np.int64)
        parts = allocate_clawback(fill.contracts_filled, remaining).amounts
        for order, part in zip(orders, parts.tolist(), strict=True):
            if part:
                self.fill(order, part, price_units)
        self._after_unfilled([o for o in orders if o.remaining > 0])

    def _after_unfilled(self, orders: list[Order]) -> None:
        """A partial step that the book cannot fill in the band turns into a takeover of the rest."""
        book = self.engine.book
        for order in orders:
            if order.kind == "reduce" and order.partial and order.bankruptcy_price is not None:
                _cut(order, 0)
                row = order.row
                if book.contracts[row] > 0 and book.isolated[row]:
                    self._take_over(row, int(book.iso_margin[row]), order.bankruptcy_price)
                    book.iso_margin[row] = 0
                    book.refresh(np.array([row]))

    def fill(self, order: Order, contracts: int, price_units: int, *, adl: bool = False) -> None:
        """Account for `contracts` of `order` closed at `price_units` (`adl`: against the ranked
        opposite positions at the remainder's bankruptcy price)."""
        engine = self.engine
        order.remaining -= contracts
        order.fills += 1
        order.filled_value += contracts * price_units
        if order.kind == "reduce":
            engine.close_for_trader(order.row, contracts, price_units)
            return
        inst = engine.book.instruments[order.instrument]
        pnl = realized_pnl_minor(
            inst,
            engine.decimals(order.instrument),
            order.side,
            contracts,
            order.entry_units,
            price_units,
        )
        done = order.total - order.remaining
        collateral_now = order.collateral * done // order.total
        net = collateral_now - order.collateral_posted + pnl
        order.collateral_posted = collateral_now
        currency = engine.currency_of(order.instrument)
        if net >= 0:
            order.surplus += net
            engine.fund_in(currency, net, Reason.LIQUIDATION_SURPLUS)
            return
        deficit = -net
        order.deficit += deficit
        from_reserve = min(deficit, order.reserved)
        order.reserved -= from_reserve
        self.reserved[currency] -= from_reserve
        # The released reservation is still in the fund's free balance now: count it once.
        cover = max(0, min(deficit, self.fund_free(currency)))
        order.covered += cover
        engine.fund_out(currency, cover)
        uncovered = deficit - cover
        if uncovered:
            if adl:
                # Sub-unit rounding of the bankruptcy fill: the house's rounding account bears it.
                engine.ledger.post(ROUNDING, CLEARING, currency, uncovered, Reason.ROUNDING)
            else:
                engine.add_uncovered(order.instrument, uncovered)

    def _finish(self) -> None:
        engine, book = self.engine, self.engine.book
        still: list[Order] = []
        for order in self.orders:
            if order.remaining > 0:
                still.append(order)
                continue
            currency = engine.currency_of(order.instrument)
            self.reserved[currency] -= order.reserved
            filled = order.total - order.remaining
            if order.kind == "reduce" and order.fills == 0:
                continue
            vwap = Fraction(order.filled_value, max(filled, 1)) * Fraction(
                book.instruments[order.instrument].price_unit
            )
            engine.emit(
                LiquidationFilled(
                    engine.now,
                    order.started,
                    book.account_ids[book.account[order.row]],
                    engine.symbol(order.instrument),
                    _side_name(order.side),
                    filled,
                    order.kind == "reduce",
                    _price_decimal(vwap),
                    order.bankruptcy_price,
                    order.surplus,
                    order.deficit,
                    order.covered,
                    currency,
                    order.fills,
                )
            )
        self.orders = still

    def close_at(self, instrument: int, price_units: int) -> None:
        """Expiry: every order on the instrument is closed at the settlement price."""
        for order in self.orders:
            if order.instrument == instrument and order.remaining > 0:
                self.fill(order, order.remaining, price_units)
        self._finish()

    # ----- auto-deleveraging --------------------------------------------------------------

    def _deleverage(self, order: Order) -> None:
        """Close the remainder against the ranked opposite positions at the bankruptcy price."""
        engine, book = self.engine, self.engine.book
        inst = book.instruments[order.instrument]
        price_units = self._bankruptcy_units(order)
        if price_units is None:
            return
        valuation = engine.valuation
        opposite = (
            (book.instrument == order.instrument)
            & (book.side == -order.side)
            & (book.contracts > 0)
        )
        if not opposite.any():
            return
        cushion = np.maximum(valuation.equity, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            pnl_pct = np.where(book.entry_margin > 0, valuation.upnl / book.entry_margin, 0.0)
        leverage = effective_leverage(valuation.notional, valuation.notional - cushion)
        scores = adl_ranking(np.nan_to_num(pnl_pct), np.nan_to_num(leverage, posinf=1e300))
        liquidated = book.account_ids[book.account[order.row]]
        for row in adl_order(scores, opposite).tolist():
            if order.remaining == 0:
                break
            take = min(order.remaining, int(book.contracts[row]))
            engine.close_for_trader(row, take, price_units)
            for pending in self.orders:
                if pending.kind == "reduce" and pending.row == row:
                    _cut(pending, max(0, pending.remaining - take))  # ADL did that much
            self.fill(order, take, price_units, adl=True)
            engine.emit(
                AdlFill(
                    engine.now,
                    book.account_ids[book.account[row]],
                    inst.symbol,
                    take,
                    _price_decimal(Fraction(price_units) * Fraction(inst.price_unit)),
                    liquidated,
                )
            )

    def _bankruptcy_units(self, order: Order) -> int | None:
        """The exact price at which the remainder loses its remaining collateral, in price units,
        rounded in the liquidated trader's favour so the fill leaves no deficit."""
        inst = self.engine.book.instruments[order.instrument]
        left = Fraction(
            order.collateral - order.collateral_posted, 10 ** self.engine.decimals(order.instrument)
        )
        per_unit = order.side * order.remaining * Fraction(inst.contract_value)
        entry = Fraction(order.entry_units) * Fraction(inst.price_unit)
        if inst.inverse:
            reciprocal = 1 / entry + left / per_unit
            if reciprocal <= 0:
                return None
            price = 1 / reciprocal
        else:
            price = entry - left / per_unit
        rounding = Rounding.CEIL if order.side > 0 else Rounding.FLOOR
        units = round_fraction(price / Fraction(inst.price_unit), rounding)
        return units if units > 0 else None


def _cut(order: Order, remaining: int) -> None:
    """A reduction stops short: what it will no longer fill leaves its total too, so its report
    (contracts filled, VWAP) counts only what did fill."""
    order.total -= order.remaining - remaining
    order.remaining = remaining


def _split_exact(total: int, weights: np.ndarray) -> list[int]:
    """`total` split in proportion to float `weights`, summing exactly (the last takes the rest)."""
    if len(weights) == 0:
        return []
    weight_sum = float(weights.sum())
    if weight_sum <= 0:
        return [total] + [0] * (len(weights) - 1)
    shares = [int(total * float(w) / weight_sum) for w in weights[:-1]]
    return [*shares, total - sum(shares)]


def _side_name(side: int) -> str:
    return "long" if side > 0 else "short"


def _book_side(side: int) -> str:
    return "sell" if side > 0 else "buy"


def _price_decimal(value: Fraction) -> Decimal:
    return Decimal(value.numerator) / Decimal(value.denominator)
