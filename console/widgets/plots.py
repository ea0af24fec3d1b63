"""Plot helpers: themed pyqtgraph plots with unit-labelled axes, UTC time axes, curves made once
with downsampling and clip-to-view, and a context menu with PNG export that the plot's owner may
extend with actions at the x under the cursor."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtWidgets import QFileDialog, QGraphicsItem, QMenu, QWidget

THEMES = {
    "light": {
        "background": "#ffffff",
        "foreground": "#202830",
        "grid": 0.25,
        "index": "#5b6570",
        "mark": "#1f6fd1",
        "last": "#e08a00",
        "long": "#d23c3c",
        "short": "#1f9d55",
        "fund": "#6a3fc1",
        "reserved": "#c05fa0",
        "bar": "#4f7fbf",
        "line": "#d23c3c",
        "spark": "#1f6fd1",
    },
    "dark": {
        "background": "#1b1f24",
        "foreground": "#d9dee4",
        "grid": 0.2,
        "index": "#a9b3be",
        "mark": "#5aa9ff",
        "last": "#ffb347",
        "long": "#ff6b6b",
        "short": "#4fd18b",
        "fund": "#b79bff",
        "reserved": "#f29bd0",
        "bar": "#6fa3e8",
        "line": "#ff6b6b",
        "spark": "#5aa9ff",
    },
}


def colours(theme: str) -> dict[str, object]:
    return THEMES.get(theme, THEMES["light"])


# Adds actions to a plot's context menu, given the x under the cursor in the plot's units.
MenuExtension = Callable[[QMenu, float], None]


class Plot(pg.PlotWidget):
    """A plot with a title, unit-labelled axes, optional UTC time axis, and 'Save as PNG'; each of
    `menu_extensions` adds its actions to the context menu."""

    def __init__(
        self,
        title: str,
        left: str,
        bottom: str,
        *,
        time_axis: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        axes = {"bottom": pg.DateAxisItem(orientation="bottom", utcOffset=0)} if time_axis else {}
        super().__init__(parent=parent, axisItems=axes)
        self.setObjectName(title)
        self.plot_title = title
        self.units = (left, bottom)
        item = self.getPlotItem()
        item.setTitle(title)
        item.setLabel("left", left)
        item.setLabel("bottom", bottom)
        item.showGrid(x=True, y=True, alpha=0.25)
        item.setClipToView(True)
        item.setDownsampling(auto=True, mode="peak")
        item.getAxis("left").enableAutoSIPrefix(False)
        item.getAxis("left").setWidth(64)
        for name in ("left", "bottom"):
            # The axes draw the grid and the labels: two thirds of a redraw at 1M points. Kept
            # as a pixmap, they are drawn again only when their ticks move.
            item.getAxis(name).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.setMinimumHeight(160)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)
        self.getPlotItem().setMenuEnabled(False)
        self.menu_extensions: list[MenuExtension] = []

    def curve(self, colour_key: str, theme: str, name: str, **kw: object) -> pg.PlotDataItem:
        item = self.getPlotItem().plot([], [], name=name, **kw)
        item.colour_key = colour_key  # type: ignore[attr-defined]
        item.setPen(
            pg.mkPen(
                colours(theme)[colour_key], width=1.5, style=kw.get("style", Qt.PenStyle.SolidLine)
            )
        )
        item.setClipToView(True)
        item.setDownsampling(auto=True, method="peak")
        return item

    def apply_theme(self, theme: str) -> None:
        c = colours(theme)
        self.setBackground(c["background"])
        item = self.getPlotItem()
        for name in ("left", "bottom"):
            axis = item.getAxis(name)
            axis.setPen(pg.mkPen(c["foreground"]))
            axis.setTextPen(pg.mkPen(c["foreground"]))
        item.setTitle(self.plot_title, color=c["foreground"])
        for data_item in item.listDataItems():
            key = getattr(data_item, "colour_key", None)
            if key is not None and isinstance(data_item, pg.PlotDataItem):
                style = (
                    data_item.opts["pen"].style()
                    if data_item.opts.get("pen")
                    else Qt.PenStyle.SolidLine
                )
                data_item.setPen(pg.mkPen(c[key], width=1.5, style=style))
        legend = item.legend
        if legend is not None:
            legend.setLabelTextColor(c["foreground"])

    def save_png(self, path: str | Path) -> bool:
        return self.grab().save(str(path), "PNG")

    def x_at(self, pos: QPoint) -> float:
        """The x in the plot's units (epoch seconds on a time axis) at widget position `pos`."""
        scene = self.mapToScene(pos)
        return float(self.getPlotItem().getViewBox().mapSceneToView(QPointF(scene)).x())

    def context_menu(self, pos: QPoint) -> QMenu:
        menu = QMenu(self)
        menu.addAction("Save chart as PNG…", self._save_dialog)
        menu.addAction("Auto-range", lambda: self.getPlotItem().enableAutoRange())
        if self.menu_extensions:
            x = self.x_at(pos)
            for extend in self.menu_extensions:
                extend(menu, x)
        return menu

    def _menu(self, pos: QPoint) -> None:
        self.context_menu(pos).exec(self.mapToGlobal(pos))

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save chart", f"{self.plot_title.replace(' ', '-').lower()}.png", "PNG (*.png)"
        )
        if path:
            self.save_png(path)


def finite_xy(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points of a sampled series (NaN where not sampled)."""
    keep = np.isfinite(y)
    if keep.all():
        return x, y
    return x[keep], y[keep]
