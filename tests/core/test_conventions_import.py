"""The ccxt import names each instrument's margin convention (docs/conventions.md, "What a ccxt
exchange id implies"): from `--exchange`, the close fee from the market's taker rate (`--fees`, ccxt
markets or trading fees), each overridable per market; and a feed carries the fields in its header."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from console.cli.main import main
from core.model.errors import InputError
from core.scenario.build import BuildRequest, MarketSource, build_scenario
from tests.core.test_exchange_data import CANDLES, SYMBOL, TIERS, _xrp


def build(tmp_path: Path, *options: str) -> dict[str, Any]:
    """The instrument `scenario build` writes from the real XRP data with these options."""
    out = tmp_path / "out.json"
    argv = ["scenario", "build", "--out", str(out), "--name", "x", "--tiers", str(TIERS),
            "--candles", f"{SYMBOL}={CANDLES}", *options]  # fmt: skip
    assert main(argv) == 0
    return json.loads(out.read_text())["instruments"][0]


def fees_file(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "fees.json"
    path.write_text(json.dumps(doc))
    return path


def failure(tmp_path: Path, capsys: pytest.CaptureFixture[str], *options: str) -> str:
    out = tmp_path / "bad.json"
    argv = ["scenario", "build", "--out", str(out), "--name", "x", "--tiers", str(TIERS),
            "--candles", f"{SYMBOL}={CANDLES}", *options]  # fmt: skip
    capsys.readouterr()
    assert main(argv) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert err.startswith("risk-console: error: ")
    return err.removeprefix("risk-console: error: ")


# ccxt's load_markets shape (trimmed): the market's published taker rate.
MARKETS = {SYMBOL: {"id": "XRP_USDT", "symbol": SYMBOL, "taker": 0.0005, "maker": 0.0002,
                    "percentage": True, "tierBased": True}}  # fmt: skip


def test_without_an_exchange_the_instrument_names_no_convention(tmp_path: Path) -> None:
    inst = build(tmp_path)
    assert "margin_convention" not in inst and "close_fee_rate" not in inst


@pytest.mark.parametrize("exchange", ["binance", "binanceusdm", "binancecoinm", "kraken"])
def test_binance_and_unread_exchanges_build_the_same_document(
    tmp_path: Path, exchange: str
) -> None:
    assert build(tmp_path, "--exchange", exchange) == build(tmp_path)


def test_the_built_in_names_binance_usdm_and_is_unchanged() -> None:
    # make_binance_xrp_2021_11 passes --exchange binanceusdm; the document (and its recorded
    # state hash) is what it was: `mark` without a fee is the default and is not written.
    inst = _xrp()["instruments"][0]
    assert "margin_convention" not in inst and "close_fee_rate" not in inst


def test_bybit_values_maintenance_at_the_entry_without_a_fee(tmp_path: Path) -> None:
    inst = build(tmp_path, "--exchange", "bybit", "--fees", str(fees_file(tmp_path, MARKETS)))
    assert inst["margin_convention"] == "entry_value"
    assert "close_fee_rate" not in inst  # Bybit's isolated formulas leave the fee out


@pytest.mark.parametrize("exchange", ["gate", "gateio", "okx"])
def test_gate_and_okx_take_the_markets_taker_rate_as_the_close_fee(
    tmp_path: Path, exchange: str
) -> None:
    inst = build(tmp_path, "--exchange", exchange, "--fees", str(fees_file(tmp_path, MARKETS)))
    assert inst["close_fee_rate"] == "0.0005"
    assert "margin_convention" not in inst  # mark, the default


def test_the_fee_comes_from_trading_fees_or_a_markets_list(tmp_path: Path) -> None:
    # fetch_trading_fees: {symbol: {symbol, maker, taker, ...}}, the account's own rate (OKX)
    trading = {SYMBOL: {"symbol": SYMBOL, "maker": 0.0002, "taker": 0.00035, "info": {}}}
    inst = build(tmp_path, "--exchange", "okx", "--fees", str(fees_file(tmp_path, trading)))
    assert inst["close_fee_rate"] == "0.00035"
    # fetch_markets: [market, ...]
    listed = [{"symbol": "BTC/USDT:USDT"}, {"symbol": SYMBOL, "taker": 0.00075}]
    inst = build(tmp_path, "--exchange", "gate", "--fees", str(fees_file(tmp_path, listed)))
    assert inst["close_fee_rate"] == "0.00075"


def test_options_override_what_the_exchange_implies(tmp_path: Path) -> None:
    inst = build(tmp_path, "--exchange", "bybit", "--margin-convention", f"{SYMBOL}=mark")
    assert "margin_convention" not in inst
    inst = build(tmp_path, "--exchange", "bybit", "--close-fee-rate", f"{SYMBOL}=0.00055")
    assert (inst["margin_convention"], inst["close_fee_rate"]) == ("entry_value", "0.00055")
    # an explicit rate wins over the file's, and 0 is a rate (no fee written)
    fees = str(fees_file(tmp_path, MARKETS))
    inst = build(tmp_path, "--exchange", "gate", "--fees", fees, "--close-fee-rate", f"{SYMBOL}=0")
    assert "close_fee_rate" not in inst
    inst = build(tmp_path, "--margin-convention", f"{SYMBOL}=entry_value")
    assert inst["margin_convention"] == "entry_value"


def test_a_fee_counting_exchange_without_a_taker_rate_is_one_error_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = failure(tmp_path, capsys, "--exchange", "okx")
    assert err.count("\n") == 1
    assert err.startswith("--close-fee-rate: expected the taker rate of XRP/USDT:USDT")
    assert "--fees FILE" in err
    # a fees file without the symbol's taker is the same error
    other = {"BTC/USDT:USDT": {"taker": 0.0005}}
    err = failure(tmp_path, capsys, "--exchange", "gate", "--fees", str(fees_file(tmp_path, other)))
    assert err.startswith("--close-fee-rate: expected the taker rate of XRP/USDT:USDT")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--margin-convention", f"{SYMBOL}=bybit"), "--margin-convention: expected mark or "),
        (("--margin-convention", "XRPUSDT=mark"), "--margin-convention: expected a symbol given"),
        (("--close-fee-rate", f"{SYMBOL}=0.5"), "--close-fee-rate: expected a rate from 0 "),
        (("--close-fee-rate", f"{SYMBOL}=-0.001"), "--close-fee-rate: expected a rate from 0 "),
        (("--close-fee-rate", f"{SYMBOL}=0.05%"), "--close-fee-rate: expected a decimal rate"),
        (("--close-fee-rate", f"{SYMBOL}=NaN"), "--close-fee-rate: expected a rate from 0 "),
        (("--exchange", "gate io"), "--exchange: expected a ccxt exchange id"),
    ],
)
def test_a_bad_option_is_one_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: tuple[str, ...], message: str
) -> None:
    err = failure(tmp_path, capsys, *options)
    assert err.startswith(message) and err.count("\n") == 1


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"taker": 0.2}, r"fees.json XRP/USDT:USDT taker: expected a rate from 0 to below 0.1"),
        ({"taker": "x"}, r"fees.json XRP/USDT:USDT taker: expected a number"),
        ({"taker": 1, "percentage": False}, r"XRP/USDT:USDT percentage: .*flat fee"),
    ],
)
def test_a_bad_taker_rate_names_file_symbol_and_field(
    tmp_path: Path, entry: dict[str, Any], message: str
) -> None:
    request = BuildRequest(
        name="x", tiers=TIERS, markets=(MarketSource(SYMBOL, CANDLES),), exchange="gate",
        fees=fees_file(tmp_path, {SYMBOL: entry}),
    )  # fmt: skip
    with pytest.raises(InputError, match=message):
        build_scenario(request)


# ----- the feed carries the fields in its header ----------------------------------------------


def near_the_line(convention: str | None, fee: str | None) -> dict[str, Any]:
    """two-traders with the price falling only to 0.9047: the long (10 at 1, margin 1, MMR 0.5%)
    is liquidated below 0.905 under `entry_value` (1 + 10 (P - 1) = 0.05) and below 0.904523
    under `mark` (9.95 P = 9), so it is liquidated under the one and not the other."""
    from core.scenario.builtin import builtin_scenarios

    doc = json.loads(builtin_scenarios()["two-traders"].read_text())
    for kind in ("indices", "marks"):
        for path in doc["market"][kind].values():
            path[1][1] = path[2][1] = "0.9047"
    for inst in doc["instruments"]:
        if convention is not None:
            inst["margin_convention"] = convention
        if fee is not None:
            inst["close_fee_rate"] = fee
    return doc


@pytest.mark.parametrize(("convention", "fee"), [("entry_value", None), ("mark", "0.00055")])
def test_a_feed_carries_the_convention_to_the_scenarios_state_hash(
    convention: str, fee: str | None
) -> None:
    from core.engine.facade import Engine
    from core.feed.publish import scenario_feed
    from core.scenario.parse import parse_scenario
    from tests.core.test_feed import consume

    def run_to_end(doc: dict[str, Any]) -> Engine:
        engine = Engine(parse_scenario(json.loads(json.dumps(doc))))
        for _ in engine.run():
            pass
        return engine

    doc = near_the_line(convention, fee)
    own, plain = run_to_end(doc), run_to_end(near_the_line(None, None))
    assert own.state_hash() != plain.state_hash()  # the fields decide this run
    messages = list(scenario_feed(doc))
    (header,) = messages[0]["scenario"]["instruments"]
    assert (header["margin_convention"], header.get("close_fee_rate")) == (convention, fee)
    run = consume(messages)
    assert run.ended and run.refused == []
    assert run.engine is not None
    (inst,) = run.engine.instruments
    assert inst.margin_convention == convention
    assert run.engine.state_hash() == own.state_hash()
