"""The Overview's stress ladder: per currency, what the fund would pay, the deficit left and the
projected clawback ratio if every mark moved by -20 % ... +20 % (computed on the engine thread,
core/session/stress.py; shown as it arrives in the snapshot)."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtWidgets import QGroupBox, QVBoxLayout, QWidget

from console.models.base import Column
from console.models.records import RecordsModel
from console.widgets.table import DataTable
from core.model.units import format_minor
from core.session.snapshot import Snapshot, StressRow

FIGURES = (
    ("liquidations", "Liquidated", "positions (isolated) and cross accounts liquidated there"),
    ("fund_pays", "Fund pays", "of the deficit waiting for settlement plus the new one"),
    ("deficit_left", "Deficit left", "what the fund could not pay: shared by the clawback"),
    ("clawback_ratio", "Clawback ratio", "the projected clawback ratio at those marks"),
)


@dataclass(frozen=True, slots=True)
class LadderLine:
    """One figure of one currency across every shock."""

    currency: str
    figure: str
    cells: tuple[str, ...]


def shock_text(shock: float) -> str:
    return f"{shock:+.0%}" if shock else "0 %"


def ladder_lines(rows: tuple[StressRow, ...]) -> tuple[tuple[float, ...], list[LadderLine]]:
    """The shocks (columns) and a line per currency and figure, amounts in the currency's units."""
    shocks = tuple(sorted({r.shock for r in rows}))
    lines = []
    for code in dict.fromkeys(r.currency for r in rows):
        mine = {r.shock: r for r in rows if r.currency == code}
        for key, title, _ in FIGURES:
            cells = []
            for shock in shocks:
                r = mine[shock]
                if key == "liquidations":
                    cells.append(f"{r.liquidations:,}")
                elif key == "clawback_ratio":
                    cells.append(f"{r.clawback_ratio:.2%}")
                else:
                    cells.append(format_minor(getattr(r, key), r.decimals, display=True))
            lines.append(LadderLine(code, title, tuple(cells)))
    return shocks, lines


class StressLadder(QGroupBox):
    """A small table: a line per currency and figure, a column per mark shock."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Stress ladder (every mark moved by)", parent)
        self.setObjectName("stress-ladder")
        self.setToolTip(
            "At each shocked mark: positions liquidated there, what the insurance fund's free "
            "balance pays, the deficit left and the clawback ratio it makes (recomputed about "
            "once a second on the engine thread)"
        )
        self.shocks: tuple[float, ...] = ()
        self.model: RecordsModel[LadderLine] = RecordsModel((), lambda line: ())
        self.table = DataTable(self.model, "stress-ladder")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.table)
        self.setMinimumWidth(560)
        self.rows: tuple[StressRow, ...] = ()

    def update_snapshot(self, snap: Snapshot) -> None:
        if snap.stress is self.rows:
            return  # the engine reuses the last ladder between its recomputations
        self.rows = snap.stress
        shocks, lines = ladder_lines(snap.stress)
        if shocks != self.shocks:
            self.shocks = shocks
            columns = (
                Column("currency", "Cur.", "settle currency", numeric=False),
                Column("figure", "Figure", "what is shown", numeric=False),
                *(
                    Column(f"s{n}", shock_text(s), "every mark moved by this")
                    for n, s in enumerate(shocks)
                ),
            )
            self.model = RecordsModel(
                columns, lambda line: (line.currency, line.figure, *line.cells)
            )
            self.table.setModel(self.model)
        self.model.set_records(lines)
        self.table.size_columns(sample_rows=self.model.rowCount())

    def row_at(self, currency: str, shock: float) -> StressRow | None:
        return next((r for r in self.rows if r.currency == currency and r.shock == shock), None)
