"""An incident report written to a file in any of its formats (PDF, JSON, CSV): the one path the
command line (`risk-console report`) and the console's export dialog share."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from core.model.errors import InputError

FORMATS = ("pdf", "json", "csv")


def output_format(out: str, chosen: str | None) -> str:
    if chosen is not None:
        return chosen
    suffix = Path(out).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise InputError(
            "--format", f"cannot tell the format of {out!r}: give --format pdf|json|csv"
        )
    return suffix


def ensure_gui_app() -> Any:
    """A QGuiApplication for fonts and painting, offscreen unless a platform is named."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    return QGuiApplication.instance() or QGuiApplication(["risk-console"])


def export(
    store_path: str | Path,
    out: str | Path,
    fmt: str,
    *,
    start: str | None = None,
    end: str | None = None,
    accounts: list[str] | None = None,
    symbols: list[str] | None = None,
    top: int = 20,
    distributions: bool = True,
    generated_at: str | None = None,
    progress: Any = None,
) -> str:
    """Build the report and write it to `out` in `fmt` (under a temporary name, renamed when
    complete: a failure leaves no half report), with the comparison of the what-if branches
    beside the store in any format when there are some; returns a one-line description of it."""
    from core.model import files
    from core.report import output as report_io
    from core.report.report import build_report
    from core.store.store import Store
    from core.whatif import compare

    if fmt not in FORMATS:
        raise InputError("--format", f"expected one of {', '.join(FORMATS)}, found {fmt!r}")
    store = Store.open(store_path)
    target = Path(out)
    try:
        report = build_report(
            store.db,
            start=start,
            end=end,
            accounts=accounts or None,
            instruments=symbols or None,
            store_path=store_path,
            generated_at=generated_at,
            top=top,
            distributions=distributions and fmt != "csv",
            progress=progress,
        )
        # Once for every format: each carries the same comparison of the branches.
        whatif = branches_comparison(store_path, top=top)
        if fmt == "json":
            report_io.write_json(report, target, whatif)
            what = f"{len(report.timeline)} timeline entries"
        elif fmt == "csv":
            extra = None
            if whatif is not None:
                extra = report_io.ExtraRecords(
                    "whatif", compare.CSV_COLUMNS, compare.csv_rows(whatif)
                )
            with files.replacing(target) as handle:
                rows = report_io.write_csv(report, store.db, handle, extra)
            what = f"{rows} rows"
        else:
            from console.report.pdf import write_pdf

            ensure_gui_app()
            what = f"{write_pdf(report, target, whatif=whatif)} pages"
        if whatif is not None:
            what += f" (with {len(whatif['runs']) - 1} what-if branches)"
    finally:
        store.close()
    return f"incident report of {report.scope.start} to {report.scope.end}: {what} -> {target}"


def branches_comparison(store_path: str | Path, *, top: int) -> dict[str, Any] | None:
    """The comparison of the branches beside the store (STORE.whatif/), the `top` accounts per
    currency as the report's own tables; None without any. A branch left by another run at that
    path (other accounts) is no part of this report."""
    from core.whatif.runs import stored_comparison

    try:
        return stored_comparison(store_path, top=top)
    except InputError:
        return None
