"""The core never imports Qt: it must run headless and stay testable without a display."""

from __future__ import annotations

import subprocess
import sys


def test_core_imports_no_qt() -> None:
    modules = [
        "core.engine.facade",
        "core.engine.result",
        "core.scenario.parse",
        "core.scenario.crowd",
        "core.risk.margin",
    ]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6'))\n"
        + "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
