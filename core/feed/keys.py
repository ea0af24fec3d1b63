"""Operator key pairs for real desks: an Ed25519 key whose private half is kept in a key file
(`NAME.key.json`, mode 0600) encrypted with AES-256-GCM under a key that scrypt stretches from
the operator's password; reading, unlocking and writing those files."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from core.feed.signing import public_hex
from core.model import files
from core.model.errors import InputError
from core.model.passwords import (
    DEFAULT_SCRYPT,
    ScryptParams,
    given_password_bytes,
    password_bytes,
    scrypt,
)

FORMAT = "risk-operator-key/1"
KEYS_ENV = "RISK_CONSOLE_KEYS"
DEFAULT_DIR = Path("~/.config/risk-console/keys")
SUFFIX = ".key.json"
FIELD = "key_file"  # the field an error about a key file names (with the file in its message)
_SALT_BYTES = 16
_NONCE_BYTES = 12  # AES-GCM's own nonce size
_CHECK_LABEL = b"risk-console key file: password check"
_MAX_FILE = 64 * 1024  # a key file is well under 1 KiB; anything bigger is not one
# A name that is one plain file name: no separator, no leading dot (operator names are narrower).
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


@dataclass(frozen=True, slots=True)
class KeyFile:
    """What a key file holds. `ciphertext` is the 32 raw private bytes with the GCM tag, bound
    (as associated data) to the format, operator, public key and scrypt fields; `check` tells a
    wrong password from a damaged file before anything is decrypted."""

    operator: str
    public_key: str
    params: ScryptParams
    salt: bytes
    check: bytes
    nonce: bytes
    ciphertext: bytes

    def bound(self) -> dict[str, Any]:
        """The fields the ciphertext is bound to: changing any of them fails decryption."""
        return {
            "format": FORMAT,
            "operator": self.operator,
            "public_key": self.public_key,
            "kdf": {
                "name": "scrypt",
                "n": self.params.n,
                "r": self.params.r,
                "p": self.params.p,
                "salt": self.salt.hex(),
            },
        }

    def document(self) -> dict[str, Any]:
        doc = {
            **self.bound(),
            "check": self.check.hex(),
            "cipher": {
                "name": "aes-256-gcm",
                "nonce": self.nonce.hex(),
                "ciphertext": self.ciphertext.hex(),
            },
        }
        return {**doc, "checksum": _checksum(doc)}


def key_dir(given: str | os.PathLike[str] | None = None) -> Path:
    """The folder of the key files: `given`, else $RISK_CONSOLE_KEYS, else
    ~/.config/risk-console/keys."""
    if given:
        return Path(given).expanduser()
    return Path(os.environ.get(KEYS_ENV) or DEFAULT_DIR).expanduser()


def key_path(operator: str, folder: Path) -> Path:
    if not _FILE_NAME.match(operator):
        raise InputError("operator", f"{operator!r} is not an operator name")
    return folder / f"{operator}{SUFFIX}"


def new_key(
    operator: str, password: str, params: ScryptParams | None = None
) -> tuple[KeyFile, Ed25519PrivateKey]:
    """A fresh key pair for `operator`, its private half locked under `password` (stretched at
    the cost of the operators' password hashes unless `params` is given)."""
    params = params or DEFAULT_SCRYPT
    if not params.valid():
        raise InputError("params", f"scrypt parameters out of range: {params}")
    secret = password_bytes(password)
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    salt, nonce = os.urandom(_SALT_BYTES), os.urandom(_NONCE_BYTES)
    cipher_key, check = _stretch(secret, salt, params)
    unsealed = KeyFile(operator, public_hex(key), params, salt, check, nonce, b"")
    ciphertext = AESGCM(cipher_key).encrypt(nonce, raw, _canonical(unsealed.bound()))
    return KeyFile(operator, public_hex(key), params, salt, check, nonce, ciphertext), key


def unlock(
    key_file: KeyFile, password: str, path: Path | str = "the key file"
) -> Ed25519PrivateKey:
    """The private key of `key_file`, or an InputError: `password` when the password is wrong,
    `key_file` when the file was altered after it was written."""
    cipher_key, check = _stretch(given_password_bytes(password), key_file.salt, key_file.params)
    if not hmac.compare_digest(check, key_file.check):
        raise InputError("password", f"wrong password for {key_file.operator}'s key ({path})")
    try:
        raw = AESGCM(cipher_key).decrypt(
            key_file.nonce, key_file.ciphertext, _canonical(key_file.bound())
        )
        key = Ed25519PrivateKey.from_private_bytes(raw)
    except (InvalidTag, ValueError):
        raise InputError(FIELD, f"{path} is damaged: its private key does not decrypt") from None
    if public_hex(key) != key_file.public_key:
        raise InputError(FIELD, f"{path} is damaged: its public key is not its private key's")
    return key


def write_key_file(path: Path, key_file: KeyFile, *, replace: bool = False) -> None:
    """Write `key_file` whole at `path`, readable by its owner only (0600, in a 0700 folder made
    when missing). An existing file is kept unless `replace`: it may be the only copy of a key."""
    if path.exists() and not replace:
        raise InputError(FIELD, f"{path} exists: give --replace to make a new key in its place")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(FIELD, f"cannot make {path.parent}: {error.strerror}") from None
    text = orjson.dumps(key_file.document(), option=orjson.OPT_INDENT_2).decode() + "\n"
    with files.replacing_path(path) as temp:
        # 0600 before the secret goes in: the file is never readable by others, even part-written.
        os.chmod(temp, 0o600)
        temp.write_text(text, encoding="utf-8")


def read_key_file(path: Path) -> KeyFile:
    """The key file at `path`, its structure and checksum checked (not yet the password)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_FILE + 1)
    except FileNotFoundError:
        raise InputError(FIELD, f"no key file {path} (make one with `keys new`)") from None
    except OSError as error:
        raise InputError(FIELD, f"cannot read {path}: {error.strerror}") from None
    if len(data) > _MAX_FILE:
        raise InputError(FIELD, f"{path} is damaged: larger than a key file")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise InputError(FIELD, f"{path} is damaged: not JSON") from None
    return _parse(doc, path)


def _parse(doc: Any, path: Path) -> KeyFile:
    def damaged(field: str, what: str) -> InputError:
        return InputError(f"{FIELD}.{field}", f"{path} is damaged: {what}")

    if not isinstance(doc, dict):
        raise damaged("format", "expected a JSON object")
    if doc.get("format") != FORMAT:
        raise damaged("format", f"expected {FORMAT!r}, found {doc.get('format')!r}")
    body = {k: v for k, v in doc.items() if k != "checksum"}
    if doc.get("checksum") != _checksum(body):
        raise damaged("checksum", "its checksum does not match its contents")
    kdf, cipher = doc.get("kdf"), doc.get("cipher")
    if not isinstance(kdf, dict) or kdf.get("name") != "scrypt":
        raise damaged("kdf", "expected scrypt's parameters")
    if not isinstance(cipher, dict) or cipher.get("name") != "aes-256-gcm":
        raise damaged("cipher", "expected aes-256-gcm")
    numbers = [kdf.get(name) for name in ("n", "r", "p")]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in numbers):
        raise damaged("kdf", "expected whole numbers n, r and p")
    params = ScryptParams(*numbers)  # type: ignore[arg-type]
    if not params.valid():
        raise damaged("kdf", f"scrypt parameters out of range: {params}")
    operator = doc.get("operator")
    if not isinstance(operator, str) or not operator:
        raise damaged("operator", "expected the operator's name")
    return KeyFile(
        operator=operator,
        public_key=_hex(doc.get("public_key"), 32, "public_key", damaged).hex(),
        params=params,
        salt=_hex(kdf.get("salt"), _SALT_BYTES, "kdf.salt", damaged),
        check=_hex(doc.get("check"), 32, "check", damaged),
        nonce=_hex(cipher.get("nonce"), _NONCE_BYTES, "cipher.nonce", damaged),
        # The 32 private bytes and GCM's 16-byte tag.
        ciphertext=_hex(cipher.get("ciphertext"), 48, "cipher.ciphertext", damaged),
    )


def _hex(value: Any, size: int, field: str, damaged: Callable[[str, str], InputError]) -> bytes:
    data = b""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            data = bytes.fromhex(value)
    if len(data) != size:
        raise damaged(field, f"expected {2 * size} hex digits")
    return data


def _stretch(secret: bytes, salt: bytes, params: ScryptParams) -> tuple[bytes, bytes]:
    """(AES key, password check) from one scrypt run: the check is an HMAC under the second half
    of its output, so it reveals nothing of the first."""
    stretched = scrypt(secret, salt, params, 64)
    check = hmac.new(stretched[32:], _CHECK_LABEL, hashlib.sha256).digest()
    return stretched[:32], check


def _canonical(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def _checksum(doc: dict[str, Any]) -> str:
    # Catches a file damaged by accident (a truncated copy, an edit); a deliberate change to the
    # encrypted fields is caught by GCM, and one to the scrypt fields looks like a wrong password.
    return hashlib.sha256(_canonical(doc)).hexdigest()
