"""What operator names look like to a reader: the skeleton two names share when one could be
taken for the other (docs/operators.md, "Names")."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

# Within the name set (ASCII lower-case, digits, '_', '.', '-'), the characters a reader takes for
# one another: the confusables of Unicode TR39 that stay in the set, and the separators.
LOOK_ALIKE = (
    ("rn", "m"),
    ("vv", "w"),
    ("cl", "d"),
    ("0", "o"),
    ("1", "l"),
    ("-", "_"),
    (".", "_"),
)


def skeleton(name: str) -> str:
    """What `name` looks like: names with the same skeleton are taken for one another."""
    shape = unicodedata.normalize("NFKC", name).casefold()
    for seen, meant in LOOK_ALIKE:
        shape = shape.replace(seen, meant)
    return shape


def look_alike(name: str, existing: Iterable[str]) -> str | None:
    """The first of `existing` (other than `name` itself) that looks like `name`, if any."""
    shape = skeleton(name)
    return next((other for other in existing if other != name and skeleton(other) == shape), None)
