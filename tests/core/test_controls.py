"""Operator actions on the engine: each action's effect, its enforcement on trades, and each
refusal (wrong role, self-approval, frozen account, empty reason, ...) changing nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from core.engine.facade import Engine
from core.engine.ledger import INSURANCE_FUND
from core.engine.trading import TradeApplied, TradeRefused
from core.model.events import ActionRecorded, ActionRefused, LiquidationFilled
from core.model.operations import REDUCE_ONLY, WARNED
from core.model.scenario_values import ActionSpec
from core.scenario.parse import parse_scenario
from tests.core.test_trading import at, doc, of_type, run, trade

HOLDERS = [
    {
        "id": "A",
        "balances": {"USDT": "1000"},
        "positions": [
            {
                "symbol": "X",
                "side": "long",
                "contracts": 10,
                "entry_price": "100",
                "margin_mode": "cross",
                "leverage": "10",
            }
        ],
    },
    {"id": "B", "balances": {"USDT": "1000"}},
]
OPERATORS = [
    {"name": "alice", "role": "operator"},
    {"name": "bob", "role": "operator"},
    {"name": "carol", "role": "supervisor"},
    {"name": "dave", "role": "supervisor"},
    {"name": "vic", "role": "viewer"},
]


def engine_with(actions: list[dict[str, Any]] | None = None) -> Engine:
    document = doc([], accounts=HOLDERS, actions=actions)
    document["operators"] = OPERATORS
    return Engine(parse_scenario(document))


def action(
    kind: str, operator: str = "alice", reason: str = "checked", **params: object
) -> ActionSpec:
    request = params.pop("id", None)
    return ActionSpec(datetime.fromisoformat(at(0)), operator, kind, reason, request, params)  # type: ignore[arg-type]


def apply(engine: Engine, spec: ActionSpec) -> tuple[bool, list[Any]]:
    engine.events = []
    done = engine.controls.apply(spec)
    return done, list(engine.events)


# ----- effects -------------------------------------------------------------------------------


def test_each_flag_action_has_its_effect_and_unfreeze_keeps_the_warning() -> None:
    engine = engine_with()
    steps = [
        (action("warn", account="A", message="reduce"), ("warned",)),
        (action("restrict", account="A"), ("warned", "reduce_only")),
        (action("freeze", account="A"), ("warned", "reduce_only", "frozen", "withdrawals_frozen")),
        (action("unfreeze", account="A"), ("warned",)),
        (action("freeze_withdrawals", account="A"), ("warned", "withdrawals_frozen")),
        (action("cancel_orders", account="A"), ("warned", "withdrawals_frozen")),
    ]
    for spec, flags in steps:
        done, events = apply(engine, spec)
        assert done, events
        (recorded,) = of_type(events, ActionRecorded)
        assert recorded.action == spec.action and recorded.operator == "alice"
        assert engine.controls.flag_names("A") == flags
    assert engine.controls.flag_names("B") == ()
    # The recorded detail names the flags before and after.
    fresh = engine_with()
    apply(fresh, action("warn", account="A"))
    _, events = apply(fresh, action("restrict", account="A"))
    assert of_type(events, ActionRecorded)[0].detail == "flags warned -> warned,reduce_only"


def test_restrict_and_freeze_are_enforced_on_trades_in_a_run() -> None:
    actions = [
        {"at": at(1), "operator": "alice", "action": "restrict", "account": "A", "reason": "r"},
        {"at": at(3), "operator": "alice", "action": "freeze", "account": "A", "reason": "r"},
        {"at": at(5), "operator": "carol", "action": "unfreeze", "account": "A", "reason": "r"},
    ]
    trades = [
        trade(2, "A", "buy", 1, "100"),  # reduce-only: refused
        trade(2, "A", "sell", 2, "100"),  # reduce-only: a reduction is fine
        trade(4, "A", "sell", 2, "100"),  # frozen: refused, even a reduction
        trade(6, "A", "buy", 1, "100"),  # unfrozen: done
    ]
    document = doc(trades, accounts=HOLDERS, actions=actions)
    document["operators"] = OPERATORS
    _, events = run(document)
    assert [(e.trade, e.code) for e in of_type(events, TradeRefused)] == [
        (0, "reduce_only"),
        (2, "frozen"),
    ]
    assert [e.position for e in of_type(events, TradeApplied)] == [8, 9]


def force_reduce_actions(requester: str, approver: str) -> list[dict[str, Any]]:
    return [
        {"at": at(1), "operator": "alice", "action": "freeze", "account": "A", "reason": "r"},
        {
            "at": at(2),
            "id": "cut",
            "operator": requester,
            "action": "force_reduce",
            "account": "A",
            "symbol": "X",
            "contracts": 4,
            "reason": "concentration",
        },
        {"at": at(3), "operator": approver, "action": "approve", "request": "cut", "reason": "ok"},
    ]


def test_force_reduce_of_a_frozen_account_goes_through_the_book_once_approved() -> None:
    document = doc([trade(5, "A", "sell", 1, "100")], accounts=HOLDERS)
    document["operators"] = OPERATORS
    document["actions"] = force_reduce_actions("alice", "carol")
    engine, events = run(document)
    (reduced,) = of_type(events, LiquidationFilled)
    assert (reduced.account, reduced.contracts, reduced.partial) == ("A", 4, True)
    assert int(engine.book.contracts[0]) == 6
    # The account stays frozen: its own trade is still refused.
    assert [e.code for e in of_type(events, TradeRefused)] == ["frozen"]
    assert engine.controls.requests["cut"].status == "approved"


def test_injection_lands_in_the_fund_only_when_a_supervisor_approves() -> None:
    engine = engine_with()
    fund = engine.ledger.balance(INSURANCE_FUND, "USDT")
    assert apply(engine, action("inject", id="inj", currency="USDT", amount="250"))[0]
    assert engine.ledger.balance(INSURANCE_FUND, "USDT") == fund
    assert apply(engine, action("approve", operator="dave", request="inj"))[0]
    assert engine.ledger.balance(INSURANCE_FUND, "USDT") == fund + 250 * 10**6


# ----- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (action("freeze", operator="vic", account="A"), "role viewer cannot freeze"),
        (action("freeze", reason="   ", account="A"), "a reason is required"),
        (action("freeze", reason="", account="A"), "a reason is required"),
        (action("freeze", operator="mallory", account="A"), "unknown operator 'mallory'"),
        (action("freeze", account="Z"), "unknown account 'Z'"),
        (action("unfreeze", account="A"), "account A is not frozen"),
        (action("force_reduce", account="A", symbol="X", contracts=1), "needs an id"),
        (action("force_reduce", id="c", account="B", symbol="X", contracts=1), "holds no X"),
        (action("approve", operator="carol", request="nope"), "no request 'nope'"),
        (action("approve_clawback", family="X", currency="USDT"), "needs the supervisor role"),
        (action("launch", account="A"), "unknown action 'launch'"),
    ],
)
def test_a_refused_action_is_recorded_with_its_reason_and_changes_nothing(
    spec: ActionSpec, reason: str
) -> None:
    engine = engine_with()
    flags, requests = engine.controls.flags.copy(), dict(engine.controls.requests)
    done, events = apply(engine, spec)
    assert not done
    (refused,) = of_type(events, ActionRefused)
    assert reason in refused.reason and refused.operator == spec.operator
    assert (engine.controls.flags == flags).all() and engine.controls.requests == requests


def requested(engine: Engine) -> None:
    assert apply(engine, action("force_reduce", id="cut", account="A", symbol="X", contracts=3))[0]


@pytest.mark.parametrize(
    ("approver", "reason"),
    [
        ("alice", "self-approval"),
        ("bob", "approving needs the supervisor role, not operator"),
        ("vic", "role viewer cannot approve"),
    ],
)
def test_an_approval_by_the_wrong_person_leaves_the_request_pending(
    approver: str, reason: str
) -> None:
    engine = engine_with()
    requested(engine)
    done, events = apply(engine, action("approve", operator=approver, request="cut"))
    assert not done and reason in of_type(events, ActionRefused)[0].reason
    assert engine.controls.requests["cut"].status == "pending"
    assert engine.desk.orders == []  # nothing went to the book


def test_a_supervisor_cannot_approve_their_own_request() -> None:
    engine = engine_with()
    assert apply(engine, action("inject", operator="carol", id="inj", currency="USDT", amount="1"))[
        0
    ]
    done, events = apply(engine, action("approve", operator="carol", request="inj"))
    assert not done and "self-approval" in of_type(events, ActionRefused)[0].reason


def test_a_decided_or_duplicate_request_is_refused() -> None:
    engine = engine_with()
    requested(engine)
    assert apply(engine, action("reject", operator="carol", request="cut"))[0]
    done, events = apply(engine, action("approve", operator="dave", request="cut"))
    assert not done and "already rejected" in of_type(events, ActionRefused)[0].reason
    done, events = apply(
        engine, action("force_reduce", id="cut", account="A", symbol="X", contracts=3)
    )
    assert not done and "exists already" in of_type(events, ActionRefused)[0].reason


def test_an_action_with_no_effect_is_refused() -> None:
    engine = engine_with()
    assert apply(engine, action("restrict", account="A"))[0]
    done, events = apply(engine, action("restrict", account="A"))
    assert (
        not done and of_type(events, ActionRefused)[0].reason == "account A is already reduce-only"
    )
    assert int(engine.controls.flags[0]) == REDUCE_ONLY
    assert apply(engine, action("warn", account="A"))[0]
    assert int(engine.controls.flags[0]) == REDUCE_ONLY | WARNED
