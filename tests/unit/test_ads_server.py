"""The SotW ADS server against a real grpc.aio client: versions, nonces, ACK/NACK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

from controlplane.ads_server import AggregatedDiscoveryServer
from controlplane.cache import SnapshotCache
from controlplane.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, Snapshot
from controlplane.status import XdsStatus


def eds_cluster(name: str) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    cluster.eds_cluster_config.eds_config.ads.SetInParent()
    return cluster


def snapshot(clusters: list[str]) -> Snapshot:
    return Snapshot.build(
        {
            CLUSTER: [(c, eds_cluster(c)) for c in clusters],
            ENDPOINT: [(c, endpoint_pb2.ClusterLoadAssignment(cluster_name=c)) for c in clusters],
            LISTENER: [("l", listener_pb2.Listener(name="l"))],
            ROUTE: [("r", route_pb2.RouteConfiguration(name="r"))],
        }
    )


class Client:
    """A hand-driven ADS stream."""

    def __init__(self, stub: ads_pb2_grpc.AggregatedDiscoveryServiceStub) -> None:
        self.outbox: asyncio.Queue[discovery_pb2.DiscoveryRequest] = asyncio.Queue()

        async def requests() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
            while True:
                yield await self.outbox.get()

        self.call = stub.StreamAggregatedResources(requests())
        self.inbox: asyncio.Queue[discovery_pb2.DiscoveryResponse] = asyncio.Queue()

        async def responses() -> None:
            async for response in self.call:
                await self.inbox.put(response)

        # Reading in a task: a cancelled read() would cancel the whole RPC.
        self.reader = asyncio.create_task(responses())

    async def send(self, **fields: object) -> None:
        fields.setdefault("node", base_pb2.Node(id="test-node", cluster="test"))
        await self.outbox.put(discovery_pb2.DiscoveryRequest(**fields))  # type: ignore[arg-type]

    async def recv(self, timeout: float = 2.0) -> discovery_pb2.DiscoveryResponse:
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def nothing(self, within: float = 0.3) -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self.inbox.get(), within)


@pytest.fixture
async def ads() -> AsyncIterator[
    tuple[SnapshotCache, XdsStatus, ads_pb2_grpc.AggregatedDiscoveryServiceStub]
]:
    cache, status = SnapshotCache(), XdsStatus()
    server = grpc.aio.server()
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(
        AggregatedDiscoveryServer(cache, status), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield cache, status, ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    await channel.close()
    await server.stop(0)


async def test_ack_then_no_resend_of_unchanged(ads) -> None:  # type: ignore[no-untyped-def]
    cache, status, stub = ads
    cache.set_snapshot(snapshot(["a"]))
    client = Client(stub)
    await client.send(type_url=CLUSTER)
    first = await client.recv()
    assert first.type_url == CLUSTER
    assert [r.type_url for r in first.resources] == [CLUSTER]
    assert first.version_info == cache.current()[1].version(CLUSTER)  # type: ignore[union-attr]
    await client.send(type_url=CLUSTER, version_info=first.version_info, response_nonce=first.nonce)
    await asyncio.sleep(0.05)
    assert next(iter(status.streams.values())).acked[CLUSTER][0] == first.version_info
    # The same content published again is not resent.
    cache.set_snapshot(snapshot(["a"]))
    await client.nothing()
    # New content is.
    cache.set_snapshot(snapshot(["a", "b"]))
    second = await client.recv()
    assert second.version_info != first.version_info
    assert second.nonce != first.nonce
    assert len(second.resources) == 2


async def test_nack_is_reported_and_not_resent(ads) -> None:  # type: ignore[no-untyped-def]
    cache, status, stub = ads
    cache.set_snapshot(snapshot(["a"]))
    client = Client(stub)
    await client.send(type_url=CLUSTER)
    good = await client.recv()
    await client.send(type_url=CLUSTER, version_info=good.version_info, response_nonce=good.nonce)
    cache.set_snapshot(snapshot(["a", "bad"]))
    bad = await client.recv()
    await client.send(
        type_url=CLUSTER,
        version_info=good.version_info,  # a NACK carries the last good version
        response_nonce=bad.nonce,
        error_detail=status_pb2.Status(code=3, message="cluster bad: invalid"),
    )
    await client.nothing()
    assert len(status.nacks) == 1
    nack = status.nacks[0]
    assert (nack.node_id, nack.type_url, nack.version) == ("test-node", CLUSTER, bad.version_info)
    assert "cluster bad: invalid" in nack.message


async def test_stale_nonce_is_ignored(ads) -> None:  # type: ignore[no-untyped-def]
    cache, status, stub = ads
    cache.set_snapshot(snapshot(["a"]))
    client = Client(stub)
    await client.send(type_url=CLUSTER)
    first = await client.recv()
    cache.set_snapshot(snapshot(["a", "b"]))
    second = await client.recv()
    # A NACK of the superseded response must not count against the current one.
    await client.send(
        type_url=CLUSTER,
        response_nonce=first.nonce,
        error_detail=status_pb2.Status(code=3, message="late"),
    )
    await client.send(
        type_url=CLUSTER, version_info=second.version_info, response_nonce=second.nonce
    )
    await asyncio.sleep(0.05)
    assert status.nacks == []
    assert next(iter(status.streams.values())).acked[CLUSTER][0] == second.version_info


async def test_eds_sends_only_requested_names_and_answers_new_names(ads) -> None:  # type: ignore[no-untyped-def]
    cache, _, stub = ads
    cache.set_snapshot(snapshot(["a", "b"]))
    client = Client(stub)
    await client.send(type_url=ENDPOINT, resource_names=["a"])
    first = await client.recv()
    assert [
        endpoint_pb2.ClusterLoadAssignment.FromString(r.value).cluster_name for r in first.resources
    ] == ["a"]
    await client.send(
        type_url=ENDPOINT,
        resource_names=["a", "b"],
        version_info=first.version_info,
        response_nonce=first.nonce,
    )
    second = await client.recv()
    assert sorted(
        endpoint_pb2.ClusterLoadAssignment.FromString(r.value).cluster_name
        for r in second.resources
    ) == ["a", "b"]


async def test_reconnect_with_current_version_gets_nothing_resent(ads) -> None:  # type: ignore[no-untyped-def]
    cache, status, stub = ads
    cache.set_snapshot(snapshot(["a"]))
    client = Client(stub)
    held = cache.current()[1].version(CLUSTER)  # type: ignore[union-attr]
    await client.send(type_url=CLUSTER, version_info=held)
    await client.nothing()
    # What it holds counts as accepted: a publisher waiting for it does not time out.
    assert next(iter(status.streams.values())).acked[CLUSTER][0] == held
    cache.set_snapshot(snapshot(["a", "c"]))
    assert len((await client.recv()).resources) == 2


async def test_changes_are_pushed_clusters_endpoints_listeners_routes(ads) -> None:  # type: ignore[no-untyped-def]
    cache, _, stub = ads
    cache.set_snapshot(snapshot(["a"]))
    client = Client(stub)
    # Subscribe in the "wrong" order and ACK everything.
    for type_url, names in ((ROUTE, ["r"]), (LISTENER, []), (ENDPOINT, ["a"]), (CLUSTER, [])):
        await client.send(type_url=type_url, resource_names=names)
        response = await client.recv()
        await client.send(
            type_url=type_url,
            resource_names=names,
            version_info=response.version_info,
            response_nonce=response.nonce,
        )
    cache.set_snapshot(_all_changed())
    order = [(await client.recv()).type_url for _ in range(4)]
    assert order == [CLUSTER, ENDPOINT, LISTENER, ROUTE]


def _all_changed() -> Snapshot:
    cluster = eds_cluster("a")
    cluster.connect_timeout.seconds = 7
    listener = listener_pb2.Listener(name="l", stat_prefix="x")
    return Snapshot.build(
        {
            CLUSTER: [("a", cluster)],
            ENDPOINT: [
                (
                    "a",
                    endpoint_pb2.ClusterLoadAssignment(
                        cluster_name="a",
                        policy=endpoint_pb2.ClusterLoadAssignment.Policy(
                            overprovisioning_factor={"value": 150}
                        ),
                    ),
                )
            ],
            LISTENER: [("l", listener)],
            ROUTE: [
                ("r", route_pb2.RouteConfiguration(name="r", ignore_port_in_host_matching=True))
            ],
        }
    )
