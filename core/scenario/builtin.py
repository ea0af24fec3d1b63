"""The built-in scenarios shipped in assets/scenarios, by name, and how a name on a command line
or in the console finds its file (a path first, then a built-in name)."""

from __future__ import annotations

from pathlib import Path

from core.model.errors import InputError

SCENARIOS = Path(__file__).resolve().parents[2] / "assets" / "scenarios"


def builtin_scenarios() -> dict[str, Path]:
    return {p.stem: p for p in sorted(SCENARIOS.glob("*.json"))}


def resolve_scenario(name: str) -> Path:
    path = Path(name)
    if path.exists():
        return path
    builtin = builtin_scenarios()
    if name in builtin:
        return builtin[name]
    raise InputError(
        "SCENARIO", f"no file {name!r} and no built-in scenario of that name ({', '.join(builtin)})"
    )
