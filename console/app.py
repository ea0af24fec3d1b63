"""The Qt application: argument handling for the window (`risk-console`, `open PATH`,
`--operator NAME --password-stdin`, `--screenshot PATH --quit-after SECONDS`), themes from
assets/*.qss, start and clean shutdown."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

DEMO = "okx-2018-btc0928"
THEMES = ("light", "dark")
PASSWORD_ENV = "RISK_CONSOLE_PASSWORD"  # with --operator, for scripts that cannot pipe stdin


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="risk-console",
        description="Open the console window. With no arguments it plays the built-in demo "
        f"({DEMO}).",
    )
    # One list rather than `verb` and `path`, so that a lone PATH is not taken for the verb, and
    # options may come before, between or after the words (parse_intermixed_args).
    p.add_argument(
        "words",
        nargs="*",
        metavar="[open] PATH",
        help="a scenario (.json or built-in name), a store (.sqlite) or a live feed "
        "(nats://HOST:PORT/STREAM or FILE.jsonl) to open",
    )
    p.add_argument(
        "--store",
        "--db",
        dest="store",
        metavar="STORE",
        help="where to keep the run's store (default: a temporary file)",
    )
    p.add_argument("--theme", choices=THEMES, help="light or dark (default: the last one used)")
    p.add_argument(
        "--speed",
        type=float,
        default=0.0,
        help="simulated seconds per real second (0: as fast as possible)",
    )
    p.add_argument("--paused", action="store_true", help="open without playing")
    p.add_argument(
        "--screenshot", metavar="PNG", help="save a screenshot of the main window, then quit"
    )
    p.add_argument(
        "--quit-after", type=float, metavar="SECONDS", help="quit this many seconds after start"
    )
    p.add_argument(
        "--views", action="store_true", help="with --screenshot: also save each view beside it"
    )
    p.add_argument("--settings", metavar="INI", help="keep the window layout in this file")
    p.add_argument(
        "--geometry",
        type=_geometry,
        metavar="WxH+X+Y",
        help="the window's size and place on the screen (two desks side by side on one screen)",
    )
    p.add_argument(
        "--operator",
        metavar="NAME",
        help=f"log in as NAME without the dialog; the password from --password-stdin or "
        f"${PASSWORD_ENV} (the dialog opens when it is missing or wrong)",
    )
    p.add_argument(
        "--password-stdin", action="store_true", help="with --operator: read one line from stdin"
    )
    return p


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The window's options in any order, with `verb` ("open" or None) and `path` (None: the
    demo) from the words; a usage error exits with code 2, as argparse does."""
    p = parser()
    args = p.parse_intermixed_args(list(argv))
    words = list(args.words)
    args.verb = words.pop(0) if words[:1] == ["open"] else None
    if len(words) > 1:
        p.error(f"expected one PATH to open, found {len(words)}: {' '.join(words)}")
    if args.verb == "open" and not words:
        p.error("open needs a PATH (a scenario or a store)")
    args.path = words[0] if words else None
    return args


def _geometry(text: str) -> tuple[int, int, int, int]:
    """(x, y, width, height) of `WxH+X+Y`."""
    size, _, place = text.partition("+")
    width, _, height = size.partition("x")
    x, _, y = place.partition("+")
    try:
        values = int(width), int(height), int(x or 0), int(y or 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH+X+Y, found {text!r}") from None
    if values[0] < 200 or values[1] < 150 or min(values[2:]) < 0:
        raise argparse.ArgumentTypeError(f"expected at least 200x150 at +X+Y >= 0: {text!r}")
    return values[2], values[3], values[0], values[1]


def _credentials(args: argparse.Namespace) -> tuple[str, str] | None:
    if not args.operator:
        return None
    if args.password_stdin:
        return args.operator, sys.stdin.readline().rstrip("\r\n")
    return args.operator, os.environ.get(PASSWORD_ENV, "")


def _no_display() -> bool:
    return (
        sys.platform.startswith("linux")
        and not os.environ.get("QT_QPA_PLATFORM")
        and not os.environ.get("DISPLAY")
        and not os.environ.get("WAYLAND_DISPLAY")
    )


def main(argv: Sequence[str] | None = None) -> int:
    from core.session.collection import pace_for_runs

    pace_for_runs()
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
    except SystemExit as done:  # a usage error (said on stderr) or --help
        return done.code if isinstance(done.code, int) else 2
    from core.model.errors import InputError
    from core.scenario.builtin import resolve_scenario

    try:
        source = _source(args.path or DEMO, resolve_scenario)
    except InputError as error:
        print(
            f"risk-console: error: {error} (`risk-console --help` lists the commands)",
            file=sys.stderr,
        )
        return 2
    if _no_display():
        # Qt would abort with a misleading message about libxcb-cursor0.
        print(
            "risk-console: error: no display (set DISPLAY, run under xvfb-run, or set "
            "QT_QPA_PLATFORM=offscreen)",
            file=sys.stderr,
        )
        return 2

    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from console.widgets.theme import apply_theme
    from console.window.main_window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "risk-console"])
    app.setApplicationName("risk-console")
    app.setOrganizationName("risk-console")
    settings = (
        QSettings(args.settings, QSettings.Format.IniFormat)
        if args.settings
        else QSettings("risk-console", "risk-console")
    )
    theme = args.theme or str(settings.value("theme", "light"))
    theme = theme if theme in THEMES else "light"
    apply_theme(app, theme)
    window = MainWindow(settings=settings, theme=theme, login=True)
    window.desk.credentials = _credentials(args)
    if args.geometry:
        window.setGeometry(*args.geometry)
    window.show()
    window.bridge.set_speed(args.speed)
    window.open_source(source, args.store, play=not args.paused)
    outcome = {"code": 0}

    if args.screenshot or args.quit_after is not None:
        QTimer.singleShot(
            int(1000 * (args.quit_after if args.quit_after is not None else 10.0)),
            lambda: _finish(app, window, args, outcome),
        )
    app.exec()
    _close(app, window)
    return outcome["code"]


def _source(path: str, resolve: object) -> Path | str:
    from core.feed.transports import is_feed_url, is_nats

    if is_feed_url(path):
        if is_nats(path):
            from core.feed.nats_stream import parse_url

            parse_url(path)  # a malformed URL is refused here, before the window opens
        elif path != "-" and not Path(path).exists():
            from core.model.errors import InputError

            raise InputError("PATH", f"no feed file {path!r}")
        return path
    candidate = Path(path)
    if candidate.suffix in (".sqlite", ".db"):
        if not candidate.exists():
            from core.model.errors import InputError

            raise InputError("PATH", f"no store {path!r}")
        return candidate
    return resolve(path)  # type: ignore[operator]


def _finish(
    app: object,
    window: object,
    args: argparse.Namespace,
    outcome: dict[str, int],
    waited: float = 0.0,
) -> None:
    """Save the screenshot once the first snapshot is shown (waiting up to a minute), then quit."""
    from PySide6.QtCore import QTimer

    if args.screenshot:
        if window.updates == 0 and waited < 60.0:  # type: ignore[attr-defined]
            QTimer.singleShot(200, lambda: _finish(app, window, args, outcome, waited + 0.2))
            return
        path = Path(args.screenshot)
        path.parent.mkdir(parents=True, exist_ok=True)
        ok = window.updates > 0 and window.screenshot(path)  # type: ignore[attr-defined]
        if ok and args.views:
            _save_views(window, path)
        print(f"risk-console: screenshot {'saved to ' + str(path) if ok else 'failed'}")
        outcome["code"] = 0 if ok else 1
    window.close()  # type: ignore[attr-defined]
    app.quit()  # type: ignore[attr-defined]


def _save_views(window: object, path: Path) -> None:
    """Each view alone, raised in its dock, beside the main screenshot."""
    from PySide6.QtWidgets import QScrollArea

    from console.window.operator_desk import DOCKS

    operations = {title for title, _, _ in DOCKS}
    layout = window.saveState()  # type: ignore[attr-defined]
    for title, dock in window.docks.items():  # type: ignore[attr-defined]
        dock.show()
        dock.raise_()
        _settle(window)
        name = title.lower().replace(" ", "-")
        if title in operations:
            # Grabbed floating at a readable size: in its tab the view shares the bottom strip.
            dock.setFloating(True)
            dock.resize(1280, 960)
            _settle(window)
            name = f"operations-{name}"
        view = dock.widget()
        if isinstance(view, QScrollArea):
            view = view.widget()  # the whole view, not the part scrolled into sight
        view.grab().save(str(path.with_name(f"{path.stem}-{name}.png")), "PNG")
        if dock.isFloating():
            dock.setFloating(False)
    window.charts.grab().save(str(path.with_name(f"{path.stem}-charts.png")), "PNG")  # type: ignore[attr-defined]
    window.restoreState(layout)  # type: ignore[attr-defined]
    window.docks["Accounts"].raise_()  # type: ignore[attr-defined]


def _settle(window: object, seconds: float = 5.0) -> None:
    """Process events until the store queries a raised view sent are answered (the engine thread
    answers them) and shown, for at most `seconds`."""
    import time

    from PySide6.QtWidgets import QApplication

    QApplication.processEvents()
    deadline = time.monotonic() + seconds
    while window.bridge.answers_due and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.01)
        QApplication.processEvents()
    QApplication.processEvents()


def _close(app: object, window: object) -> None:
    """Close and delete the window with events processed: pyqtgraph can crash at interpreter exit
    (python -X dev) when a plot outlives the application."""
    from PySide6.QtCore import QEvent
    from PySide6.QtWidgets import QApplication

    window.bridge.shutdown()  # type: ignore[attr-defined]
    window.deleteLater()  # type: ignore[attr-defined]
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    QApplication.processEvents()


if __name__ == "__main__":
    sys.exit(main())
