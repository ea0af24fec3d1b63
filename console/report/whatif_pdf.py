"""The what-if section of a PDF (the incident report's, when branches exist beside its store, and
`risk-console whatif ... --out COMPARE.pdf`): what each branch changed, the outcomes side by
side, the fund's path of every run overlaid and where each run's deficit went."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainterPath, QPen

from console.report.charts import _Axes, _canvas, _epoch, _font, nice_ticks
from console.report.style import BODY_W, DPI, INK, MUTED, PALETTE
from core.model.units import format_minor

WHATIF_FUND_SIZE, WHATIF_COVER_SIZE = (BODY_W, 170.0), (BODY_W, 170.0)
COVER = ("fund", "injection", "clawback", "adl", "uncovered")
COVER_COLOURS = ("#6a3fc1", "#c05fa0", "#e08a00", "#1f9d55", "#c0392b")


class Flow(Protocol):
    """What the section needs of a page flow (console/report/pdf.py `_Flow`)."""

    def heading(self, text: str, level: int = 2) -> None: ...

    def text(self, text: str, size: float = 8.5, **kw: Any) -> None: ...

    def muted(self, text: str) -> None: ...

    def image(self, image: QImage, size: tuple[float, float]) -> None: ...

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[object]],
        widths: Sequence[float],
        right: Collection[int] = (),
    ) -> None: ...


def changes_line(changes: Mapping[str, Any]) -> str:
    """What a branch changed, in words."""
    if not changes:
        return "the run as its store holds it"
    at = changes["at"]
    parts = []
    for a in changes.get("actions", []):
        what = a.get("action", "?").replace("_", " ")
        subject = a.get("account") or a.get("request") or a.get("currency")
        extra = f" {a['contracts']:,} {a['symbol']}" if "contracts" in a else ""
        parts.append(f"{a.get('operator')} {what}s {subject or ''}{extra}".strip())
    parts += [f"policy {k} set to {str(v).lower()}" for k, v in changes.get("policy", {}).items()]
    when = str(at["time"]).replace("T", " ").removesuffix("Z")
    return f"From {when} UTC (tick {at['tick']}): " + ("; ".join(parts) or "nothing changed")


def _minor(text: str, decimals: int) -> int:
    return int(Decimal(text).scaleb(decimals))


def _m(text: str, decimals: int) -> str:
    return format_minor(_minor(text, decimals), decimals)


def _codes(doc: Mapping[str, Any]) -> list[str]:
    return list(doc["runs"][0]["currencies"]) if doc["runs"] else []


def whatif_images(doc: Mapping[str, Any], dpi: int = DPI) -> dict[str, QImage]:
    out = {}
    for code in _codes(doc):
        if any(r["currencies"][code]["fund"]["path"] for r in doc["runs"]):
            out[f"whatif-fund-{code}"] = _fund_chart(doc, code, dpi)
        out[f"whatif-cover-{code}"] = _cover_chart(doc, code, dpi)
    return out


def whatif_section(
    f: Flow, doc: Mapping[str, Any], images: Mapping[str, QImage], *, number: int | None = None
) -> None:
    """The question, the outcomes side by side (a column per run), the charts, the accounts."""
    runs = doc["runs"]
    title = "What-if branches"
    f.heading(f"{number}. {title}" if number else title)
    f.text(
        f"The original run and {len(runs) - 1} branch(es) of it: each branch takes the stored "
        "state at its branch point, changes what is listed, and runs to the end. Amounts are "
        "exact; for each run deficit = fund + injection + clawback + ADL + uncovered."
    )
    f.table(
        ("Run", "What it changed"),
        [(r["name"], changes_line(r["changes"])) for r in runs],
        (1, 4),
    )
    names = [r["name"] for r in runs]
    for code in _codes(doc):
        cur = [r["currencies"][code] for r in runs]
        d = int(cur[0].get("decimals", 8))
        rows: list[list[str]] = [
            ["Liquidations", *(f"{c['liquidations']['count']:,}" for c in cur)],
            ["Contracts liquidated", *(f"{c['liquidations']['contracts']:,}" for c in cur)],
            ["Fund at the end", *(_m(c["fund"]["end"], d) for c in cur)],
            ["Fund's lowest", *(_m(c["fund"]["min"], d) for c in cur)],
            ["Deficit", *(_m(c["deficit"]["total"], d) for c in cur)],
        ]
        for key, label in zip(
            COVER, ("paid by the fund", "by injection", "by clawback", "by ADL", "uncovered"),
            strict=True,
        ):  # fmt: skip
            rows.append([f"  {label}", *(_m(c["deficit"][key], d) for c in cur)])
        rows.append(
            [
                "Clawback ratio",
                *(
                    f"{c['clawbacks'][-1]['ratio']} ({c['clawbacks'][-1]['status']})"
                    if c["clawbacks"]
                    else "-"
                    for c in cur
                ),
            ]
        )
        rows.append(["ADL contracts", *(f"{c['adl_contracts']:,}" for c in cur)])
        rows.append(["Ledger balanced", *("yes" if r["ledger_balanced"] else "NO" for r in runs)])
        f.heading(f"Outcomes side by side ({code})", 3)
        f.table(
            ("Figure", *names), rows, (1.6, *([1.0] * len(runs))), right=range(1, len(runs) + 1)
        )
        if f"whatif-fund-{code}" in images:
            f.image(images[f"whatif-fund-{code}"], WHATIF_FUND_SIZE)
        else:
            start = _m(cur[0]["fund"]["start"], d)
            f.muted(f"The insurance fund did not move in any run ({start} {code} throughout).")
        f.image(images[f"whatif-cover-{code}"], WHATIF_COVER_SIZE)
    accounts = doc["accounts"][:20]
    if accounts:
        f.heading("Accounts that paid or ended differently", 3)
        table = []
        for a in accounts:
            d = int(doc["runs"][0]["currencies"][a["currency"]].get("decimals", 8))
            table.append(
                [a["account"], a["currency"]]
                + [
                    f"paid {_m(v['paid'], d)}; equity {_m(v['equity_end'], d)}"
                    for v in (a["runs"][n] for n in names)
                ]
            )
        f.table(("Account", "Cur.", *names), table, (1.1, 0.5, *([1.6] * len(runs))))
        f.muted(
            f"{len(accounts)} of {len(doc['accounts'])} accounts listed, the largest difference "
            "from the original first; the comparison's JSON or CSV lists them all."
        )


def _fund_chart(doc: Mapping[str, Any], code: str, dpi: int) -> QImage:
    image, p = _canvas(WHATIF_FUND_SIZE, dpi)
    runs = doc["runs"]
    d = int(runs[0]["currencies"][code].get("decimals", 8))
    scale = 10.0**d
    lines = []
    for r in runs:
        c = r["currencies"][code]
        times = [_epoch(t) for t, _ in c["fund"]["path"]]
        values = [_minor(c["fund"]["start"], d) / scale]
        values += [_minor(b, d) / scale for _, b in c["fund"]["path"]]
        lines.append((r["name"], times, values))
    all_times = [t for _, times, _ in lines for t in times]
    x0, x1 = (min(all_times), max(all_times)) if all_times else (0.0, 1.0)
    x0, x1 = x0 - (x1 - x0) * 0.03 - 1, x1 + (x1 - x0) * 0.03 + 1
    top = max((v for _, _, values in lines for v in values), default=1.0)
    ticks = nice_ticks(0.0, top * 1.08 or 1.0)
    axes = _Axes(p, WHATIF_FUND_SIZE, (x0, x1), (ticks[0], ticks[-1]))
    axes.frame(f"Insurance fund, each run ({code})", code, ticks, lambda v: f"{v:,.6g}")
    axes.time_axis()
    legend = []
    for n, (name, times, values) in enumerate(lines):
        colour = QColor(PALETTE[n % len(PALETTE)])
        path = QPainterPath(QPointF(axes.px(x0), axes.py(values[0])))
        for k, t in enumerate(times):
            path.lineTo(QPointF(axes.px(t), axes.py(values[k])))
            path.lineTo(QPointF(axes.px(t), axes.py(values[k + 1])))
        path.lineTo(QPointF(axes.px(x1), axes.py(values[-1])))
        pen = QPen(colour, 1.4 if n else 1.0)
        if n == 0:
            pen.setStyle(Qt.PenStyle.DashLine)
        p.setPen(pen)
        p.drawPath(path)
        legend.append((name, colour))
    axes.legend(legend)
    p.end()
    return image


def _cover_chart(doc: Mapping[str, Any], code: str, dpi: int) -> QImage:
    """A stacked bar per run: the deficit and the parts that covered it."""
    image, p = _canvas(WHATIF_COVER_SIZE, dpi)
    runs = doc["runs"]
    d = int(runs[0]["currencies"][code].get("decimals", 8))
    scale = 10.0**d
    parts = [[_minor(r["currencies"][code]["deficit"][k], d) / scale for k in COVER] for r in runs]
    top = max((sum(x) for x in parts), default=1.0)
    ticks = nice_ticks(0.0, top * 1.15 or 1.0)
    axes = _Axes(p, WHATIF_COVER_SIZE, (0.0, float(len(runs))), (ticks[0], ticks[-1]))
    axes.frame(f"Where each run's deficit went ({code})", code, ticks, lambda v: f"{v:,.6g}")
    for n, (run, values) in enumerate(zip(runs, parts, strict=True)):
        x0, x1 = axes.px(n + 0.25), axes.px(n + 0.75)
        bottom = 0.0
        for value, colour in zip(values, COVER_COLOURS, strict=True):
            if value > 0:
                y0, y1 = axes.py(bottom + value), axes.py(bottom)
                p.setPen(Qt.PenStyle.NoPen)
                p.setBrush(QColor(colour))
                p.drawRect(QRectF(x0, y0, x1 - x0, max(0.6, y1 - y0)))
            bottom += value
        _font(p, 6.0)
        p.setPen(INK)
        total = _m(run["currencies"][code]["deficit"]["total"], d)
        box = QRectF(x0 - 30, axes.py(bottom) - 10, x1 - x0 + 60, 9)
        p.drawText(box, Qt.AlignmentFlag.AlignHCenter, total)
        p.setPen(MUTED)
        label = QRectF(axes.px(n), axes.area.bottom() + 3, axes.px(n + 1) - axes.px(n), 10)
        p.drawText(label, Qt.AlignmentFlag.AlignHCenter, run["name"])
    axes.legend([(k, QColor(c)) for k, c in zip(COVER, COVER_COLOURS, strict=True)])
    p.end()
    return image
