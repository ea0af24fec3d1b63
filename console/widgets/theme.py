"""The console's two themes (light and dark): the style sheet from assets/ and pyqtgraph's
defaults, applied to the whole application."""

from __future__ import annotations

from importlib import resources


def apply_theme(app: object, theme: str) -> None:
    """Style sheet and pyqtgraph defaults for `theme` (light or dark)."""
    import pyqtgraph as pg

    from console.widgets.plots import colours

    qss = resources.files("assets").joinpath(f"{theme}.qss").read_text(encoding="utf-8")
    app.setStyleSheet(qss)  # type: ignore[attr-defined]
    c = colours(theme)
    pg.setConfigOptions(background=c["background"], foreground=c["foreground"], antialias=False)
