"""A clawback waiting for a supervisor, approved or rejected: the report and the result count it
once, every report total equals the ledger's, a rejected clawback's deficit stays open until the
next settlement, and a scenario action naming an unknown account is a recorded refusal.

The market is tests/core/test_settlement_control.py's: A's loss leaves a deficit of 190 USDT, a
fund of 40 pays its part at once and the 150 left is shared at the 08:00 expiry by B (100) and
C (50)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.engine.facade import Engine
from core.engine.ledger import INSURANCE_FUND, AccountKind, Reason
from core.model.errors import InputError
from core.model.events import ActionRefused, ClawbackComputed
from core.report.report import IncidentReport, build_report
from core.scenario.parse import parse_scenario
from core.session.session import Session
from core.store.queries import account_history
from tests.core.conftest import log_in
from tests.core.test_settlement_control import USDT, T, at, balance, run, run_until, scenario

FAMILY, CURRENCY = "X", "USDT"
GENERATED = "2025-01-02T03:04:05Z"


def decision(action: str, operator: str = "carol", **extra: Any) -> dict[str, Any]:
    return {
        "operator": operator,
        "action": action,
        "family": FAMILY,
        "currency": CURRENCY,
        "reason": "allocations checked",
        **extra,
    }


def settled(path: Path) -> Session:
    """A store run to its end with the 150 USDT clawback waiting for a supervisor."""
    session = Session.start(scenario(fund="40", approval="required"), path)
    session.run_to_end()
    assert (FAMILY, CURRENCY) in session.engine.settlements.pending
    session.flush()
    assert session.store is not None
    log_in(session.store.db, "alice", "carol", "dave")
    return session


def decide(session: Session, action: str) -> list[Any]:
    session.submit(decision(action), role="supervisor")
    return session.apply_pending()


def report_of(session: Session) -> IncidentReport:
    assert session.store is not None
    return build_report(
        session.store.db,
        store_path=session.store.path,
        generated_at=GENERATED,
        distributions=False,
        max_accounts=1_000_000,
    )


def assert_report_equals_ledger(
    report: IncidentReport, engine: Engine, charged: dict[tuple[str, str], int]
) -> None:
    """Every total of a whole-run report against the engine's ledger; `charged` is what the
    ledger took from each (account, currency) by clawback."""
    ledger, fund = engine.ledger, AccountKind.INSURANCE_FUND
    pending: dict[str, int] = {}
    for (_, code), p in engine.settlements.pending.items():
        pending[code] = pending.get(code, 0) + p.preview.deficit - p.preview.unrecovered
    for w in report.waterfalls:
        c = w.currency
        assert w.fund + w.injection == ledger.outflow(fund, c, Reason.DEFICIT_COVER)
        assert w.injected == ledger.inflow(fund, c, Reason.INJECTION)
        assert w.surplus_in == ledger.inflow(fund, c, Reason.LIQUIDATION_SURPLUS)
        assert (w.fund_start, w.fund_end) == (
            engine.fund_start[c],
            ledger.balance(INSURANCE_FUND, c),
        )
        clawed = ledger.inflow(AccountKind.CLEARING, c, Reason.CLAWBACK)
        assert w.clawback == clawed + pending.get(c, 0)
        assert w.deficit == engine.deficit_totals[c]["total"]
        assert w.open == sum(v for (_, code), v in engine.uncovered.items() if code == c)
        assert w.deficit == w.fund + w.injection + w.clawback + w.unrecovered + w.open
    for series in report.charts.fund:
        if series.balances:
            assert series.balances[-1] == ledger.balance(INSURANCE_FUND, series.currency)
    by_account = {(a.account, a.currency): a.clawback for a in report.accounts if a.clawback}
    assert by_account == {k: v for k, v in charged.items() if v}
    assert report.accounts_total == len(report.accounts)
    for code in engine.currency_codes:
        surplus = sum(a.surplus for a in report.accounts if a.currency == code)
        deficit = sum(a.deficit for a in report.accounts if a.currency == code)
        assert surplus == ledger.inflow(fund, code, Reason.LIQUIDATION_SURPLUS)
        totals = engine.deficit_totals[code]
        assert deficit == totals["total"]
    liquidated = sum(a.liquidations for a in report.accounts)
    assert report.summary.liquidations == liquidated
    assert report.summary.contracts_liquidated == sum(
        a.contracts_liquidated for a in report.accounts
    )
    assert report.summary.liquidated_accounts == len(
        {a.account for a in report.accounts if a.liquidations}
    )


def ledger_taken(engine: Engine, before: dict[str, np.ndarray]) -> dict[tuple[str, str], int]:
    """What each account's ledger balance fell by since `before` (currency -> trader column)."""
    ids = engine.book.account_ids
    out: dict[tuple[str, str], int] = {}
    for code, column in before.items():
        now = engine.ledger.trader_balances(code)
        fell = column - now[: column.size]
        for a in np.flatnonzero(fell).tolist():
            out[(ids[a], code)] = int(fell[a])
    return out


def trader_columns(engine: Engine) -> dict[str, np.ndarray]:
    return {code: engine.ledger.trader_balances(code).copy() for code in engine.currency_codes}


# ----- counted once ---------------------------------------------------------------------------


def test_an_approved_clawback_is_counted_once_in_the_report(tmp_path: Path) -> None:
    session = settled(tmp_path / "run.sqlite")
    decide(session, "approve_clawback")
    report = report_of(session)
    (w,) = report.waterfalls
    assert (w.deficit, w.fund, w.clawback, w.open) == (190 * USDT, 40 * USDT, 150 * USDT, 0)
    assert w.clawback_status == "applied"
    (claw,) = report.clawbacks
    assert (claw.status, claw.time, claw.charged) == ("applied", at(T), 150 * USDT)
    assert claw.decided_at > claw.time
    charged = {a.account: a.clawback for a in report.accounts if a.clawback}
    assert charged == {"B": 100 * USDT, "C": 50 * USDT}
    assert [e.text for e in report.timeline if e.kind == "clawback"] == [
        f"clawback computed, applied at {claw.decided_at}: ratio 0.5 of profit 300 USDT, "
        "charged to 2 accounts"
    ]
    assert session.store is not None
    deductions = [
        r for r in account_history(session.store.db, "B") if r["kind"] == "ClawbackDeduction"
    ]
    assert [r["amount"] for r in deductions] == [-100 * USDT]
    session.close()


def test_an_approved_clawback_is_listed_once_in_the_result() -> None:
    actions = [
        {
            "at": at(T + 60),
            "operator": "carol",
            "action": "approve_clawback",
            "family": FAMILY,
            "currency": CURRENCY,
            "reason": "as pending",
        }
    ]
    _, result, events = run(scenario(fund="40", approval="required", actions=actions))
    statuses = [e.status for e in events if isinstance(e, ClawbackComputed)]
    assert statuses == ["pending", "applied"]  # the engine's events keep both moments
    (claw,) = result["clawbacks"]
    assert (claw["status"], claw["time"], claw["decided_at"]) == ("applied", at(T), at(T + 60))
    assert claw["deficit"] == "150"
    assert [(a["account"], a["amount"]) for a in claw["allocations"]] == [
        ("B", "100"),
        ("C", "50"),
    ]


@pytest.mark.parametrize("decided", ["pending", "approve_clawback", "reject_clawback"])
def test_every_report_total_equals_the_ledger(tmp_path: Path, decided: str) -> None:
    session = settled(tmp_path / "run.sqlite")
    before = trader_columns(session.engine)
    if decided != "pending":
        decide(session, decided)
    report = report_of(session)
    assert_report_equals_ledger(report, session.engine, ledger_taken(session.engine, before))
    (claw,) = report.clawbacks
    assert claw.status == {"pending": "pending", "approve_clawback": "applied"}.get(
        decided, "rejected"
    )
    session.close()


# ----- rejection ------------------------------------------------------------------------------


def test_a_pending_clawback_can_be_rejected(tmp_path: Path) -> None:
    session = settled(tmp_path / "run.sqlite")
    engine = session.engine
    balances = {name: balance(engine, name) for name in "ABCDE"}
    # An operator may not reject; a supervisor may, and nobody is charged.
    session.submit(decision("reject_clawback", operator="alice"), role="operator")
    (refused,) = [e for e in session.apply_pending() if isinstance(e, ActionRefused)]
    assert refused.code == "role" and "rejecting a clawback needs the supervisor" in refused.reason
    events = decide(session, "reject_clawback")
    (rejected,) = [e for e in events if isinstance(e, ClawbackComputed)]
    assert rejected.status == "rejected" and rejected.allocations == ()
    assert engine.settlements.pending == {}
    assert {name: balance(engine, name) for name in "ABCDE"} == balances
    assert engine.uncovered[(FAMILY, CURRENCY)] == 150 * USDT  # open again
    # Decided once: neither a second rejection nor an approval finds it.
    session.submit(decision("approve_clawback", operator="dave"), role="supervisor")
    (late,) = [e for e in session.apply_pending() if isinstance(e, ActionRefused)]
    assert late.code == "no_clawback"
    assert session.store is not None
    db = session.store.db
    (request,) = db.execute(
        "SELECT status, decided_by, comment FROM requests WHERE action = 'approve_clawback'"
    ).fetchall()
    assert request == ("rejected", "carol", "allocations checked")
    # Each attempt is audited as given (a rejection) and with its outcome.
    rows = db.execute(
        "SELECT kind, operator, after FROM audit_log WHERE kind IN ('rejection', 'outcome') "
        "AND after LIKE '%reject_clawback%' ORDER BY seq"
    ).fetchall()
    assert [(kind, who) for kind, who, _ in rows] == [
        ("rejection", "alice"),
        ("outcome", "alice"),
        ("rejection", "carol"),
        ("outcome", "carol"),
    ]
    assert '"code":"role"' in rows[1][2] and "stays uncovered" in rows[3][2]
    (w,) = report_of(session).waterfalls
    assert (w.clawback, w.open, w.clawback_status) == (0, 150 * USDT, "rejected")
    (claw,) = session.result()["clawbacks"]
    assert claw["status"] == "rejected" and claw["allocations"] == []
    session.close()


def test_a_rejected_clawback_is_offered_again_after_the_fund_at_the_next_settlement() -> None:
    # Daily settlements at 07:30 before the 08:00 expiry: rejected at 07:30, then an injection
    # approved before the expiry pays the deficit, and no second clawback is needed.
    doc = scenario(
        fund="40",
        approval="required",
        actions=[
            {"at": at(5410), "operator": "carol", "action": "reject_clawback",
             "family": FAMILY, "currency": CURRENCY, "reason": "the company covers it"},
            {"at": at(5420), "id": "inj", "operator": "alice", "action": "inject",
             "currency": CURRENCY, "amount": "200", "reason": "cover the rejected clawback"},
            {"at": at(5430), "operator": "dave", "action": "approve", "request": "inj",
             "reason": "agreed"},
        ],
    )  # fmt: skip
    doc["policy"]["settlement"] = {"every": "day", "time": "07:30"}
    engine = Engine(parse_scenario(doc))
    events = run_until(engine, 5400)
    assert [e.status for e in events if isinstance(e, ClawbackComputed)] == ["pending"]
    run_until(engine, 5440)
    assert engine.uncovered[(FAMILY, CURRENCY)] == 150 * USDT
    events = run_until(engine, T + 10)
    assert not [e for e in events if isinstance(e, ClawbackComputed)]
    assert engine.uncovered[(FAMILY, CURRENCY)] == 0
    assert engine.ledger.balance(INSURANCE_FUND, CURRENCY) == 50 * USDT  # 200 injected - 150


def test_a_rejection_of_a_preview_whose_digest_changed_is_refused(tmp_path: Path) -> None:
    session = settled(tmp_path / "run.sqlite")
    session.submit(decision("reject_clawback", digest="0" * 64), role="supervisor")
    (refused,) = [e for e in session.apply_pending() if isinstance(e, ActionRefused)]
    assert refused.code == "changed"
    assert (FAMILY, CURRENCY) in session.engine.settlements.pending
    session.close()


# ----- unknown accounts -----------------------------------------------------------------------


def test_an_unknown_account_in_a_scenario_action_is_a_recorded_refusal() -> None:
    actions = [
        {"at": at(60), "operator": "alice", "action": "freeze", "account": "Z",
         "reason": "suspicious"},
        {"at": at(70), "operator": "alice", "action": "force_reduce", "id": "cut",
         "account": "crowd-7", "symbol": "X", "contracts": 1, "reason": "too big"},
        {"at": at(80), "operator": "alice", "action": "freeze", "account": "B",
         "reason": "suspicious"},
    ]  # fmt: skip
    engine, result, _ = run(scenario(actions=actions))  # the scenario loads and runs
    assert [(r["action"], r["code"], r["reason"]) for r in result["refused"]] == [
        ("freeze", "unknown_account", "unknown account 'Z'"),
        ("force_reduce", "unknown_account", "unknown account 'crowd-7'"),
    ]
    assert [a["action"] for a in result["actions"]] == ["freeze"]
    assert "cut" not in engine.controls.requests


def test_an_unknown_account_in_a_live_command_is_still_bad_input(tmp_path: Path) -> None:
    session = Session.start(scenario(), tmp_path / "run.sqlite")
    with pytest.raises(InputError) as error:
        session.submit(
            {"operator": "alice", "action": "freeze", "account": "Z", "reason": "x"},
            role="operator",
        )
    assert error.value.field == "command.account"
    assert session.engine.controls.pending_actions == []
    session.close()


# ----- the 2018 demo --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def okx_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from core.scenario.builtin import resolve_scenario

    path = tmp_path_factory.mktemp("okx") / "run.sqlite"
    session = Session.start(Path(resolve_scenario("okx-2018-btc0928")), path)
    session.run_to_end()
    session.close()
    return path


@pytest.mark.slow
@pytest.mark.parametrize("decided", ["pending", "approve_clawback", "reject_clawback"])
def test_every_report_total_equals_the_ledger_in_the_2018_demo(
    okx_store: Path, tmp_path: Path, decided: str
) -> None:
    path = tmp_path / "run.sqlite"
    shutil.copy(okx_store, path)
    session = Session.open(path)
    assert session.store is not None
    log_in(session.store.db, "carol")
    before = trader_columns(session.engine)
    if decided != "pending":
        session.submit(
            {"operator": "carol", "action": decided, "family": "BTC-USD", "currency": "BTC",
             "reason": "allocations checked"},
            role="supervisor",
        )  # fmt: skip
        session.apply_pending()
    report = report_of(session)
    assert_report_equals_ledger(report, session.engine, ledger_taken(session.engine, before))
    (claw,) = report.clawbacks
    (listed,) = session.result()["clawbacks"]
    assert claw.status == listed["status"]
    session.close()
