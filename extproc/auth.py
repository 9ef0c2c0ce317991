"""Authenticate a request's gateway API key against the ApiKeySet from the control plane.

The set is compiled into a dict keyed by the key's SHA-256, so a check is one hash and
one dict look-up (microseconds), never a database round trip. Each way a key can fail
has its own `code` (the OpenAI SDK raises `AuthenticationError` for all of them).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from extproc.errors import AuthenticationFailed, PermissionDenied
from weir.config.v1 import keys_pb2

INFERENCE_SCOPE: Final = "inference"
ROUTING_SCOPE: Final = "routing"  # may pin a request to a backend (X-Weir-Route-To)
# `wk_{project}_{43 base62}`: see controlplane.api_keys (the control plane issues keys).
_KEY_SHAPE: Final = re.compile(rb"^wk_[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?_[0-9A-Za-z]{43}$")
_BEARER: Final = b"bearer "


class KeySetInvalid(Exception):
    """The ApiKeySet from the control plane is not usable (it is NACKed)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's public id (safe to log and record), never the key."""

    key_id: str
    project: str
    scopes: frozenset[str]
    expires_at: float  # unix seconds; 0 = never
    revoked: bool


@dataclass(frozen=True, slots=True)
class KeyIndex:
    revision: str
    by_hash: MappingProxyType[bytes, Principal]

    @classmethod
    def compile(cls, key_set: keys_pb2.ApiKeySet) -> KeyIndex:
        by_hash: dict[bytes, Principal] = {}
        for key in key_set.keys:
            if len(key.sha256) != 32 or not key.id or not key.project:
                raise KeySetInvalid(f"API key {key.id!r} has no id, project or 32-byte hash")
            if key.sha256 in by_hash:
                raise KeySetInvalid(f"API key {key.id!r} shares its hash with another key")
            by_hash[key.sha256] = Principal(
                key.id,
                key.project,
                frozenset(key.scopes),
                key.expires_at_ms / 1000,
                key.revoked_at_ms != 0,
            )
        return cls(key_set.revision, MappingProxyType(by_hash))

    def authenticate(self, authorization: bytes, now: float | None = None) -> Principal:
        """The caller of a request with this `Authorization` value, or AuthenticationFailed."""
        if not authorization:
            raise AuthenticationFailed(
                "You didn't provide an API key. Send it in the Authorization header as "
                "'Authorization: Bearer wk_...'.",
                code="missing_api_key",
            )
        if authorization[:7].lower() != _BEARER:
            raise AuthenticationFailed(
                "The Authorization header must read 'Bearer <API key>'.",
                code="malformed_api_key",
            )
        key = authorization[7:].strip()
        if not _KEY_SHAPE.match(key):
            raise AuthenticationFailed(
                "The API key is malformed: Weir keys read 'wk_<project>_<43 letters and digits>'.",
                code="malformed_api_key",
            )
        principal = self.by_hash.get(hashlib.sha256(key).digest())
        if principal is None:
            raise AuthenticationFailed(
                "Incorrect API key provided. Create one with `weir keys create`.",
                code="invalid_api_key",
            )
        if principal.revoked:
            raise AuthenticationFailed(
                f"The API key {principal.key_id} has been revoked.", code="revoked_api_key"
            )
        if principal.expires_at and (now if now is not None else time.time()) >= (
            principal.expires_at
        ):
            raise AuthenticationFailed(
                f"The API key {principal.key_id} has expired.", code="expired_api_key"
            )
        return principal


def authorize(principal: Principal, project: str, scope: str) -> None:
    """May `principal` use `scope` on an endpoint of `project`? Else PermissionDenied."""
    if principal.project != project:
        raise PermissionDenied(
            f"The API key {principal.key_id} belongs to project '{principal.project}' and "
            f"cannot call endpoints of project '{project}'.",
            code="wrong_project",
        )
    if scope not in principal.scopes:
        raise PermissionDenied(
            f"The API key {principal.key_id} lacks the '{scope}' scope this request needs.",
            code="scope_insufficient",
        )


class KeyIndexHolder:
    """The key index in force; swapped whole."""

    def __init__(self) -> None:
        self.index: KeyIndex | None = None
