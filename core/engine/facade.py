"""The engine facade: a deterministic state machine that turns a scenario's price path, operator
actions and settlement times into liquidations, fund postings, deficits, settlements and clawbacks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import numpy as np

from core.engine.controls import Controls
from core.engine.ledger import CLEARING, COMPANY, INSURANCE_FUND, OUTSIDE, Ledger, Reason, trader
from core.engine.liquidation import LiquidationDesk
from core.engine.settlement import Settlements
from core.engine.surveillance import Surveillance
from core.engine.trading import Trading
from core.engine.views import position_rows
from core.market.depth import liquidity_for
from core.market.prices import MarkPriceEMA, PinnedMark, PricePath, SettlementWindow
from core.model.arrays import distinct
from core.model.events import DeficitUncovered, Event, FundPosting
from core.model.operations import WITHDRAWALS_FROZEN, Refusal
from core.model.scenario_values import Scenario
from core.model.units import format_minor
from core.risk.pnl import realized_pnl
from core.risk.positions import Valuation
from core.scenario.bounds import check_book_notional
from core.scenario.crowd import CrowdColumns, build_book, generate_crowd

FULL_CHECK_POSITIONS = 200_000


class Engine:
    """One exchange replayed tick by tick. `step()` advances one tick and returns its events."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.currencies = list(scenario.currencies.values())
        self.currency_codes = [c.code for c in self.currencies]
        self.instruments = list(scenario.instruments.values())
        self.tick = 0
        self.now = scenario.start
        self.ticks_total = (
            int((scenario.end - scenario.start).total_seconds()) // scenario.tick_seconds + 1
        )
        self.index_paths = {
            name: PricePath(points, f"market.indices.{name}")
            for name, points in scenario.market.indices.items()
        }
        self.index_now = {name: path.at(self.now) for name, path in self.index_paths.items()}
        self.mark_rules = [
            PinnedMark(PricePath(scenario.market.marks[i.symbol], f"market.marks.{i.symbol}"))
            if i.symbol in scenario.market.marks
            else MarkPriceEMA(float(i.ema_seconds))
            for i in self.instruments
        ]
        self.liquidity = [
            liquidity_for(scenario.market.books.get(i.symbol)) for i in self.instruments
        ]
        self.windows = {
            name: SettlementWindow(
                scenario.start, 4 + max(_decimals(i.tick_size) for i in self.instruments)
            )
            for name in self.index_paths
        }
        self.marks = np.array([self._initial_mark(k) for k in range(len(self.instruments))])
        self.book = build_book(
            self.instruments, self.currencies, self._named_columns(), self._crowd()
        )
        check_book_notional(scenario, self.book)
        self.ledger = Ledger()
        self._fund_opening()
        self.events: list[Event] = []
        self.desk = LiquidationDesk(self)
        self.controls = Controls(self)
        self.trading = Trading(self)
        self.surveillance = Surveillance(self)
        self.settlements = Settlements(self)
        families = sorted({(i.family, i.settle_currency) for i in self.instruments})
        self.period_pnl = {
            key: np.zeros(len(self.book.account_ids), dtype=np.int64) for key in families
        }
        self.uncovered = dict.fromkeys(families, 0)
        self.deficit_totals = {
            c: {"total": 0, "covered_by_fund": 0, "uncovered": 0} for c in self.currency_codes
        }
        self.valuation: Valuation = self.book.revalue(self.marks)
        named_rows = np.flatnonzero(self.book.account < len(scenario.accounts))
        self.positions_at_start = position_rows(self.book, self.valuation, named_rows)
        self._record_index()

    def __getstate__(self) -> dict[str, object]:
        """A snapshot leaves the valuation out: it is recomputed from the book when read."""
        state = dict(self.__dict__)
        state["valuation"] = None
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.valuation = self.book.valuation(self.marks)

    # ----- set-up -------------------------------------------------------------------------

    def _initial_mark(self, k: int) -> float:
        inst = self.instruments[k]
        if inst.symbol in self.scenario.market.marks:
            return self.mark_rules[k].at(self.now)  # type: ignore[union-attr]
        return self.index_now[inst.index]

    def _named_columns(self) -> CrowdColumns:
        scenario = self.scenario
        symbols = list(scenario.instruments)
        rows: list[tuple[int, int, int, int, int, bool, int, float]] = []
        cash = np.zeros((len(scenario.accounts), len(self.currencies)), dtype=np.int64)
        for a, account in enumerate(scenario.accounts):
            for code, amount in account.balances.items():
                cash[a, self.currency_codes.index(code)] = scenario.currencies[code].to_minor(
                    amount
                )
            for p in account.positions:
                inst = scenario.instruments[p.symbol]
                margin = (
                    scenario.currencies[inst.settle_currency].to_minor(p.margin)
                    if p.margin is not None
                    else 0
                )
                rows.append(
                    (
                        a,
                        symbols.index(p.symbol),
                        1 if p.side == "long" else -1,
                        p.contracts,
                        inst.price_units(p.entry_price),
                        p.margin_mode == "isolated",
                        margin,
                        float(p.leverage),
                    )
                )
        columns = list(zip(*rows, strict=True)) if rows else [[]] * 8
        dtypes = (np.int64, np.int64, np.int8, np.int64, np.int64, bool, np.int64, np.float64)
        arrays = [
            np.array(column, dtype=dtype) for column, dtype in zip(columns, dtypes, strict=True)
        ]
        return CrowdColumns(tuple(a.id for a in scenario.accounts), cash, *arrays)

    def _crowd(self) -> CrowdColumns | None:
        spec = self.scenario.crowd
        if spec is None or spec.accounts == 0:
            return None
        prices = {
            i.symbol: Decimal(repr(float(self.marks[k]))) for k, i in enumerate(self.instruments)
        }
        return generate_crowd(self.instruments, self.currencies, spec, prices)

    def _fund_opening(self) -> None:
        """Opening balances arrive from outside: deposits to traders, the fund's starting balance."""
        book = self.book
        for c, code in enumerate(self.currency_codes):
            held = book.balances[:, c].copy()
            np.add.at(
                held,
                book.account[book.position_currency == c],
                book.iso_margin[book.position_currency == c],
            )
            for account in np.flatnonzero(held).tolist():
                self.ledger.post(OUTSIDE, trader(account), code, int(held[account]), Reason.DEPOSIT)
            amount = self.scenario.insurance_fund.get(code)
            if amount:
                self.ledger.post(
                    OUTSIDE,
                    INSURANCE_FUND,
                    code,
                    self.currencies[c].to_minor(amount),
                    Reason.DEPOSIT,
                )
        self.fund_start = {
            code: self.ledger.balance(INSURANCE_FUND, code) for code in self.currency_codes
        }

    # ----- lookups the desk and the controls use ------------------------------------------

    def symbol(self, k: int) -> str:
        return self.instruments[k].symbol

    def currency_of(self, k: int) -> str:
        return self.instruments[k].settle_currency

    def decimals(self, k: int) -> int:
        return self.scenario.currencies[self.currency_of(k)].decimals

    @property
    def x_marks(self) -> np.ndarray:
        return self.book.x_of_marks(self.marks)

    def fair_mid(self, k: int) -> float:
        """The undisturbed mid the book is centred on: the index (or the pinned mark)."""
        rule = self.mark_rules[k]
        return (
            rule.at(self.now)
            if isinstance(rule, PinnedMark)
            else self.index_now[self.instruments[k].index]
        )

    def emit(self, event: Event) -> None:
        self.events.append(event)

    # ----- money --------------------------------------------------------------------------

    def fund_in(self, currency: str, amount: int, reason: str) -> None:
        source = COMPANY if reason == Reason.INJECTION else CLEARING
        if amount > 0:
            self.ledger.post(source, INSURANCE_FUND, currency, amount, reason)
            kind = "injection" if reason == Reason.INJECTION else "surplus_in"
            self.emit(
                FundPosting(
                    self.now, currency, kind, amount, self.ledger.balance(INSURANCE_FUND, currency)
                )
            )

    def fund_out(self, currency: str, amount: int, *, at_settlement: bool = False) -> None:
        """The fund pays `amount` of a deficit: as it arises, or at settlement a deficit that was
        left uncovered then (which moves from uncovered to covered)."""
        totals = self.deficit_totals[currency]
        if at_settlement:
            totals["uncovered"] -= amount
        else:
            totals["total"] += amount
        totals["covered_by_fund"] += amount
        if amount > 0:
            self.ledger.post(
                INSURANCE_FUND,
                CLEARING,
                currency,
                amount,
                Reason.DEFICIT_COVER,
                allow_negative=False,
            )
            self.emit(
                FundPosting(
                    self.now,
                    currency,
                    "deficit_out",
                    amount,
                    self.ledger.balance(INSURANCE_FUND, currency),
                )
            )

    def add_uncovered(self, k: int, amount: int) -> None:
        inst = self.instruments[k]
        self.uncovered[(inst.family, inst.settle_currency)] += amount
        self.deficit_totals[inst.settle_currency]["total"] += amount
        self.deficit_totals[inst.settle_currency]["uncovered"] += amount
        self.emit(DeficitUncovered(self.now, inst.family, inst.settle_currency, amount))

    def add_period_pnl(self, rows: np.ndarray | int, amounts: np.ndarray | int) -> None:
        """Add realized PnL (minor units) of `rows` to their accounts' PnL of the period."""
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        amounts = np.broadcast_to(np.asarray(amounts, dtype=np.int64), rows.shape)
        instruments = self.book.instrument[rows]
        for k in distinct(instruments).tolist():
            inst, sel = self.instruments[k], instruments == k
            pnl = self.period_pnl[(inst.family, inst.settle_currency)]
            np.add.at(pnl, self.book.account[rows[sel]], amounts[sel])

    def _realize(self, row: int, contracts: int, price_units: int) -> int:
        """Post the PnL of `contracts` of a position at `price_units`: gains to the account's cash,
        losses from an isolated position's margin or from cash."""
        book = self.book
        k = int(book.instrument[row])
        account, c = int(book.account[row]), int(book.position_currency[row])
        pnl = int(
            realized_pnl(
                self.instruments[k],
                self.decimals(k),
                book.side[row],
                contracts,
                book.entry_units[row],
                price_units,
            )
        )
        currency = self.currency_codes[c]
        if pnl > 0:
            self.ledger.post(CLEARING, trader(account), currency, pnl, Reason.REALIZED_PNL)
        elif pnl < 0:
            self.ledger.post(trader(account), CLEARING, currency, -pnl, Reason.REALIZED_PNL)
        if book.isolated[row] and pnl < 0:
            book.iso_margin[row] += pnl
        else:
            book.balances[account, c] += pnl
        self.add_period_pnl(row, pnl)
        return pnl

    def transfer(self, account: str, currency: str, amount: int) -> str:
        """A deposit (`amount` > 0) or withdrawal (< 0) of an account's cross cash, in minor units.
        A withdrawal is refused when the account's withdrawals are frozen or when it would leave
        less free collateral than the initial margin of its cross positions needs (what an
        exchange lets a trader withdraw); a refusal changes nothing."""
        row = self.book.account_index.get(account)
        if row is None:
            raise Refusal("unknown_account", f"unknown account {account!r}")
        if currency not in self.currency_codes:
            raise Refusal("unknown_currency", f"{currency!r} is not a currency of the exchange")
        c = self.currency_codes.index(currency)
        if amount < 0:
            if int(self.controls.flags[row]) & WITHDRAWALS_FROZEN:
                raise Refusal("withdrawals_frozen", f"account {account}'s withdrawals are frozen")
            scale = self.currencies[c].scale
            free = self.trading.free_collateral(row, c)
            if -amount / scale > free:
                raise Refusal(
                    "margin",
                    f"withdrawing {format_minor(-amount, self.currencies[c].decimals)} {currency} "
                    f"would leave {account} below its margin (free {free:.8f})",
                )
            self.ledger.post(trader(row), OUTSIDE, currency, -amount, Reason.WITHDRAWAL)
        elif amount > 0:
            self.ledger.post(OUTSIDE, trader(row), currency, amount, Reason.DEPOSIT)
        self.book.balances[row, c] += amount
        return f"{'deposit' if amount > 0 else 'withdrawal'} of {format_minor(abs(amount), self.currencies[c].decimals)} {currency}"

    def close_for_trader(self, row: int, contracts: int, price_units: int) -> int:
        """The trader closes `contracts` of a position at `price_units` and realizes the PnL; a
        loss beyond what the trader holds is a deficit (see `LiquidationDesk.close_positions`)."""
        pnl = self.desk.close_positions(
            np.array([row], dtype=np.int64),
            np.array([contracts], dtype=np.int64),
            np.array([price_units], dtype=np.int64),
        )
        return int(pnl[0])

    def realize(self, row: int, price_units: int, *, close: bool) -> None:
        """Settlement: realize the whole position's PnL at the price; deliver it when `close`,
        otherwise carry it on at the settlement price as its new entry."""
        if close:
            self.close_for_trader(row, int(self.book.contracts[row]), price_units)
            return
        self._realize(row, int(self.book.contracts[row]), price_units)
        self.book.entry_units[row] = price_units
        self.book.refresh(np.array([row]))

    # ----- the clock ----------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.tick >= self.ticks_total - 1

    def step(self) -> list[Event]:
        """Advance one tick: prices, actions due, settlements due, detection, execution."""
        self.events = []
        dt = self.scenario.tick_seconds
        self.tick += 1
        self.now = self.scenario.start + timedelta(seconds=self.tick * dt)
        self.index_now = {name: path.at(self.now) for name, path in self.index_paths.items()}
        self._record_index()
        for k in range(len(self.instruments)):
            self.liquidity[k].refill(dt)
            mid = self.liquidity[k].mid_after_impact(self.fair_mid(k))
            self.marks[k] = self.mark_rules[k].advance(
                self.now, self.index_now[self.instruments[k].index], mid, dt
            )
        self.controls.apply_due(self.now)
        self.trading.apply_due(self.now)
        self.settlements.run_due(self.now)
        self._liquidate()
        self.surveillance.run_due(self.now)
        if len(self.book) <= FULL_CHECK_POSITIONS or self.tick % 60 == 0 or self.finished:
            # The exact sum over a 1M-trader column costs ~3 ms; big books check every minute
            # of ticks and at the end (every posting is double-entry by construction).
            self.ledger.check()
        return self.events

    def run(self) -> Iterator[list[Event]]:
        while not self.finished:
            yield self.step()

    def _record_index(self) -> None:
        seconds = self.tick * self.scenario.tick_seconds
        for name, price in self.index_now.items():
            self.windows[name].add(seconds, price)

    def _liquidate(self) -> None:
        """Detect (only positions whose threshold the marks passed are valued), start, execute;
        the full valuation is computed when someone reads it."""
        flagged, own_equity = self.book.watch().detect(self.marks)
        if flagged.size:
            self.desk.start(flagged, own_equity)
        if self.desk.working:
            self.desk.work()
        self.valuation = self.book.valuation(self.marks)

    # ----- state --------------------------------------------------------------------------

    def state_hash(self) -> str:
        """sha256 over everything that determines what happens next."""
        digest = hashlib.sha256()
        digest.update(f"tick={self.tick};ledger={self.ledger.state_digest()}".encode())
        book = self.book
        for column in (
            book.balances,
            book.contracts,
            book.entry_units,
            book.iso_margin,
            self.marks,
        ):
            digest.update(np.ascontiguousarray(column).tobytes())
        for liquidity in self.liquidity:
            digest.update(repr(liquidity.snapshot()).encode())
        for rule in self.mark_rules:
            digest.update(repr(rule.state() if isinstance(rule, MarkPriceEMA) else 0).encode())
        for order in self.desk.orders:
            digest.update(repr(order).encode())
        digest.update(repr(sorted(self.uncovered.items())).encode())
        digest.update(self.controls.state_repr().encode())
        digest.update(self.trading.state_repr().encode())
        digest.update(self.surveillance.state_repr().encode())
        digest.update(self.settlements.state_repr().encode())
        return digest.hexdigest()


def _decimals(value: Decimal) -> int:
    return max(0, -value.normalize().as_tuple().exponent)  # type: ignore[operator]
