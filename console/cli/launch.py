"""Which command lines open the window rather than run headless (no Qt imported here): window
options in any order, with or without `open PATH`, and every other first word a command."""

from __future__ import annotations

from collections.abc import Collection, Sequence

# The window's options (console/app.py's parser) and how many values each takes.
WINDOW_OPTIONS = {
    "--store": 1,
    "--db": 1,
    "--theme": 1,
    "--speed": 1,
    "--screenshot": 1,
    "--quit-after": 1,
    "--settings": 1,
    "--geometry": 1,
    "--operator": 1,
    "--paused": 0,
    "--views": 0,
    "--password-stdin": 0,
}


def wants_gui(argv: Sequence[str], commands: Collection[str]) -> bool:
    """No arguments, window options and at most `open PATH` or a PATH, in any order: the
    window. The first word that is neither a window option nor its value decides: a command
    (`run`, `replay`, ...) runs headless; an option of no window (`--help` first, a command's
    option) goes to the command line's parser unless window options came before it."""
    return _first_word(argv, commands)[0]


def window_option_before(argv: Sequence[str], commands: Collection[str]) -> str | None:
    """The first window option given before a command (`--theme dark run ...`), which the
    command would not understand; None when there is none."""
    gui, option = _first_word(argv, commands)
    return None if gui else option


def _first_word(argv: Sequence[str], commands: Collection[str]) -> tuple[bool, str | None]:
    """(whether `argv` opens the window, the first window option met before deciding)."""
    index, first_option = 0, None
    while index < len(argv):
        word = argv[index]
        name, has_value, _ = word.partition("=")
        if name in WINDOW_OPTIONS:
            first_option = first_option or name
            index += 1 + (0 if has_value else WINDOW_OPTIONS[name])
            continue
        if word.startswith("-") and word != "-":
            return first_option is not None, first_option
        return word not in commands, first_option
    return True, first_option


def launch_if_gui(argv: Sequence[str], commands: Collection[str]) -> int | None:
    """Run the window and return its exit code when `argv` asks for it; None otherwise."""
    if not wants_gui(argv, commands):
        return None
    from console.app import main

    return main(list(argv))
