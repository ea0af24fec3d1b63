"""Currencies, minor units and exact money arithmetic.

Ledger amounts are Python ints in a currency's minor unit (BTC 1e-8, USDT 1e-6). Decimal strings are
parsed as `Decimal`; every integer division names its rounding direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, localcontext
from enum import Enum
from fractions import Fraction

from core.model.errors import InputError
from core.model.limits import DECIMAL, MAX_MINOR, MAX_NUMBER_CHARS, clip


class Rounding(Enum):
    """Direction of an integer division's rounding."""

    FLOOR = "floor"  # toward minus infinity
    CEIL = "ceil"  # toward plus infinity
    DOWN = "down"  # toward zero
    HALF_EVEN = "half_even"  # nearest, ties to even


@dataclass(frozen=True, slots=True)
class Currency:
    """A settle currency: its code and the number of decimals of its minor unit."""

    code: str
    decimals: int

    @property
    def scale(self) -> int:
        return 10**self.decimals

    def to_minor(self, amount: Decimal | Fraction | int, rounding: Rounding | None = None) -> int:
        """Amount in major units to minor units; exact unless a rounding is given."""
        return to_minor(amount, self.decimals, rounding)

    def format(self, minor: int) -> str:
        return format_minor(minor, self.decimals)


def parse_decimal(
    value: object, field: str, *, positive: bool = False, non_negative: bool = False
) -> Decimal:
    """An ASCII decimal string ("-12.5", "0E-8") or a JSON integer as a finite `Decimal`, at most
    MAX_NUMBER_CHARS long; never goes through float. No space, `_`, `+` or non-ASCII digits, and
    an exponent of two digits at most."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InputError(
            field, f'expected a decimal string such as "1.5", got {type(value).__name__}'
        )
    if isinstance(value, int):
        # bit_length, not str(): a 5,000-digit int is refused before Python would convert it
        if value.bit_length() > MAX_NUMBER_CHARS * 10 // 3:
            raise InputError(field, f"expected at most {MAX_NUMBER_CHARS} digits, found more")
        number = Decimal(value)
    elif len(value) > MAX_NUMBER_CHARS:
        raise InputError(
            field, f"expected at most {MAX_NUMBER_CHARS} characters, found {clip(value)!r}"
        )
    elif not DECIMAL.fullmatch(value):
        raise InputError(field, f'not a plain decimal number such as "1.5": {value!r}')
    else:
        number = Decimal(value)
    if positive and number <= 0:
        raise InputError(field, f"must be greater than zero, got {value!r}")
    if non_negative and number < 0:
        raise InputError(field, f"must not be negative, got {value!r}")
    return number


def check_minor(minor: int, field: str, currency: Currency) -> int:
    """An amount in minor units within MAX_MINOR, so that sums of it stay exact in int64."""
    if abs(minor) > MAX_MINOR:
        largest = currency.format(MAX_MINOR)
        raise InputError(
            field, f"expected at most {largest} {currency.code} (2^53 minor units), found more"
        )
    return minor


def div_round(numerator: int, denominator: int, rounding: Rounding) -> int:
    """Integer division of Python ints with the stated rounding."""
    if denominator == 0:
        raise ZeroDivisionError("div_round by zero")
    if denominator < 0:
        numerator, denominator = -numerator, -denominator
    quotient, remainder = divmod(numerator, denominator)  # floor
    if remainder == 0 or rounding is Rounding.FLOOR:
        return quotient
    if rounding is Rounding.CEIL:
        return quotient + 1
    if rounding is Rounding.DOWN:
        return quotient + 1 if numerator < 0 else quotient
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        return quotient + 1
    return quotient


def round_fraction(value: Fraction, rounding: Rounding) -> int:
    """A rational number to an int with the stated rounding."""
    return div_round(value.numerator, value.denominator, rounding)


def to_minor(
    amount: Decimal | Fraction | int, decimals: int, rounding: Rounding | None = None
) -> int:
    """Major units to minor units. Without `rounding` the amount must be exact in minor units."""
    scaled = Fraction(amount) * 10**decimals
    if scaled.denominator == 1:
        return scaled.numerator
    if rounding is None:
        raise ValueError(f"{amount} has more than {decimals} decimals")
    return round_fraction(scaled, rounding)


def format_minor(minor: int, decimals: int, *, display: bool = False) -> str:
    """Minor units in major units, exact, in one of two forms. Plain, for files, commands and
    the audit log: trailing zeros trimmed, no separators (`123306502985, 8` -> `1233.06502985`,
    `800000000, 8` -> `8`). With `display`, as a desk reads money (every amount the console shows):
    all the currency's decimals and thousands separators (`1,233.06502985`, `8.00000000`)."""
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(int(minor)), 10**decimals)
    if display:
        return f"{sign}{whole:,}.{frac:0{decimals}d}" if decimals else f"{sign}{whole:,}"
    if decimals == 0:
        return f"{sign}{whole}"
    text = f"{sign}{whole}.{frac:0{decimals}d}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def decimal_str(value: Decimal | Fraction | float, digits: int = 12) -> str:
    """A non-money number (price, rate) as a plain decimal string with `digits` significant digits."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not finite: {value}")
        value = Decimal(repr(value))
    elif isinstance(value, Fraction):
        with localcontext() as ctx:
            ctx.prec = digits + 4
            value = Decimal(value.numerator) / Decimal(value.denominator)
    with localcontext() as ctx:
        ctx.prec = digits
        rounded = +value
    text = format(rounded, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
