"""The incident report as a PDF (pages, page numbers and text read back from the file), the headless
`risk-console report` command on a fresh store in a process of its own, and the export dialog."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.scenario.builtin import builtin_scenarios
from core.session.session import Session
from core.store.store import Store

pdfium = pytest.importorskip("pypdfium2")

GENERATED = "2025-01-02T03:04:05Z"


def incident_doc() -> dict[str, Any]:
    """Seed 003's two-user example with a 2 BTC fund and an injection a supervisor approves."""
    doc = json.loads(builtin_scenarios()["two-traders"].read_text())
    doc["name"] = "incident"
    doc["insurance_fund"] = {"BTC": "2"}
    doc["operators"] = [
        {"name": "alice", "role": "operator"},
        {"name": "carol", "role": "supervisor"},
    ]
    doc["actions"] = [
        {"at": "2018-07-31T00:30:00Z", "id": "inj-1", "operator": "alice", "action": "inject",
         "currency": "BTC", "amount": "1", "reason": "company reserve"},
        {"at": "2018-07-31T00:31:00Z", "operator": "carol", "action": "approve",
         "request": "inj-1", "reason": "approved by management"},
    ]  # fmt: skip
    return doc


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pdf") / "incident.sqlite"
    session = Session.start(incident_doc(), path)
    session.run_to_end()
    session.close()
    return path


def pdf_pages(path: Path) -> list[str]:
    document = pdfium.PdfDocument(str(path))
    try:
        return [page.get_textpage().get_text_range() for page in document]
    finally:
        document.close()


def test_the_pdf_has_its_sections_page_numbers_and_figures(
    qapp: Any, store_path: Path, tmp_path: Path
) -> None:
    from console.report.pdf import write_pdf
    from core.report.report import build_report

    store = Store.open(store_path)
    report = build_report(store.db, store_path=store_path, generated_at=GENERATED)
    store.close()
    out = tmp_path / "r.pdf"
    pages = write_pdf(report, out)
    texts = pdf_pages(out)
    assert len(texts) == pages >= 3
    for n, text in enumerate(texts, start=1):
        assert f"Page {n} of {pages}" in text
        assert report.integrity.audit_head_hash in text.replace("\r\n", "").replace("\n", "")
    first = texts[0]
    assert "Incident report: incident" in first and "1. Summary" in first
    assert "2. Deficit waterfall" in first
    whole = "\n".join(texts)
    for heading in ("3. Charts", "4. Timeline", "6. Clawback", "7. Requests and approvals",
                    "8. Accounts involved", "9. Integrity"):  # fmt: skip
        assert heading in whole
    assert "approved by management" in whole and "carol" in whole
    assert report.clawbacks[0].ratio in whole
    assert report.integrity.store_sha256 in whole.replace("\n", "").replace("\r", "")
    # A heading is kept on the page of what follows it: here the timeline's header row.
    timeline = next(t for t in texts if "4. Timeline" in t)
    assert timeline.index("4. Timeline") < timeline.index("Time (UTC)")


def test_a_long_table_repeats_its_header_on_each_page(
    qapp: Any, store_path: Path, tmp_path: Path
) -> None:
    from dataclasses import replace

    from console.report.pdf import write_pdf
    from core.report.report import TimelineEntry, build_report

    store = Store.open(store_path)
    report = build_report(store.db, store_path=store_path, generated_at=GENERATED)
    store.close()
    many = tuple(
        TimelineEntry(f"2018-07-31T00:{n // 60:02d}:{n % 60:02d}Z", "alert", "surveillance",
                      f"acct-{n}", f"start{n} " + "word " * (n % 17) + f"end{n}", "")
        for n in range(400)
    )  # fmt: skip
    out = tmp_path / "long.pdf"
    pages = write_pdf(replace(report, timeline=many), out)
    texts = pdf_pages(out)
    assert pages == len(texts)
    with_rows = [t for t in texts if "acct-" in t]
    assert len(with_rows) >= 4
    for text in with_rows:
        assert "Time (UTC)" in text and "Detail" in text

    def pages_with(word: str) -> list[int]:
        return [k for k, t in enumerate(texts) if re.search(rf"\b{word}\b", t)]

    # Every row is whole on one page: its first and last words are on the same page.
    for n in range(400):
        assert pages_with(f"start{n}") == pages_with(f"end{n}") == pages_with(f"acct-{n}")
        assert len(pages_with(f"start{n}")) == 1


def command() -> list[str]:
    """`risk-console` itself once console/cli/main.py knows `report`, else the command on its own."""
    from console.cli import main as cli

    wired = "report" in cli._parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    return [sys.executable, "-m", "console.cli.main" if wired else "console.cli.report", "report"]


def test_the_headless_command_works_on_a_fresh_store(store_path: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY")}
    outputs = {fmt: tmp_path / f"report.{fmt}" for fmt in ("pdf", "json", "csv")}
    for out in outputs.values():
        done = subprocess.run(
            [*command(), str(store_path), "--out", str(out),
             "--generated-at", GENERATED],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert out.exists() and out.stat().st_size > 0
    assert outputs["pdf"].read_bytes().startswith(b"%PDF")
    assert json.loads(outputs["json"].read_text())["generated_at"] == GENERATED
    assert outputs["csv"].read_text().splitlines()[0].startswith("record,seq,time")
    bad = subprocess.run(
        [*command(), str(store_path), "--from", "soon",
         "--out", str(tmp_path / "bad.pdf")],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and "--from" in bad.stderr
    assert not (tmp_path / "bad.pdf").exists()


def test_the_dialog_exports_on_a_worker_thread(
    qtbot: Any, store_path: Path, tmp_path: Path
) -> None:
    from console.dialogs.report_dialog import ReportDialog

    dialog = ReportDialog(store_path)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.start.text() == "2018-07-31T00:00:00Z")
    dialog.format.setCurrentIndex(1)  # JSON
    out = tmp_path / "dialog.json"
    dialog.out.setText(str(out))
    dialog.accounts.setText("B")
    with qtbot.waitSignal(dialog.done, timeout=60_000):
        dialog.export_now()
    doc = json.loads(out.read_text())
    assert doc["scope"]["accounts"] == ["B"]
    dialog.start.setText("not a time")
    dialog.export_now()
    qtbot.waitUntil(lambda: "--from" in dialog.error.text(), timeout=60_000)
    assert dialog.isEnabled()


def test_the_menu_action_opens_the_dialog_for_the_current_store(
    qtbot: Any, store_path: Path
) -> None:
    from PySide6.QtWidgets import QMainWindow

    from console.dialogs.report_dialog import ReportDialog, add_report_action

    window = QMainWindow()
    qtbot.addWidget(window)
    menu = window.menuBar().addMenu("File")
    action = add_report_action(menu, window, lambda: store_path)
    assert action in menu.actions() and action.text().startswith("Export incident report")
    action.trigger()
    dialog = window.findChild(ReportDialog)
    assert dialog is not None and dialog.isVisible()
    assert dialog.store_path == str(store_path)
    dialog.reject()


def test_the_dialog_reads_a_store_under_a_folder_with_uri_characters(
    qtbot: Any, store_path: Path, tmp_path: Path
) -> None:
    from console.dialogs.report_dialog import ReportDialog

    folder = tmp_path / "a?b#c%20d"
    folder.mkdir()
    copy = folder / "incident.sqlite"
    shutil.copyfile(store_path, copy)
    dialog = ReportDialog(copy)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.range is not None or bool(dialog.error.text()))
    assert dialog.error.text() == ""
    assert (dialog.start.text(), dialog.end.text()) == (
        "2018-07-31T00:00:00Z",
        "2018-07-31T01:00:01Z",
    )
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no file opened beside it
