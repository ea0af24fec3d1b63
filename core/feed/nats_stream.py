"""A feed on NATS JetStream (`nats://HOST:PORT/STREAM`): market messages on `STREAM.market`,
commands on `STREAM.commands`, one stream whose sequence orders them all. The client (nats-py)
runs its own asyncio loop on the thread that reads or writes, never on a UI thread."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import nats
import orjson
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError

from core.feed.wire import FeedWatch, decoded
from core.model.errors import InputError

CONNECT_SECONDS = 2.0
WAIT_SECONDS = 1.0  # how long a read waits for the next message before looking again
ACK_SECONDS = 2.0  # how long a publish waits for the stream's acknowledgement
RETRY_SECONDS = 120.0  # how long a publisher keeps sending one message through an outage
RETRY_PAUSE = 0.5
BATCH = 512  # messages taken from the client's queue in one turn of its loop
# The server's heartbeat to an idle reader: two missed and the client makes its consumer again
# from the last message it had (after a broker restart, a desk catches up in seconds, not in the
# 10-20 s the client's default of 5 s gave).
HEARTBEAT_SECONDS = 1.0


def parse_url(url: str) -> tuple[str, str]:
    """(server URL, stream name) of `nats://HOST:PORT/STREAM`."""
    parts = urlsplit(url)
    stream = parts.path.strip("/")
    if parts.scheme != "nats" or not parts.hostname or not stream or "/" in stream:
        raise InputError("URL", f"expected nats://HOST:PORT/STREAM, found {url!r}")
    if not stream.replace("-", "").replace("_", "").isalnum():
        raise InputError("URL", f"a stream name is letters, digits, - and _: {stream!r}")
    return f"nats://{parts.hostname}:{parts.port or 4222}", stream


def subject_of(stream: str, message: dict[str, Any]) -> str:
    return f"{stream}.commands" if message.get("type") == "command" else f"{stream}.market"


async def _quiet(error: Exception) -> None:
    """Connection trouble after the first connect is the client's to retry, not to print."""


async def _connect(server: str, url: str, watch: FeedWatch | None = None) -> nats.NATS:
    # Tried once by hand first: the client itself would keep retrying a broker that is not there.
    parts = urlsplit(server)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=CONNECT_SECONDS).close()
    except OSError as error:
        raise InputError(
            "URL", f"cannot reach the broker at {url}: {error.strerror or error}"
        ) from None

    async def disconnected() -> None:
        if watch is not None:
            watch.connection("reconnecting")

    async def reconnected() -> None:
        if watch is not None:
            watch.connection("connected")

    try:
        return await nats.connect(
            servers=[server],
            error_cb=_quiet,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            connect_timeout=CONNECT_SECONDS,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
        )
    except Exception as error:  # nats-py raises several kinds for an absent broker
        reason = str(error) or type(error).__name__
        raise InputError("URL", f"cannot reach the broker at {url}: {reason}") from None


class NatsWriter:
    """Publishes each message and waits for the stream's acknowledgement (nothing is lost)."""

    def __init__(self, url: str) -> None:
        self.server, self.stream = parse_url(url)
        self.loop = asyncio.new_event_loop()
        # nats-py schedules its reconnects on the current loop of the thread.
        asyncio.set_event_loop(self.loop)
        self.token, self.count = uuid.uuid4().hex, 0
        self.nc = self.loop.run_until_complete(_connect(self.server, url))
        self.js = self.nc.jetstream()
        # BadRequest: the stream exists (another producer or a desk made it).
        with contextlib.suppress(BadRequestError):
            self.loop.run_until_complete(
                self.js.add_stream(name=self.stream, subjects=[f"{self.stream}.>"])
            )

    def write(self, message: dict[str, Any]) -> int:
        """Publish; the stream sequence number the broker gave it. Through a broker restart the
        message is sent again until acknowledged; its id (this writer's token and the message's
        number) lets the stream keep one copy when an acknowledgement was lost."""
        self.count += 1
        subject, payload = subject_of(self.stream, message), orjson.dumps(message)
        headers = {"Nats-Msg-Id": f"{self.token}-{self.count}"}
        deadline = time.monotonic() + RETRY_SECONDS
        while True:
            try:
                ack = self.loop.run_until_complete(
                    self.js.publish(subject, payload, timeout=ACK_SECONDS, headers=headers)
                )
                return int(ack.seq)
            except (TimeoutError, nats.errors.Error) as error:
                if time.monotonic() > deadline:
                    raise InputError(
                        "--to",
                        f"the broker at {self.server} took no message for {RETRY_SECONDS:.0f} s "
                        f"({type(error).__name__}); {self.count - 1} were published",
                    ) from None
                time.sleep(RETRY_PAUSE)

    def close(self) -> None:
        self.loop.run_until_complete(self.nc.drain())
        self.loop.close()


def message_at(url: str, seq: int = 1) -> Any:
    """The stream's message at sequence `seq` (1: its header), or None when there is none yet."""
    server, stream = parse_url(url)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        nc = loop.run_until_complete(_connect(server, url))
        try:
            raw = loop.run_until_complete(nc.jetstream().get_msg(stream, seq=seq))
        except nats.js.errors.NotFoundError:
            return None
        finally:
            loop.run_until_complete(nc.close())
    finally:
        loop.close()
    return decoded(raw.data.decode("utf-8", "replace")) if raw.data else None


async def _arrived(sub: Any) -> list[Any]:
    """The next message and those already waiting behind it (up to BATCH): one turn of the
    loop for many messages, not one for each."""
    batch = [await sub.next_msg(timeout=WAIT_SECONDS)]
    while len(batch) < BATCH and sub.pending_msgs:
        batch.append(await sub.next_msg(timeout=WAIT_SECONDS))
    return batch


def read_stream(
    url: str, *, after: int = 0, watch: FeedWatch | None = None
) -> Iterator[tuple[int, Any]]:
    """The stream's messages after sequence `after`, in order, each once (a message delivered
    again after a reconnect is skipped), until the `end` message."""
    server, stream = parse_url(url)
    loop = asyncio.new_event_loop()
    # nats-py schedules its reconnects on the current loop of the thread.
    asyncio.set_event_loop(loop)
    nc = loop.run_until_complete(_connect(server, url, watch))
    if watch is not None:
        watch.connection("connected")
    try:
        js = nc.jetstream()
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1
        )
        sub = loop.run_until_complete(
            js.subscribe(
                f"{stream}.>",
                ordered_consumer=True,
                config=config,
                idle_heartbeat=HEARTBEAT_SECONDS,
            )
        )
        last = after
        while True:
            try:
                batch = loop.run_until_complete(_arrived(sub))
            except nats.errors.TimeoutError:
                if watch is not None and watch.stopping():
                    return
                continue
            for msg in batch:
                seq = int(msg.metadata.sequence.stream)
                if seq <= last:
                    continue
                if seq != last + 1:
                    raise InputError("sequence", f"gap in {url}: expected {last + 1}, found {seq}")
                last = seq
                message = decoded(msg.data.decode("utf-8", "replace"))
                if watch is not None:
                    watch.received(int(msg.metadata.num_pending))
                yield seq, message
                if isinstance(message, dict) and message.get("type") == "end":
                    return
    finally:
        loop.run_until_complete(nc.close())
        # The JetStream subscription's own watchers end with the loop, not as stray tasks.
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()
