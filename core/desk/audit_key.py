"""What keeps the audit chain honest from outside the store: the HMAC key file (0600, in the
user's config folder) and anchor files recording a chain's head (row count and hash)."""

from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from core.model.errors import InputError

# The key file's path; tests and desks that keep the key elsewhere (a mounted secret) set it.
KEY_ENV = "RISK_CONSOLE_AUDIT_KEY"
KEY_BYTES = 32


def key_path() -> Path:
    """$RISK_CONSOLE_AUDIT_KEY, else $XDG_CONFIG_HOME/risk-console/audit.key (~/.config/...)."""
    override = os.environ.get(KEY_ENV)
    if override:
        return Path(override).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "risk-console" / "audit.key"


def load_key(path: Path | None = None, *, create: bool = False) -> bytes | None:
    """The key at `path` (key_path() by default); None when there is none and not `create`.

    A key readable by others, or not 64 hex digits, is an InputError: the chain would prove
    nothing with a key anyone on the machine can read."""
    path = path or key_path()
    if create and not path.exists():
        _create(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError("audit key", f"cannot read {path} ({error})") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(
            "audit key", f"{path} is readable by others (mode {mode & 0o777:o}): chmod 600 {path}"
        )
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise InputError("audit key", f"{path} does not hold a key ({KEY_BYTES * 2} hex digits)")
    return key


def _create(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes creating the first key at once keep the one that got there first.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secrets.token_hex(KEY_BYTES) + "\n")


@dataclass(frozen=True, slots=True)
class Anchor:
    """The head of a store's chain as it was at `at`: `rows` rows, the last with hash `head`."""

    rows: int
    head: str
    at: str
    store: str


def write_anchor(path: Path, anchor: Anchor, store: Path) -> None:
    """Append `anchor` as one JSON line to the anchor file `path`, which must not be the store."""
    target = path.resolve()
    if target in {store.resolve(), *(Path(f"{store.resolve()}-{s}") for s in ("wal", "shm"))}:
        raise InputError("--out", "the anchor must be kept outside the store, not in it")
    line = json.dumps(
        {"rows": anchor.rows, "head": anchor.head, "at": anchor.at, "store": anchor.store},
        sort_keys=True,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_anchors(path: Path) -> list[Anchor]:
    """Every anchor of the file, oldest first; a missing or malformed file is an InputError."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError("--anchor", f"cannot read {path} ({error})") from None
    anchors = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            anchor = Anchor(int(raw["rows"]), str(raw["head"]), str(raw["at"]), str(raw["store"]))
        except (ValueError, TypeError, KeyError):
            raise InputError("--anchor", f"{path} line {number} is not an anchor") from None
        if anchor.rows < 0:
            raise InputError("--anchor", f"{path} line {number}: rows must not be negative")
        anchors.append(anchor)
    if not anchors:
        raise InputError("--anchor", f"{path} holds no anchor")
    return anchors
