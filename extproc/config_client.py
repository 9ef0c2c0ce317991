"""The xDS (ADS, State of the World) client that receives ext_proc's runtime config.

It subscribes to `weir.config.v1.RuntimeConfig`, compiles each response into a
RouteTable, swaps it in whole and ACKs; a config that does not compile is NACKed with
the reason and the previous table keeps serving. When the control plane goes away the
last table keeps serving and the client reconnects with capped exponential backoff,
telling the server which version it holds so that nothing unchanged is resent.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

from extproc.routes import RouteTable, RouteTableHolder, RuntimeConfigInvalid
from weir.config.v1 import runtime_pb2

log = logging.getLogger("weir.extproc.xds")

RUNTIME_TYPE_URL = "type.googleapis.com/weir.config.v1.RuntimeConfig"
RUNTIME_RESOURCE_NAME = "runtime"


class RuntimeConfigClient:
    def __init__(
        self,
        target: str,
        node_id: str,
        holder: RouteTableHolder,
        on_applied: Callable[[RouteTable], Awaitable[None]] | None = None,
        max_backoff_s: float = 2.0,
    ) -> None:
        self._target = target
        self._node = base_pb2.Node(id=node_id, cluster="weir-extproc")
        self._holder = holder
        self._on_applied = on_applied
        self._max_backoff = max_backoff_s
        self.version = ""  # last accepted version
        self.nacks: list[str] = []

    def _apply(self, response: discovery_pb2.DiscoveryResponse) -> str | None:
        """Compile and swap in; return the error text for a NACK, or None."""
        runtimes = []
        for packed in response.resources:
            runtime = runtime_pb2.RuntimeConfig()
            if not packed.Unpack(runtime):
                return f"unexpected resource type {packed.type_url}"
            runtimes.append(runtime)
        if len(runtimes) != 1:
            return f"expected exactly one RuntimeConfig resource, got {len(runtimes)}"
        try:
            table = RouteTable.compile(runtimes[0])
        except RuntimeConfigInvalid as error:
            return str(error)
        self._holder.table = table
        return None

    async def _requests(
        self, outbox: asyncio.Queue[discovery_pb2.DiscoveryRequest]
    ) -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while True:
            yield await outbox.get()

    async def _session(self) -> None:
        async with grpc.aio.insecure_channel(self._target) as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            outbox: asyncio.Queue[discovery_pb2.DiscoveryRequest] = asyncio.Queue()
            await outbox.put(
                discovery_pb2.DiscoveryRequest(
                    node=self._node,
                    type_url=RUNTIME_TYPE_URL,
                    version_info=self.version,
                    resource_names=[],
                )
            )
            call = stub.StreamAggregatedResources(self._requests(outbox))
            async for response in call:
                if response.type_url != RUNTIME_TYPE_URL:
                    continue
                error = self._apply(response)
                request = discovery_pb2.DiscoveryRequest(
                    type_url=RUNTIME_TYPE_URL, response_nonce=response.nonce
                )
                if error is None:
                    self.version = response.version_info
                    request.version_info = self.version
                    log.info("runtime config %s applied", self.version)
                    if self._on_applied is not None and self._holder.table is not None:
                        await self._on_applied(self._holder.table)
                else:
                    self.nacks.append(error)
                    request.version_info = self.version
                    request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
                    log.error(
                        "runtime config %s rejected (NACK), keeping %s: %s",
                        response.version_info,
                        self.version or "none",
                        error,
                    )
                await outbox.put(request)

    async def run(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._session()
                backoff = 0.1
            except grpc.aio.AioRpcError as error:
                log.warning(
                    "control plane %s unavailable (%s); keeping config %s, retrying",
                    self._target,
                    error.code().name,
                    self.version or "none",
                )
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, self._max_backoff)
