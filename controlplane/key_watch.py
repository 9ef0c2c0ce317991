"""Keep the ApiKeySet (and the project settings) served over xDS in step with the store.

Any process may change the store (the CLI, the management API), so the watcher polls the
store's revision, one integer, every `interval_s`; a change in this process (`notify`)
is picked up at once. Either way a revoked key reaches every ext_proc replica well within
a second. A store that fails keeps the last key set serving, and the failure is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from controlplane.api_keys import now_ms
from controlplane.cache import SnapshotCache
from controlplane.errors import KeyStoreError
from controlplane.keystore import KeyStore
from controlplane.settings_store import SettingsStore
from controlplane.snapshot import KEYS, SETTINGS
from controlplane.translate_keys import key_resources
from controlplane.translate_settings import settings_resources

log = logging.getLogger("weir.controlplane.keys")

# ext_proc compares `expires_at` with its own clock, so expiry needs no push; the set
# changes without a store write only when a retired key leaves the retention window,
# which a re-read once a minute catches.
REFRESH_S = 60.0


class KeyWatcher:
    def __init__(
        self,
        store: KeyStore,
        cache: SnapshotCache,
        interval_s: float = 0.1,
        settings: SettingsStore | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._cache = cache
        self._interval = interval_s
        self._wake = asyncio.Event()
        self.revision = -1
        self.loaded = asyncio.Event()

    def notify(self) -> None:
        self._wake.set()

    def load(self, revision: int | None = None) -> None:
        """Read the store and publish its keys if they changed. Raises KeyStoreError."""
        if revision is None:
            revision = self._store.revision()
        keys = self._store.list()
        resources = key_resources(keys, now_ms())
        current = self._cache.independent(KEYS)
        if current is None or current.version != resources.version:
            self._cache.set_independent(KEYS, resources)
            log.info("API keys %s published (%d keys)", resources.version, len(keys))
        if self._settings is not None:
            settings = settings_resources(self._settings.all_pii())
            current = self._cache.independent(SETTINGS)
            if current is None or current.version != settings.version:
                self._cache.set_independent(SETTINGS, settings)
                log.info("project settings %s published", settings.version)
        self.revision = revision
        self.loaded.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last_full = loop.time()
        failing = False
        while True:
            try:
                if self._store.revision() != self.revision or loop.time() - last_full > REFRESH_S:
                    self.load()
                    last_full = loop.time()
                if failing:
                    log.info("the key store is readable again")
                failing = False
            except KeyStoreError as error:
                if not failing:
                    log.error("%s; the last API keys keep serving", error)
                failing = True
            self._wake.clear()
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that comes as the event is set, and this loop would then never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
