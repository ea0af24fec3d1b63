"""The crowd generator: many seeded accounts and positions, straight into PositionBook columns.

Vectorized (no loop per position); its `x-` parameters and their defaults are `CrowdParameters`.

One module past 500 lines: each generated column depends on the ones before it, in one seeded
order that the built-in scenarios' state hashes pin down."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

import numpy as np

from core.model.errors import InputError
from core.model.instruments import Instrument
from core.model.limits import MAX_POSITIONS
from core.model.scenario_values import CrowdSpec
from core.model.units import Currency, parse_decimal
from core.risk.positions import PositionBook

_INT64_LIMIT = 2**63 - 1

# Retail piles into 10x and 20x; a thin tail runs 50x-100x (the instrument's tiers cap it).
DEFAULT_LEVERAGE_WEIGHTS: tuple[tuple[int, float], ...] = (
    (2, 3.0), (3, 3.0), (5, 10.0), (10, 30.0), (20, 30.0), (25, 6.0), (50, 9.0), (75, 3.0),
    (100, 6.0),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CrowdParameters:
    """The generator's knobs, each read from the crowd's `x-` field named in its comment.

    Sizes are in the instrument's quote currency (USD for BTC-USD inverse, USDT for BTC-USDT).
    """

    positions: int | None = None  # x-positions: total positions (default accounts * per account)
    positions_per_account: float = 5.0  # x-positions-per-account: mean; every account holds >= 1
    cross_share: float = 0.6  # x-cross-share: share of positions in cross margin (rest isolated)
    # x-leverage: {"10": 30, ...} leverage -> weight; capped by the tier's max_leverage
    leverage_weights: tuple[tuple[int, float], ...] = DEFAULT_LEVERAGE_WEIGHTS
    entry_spread: float = 0.02  # x-entry-spread: std dev of log(entry / start price)
    # x-entry-headroom: an entry against the position may use at most this share of the distance
    # to its maintenance margin, so the crowd starts solvent instead of liquidating on tick one
    entry_headroom: float = 0.9
    size_median: float = 2000.0  # x-size-median: median position notional, quote currency
    size_alpha: float = 1.3  # x-size-alpha: Pareto tail index of account wealth (lower: heavier)
    size_sigma: float = 1.0  # x-size-sigma: lognormal spread of one position around its account
    size_cap: float = 20_000_000.0  # x-size-cap: largest position notional, quote currency
    balance_buffer: float = 1.0  # x-balance-buffer: mean cross cash beyond margin, x the margin
    # x-instrument-weights: {"SYMBOL": weight, ...}; default equal
    instrument_weights: tuple[tuple[str, float], ...] | None = None

    @classmethod
    def from_fields(cls, raw: Mapping[str, object], path: str = "crowd") -> CrowdParameters:
        """Read the `x-` fields of a crowd; other `x-` fields are free-form and ignored."""
        values: dict[str, object] = {}
        for key, (attribute, low, high, positive) in _KNOBS.items():
            if key in raw:
                values[attribute] = _knob(raw[key], f"{path}.{key}", low, high, positive)
        if "x-positions" in raw:
            count = parse_decimal(raw["x-positions"], f"{path}.x-positions", positive=True)
            if count != count.to_integral_value():
                raise InputError(
                    f"{path}.x-positions", f"must be whole, got {raw['x-positions']!r}"
                )
            values["positions"] = int(count)
        leverage = _weights(raw, "x-leverage", path)
        if leverage is not None:
            values["leverage_weights"] = tuple(
                (_whole_leverage(name, f"{path}.x-leverage.{name}"), weight)
                for name, weight in leverage
            )
        values["instrument_weights"] = _weights(raw, "x-instrument-weights", path)
        return cls(**values)  # type: ignore[arg-type]


# x- key: (attribute, lowest, highest, must be > 0)
_KNOBS: dict[str, tuple[str, float, float | None, bool]] = {
    "x-positions-per-account": ("positions_per_account", 1, None, False),
    "x-cross-share": ("cross_share", 0, 1, False),
    "x-entry-spread": ("entry_spread", 0, None, False),
    "x-entry-headroom": ("entry_headroom", 0, 1, False),
    "x-size-median": ("size_median", 0, None, True),
    "x-size-alpha": ("size_alpha", 0, None, True),
    "x-size-sigma": ("size_sigma", 0, None, False),
    "x-size-cap": ("size_cap", 0, None, True),
    "x-balance-buffer": ("balance_buffer", 0, None, False),
}


def _knob(value: object, where: str, low: float, high: float | None, positive: bool) -> float:
    """A distribution shape (never money) from a decimal string or integer, range-checked."""
    number = parse_decimal(value, where, positive=positive)
    if number < Decimal(low):
        raise InputError(where, f"must be at least {low}, got {value!r}")
    if high is not None and number > Decimal(high):
        raise InputError(where, f"must be at most {high}, got {value!r}")
    return float(number)


def _whole_leverage(name: str, where: str) -> int:
    leverage = parse_decimal(name, where, positive=True)
    # whole leverages keep isolated margin = notional / leverage exact in integers
    if leverage != leverage.to_integral_value() or leverage > 1000:
        raise InputError(where, f"leverage must be a whole number from 1 to 1000, got {name!r}")
    return int(leverage)


def _weights(
    raw: Mapping[str, object], key: str, path: str
) -> tuple[tuple[str, float], ...] | None:
    if key not in raw:
        return None
    where, table = f"{path}.{key}", raw[key]
    if not isinstance(table, Mapping) or not table:
        raise InputError(where, 'expected a non-empty object such as {"10": "30"}')
    pairs = tuple(
        (str(name), float(parse_decimal(weight, f"{where}.{name}", non_negative=True)))
        for name, weight in table.items()
    )
    if sum(weight for _, weight in pairs) <= 0:
        raise InputError(where, "weights must not all be zero")
    return pairs


def crowd_positions(spec: CrowdSpec, path: str = "crowd") -> int:
    """How many positions the crowd holds, checked (with its parameters) against MAX_POSITIONS
    before anything is generated."""
    params = CrowdParameters.from_fields(spec.parameters, path)
    if spec.accounts < 0 or spec.seed < 0:
        raise InputError(path, f"accounts {spec.accounts} and seed {spec.seed} must be >= 0")
    if spec.accounts == 0:
        return 0
    wanted = Decimal(spec.accounts) * Decimal(str(params.positions_per_account))
    n_positions = params.positions or int(wanted.to_integral_value(rounding=ROUND_HALF_EVEN))
    if n_positions > MAX_POSITIONS:
        where = f"{path}.x-positions" if params.positions else f"{path}.x-positions-per-account"
        raise InputError(
            where, f"expected at most {MAX_POSITIONS:,} positions, found {n_positions:,}"
        )
    if n_positions < max(spec.accounts, 2):
        raise InputError(
            f"{path}.x-positions", f"one per account and two in all, not {n_positions}"
        )
    return n_positions


@dataclass(frozen=True, slots=True)
class CrowdColumns:
    """Accounts and positions as the columns `PositionBook` takes (money in int64 minor units).

    The arrays are read-only; `book_arguments()` hands out writable copies for a book to own.
    """

    account_ids: tuple[str, ...]
    balances: np.ndarray  # int64 [n_accounts, n_currencies]: cross collateral
    account: np.ndarray  # int64 per position: row of account_ids
    instrument: np.ndarray  # int64: index into the instruments
    side: np.ndarray  # int8: +1 long, -1 short
    contracts: np.ndarray  # int64, >= 1
    entry_units: np.ndarray  # int64: entry price in the instrument's price units
    isolated: np.ndarray  # bool
    iso_margin: np.ndarray  # int64 minor units of the settle currency; 0 for cross
    leverage: np.ndarray  # float64 (whole numbers from the generator)

    def __post_init__(self) -> None:
        rows = len(self.account)
        for column in fields(self)[2:]:
            if len(getattr(self, column.name)) != rows:
                raise ValueError(f"column {column.name} does not have {rows} rows")
        if self.balances.ndim != 2 or self.balances.shape[0] != len(self.account_ids):
            raise ValueError(f"balances {self.balances.shape} do not fit the account ids")
        for column in fields(self)[1:]:
            getattr(self, column.name).flags.writeable = False

    @property
    def n_accounts(self) -> int:
        return len(self.account_ids)

    @property
    def n_positions(self) -> int:
        return len(self.account)

    @classmethod
    def empty(cls, n_currencies: int) -> CrowdColumns:
        def none(dtype: type) -> np.ndarray:
            return np.zeros(0, dtype=dtype)

        return cls(
            (), np.zeros((0, n_currencies), dtype=np.int64), none(np.int64), none(np.int64),
            none(np.int8), none(np.int64), none(np.int64), none(bool), none(np.int64),
            none(np.float64),
        )  # fmt: skip

    def book_arguments(self) -> dict[str, object]:
        """Keyword arguments for `PositionBook(instruments, currencies, **...)`, as writable copies
        (the book mutates its columns when positions are liquidated or reduced)."""
        arguments: dict[str, object] = {"account_ids": list(self.account_ids)}
        for column in fields(self)[1:]:
            arguments[column.name] = np.array(getattr(self, column.name), copy=True)
        return arguments


def merge_columns(first: CrowdColumns, second: CrowdColumns) -> CrowdColumns:
    """`second`'s accounts after `first`'s (its account rows shifted); ids must not clash."""
    clash = set(first.account_ids).intersection(second.account_ids)
    if clash:
        raise ValueError(f"account ids in both sets: {sorted(clash)[:5]}")
    if first.balances.shape[1] != second.balances.shape[1]:
        raise ValueError("the two sets have different currencies")
    joined = {
        column.name: np.concatenate((getattr(first, column.name), getattr(second, column.name)))
        for column in fields(first)[1:]
    }
    joined["account"][first.n_positions :] += first.n_accounts
    return CrowdColumns(account_ids=first.account_ids + second.account_ids, **joined)


def build_book(
    instruments: Sequence[Instrument],
    currencies: Sequence[Currency],
    named: CrowdColumns,
    crowd: CrowdColumns | None = None,
) -> PositionBook:
    """One book of the scenario's named accounts followed by the crowd's."""
    columns = named if crowd is None else merge_columns(named, crowd)
    arguments = columns.book_arguments()
    return PositionBook(instruments, currencies, **arguments)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class _InstrumentFacts:
    """What the generator needs of one instrument, as floats and exact integer factors."""

    inverse: bool
    cv: float
    tick: float
    start_ticks: float  # start price / tick size
    units_per_tick: int  # the book stores prices in units finer than the tick
    currency: int
    tier_by_contracts: bool
    tier_maxes: np.ndarray
    tier_mmrs: np.ndarray
    tier_max_leverage: np.ndarray  # int64, floored, >= 1
    contract_quote_value: float  # one contract in quote currency at the start price
    max_contracts: int
    # margin in minor units = ceil(n*ticks*p / (q*L)) linear, ceil(n*p / (q*ticks*L)) inverse
    margin_factor: Fraction


def _instrument_facts(
    instrument: Instrument, currencies: Sequence[Currency], price: Decimal, params: CrowdParameters
) -> _InstrumentFacts:
    codes = [currency.code for currency in currencies]
    if instrument.settle_currency not in codes:
        raise InputError("currencies", f"no {instrument.settle_currency} for {instrument.symbol}")
    currency = codes.index(instrument.settle_currency)
    cv, tick = Fraction(instrument.contract_value), Fraction(instrument.tick_size)
    scale = currencies[currency].scale
    units_per_tick = tick / Fraction(instrument.price_unit)
    if units_per_tick.denominator != 1:
        raise ValueError(f"{instrument.symbol}: the price unit does not divide the tick")
    quote_value = float(cv) if instrument.inverse else float(cv * Fraction(price))
    tiers = instrument.tiers
    # the last level's max is the exchange's risk limit: no position is bigger
    limit = int(params.size_cap // quote_value)
    if tiers.levels[-1].max is not None:
        top = Fraction(tiers.levels[-1].max)
        if tiers.basis == "notional":  # notional / (cv * x) at the start price
            top = top * Fraction(price) / cv if instrument.inverse else top / (cv * Fraction(price))
        limit = min(limit, int(top))
    leverages = np.floor([float(level.max_leverage) for level in tiers.levels])
    return _InstrumentFacts(
        inverse=instrument.inverse,
        cv=float(cv),
        tick=float(tick),
        start_ticks=float(Fraction(price) / tick),
        units_per_tick=int(units_per_tick),
        currency=currency,
        tier_by_contracts=tiers.basis == "contracts",
        tier_maxes=tiers.maxes,
        tier_mmrs=tiers.mmrs,
        tier_max_leverage=np.maximum(leverages, 1).astype(np.int64),
        contract_quote_value=quote_value,
        max_contracts=max(1, min(limit, 10**12)),
        margin_factor=cv * scale / tick if instrument.inverse else cv * tick * scale,
    )


def generate_crowd(
    instruments: Sequence[Instrument],
    currencies: Sequence[Currency],
    spec: CrowdSpec,
    prices: Mapping[str, Decimal],
    id_prefix: str = "crowd-",
) -> CrowdColumns:
    """`spec.accounts` accounts and their positions: the same arrays for the same seed.

    `prices` is the starting mark per symbol; entries scatter around it, tick-rounded. Open
    interest nets to exactly zero per instrument; isolated margin is entry notional / leverage
    rounded up to the minor unit; cross balances hold the position margin plus a floored buffer.
    """
    params = CrowdParameters.from_fields(spec.parameters)
    n_accounts = spec.accounts
    if n_accounts == 0:
        return CrowdColumns.empty(len(currencies))
    n_positions = crowd_positions(spec)
    if not instruments:
        raise InputError("instruments", "the crowd needs at least one instrument")
    for symbol in (instrument.symbol for instrument in instruments):
        if symbol not in prices or not Decimal(prices[symbol]) > 0:
            raise InputError(f"crowd.prices.{symbol}", "no positive starting price")
    facts = [
        _instrument_facts(i, currencies, Decimal(prices[i.symbol]), params) for i in instruments
    ]

    rng = np.random.Generator(np.random.PCG64(spec.seed))
    account = _accounts_of_positions(rng, n_accounts, n_positions)
    instrument = _instruments_of_positions(rng, instruments, params, n_positions)
    rows_of = [np.flatnonzero(instrument == k) for k in range(len(instruments))]
    side = _balanced_sides(rng, rows_of, n_positions)
    contracts = _contracts(rng, params, facts, account, instrument, n_accounts)
    for k, rows in enumerate(rows_of):
        contracts[rows] = _net_open_interest(side[rows], contracts[rows], facts[k].max_contracts)

    choices = np.array([leverage for leverage, _ in params.leverage_weights], dtype=np.int64)
    weights = np.array([weight for _, weight in params.leverage_weights])
    leverage = rng.choice(choices, size=n_positions, p=weights / weights.sum())
    deviation = rng.standard_normal(n_positions) * params.entry_spread
    isolated = rng.random(n_positions) >= params.cross_share
    entry_units = np.zeros(n_positions, dtype=np.int64)
    margin = np.zeros(n_positions, dtype=np.int64)
    for k, rows in enumerate(rows_of):
        entry_units[rows], leverage[rows], margin[rows] = _entries_and_margins(
            facts[k], params, side[rows], contracts[rows], leverage[rows], deviation[rows]
        )
    currency = np.array([f.currency for f in facts], dtype=np.int64)[instrument]
    group = account * len(currencies) + currency
    balances = _cross_balances(
        rng, params.balance_buffer, group, n_accounts * len(currencies), isolated, margin
    ).reshape(n_accounts, len(currencies))
    return CrowdColumns(
        account_ids=tuple(f"{id_prefix}{i}" for i in range(n_accounts)),
        balances=balances,
        account=account,
        instrument=instrument,
        side=side.astype(np.int8),
        contracts=contracts,
        entry_units=entry_units,
        isolated=isolated,
        iso_margin=np.where(isolated, margin, 0).astype(np.int64),
        leverage=leverage.astype(np.float64),
    )


def _accounts_of_positions(
    rng: np.random.Generator, n_accounts: int, n_positions: int
) -> np.ndarray:
    """Account row of each position, sorted: one each, the rest spread by a lognormal activity."""
    activity = rng.lognormal(0.0, 0.75, n_accounts)
    extra = rng.choice(n_accounts, size=n_positions - n_accounts, p=activity / activity.sum())
    counts = 1 + np.bincount(extra, minlength=n_accounts)
    return np.repeat(np.arange(n_accounts, dtype=np.int64), counts)


def _instruments_of_positions(
    rng: np.random.Generator,
    instruments: Sequence[Instrument],
    params: CrowdParameters,
    n_positions: int,
) -> np.ndarray:
    symbols = [instrument.symbol for instrument in instruments]
    weights = np.ones(len(symbols))
    if params.instrument_weights is not None:
        weights = np.zeros(len(symbols))
        for symbol, weight in params.instrument_weights:
            if symbol not in symbols:
                raise InputError(f"crowd.x-instrument-weights.{symbol}", "no such instrument")
            weights[symbols.index(symbol)] = weight
    instrument = rng.choice(len(symbols), size=n_positions, p=weights / weights.sum())
    instrument = instrument.astype(np.int64)
    # a lone position cannot net to zero: move it to the busiest instrument
    counts = np.bincount(instrument, minlength=len(symbols))
    for k in np.flatnonzero(counts == 1):
        instrument[instrument == k] = int(np.argmax(counts))
    return instrument


def _balanced_sides(rng: np.random.Generator, rows_of: list[np.ndarray], n_rows: int) -> np.ndarray:
    """Random sides, then random flips so each instrument has as many longs as shorts (+-1):
    that keeps exact netting feasible however small the crowd."""
    side = np.where(rng.random(n_rows) < 0.5, 1, -1).astype(np.int64)
    for rows in rows_of:
        excess = (2 * int((side[rows] > 0).sum()) - rows.size) // 2  # > 0: too many longs
        if excess:
            majority = rows[side[rows] == (1 if excess > 0 else -1)]
            side[rng.choice(majority, size=abs(excess), replace=False)] *= -1
    return side


def _contracts(
    rng: np.random.Generator,
    params: CrowdParameters,
    facts: list[_InstrumentFacts],
    account: np.ndarray,
    instrument: np.ndarray,
    n_accounts: int,
) -> np.ndarray:
    """Heavy-tailed sizes: a Pareto wealth per account (median 1) times a lognormal per position,
    at least one contract, at most the instrument's limit."""
    wealth = (rng.pareto(params.size_alpha, n_accounts) + 1.0) / 2.0 ** (1.0 / params.size_alpha)
    spread = rng.lognormal(0.0, params.size_sigma, len(account))
    notional = np.minimum(params.size_median * wealth[account] * spread, params.size_cap)
    quote_value = np.array([f.contract_quote_value for f in facts])[instrument]
    largest = np.array([f.max_contracts for f in facts], dtype=np.int64)[instrument]
    return np.clip(np.floor(notional / quote_value), 1, largest).astype(np.int64)


def _net_open_interest(side: np.ndarray, contracts: np.ndarray, cap: int) -> np.ndarray:
    """Contracts of one instrument rescaled so longs and shorts hold the same total, exactly."""
    longs, shorts = side > 0, side < 0
    long_total, short_total = int(contracts[longs].sum()), int(contracts[shorts].sum())
    if long_total == short_total:
        return contracts
    lowest = max(int(longs.sum()), int(shorts.sum()))
    highest = min(int(longs.sum()), int(shorts.sum())) * cap
    if lowest > highest:
        raise InputError("crowd.x-size-cap", "too small for both sides to hold equal interest")
    # the smaller side grows to the larger (within what both sides can hold)
    target = min(max(long_total, short_total, lowest), highest)
    fitted = contracts.copy()
    fitted[longs] = _fit_total(contracts[longs], target, cap)
    fitted[shorts] = _fit_total(contracts[shorts], target, cap)
    return fitted


def _fit_total(sizes: np.ndarray, total: int, cap: int) -> np.ndarray:
    """Sizes scaled to sum to `total` exactly, each kept in [1, cap] (len <= total <= len*cap)."""
    current = int(sizes.sum())
    if current == total:
        return sizes
    fitted = np.clip(np.floor(sizes * (total / current)), 1, cap).astype(np.int64)
    # the biggest positions absorb the rounding first: relatively, it moves them least
    order = np.argsort(-sizes, kind="stable")
    while (gap := total - int(fitted.sum())) != 0:
        room = (cap - fitted[order]) if gap > 0 else (fitted[order] - 1)
        eligible, room = order[room > 0], room[room > 0]
        step = max(1, abs(gap) // eligible.size)  # never overshoots: step * count <= |gap|
        fitted[eligible[: abs(gap)]] += np.sign(gap) * np.minimum(room, step)[: abs(gap)]
    return fitted


def _entries_and_margins(
    facts: _InstrumentFacts,
    params: CrowdParameters,
    side: np.ndarray,
    contracts: np.ndarray,
    leverage: np.ndarray,
    deviation: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entry price units, leverage capped by the tier, position margin in minor units."""
    x_start = facts.tick * facts.start_ticks
    level = _tier_level(facts, contracts, 1.0 / x_start if facts.inverse else x_start)
    leverage = np.minimum(leverage, facts.tier_max_leverage[level])
    # an adverse move m leaves equity above maintenance while m < (1/L - mmr) / (1 + 1/L), the
    # tightest of the four linear/inverse long/short bounds; keep `entry_headroom` of it
    inverse_leverage = 1.0 / leverage
    room = np.maximum(inverse_leverage - facts.tier_mmrs[level], 0.0) / (1.0 + inverse_leverage)
    worst = params.entry_headroom * room
    limit = np.where(side > 0, -np.log1p(-worst), np.log1p(worst))
    deviation = side * np.minimum(side * deviation, limit)  # side * deviation > 0 loses
    ticks = np.maximum(np.rint(facts.start_ticks * np.exp(deviation)), 1).astype(np.int64)
    if not facts.tier_by_contracts:  # the level is the one the position falls in at entry
        entry = facts.tick * ticks
        level = _tier_level(facts, contracts, 1.0 / entry if facts.inverse else entry)
        leverage = np.minimum(leverage, facts.tier_max_leverage[level])
    margin = _position_margin(facts, contracts, ticks, leverage)
    return ticks * facts.units_per_tick, leverage, margin


def _tier_level(
    facts: _InstrumentFacts, contracts: np.ndarray, x: float | np.ndarray
) -> np.ndarray:
    size = contracts.astype(np.float64)
    if not facts.tier_by_contracts:
        size = size * facts.cv * x
    return np.searchsorted(facts.tier_maxes, size, side="left")


def _position_margin(
    facts: _InstrumentFacts, contracts: np.ndarray, ticks: np.ndarray, leverage: np.ndarray
) -> np.ndarray:
    """Entry notional / leverage in minor units, rounded up, in exact integer arithmetic.

    Linear n*cv*(ticks*tick)*scale/L, inverse n*cv/(ticks*tick)*scale/L: with cv, tick and
    scale folded into p/q, ceil(n*ticks*p / (q*L)) or ceil(n*p / (q*ticks*L)).
    """
    p, q = facts.margin_factor.numerator, facts.margin_factor.denominator
    above = (contracts,) if facts.inverse else (contracts, ticks)
    below = (ticks, leverage) if facts.inverse else (leverage,)
    bound = max(p, q)
    for part in (*above, *below):
        bound *= int(part.max(initial=1))
    # int64 overflows silently: beyond its range, exact Python ints (slow, never at sane sizes)
    dtype = np.int64 if bound <= _INT64_LIMIT else object
    numerator = np.full(contracts.size, p, dtype=dtype)
    denominator = np.full(contracts.size, q, dtype=dtype)
    for part in above:
        numerator = numerator * part.astype(dtype)
    for part in below:
        denominator = denominator * part.astype(dtype)
    return (-((-numerator) // denominator)).astype(np.int64)


def _cross_balances(
    rng: np.random.Generator,
    buffer_mean: float,
    group: np.ndarray,
    n_groups: int,
    isolated: np.ndarray,
    margin: np.ndarray,
) -> np.ndarray:
    """Per (account, currency) group, flat: its cross positions' margin plus a buffer, an
    exponential share of that margin floored to the minor unit."""
    cross = ~isolated
    if float(margin[cross].sum(dtype=np.float64)) * (1 + 50 * buffer_mean) > 2**62:
        raise InputError("crowd.x-size-cap", "cross balances would overflow int64 minor units")
    needed = np.zeros(n_groups, dtype=np.int64)
    np.add.at(needed, group[cross], margin[cross])  # exact int64 sums (bincount sums in float)
    share = rng.exponential(buffer_mean, n_groups) if buffer_mean else np.zeros(n_groups)
    return needed + np.floor(needed * share).astype(np.int64)
