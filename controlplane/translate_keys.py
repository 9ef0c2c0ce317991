"""Translate the stored API keys into the ApiKeySet every ext_proc replica checks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from controlplane.api_keys import StoredKey
from controlplane.snapshot import KEYS, TypedResources
from weir.config.v1 import keys_pb2

KEYS_RESOURCE_NAME: Final = "keys"
# Revoked and expired keys are still sent for this long, so that they are answered with
# `revoked_api_key` / `expired_api_key`; after that they are simply unknown keys.
RETIRED_KEY_RETENTION_MS: Final = 30 * 24 * 3600 * 1000


def key_set(keys: Iterable[StoredKey], now_ms: int) -> keys_pb2.ApiKeySet:
    message = keys_pb2.ApiKeySet()
    for key in keys:
        retired_at = key.revoked_at_ms or (
            key.expires_at_ms
            if key.expires_at_ms is not None and key.expires_at_ms <= now_ms
            else None
        )
        if retired_at is not None and now_ms - retired_at > RETIRED_KEY_RETENTION_MS:
            continue
        message.keys.append(
            keys_pb2.ApiKey(
                id=key.id,
                project=key.project,
                sha256=key.sha256,
                scopes=key.scopes,
                expires_at_ms=key.expires_at_ms or 0,
                revoked_at_ms=key.revoked_at_ms or 0,
            )
        )
    return message


def key_resources(keys: Iterable[StoredKey], now_ms: int) -> TypedResources:
    return TypedResources.revised(KEYS, KEYS_RESOURCE_NAME, key_set(keys, now_ms))
