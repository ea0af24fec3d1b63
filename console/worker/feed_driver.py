"""The worker's side of a live feed: the feed session (with the desk's store) stepped by what its
link has read, and operator commands signed and sent into the stream, where they take effect when
they come back in stream order, on every desk at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.desk.authority import LOGIN_FIELD, ROLE_FIELD
from core.feed import keys
from core.feed.link import FeedLink, LinkStatus
from core.feed.signing import demo_key, public_hex, sign
from core.model.errors import InputError
from core.model.events import Event, iso
from core.model.operations import Refusal
from core.session.feed_session import FeedSession, is_feed_store
from core.session.session import Session

TAKE = 64  # messages taken from the link at a time, between looks at the clock


class FeedDriver:
    """One desk on one feed: `pull` applies what arrived, `command` signs a command to send."""

    def __init__(
        self,
        url: str,
        store_path: Path,
        on_step: Callable[[list[Event]], None],
        on_header: Callable[[], None],
    ) -> None:
        if store_path.exists() and is_feed_store(store_path):
            self.feed = FeedSession.open(store_path)
            if self.feed.url != url:
                self.feed.close()
                raise InputError("--db", f"{store_path} holds the feed {self.feed.url}, not {url}")
        else:
            self.feed = FeedSession(url, store_path)
        self.feed.on_step = on_step
        self.on_header = on_header
        self.url = url
        self.link = FeedLink(url, after=self.feed.recorded)
        self.keys: dict[str, Ed25519PrivateKey] = {}

    @property
    def session(self) -> Session | None:
        return self.feed.session

    def pull(self, budget_seconds: float) -> int:
        """Apply the messages that have arrived, for at most about `budget_seconds`; how many."""
        deadline, applied = time.perf_counter() + budget_seconds, 0
        while time.perf_counter() < deadline and not self.feed.ended:
            items = self.link.take(TAKE)
            for seq, message in items:
                had_header = self.feed.session is not None
                self.feed.apply(seq, message)
                applied += 1
                if not had_header and self.feed.session is not None:
                    self.on_header()
                if self.feed.ended:
                    break
            if len(items) < TAKE:
                break
        return applied

    def status(self) -> LinkStatus:
        return self.link.status()

    def unlock(self, operator: str, password: str) -> None:
        """The signing key of an operator logged in at this desk, from the operator's key file
        (core/feed/keys.py) when there is one; without, only a demo key registered by the
        simulated exchange signs."""
        path = keys.key_path(operator, keys.key_dir())
        if path.exists():
            self.keys[operator] = keys.unlock(keys.read_key_file(path), password, path)

    def command(self, raw: dict[str, Any]) -> dict[str, Any]:
        """The `command` message of an operator command, signed with its operator's key and
        stamped with the exchange time this desk sees. A Refusal when no key may sign."""
        session = self.session
        if session is None:
            raise Refusal("not_live", "the feed has sent no header yet")
        if self.feed.ended:
            raise Refusal("not_live", "the feed has ended; it takes no more commands")
        operator = str(raw.get("operator", ""))
        command = {k: v for k, v in raw.items() if k not in ("at", LOGIN_FIELD, ROLE_FIELD)}
        stamp = iso(session.engine.now)
        return {
            "type": "command",
            "time": stamp,
            "command": command,
            "signature": sign(self._key(operator), stamp, command),
        }

    def _key(self, operator: str) -> Ed25519PrivateKey:
        registered = self.feed.run.public_keys.get(operator)
        key = self.keys.get(operator)
        if key is None:
            # The simulated exchange registers the demo keys, which anyone may derive.
            demo = demo_key(operator)
            if registered == public_hex(demo):
                key = demo
        if key is None:
            raise Refusal(
                "key", f"{operator} has no signing key at this desk (`risk-console keys new`)"
            )
        if registered != public_hex(key):
            raise Refusal("key", f"{operator}'s key is not the one registered in the stream")
        return key

    def close(self) -> None:
        self.link.close()
        self.feed.close()
