"""The liquidation desk's orders: one numpy column per field (read back as Order values), and the
exact vectorized helpers that index, split and accumulate them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import TypeVar

import numpy as np

from core.engine.deficit import allocate_clawback

T = TypeVar("T")
TAKEOVER, REDUCE = 0, 1
KIND_NAMES = ("takeover", "reduce")


@dataclass(slots=True)
class Order:
    """One liquidation or reduction being worked, as read from the desk's columns. `kind` is
    `takeover` (the engine holds the position at its bankruptcy price) or `reduce` (a partial step
    or a force-reduce: the trader keeps the position and realizes each fill)."""

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


_INT_COLUMNS = (
    "row",
    "instrument",
    "side",
    "entry_units",
    "total",
    "remaining",
    "collateral",
    "posted",
    "started",
    "reserved",
    "filled_value",
    "surplus",
    "deficit",
    "covered",
    "fills",
    "kind",
)


class OrderColumns:
    """The orders being worked, one numpy column per field, in the order they were started.
    `started` is a tick number; `bankruptcy` is NaN where there is none."""

    row: np.ndarray
    instrument: np.ndarray
    side: np.ndarray
    entry_units: np.ndarray
    total: np.ndarray
    remaining: np.ndarray
    collateral: np.ndarray
    posted: np.ndarray
    started: np.ndarray
    reserved: np.ndarray
    filled_value: np.ndarray
    surplus: np.ndarray
    deficit: np.ndarray
    covered: np.ndarray
    fills: np.ndarray
    kind: np.ndarray

    def __init__(self) -> None:
        for name in _INT_COLUMNS:
            setattr(self, name, np.zeros(0, dtype=np.int64))
        self.bankruptcy = np.zeros(0, dtype=np.float64)
        self.partial = np.zeros(0, dtype=bool)

    def __len__(self) -> int:
        return int(self.row.size)

    def append(self, values: dict[str, np.ndarray]) -> None:
        size = len(next(iter(values.values())))
        for name in (*_INT_COLUMNS, "bankruptcy", "partial"):
            column = getattr(self, name)
            extra = values.get(name)
            if extra is None:
                extra = np.zeros(size, dtype=column.dtype)
            setattr(self, name, np.concatenate((column, np.asarray(extra, dtype=column.dtype))))

    def keep(self, mask: np.ndarray) -> None:
        for name in (*_INT_COLUMNS, "bankruptcy", "partial"):
            setattr(self, name, getattr(self, name)[mask])


# ----- exact helpers over the columns --------------------------------------------------------


def names_at(names: Sequence[T], index: np.ndarray) -> list[T]:
    """names[i] for each i of `index`."""
    if index.size == 0:
        return []
    picked = itemgetter(*index.tolist())(names)
    return list(picked) if index.size > 1 else [picked]


def float_prices(values: np.ndarray) -> list[float | None]:
    """Float prices for events; None where there is none (NaN)."""
    return [None if p != p else p for p in values.tolist()]


def split_exact(total: int, weights: np.ndarray) -> np.ndarray:
    """`total` split in proportion to int `weights` by largest remainder (core.engine.deficit's exact
    allocator); the parts sum to `total` exactly. No weight at all: the first takes it."""
    amount = abs(total)
    weight_sum = int(weights.sum())
    if weight_sum <= 0:
        parts = np.zeros(weights.size, dtype=np.int64)
        parts[0] = amount
    else:
        whole, rest = divmod(amount, weight_sum)
        parts = weights * whole + allocate_clawback(rest, weights).amounts
    return parts if total >= 0 else -parts


def cumulative_within(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Running sum of `values` (inclusive) among equal `keys`, in sequence order."""
    sort = np.argsort(keys, kind="stable")
    ordered = values[sort]
    sums = np.cumsum(ordered)
    first = np.r_[True, keys[sort][1:] != keys[sort][:-1]]
    base = (sums - ordered)[first][np.cumsum(first) - 1]
    out = np.empty_like(sums)
    out[sort] = sums - base
    return out
