"""Make-before-break snapshots and publishing without clients."""

from __future__ import annotations

import pytest

from controlplane import translate_envoy, translate_runtime
from controlplane.cache import SnapshotCache
from controlplane.model import Backend, BackendModel, ConfigSet, Endpoint, ModelAlias, ModelTarget
from controlplane.publisher import Generated, Publisher, build_snapshot, generate
from controlplane.snapshot import CLUSTER, ENDPOINT, RUNTIME, InconsistentSnapshot
from controlplane.status import XdsStatus
from tests.unit.test_translate_envoy import DATAPLANE


def config(backend: str) -> ConfigSet:
    return ConfigSet(
        backends=(Backend(backend, "http://127.0.0.1:9100/v1", (BackendModel("m"),)),),
        endpoints=(
            Endpoint("e", "demo", "chat", (ModelAlias("m", (ModelTarget(backend, "m"),)),)),
        ),
    )


def test_keep_from_carries_dropped_clusters_and_their_endpoints() -> None:
    old = generate(config("old"), DATAPLANE, {})
    new = generate(config("new"), DATAPLANE, {})
    before = build_snapshot(old.envoy, old.runtime)
    union = build_snapshot(new.envoy, old.runtime, keep_from=before)
    union.check()  # the old runtime still routes to backend-old: it must be there
    assert set(union.resources(CLUSTER).items) == {"weir-extproc", "backend-old", "backend-new"}
    assert set(union.resources(ENDPOINT).items) == set(union.resources(CLUSTER).items)
    final = build_snapshot(new.envoy, new.runtime)
    assert "backend-old" not in final.resources(CLUSTER).items


async def test_publish_without_clients_ends_on_the_new_config() -> None:
    cache, status = SnapshotCache(), XdsStatus()
    publisher = Publisher(cache, status, settle_timeout=0.1)
    await publisher.publish(generate(config("old"), DATAPLANE, {}))
    first = cache.snapshot
    await publisher.publish(generate(config("new"), DATAPLANE, {}))
    assert cache.snapshot is not None and first is not None
    assert set(cache.snapshot.resources(CLUSTER).items) == {"weir-extproc", "backend-new"}
    assert cache.snapshot.version(RUNTIME) != first.version(RUNTIME)
    # Three publishes: union, new runtime, pruned clusters.
    assert cache.current()[0] == 4


async def test_an_inconsistent_update_is_refused_and_nothing_changes() -> None:
    cache, status = SnapshotCache(), XdsStatus()
    publisher = Publisher(cache, status, settle_timeout=0.1)
    good = generate(config("old"), DATAPLANE, {})
    await publisher.publish(good)
    before = cache.current()
    broken = Generated(
        translate_envoy.EnvoyResources(good.envoy.clusters, (), good.envoy.listeners, ()),
        translate_runtime.translate(config("old"), {}),
    )
    with pytest.raises(InconsistentSnapshot, match="has no ClusterLoadAssignment"):
        await publisher.publish(broken)
    assert cache.current() == before
