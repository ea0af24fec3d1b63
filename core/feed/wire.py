"""A feed message on the wire: one JSON object, decoded; what is not JSON is kept, short, as
`Unreadable` so that the consumer refuses it with its sequence number."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A message that is not a JSON object (kept short for the refusal)."""

    text: str


def decoded(line: str) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return Unreadable(line.strip()[:80])
