"""Files written whole or not at all: results, reports, exports and new stores are written under a
temporary name beside their target, flushed to disk and renamed over it only when complete."""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from core.model.errors import WriteError

TEMP_SUFFIX = ".part"
# Files SQLite keeps beside a database while it writes it.
SQLITE_SIDECARS = ("-journal", "-wal", "-shm")
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def describe(error: OSError) -> str:
    """An OSError as the words an operator acts on."""
    reason = error.strerror or str(error)
    if error.errno in _FULL:
        return f"the disk is full ({reason})"
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"the folder cannot be written ({reason})"
    if error.errno == errno.EIO:
        return f"the disk refused the write ({reason})"
    return reason


def write_error(target: Path, error: OSError, *, existed: bool) -> WriteError:
    kept = "the previous file is unchanged" if existed else "nothing was written"
    return WriteError(str(target), f"cannot write: {describe(error)}; {kept}")


def leftovers(target: Path) -> list[Path]:
    """Temporary files of `target` whose writer is gone (killed before its rename).

    The writer's process id is in the name, so a file another live process is still writing is
    left alone; on systems without signal 0 (Windows) nothing is taken for a leftover."""
    if os.name != "posix":
        return []
    found = []
    for path in target.parent.glob(f".{glob.escape(target.name)}.*{TEMP_SUFFIX}"):
        pid = path.name[len(target.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            found.append(path)
    return sorted(found)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's live process
    return True


def sweep(target: str | Path) -> list[Path]:
    """Remove the leftovers of `target` (and their SQLite sidecars); returns what was removed."""
    removed = leftovers(Path(target))
    for path in removed:
        discard(path)
    return removed


def temp_beside(target: str | Path) -> Path:
    """A new empty file in `target`'s folder (so the rename cannot cross file systems), named
    `.NAME.PID.RANDOM.part`; leftovers of earlier killed writers of `target` are removed first."""
    target = Path(target)
    sweep(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as error:
        raise write_error(target, error, existed=target.exists()) from None
    return temp


def publish(temp: Path, target: str | Path) -> None:
    """Flush `temp` to disk and rename it over `target` in one step, then make the rename itself
    durable; readers see the old file or the new one, never a part."""
    target = Path(target)
    existed = target.exists()
    try:
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, target)
        _sync_folder(target.parent)
    except OSError as error:
        discard(temp)
        raise write_error(target, error, existed=existed) from None


def _sync_folder(folder: Path) -> None:
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def discard(temp: Path) -> None:
    for path in (temp, *(temp.with_name(temp.name + s) for s in SQLITE_SIDECARS)):
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def replacing_path(target: str | Path) -> Iterator[Path]:
    """A temporary path for a writer that opens the file itself; renamed over `target` when the
    block ends normally, removed when it raises. An OSError inside is a WriteError naming
    `target`. A target that is a symbolic link has the file it points to replaced, as `open`
    would write it."""
    target = Path(target)
    if target.is_symlink():
        target = target.resolve()
    existed = target.exists()
    temp = temp_beside(target)
    try:
        yield temp
    except WriteError:
        discard(temp)
        raise
    except OSError as error:
        discard(temp)
        raise write_error(target, error, existed=existed) from None
    except BaseException:
        discard(temp)
        raise
    publish(temp, target)


@contextlib.contextmanager
def replacing(target: str | Path, *, binary: bool = False) -> Iterator[IO[Any]]:
    """An open temporary file (text in UTF-8 with newlines as written, or binary) that replaces
    `target` when the block ends normally; see `replacing_path`."""
    with replacing_path(target) as temp:
        if binary:
            with open(temp, "wb") as handle:
                yield handle
        else:
            with open(temp, "w", encoding="utf-8", newline="") as handle:
                yield handle


def write_text(target: str | Path, text: str) -> None:
    with replacing(target) as handle:
        handle.write(text)


def write_bytes(target: str | Path, data: bytes) -> None:
    with replacing(target, binary=True) as handle:
        handle.write(data)
