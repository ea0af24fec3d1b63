"""The incident report's JSON and CSV once what-if branches exist beside the store: the JSON's
`whatif` member is the risk-whatif/1 comparison, the CSV's `whatif` rows are the comparison's own
CSV rows, and a store without branches writes what it always did (no Qt: JSON and CSV only)."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from console.report.export import export
from core.report import output as report_io
from core.report.report import IncidentReport
from core.scenario.builtin import builtin_scenarios
from core.session.session import Session
from core.whatif import compare, runs

GENERATED = "2025-01-02T03:04:05Z"
END = "2018-07-31T00:05:01Z"
PARTS = ("fund", "injection", "clawback", "adl", "uncovered")
# The comparison's columns the report's CSV lacks, after its own (docs/reports.md).
WHATIF_COLUMNS = (
    "run", "liquidations", "notional", "fund_start", "fund_end", "fund_min", "fund", "injection",
    "clawback", "adl", "uncovered", "adl_contracts", "clawback_ratio", "clawback_status", "paid",
    "equity_end", "difference",
)  # fmt: skip


def short_two_traders() -> dict[str, Any]:
    """Seed 003's two traders with a 2 BTC fund (it pays part of the deficit, the clawback the
    rest), expiring five minutes in rather than an hour: 300 ticks to run, not 3,600."""
    doc = json.loads(builtin_scenarios()["two-traders"].read_text())
    doc["insurance_fund"] = {"BTC": "2"}
    doc["instruments"][0]["expiry"] = END
    for series in (*doc["market"]["indices"].values(), *doc["market"]["marks"].values()):
        series[-1][0] = END
    return doc


@pytest.fixture(scope="module")
def branched(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The store, its JSON and CSV exported before any branch, then two branches beside it: ADL
    from the start and one with no change from tick 100."""
    folder = tmp_path_factory.mktemp("report-whatif")
    store = folder / "s.sqlite"
    session = Session.start(short_two_traders(), store)
    session.run_to_end()
    session.close()
    before: dict[str, Any] = {"store": store}
    for fmt in ("json", "csv"):
        out = folder / f"before.{fmt}"
        before[f"{fmt}_line"] = export(store, out, fmt, generated_at=GENERATED, distributions=False)
        before[fmt] = out.read_text()
    runs.branch(store, "0", [], {"deficit": "adl"}, name="adl")
    runs.branch(store, "100", [], {}, name="same")
    return before


def minor(text: str, decimals: int) -> int:
    value = Decimal(text).scaleb(decimals)
    assert value == value.to_integral_value(), text
    return int(value)


def comparison(store: Path) -> dict[str, Any]:
    """The comparison of the branches as `risk-console whatif --out compare.json` writes it."""
    doc = runs.stored_comparison(store, top=20)
    assert doc is not None
    return json.loads(json.dumps(doc))


def test_without_branches_the_json_and_csv_are_what_they_were(branched: dict[str, Any]) -> None:
    assert "what-if" not in branched["json_line"] and "what-if" not in branched["csv_line"]
    doc = json.loads(branched["json"])
    assert "whatif" not in doc
    assert doc["format"] == "risk-incident-report/1"
    rows = list(csv.reader(io.StringIO(branched["csv"])))
    assert tuple(rows[0]) == report_io.CSV_COLUMNS
    assert {r[0] for r in rows[1:]} == {"liquidation", "allocation"}


def test_json_carries_the_comparison_as_its_whatif_member(
    branched: dict[str, Any], tmp_path: Path
) -> None:
    store = branched["store"]
    out = tmp_path / "r.json"
    line = export(store, out, "json", generated_at=GENERATED, distributions=False)
    assert line.endswith(f"timeline entries (with 2 what-if branches) -> {out}")
    doc = json.loads(out.read_text())
    whatif = doc.pop("whatif")
    assert whatif == comparison(store)
    assert whatif["format"] == "risk-whatif/1"
    assert [r["name"] for r in whatif["runs"]] == ["original", "adl", "same"]
    # The report's own members are untouched, and read back as they did.
    before = json.loads(branched["json"])
    assert doc == before
    currencies = dict(doc["currencies"])
    assert report_io.from_dict(IncidentReport, doc, currencies) == report_io.from_dict(
        IncidentReport, before, currencies
    )
    # On the data: each run's deficit is exactly what covered it, and the policies differ.
    cover = {}
    for run in whatif["runs"]:
        c = run["currencies"]["BTC"]
        d = c["deficit"]
        assert minor(d["total"], 8) == sum(minor(d[p], 8) for p in PARTS), run["name"]
        cover[run["name"]] = {p: d[p] for p in ("total", *PARTS)}
    assert cover["original"] == cover["same"]
    assert cover["original"] == {
        "total": "8", "fund": "2", "injection": "0", "clawback": "6", "adl": "0", "uncovered": "0"
    }  # fmt: skip
    assert (cover["adl"]["adl"], cover["adl"]["clawback"]) == ("8", "0")
    (b,) = whatif["accounts"]
    assert b["account"] == "B" and b["runs"]["adl"]["difference"] == "-2"


def test_csv_carries_the_comparisons_rows_as_whatif_records(
    branched: dict[str, Any], tmp_path: Path
) -> None:
    store = branched["store"]
    out = tmp_path / "r.csv"
    line = export(store, out, "csv", generated_at=GENERATED)
    text = out.read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert line.endswith(f"{len(rows)} rows (with 2 what-if branches) -> {out}")
    header = next(csv.reader(io.StringIO(text)))
    assert tuple(header) == report_io.CSV_COLUMNS + WHATIF_COLUMNS
    # The report's rows are the rows it wrote without branches, in the same columns.
    before = list(csv.DictReader(io.StringIO(branched["csv"])))
    ours = [r for r in rows if r["record"] != "whatif"]
    assert [{k: r[k] for k in report_io.CSV_COLUMNS} for r in ours] == before
    assert all(r[k] == "" for r in ours for k in WHATIF_COLUMNS)
    # The what-if rows, read by the comparison's columns, are its own CSV's rows.
    doc = comparison(store)
    whatif = [r for r in rows if r["record"] == "whatif"]
    assert [{k: r[k] for k in compare.CSV_COLUMNS} for r in whatif] == list(
        csv.DictReader(io.StringIO(compare.csv_text(doc)))
    )
    totals = {r["run"]: r for r in whatif if r["account"] == ""}
    assert list(totals) == ["original", "adl", "same"]
    for run in doc["runs"]:
        row, c = totals[run["name"]], run["currencies"]["BTC"]
        assert row["currency"] == "BTC"
        assert minor(row["deficit"], 8) == sum(minor(row[p], 8) for p in PARTS), run["name"]
        assert row["deficit"] == c["deficit"]["total"]
        assert {p: row[p] for p in PARTS} == {p: c["deficit"][p] for p in PARTS}
        assert (row["liquidations"], row["contracts"], row["notional"]) == (
            str(c["liquidations"]["count"]),
            str(c["liquidations"]["contracts"]),
            c["liquidations"]["notional"],
        )
        assert (row["fund_start"], row["fund_end"], row["fund_min"]) == tuple(
            c["fund"][k] for k in ("start", "end", "min")
        )
    b = {r["run"]: r for r in whatif if r["account"] == "B"}
    assert (b["original"]["paid"], b["adl"]["paid"], b["adl"]["difference"]) == ("6", "8", "-2")
    assert b["original"]["difference"] == ""


def test_the_reports_top_sets_how_many_accounts_its_whatif_section_lists(tmp_path: Path) -> None:
    """A crowd's cascade with an empty fund (ADL on) and a branch that claws back instead: over
    a thousand accounts end differently, and the report's what-if section lists the `top` of
    them per currency, as its own tables do."""
    doc = json.loads(builtin_scenarios()["cascade-2025"].read_text())
    doc["crowd"]["accounts"] = 2000
    doc["insurance_fund"] = {"USDT": "0"}
    doc["tick_seconds"] = 5  # the same crash in a fifth of the ticks (15 s at one a second)
    store = tmp_path / "cascade.sqlite"
    session = Session.start(doc, store)
    session.run_to_end()
    session.close()
    runs.branch(store, "0", [], {"deficit": "clawback"}, name="clawback")
    listed = {}
    for top in (3, 40):
        out = tmp_path / f"top{top}.json"
        export(store, out, "json", top=top, generated_at=GENERATED, distributions=False)
        whatif = json.loads(out.read_text())["whatif"]
        listed[top] = len(whatif["accounts"])
    assert listed[3] == 3 and listed[40] > 20
