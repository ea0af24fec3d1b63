"""Mutated built-in scenarios: loading (and building the engine) either succeeds or raises the
loader's InputError, each example in bounded time, and a refused scenario writes no file."""

from __future__ import annotations

import copy
import dataclasses
import json
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from console.cli.main import main
from core.engine.facade import Engine
from core.model.errors import InputError
from core.scenario.parse import load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "assets" / "scenarios"
# The engine is built only for small crowds: the fuzz is about the loader, not generator speed.
CROWD_FOR_ENGINE = 300


class Raw(str):
    """JSON text written verbatim (numbers Python's json would not write: 1e400, 5,000 digits)."""


class Pairs(list):  # type: ignore[type-arg]
    """An object as (key, value) pairs, so that a key can appear twice."""


def _base(name: str) -> dict[str, Any]:
    doc = json.loads((SCENARIOS / f"{name}.json").read_text())
    if "crowd" in doc:
        doc["crowd"]["accounts"] = min(doc["crowd"]["accounts"], 200)
    return doc


BASES = {p.stem: _base(p.stem) for p in sorted(SCENARIOS.glob("*.json"))}

NASTY_RAW = ["1e400", "-1e400", "1" + "0" * 5000, "NaN", "Infinity", "[" * 5000 + "]" * 5000]
NASTY_STRINGS = [
    "",
    " ",
    "\x00",
    "A\x00",
    "１０",
    "1_000",
    " 7 ",
    "٣",
    "1e400",
    "1e-9",
    "-1",
    "0",
    "-0",
    "NaN",
    "9" * 60,
    "1." + "0" * 50_000,
    "A" * 50_000,
    "9223372036854775808",
    "100000000000",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "2018-07-31T00:00:00+01:00",
    "2018-07-31",
    "crowd-1",
    "\u200b",
]
NASTY_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    1.5,
    1e308,
    2**63,
    10**19,
    -(10**19),
    10**15,
    10**9,
    [],
    {},
    [[[[[[]]]]]],
    {"x": {"y": {"z": []}}},
]
values = st.one_of(
    st.sampled_from(NASTY_VALUES),
    st.sampled_from(NASTY_STRINGS),
    st.sampled_from(NASTY_RAW).map(Raw),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=8),
)


def _nodes(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path in the document, the root excluded."""
    found: list[tuple[Any, ...]] = [path] if path else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _nodes(value, (*path, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found += _nodes(value, (*path, i))
    return found


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def _scaled(value: Any, digits: int) -> Any:
    """A number-like value with `digits` more zeros: within the grammar, beyond the bounds."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value * 10**digits
    if isinstance(value, str) and value[:1].isascii() and value[:1].isdigit():
        whole, _, frac = value.partition(".")
        return whole + "0" * digits + ("." + frac if frac else "")
    return value


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, Any]:
    name = draw(st.sampled_from(sorted(BASES)))
    doc: Any = copy.deepcopy(BASES[name])
    for _ in range(draw(st.integers(1, 3))):
        paths = _nodes(doc)
        path = draw(st.sampled_from(paths))
        parent, key = _get(doc, path[:-1]), path[-1]
        if isinstance(parent, Pairs):
            continue
        kind = draw(st.sampled_from(["replace", "replace", "scale", "drop", "dup", "add", "key"]))
        if kind == "replace":
            parent[key] = draw(values)
        elif kind == "scale":
            parent[key] = _scaled(parent[key], draw(st.sampled_from([3, 8, 12, 19, 40])))
        elif kind == "drop":
            del parent[key]
        elif kind == "dup" and isinstance(parent, dict):
            pairs = Pairs(parent.items())
            pairs.append((key, draw(values)))
            grand = _get(doc, path[:-2]) if len(path) > 1 else None
            if grand is None:
                continue
            grand[path[-2]] = pairs
        elif kind == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["x-extra", "extra", "\x00", "A" * 1000]))] = draw(values)
        elif kind == "key" and isinstance(parent, dict):
            parent[draw(st.sampled_from(NASTY_STRINGS))] = parent.pop(key)
    return name, doc


def _encode(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Pairs):
        return "{" + ", ".join(f"{json.dumps(k)}: {_encode(v)}" for k, v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_encode(v) for v in value) + "]"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value)


def _check(tmp_path: Path, case: tuple[str, Any]) -> None:
    _, doc = case
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    source = folder / "scenario.json"
    source.write_text(_encode(doc))
    try:
        scenario = load_scenario(source)
        if scenario.crowd is None or scenario.crowd.accounts <= CROWD_FOR_ENGINE:
            Engine(scenario)
        else:
            Engine(dataclasses.replace(scenario, crowd=None))
        return
    except InputError:
        pass
    store, result = folder / "store.sqlite", folder / "result.json"
    code = main(["run", str(source), "--db", str(store), "--out", str(result), "--quiet"])
    assert code == 2
    assert not store.exists() and not result.exists()
    assert sorted(p.name for p in folder.iterdir()) == ["scenario.json"]


FUZZ = settings(
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
    database=None,
)


@settings(FUZZ, max_examples=60)  # the slow tier draws 3,000
@given(case=mutated())
def test_mutated_builtin_scenarios_never_traceback(tmp_path: Path, case: tuple[str, Any]) -> None:
    _check(tmp_path, case)


@pytest.mark.slow
@settings(FUZZ, max_examples=3000, derandomize=False)
@given(case=mutated())
def test_mutated_builtin_scenarios_never_traceback_at_length(
    tmp_path: Path, case: tuple[str, Any]
) -> None:
    _check(tmp_path, case)
