"""A live link to a feed for a desk that must never wait on it: the feed is read on a thread of
its own into a bounded queue (the client and its event loop live there), commands are sent on
another, and the desk takes what has arrived between its own work and asks how the link is."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.feed.transports import is_nats, open_writer, read_feed
from core.model.errors import InputError

CAPACITY = 20_000  # messages read ahead of the desk before the reader waits for it


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """How the link is: `state` connecting / connected / reconnecting / ended / failed; how many
    messages the desk is behind the stream; seconds since the last message (None: none yet)."""

    url: str
    state: str
    behind: int
    silent_seconds: float | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    """The outcome of a command sent into the stream: its sequence number, or why it failed."""

    token: int
    seq: int | None
    error: str | None = None


class FeedLink:
    """Reads `url` after sequence `after` on a thread; `take` hands over what arrived."""

    def __init__(self, url: str, *, after: int = 0, capacity: int = CAPACITY) -> None:
        self.url = url
        self._queue: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=capacity)
        self._stop = threading.Event()
        self._state = "connecting"
        self._pending = 0
        self._last: float | None = None
        self._error: str | None = None
        self._ended = False
        self._sends: queue.Queue[tuple[int, dict[str, Any]] | None] = queue.Queue()
        self._sender: threading.Thread | None = None
        self.on_sent: Callable[[Sent], None] | None = None
        self._reader = threading.Thread(
            target=self._read, args=(after,), name="feed-reader", daemon=True
        )
        self._reader.start()

    # ----- the reader thread (a FeedWatch to the transport) -------------------------------

    def connection(self, state: str) -> None:
        self._state = state

    def received(self, pending: int) -> None:
        self._pending = pending
        self._last = time.monotonic()

    def stopping(self) -> bool:
        return self._stop.is_set()

    def _read(self, after: int) -> None:
        try:
            for item in read_feed(self.url, after=after, watch=self):
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._ended = True
        except InputError as error:
            self._error = f"{error.field}: {error.message}"
        except Exception as error:  # a transport fault of any kind ends the link, said once
            self._error = f"{type(error).__name__}: {error}"

    # ----- the desk's side ----------------------------------------------------------------

    def take(self, limit: int) -> list[tuple[int, Any]]:
        """Up to `limit` messages that have arrived, without waiting."""
        items: list[tuple[int, Any]] = []
        while len(items) < limit:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def status(self) -> LinkStatus:
        waiting = self._queue.qsize()
        if self._error is not None:
            state = "failed"
        elif self._ended and not waiting:
            state = "ended"
        else:
            state = self._state
        silent = None if self._last is None else time.monotonic() - self._last
        return LinkStatus(self.url, state, waiting + self._pending, silent, self._error)

    def send(self, token: int, message: dict[str, Any]) -> None:
        """Publish a message (a signed command) into the stream, on the sender thread; the
        outcome goes to `on_sent`. A file feed takes no messages from a desk."""
        if not is_nats(self.url):
            raise InputError("feed", f"{self.url} is a file: a desk sends commands to a stream")
        if self._sender is None:
            self._sender = threading.Thread(target=self._send_all, name="feed-sender", daemon=True)
            self._sender.start()
        self._sends.put((token, message))

    def _send_all(self) -> None:
        writer = None
        while (item := self._sends.get()) is not None:
            token, message = item
            try:
                writer = writer or open_writer(self.url)
                outcome = Sent(token, writer.write(message))
            except InputError as error:
                outcome = Sent(token, None, f"{error.field}: {error.message}")
            except Exception as error:  # the broker's fault is the command's outcome
                outcome = Sent(token, None, f"{type(error).__name__}: {error}")
            if self.on_sent is not None:
                self.on_sent(outcome)
        if writer is not None:
            writer.close()

    def close(self) -> None:
        self._stop.set()
        if self._sender is not None:
            self._sends.put(None)
            self._sender.join(timeout=5)
        self._reader.join(timeout=5)
