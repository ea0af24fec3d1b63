"""The scenario loader's size and range checks (docs/limits.md): JSON decoding with bounded numbers
and nesting, prices in an instrument's price units, and money and notional totals per currency.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np

from core.model.errors import InputError
from core.model.instruments import Instrument
from core.model.limits import (
    MAX_DEPTH,
    MAX_MINOR,
    MAX_NUMBER_CHARS,
    MAX_PRICE_UNITS,
    MAX_TOTAL_MINOR,
    clip,
)
from core.model.units import Currency

if TYPE_CHECKING:
    from core.model.scenario_values import Scenario
    from core.risk.positions import PositionBook


class _BadNumber(ValueError):
    pass


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_CHARS:
        raise _BadNumber(f"a JSON integer of more than {MAX_NUMBER_CHARS} digits ({clip(text)})")
    return int(text)


def _json_float(text: str) -> float:
    number = float(text) if len(text) <= MAX_NUMBER_CHARS else math.inf
    if not math.isfinite(number):
        raise _BadNumber(f"a JSON number beyond the float range ({clip(text)})")
    return number


def _json_constant(text: str) -> float:
    raise _BadNumber(f"{text}, which is not JSON")


def decode_json(text: str, where: str, object_pairs_hook: Callable[..., Any]) -> Any:
    """`json.loads` that refuses numbers past MAX_NUMBER_CHARS or the float range, NaN and
    Infinity, and nesting deeper than MAX_DEPTH; other JSON errors propagate as json raises them."""
    try:
        doc = json.loads(
            text,
            object_pairs_hook=object_pairs_hook,
            parse_int=_json_int,
            parse_float=_json_float,
            parse_constant=_json_constant,
        )
    except _BadNumber as error:
        raise InputError(
            "", f"{where}: expected numbers JSON and int64 can hold, found {error}"
        ) from None
    except RecursionError:
        raise InputError("", f"{where}: expected at most {MAX_DEPTH} levels of nesting") from None
    check_depth(doc, where)
    return doc


def check_depth(value: Any, where: str) -> None:
    """At most MAX_DEPTH nested objects and lists (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_DEPTH:
            raise InputError(where, f"expected at most {MAX_DEPTH} levels of nesting, found more")
        stack.extend((child, depth + 1) for child in children)


def check_price(inst: Instrument, price: Decimal, path: str, *, exact: bool) -> None:
    """A price within MAX_PRICE_UNITS of `inst`'s price unit, and a whole count of them when
    `exact` (entry and settlement prices; a path point is interpolated anyway)."""
    units = price / inst.price_unit
    if units > MAX_PRICE_UNITS:
        largest = (MAX_PRICE_UNITS * inst.price_unit).normalize()
        raise InputError(
            path, f"expected a price of at most {largest:f} for {clip(inst.symbol)}, found more"
        )
    if exact and units != units.to_integral_value():
        unit = inst.price_unit.normalize()
        raise InputError(path, f"expected a multiple of {unit:f} (tick_size / 10,000)")


def notional_minor(
    inst: Instrument, currency: Currency, contracts: int, low: Decimal, high: Decimal
) -> Decimal:
    """The largest value of `contracts` over prices from `low` to `high`, in minor units."""
    x = high if not inst.inverse else 1 / low
    return contracts * inst.contract_value * x * currency.scale


class Totals:
    """Per currency, a running sum of magnitudes in minor units, refused past MAX_TOTAL_MINOR."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.sums: dict[str, Decimal] = {}

    def add(self, code: str, minor: Decimal, path: str) -> None:
        if abs(minor) > MAX_MINOR:
            raise InputError(
                path, f"expected {self.what} of at most 2^53 {code} minor units, found more"
            )
        total = self.sums.get(code, Decimal(0)) + abs(minor)
        if total > MAX_TOTAL_MINOR:
            raise InputError(
                path, f"the scenario's {self.what} in {code} add up past 2^60 minor units here"
            )
        self.sums[code] = total


def check_book_notional(scenario: Scenario, book: PositionBook) -> None:
    """The generated crowd held to the named positions' bounds: each position's notional at its
    entry and at the extremes of its price path within MAX_MINOR, their sum per currency within
    MAX_TOTAL_MINOR. Float64 is exact enough for a bound with this much headroom."""
    if not len(book):
        return
    worst, unit, inverse, scale = [], [], [], []
    for inst in scenario.instruments.values():
        points = [p for _, p in scenario.market.indices[inst.index]]
        points += [p for _, p in scenario.market.marks.get(inst.symbol, ())]
        x = 1 / float(min(points)) if inst.inverse else float(max(points))
        worst.append(x)
        unit.append(float(inst.price_unit))
        inverse.append(inst.inverse)
        scale.append(float(inst.contract_value) * scenario.currencies[inst.settle_currency].scale)
    k = book.instrument
    entry = book.entry_units.astype(np.float64) * np.asarray(unit)[k]
    x_entry = np.where(np.asarray(inverse)[k], 1 / entry, entry)
    notional = book.contracts * np.maximum(np.asarray(worst)[k], x_entry) * np.asarray(scale)[k]
    totals = np.bincount(book.position_currency, weights=notional)
    if notional.max() > MAX_MINOR or totals.max() > MAX_TOTAL_MINOR:
        raise InputError(
            "crowd",
            "expected position notionals (at their path's extreme prices) of at most 2^53 minor "
            "units each and 2^60 per currency; the crowd's sizes (x-size-cap, x-size-median) "
            "go beyond",
        )
