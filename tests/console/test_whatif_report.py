"""The what-if section of the incident report's PDF once a branch exists beside the store (and
not before), and `risk-console whatif ... --out COMPARE.pdf` with the same pages' machinery."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from console.cli.main import main
from core.scenario.builtin import builtin_scenarios
from core.session.session import Session
from core.whatif import runs

pdfium = pytest.importorskip("pypdfium2")


def _text(path: Path) -> str:
    document = pdfium.PdfDocument(str(path))
    try:
        return "\n".join(page.get_textpage().get_text_range() for page in document)
    finally:
        document.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two traders with a 2 BTC fund: it pays part of the deficit, so its path moves."""
    doc = json.loads(builtin_scenarios()["two-traders"].read_text())
    doc["insurance_fund"] = {"BTC": "2"}
    path = tmp_path_factory.mktemp("whatif-report") / "s.sqlite"
    session = Session.start(doc, path)
    session.run_to_end()
    session.close()
    return path


def test_incident_report_gains_a_whatif_section_once_a_branch_exists(
    qapp: Any, store: Path, tmp_path: Path
) -> None:
    from console.report.export import export

    before = tmp_path / "before.pdf"
    export(store, before, "pdf", generated_at="2025-01-02T03:04:05Z", distributions=False)
    assert "What-if branches" not in _text(before)
    runs.branch(store, "0", [], {"deficit": "adl"}, name="adl")
    after = tmp_path / "after.pdf"
    line = export(store, after, "pdf", generated_at="2025-01-02T03:04:05Z", distributions=False)
    assert "(with 1 what-if branches)" in line
    text = _text(after).replace("\r\n", "\n")
    assert "10. What-if branches" in text
    assert "policy deficit set to adl" in text  # the question
    assert "Outcomes side by side (BTC)" in text  # the answer, a column per run
    assert "Insurance fund, each run (BTC)" not in text  # the chart is an image, not text
    section = text[text.index("10. What-if branches") :]
    assert "original" in section and "adl" in section and "by clawback" in section


def test_whatif_command_writes_the_comparison_as_a_pdf(
    qapp: Any, store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "compare.pdf"
    action = {"operator": "alice", "action": "freeze", "account": "B", "reason": "what-if"}
    argv = ["whatif", str(store), "--at", "0", "--action", json.dumps(action), "--name", "frz"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    text = _text(out)
    assert "What-if comparison of s.sqlite" in text
    assert "alice freezes B" in text and "Page 1 of" in text
    assert main(["whatif", str(store), "--at", "0", "--out", str(tmp_path / "x.txt")]) == 2
