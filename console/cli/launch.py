"""Which command lines open the window rather than run headless (no Qt imported here)."""

from __future__ import annotations

from collections.abc import Sequence

GUI_FLAGS = (
    "--screenshot",
    "--quit-after",
    "--theme",
    "--paused",
    "--speed",
    "--store",
    "--settings",
)


def wants_gui(argv: Sequence[str]) -> bool:
    """No arguments, `open PATH`, or window options: the console window."""
    if not argv:
        return True
    first = argv[0]
    return first == "open" or any(first == f or first.startswith(f + "=") for f in GUI_FLAGS)


def launch_if_gui(argv: Sequence[str]) -> int | None:
    """Run the window and return its exit code when `argv` asks for it; None otherwise."""
    if not wants_gui(argv):
        return None
    from console.app import main

    return main(list(argv))
