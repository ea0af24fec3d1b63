"""What the operations views ask of the engine, answered on the engine thread (the bridge calls
these with its engine and hands the frozen values they return to the UI thread): the pending
requests, the settlement review of a family, an action dialog's context and previews."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np

from console.dialogs.action_dialog import ActionContext, ForceReducePreview, PositionInfo
from console.widgets.approvals import PendingRequest
from console.widgets.settlement_view import SettlementState
from core.desk.operators import SYSTEM
from core.market.depth import band_limit
from core.model.errors import InputError
from core.model.units import format_minor
from core.risk.pnl import realized_pnl

if TYPE_CHECKING:
    from core.engine.facade import Engine


def action_context(engine: Engine, operator: str, role: str, account: str | None) -> ActionContext:
    """The context of `account` as the engine holds it now (call on the engine's thread). The
    force-reduce preview works on copies taken here, so the dialog may call it from any thread."""
    currencies = tuple((c.code, c.decimals) for c in engine.currencies)
    if account is None:
        return ActionContext(operator, role, currencies=currencies)
    book = engine.book
    index = book.account_index.get(account)
    if index is None:
        raise InputError("account", f"unknown account {account!r}")
    rows = np.flatnonzero((book.account == index) & (book.contracts > 0)).tolist()
    positions = tuple(
        PositionInfo(
            engine.instruments[int(book.instrument[r])].symbol,
            "long" if book.side[r] > 0 else "short",
            int(book.contracts[r]),
        )
        for r in rows
    )
    quotes = {p.symbol: _quote(engine, account, p.symbol) for p in positions}

    def preview(symbol: str, contracts: int) -> ForceReducePreview:
        if symbol not in quotes:
            raise InputError("symbol", f"account {account} holds no {symbol} position")
        return quotes[symbol].preview(contracts)

    return ActionContext(
        operator,
        role,
        account,
        engine.controls.flag_names(account),
        positions,
        currencies,
        preview,
    )


def _quote(engine: Engine, account: str, symbol: str) -> _Quote:
    book = engine.book
    k = next((i for i, inst in enumerate(engine.instruments) if inst.symbol == symbol), -1)
    index = book.account_index.get(account, -1)
    rows = np.flatnonzero((book.account == index) & (book.instrument == k) & (book.contracts > 0))
    if k < 0 or rows.size == 0:
        raise InputError("symbol", f"account {account} holds no {symbol} position")
    row = int(rows[0])
    currency = engine.currency_of(k)
    return _Quote(
        engine.instruments[k],
        currency,
        engine.decimals(k),
        int(book.side[row]),
        int(book.contracts[row]),
        int(book.entry_units[row]),
        float(engine.marks[k]),
        float(engine.fair_mid(k)),
        copy.deepcopy(engine.liquidity[k]),
        float(engine.valuation.equity[row]),
        engine.desk.fund_free(currency),
    )


def force_reduce_preview(
    engine: Engine, account: str, symbol: str, contracts: int
) -> ForceReducePreview:
    """The expected fill of force-reducing `contracts` of the position now (engine's thread)."""
    return _quote(engine, account, symbol).preview(contracts)


def settlement_state(engine: Engine, family: str) -> SettlementState:
    """The view's state now (call on the engine's thread)."""
    inst = next(i for i in engine.instruments if i.family == family)
    return SettlementState(
        engine.settlements.review(family),
        engine.scenario.start.timestamp(),
        tuple(engine.book.account_ids),
        {c.code: c.decimals for c in engine.currencies},
        inst.index.rsplit("-", 1)[
            -1
        ],  # as core.session.snapshot names it: BTC-USD is quoted in USD
    )


def pending_requests(engine: Engine) -> tuple[PendingRequest, ...]:
    """Every pending request of the engine with its preview as of now (call on its thread)."""
    out = [
        _request(engine, r.action)
        for r in engine.controls.requests.values()
        if r.status == "pending"
    ]
    for (family, currency), pending in sorted(engine.settlements.pending.items()):
        p = pending.preview
        money = lambda v, c=currency: _money(engine, c, v)  # noqa: E731
        out.append(
            PendingRequest(
                pending.request,
                "approve_clawback",
                SYSTEM,
                "clawback computed at settlement",
                pending.time.strftime("%Y-%m-%d %H:%M:%S"),
                f"{family} {currency}: {money(p.deficit)} from {p.accounts.size:,} accounts",
                (
                    f"Settlement price {p.price}",
                    f"Deficit shared {money(p.deficit)} (the fund paid {money(p.fund_pays)})",
                    f"Total profit {money(p.total_profit)}, ratio {p.ratio_text}",
                    f"Unrecovered {money(p.unrecovered)}",
                    f"Digest {p.digest}",
                ),
                "approve_clawback",
                (("family", family), ("currency", currency), ("digest", p.digest)),
            )
        )
    return tuple(out)


def _decimals(engine: Engine, currency: str) -> int:
    return engine.scenario.currencies[currency].decimals


def _money(engine: Engine, currency: str, minor: int) -> str:
    """An amount as the console shows money (docs/console.md, "Money")."""
    return f"{format_minor(minor, _decimals(engine, currency), display=True)} {currency}"


def _request(engine: Engine, spec: Any) -> PendingRequest:
    params = spec.params
    kind = spec.action
    lines: list[str] = []
    if kind == "force_reduce":
        summary = f"{params['contracts']:,} {params['symbol']} of account {params['account']}"
        try:
            lines = force_reduce_preview(
                engine, str(params["account"]), str(params["symbol"]), int(params["contracts"])
            ).lines()
        except InputError as error:
            lines = [f"No preview: {error.message}"]
    elif kind == "inject":
        currency = str(params["currency"])
        amount = engine.scenario.currencies[currency].to_minor(params["amount"])
        free = engine.desk.fund_free(currency)
        summary = f"{_money(engine, currency, amount)} into the insurance fund"
        lines = [
            f"Fund free balance {_money(engine, currency, free)} -> "
            f"{_money(engine, currency, free + amount)}"
        ]
    else:
        family, price = str(params["family"]), Decimal(str(params["price"]))
        summary = f"{family} settles at {price}"
        review = engine.settlements.review(family)
        lines = [f"Computed price now {review.computed_price}; proposed {price}"]
        for currency in sorted(review.pending_deficit):
            try:
                p = engine.settlements.preview(family, currency, price)
            except InputError as error:
                lines.append(f"{currency}: no preview ({error.message})")
                continue
            fmt = lambda v, c=currency: _money(engine, c, v)  # noqa: E731
            lines.append(
                f"{currency}: clawback {fmt(p.deficit)} over total profit {fmt(p.total_profit)}, "
                f"ratio {p.ratio_text}, {p.accounts.size:,} accounts"
            )
    return PendingRequest(
        str(spec.id),
        kind,
        spec.operator,
        spec.reason,
        spec.at.strftime("%Y-%m-%d %H:%M:%S"),
        summary,
        tuple(lines),
    )


@dataclass(frozen=True, slots=True)
class _Quote:
    """What a force-reduce preview of one position needs, copied out of the engine."""

    inst: Any
    currency: str
    decimals: int
    side: int
    contracts: int
    entry_units: int
    mark: float
    mid: float
    liquidity: Any  # a private copy of the instrument's book model
    equity: float
    fund_free: int

    def preview(self, contracts: int) -> ForceReducePreview:
        """Sweep a copy of the book as the desk's order would (priced no worse than the mark by
        the band); nothing here is shared with the engine."""
        inst, side, decimals = self.inst, self.side, self.decimals
        wanted = min(int(contracts), self.contracts)
        order_side = "sell" if side > 0 else "buy"
        limit = band_limit(order_side, self.mark, float(inst.liquidation_band))
        fill = copy.deepcopy(self.liquidity).execute(order_side, wanted, limit, self.mid)
        filled = int(fill.contracts_filled)
        fill_units, mark_units = inst.units_near(np.array([fill.average_price, self.mark]))
        realized, at_mark = realized_pnl(
            inst, decimals, side, filled, self.entry_units, np.array([fill_units, mark_units])
        ).tolist()
        scale = 10**decimals
        # Display only: the fill's slippage against the mark moves the equity (floats).
        after = self.equity + (realized - at_mark) / scale
        return ForceReducePreview(
            inst.symbol,
            self.currency,
            decimals,
            wanted,
            filled,
            float(fill.average_price) if filled else self.mark,
            float(fill.worst_price) if filled else self.mark,
            realized,
            realized - at_mark,
            self.equity,
            after,
            self.fund_free,
            round(-after * scale) if after < 0 else 0,
        )
