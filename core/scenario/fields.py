"""Typed readers of a scenario's JSON values (strings, ids, numbers, money, times, price paths, tier tables, maps and lists): each checks one value and names its field path in the error."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Collection
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from core.model.errors import InputError
from core.model.instruments import TierTable
from core.model.limits import (
    MAX_CONTRACTS,
    MAX_DECIMALS,
    MAX_LEVERAGE,
    MAX_TICKS,
    check_id,
    check_text,
    check_time,
    clip,
)
from core.model.scenario_values import (
    BookSpec,
    Policy,
    SettlementPolicy,
)
from core.model.units import Currency, check_minor, parse_decimal
from core.scenario.bounds import check_depth

DEFAULT_DEPTH_UNIT = "contracts per 1% from mid"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
T = TypeVar("T")
PricePath = tuple[tuple[datetime, Decimal], ...]
_ABSENT: Any = object()
_HH_MM = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]")
# ISO 8601 extended format in ASCII digits; the offset is checked to be UTC after parsing.
_ISO_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
_TIME_EXAMPLE = 'an ISO 8601 UTC time such as "2018-07-31T12:17:14Z"'


class _Fields:
    """A JSON object at `path`: required, optional and defaulted fields; `x-` fields pass."""

    def __init__(
        self,
        value: Any,
        path: str,
        required: tuple[str, ...],
        optional: tuple[str, ...] = (),
        defaults: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(value, dict):
            raise _expected(path, "an object", value)
        self.values: dict[str, Any] = value
        self.path = path
        self.defaults = defaults or {}
        known = required + optional + tuple(self.defaults)
        for key in value:
            if key not in known and not key.startswith("x-"):
                expected = f"one of {', '.join(known)} or an x- field"
                found = f"unknown field {clip(key)!r}"
                raise _expected(self.at(_key(key)), expected, found, described=True)
        for key in required:
            if key not in value:
                raise InputError(self.at(key), "expected this required field, found none")

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(
        self, key: str, parse: Callable[..., T], *args: Any, default: Any = _ABSENT, **options: Any
    ) -> T:
        """The field (or its default) parsed by `parse(value, path, *args, **options)`."""
        fallback = self.defaults.get(key, default)
        return parse(self.values.get(key, fallback), self.at(key), *args, **options)


def _x_fields(fields: _Fields) -> dict[str, Any]:
    """The object's `x-` fields, copied so that later edits to the document cannot reach them."""
    extras = {key: value for key, value in fields.values.items() if key.startswith("x-")}
    check_depth(extras, fields.path or "scenario")
    return copy.deepcopy(extras)


def _tiers(value: Any, path: str) -> TierTable:
    fields = _Fields(value, path, ("basis", "levels"))
    raw_levels = fields.get("levels", _list, non_empty=True)
    levels: list[tuple[Decimal | None, Decimal, Decimal, Decimal | None]] = []
    for i, raw in enumerate(raw_levels):
        defaults = {"max": None, "maintenance_amount": None}
        level = _Fields(raw, f"{path}.levels[{i}]", ("mmr", "max_leverage"), (), defaults)
        upper = level.get("max", _nullable, _decimal, positive=True)
        if upper is None and i < len(raw_levels) - 1:
            raise InputError(
                level.at("max"), "expected a bound (only the last level may omit max), found none"
            )
        previous = levels[-1][0] if levels else None
        if upper is not None and previous is not None and upper <= previous:
            raise _expected(level.at("max"), f"more than the previous max {previous}", raw["max"])
        mmr = level.get("mmr", _rate, Decimal(1), False)
        max_leverage = level.get("max_leverage", _leverage)
        amount = level.get("maintenance_amount", _nullable, _decimal, non_negative=True)
        levels.append((upper, mmr, max_leverage, amount))
    return TierTable.build(fields.get("basis", _choice, ("contracts", "notional")), levels)


def _book(value: Any, path: str) -> BookSpec:
    defaults = {"depth_unit": DEFAULT_DEPTH_UNIT, "refill_seconds": 60}
    fields = _Fields(value, path, ("depth",), (), defaults)
    return BookSpec(
        depth=fields.get("depth", _decimal, positive=True),
        depth_unit=fields.get("depth_unit", _string),
        refill_seconds=fields.get("refill_seconds", _decimal, positive=True),
    )


def _policy(value: Any, path: str) -> Policy:
    fields = _Fields(value, path, (), (), asdict(Policy()))
    return Policy(
        deficit=fields.get("deficit", _choice, ("clawback", "adl")),
        partial_liquidation=fields.get("partial_liquidation", _boolean),
        fund_reservation=fields.get("fund_reservation", _boolean),
        clawback_approval=fields.get("clawback_approval", _choice, ("auto", "required")),
        settlement=fields.get("settlement", _settlement),
    )


def _settlement(value: Any, path: str) -> SettlementPolicy:
    fields = _Fields(value, path, (), (), asdict(Policy().settlement))
    time = fields.get("time", _string)
    if not _HH_MM.fullmatch(time):
        raise _expected(fields.at("time"), 'a UTC time of day "HH:MM"', time)
    return SettlementPolicy(
        every=fields.get("every", _choice, ("day", "week", "expiry")),
        weekday=fields.get("weekday", _choice, WEEKDAYS),
        time=time,
        price=fields.get("price", _choice, ("index_mean_1h",)),
    )


def _found(value: Any) -> str:
    """A JSON value, briefly, for an error message."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'' if len(value) == 1 else 's'}"
    text = json.dumps(value, default=repr)
    text = text if len(text) <= 60 else text[:56] + "..."
    kind = {int: "the integer ", float: "the JSON number ", str: "the string "}.get(type(value), "")
    return kind + text


def _key(name: str) -> str:
    """A key as a field path may show it: clipped, and quoted when it holds unprintables."""
    return clip(name) if name.isprintable() else clip(repr(name))


def _expected(path: str, what: str, value: Any, *, described: bool = False) -> InputError:
    """`expected <what>, found <value>`; `described` when value is already a description."""
    return InputError(path, f"expected {what}, found {value if described else _found(value)}")


def _duplicate(path: str, what: str, value: str) -> InputError:
    return InputError(path, f"expected a unique {what}, found {clip(value)!r} again")


def _listing(names: Collection[str], limit: int = 6) -> str:
    shown = [clip(name) for name in sorted(names)[:limit]]
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(shown) + more if shown else "none"


def _map(
    value: Any,
    path: str,
    parse: Callable[[Any, str], T],
    known: Collection[str] | None = None,
    what: str = "",
) -> dict[str, T]:
    """A name -> value object, each value parsed; `x-` names skipped, others in `known` if given."""
    if not isinstance(value, dict):
        raise _expected(path, "an object", value)
    result: dict[str, T] = {}
    for name, item in value.items():
        at = f"{path}.{_key(name)}"
        if not name.strip():
            raise InputError(at, "expected a name, found an empty key")
        if known is not None and name not in known and not name.startswith("x-"):
            raise _expected(at, f"a known {what} ({_listing(known)}) as key", name)
        if known is None and not name.startswith("x-"):
            check_id(name, at)
        if not name.startswith("x-"):
            result[name] = parse(item, f"{path}.{name}")
    return result


def _list(value: Any, path: str, *, non_empty: bool = False) -> list[Any]:
    if not isinstance(value, list):
        raise _expected(path, "a list", value)
    if non_empty and not value:
        raise InputError(path, "expected at least one item, found an empty list")
    return value


def _list_of(
    value: Any, path: str, parse: Callable[[Any, str], T], *, non_empty: bool = False
) -> list[T]:
    items = _list(value, path, non_empty=non_empty)
    return [parse(item, f"{path}[{i}]") for i, item in enumerate(items)]


def _nullable(value: Any, path: str, parse: Callable[..., T], **options: Any) -> T | None:
    return None if value is None else parse(value, path, **options)


def _string(value: Any, path: str, *, allow_empty: bool = False) -> str:
    """Free text: a name to show, a description, a reason."""
    if not isinstance(value, str):
        raise _expected(path, "a string", value)
    if not allow_empty and not value.strip():
        raise _expected(path, "a non-empty string", value)
    return check_text(value, path)


def _id(value: Any, path: str) -> str:
    """A name other records refer to (account, symbol, operator, action id)."""
    if not isinstance(value, str):
        raise _expected(path, "a string", value)
    return check_id(value, path)


def _choice(value: Any, path: str, choices: tuple[str, ...]) -> Any:
    """One of `choices` (typed Any so it fits the model's Literal fields)."""
    if not isinstance(value, str) or value not in choices:
        raise _expected(path, "one of " + ", ".join(f'"{choice}"' for choice in choices), value)
    return value


def _known(value: Any, path: str, names: Collection[str], what: str) -> str:
    if not isinstance(value, str):
        raise _expected(path, "a string", value)
    name = value
    if name not in names:
        raise _expected(path, f"a known {what} ({_listing(names)})", name)
    return name


def _boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise _expected(path, "true or false", value)
    return value


def _integer(value: Any, path: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    """A whole count given as a JSON integer."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _expected(path, "a JSON integer", value)
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"from {minimum} to {maximum:,}" if maximum is not None else f">= {minimum}"
        raise InputError(path, f"expected an integer {bounds}, found {clip(str(value))}")
    return value


def _decimals(value: Any, path: str) -> int:
    """A currency's decimals: the engine holds money in int64 minor units, which at more than
    MAX_DECIMALS would cap every amount below a few thousand units."""
    places = _integer(value, path, minimum=0)
    if places > MAX_DECIMALS:
        # The cap is shown for a plausible count only: a huge one is out of Decimal's range.
        cap = ""
        if places <= 64:
            cap = f"; {places} would cap each at {Decimal(2**53).scaleb(-places):.4f} units"
        raise InputError(
            path,
            f"expected at most {MAX_DECIMALS} decimals (amounts are 64-bit integers of the minor "
            f"unit{cap}), found {clip(str(places))}",
        )
    return places


def _leverage(value: Any, path: str) -> Decimal:
    number = _decimal(value, path, positive=True)
    if number > MAX_LEVERAGE:
        raise _expected(path, f"a leverage of at most {MAX_LEVERAGE}", value)
    return number


def _check_ticks(start: datetime, tick_seconds: int, paths: Collection[PricePath]) -> None:
    """At most MAX_TICKS from `start` to the end of the longest path."""
    end = max((points[-1][0] for points in paths), default=start)
    ticks = int((end - start).total_seconds()) // tick_seconds + 1
    if ticks > MAX_TICKS:
        raise InputError(
            "tick_seconds",
            f"expected at most {MAX_TICKS:,} ticks from start to the end of the longest price "
            f"path, found {ticks:,} (a longer tick_seconds shortens the run)",
        )


def _contracts(value: Any, path: str) -> int:
    """A number of contracts > 0: a JSON integer or a whole-number decimal string ("10")."""
    number = value
    if isinstance(value, str):
        try:
            number = parse_decimal(value, path)
        except InputError:
            number = None
    if isinstance(number, bool) or not isinstance(number, int | Decimal) or number != int(number):
        raise _expected(path, 'a whole number of contracts (a JSON integer or "10")', value)
    if number <= 0:
        raise _expected(path, "a number of contracts > 0", value)
    if number > MAX_CONTRACTS:
        raise _expected(path, f"at most {MAX_CONTRACTS:,} (2^40) contracts", value)
    return int(number)


def _decimal(
    value: Any, path: str, *, positive: bool = False, non_negative: bool = False
) -> Decimal:
    """A decimal string (or JSON integer); a JSON float is refused so no binary rounding gets in."""
    if isinstance(value, float):
        raise _expected(path, 'a decimal string such as "0.005" (use a decimal string)', value)
    try:
        number = parse_decimal(value, path)
    except InputError:
        raise _expected(path, 'a finite decimal string such as "0.005"', value) from None
    if (positive and number <= 0) or (non_negative and number < 0):
        raise _expected(path, "a number > 0" if positive else "a number >= 0", value)
    return number


def _rate(value: Any, path: str, upper: Decimal, upper_inclusive: bool) -> Decimal:
    """A rate in [0, upper] or [0, upper)."""
    number = _decimal(value, path, non_negative=True)
    if number > upper or (number == upper and not upper_inclusive):
        interval = f"[0, {upper}]" if upper_inclusive else f"[0, {upper})"
        raise _expected(path, f"a rate in {interval}", value)
    return number


def _money(value: Any, path: str, currency: Currency, **bounds: bool) -> Decimal:
    """An amount exact in the currency's minor unit."""
    amount = _decimal(value, path, **bounds)
    # Read off the digits rather than via Fraction: exports can hold a million balances.
    _, digits, exponent = amount.as_tuple()
    below_minor_unit = -currency.decimals - int(exponent)
    if below_minor_unit > 0 and any(digits[-below_minor_unit:]):
        raise _expected(path, f"at most {currency.decimals} decimals ({currency.code})", value)
    check_minor(int(amount.scaleb(currency.decimals)), path, currency)
    return amount


def _time(value: Any, path: str) -> datetime:
    """An ISO 8601 time in UTC (`Z` or `+00:00`), returned tz-aware in UTC."""
    if not isinstance(value, str) or not _ISO_TIME.fullmatch(value):
        raise _expected(path, _TIME_EXAMPLE, value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _expected(path, _TIME_EXAMPLE, value) from None
    if moment.utcoffset() != timedelta(0):
        raise _expected(path, "a UTC time ending in Z or +00:00", value)
    return check_time(moment.replace(tzinfo=UTC), path)


def _price_path(value: Any, path: str) -> PricePath:
    """[[time, price], ...] with at least one point and strictly increasing times."""
    points: list[tuple[datetime, Decimal]] = []
    for i, raw in enumerate(_list(value, path, non_empty=True)):
        at = f"{path}[{i}]"
        if not isinstance(raw, list) or len(raw) != 2:
            raise _expected(at, "a [time, price] pair", raw)
        moment = _time(raw[0], f"{at}[0]")
        if points and moment <= points[-1][0]:
            raise _expected(f"{at}[0]", f"a time after {points[-1][0].isoformat()}", raw[0])
        points.append((moment, _decimal(raw[1], f"{at}[1]", positive=True)))
    return tuple(points)


class _DuplicateKeyError(ValueError):
    pass


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object hook: a key given twice in one object would silently lose a value."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(f"expected each key once per object, found {key!r} twice")
        result[key] = value
    return result
