"""Errors the core raises: bad input, naming the field it is about, and files it could not write."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: `field` is the path of the offending value (`accounts[3].positions[0].side`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class WriteError(OSError):
    """A file could not be written (full disk, quota, size limit, read-only folder): `path` is the
    file, and whatever it held before is unchanged. An OSError, so callers that already report
    I/O failures report this one too."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class SnapshotFormatError(InputError):
    """A store's snapshot that is not what this version writes: refused with its reason, never
    executed or imported."""

    def __init__(self, message: str) -> None:
        super().__init__("STORE", f"a snapshot {message}")
