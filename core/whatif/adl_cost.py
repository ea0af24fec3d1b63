"""What auto-deleveraging cost its counterparties: each ADL fill's PnL at the tick's mark less its
PnL at the bankruptcy price it was closed at, exactly in minor units, where that is a loss (the
deficit ADL covered)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from core.engine.facade import Engine
from core.model.events import AdlFill, Event
from core.risk.pnl import realized_pnl


@dataclass
class AdlTape:
    """Fed each tick's events with the engine after that tick (its marks are the tick's)."""

    cost: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))

    def observe(self, engine: Engine, events: list[Event]) -> None:
        fills = [e for e in events if type(e) is AdlFill]
        if not fills:
            return
        book = engine.book
        symbols = [i.symbol for i in engine.instruments]
        for k, inst in enumerate(engine.instruments):
            mine = [f for f in fills if f.symbol == inst.symbol]
            if not mine:
                continue
            accounts = np.array([book.account_index[f.account] for f in mine], dtype=np.int64)
            # One position per account and instrument: the counterparty's row gives its side.
            of_k = np.flatnonzero(book.instrument == symbols.index(inst.symbol))
            order = np.argsort(book.account[of_k], kind="stable")
            sorted_accounts = book.account[of_k][order]
            rows = of_k[order][np.searchsorted(sorted_accounts, accounts)]
            mark = inst.units_near(float(engine.marks[k]))
            prices = np.array([inst.price_units(f.price) for f in mine], dtype=np.int64)
            # A closed contract's PnL at the mark less its PnL at the ADL price: the counterparty
            # gave up that much against closing at the mark. A remainder closed before its
            # bankruptcy reached the mark favours the counterparty: it bears nothing then (the
            # liquidated collateral covered the close; no deficit arose to share).
            lost = realized_pnl(
                inst,
                engine.decimals(k),
                book.side[rows],
                np.array([f.contracts for f in mine], dtype=np.int64),
                prices,
                mark,
            )
            currency = inst.settle_currency
            for fill, amount in zip(mine, lost.tolist(), strict=True):
                self.cost[(fill.account, currency)] += max(0, int(amount))
