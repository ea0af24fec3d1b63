"""The what-if comparison: the original and its branches side by side (`risk-whatif/1`), as JSON
and as one CSV table, amounts as exact decimal strings; accounts with the largest differences first."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from core.model import files
from core.model.errors import InputError
from core.model.text import csv_row, csv_writer
from core.model.units import format_minor
from core.whatif.outcome import CurrencyOutcome, RunOutcome

FORMAT = "risk-whatif/1"
MAX_RUNS = 5  # the original and up to 4 branches
CSV_COLUMNS = (
    "run",
    "currency",
    "account",
    "liquidations",
    "contracts",
    "notional",
    "fund_start",
    "fund_end",
    "fund_min",
    "deficit",
    "fund",
    "injection",
    "clawback",
    "adl",
    "uncovered",
    "adl_contracts",
    "clawback_ratio",
    "clawback_status",
    "paid",
    "equity_end",
    "difference",
)


def comparison(runs: list[RunOutcome], *, top: int = 50) -> dict[str, Any]:
    """The comparison document; `top` accounts per currency (0: every account involved)."""
    if len(runs) > MAX_RUNS:
        raise InputError(
            "--with", f"expected at most {MAX_RUNS - 1} branches, found {len(runs) - 1}"
        )
    base = runs[0]
    for run in runs[1:]:
        if run.account_ids != base.account_ids:
            raise InputError(
                "--with", f"{run.name} is a branch of another run (its accounts differ)"
            )
    return {
        "format": FORMAT,
        "runs": [_run(run) for run in runs],
        "accounts": _accounts(runs, top),
    }


def _money(c: CurrencyOutcome, minor: int) -> str:
    return format_minor(int(minor), c.decimals)


def _run(run: RunOutcome) -> dict[str, Any]:
    return {
        "name": run.name,
        "store": run.store,
        "state_hash": run.state_hash,
        "ledger_balanced": run.balanced,
        "policy": run.policy,
        "changes": run.changes,
        "currencies": {c.currency: _currency(c) for c in run.currencies},
    }


def _currency(c: CurrencyOutcome) -> dict[str, Any]:
    cov = c.coverage
    return {
        "decimals": c.decimals,
        "liquidations": {
            "count": c.liquidations,
            "contracts": c.contracts,
            "notional": _money(c, c.notional),
        },
        "fund": {
            "start": _money(c, c.fund_start),
            "end": _money(c, c.fund_end),
            "min": _money(c, c.fund_min),
            "path": [[time, _money(c, balance)] for time, balance in c.fund_path],
        },
        "deficit": {
            "total": _money(c, cov.deficit),
            "fund": _money(c, cov.fund),
            "injection": _money(c, cov.injection),
            "clawback": _money(c, cov.clawback),
            "adl": _money(c, cov.adl),
            "uncovered": _money(c, cov.uncovered),
        },
        "adl_contracts": c.adl_contracts,
        "clawbacks": [
            {"time": time, "ratio": ratio, "status": status} for time, ratio, status in c.clawbacks
        ],
    }


def _accounts(runs: list[RunOutcome], top: int) -> list[dict[str, Any]]:
    """Per currency, the accounts that paid anything or ended differently in some branch, the
    largest difference from the original first (then the most paid)."""
    base = runs[0]
    out: list[dict[str, Any]] = []
    for c, cur in enumerate(base.currencies):
        paid = np.stack([r.clawback_paid[:, c] + r.adl_paid[:, c] for r in runs])
        diff = np.stack([r.equity[:, c] - base.equity[:, c] for r in runs])
        score = np.abs(diff).max(axis=0)
        most_paid = np.abs(paid).max(axis=0)
        closed = np.stack([r.adl_contracts[:, c] for r in runs]).max(axis=0)
        involved = np.flatnonzero((score > 0) | (most_paid > 0) | (closed > 0))
        order = involved[np.lexsort((involved, -most_paid[involved], -score[involved]))]
        if top:
            order = order[:top]
        for a in order.tolist():
            out.append(
                {
                    "account": base.account_ids[a],
                    "currency": cur.currency,
                    "runs": {
                        r.name: {
                            "clawback": _money(cur, r.clawback_paid[a, c]),
                            "adl": _money(cur, r.adl_paid[a, c]),
                            "paid": _money(cur, paid[n, a]),
                            "adl_contracts": int(r.adl_contracts[a, c]),
                            "equity_end": _money(cur, r.equity[a, c]),
                            "difference": None if n == 0 else _money(cur, diff[n, a]),
                        }
                        for n, r in enumerate(runs)
                    },
                }
            )
    return out


def csv_rows(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The comparison's CSV rows, keyed by `CSV_COLUMNS` (a column a row does not use is left
    out): a row per run and currency (totals, `account` empty), then a row per run and account
    of the comparison's accounts. The comparison's own CSV and the incident report's both
    write these."""
    for run in doc["runs"]:
        for code, c in run["currencies"].items():
            last = c["clawbacks"][-1] if c["clawbacks"] else {}
            yield {
                "run": run["name"],
                "currency": code,
                "account": "",
                "liquidations": c["liquidations"]["count"],
                "contracts": c["liquidations"]["contracts"],
                "notional": c["liquidations"]["notional"],
                "fund_start": c["fund"]["start"],
                "fund_end": c["fund"]["end"],
                "fund_min": c["fund"]["min"],
                "deficit": c["deficit"]["total"],
                **{k: c["deficit"][k] for k in ("fund", "injection", "clawback", "adl")},
                "uncovered": c["deficit"]["uncovered"],
                "adl_contracts": c["adl_contracts"],
                "clawback_ratio": last.get("ratio", ""),
                "clawback_status": last.get("status", ""),
            }
    for row in doc["accounts"]:
        for name, values in row["runs"].items():
            yield {
                "run": name,
                "currency": row["currency"],
                "account": row["account"],
                "clawback": values["clawback"],
                "adl": values["adl"],
                "paid": values["paid"],
                "adl_contracts": values["adl_contracts"],
                "equity_end": values["equity_end"],
                "difference": values["difference"] or "",
            }


def csv_text(doc: dict[str, Any]) -> str:
    """One table, `CSV_COLUMNS` as its header, then `csv_rows`."""
    buffer = io.StringIO()
    writer = csv_writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for row in csv_rows(doc):
        writer.writerow(csv_row(row.get(name, "") for name in CSV_COLUMNS))
    return buffer.getvalue()


def output_format(out: str) -> str:
    """json, csv or pdf (the PDF is drawn by console/report/whatif_pdf.py)."""
    suffix = Path(out).suffix.lower().lstrip(".")
    if suffix not in ("json", "csv", "pdf"):
        raise InputError("--out", f"expected a file ending in .json, .csv or .pdf, found {out!r}")
    return suffix


def write(doc: dict[str, Any], out: str) -> None:
    """The comparison to `out`, whole or not at all."""
    fmt = output_format(out)
    if fmt == "pdf":
        raise InputError("--out", "a PDF comparison is written by the console's report")
    text = json.dumps(doc, indent=1) + "\n" if fmt == "json" else csv_text(doc)
    files.write_text(out, text)
