"""Exchange conventions for liquidation and bankruptcy prices (docs/conventions.md): the
exchanges' own published worked examples, to their rounding, and the scenario field."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from core.model.errors import InputError
from core.model.instruments import Instrument
from core.risk.margin import risk_prices
from core.scenario.parse import parse_scenario
from tests.core.conftest import book, instrument, tiers
from tests.core.test_scenario import example

BTC_MMR = tiers("notional", (None, "0.005", None))


def linear_btc(convention: str = "mark", fee: str = "0") -> Instrument:
    """1 BTC per contract, settled in USDT, a flat 0.5% maintenance rate."""
    base = instrument("BTCUSDT", cv="1", currency="USDT", table=BTC_MMR)
    return replace(base, margin_convention=convention, close_fee_rate=Decimal(fee))  # type: ignore[arg-type]


def inverse_btc(convention: str = "mark", fee: str = "0") -> Instrument:
    """1 USD per contract, settled in BTC (Bybit's BTCUSD), a flat 0.5% maintenance rate."""
    base = instrument("BTCUSD", "inverse", cv="1", currency="BTC", table=BTC_MMR)
    return replace(base, margin_convention=convention, close_fee_rate=Decimal(fee))  # type: ignore[arg-type]


def prices_at(inst: Instrument, row: tuple, mark: float, balances: dict | None = None):
    b = book([inst], [row], balances)
    return risk_prices(b, b.revalue(np.array([mark])))


def cents(value: float) -> Decimal:
    return Decimal(repr(float(value))).quantize(Decimal("0.01"))


# ----- Bybit: maintenance margin valued at the entry (help.bybit.com, USDT contracts) --------


def test_bybit_linear_long_1_btc_at_10000_with_50x_liquidates_at_9850() -> None:
    # "1 BTC at 10,000 USDT with 50x leverage ... 10,000 * (1 - 2% + 0.5%) = 9,850 USDT"
    row = ("A", 0, 1, 1, "10000", True, 200 * 10**6, 50.0)
    assert cents(prices_at(linear_btc("entry_value"), row, 10_000.0).liquidation[0]) == Decimal(
        "9850.00"
    )


def test_the_same_position_under_the_binance_convention_liquidates_at_9849_25() -> None:
    # Maintenance at the price itself: 200 + (P - 10,000) = 0.005 P -> P = 9,800 / 0.995
    row = ("A", 0, 1, 1, "10000", True, 200 * 10**6, 50.0)
    prices = prices_at(linear_btc("mark"), row, 10_000.0)
    assert cents(prices.liquidation[0]) == Decimal("9849.25")
    # Bybit's bankruptcy price for the same position: 10,000 * (1 - 2%) = 9,800, either way.
    assert cents(prices.bankruptcy[0]) == Decimal("9800.00")


def test_bybit_linear_short_1_btc_at_8000_with_40x_liquidates_at_8160() -> None:
    # "short entry of 1 BTC at 8,000 USDT with 40x ... 8,000 * (1 + 2.5% - 0.5%) = 8160 USDT"
    row = ("B", 0, -1, 1, "8000", True, 200 * 10**6, 40.0)
    assert cents(prices_at(linear_btc("entry_value"), row, 8_000.0).liquidation[0]) == Decimal(
        "8160.00"
    )


def test_bybit_linear_long_1_btc_at_20000_with_50x_liquidates_at_19700() -> None:
    # "IM = 400, MM = 100, LP = 20,000 - (400 - 100) = 19,700 USDT"
    row = ("A", 0, 1, 1, "20000", True, 400 * 10**6, 50.0)
    assert cents(prices_at(linear_btc("entry_value"), row, 20_000.0).liquidation[0]) == Decimal(
        "19700.00"
    )


def test_bybit_inverse_long_60000_usd_at_50000_with_10x() -> None:
    # Position value 60,000 / 50,000 = 1.2 BTC, IM 0.12 BTC, MM 0.006 BTC:
    # LP = 60,000 / (1.2 + 0.12 - 0.006) = 45,662.10
    row = ("B", 0, 1, 60_000, "50000", True, 12_000_000, 10.0)
    prices = prices_at(inverse_btc("entry_value"), row, 50_000.0)
    assert cents(prices.liquidation[0]) == Decimal("45662.10")
    # Bankrupt when the 0.12 BTC is gone: 60,000 / (1.2 + 0.12)
    assert cents(prices.bankruptcy[0]) == Decimal("45454.55")


def test_bybit_inverse_short_under_entry_value_is_the_mirror() -> None:
    # LP = 60,000 / (1.2 - 0.12 + 0.006) = 55,248.62
    row = ("B", 0, -1, 60_000, "50000", True, 12_000_000, 10.0)
    assert cents(prices_at(inverse_btc("entry_value"), row, 50_000.0).liquidation[0]) == Decimal(
        "55248.62"
    )


def bybit_uta_inverse(side: int, quantity: int, entry: Fraction, leverage: int, mmr: Fraction):
    """Bybit's current Unified Trading Account inverse isolated formula, no extra margin and no
    MM deduction (the kbybit.com copy of "Liquidation Price Calculation under Isolated Mode",
    updated 2026-05-27): long Q (MMR + 1) / (Q/E + Q/E/leverage), short Q (1 - MMR) / (Q/E -
    Q/E/leverage). Position value is at the mark and the estimated fee to close is in both IM
    and MM, so it cancels: this is the `mark` convention, not `entry_value`."""
    value = quantity / entry
    return quantity * (1 + side * mmr) / (value + side * value / leverage)


@pytest.mark.parametrize("side", [1, -1])
def test_bybits_current_uta_inverse_isolated_formula_is_the_mark_convention(side: int) -> None:
    # A formula check, not a published figure: the copy we read stops before its example.
    row = ("B", 0, side, 60_000, "50000", True, 12_000_000, 10.0)
    prices = prices_at(inverse_btc("mark"), row, 50_000.0)
    expected = bybit_uta_inverse(side, 60_000, Fraction(50_000), 10, Fraction(5, 1000))
    assert cents(prices.liquidation[0]) == Decimal(float(expected)).quantize(Decimal("0.01"))
    assert cents(prices.liquidation[0]) == (
        Decimal("45681.82") if side > 0 else Decimal("55277.78")
    )


# ----- the close fee in the bankruptcy price (Bybit inverse, cross) --------------------------


def test_bybit_inverse_cross_bankruptcy_price_with_the_taker_fee_is_5718_57() -> None:
    # "account balance of 0.5 BTC, long 10000 contracts at 8,000 USD, cross:
    #  Bankruptcy Price = 1.00075 * 10000 / (10000 / 8000 + 0.5) = 5718.57"
    row = ("B", 0, 1, 10_000, "8000", False, 0, 100.0)
    inst = inverse_btc("entry_value", fee="0.00075")
    prices = prices_at(inst, row, 8_000.0, {"B": {"BTC": 50_000_000}})
    assert cents(prices.bankruptcy[0]) == Decimal("5718.57")


# ----- OKX and Gate: maintenance at the price, the taker fee of closing added ----------------


def gate_linear(
    side: int, entry: Fraction, margin: Fraction, size: int, mmr: Fraction, fee: Fraction
) -> Fraction:
    """Gate's published formula: (E -/+ margin / multiplier / size) / (1 -/+ (mmr + taker))."""
    return (entry - side * margin / size) / (1 - side * (mmr + fee))


def gate_inverse(
    side: int, entry: Fraction, margin: Fraction, size: int, mmr: Fraction, fee: Fraction
) -> Fraction:
    """Gate's published inverse formula: size*E*(1 +/- (mmr + taker)) / (size +/- margin*E)."""
    return size * entry * (1 + side * (mmr + fee)) / (size + side * margin * entry)


@pytest.mark.parametrize("side", [1, -1])
def test_gate_linear_liquidation_price_with_the_taker_fee(side: int) -> None:
    # 1 BTC at 10,000 with 50x, 0.5% maintenance, Gate's 0.075% taker fee of closing.
    row = ("A", 0, side, 1, "10000", True, 200 * 10**6, 50.0)
    prices = prices_at(linear_btc("mark", fee="0.00075"), row, 10_000.0)
    expected = gate_linear(
        side, Fraction(10_000), Fraction(200), 1, Fraction(5, 1000), Fraction(75, 100_000)
    )
    assert cents(prices.liquidation[0]) == Decimal(float(expected)).quantize(Decimal("0.01"))
    assert cents(prices.liquidation[0]) == (Decimal("9856.68") if side > 0 else Decimal("10141.69"))


@pytest.mark.parametrize("side", [1, -1])
def test_gate_inverse_liquidation_price_with_the_taker_fee(side: int) -> None:
    row = ("A", 0, side, 60_000, "50000", True, 12_000_000, 10.0)
    prices = prices_at(inverse_btc("mark", fee="0.00075"), row, 50_000.0)
    expected = gate_inverse(
        side, Fraction(50_000), Fraction(12, 100), 60_000, Fraction(5, 1000), Fraction(75, 100_000)
    )
    assert cents(prices.liquidation[0]) == Decimal(float(expected)).quantize(Decimal("0.01"))


def test_okx_margin_ratio_counts_the_close_fee_in_the_requirement() -> None:
    # OKX isolated: (margin + upnl) / (cv * n * mark * (mmr + fee)); at entry 200 / (10,000 * 0.00575)
    b = book(
        [linear_btc("mark", fee="0.00075")], [("A", 0, 1, 1, "10000", True, 200 * 10**6, 50.0)]
    )
    ratio = b.revalue(np.array([10_000.0])).margin_ratio[0]
    assert ratio == pytest.approx(200 / (10_000 * 0.00575), rel=1e-12)


# ----- everywhere the book is valued: the exact oracle and the liquidation watch ---------------


def test_entry_value_maintenance_does_not_move_with_the_mark() -> None:
    b = book([linear_btc("entry_value")], [("A", 0, 1, 1, "10000", True, 200 * 10**6, 50.0)])
    at_entry = b.revalue(np.array([10_000.0])).maintenance[0]
    lower = b.revalue(np.array([9_000.0])).maintenance[0]
    assert at_entry == lower == pytest.approx(50.0)
    exact = linear_btc("entry_value").maintenance_margin(1, Decimal(9_000), Decimal(10_000))
    assert exact == Fraction(50)


def test_exact_requirement_adds_the_fee_at_the_price() -> None:
    inst = linear_btc("mark", fee="0.00075")
    assert inst.requirement(1, Decimal(9_000)) == Fraction(9_000) * Fraction(575, 100_000)


def test_entry_value_maintenance_needs_the_entry() -> None:
    with pytest.raises(ValueError):
        linear_btc("entry_value").maintenance_margin(1, Decimal(9_000))


@pytest.mark.parametrize(("convention", "fee"), [("entry_value", "0"), ("mark", "0.00075")])
def test_the_watch_flags_exactly_where_revaluation_does(convention: str, fee: str) -> None:
    rows = [
        ("A", 0, 1, 1, "10000", True, 200 * 10**6, 50.0),
        ("B", 0, -1, 1, "10000", True, 200 * 10**6, 50.0),
    ]
    b = book([linear_btc(convention, fee)], rows)
    liquidation = risk_prices(b, b.revalue(np.array([10_000.0]))).liquidation
    watch = b.watch()
    for mark in (
        10_000.0,
        liquidation[0] + 0.01,
        liquidation[0] - 0.01,
        10_000.0,
        liquidation[1] + 0.01,
    ):
        flagged, _ = watch.detect(np.array([mark]))
        expected = np.flatnonzero(b.revalue(np.array([mark])).liquidatable)
        assert flagged.tolist() == expected.tolist()


def test_entry_value_tier_is_read_at_the_entry_notional() -> None:
    # Tier 1 holds 0..50,000 USDT at 0.4%, tier 2 above at 0.5% (amount derived: 50).
    table = tiers("notional", ("50000", "0.004", None), (None, "0.005", None))
    inst = replace(linear_btc("entry_value"), tiers=table)
    b = book([inst], [("A", 0, 1, 5, "10000", True, 1_000 * 10**6, 50.0)])
    # 50,000 USDT at entry: tier 1 wherever the mark goes.
    assert b.revalue(np.array([12_000.0])).tier[0] == 0
    assert b.revalue(np.array([12_000.0])).maintenance[0] == pytest.approx(200.0)


# ----- the scenario field -----------------------------------------------------------------------


def test_a_scenario_naming_no_convention_takes_mark_without_a_fee() -> None:
    scenario = parse_scenario(example())
    inst = next(iter(scenario.instruments.values()))
    assert (inst.margin_convention, inst.close_fee_rate) == ("mark", Decimal(0))
    assert inst.convention_text == "mark"


def test_a_scenario_names_a_convention_and_a_close_fee() -> None:
    doc = example()
    doc["instruments"][0]["margin_convention"] = "entry_value"
    doc["instruments"][0]["close_fee_rate"] = "0.00075"
    inst = next(iter(parse_scenario(doc).instruments.values()))
    assert (inst.margin_convention, inst.close_fee_rate) == ("entry_value", Decimal("0.00075"))
    assert inst.convention_text == "entry value, close fee 0.075%"


@pytest.mark.parametrize(
    ("field", "value"),
    [("margin_convention", "bybit"), ("close_fee_rate", "0.5"), ("close_fee_rate", 0.001)],
)
def test_a_bad_convention_field_names_its_path(field: str, value: object) -> None:
    doc = example()
    doc["instruments"][0][field] = value
    with pytest.raises(InputError) as caught:
        parse_scenario(doc)
    assert caught.value.field == f"instruments[0].{field}"


def test_a_run_under_entry_value_with_a_close_fee_and_adl_reaches_its_end() -> None:
    from pathlib import Path

    from core.engine.facade import Engine
    from core.scenario.builtin import builtin_scenarios
    from core.scenario.parse import read_scenario_doc

    doc = read_scenario_doc(Path(builtin_scenarios()["two-traders"]))
    for inst in doc["instruments"]:
        inst["margin_convention"], inst["close_fee_rate"] = "entry_value", "0.0005"
    doc.setdefault("policy", {})["deficit"] = "adl"
    engine = Engine(parse_scenario(doc))
    for _ in engine.run():
        pass
    assert engine.finished
    assert all(inst.margin_convention == "entry_value" for inst in engine.instruments)
