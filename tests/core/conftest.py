"""Shared builders for core tests: small instruments and books written out by hand."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils

from core.desk.operators import authenticate, ensure_demo_operators
from core.model.instruments import Instrument, TierTable
from core.model.units import Currency
from core.risk.positions import PositionBook
from tests.core.nats_broker import Broker

BTC = Currency("BTC", 8)
USDT = Currency("USDT", 6)
LOGIN_AT = "2026-01-01T00:00:00Z"


def log_in(db: sqlite_utils.Database, *names: str) -> None:
    """The demo identities in a store, with `names` logged in: a store's commands are given under
    their operator's login (docs/operators.md)."""
    ensure_demo_operators(db, at=LOGIN_AT)
    for name in names:
        authenticate(db, name, f"{name}-demo", at=LOGIN_AT)


def tiers(basis: str, *levels: tuple[str | None, str, str | None]) -> TierTable:
    """Levels as (max, mmr, maintenance amount or None)."""
    return TierTable.build(
        basis,  # type: ignore[arg-type]
        [
            (
                Decimal(top) if top is not None else None,
                Decimal(mmr),
                Decimal(100),
                Decimal(amount) if amount is not None else None,
            )
            for top, mmr, amount in levels
        ],
    )


def instrument(
    symbol: str = "X",
    kind: str = "linear",
    cv: str = "1",
    currency: str = "BTC",
    table: TierTable | None = None,
    tick: str = "0.01",
) -> Instrument:
    return Instrument(
        symbol=symbol,
        kind=kind,  # type: ignore[arg-type]
        contract_value=Decimal(cv),
        settle_currency=currency,
        tick_size=Decimal(tick),
        expiry=None,
        family=symbol,
        index=symbol,
        tiers=table or tiers("contracts", (None, "0.005", None)),
    )


def book(
    instruments: list[Instrument],
    rows: list[tuple[str, int, int, int, str, bool, int, float]],
    balances: dict[str, dict[str, int]] | None = None,
    currencies: tuple[Currency, ...] = (BTC, USDT),
) -> PositionBook:
    """rows: (account, instrument index, side, contracts, entry price, isolated, margin minor, lev)."""
    balances = balances or {}
    ids = sorted({r[0] for r in rows} | set(balances))
    cash = np.zeros((len(ids), len(currencies)), dtype=np.int64)
    for name, per_currency in balances.items():
        for code, amount in per_currency.items():
            cash[ids.index(name), [c.code for c in currencies].index(code)] = amount
    ticks = [instruments[r[1]].price_units(Decimal(r[4])) for r in rows]
    return PositionBook(
        instruments,
        currencies,
        ids,
        cash,
        account=np.array([ids.index(r[0]) for r in rows]),
        instrument=np.array([r[1] for r in rows]),
        side=np.array([r[2] for r in rows]),
        contracts=np.array([r[3] for r in rows]),
        entry_units=np.array(ticks),
        isolated=np.array([r[5] for r in rows]),
        iso_margin=np.array([r[6] for r in rows]),
        leverage=np.array([r[7] for r in rows], dtype=np.float64),
    )


@pytest.fixture
def nats_broker(tmp_path: Path) -> Iterator[Broker]:
    running = Broker(tmp_path / "js")
    yield running
    if running.process.poll() is None:
        running.kill()


@pytest.fixture
def broker(nats_broker: Broker) -> str:
    return nats_broker.url
