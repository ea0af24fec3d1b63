"""A feed message on the wire: one JSON object, decoded; what is not JSON is kept, short, as
`Unreadable` so that the consumer refuses it with its sequence number; and what a reader tells
the one who watches it (`FeedWatch`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

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


class FeedWatch(Protocol):
    """Told how a reader's connection goes; asked whether to stop (a reader waiting for the next
    message looks at least once a second)."""

    def connection(self, state: str) -> None: ...

    def received(self, pending: int) -> None: ...

    def stopping(self) -> bool: ...
