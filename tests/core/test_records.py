"""The bulk record constructor: the same values as the class's own constructor, still frozen."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core.model import events
from core.model.records import maker
from core.store.state_rows import RECORDS

EVENT_CLASSES = [
    cls
    for cls in vars(events).values()
    if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == events.__name__
]


def sample(i: int) -> object:
    """A field value that differs by position and is hashable and picklable."""
    return (datetime(2025, 1, 1, tzinfo=UTC), f"v{i}", i, Decimal(i) / 7, float(i) + 0.5)[i % 5]


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.__name__)
def test_made_event_equals_the_constructed_one(cls: type) -> None:
    values = [sample(i) for i in range(len(dataclasses.fields(cls)))]
    made = maker(cls)(*values)
    built = cls(*values)
    assert type(made) is cls
    assert made == built
    assert hash(made) == hash(built)
    assert repr(made) == repr(built)
    assert pickle.loads(pickle.dumps(made)) == built
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.time = None  # type: ignore[attr-defined]


def test_the_liquidation_events_are_built_field_by_field() -> None:
    filled = maker(events.LiquidationFilled)
    names = [f.name for f in dataclasses.fields(events.LiquidationFilled)]
    made = filled(*names)
    assert [getattr(made, name) for name in names] == names


def test_every_record_a_snapshot_reads_back_can_be_made() -> None:
    refused = []
    for cls in RECORDS:
        try:
            maker(cls)
        except TypeError:
            refused.append(cls.__name__)
    assert refused == []


def test_a_class_that_is_not_a_slots_dataclass_of_its_own_fields_is_refused() -> None:
    @dataclasses.dataclass(frozen=True)
    class Plain:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Base:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Derived(Base):
        b: int

    for cls in (Plain, Derived):
        with pytest.raises(TypeError, match="not a slots dataclass"):
            maker(cls)
    with pytest.raises(TypeError):
        maker(events.LiquidationStarted)(1, 2)
