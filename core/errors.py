"""Errors the core raises for bad input, each naming the field it is about."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: `field` is the path of the offending value (`accounts[3].positions[0].side`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class SnapshotFormatError(InputError):
    """A store's snapshot that is not what this version writes: refused with its reason, never
    executed or imported."""

    def __init__(self, message: str) -> None:
        super().__init__("STORE", f"a snapshot {message}")
