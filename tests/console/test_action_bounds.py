"""The action dialog's fields and the command line's options are held to the scenario's bounds:
ASCII digits only, amounts within what the engine holds exactly."""

from __future__ import annotations

import argparse

import pytest

from console.cli.actions import PARAMS, raw_action
from console.dialogs.action_dialog import ActionContext, PositionInfo, build_action
from core.model.errors import InputError

CONTEXT = ActionContext(
    "alice",
    "supervisor",
    account="B",
    positions=(PositionInfo("DEMO-USD-180731", "short", 10),),
    currencies=(("BTC", 8),),
)


@pytest.mark.parametrize("amount", ["100000000000", "90071992.54740993", "１０", "1_000", "1e400"])
def test_an_inject_of_a_hundred_billion_btc_is_refused_in_the_dialog(amount: str) -> None:
    values = {"reason": "top up", "currency": "BTC", "amount": amount}
    with pytest.raises(InputError) as error:
        build_action(CONTEXT, "inject", values)
    assert error.value.field == "amount"
    raw = build_action(CONTEXT, "inject", {**values, "amount": "90071992.54740992"})
    assert raw["amount"] == "90071992.54740992"


@pytest.mark.parametrize("contracts", ["１０", "٣", "1" * 5000])
def test_full_width_digits_are_not_contracts_in_the_dialog(contracts: str) -> None:
    values = {"reason": "r", "symbol": "DEMO-USD-180731", "contracts": contracts}
    with pytest.raises(InputError) as error:
        build_action(CONTEXT, "force_reduce", values)
    assert error.value.field == "contracts" and len(error.value.message) < 200


def test_full_width_digits_are_not_contracts_on_the_command_line() -> None:
    options = dict.fromkeys(PARAMS)
    options.update(symbol="DEMO-USD-180731", account="B", contracts="１０")
    args = argparse.Namespace(
        operator="alice", action="force_reduce", reason="r", id="cut-1", **options
    )
    assert raw_action(args)["contracts"] == "１０"  # text: the scenario parser refuses it
    args.contracts = "10"
    assert raw_action(args)["contracts"] == 10
