"""The liquidation desk's money, exact minor units moved through the engine's ledger in batches:
fund reservations, takeover fills settled against collateral and the fund, and positions closed
for their traders (realized PnL, and what a trader cannot pay)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from core.engine.ledger import CLEARING, INSURANCE_FUND, ROUNDING, Reason
from core.engine.liquidation_orders import TAKEOVER, OrderColumns, cumulative_within
from core.market.depth import band_limit
from core.model.arrays import distinct
from core.risk.pnl import realized_pnl

if TYPE_CHECKING:
    from core.engine.state import EngineState

# Products of int64 columns stay below this, or the exact Python-int path is taken.
_INT64_SAFE = 2**62


class DeskMoney:
    """The money side of LiquidationDesk, which sets up this state and works the orders."""

    engine: EngineState
    o: OrderColumns
    reserved: dict[str, int]
    _currency: list[str]
    _currency_index: np.ndarray

    # ----- the fund -----------------------------------------------------------------------

    def fund_free(self, currency: str) -> int:
        return self.engine.ledger.balance(INSURANCE_FUND, currency) - self.reserved[currency]

    def _worst_loss(self, idx: np.ndarray) -> np.ndarray:
        """The deficit of each order if its remainder filled at the band's limit now."""
        engine, o = self.engine, self.o
        limit_units = np.zeros(idx.size, dtype=np.int64)
        for k in distinct(o.instrument[idx]).tolist():
            inst = engine.instruments[k]
            sel = o.instrument[idx] == k
            band, mark = float(inst.liquidation_band), engine.marks[k]
            limit = np.where(
                o.side[idx[sel]] > 0,
                band_limit("sell", mark, band),
                band_limit("buy", mark, band),
            )
            # Down: the reservation assumes the fill no better than the band's limit allows.
            limit_units[sel] = inst.units_near(limit, down=True)
        pnl = self._pnl(
            o.instrument[idx], o.side[idx], o.remaining[idx], o.entry_units[idx], limit_units
        )
        return np.maximum(0, -(o.collateral[idx] - o.posted[idx] + pnl))

    def _reserve(self, idx: np.ndarray) -> np.ndarray:
        """Top up the reservation of the takeovers among `idx` to their worst loss, in order, as
        far as the free fund goes; returns those left short."""
        o = self.o
        idx = idx[o.kind[idx] == TAKEOVER]
        needed = np.maximum(self._worst_loss(idx) - o.reserved[idx], 0)
        taken = np.zeros(idx.size, dtype=np.int64)
        currencies = self._currency_index[o.instrument[idx]]
        for c in distinct(currencies).tolist():
            sel = np.flatnonzero(currencies == c)
            currency = self.engine.currency_codes[c]
            if int(needed[sel].max(initial=0)) * sel.size >= _INT64_SAFE:
                raise OverflowError(f"{currency} reservations beyond int64 range")
            got = np.minimum(np.cumsum(needed[sel]), max(0, self.fund_free(currency)))
            taken[sel] = np.diff(got, prepend=0)
            self.reserved[currency] += int(got[-1])
        o.reserved[idx] += taken
        return idx[taken < needed]

    # ----- takeover fills -----------------------------------------------------------------

    def _settle_takeovers(
        self,
        idx: np.ndarray,
        contracts: np.ndarray,
        prices: np.ndarray,
        before: np.ndarray,
        adl: bool,
    ) -> None:
        """Money of takeover fills in sequence: collateral released pro rata plus the fill's PnL;
        a surplus goes to the fund, a deficit comes from the order's reservation, then the free
        fund, then is left uncovered (under ADL: sub-unit rounding, borne by the house)."""
        engine, o = self.engine, self.o
        k = int(o.instrument[idx[0]])
        assert bool((o.instrument[idx] == k).all())
        pnl = self._pnl(o.instrument[idx], o.side[idx], contracts, o.entry_units[idx], prices)
        total = o.total[idx]
        done = total - before + contracts
        now = _scaled(o.collateral[idx], done, total)
        # The collateral released before each fill: the order's posted, or the previous fill's.
        sort = np.argsort(idx, kind="stable")
        first = np.r_[True, idx[sort][1:] != idx[sort][:-1]]
        prev_sorted = np.where(first, o.posted[idx[sort]], np.r_[0, now[sort][:-1]])
        prev = np.empty_like(now)
        prev[sort] = prev_sorted
        net = now - prev + pnl
        surplus = np.maximum(net, 0)
        deficit = np.maximum(-net, 0)
        reserved = o.reserved[idx]
        cum_deficit = cumulative_within(idx, deficit)
        released = np.minimum(cum_deficit, reserved) - np.minimum(cum_deficit - deficit, reserved)
        currency = self._currency[k]
        cover = _draws(self.fund_free(currency), released, surplus, deficit)
        uncovered = deficit - cover
        last = np.r_[first[1:], True]
        o.posted[idx[sort][last]] = now[sort][last]
        np.add.at(o.surplus, idx, surplus)
        np.add.at(o.deficit, idx, deficit)
        np.add.at(o.covered, idx, cover)
        np.subtract.at(o.reserved, idx, released)
        self.reserved[currency] -= int(released.sum())
        engine.fund_in(currency, int(surplus.sum()), Reason.LIQUIDATION_SURPLUS)
        engine.fund_out(currency, int(cover.sum()))
        left = int(uncovered.sum())
        if left and adl:
            # Sub-unit rounding of the bankruptcy fill: the house's rounding account bears it.
            engine.ledger.post(ROUNDING, CLEARING, currency, left, Reason.ROUNDING)
        elif left:
            engine.add_uncovered(k, left)

    # ----- positions closed for their traders ---------------------------------------------

    def close_positions(
        self, rows: np.ndarray, contracts: np.ndarray, prices: np.ndarray
    ) -> np.ndarray:
        """Traders close `contracts` of `rows` (may recur) at `prices` and realize the PnL: gains
        to the account's cash, losses from an isolated position's margin or from cash. What a
        trader cannot pay (a closed isolated position's margin below zero, or cash below zero with
        no cross position left) is a deficit: the fund, then the uncovered deficit. Returns the
        PnL of each fill."""
        engine, book = self.engine, self.engine.book
        pnl = self._pnl(
            book.instrument[rows], book.side[rows], contracts, book.entry_units[rows], prices
        )
        uniq, inverse = np.unique(rows, return_inverse=True)
        row_pnl = np.zeros(uniq.size, dtype=np.int64)
        row_contracts = np.zeros(uniq.size, dtype=np.int64)
        np.add.at(row_pnl, inverse, pnl)
        np.add.at(row_contracts, inverse, contracts)
        accounts, currencies = book.account[uniq], book.position_currency[uniq]
        from_margin = book.isolated[uniq] & (row_pnl < 0)
        # The ledger first: it refuses an amount out of range before the book has changed.
        self._post_traders(uniq, row_pnl)
        book.iso_margin[uniq] += np.where(from_margin, row_pnl, 0)
        np.add.at(book.balances, (accounts, currencies), np.where(from_margin, 0, row_pnl))
        engine.add_period_pnl(uniq, row_pnl)
        book.contracts[uniq] -= row_contracts
        closed = book.isolated[uniq] & (book.contracts[uniq] == 0)
        short = np.zeros(uniq.size, dtype=np.int64)
        short[closed] = np.maximum(0, -book.iso_margin[uniq[closed]])
        book.iso_margin[uniq[closed]] += short[closed]
        np.add.at(
            book.balances, (accounts[closed], currencies[closed]), book.iso_margin[uniq[closed]]
        )
        book.iso_margin[uniq[closed]] = 0
        # Cross accounts left with no cross position and cash below zero.
        groups, first = np.unique(book.group[uniq], return_index=True)
        members = book.rows_of_groups(groups)
        members = members[~book.isolated[members] & (book.contracts[members] > 0)]
        bare = ~np.isin(groups, book.group[members])
        cash = book.balances.reshape(-1)
        owing = bare & (cash[groups] < 0)
        short_rows = np.concatenate((uniq[short > 0], uniq[first[owing]]))
        short_amounts = np.concatenate((short[short > 0], -cash[groups[owing]]))
        cash[groups[owing]] = 0
        if short_rows.size:
            self._post_traders(short_rows, short_amounts)
            engine.add_period_pnl(short_rows, short_amounts)
            for k in distinct(book.instrument[short_rows]).tolist():
                self._absorb(k, int(short_amounts[book.instrument[short_rows] == k].sum()))
        book.refresh(uniq)
        return pnl

    def _absorb(self, k: int, amount: int) -> None:
        """A deficit a trader could not pay: the free fund covers what it can, the rest is
        uncovered (shared out at settlement under clawback)."""
        engine = self.engine
        currency = self._currency[k]
        cover = max(0, min(amount, self.fund_free(currency)))
        engine.fund_out(currency, cover)
        if amount > cover:
            engine.add_uncovered(k, amount - cover)

    def _post_traders(self, rows: np.ndarray, amounts: np.ndarray) -> None:
        """Post signed `amounts` (to the trader when positive) between the traders of `rows`
        and the clearing house, netted per trader, one step per currency."""
        engine, book = self.engine, self.engine.book
        currencies = book.position_currency[rows]
        for c in distinct(currencies).tolist():
            sel = currencies == c
            ids, inverse = np.unique(book.account[rows[sel]], return_inverse=True)
            net = np.zeros(ids.size, dtype=np.int64)
            np.add.at(net, inverse, amounts[sel])
            engine.ledger.post_signed(
                ids, net, CLEARING, engine.currency_codes[c], Reason.REALIZED_PNL
            )

    def _pnl(
        self,
        instruments: np.ndarray,
        side: np.ndarray,
        contracts: np.ndarray,
        entry: np.ndarray,
        prices: np.ndarray,
    ) -> np.ndarray:
        """Exact realized PnL in minor units of each (side, contracts, entry, price), as
        `realized_pnl_minor` gives it, vectorized per instrument."""
        engine = self.engine
        out = np.zeros(contracts.size, dtype=np.int64)
        for k in distinct(instruments).tolist():
            sel = instruments == k
            inst = engine.instruments[k]
            out[sel] = realized_pnl(
                inst,
                engine.decimals(k),
                side[sel],
                contracts[sel],
                entry[sel],
                np.broadcast_to(prices, contracts.shape)[sel],
            )
        return out


# ----- exact integer helpers -----------------------------------------------------------------


def _scaled(collateral: np.ndarray, done: np.ndarray, total: np.ndarray) -> np.ndarray:
    """collateral * done // total exactly (floor), without int64 overflow."""
    if int(total.max()) ** 2 < _INT64_SAFE:
        whole, rest = np.divmod(collateral, total)
        return whole * done + rest * done // total
    exact = collateral.astype(object) * done.astype(object) // total.astype(object)
    return np.asarray(exact).astype(np.int64)


def _draws(free: int, released: np.ndarray, surplus: np.ndarray, deficit: np.ndarray) -> np.ndarray:
    """What the fund covers of each deficit in sequence: the deficit, at most the free fund then
    (plus the reservation released for it). Free after each step: max(0, free + released +
    surplus - deficit), a clamped running sum."""
    if deficit.size == 0 or not deficit.any():
        return np.zeros(deficit.size, dtype=np.int64)
    step = released + surplus - deficit
    bound = abs(free) + int(np.abs(released).sum() + surplus.sum() + deficit.sum())
    if bound >= _INT64_SAFE:
        raise OverflowError("fund movements of one tick exceed int64")
    running = free + np.cumsum(step)
    after = running - np.minimum(np.minimum.accumulate(running), 0)
    before = np.r_[free, after[:-1]]
    return np.minimum(deficit, before + released)
