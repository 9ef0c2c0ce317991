"""Turn an accepted ConfigSet into snapshots and publish them make-before-break.

A change is pushed in three steps, each waiting for the clients to confirm:
  1. Envoy: new clusters/endpoints/listeners/routes, keeping clusters the new config drops;
  2. ext_proc: the new runtime config (it may now route to the new clusters);
  3. Envoy: the dropped clusters are removed.
A NACK at step 1 or 2 restores the last good snapshot (all of it) and is reported; a config that
fails translation or the consistency check is reported and never published.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.message import Message

from controlplane import translate_envoy, translate_runtime
from controlplane.cache import SnapshotCache
from controlplane.dataplane import DataPlaneSettings
from controlplane.errors import WeirControlPlaneError
from controlplane.model import ConfigSet
from controlplane.snapshot import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    RUNTIME,
    Snapshot,
)
from controlplane.status import Nack, XdsStatus
from weir.config.v1 import runtime_pb2

log = logging.getLogger("weir.controlplane")

ENVOY_TYPES = (CLUSTER, ENDPOINT, LISTENER, ROUTE)
# Types clients subscribe to by name: a push has settled only once every name arrived.
NAMED_TYPES = (ENDPOINT, ROUTE)


class UpdateRejected(WeirControlPlaneError):
    def __init__(self, nacks: list[Nack]) -> None:
        self.nacks = nacks
        who = ", ".join(sorted({f"{n.node_id} ({n.type_url.rsplit('.', 1)[-1]})" for n in nacks}))
        super().__init__(f"update rejected by {who}; the last good config keeps serving")


@dataclass(frozen=True)
class Generated:
    envoy: translate_envoy.EnvoyResources
    runtime: runtime_pb2.RuntimeConfig


def generate(
    config: ConfigSet, dataplane: DataPlaneSettings, environ: Mapping[str, str]
) -> Generated:
    """Raises ConfigInvalid (e.g. a missing credential)."""
    return Generated(
        translate_envoy.translate(config, dataplane),
        translate_runtime.translate(config, environ, dataplane.max_request_bytes),
    )


def build_snapshot(
    envoy: translate_envoy.EnvoyResources,
    runtime: runtime_pb2.RuntimeConfig | None,
    keep_from: Snapshot | None = None,
) -> Snapshot:
    """`keep_from`: an older snapshot whose clusters (and their endpoints) stay too."""
    clusters: dict[str, Message] = {c.name: c for c in envoy.clusters}
    endpoints: dict[str, Message] = {e.cluster_name: e for e in envoy.endpoints}
    if keep_from is not None:
        for type_url, target in ((CLUSTER, clusters), (ENDPOINT, endpoints)):
            message_type = type(next(iter(target.values()))) if target else None
            for name, packed in keep_from.resources(type_url).items.items():
                if name not in target and message_type is not None:
                    message = message_type()
                    packed.Unpack(message)
                    target[name] = message
    resources: dict[str, list[tuple[str, Message]]] = {
        CLUSTER: list(clusters.items()),
        ENDPOINT: list(endpoints.items()),
        LISTENER: [(listener.name, listener) for listener in envoy.listeners],
        ROUTE: [(route.name, route) for route in envoy.routes],
        RUNTIME: [(translate_runtime.RUNTIME_RESOURCE_NAME, runtime)] if runtime else [],
    }
    return Snapshot.build(resources)


def _named(snapshot: Snapshot, type_url: str) -> frozenset[str]:
    return frozenset(snapshot.resources(type_url).items)


def _runtime_of(snapshot: Snapshot) -> runtime_pb2.RuntimeConfig | None:
    packed = snapshot.resources(RUNTIME).items.get(translate_runtime.RUNTIME_RESOURCE_NAME)
    if packed is None:
        return None
    runtime = runtime_pb2.RuntimeConfig()
    packed.Unpack(runtime)
    return runtime


class Publisher:
    def __init__(
        self,
        cache: SnapshotCache,
        status: XdsStatus,
        settle_timeout: float = 2.0,
    ) -> None:
        self._cache = cache
        self._status = status
        self._settle_timeout = settle_timeout

    async def _push(self, snapshot: Snapshot, types: tuple[str, ...]) -> list[Nack]:
        self._cache.set_snapshot(snapshot)
        wanted = {
            t: (snapshot.version(t), _named(snapshot, t) if t in NAMED_TYPES else frozenset())
            for t in types
        }
        return await self._status.wait_settled(wanted, self._settle_timeout)

    async def publish(self, generated: Generated) -> None:
        """Raises InconsistentSnapshot (nothing published) or UpdateRejected (the last
        good snapshot restored)."""
        target = build_snapshot(generated.envoy, generated.runtime)
        target.check()
        good = self._cache.snapshot
        if good is None:
            self._cache.set_snapshot(target)
            return
        # 1. Envoy first, keeping what the current runtime still routes to.
        step1 = build_snapshot(generated.envoy, _runtime_of(good), keep_from=good)
        step1.check()
        nacks = await self._push(step1, ENVOY_TYPES)
        if nacks:
            self._cache.set_snapshot(good)
            raise UpdateRejected(nacks)
        # 2. ext_proc.
        step2 = build_snapshot(generated.envoy, generated.runtime, keep_from=good)
        nacks = await self._push(step2, (RUNTIME,))
        if nacks:
            self._cache.set_snapshot(good)
            raise UpdateRejected(nacks)
        # 3. Drop what nothing routes to any more.
        if step2.version(CLUSTER) != target.version(CLUSTER):
            await self._push(target, (CLUSTER, ENDPOINT))
        log.info(
            "config %s published (clusters %s, routes %s)",
            generated.runtime.revision,
            target.version(CLUSTER),
            target.version(ROUTE),
        )
