"""The crowd generator: determinism, exact netting and margins, heavy tails, capped leverage."""

from __future__ import annotations

import math
import time
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.model.errors import InputError
from core.model.instruments import Instrument, TierTable
from core.model.scenario_values import CrowdSpec
from core.model.units import Currency
from core.scenario.crowd import (
    CrowdColumns,
    CrowdParameters,
    build_book,
    generate_crowd,
    merge_columns,
)

BTC = Currency("BTC", 8)
USDT = Currency("USDT", 6)
CURRENCIES = (BTC, USDT)


def _table(basis: str, *levels: tuple[str | None, str, str]) -> TierTable:
    """Levels as (max, mmr, max_leverage); maintenance amounts derived."""
    return TierTable.build(
        basis,  # type: ignore[arg-type]
        [
            (Decimal(top) if top else None, Decimal(mmr), Decimal(lev), None)
            for top, mmr, lev in levels
        ],
    )


SWAP = Instrument(
    symbol="BTC-USDT-SWAP",
    kind="linear",
    contract_value=Decimal("0.01"),
    settle_currency="USDT",
    tick_size=Decimal("0.1"),
    expiry=None,
    family="BTC-USDT",
    index="BTC-USD",
    tiers=_table(
        "notional",
        ("50000", "0.004", "125"),
        ("250000", "0.005", "100"),
        ("1000000", "0.01", "50"),
        ("10000000", "0.025", "20"),
        (None, "0.05", "10"),
    ),
)
QUARTERLY = Instrument(
    symbol="BTC-USD-180928",
    kind="inverse",
    contract_value=Decimal("100"),
    settle_currency="BTC",
    tick_size=Decimal("0.01"),
    expiry=None,
    family="BTC-USD",
    index="BTC-USD",
    tiers=_table(
        "contracts",
        ("50000", "0.015", "20"),
        ("80000", "0.02", "15"),
        ("120000", "0.025", "12.5"),
        ("200000", "0.03", "10"),
    ),
)
INSTRUMENTS = (SWAP, QUARTERLY)
PRICES = {"BTC-USDT-SWAP": Decimal("8100.3"), "BTC-USD-180928": Decimal("8123.45")}


def _crowd(accounts: int = 20_000, seed: int = 7, **parameters: object) -> CrowdColumns:
    spec = CrowdSpec(accounts=accounts, seed=seed, parameters=parameters)
    return generate_crowd(INSTRUMENTS, CURRENCIES, spec, PRICES)


@pytest.fixture(scope="module")
def crowd() -> CrowdColumns:
    return _crowd()


def _columns(columns: CrowdColumns) -> dict[str, np.ndarray]:
    return {
        name: getattr(columns, name)
        for name in ("balances", "account", "instrument", "side", "contracts", "entry_units",
                     "isolated", "iso_margin", "leverage")
    }  # fmt: skip


def _marks() -> np.ndarray:
    return np.array([float(PRICES[i.symbol]) for i in INSTRUMENTS])


def test_same_seed_gives_identical_arrays_and_another_seed_does_not(crowd: CrowdColumns) -> None:
    again = _crowd()
    assert again.account_ids == crowd.account_ids
    for name, column in _columns(crowd).items():
        assert np.array_equal(column, _columns(again)[name]), name
    other = _crowd(seed=8)
    assert not np.array_equal(other.contracts[:1000], crowd.contracts[:1000])
    assert not np.array_equal(other.entry_units[:1000], crowd.entry_units[:1000])


def test_columns_have_the_book_dtypes_and_shapes(crowd: CrowdColumns) -> None:
    assert crowd.account_ids[:2] == ("crowd-0", "crowd-1")
    assert crowd.balances.dtype == np.int64 and crowd.balances.shape == (20_000, 2)
    for name in ("account", "instrument", "contracts", "entry_units", "iso_margin"):
        assert getattr(crowd, name).dtype == np.int64, name
    assert crowd.side.dtype == np.int8 and set(np.unique(crowd.side)) == {-1, 1}
    assert crowd.isolated.dtype == bool and crowd.leverage.dtype == np.float64
    assert not crowd.contracts.flags.writeable  # a value: the book gets copies


def test_open_interest_nets_to_zero_per_instrument(crowd: CrowdColumns) -> None:
    for k in range(len(INSTRUMENTS)):
        rows = crowd.instrument == k
        signed = crowd.side[rows].astype(np.int64) * crowd.contracts[rows]
        assert rows.sum() > 1000 and signed.sum() == 0
        assert crowd.contracts[rows].min() >= 1


@settings(max_examples=40, deadline=None)
@given(
    accounts=st.integers(1, 40),
    extra=st.integers(0, 60),
    seed=st.integers(0, 2**32),
    cap=st.sampled_from(["200", "5000", "20000000"]),
)
def test_small_crowds_still_net_exactly_with_sane_sizes(
    accounts: int, extra: int, seed: int, cap: str
) -> None:
    columns = _crowd(accounts, seed, **{"x-positions": max(accounts, 2) + extra, "x-size-cap": cap})
    assert columns.n_positions == max(accounts, 2) + extra
    assert np.array_equal(np.unique(columns.account), np.arange(accounts))  # everyone holds one
    for k in range(len(INSTRUMENTS)):
        rows = columns.instrument == k
        assert rows.sum() != 1
        assert (columns.side[rows].astype(np.int64) * columns.contracts[rows]).sum() == 0
    assert columns.contracts.min() >= 1
    assert columns.balances.min() >= 0 and columns.iso_margin.min() >= 0


def test_positions_per_account_average_and_account_order(crowd: CrowdColumns) -> None:
    assert crowd.n_positions == 100_000  # 20,000 accounts * 5 by default
    counts = np.bincount(crowd.account)
    assert counts.min() >= 1 and counts.max() > 10  # one or several each
    assert np.all(np.diff(crowd.account) >= 0)  # an account's positions are adjacent
    assert _crowd(1000, **{"x-positions-per-account": "2.5"}).n_positions == 2500


def _quote_notional(columns: CrowdColumns) -> np.ndarray:
    """Position size in USD(T): linear n*cv*P at entry, inverse n*cv."""
    cv = np.array([float(i.contract_value) for i in INSTRUMENTS])[columns.instrument]
    unit = np.array([float(i.price_unit) for i in INSTRUMENTS])[columns.instrument]
    linear = columns.instrument == 0
    return np.where(
        linear, columns.contracts * cv * columns.entry_units * unit, columns.contracts * cv
    )


def test_sizes_are_heavy_tailed(crowd: CrowdColumns) -> None:
    per_account = np.bincount(crowd.account, weights=_quote_notional(crowd))
    ranked = np.sort(per_account)[::-1]
    top_share = ranked[: len(ranked) // 100].sum() / ranked.sum()
    assert top_share > 0.2  # the top 1% of accounts hold over a fifth of all notional
    contracts = crowd.contracts[crowd.instrument == 1]
    assert contracts.max() > 500 * np.median(contracts)


def test_leverage_is_in_the_mix_and_within_the_tier_of_the_position(crowd: CrowdColumns) -> None:
    leverage = crowd.leverage
    assert set(np.unique(leverage)) <= {2, 3, 5, 10, 12, 15, 20, 25, 50, 75, 100}
    between_10_and_20 = ((leverage >= 10) & (leverage <= 20)).mean()
    assert between_10_and_20 > 0.5
    for row in range(0, crowd.n_positions, 97):
        instrument = INSTRUMENTS[crowd.instrument[row]]
        entry = crowd.entry_units[row] * instrument.price_unit
        size = instrument.tier_size(int(crowd.contracts[row]), entry)
        level = instrument.tiers.levels[instrument.tiers.level_of(size)]
        assert 1 <= leverage[row] <= math.floor(level.max_leverage)


def test_cross_share_follows_the_parameter(crowd: CrowdColumns) -> None:
    assert abs((~crowd.isolated).mean() - 0.6) < 0.01
    assert not _crowd(2000, **{"x-cross-share": "1"}).isolated.any()
    assert _crowd(2000, **{"x-cross-share": "0"}).isolated.all()
    assert abs((~_crowd(**{"x-cross-share": "0.25"}).isolated).mean() - 0.25) < 0.01


def _exact_margin_minor(columns: CrowdColumns, row: int) -> int:
    instrument = INSTRUMENTS[columns.instrument[row]]
    currency = CURRENCIES[[c.code for c in CURRENCIES].index(instrument.settle_currency)]
    entry = Fraction(int(columns.entry_units[row])) * Fraction(instrument.price_unit)
    notional = instrument.notional(int(columns.contracts[row]), entry)
    return math.ceil(notional / Fraction(int(columns.leverage[row])) * currency.scale)


def test_isolated_margin_is_entry_notional_over_leverage_rounded_up(crowd: CrowdColumns) -> None:
    assert crowd.iso_margin.min() >= 0 and crowd.balances.min() >= 0
    assert not crowd.iso_margin[~crowd.isolated].any()
    for row in np.flatnonzero(crowd.isolated)[::53]:
        assert crowd.iso_margin[row] == _exact_margin_minor(crowd, int(row))


def test_entries_are_tick_rounded_and_scattered_around_the_start(crowd: CrowdColumns) -> None:
    for k, instrument in enumerate(INSTRUMENTS):
        units = crowd.entry_units[crowd.instrument == k]
        per_tick = int(instrument.tick_size / instrument.price_unit)
        assert not (units % per_tick).any()
        start = float(PRICES[instrument.symbol])
        deviation = np.log(units * float(instrument.price_unit) / start)
        assert abs(np.median(deviation)) < 0.002 and 0.005 < deviation.std() < 0.03


def test_cross_balances_cover_the_position_margin() -> None:
    columns = _crowd(300, seed=3)
    needed: dict[tuple[int, int], int] = {}
    for row in np.flatnonzero(~columns.isolated):
        currency = 1 if columns.instrument[row] == 0 else 0
        key = (int(columns.account[row]), currency)
        needed[key] = needed.get(key, 0) + _exact_margin_minor(columns, int(row))
    for (account, currency), margin in needed.items():
        assert columns.balances[account, currency] >= margin
    assert (columns.balances > 0).sum() == len(needed)  # no position, no cross cash


def test_the_book_builds_and_revalues_without_nan(crowd: CrowdColumns) -> None:
    book = build_book(INSTRUMENTS, CURRENCIES, CrowdColumns.empty(2), crowd)
    assert len(book) == crowd.n_positions and len(book.account_ids) == crowd.n_accounts
    valuation = book.revalue(_marks())
    for name in ("upnl", "maintenance", "equity", "requirement", "group_equity"):
        assert not np.isnan(getattr(valuation, name)).any(), name
    assert not valuation.liquidatable.any()  # entries keep their headroom: solvent at the start
    crashed = book.revalue(_marks() * 0.85)
    assert crashed.liquidatable.mean() > 0.2
    book.contracts[0] = 0  # the book owns writable copies
    assert crowd.contracts[0] >= 1


def test_merge_appends_the_crowd_after_the_named_accounts() -> None:
    named = _crowd(3, seed=1, **{"x-positions": 4})
    renamed = CrowdColumns(("A", "B", "C"), *list(_columns(named).values()))
    crowd = _crowd(10, seed=2)
    merged = merge_columns(renamed, crowd)
    assert merged.account_ids == ("A", "B", "C", *crowd.account_ids)
    assert np.array_equal(merged.account[:4], named.account)
    assert np.array_equal(merged.account[4:], crowd.account + 3)
    assert np.array_equal(merged.balances[3:], crowd.balances)
    book = build_book(INSTRUMENTS, CURRENCIES, renamed, crowd)
    assert book.account_ids[3] == "crowd-0" and len(book) == 4 + crowd.n_positions
    with pytest.raises(ValueError, match="crowd-0"):
        merge_columns(crowd, crowd)


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"x-cross-share": "1.5"}, "crowd.x-cross-share"),
        ({"x-cross-share": 0.5}, "crowd.x-cross-share"),  # a JSON float is not a decimal string
        ({"x-leverage": {"12.5": 1}}, "crowd.x-leverage.12.5"),
        ({"x-leverage": {"10": "0"}}, "crowd.x-leverage"),
        (
            {"x-instrument-weights": {"ETH-USDT-SWAP": 1}},
            "crowd.x-instrument-weights.ETH-USDT-SWAP",
        ),
        ({"x-positions": 5}, "crowd.x-positions"),  # fewer than the accounts
        ({"x-size-alpha": "0"}, "crowd.x-size-alpha"),
    ],
)
def test_bad_parameters_name_their_field(parameters: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as error:
        _crowd(10, **parameters)
    assert error.value.field == field


def test_defaults_and_free_form_fields() -> None:
    parsed = CrowdParameters.from_fields({"x-generator-parameters": "free text", "x-size-sigma": 2})
    assert parsed.size_sigma == 2.0 and parsed.cross_share == 0.6
    assert CrowdParameters.from_fields({"x-leverage": {"10": "1"}}).leverage_weights == ((10, 1.0),)
    with pytest.raises(InputError) as error:
        generate_crowd(INSTRUMENTS, CURRENCIES, CrowdSpec(5, 1, {}), {"BTC-USDT-SWAP": Decimal(1)})
    assert error.value.field == "crowd.prices.BTC-USD-180928"
    assert _crowd(0).n_positions == 0


def test_instrument_weights_steer_the_mix() -> None:
    columns = _crowd(
        2000, **{"x-instrument-weights": {"BTC-USDT-SWAP": "3", "BTC-USD-180928": "1"}}
    )
    assert abs((columns.instrument == 0).mean() - 0.75) < 0.02


@pytest.mark.slow
def test_a_million_positions_in_a_few_seconds() -> None:
    started = time.perf_counter()
    columns = _crowd(200_000, **{"x-positions": 1_000_000})
    elapsed = time.perf_counter() - started
    assert columns.n_positions == 1_000_000 and columns.n_accounts == 200_000
    assert elapsed < 10, f"{elapsed:.1f} s"
