"""The incident report against the store it reads: figures equal the store's sums, the waterfall
adds up, the clawback table is the allocations, JSON and CSV round-trip, bad ranges are refused."""

from __future__ import annotations

import hashlib
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from core.model.errors import InputError
from core.model.units import to_minor
from core.report import output as report_io
from core.report.report import IncidentReport, build_report
from core.scenario.builtin import builtin_scenarios
from core.session.session import Session
from core.store.store import Store

BTC = 10**8
GENERATED = "2025-01-02T03:04:05Z"


def incident_doc() -> dict[str, Any]:
    """Seed 003's two-user example with a third account, a 2 BTC fund, operators, a warning, an
    injection that one operator tries to approve herself and a supervisor approves."""
    doc = json.loads(builtin_scenarios()["two-traders"].read_text())
    doc["name"] = "incident"
    doc["insurance_fund"] = {"BTC": "2"}
    c = json.loads(json.dumps(doc["accounts"][1]))
    c["id"] = "C"
    doc["accounts"].append(c)
    doc["operators"] = [
        {"name": "alice", "role": "operator"},
        {"name": "carol", "role": "supervisor"},
    ]
    doc["actions"] = [
        {"at": "2018-07-31T00:10:00Z", "operator": "alice", "action": "warn", "account": "B",
         "message": "reduce", "reason": "holds the whole short side"},
        {"at": "2018-07-31T00:30:00Z", "id": "inj-1", "operator": "alice", "action": "inject",
         "currency": "BTC", "amount": "1", "reason": "company reserve"},
        {"at": "2018-07-31T00:30:30Z", "operator": "alice", "action": "approve",
         "request": "inj-1", "reason": "my own"},
        {"at": "2018-07-31T00:31:00Z", "operator": "carol", "action": "approve",
         "request": "inj-1", "reason": "approved by management"},
    ]  # fmt: skip
    return doc


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "incident.sqlite"
    session = Session.start(incident_doc(), path)
    session.run_to_end()
    session.close()
    return path


@pytest.fixture(scope="module")
def report(incident: Path) -> IncidentReport:
    store = Store.open(incident)
    try:
        return build_report(store.db, store_path=incident, generated_at=GENERATED)
    finally:
        store.close()


def one(db: Any, sql: str, *args: Any) -> Any:
    return db.execute(sql, args).fetchone()[0]


def test_the_waterfall_adds_up_and_matches_the_store(
    incident: Path, report: IncidentReport
) -> None:
    (w,) = report.waterfalls
    store = Store.open(incident)
    db = store.db
    # A loses 9 on 1 of margin: 8 of deficit; the fund's 2 pay at once, the injected 1 at
    # settlement, and the 5 left are clawed back from B and C.
    assert (w.deficit, w.fund, w.injection, w.clawback) == (8 * BTC, 2 * BTC, 1 * BTC, 5 * BTC)
    assert w.unrecovered == w.open == 0
    assert w.deficit == w.fund + w.injection + w.clawback + w.unrecovered + w.open
    assert w.deficit == one(db, "SELECT sum(deficit) FROM liquidations")
    paid = one(db, "SELECT sum(amount) FROM fund_history WHERE kind = 'deficit_out'")
    assert w.fund + w.injection == paid
    assert w.injected == one(db, "SELECT sum(amount) FROM fund_history WHERE kind = 'injection'")
    assert w.clawback == one(db, "SELECT sum(deficit - unrecovered) FROM clawbacks")
    assert (w.fund_start, w.fund_end) == (2 * BTC, 0)
    assert w.clawback_status == "applied"
    store.close()


def test_the_summary_counts_match_the_store(incident: Path, report: IncidentReport) -> None:
    store = Store.open(incident)
    db = store.db
    s = report.summary
    assert s.liquidations == one(db, "SELECT count(*) FROM liquidations") == 1
    assert s.contracts_liquidated == one(db, "SELECT sum(contracts) FROM liquidations") == 10
    assert s.largest is not None and s.largest.account == "A"
    assert s.alerts == one(db, "SELECT count(*) FROM events WHERE kind = 'AlertRaised'")
    assert s.actions == one(db, "SELECT count(*) FROM events WHERE kind = 'ActionRecorded'") == 3
    assert s.refusals == 1
    assert any("8 BTC" in line for line in s.narrative)
    store.close()


def test_the_clawback_table_equals_the_allocations(incident: Path, report: IncidentReport) -> None:
    (claw,) = report.clawbacks
    store = Store.open(incident)
    rows = store.db.execute(
        "SELECT account, profit, amount FROM clawback_allocations WHERE clawback = ? "
        "ORDER BY amount DESC, account",
        (claw.seq,),
    ).fetchall()
    assert [(a.account, a.profit, a.amount) for a in claw.top] == rows
    assert claw.charged == sum(r[2] for r in rows) == claw.deficit - claw.unrecovered == 5 * BTC
    assert claw.total_profit == sum(r[1] for r in rows) == 18 * BTC
    assert Decimal(claw.ratio) == pytest.approx(Decimal(5) / Decimal(18), rel=Decimal("1e-11"))
    assert claw.accounts_charged == 2 and claw.status == "applied"
    store.close()


def test_the_timeline_names_operators_reasons_and_refusals(report: IncidentReport) -> None:
    kinds = [e.kind for e in report.timeline]
    assert kinds.index("liquidation") < kinds.index("settlement") < kinds.index("clawback")
    assert [e.time for e in report.timeline] == sorted(e.time for e in report.timeline)
    warn = next(e for e in report.timeline if e.kind == "action" and e.text.startswith("warn"))
    assert (warn.actor, warn.subject, warn.reason) == ("alice", "B", "holds the whole short side")
    refusal = next(e for e in report.timeline if e.kind == "refusal")
    assert refusal.actor == "alice" and "self-approval" in refusal.text
    approval = next(e for e in report.timeline if e.kind == "approval")
    assert (approval.actor, approval.reason) == ("carol", "approved by management")
    fund = next(e for e in report.timeline if e.kind == "fund")
    assert (fund.amount, fund.currency) == (1 * BTC, "BTC")
    (request,) = report.approvals
    assert (request.request, request.requested_by, request.status) == ("inj-1", "alice", "approved")
    assert (request.decided_by, request.decision_reason) == ("carol", "approved by management")


def test_accounts_charts_and_integrity(incident: Path, report: IncidentReport) -> None:
    by_account = {a.account: a for a in report.accounts}
    assert by_account["A"].deficit == 8 * BTC and by_account["A"].liquidations == 1
    assert by_account["B"].clawback + by_account["C"].clawback == 5 * BTC
    assert by_account["B"].actions == 1
    kinds = {(s.kind, s.name) for s in report.charts.prices}
    assert {("index", "DEMO-USD"), ("mark", "DEMO-USD-180731")} <= kinds
    assert [m.account for m in report.charts.markers] == ["A"]
    (fund,) = report.charts.fund
    assert fund.balances == (0, 1 * BTC, 0)  # paid out, injected, paid out at settlement
    before, after = report.charts.margin
    assert before.positions == 3 and after.positions == 0
    assert sum(before.counts) == before.positions
    i = report.integrity
    assert i.store_sha256 == hashlib.sha256(incident.read_bytes()).hexdigest()
    assert len(i.audit_head_hash) == 64 and i.audit_sound
    assert i.state_hash is not None and report.generated_at == GENERATED


def test_json_round_trips_with_exact_amounts(report: IncidentReport, tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    report_io.write_json(report, path)
    doc = json.loads(path.read_text())
    assert doc["format"] == "risk-incident-report/1"
    assert doc["waterfalls"][0]["deficit"] == "8"
    assert doc["clawbacks"][0]["top"][0]["amount"] in ("2.5", "2.50000000")
    back = report_io.from_dict(IncidentReport, doc, dict(report.currencies))
    assert back == report


def test_csv_holds_every_liquidation_and_allocation(incident: Path, report: IncidentReport) -> None:
    store = Store.open(incident)
    out = io.StringIO()
    count = report_io.write_csv(report, store.db, out)
    rows = list(__import__("csv").DictReader(io.StringIO(out.getvalue())))
    assert count == len(rows) == 3
    liquidations = [r for r in rows if r["record"] == "liquidation"]
    stored = store.db.execute(
        "SELECT seq, account, contracts, deficit, surplus FROM liquidations"
    ).fetchall()
    assert [
        (int(r["seq"]), r["account"], int(r["contracts"]), to_minor(Decimal(r["deficit"]), 8),
         to_minor(Decimal(r["surplus"]), 8))
        for r in liquidations
    ] == stored  # fmt: skip
    allocations = sorted(
        (r["account"], to_minor(Decimal(r["profit"]), 8), to_minor(Decimal(r["amount"]), 8))
        for r in rows
        if r["record"] == "allocation"
    )
    assert allocations == sorted(
        store.db.execute("SELECT account, profit, amount FROM clawback_allocations").fetchall()
    )
    store.close()


def test_a_range_before_settlement_leaves_the_deficit_open(incident: Path) -> None:
    store = Store.open(incident)
    r = build_report(
        store.db,
        start="2018-07-31T00:00:00Z",
        end="2018-07-31T00:45:00",
        store_path=incident,
        generated_at=GENERATED,
        distributions=False,
    )
    (w,) = r.waterfalls
    assert (w.deficit, w.fund, w.injection, w.clawback, w.open) == (8 * BTC, 2 * BTC, 0, 0, 6 * BTC)
    assert r.clawbacks == () and r.charts.margin == ()
    assert r.scope.end_tick == 45 * 60
    only_b = build_report(
        store.db, accounts=["B"], store_path=incident, generated_at=GENERATED, distributions=False
    )
    assert only_b.liquidations == () and [a.account for a in only_b.clawbacks[0].top] == ["B"]
    store.close()


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"start": "yesterday"}, "--from"),
        ({"end": "2018-13-01T00:00:00Z"}, "--to"),
        ({"start": "2018-07-31T00:30:00Z", "end": "2018-07-31T00:10:00Z"}, "--to"),
        ({"start": "2019-01-01T00:00:00Z"}, "--from"),
        ({"end": "2017-01-01T00:00:00Z"}, "--to"),
        ({"accounts": ["nobody"]}, "--account"),
        ({"instruments": ["BTC-USD-PERP"]}, "--symbol"),
        ({"top": 0}, "top"),
    ],
)
def test_bad_input_names_the_option_and_writes_nothing(
    incident: Path, options: dict[str, Any], field: str
) -> None:
    before = hashlib.sha256(incident.read_bytes()).hexdigest()
    store = Store.open(incident)
    with pytest.raises(InputError) as error:
        build_report(store.db, store_path=incident, **options)
    store.close()
    assert error.value.field == field
    assert hashlib.sha256(incident.read_bytes()).hexdigest() == before


def test_a_cascade_under_adl_groups_what_it_does_not_list(tmp_path: Path) -> None:
    doc = json.loads(builtin_scenarios()["cascade-2025"].read_text())
    doc["crowd"]["accounts"] = 3000
    path = tmp_path / "cascade.sqlite"
    session = Session.start(doc, path)
    session.run_to_end()
    session.close()
    store = Store.open(path)
    r = build_report(store.db, store_path=path, generated_at=GENERATED, distributions=False)
    count = one(store.db, "SELECT count(*) FROM liquidations")
    assert r.summary.liquidations == count > 100
    assert len(r.liquidations) + sum(g.count for g in r.liquidation_groups) == count
    assert sum(g.contracts for g in r.liquidation_groups) + sum(
        x.contracts for x in r.liquidations
    ) == one(store.db, "SELECT sum(contracts) FROM liquidations")
    assert len(r.liquidation_groups) <= report_io.GROUPS_MAX * len(r.scope.symbols)
    (w,) = r.waterfalls
    assert w.adl_fills == one(store.db, "SELECT count(*) FROM adl")
    assert w.deficit == one(store.db, "SELECT coalesce(sum(deficit), 0) FROM liquidations")
    paid = one(
        store.db, "SELECT coalesce(sum(amount), 0) FROM fund_history WHERE kind = 'deficit_out'"
    )
    assert w.fund + w.injection == paid
    assert all(len(s.times) <= report_io.MAX_POINTS for s in r.charts.prices)
    store.close()
