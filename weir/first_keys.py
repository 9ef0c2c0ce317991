"""The keys `weir up` creates on a first start, so that the quickstart works at once.

A project of the config that has no active key gets one (every scope: inference,
management and routing), printed once in the ready message. Projects that already have
a key get none: their keys were shown when they were created.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from controlplane.api_keys import SCOPES, now_ms
from controlplane.keystore import open_key_store, store_location
from controlplane.model import Endpoint

FIRST_KEY_NAME = "created by weir up"


def first_keys(
    state_dir: Path, endpoints: Iterable[Endpoint], environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """project -> new key, for each project without an active key, in the store the
    control plane will use (WEIR_STORE_URL, else the file in `state_dir`). Raises
    KeyStoreError."""
    store = open_key_store(store_location(state_dir, environ))
    try:
        now = now_ms()
        created: dict[str, str] = {}
        for endpoint in endpoints:
            project = endpoint.project
            if project in created:
                continue
            if any(k.state(now) == "active" for k in store.list(project)):
                continue
            _, key = store.create(project, SCOPES, FIRST_KEY_NAME)
            created[project] = key
        return created
    finally:
        store.close()
