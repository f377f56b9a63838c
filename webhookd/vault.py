"""Secrets at rest: sealing endpoint secrets with AES-256-GCM under a master key.

A sealed value is ``v1.<key id>.<base64(nonce + ciphertext + tag)>``. The key id (a
fingerprint of the master key, safe to show) says which key sealed it, so a process
holding the wrong key says so instead of failing obscurely, and ``previous_keys`` can
still open what an older key sealed while ``webhookd secrets reencrypt`` moves it on.
Each value is bound to a context (the endpoint id) as associated data: a sealed secret
copied onto another endpoint does not open.

Where the master key comes from (``open_vault``): ``secrets.key`` (or
``WEBHOOKD_SECRETS_KEY``); else the key file ``secrets.key`` in ``redis.data_dir``,
created with mode 0600 on first use.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from webhookd.config import MASTER_KEY_BYTES, RedisSettings, SecretsSettings
from webhookd.errors import ConfigError, SecretsError

log = structlog.get_logger("webhookd.secrets")

FORMAT = "v1"
NONCE_BYTES = 12
KEY_FILE_NAME = "secrets.key"


def key_id(key: bytes) -> str:
    """A short public fingerprint of a master key: names it in messages and sealed values."""
    return "mk_" + hashlib.sha256(b"webhookd master key id\0" + key).hexdigest()[:12]


def new_master_key(random_bytes: bytes) -> str:
    """A master key as config takes it: base64 of the 32 random bytes the caller drew."""
    if len(random_bytes) != MASTER_KEY_BYTES:
        raise ValueError("a master key takes 32 random bytes")
    return base64.b64encode(random_bytes).decode()


class Vault:
    """Seals with the current master key; opens with it or any previous one."""

    __slots__ = ("_ciphers", "_random_bytes", "current_id")

    def __init__(
        self,
        key: bytes,
        previous: Sequence[bytes] = (),
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.current_id = key_id(key)
        self._ciphers = {key_id(k): AESGCM(k) for k in (*previous, key)}
        self._random_bytes = random_bytes

    def __repr__(self) -> str:
        return f"Vault(current={self.current_id}, keys={len(self._ciphers)})"

    def seal(self, plaintext: bytes, context: str) -> str:
        nonce = self._random_bytes(NONCE_BYTES)
        sealed = self._ciphers[self.current_id].encrypt(nonce, plaintext, context.encode())
        return f"{FORMAT}.{self.current_id}.{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, context: str) -> bytes:
        """The plaintext; SecretsError if the value is damaged or sealed under another key."""
        version, _, rest = sealed.partition(".")
        sealed_by, _, encoded = rest.partition(".")
        if version != FORMAT:
            raise SecretsError(f"sealed secrets in an unknown format {version[:8]!r}")
        cipher = self._ciphers.get(sealed_by)
        if cipher is None:
            raise SecretsError(
                f"secrets sealed under master key {sealed_by[:20]}, but this process has "
                f"{self._known()}: configure that key as secrets.key or secrets.previous_keys"
            )
        try:
            blob = base64.b64decode(encoded, validate=True)
            return cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], context.encode())
        except (binascii.Error, ValueError, InvalidTag):
            raise SecretsError(
                f"sealed secrets for {context} are damaged or were moved from elsewhere"
            ) from None

    def is_current(self, sealed: str) -> bool:
        """Whether ``sealed`` is already under the current key (re-encryption skips it)."""
        return sealed.startswith(f"{FORMAT}.{self.current_id}.")

    def _known(self) -> str:
        return " and ".join(sorted(self._ciphers))


def open_vault(secrets: SecretsSettings, redis: RedisSettings) -> Vault:
    """The vault of the configured master key, or of the key file under ``redis.data_dir``."""
    if secrets.key is not None:
        return Vault(secrets.key, secrets.previous_keys)
    path = redis.data_dir / KEY_FILE_NAME
    key = _read_key_file(path)
    if key is None:
        key = _create_key_file(path)
        log.warning("secrets.key_file_created", path=str(path), key_id=key_id(key),
                    hint="back this file up: without it no endpoint secret can be read; "
                    "processes on other machines need the same key (secrets.key)")  # fmt: skip
    elif redis.url is not None and path not in _announced:
        log.warning("secrets.key_file_in_use", path=str(path), key_id=key_id(key),
                    hint="with a shared Redis, set secrets.key (WEBHOOKD_SECRETS_KEY) "
                    "to the same key on every process")  # fmt: skip
    _announced.add(path)
    return Vault(key, secrets.previous_keys)


_announced: set[Path] = set()  # key files already logged about in this process


def _read_key_file(path: Path) -> bytes | None:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"secrets.key: cannot read the key file {path}: {err}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"secrets.key: the key file {path} is open to other users "
            f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it"
        )
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != MASTER_KEY_BYTES:
        raise ConfigError(f"secrets.key: the key file {path} does not hold a base64 32-byte key")
    return key


def _create_key_file(path: Path) -> bytes:
    """A new random key in a new 0600 file; if another process won the race, its key."""
    key = os.urandom(MASTER_KEY_BYTES)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(new_master_key(key) + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.link(draft, path)  # appears whole, or not at all if another process was first
    except FileExistsError:
        existing = _read_key_file(path)
        if existing is None:
            raise ConfigError(f"secrets.key: the key file {path} vanished while opened") from None
        return existing
    except OSError as err:
        raise ConfigError(f"secrets.key: cannot create the key file {path}: {err}") from None
    finally:
        draft.unlink(missing_ok=True)
    return key
