"""ext_proc's xDS client against the real ADS server (in-process, over gRPC)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc

from controlplane.ads_server import AggregatedDiscoveryServer
from controlplane.cache import SnapshotCache
from controlplane.snapshot import CLUSTER, KEYS, RUNTIME, Snapshot, TypedResources
from controlplane.status import XdsStatus
from extproc.auth import KeyIndexHolder
from extproc.config_client import ConfigClient, keys_subscription, runtime_subscription
from extproc.routes import RouteTableHolder
from tests.unit.test_processor import runtime
from weir.config.v1 import keys_pb2, runtime_pb2
from weir.ports import free_port


def snapshot_of(config: runtime_pb2.RuntimeConfig) -> Snapshot:
    # The runtime's clusters must exist for the snapshot to be consistent.
    backend = cluster_pb2.Cluster(name="backend-mock", type=cluster_pb2.Cluster.STATIC)
    return Snapshot.build({CLUSTER: [("backend-mock", backend)], RUNTIME: [("runtime", config)]})


class Server:
    def __init__(self, port: int) -> None:
        self.port = port
        self.cache = SnapshotCache()
        self.status = XdsStatus()
        self.server: grpc.aio.Server | None = None

    async def start(self) -> None:
        self.server = grpc.aio.server()
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(
            AggregatedDiscoveryServer(self.cache, self.status), self.server
        )
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self.server.start()

    async def stop(self) -> None:
        assert self.server is not None
        await self.server.stop(0)


async def until(check: object, timeout: float = 3.0) -> None:
    assert callable(check)
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    server = Server(free_port())
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def client(server: Server) -> AsyncIterator[tuple[ConfigClient, RouteTableHolder]]:
    holder = RouteTableHolder()
    client = ConfigClient(
        f"127.0.0.1:{server.port}",
        "extproc-unit",
        [runtime_subscription(holder), keys_subscription(KeyIndexHolder())],
        max_backoff_s=0.2,
    )
    task = asyncio.create_task(client.run())
    yield client, holder
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_applies_and_acks(
    server: Server, client: tuple[ConfigClient, RouteTableHolder]
) -> None:
    config_client, holder = client
    snapshot = snapshot_of(runtime())
    server.cache.set_snapshot(snapshot)
    await until(lambda: holder.table is not None)
    assert holder.table is not None and holder.table.endpoint("demo", "chat") is not None
    await until(
        lambda: any(
            s.acked.get(RUNTIME, ("",))[0] == snapshot.version(RUNTIME)
            for s in server.status.streams.values()
        )
    )
    assert config_client.subscriptions[RUNTIME].version == snapshot.version(RUNTIME)


async def test_a_bad_config_is_nacked_and_the_old_table_stays(
    server: Server, client: tuple[ConfigClient, RouteTableHolder]
) -> None:
    config_client, holder = client
    server.cache.set_snapshot(snapshot_of(runtime()))
    await until(lambda: holder.table is not None)
    good_table = holder.table
    bad = runtime()
    bad.endpoints[0].models[0].targets[0].backend = "ghost"
    server.cache.set_snapshot(snapshot_of(bad))
    await until(lambda: len(server.status.nacks) == 1)
    assert "unknown backend 'ghost'" in server.status.nacks[0].message
    assert holder.table is good_table
    assert config_client.subscriptions[RUNTIME].nacks == [server.status.nacks[0].message]


async def test_keeps_the_table_while_the_server_is_away_and_resyncs(
    server: Server, client: tuple[ConfigClient, RouteTableHolder]
) -> None:
    config_client, holder = client
    first = snapshot_of(runtime())
    server.cache.set_snapshot(first)
    await until(lambda: config_client.subscriptions[RUNTIME].version == first.version(RUNTIME))
    await server.stop()
    await asyncio.sleep(0.3)
    assert holder.table is not None  # still serving the last config
    # A new control plane with a new config on the same address.
    replacement = Server(server.port)
    changed = runtime(api_key="rotated")
    replacement.cache.set_snapshot(snapshot_of(changed))
    await replacement.start()
    try:
        await until(
            lambda: (
                config_client.subscriptions[RUNTIME].version
                == snapshot_of(changed).version(RUNTIME)
            ),
            5.0,
        )
        target = holder.table.endpoint("demo", "chat").models["gpt-4o-mini"][0]  # type: ignore[union-attr]
        assert target.authorization == b"Bearer rotated"
    finally:
        await replacement.stop()
        server.server = None
        await server.start()  # so the fixture's stop() has something to stop


def key_set(*hashes: bytes) -> TypedResources:
    message = keys_pb2.ApiKeySet(
        keys=[
            keys_pb2.ApiKey(id=f"key_{i}", project="demo", sha256=h, scopes=["inference"])
            for i, h in enumerate(hashes)
        ]
    )
    return TypedResources.build(KEYS, [("keys", message)])


async def test_api_keys_arrive_on_the_same_stream_and_a_bad_set_is_nacked(
    server: Server, client: tuple[ConfigClient, RouteTableHolder]
) -> None:
    config_client, _ = client
    keys = config_client.subscriptions[KEYS]
    server.cache.set_independent(KEYS, key_set(b"a" * 32))
    server.cache.set_snapshot(snapshot_of(runtime()))
    await until(lambda: config_client.complete)
    assert keys.version == key_set(b"a" * 32).version
    # A hash of the wrong length cannot be a SHA-256: the set is refused, the old one kept.
    server.cache.set_independent(KEYS, key_set(b"short"))
    await until(lambda: len(server.status.nacks) == 1)
    assert "32-byte hash" in server.status.nacks[0].message
    assert keys.version == key_set(b"a" * 32).version
    server.cache.set_independent(KEYS, key_set(b"a" * 32, b"b" * 32))
    await until(lambda: keys.version == key_set(b"a" * 32, b"b" * 32).version)
