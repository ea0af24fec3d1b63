"""Passwords as people type them (NFC, bounded length) and the scrypt cost that stretches them:
one definition for the operators' password hashes (core/desk) and their key files (core/feed)."""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass

from core.model.errors import InputError

MIN_PASSWORD = 8
MAX_PASSWORD = 1024


@dataclass(frozen=True, slots=True)
class ScryptParams:
    """scrypt cost: n (CPU/memory, a power of two), r (block size), p (parallelism)."""

    n: int
    r: int
    p: int

    def weaker_than(self, other: ScryptParams) -> bool:
        return self.n < other.n or self.r < other.r or self.p < other.p

    def valid(self) -> bool:
        power_of_two = self.n & (self.n - 1) == 0
        return 2 <= self.n <= 2**20 and power_of_two and 1 <= self.r <= 32 and 1 <= self.p <= 16


# 32 MiB and about 0.1 s per hash on a desktop. Stored with each hash and key file: raising this
# constant upgrades each operator's hash at their next successful login.
DEFAULT_SCRYPT = ScryptParams(n=2**15, r=8, p=1)


def password_bytes(password: object) -> bytes:
    """A new password, checked (length) and normalized, as the bytes scrypt stretches."""
    if not isinstance(password, str):
        raise InputError("password", f"expected text, got {type(password).__name__}")
    # NFC so that the same characters typed through different input methods hash alike.
    password = unicodedata.normalize("NFC", password)
    if len(password) < MIN_PASSWORD:
        raise InputError("password", f"too short: at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InputError("password", f"too long: at most {MAX_PASSWORD} characters")
    return password.encode("utf-8")


def given_password_bytes(password: object) -> bytes:
    """A password given to prove who one is (a login, a key file), normalized as a new one is; a
    short one is simply wrong then, not a validation error naming the rule."""
    if not isinstance(password, str) or len(password) > MAX_PASSWORD:
        raise InputError("password", "expected a password")
    return unicodedata.normalize("NFC", password).encode("utf-8")


def scrypt(password: bytes, salt: bytes, params: ScryptParams, length: int = 32) -> bytes:
    # OpenSSL needs 128 * r * (n + 2 + p) bytes; the default cap (32 MiB) is too small for n=2**15.
    maxmem = 128 * params.r * (params.n + 2 + params.p) + (1 << 20)
    return hashlib.scrypt(
        password, salt=salt, n=params.n, r=params.r, p=params.p, dklen=length, maxmem=maxmem
    )
