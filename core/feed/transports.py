"""Where a feed travels, behind one small interface: a JSONL file (or standard input), followed
while it grows until its `end`; or a NATS JetStream stream (core/feed/nats_stream.py). A reader
yields (sequence number, message); a line that is not JSON yields the text, refused downstream."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import orjson

from core.feed.wire import FeedWatch, decoded
from core.model.errors import InputError

FOLLOW_SECONDS = 0.05  # how often a growing file is looked at again


class FeedWriter(Protocol):
    def write(self, message: dict[str, Any]) -> int | None:
        """Write one message; its sequence number when the transport tells it."""
        ...

    def close(self) -> None: ...


def is_nats(url: str) -> bool:
    return url.startswith("nats://")


def is_feed_url(name: str) -> bool:
    """Whether `name` names a feed (a stream, a JSONL file, standard input), not a scenario."""
    return is_nats(name) or name == "-" or name.endswith(".jsonl")


def open_writer(url: str, *, append: bool = False) -> FeedWriter:
    """A writer of the feed at `url`: a new one (a JSONL file emptied first), or with `append` a
    feed that is already there (a command sent into it)."""
    if is_nats(url):
        from core.feed.nats_stream import NatsWriter

        return NatsWriter(url)
    return JsonlWriter(url, append=append)


def first_message(url: str) -> Any:
    """The first message of the feed at `url` (its header), without waiting for more."""
    if is_nats(url):
        from core.feed.nats_stream import message_at

        message = message_at(url)
    elif url == "-":
        raise InputError("URL", "a command is sent into PATH.jsonl or nats://..., not -")
    else:
        with contextlib.closing(read_jsonl(url, follow=False)) as lines:
            message = next((m for _, m in lines), None)
    if message is None:
        raise InputError("URL", f"the feed at {url} has no header yet")
    return message


def read_feed(
    url: str, *, follow: bool = True, after: int = 0, watch: FeedWatch | None = None
) -> Iterator[tuple[int, Any]]:
    """The messages of the feed at `url` after sequence number `after`, in stream order."""
    if is_nats(url):
        from core.feed.nats_stream import read_stream

        yield from read_stream(url, after=after, watch=watch)
        return
    yield from read_jsonl(url, follow=follow, after=after, watch=watch)


class JsonlWriter:
    """One message per line, flushed as written, so that a follower sees each at once."""

    def __init__(self, url: str, *, append: bool = False) -> None:
        option = "URL" if append else "--to"
        if url == "-":
            self.handle = sys.stdout
        else:
            path = Path(url)
            if path.suffix != ".jsonl":
                raise InputError(
                    option, f"expected PATH.jsonl, - or nats://HOST:PORT/STREAM: {url!r}"
                )
            # O_APPEND for both: a command sent into the file while the exchange writes it lands
            # after the last whole line, never over a line the exchange writes next.
            flags = os.O_WRONLY | os.O_APPEND | (0 if append else os.O_CREAT | os.O_TRUNC)
            try:
                self.handle = open(os.open(path, flags, 0o666), "w", encoding="utf-8")  # noqa: SIM115
            except OSError as error:
                raise InputError(option, f"cannot write {url}: {error.strerror}") from None

    def write(self, message: dict[str, Any]) -> None:
        self.handle.write(orjson.dumps(message).decode() + "\n")
        self.handle.flush()

    def close(self) -> None:
        if self.handle is not sys.stdout:
            self.handle.close()


def read_jsonl(
    url: str, *, follow: bool = True, after: int = 0, watch: FeedWatch | None = None
) -> Iterator[tuple[int, Any]]:
    """Lines as messages (sequence = line number); a file still growing is followed until a line
    holds the `end` message (or, with `follow` off, read to its current end)."""
    if url == "-":
        handle = sys.stdin
    else:
        try:
            handle = Path(url).open(encoding="utf-8")  # noqa: SIM115 (closed by the generator)
        except OSError as error:
            raise InputError("URL", f"cannot read {url}: {error.strerror}") from None
    seq, partial = 0, ""
    if watch is not None:
        watch.connection("connected")
    try:
        while True:
            line = handle.readline()
            if not line or not line.endswith("\n"):
                partial += line
                if handle is sys.stdin and not line:
                    return
                if watch is not None and watch.stopping():
                    return
                if not follow:
                    if partial.strip():
                        seq += 1
                        if seq > after:
                            yield seq, decoded(partial)
                    return
                time.sleep(FOLLOW_SECONDS)
                continue
            line, partial = partial + line, ""
            seq += 1
            if seq <= after or not line.strip():
                continue
            message = decoded(line)
            if watch is not None:
                watch.received(0)
            yield seq, message
            if isinstance(message, dict) and message.get("type") == "end":
                return
    finally:
        if handle is not sys.stdin:
            handle.close()
