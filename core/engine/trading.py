"""Trades as scenario input (`x-trades`): parsing with field-path errors, and `Trading`, the engine
component that applies each trade when its time comes under the account's restrictions (frozen,
reduce-only) and keeps the traded-volume log surveillance reads.

The counterparties of these trades are outside the scenario's book (the rest of the market): a trade
moves only its own account's position and cash, never another position of the book nor its depth.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from core.model.events import TradeApplied, TradeRefused
from core.model.instruments import Instrument
from core.model.operations import Refusal
from core.model.scenario_values import Scenario
from core.model.units import Rounding, div_round
from core.risk.pnl import realized_pnl
from core.risk.positions import PositionBook
from core.scenario.fields import (
    _contracts,
    _decimal,
    _expected,
    _Fields,
    _known,
    _list,
    _money,
    _string,
    _time,
)

if TYPE_CHECKING:
    from core.engine.state import EngineState

TradeSide = Literal["buy", "sell"]
TRADES_FIELD = "x-trades"
# One trade, and one position, stay far inside int64 and exact in float64 valuation.
MAX_TRADE_CONTRACTS = 10**12
MAX_POSITION_CONTRACTS = 2**53


@dataclass(frozen=True, slots=True)
class TradeSpec:
    """One trade of `x-trades`; `margin` (settle currency) is the isolated margin it adds."""

    index: int  # position in x-trades, so refusals and errors can name it
    at: datetime
    account: str
    symbol: str
    side: TradeSide
    contracts: int
    price: Decimal
    margin: Decimal | None = None
    leverage: Decimal | None = None


# ----------------------------------------------------------------------------------- parsing


def parse_trades(scenario: Scenario) -> tuple[TradeSpec, ...]:
    """The scenario's `x-trades`, validated against its instruments and run; InputError names the
    field (`x-trades[3].contracts`). Accounts are checked when a trade applies (a refusal)."""
    raw = scenario.extras.get(TRADES_FIELD, [])
    trades: list[TradeSpec] = []
    for i, item in enumerate(_list(raw, TRADES_FIELD)):
        trade = parse_trade(item, f"{TRADES_FIELD}[{i}]", i, scenario)
        if trades and trade.at < trades[-1].at:
            previous = f"{trades[-1].at.isoformat()} or later (trades are in time order)"
            raise _expected(f"{TRADES_FIELD}[{i}].at", previous, item["at"])
        trades.append(trade)
    return tuple(trades)


def parse_trade(
    value: Any, path: str, index: int, scenario: Scenario, *, after: datetime | None = None
) -> TradeSpec:
    """One trade (an `x-trades` item, or a feed's `trade` with its time as `at`); `after`: the
    clock a live trade must be later than, as it applies at the next tick."""
    required = ("at", "account", "symbol", "side", "contracts", "price")
    fields = _Fields(value, path, required, ("margin", "leverage"))
    moment = fields.get("at", _time)
    if after is not None and moment <= after:
        raise _expected(fields.at("at"), f"a time after {after.isoformat()}", fields.values["at"])
    if not scenario.start <= moment <= scenario.end:
        within = (
            f"a time within the run ({scenario.start.isoformat()} to {scenario.end.isoformat()})"
        )
        raise _expected(fields.at("at"), within, fields.values["at"])
    symbol = fields.get("symbol", _known, scenario.instruments, "instrument symbol")
    instrument = scenario.instruments[symbol]
    contracts = fields.get("contracts", _contracts)
    if contracts > MAX_TRADE_CONTRACTS:
        raise _expected(fields.at("contracts"), f"at most {MAX_TRADE_CONTRACTS:,}", contracts)
    price = fields.get("price", _decimal, positive=True)
    if price % instrument.tick_size:
        what = f"a multiple of the tick size {instrument.tick_size} of {symbol}"
        raise _expected(fields.at("price"), what, fields.values["price"])
    margin = None
    if "margin" in fields:
        currency = scenario.currencies[instrument.settle_currency]
        margin = fields.get("margin", _money, currency, non_negative=True)
    leverage = fields.get("leverage", _decimal, positive=True) if "leverage" in fields else None
    return TradeSpec(
        index=index,
        at=moment,
        account=fields.get("account", _string),
        symbol=symbol,
        side=fields.get("side", _side),
        contracts=contracts,
        price=price,
        margin=margin,
        leverage=leverage,
    )


def _side(value: Any, path: str) -> TradeSide:
    if value not in ("buy", "sell"):
        raise _expected(path, 'one of "buy", "sell"', value)
    return value  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------- exact entry price


def average_entry_units(inverse: bool, held: int, entry: int, added: int, price: int) -> int:
    """The entry price (price units) of `held` contracts at `entry` plus `added` at `price`,
    rounded half-even to the unit: linear the contract-weighted mean, inverse the harmonic mean
    (it keeps the position's entry value n*cv/E, so its PnL is the sum of the parts')."""
    total = held + added
    if inverse:
        return div_round(total * entry * price, held * price + added * entry, Rounding.HALF_EVEN)
    return div_round(held * entry + added * price, total, Rounding.HALF_EVEN)


# ------------------------------------------------------------------------------- the component


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one trade will do, worked out (and checked) before anything changes."""

    row: int | None  # the open position it trades against, if any
    reduce: int  # contracts of that position it closes
    open: int  # contracts it opens or adds in its own direction
    margin: int  # isolated margin added, minor units
    isolated: bool
    leverage: float


class Trading:
    """Applies `x-trades` tick by tick and logs every position change for surveillance."""

    def __init__(self, engine: EngineState) -> None:
        self.engine = engine
        self.trades = parse_trades(engine.scenario)
        self.next = 0
        self.symbols = {inst.symbol: k for k, inst in enumerate(engine.instruments)}
        self.n_instruments = len(engine.instruments)
        # Rows by key (account * n_instruments + instrument): sorted once, appended rows aside.
        keys = engine.book.account * self.n_instruments + engine.book.instrument
        self._order = np.argsort(keys, kind="stable")
        self._sorted_keys = keys[self._order]
        self._extra_rows: dict[int, list[int]] = {}
        # The log surveillance reads: seconds since start, key, signed change of the position.
        self.log_seconds: list[int] = []
        self.log_key: list[int] = []
        self.log_change: list[int] = []
        self.volume: dict[tuple[int, int], int] = {}  # (account, instrument) -> contracts traded
        self._chain = hashlib.sha256(b"trading").hexdigest()

    def state_repr(self) -> str:
        return f"{self.next}|{self._chain}"

    def apply_due(self, now: datetime) -> None:
        while self.next < len(self.trades) and self.trades[self.next].at <= now:
            trade = self.trades[self.next]
            self.next += 1
            self.apply(trade)

    def apply(self, trade: TradeSpec) -> bool:
        """Apply one trade; a refusal is recorded as a `TradeRefused` event and changes nothing."""
        engine = self.engine
        try:
            event = self._apply(trade)
        except Refusal as refusal:
            engine.emit(
                TradeRefused(
                    engine.now,
                    trade.account,
                    trade.symbol,
                    trade.side,
                    trade.contracts,
                    refusal.code,
                    refusal.reason,
                    trade.index,
                )
            )
            return False
        engine.emit(event)
        return True

    # ----- lookups ----------------------------------------------------------------------

    def rows_of(self, account: int, instrument: int) -> list[int]:
        """Every row (open or closed) the account has ever held in the instrument."""
        key = account * self.n_instruments + instrument
        lo, hi = np.searchsorted(self._sorted_keys, [key, key + 1])
        return self._order[lo:hi].tolist() + self._extra_rows.get(key, [])

    def account_rows(self, account: int) -> list[int]:
        rows: list[int] = []
        for k in range(self.n_instruments):
            rows += self.rows_of(account, k)
        return rows

    def traded(self, account: str, symbol: str) -> int:
        """Contracts the account has traded in the instrument so far (both sides)."""
        index = self.engine.book.account_index.get(account)
        if index is None:
            return 0
        return self.volume.get((index, self.symbols[symbol]), 0)

    def free_collateral(self, account: int, currency: int) -> float:
        """Cross cash + cross upnl at the marks - the initial margin of the cross positions
        (notional / leverage), major units: what a new position can draw on."""
        book, engine = self.engine.book, self.engine
        rows = np.array(self.account_rows(account), dtype=np.int64)
        if rows.size:
            rows = rows[
                (book.contracts[rows] > 0)
                & ~book.isolated[rows]
                & (book.position_currency[rows] == currency)
            ]
        x = engine.x_marks[book.instrument[rows]]
        upnl = float(np.sum(book.upnl_a[rows] * x + book.upnl_b[rows]))
        initial = float(np.sum(book.size_per_x[rows] * x / book.leverage[rows]))
        cash = int(book.balances[account, currency]) / float(book.currencies[currency].scale)
        return cash + upnl - initial

    # ----- one trade --------------------------------------------------------------------

    def _apply(self, trade: TradeSpec) -> TradeApplied:
        engine, book = self.engine, self.engine.book
        account = book.account_index.get(trade.account)
        if account is None:
            raise Refusal("unknown_account", f"unknown account {trade.account!r}")
        k = self.symbols[trade.symbol]
        inst = engine.instruments[k]
        price_units = inst.price_units(trade.price)
        plan = self._plan(trade, account, k, inst, price_units)
        realized = 0
        row = plan.row
        before = int(book.side[row]) * int(book.contracts[row]) if row is not None else 0
        if plan.reduce:
            assert row is not None
            realized = engine.close_for_trader(row, plan.reduce, price_units)
        if plan.open:
            row = self._open(trade, account, k, inst, price_units, plan, row)
        assert row is not None
        # Cash moved (margin posted, PnL realized): every row of the account in that currency
        # draws on it, so all of them are refreshed for the liquidation watch.
        currency = int(book.inst_currency[k])
        rows = [r for r in self.account_rows(account) if book.position_currency[r] == currency]
        book.refresh(np.array(rows, dtype=np.int64))
        after = int(book.side[row]) * int(book.contracts[row])
        self._log(account, k, after - before, trade.contracts)
        entry = (
            Decimal(int(book.entry_units[row])) * inst.price_unit
            if book.contracts[row] > 0
            else None
        )
        return TradeApplied(
            engine.now,
            trade.account,
            trade.symbol,
            trade.side,
            trade.contracts,
            trade.price,
            after,
            entry.normalize() if entry is not None else None,
            realized,
            inst.settle_currency,
            trade.index,
        )

    def _plan(
        self, trade: TradeSpec, account: int, k: int, inst: Instrument, price_units: int
    ) -> _Plan:
        """Split the trade into the part that reduces the open position and the part that opens
        or adds, and refuse it whole if either part is not allowed."""
        book, controls = self.engine.book, self.engine.controls
        direction = 1 if trade.side == "buy" else -1
        row = self._open_row(account, k)
        held = int(book.contracts[row]) if row is not None else 0
        adding = row is not None and int(book.side[row]) == direction
        reduce = 0 if adding else min(held, trade.contracts)
        opening = trade.contracts - reduce
        controls.check_trade(account, adds_exposure=opening > 0)
        if row is not None and not opening:
            if trade.margin:
                raise Refusal("margin_on_reduce", "a trade that only reduces takes no margin")
            return _Plan(row, reduce, 0, 0, bool(book.isolated[row]), float(book.leverage[row]))
        isolated = bool(book.isolated[row]) if adding else trade.margin is not None
        if adding and not isolated and trade.margin is not None:
            raise Refusal(
                "margin_mode", f"the {trade.symbol} position is cross: it takes no margin"
            )
        currency = int(book.inst_currency[k])
        scale = book.currencies[currency].scale
        margin = 0 if trade.margin is None else book.currencies[currency].to_minor(trade.margin)
        contracts_after = held + opening if adding else opening
        if contracts_after > MAX_POSITION_CONTRACTS:
            raise Refusal("position_limit", f"a position may hold at most {MAX_POSITION_CONTRACTS}")
        entry_after = price_units
        if adding:
            entry_after = average_entry_units(
                inst.inverse, held, int(book.entry_units[row]), opening, price_units
            )
        entry_price = Decimal(entry_after) * inst.price_unit
        tiers = inst.tiers
        size = inst.tier_size(contracts_after, entry_price)
        top = tiers.levels[-1].max
        if top is not None and size > top:
            raise Refusal(
                "risk_limit", f"{contracts_after} contracts of {trade.symbol} exceed its risk limit"
            )
        max_leverage = float(tiers.levels[tiers.level_of(size)].max_leverage)
        notional = float(inst.notional(contracts_after, entry_price))
        if trade.leverage is not None:
            leverage = float(trade.leverage)
        elif adding:
            leverage = float(book.leverage[row])
        else:
            leverage = notional * scale / margin if isolated and margin else max_leverage
        if leverage > max_leverage:
            raise Refusal(
                "leverage", f"leverage {leverage:g} is above {max_leverage:g} for this size"
            )
        cash, free = self._after_close(account, currency, row if reduce else None, price_units)
        if isolated:
            if margin > cash:
                raise Refusal("insufficient_cash", _short(trade, margin / scale, "cash"))
            if margin / scale > free:
                raise Refusal("insufficient_cash", _short(trade, margin / scale, "free collateral"))
            margin_after = margin + (int(book.iso_margin[row]) if adding else 0)
            if margin_after / scale < notional / max_leverage:
                raise Refusal(
                    "initial_margin",
                    f"margin {margin_after / scale:g} is below the initial margin "
                    f"{notional / max_leverage:g} of {contracts_after} {trade.symbol}",
                )
        else:
            needed = float(inst.notional(opening, trade.price)) / leverage
            if needed > free:
                raise Refusal("insufficient_cash", _short(trade, needed, "free collateral"))
        return _Plan(row, reduce, opening, margin, isolated, leverage)

    def _after_close(
        self, account: int, currency: int, closing: int | None, price_units: int
    ) -> tuple[int, float]:
        """(cash in minor units, free collateral in major units) once the whole `closing` row
        (a flip closes it first) is closed at `price_units`."""
        engine, book = self.engine, self.engine.book
        cash = int(book.balances[account, currency])
        free = self.free_collateral(account, currency)
        if closing is None:
            return cash, free
        k = int(book.instrument[closing])
        pnl = int(
            realized_pnl(
                book.instruments[k],
                engine.decimals(k),
                book.side[closing],
                book.contracts[closing],
                book.entry_units[closing],
                price_units,
            )
        )
        scale = float(book.currencies[currency].scale)
        if book.isolated[closing]:
            released = pnl + int(book.iso_margin[closing])
            return cash + released, free + released / scale
        x = float(engine.x_marks[k])
        at_mark = book.upnl_a[closing] * x + book.upnl_b[closing]
        initial = book.size_per_x[closing] * x / book.leverage[closing]
        return cash + pnl, free - float(at_mark - initial) + pnl / scale

    def _open_row(self, account: int, k: int) -> int | None:
        book = self.engine.book
        for row in self.rows_of(account, k):
            if book.contracts[row] > 0:
                return row
        return None

    def _open(
        self,
        trade: TradeSpec,
        account: int,
        k: int,
        inst: Instrument,
        price_units: int,
        plan: _Plan,
        row: int | None,
    ) -> int:
        """Add the opening part: to the open row in the trade's direction, or as a new position on
        a free row of the account (a closed one no liquidation order still works) or a new row."""
        book = self.engine.book
        direction = 1 if trade.side == "buy" else -1
        currency = int(book.inst_currency[k])
        if row is not None and book.contracts[row] > 0:
            book.entry_units[row] = average_entry_units(
                inst.inverse,
                int(book.contracts[row]),
                int(book.entry_units[row]),
                plan.open,
                price_units,
            )
            book.contracts[row] += plan.open
        else:
            busy = {order.row for order in self.engine.desk.orders}
            free = [r for r in self.rows_of(account, k) if book.contracts[r] == 0 and r not in busy]
            row = free[0] if free else self._append_row(account, k)
            book.side[row] = direction
            book.contracts[row] = plan.open
            book.entry_units[row] = price_units
            book.isolated[row] = plan.isolated
            book.iso_margin[row] = 0
        # Cash moves to the position's isolated margin inside the trader's own ledger account.
        book.iso_margin[row] += plan.margin
        book.balances[account, currency] -= plan.margin
        book.leverage[row] = plan.leverage
        book.refresh(np.array([row]))
        return row

    def _append_row(self, account: int, k: int) -> int:
        """A new, empty row for the account and instrument at the end of the book."""
        row = len(self.engine.book)
        append_empty_row(self.engine.book, account, k)
        key = account * self.n_instruments + k
        self._extra_rows.setdefault(key, []).append(row)
        return row

    def _log(self, account: int, k: int, change: int, contracts: int) -> None:
        seconds = int((self.engine.now - self.engine.scenario.start).total_seconds())
        key = account * self.n_instruments + k
        self.log_seconds.append(seconds)
        self.log_key.append(key)
        self.log_change.append(change)
        self.volume[(account, k)] = self.volume.get((account, k), 0) + contracts
        self._chain = hashlib.sha256(f"{self._chain}|{seconds}|{key}|{change}".encode()).hexdigest()

    def changes_since(self, seconds: int) -> tuple[np.ndarray, np.ndarray]:
        """(key, signed position change) of every trade at or after `seconds` since the start."""
        first = int(np.searchsorted(np.asarray(self.log_seconds, dtype=np.int64), seconds))
        keys = np.asarray(self.log_key[first:], dtype=np.int64)
        changes = np.asarray(self.log_change[first:], dtype=np.float64)
        return keys, changes


def append_empty_row(book: PositionBook, account: int, k: int) -> None:
    """Grow the book by one closed row of `account` in instrument `k` (through its public
    columns), then recompute its caches; every other row keeps its index."""
    book.account = np.append(book.account, np.int64(account))
    book.instrument = np.append(book.instrument, np.int64(k))
    book.side = np.append(book.side, np.int8(1))
    book.contracts = np.append(book.contracts, np.int64(0))
    book.entry_units = np.append(book.entry_units, np.int64(1))
    book.isolated = np.append(book.isolated, False)
    book.iso_margin = np.append(book.iso_margin, np.int64(0))
    book.leverage = np.append(book.leverage, 1.0)
    book.position_currency = book.inst_currency[book.instrument]
    book.group = book.account * book.n_currencies + book.position_currency
    if hasattr(book, "group_order"):  # rows by cross group: the new row ends its group's slice
        group = int(book.group[-1])
        book.group_order = np.insert(book.group_order, book.group_start[group + 1], len(book) - 1)
        book.group_start[group + 1 :] += 1
    book.refresh()


def _short(trade: TradeSpec, needed: float, what: str) -> str:
    return (
        f"account {trade.account} has too little {what} for {trade.contracts} {trade.symbol}"
        f" (needs {needed:g})"
    )
