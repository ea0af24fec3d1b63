"""Text from people on its way in and out: invisible reasons refused, the command line's actor
taken from the OS, stored text shown safely by `audit list`, formulas kept out of CSV exports."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import pwd
from dataclasses import fields, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlite_utils

from console.cli import operators as cli_operators
from core.desk import audit, operators
from core.desk.alerts import record_thresholds
from core.desk.operators import ScryptParams
from core.model.errors import InputError
from core.model.events import iso
from core.model.text import csv_cell, is_blank, printable
from core.model.thresholds import Thresholds
from core.report import output as report_io
from core.scenario.parse import load_scenario, parse_command
from core.store import queries
from core.store.schema import connect

T0 = datetime(2018, 7, 31, 10, 0, tzinfo=UTC)
ROOT = operators.local_actor("root")
ASSETS = Path(__file__).resolve().parents[2] / "assets" / "scenarios"
INVISIBLE = ["\u200b", " \t ", "\u00a0\u2003", "\u200d\u2060\ufeff", "\u3164", "\u0301", ""]
FORMULAS = [
    '=HYPERLINK("http://x","y")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1)",
    "\t=1",
    "\r=1",
]


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(operators, "DEFAULT_SCRYPT", ScryptParams(n=2**10, r=8, p=1))


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store.sqlite"
    connect(path, create=True).conn.close()
    return path


def _run(*argv: str, stdin: str = "") -> tuple[int | None, str]:
    parser = argparse.ArgumentParser(prog="risk-console")
    cli_operators.register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    out = io.StringIO()
    code = cli_operators.handle(
        parser.parse_args(argv), clock=lambda: T0, stdin=io.StringIO(stdin), out=out
    )
    return code, out.getvalue()


@pytest.mark.parametrize("reason", INVISIBLE[:-1])
def test_a_zero_width_reason_is_refused(store: Path, reason: str) -> None:
    db = connect(store)
    with pytest.raises(InputError) as error:
        audit.append(db, at=T0, operator="alice", kind="action", subject="s", reason=reason)
    assert error.value.field == "reason"
    assert audit.count(db) == 0
    # From the command line: one line naming the field, and nothing changed.
    code, _ = _run("operators", "add", str(store), "bob", "--role", "viewer", "--password",
                   "bob-secret", "--reason", reason)  # fmt: skip
    assert code == 2
    assert (db["operators"].count, audit.count(db)) == (0, 0)


def test_a_zero_width_reason_in_an_operator_command_names_the_field() -> None:
    scenario = load_scenario(ASSETS / "two-traders.json")
    command = {"operator": "alice", "action": "warn", "account": "A", "message": "hi"}
    with pytest.raises(InputError) as error:
        parse_command(scenario, command | {"at": iso(scenario.start), "reason": "\u200b"}, [])
    assert error.value.field == "command.reason"
    assert parse_command(scenario, command | {"at": iso(scenario.start), "reason": "ok"}, [])


def test_a_zero_width_reason_for_a_threshold_change_is_refused(store: Path) -> None:
    db = connect(store)
    before = Thresholds()
    after = replace(before, **{fields(Thresholds)[0].name: 0.5})
    with pytest.raises(InputError) as error:
        record_thresholds(db, before, after, operator=ROOT, at=T0, reason="\u200b\u200c")
    assert error.value.field == "reason"
    assert (audit.count(db), db["settings"].count) == (0, 0)


def test_invisible_text_is_blank() -> None:
    assert all(is_blank(text) for text in INVISIBLE)
    assert not any(is_blank(text) for text in ("a", " x ", "\u200b.", "é", "0"))


def test_the_cli_actor_is_the_real_user_not_logname(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(name, "mallory\nfake")
    assert _run("operators", "add", str(store), "bob", "--role", "viewer", "--password",
                "bob-secret")[0] == 0  # fmt: skip
    row = audit.rows(connect(store), limit=1)[0]
    assert row.operator == "local:" + pwd.getpwuid(os.getuid()).pw_name
    assert "mallory" not in row.operator


def test_a_newline_in_an_actor_does_not_break_audit_list(store: Path) -> None:
    db = connect(store)
    stored = [
        ("eve\nfake\tcolumn", "a reason\r\nwith lines"),
        ("mallory", "\x1b[2J\x1b[31mred\u202eevil"),
        ("carol", "back\\slash"),
    ]
    for operator, reason in stored:
        audit.append(db, at=T0, operator=operator, kind="action", subject="s", reason=reason)
    code, text = _run("audit", "list", str(store))
    assert code == 0
    lines = text.splitlines()
    assert len(lines) == len(stored)
    columns = [line.split("\t") for line in reversed(lines)]
    assert all(len(row) == 8 for row in columns)
    assert [(row[2], row[5]) for row in columns] == [
        ("eve\\nfake\\tcolumn", "a reason\\r\\nwith lines"),
        ("mallory", "\\x1b[2J\\x1b[31mred\\u202eevil"),
        ("carol", "back\\\\slash"),
    ]
    assert "\x1b" not in text and "\u202e" not in text
    code, text = _run("audit", "list", str(store), "--json")
    assert text.isascii() and len(text.splitlines()) == len(stored)


def test_printable_escapes_controls_and_keeps_text() -> None:
    assert printable("größe 1 000 €") == "größe 1 000 €"
    assert printable("a\nb\x00c\u2028d\u200be") == "a\\nb\\x00c\\u2028d\\u200be"


def _csv(db: sqlite_utils.Database, table: str) -> list[list[str]]:
    out = io.StringIO()
    queries.export_table(db, table, "csv", out)
    return list(csv.reader(io.StringIO(out.getvalue())))


def test_a_formula_reason_is_neutralised_in_csv(store: Path) -> None:
    db = connect(store)
    for reason in FORMULAS:
        audit.append(db, at=T0, operator="alice", kind="action", subject="s", reason=reason)
    rows = _csv(db, "audit_log")
    reasons = [row[rows[0].index("reason")] for row in rows[1:]]
    assert reasons == ["'" + reason for reason in FORMULAS]
    # The JSON export is data, not a sheet: left as stored.
    out = io.StringIO()
    queries.export_table(db, "audit_log", "json", out)
    assert json.loads(out.getvalue())[0]["reason"] == FORMULAS[0]


def test_numbers_and_plain_text_pass_through_csv_unchanged() -> None:
    for value in ("-0.5", "+3", "-1e-8", "-1,234.5", "+0.25%", "12", "alice", "a=b", -5, None):
        assert csv_cell(value) == value
    assert csv_cell("-") == "'-"
    assert csv_cell("-1+2") == "'-1+2"
    assert csv_cell("+%") == "'+%"


def test_the_report_csv_uses_the_same_guard() -> None:
    row = report_io._csv_row(record="liquidation", account="=cmd|'/C calc'!A0", surplus="-0.5")
    columns = dict(zip(report_io.CSV_COLUMNS, row, strict=True))
    assert columns["account"] == "'=cmd|'/C calc'!A0"
    assert columns["surplus"] == "-0.5"


def test_a_carriage_return_cannot_start_a_csv_row(store: Path) -> None:
    db = connect(store)
    audit.append(db, at=T0, operator="alice", kind="action", subject="s", reason="ok\r=1+1")
    rows = _csv(db, "audit_log")
    assert len(rows) == 2
    assert rows[1][rows[0].index("reason")] == "ok\r=1+1"
