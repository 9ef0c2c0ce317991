"""Gateway API keys: their shape, their hash, and what a stored key knows.

A key reads `wk_{project}_{secret}`: the project (a DNS label, so never an underscore) and
43 base62 characters drawn from `secrets` (256 bits). Only its SHA-256 is stored; the key
itself is shown once, when it is created. A fast hash is the right one here: the secret is
random, so there is nothing for a slow hash to protect against guessing.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Final

KEY_PREFIX: Final = "wk"
SECRET_LENGTH: Final = 43  # base62 digits: 62**43 > 2**256
SCOPES: Final = ("inference", "management", "routing")
DEFAULT_SCOPES: Final = ("inference",)
_BASE62: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PROJECT_PATTERN: Final = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
KEY_PATTERN: Final = re.compile(
    rf"^{KEY_PREFIX}_([a-z0-9]([a-z0-9-]{{0,61}}[a-z0-9])?)_[0-9A-Za-z]{{{SECRET_LENGTH}}}$"
)
DISPLAY_PREFIX_SECRET_CHARS: Final = 4  # `wk_demo_AbCd...` identifies a key in listings


def generate_secret() -> str:
    return "".join(secrets.choice(_BASE62) for _ in range(SECRET_LENGTH))


def generate_key(project: str) -> str:
    return f"{KEY_PREFIX}_{project}_{generate_secret()}"


def generate_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def display_prefix(key: str) -> str:
    """The part of a key that is safe to show: `wk_demo_AbCd`."""
    head, _, secret = key.rpartition("_")
    return f"{head}_{secret[:DISPLAY_PREFIX_SECRET_CHARS]}"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class StoredKey:
    """What the store keeps about a key: never the key."""

    id: str
    project: str
    name: str
    prefix: str
    sha256: bytes
    scopes: tuple[str, ...]
    created_at_ms: int
    expires_at_ms: int | None = None
    revoked_at_ms: int | None = None
    rotated_to: str | None = None  # id of the key that replaced this one

    def state(self, at_ms: int) -> str:
        if self.revoked_at_ms is not None:
            return "revoked"
        if self.expires_at_ms is not None and at_ms >= self.expires_at_ms:
            return "expired"
        return "active"

    def public(self, at_ms: int) -> dict[str, object]:
        """The JSON form the CLI and the management API show."""
        return {
            "id": self.id,
            "object": "api_key",
            "project": self.project,
            "name": self.name,
            "prefix": self.prefix,
            "scopes": list(self.scopes),
            "created_at": self.created_at_ms // 1000,
            "expires_at": None if self.expires_at_ms is None else self.expires_at_ms // 1000,
            "revoked_at": None if self.revoked_at_ms is None else self.revoked_at_ms // 1000,
            "rotated_to": self.rotated_to,
            "state": self.state(at_ms),
        }
