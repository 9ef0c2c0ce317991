"""The xDS (ADS, State of the World) client that receives ext_proc's config.

It subscribes, on one ADS stream, to weir's own resource types: the runtime config
(`weir.config.v1.RuntimeConfig`, compiled into a RouteTable) and the API keys
(`weir.config.v1.ApiKeySet`, compiled into a KeyIndex). Each response is compiled and
swapped in whole, then ACKed; one that does not compile is NACKed with the reason and
the previous one keeps serving. Versions are per type. When the control plane goes away
the last config keeps serving and the client reconnects with capped exponential backoff,
telling the server which versions it holds so that nothing unchanged is resent.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2

from extproc.auth import KeyIndex, KeyIndexHolder, KeySetInvalid
from extproc.project_settings import ProjectSettingsHolder, ProjectSettingsIndex, SettingsInvalid
from extproc.routes import RouteTable, RouteTableHolder, RuntimeConfigInvalid
from weir.config.v1 import keys_pb2, runtime_pb2, settings_pb2

log = logging.getLogger("weir.extproc.xds")

RUNTIME_TYPE_URL = "type.googleapis.com/weir.config.v1.RuntimeConfig"
KEYS_TYPE_URL = "type.googleapis.com/weir.config.v1.ApiKeySet"
SETTINGS_TYPE_URL = "type.googleapis.com/weir.config.v1.ProjectSettingsSet"


@dataclass
class Subscription:
    """One resource type: how to decode it, and how to compile and swap it in.

    `apply` raises `rejects` for a resource that must be NACKed."""

    type_url: str
    what: str  # for log lines
    message: type[Message]
    apply: Callable[[Message], None]
    rejects: tuple[type[Exception], ...]
    # Zero resources mean an empty one (no keys), rather than a broken response.
    empty_allowed: bool = False
    version: str = ""  # last accepted version
    nacks: list[str] = field(default_factory=list)

    def accept(self, response: discovery_pb2.DiscoveryResponse) -> str | None:
        """Compile and swap in; return the error text for a NACK, or None."""
        messages = []
        for packed in response.resources:
            message = self.message()
            if not packed.Unpack(message):
                return f"unexpected resource type {packed.type_url}"
            messages.append(message)
        if not messages and self.empty_allowed:
            messages.append(self.message())
        if len(messages) != 1:
            return f"expected exactly one {self.what} resource, got {len(messages)}"
        try:
            self.apply(messages[0])
        except self.rejects as error:
            return str(error)
        return None


M = TypeVar("M", bound=Message)
T = TypeVar("T")


def _swap_in(
    kind: type[M], compile_: Callable[[M], T], store: Callable[[T], None]
) -> Callable[[Message], None]:
    """Compile a received resource (raising what the subscription rejects) and store it."""

    def apply(message: Message) -> None:
        assert isinstance(message, kind)
        store(compile_(message))

    return apply


def runtime_subscription(holder: RouteTableHolder) -> Subscription:
    def store(table: RouteTable) -> None:
        holder.table = table

    return Subscription(
        RUNTIME_TYPE_URL,
        "runtime config",
        runtime_pb2.RuntimeConfig,
        _swap_in(runtime_pb2.RuntimeConfig, RouteTable.compile, store),
        (RuntimeConfigInvalid,),
    )


def keys_subscription(holder: KeyIndexHolder) -> Subscription:
    def store(index: KeyIndex) -> None:
        holder.index = index

    return Subscription(
        KEYS_TYPE_URL,
        "API key set",
        keys_pb2.ApiKeySet,
        _swap_in(keys_pb2.ApiKeySet, KeyIndex.compile, store),
        (KeySetInvalid,),
        empty_allowed=True,
    )


def settings_subscription(holder: ProjectSettingsHolder) -> Subscription:
    def store(index: ProjectSettingsIndex) -> None:
        holder.index = index

    return Subscription(
        SETTINGS_TYPE_URL,
        "project settings",
        settings_pb2.ProjectSettingsSet,
        _swap_in(settings_pb2.ProjectSettingsSet, ProjectSettingsIndex.compile, store),
        (SettingsInvalid,),
        empty_allowed=True,
    )


class ConfigClient:
    def __init__(
        self,
        target: str,
        node_id: str,
        subscriptions: list[Subscription],
        on_applied: Callable[[], Awaitable[None]] | None = None,
        max_backoff_s: float = 2.0,
    ) -> None:
        self._target = target
        self._node = base_pb2.Node(id=node_id, cluster="weir-extproc")
        self.subscriptions = {s.type_url: s for s in subscriptions}
        self._on_applied = on_applied
        self._max_backoff = max_backoff_s

    @property
    def complete(self) -> bool:
        """Has every subscribed type been accepted at least once?"""
        return all(s.version for s in self.subscriptions.values())

    async def _requests(
        self, outbox: asyncio.Queue[discovery_pb2.DiscoveryRequest]
    ) -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while True:
            yield await outbox.get()

    async def _session(self) -> None:
        async with grpc.aio.insecure_channel(self._target) as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            outbox: asyncio.Queue[discovery_pb2.DiscoveryRequest] = asyncio.Queue()
            for i, held in enumerate(self.subscriptions.values()):
                request = discovery_pb2.DiscoveryRequest(
                    type_url=held.type_url,
                    version_info=held.version,
                    resource_names=[],
                )
                if i == 0:
                    request.node.CopyFrom(self._node)
                await outbox.put(request)
            call = stub.StreamAggregatedResources(self._requests(outbox))
            async for response in call:
                subscription = self.subscriptions.get(response.type_url)
                if subscription is None:
                    continue
                error = subscription.accept(response)
                request = discovery_pb2.DiscoveryRequest(
                    type_url=subscription.type_url, response_nonce=response.nonce
                )
                if error is None:
                    subscription.version = response.version_info
                    request.version_info = subscription.version
                    log.info("%s %s applied", subscription.what, subscription.version)
                    if self._on_applied is not None and self.complete:
                        await self._on_applied()
                else:
                    subscription.nacks.append(error)
                    request.version_info = subscription.version
                    request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
                    log.error(
                        "%s %s rejected (NACK), keeping %s: %s",
                        subscription.what,
                        response.version_info,
                        subscription.version or "none",
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
                    "control plane %s unavailable (%s); keeping the config held, retrying",
                    self._target,
                    error.code().name,
                )
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, self._max_backoff)
