"""The ApiKeySet translation (controlplane.translate_keys) and its watcher (key_watch)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2

from controlplane.api_keys import StoredKey
from controlplane.cache import SnapshotCache
from controlplane.errors import KeyStoreError
from controlplane.key_watch import KeyWatcher
from controlplane.keystore import SqliteKeyStore, default_store_path
from controlplane.snapshot import CLUSTER, KEYS, Snapshot, TypedResources
from controlplane.translate_keys import (
    KEYS_RESOURCE_NAME,
    RETIRED_KEY_RETENTION_MS,
    key_resources,
    key_set,
)
from weir.config.v1 import keys_pb2

NOW = 1_750_000_000_000
HOUR = 3_600_000


def stored(n: int, **overrides: object) -> StoredKey:
    fields: dict[str, object] = {
        "id": f"key_{n:016x}",
        "project": "demo",
        "name": f"key {n}",
        "prefix": "wk_demo_AbCd",
        "sha256": bytes([n]) * 32,
        "scopes": ("inference",),
        "created_at_ms": NOW - 10 * HOUR,
    }
    fields.update(overrides)
    return StoredKey(**fields)  # type: ignore[arg-type]


def unpack(resources: TypedResources) -> keys_pb2.ApiKeySet:
    assert list(resources.items) == [KEYS_RESOURCE_NAME]
    message = keys_pb2.ApiKeySet()
    assert resources.items[KEYS_RESOURCE_NAME].Unpack(message)
    return message


# --- key_set ------------------------------------------------------------------------------


def test_key_set_carries_every_field() -> None:
    keys = [
        stored(1, scopes=("inference", "management"), project="alpha"),
        stored(2, expires_at_ms=NOW + HOUR),
        stored(3, revoked_at_ms=NOW - 1000, expires_at_ms=NOW + HOUR),
    ]
    message = key_set(keys, NOW)
    assert [k.id for k in message.keys] == [k.id for k in keys]
    first, second, third = message.keys
    assert first.project == "alpha"
    assert first.sha256 == b"\x01" * 32
    assert list(first.scopes) == ["inference", "management"]
    assert first.expires_at_ms == 0  # never
    assert first.revoked_at_ms == 0  # not revoked
    assert second.expires_at_ms == NOW + HOUR
    assert second.revoked_at_ms == 0
    assert third.revoked_at_ms == NOW - 1000
    assert third.expires_at_ms == NOW + HOUR
    assert message.revision == ""  # key_set leaves it to key_resources


def test_key_set_never_carries_key_text() -> None:
    message = key_set([stored(1)], NOW)
    fields = {f.name for f in message.keys[0].DESCRIPTOR.fields}
    assert fields == {"id", "project", "sha256", "scopes", "expires_at_ms", "revoked_at_ms"}


def test_recently_retired_keys_are_kept() -> None:
    keys = [
        stored(1, revoked_at_ms=NOW - RETIRED_KEY_RETENTION_MS),  # exactly at the edge
        stored(2, expires_at_ms=NOW - RETIRED_KEY_RETENTION_MS),
        stored(3, revoked_at_ms=NOW - 1),
        stored(4, expires_at_ms=NOW),
    ]
    assert [k.id for k in key_set(keys, NOW).keys] == [k.id for k in keys]


def test_retired_keys_older_than_retention_are_left_out() -> None:
    keep = stored(1)
    future = stored(2, expires_at_ms=NOW + RETIRED_KEY_RETENTION_MS * 2)
    old_revoked = stored(3, revoked_at_ms=NOW - RETIRED_KEY_RETENTION_MS - 1)
    old_expired = stored(4, expires_at_ms=NOW - RETIRED_KEY_RETENTION_MS - 1)
    message = key_set([keep, old_revoked, future, old_expired], NOW)
    assert [k.id for k in message.keys] == [keep.id, future.id]


def test_key_set_of_nothing_is_empty() -> None:
    assert len(key_set([], NOW).keys) == 0


# --- key_resources: versions --------------------------------------------------------------


def test_version_is_stable_content_hash() -> None:
    keys = [stored(1), stored(2, revoked_at_ms=NOW - 5)]
    first = key_resources(keys, NOW)
    again = key_resources(list(keys), NOW + 1000)  # same content, a later clock
    assert first.version == again.version
    assert len(first.version) == 16
    assert unpack(first) == unpack(again)


def test_version_changes_with_content() -> None:
    base = key_resources([stored(1)], NOW).version
    assert key_resources([stored(1), stored(2)], NOW).version != base
    assert key_resources([stored(1, revoked_at_ms=NOW)], NOW).version != base
    assert key_resources([stored(1, scopes=("management",))], NOW).version != base
    assert key_resources([], NOW).version != base
    # A retired key leaving the retention window changes the set.
    retired = [stored(1), stored(2, revoked_at_ms=NOW)]
    inside = key_resources(retired, NOW + RETIRED_KEY_RETENTION_MS)
    outside = key_resources(retired, NOW + RETIRED_KEY_RETENTION_MS + 1)
    assert inside.version != outside.version
    assert outside.version == key_resources([stored(1)], NOW).version


def test_revision_is_the_content_hash_without_itself() -> None:
    keys = [stored(1), stored(2)]
    message = unpack(key_resources(keys, NOW))
    assert message.revision == TypedResources.build(KEYS, [("keys", key_set(keys, NOW))]).version
    assert message.revision == unpack(key_resources(keys, NOW)).revision


def test_revision_equals_the_version() -> None:
    resources = key_resources([stored(1), stored(2)], NOW)
    assert unpack(resources).revision == resources.version


# --- KeyWatcher ---------------------------------------------------------------------------


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return default_store_path(tmp_path)


@pytest.fixture
def store(store_path: Path) -> Iterator[SqliteKeyStore]:
    store = SqliteKeyStore(store_path)
    yield store
    store.close()


@pytest.fixture
def other_store(store_path: Path) -> Iterator[SqliteKeyStore]:
    """A second store object on the same file: another process, like the CLI."""
    store = SqliteKeyStore(store_path)
    yield store
    store.close()


def cluster_snapshot() -> Snapshot:
    cluster = cluster_pb2.Cluster(name="backend-mock", type=cluster_pb2.Cluster.STATIC)
    return Snapshot.build({CLUSTER: [("backend-mock", cluster)]})


def published(cache: SnapshotCache) -> keys_pb2.ApiKeySet:
    resources = cache.independent(KEYS)
    assert resources is not None
    return unpack(resources)


def test_load_publishes_the_keys(store: SqliteKeyStore) -> None:
    created, _ = store.create("demo", ("inference",))
    cache = SnapshotCache()
    watcher = KeyWatcher(store, cache)
    assert not watcher.loaded.is_set()
    watcher.load()
    assert watcher.loaded.is_set()
    assert watcher.revision == store.revision()
    message = published(cache)
    assert [k.id for k in message.keys] == [created.id]
    assert message.keys[0].sha256 == created.sha256


def test_load_publishes_only_when_changed(store: SqliteKeyStore) -> None:
    cache = SnapshotCache()
    cache.set_snapshot(cluster_snapshot())
    watcher = KeyWatcher(store, cache)
    watcher.load()
    generation, _ = cache.current()
    first = cache.independent(KEYS)

    watcher.load()  # nothing changed
    assert cache.current()[0] == generation
    assert cache.independent(KEYS) is first

    created, _ = store.create("demo", ("inference",))
    watcher.load()
    assert cache.current()[0] == generation + 1
    assert [k.id for k in published(cache).keys] == [created.id]

    # A write that leaves the set as it was (a repeated revoke) publishes nothing new.
    store.revoke(created.id)
    watcher.load()
    generation, _ = cache.current()
    current = cache.independent(KEYS)
    store.revoke(created.id)
    watcher.load()
    assert cache.current()[0] == generation
    assert cache.independent(KEYS) is current
    assert watcher.revision == store.revision()


def test_snapshot_set_later_still_carries_the_keys(store: SqliteKeyStore) -> None:
    created, _ = store.create("demo", ("inference",))
    cache = SnapshotCache()
    KeyWatcher(store, cache).load()
    keys = cache.independent(KEYS)
    assert keys is not None

    cache.set_snapshot(cluster_snapshot())
    snapshot = cache.snapshot
    assert snapshot is not None
    assert snapshot.resources(KEYS) == keys
    assert snapshot.version(KEYS) == keys.version
    assert "backend-mock" in snapshot.resources(CLUSTER).items

    # And a later config publish (with an empty key set of its own) does not roll them back.
    cache.set_snapshot(cluster_snapshot())
    snapshot = cache.snapshot
    assert snapshot is not None
    assert [k.id for k in unpack(snapshot.resources(KEYS)).keys] == [created.id]


def test_key_change_reaches_an_existing_snapshot(store: SqliteKeyStore) -> None:
    cache = SnapshotCache()
    cache.set_snapshot(cluster_snapshot())
    watcher = KeyWatcher(store, cache)
    watcher.load()
    created, _ = store.create("demo", ("inference",))
    watcher.load()
    snapshot = cache.snapshot
    assert snapshot is not None
    assert [k.id for k in unpack(snapshot.resources(KEYS)).keys] == [created.id]
    assert "backend-mock" in snapshot.resources(CLUSTER).items


async def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"not within {timeout} s"
        await asyncio.sleep(0.01)


def published_ids(cache: SnapshotCache) -> list[str]:
    resources = cache.independent(KEYS)
    return [] if resources is None else [k.id for k in unpack(resources).keys]


async def test_run_picks_up_another_store_writing(
    store: SqliteKeyStore, other_store: SqliteKeyStore
) -> None:
    cache = SnapshotCache()
    watcher = KeyWatcher(store, cache)
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.wait_for(watcher.loaded.wait(), 0.5)
        assert published_ids(cache) == []

        created, _ = other_store.create("demo", ("inference",))
        await wait_for(lambda: published_ids(cache) == [created.id], 0.5)

        other_store.revoke(created.id)
        await wait_for(lambda: published(cache).keys[0].revoked_at_ms != 0, 0.5)
        assert watcher.revision == other_store.revision()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_notify_makes_it_immediate(store: SqliteKeyStore) -> None:
    cache = SnapshotCache()
    watcher = KeyWatcher(store, cache, interval_s=3600.0)  # polling alone would never see it
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.wait_for(watcher.loaded.wait(), 0.5)
        created, _ = store.create("demo", ("inference",))
        await asyncio.sleep(0.05)
        assert published_ids(cache) == []  # not noticed yet
        watcher.notify()
        await wait_for(lambda: published_ids(cache) == [created.id], 0.5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class FlakyStore:
    """A store whose reads fail while `failing` is set."""

    def __init__(self, inner: SqliteKeyStore) -> None:
        self.inner = inner
        self.failing = False

    def revision(self) -> int:
        if self.failing:
            raise KeyStoreError("the key store is gone")
        return self.inner.revision()

    def list(self, project: str | None = None) -> list[StoredKey]:
        if self.failing:
            raise KeyStoreError("the key store is gone")
        return self.inner.list(project)


async def test_failing_store_keeps_the_last_keys(
    store: SqliteKeyStore, caplog: pytest.LogCaptureFixture
) -> None:
    created, _ = store.create("demo", ("inference",))
    flaky = FlakyStore(store)
    cache = SnapshotCache()
    watcher = KeyWatcher(flaky, cache, interval_s=0.01)  # type: ignore[arg-type]
    caplog.set_level(logging.INFO, logger="weir.controlplane.keys")
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.wait_for(watcher.loaded.wait(), 0.5)
        flaky.failing = True
        await asyncio.sleep(0.1)  # several failed polls
        assert published_ids(cache) == [created.id]
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1  # logged once, not on every poll
        assert "the key store is gone" in errors[0].getMessage()

        flaky.failing = False
        second, _ = store.create("demo", ("inference",))
        await wait_for(lambda: set(published_ids(cache)) == {created.id, second.id}, 0.5)
        assert any("readable again" in r.getMessage() for r in caplog.records)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
