"""Operator signatures on feed commands: Ed25519 over the command and its time in canonical JSON
(sorted keys), keys as hex. The demo keys `publish` signs a scenario's own actions with are
derived from the operator's name, so they are public and only for the simulated exchange."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

DEMO_SEED = b"risk-console demo operator key:"


def signed_bytes(time: str, command: dict[str, Any]) -> bytes:
    """What a signature covers: the message's time and the command, nothing else."""
    return orjson.dumps({"command": command, "time": time}, option=orjson.OPT_SORT_KEYS)


def demo_key(operator: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(DEMO_SEED + operator.encode()).digest()
    )


def public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def sign(key: Ed25519PrivateKey, time: str, command: dict[str, Any]) -> str:
    return key.sign(signed_bytes(time, command)).hex()


def valid_public_key(text: str) -> bool:
    """Whether `text` is an Ed25519 public key as 64 hex digits."""
    if len(text) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
    except ValueError:
        return False
    return True


def verify(public_key: str, signature: str, time: str, command: dict[str, Any]) -> bool:
    """Whether `signature` (hex) is `public_key`'s (hex) over this command at this time."""
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key))
        key.verify(bytes.fromhex(signature), signed_bytes(time, command))
    except (ValueError, InvalidSignature):
        return False
    return True
