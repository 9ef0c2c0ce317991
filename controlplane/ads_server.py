"""State-of-the-World Aggregated Discovery Service over grpc.aio.

One bidi stream per client. Per type URL the stream remembers the last nonce, the version
it sent and the names it sent. A request echoing the latest nonce is an ACK, or a NACK
when it carries `error_detail`; requests with a stale nonce are ignored. Resources are
sent only when their version differs from what the client holds (or when the client
asks for names it was not sent), in make-before-break type order.

The server depends only on `ConfigCache` and `StreamCallbacks`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from controlplane.cache import ConfigCache
from controlplane.snapshot import PUSH_ORDER, WILDCARD_TYPES, Snapshot
from controlplane.status import StreamCallbacks

log = logging.getLogger("weir.controlplane.xds")

_stream_ids = itertools.count(1)


@dataclass
class _TypeState:
    subscribed: bool = False
    names: frozenset[str] = frozenset()  # requested names; empty = all
    nonce: str = ""
    sent_version: str | None = None
    sent_names: frozenset[str] = frozenset()


@dataclass
class _Stream:
    stream_id: int
    callbacks: StreamCallbacks
    node_id: str = ""
    types: dict[str, _TypeState] = field(default_factory=dict)
    nonces: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def handle_request(self, request: discovery_pb2.DiscoveryRequest) -> str | None:
        """Record a request; return the type URL that may need a response, if any."""
        if not self.node_id:
            self.node_id = request.node.id or "unknown"
            self.callbacks.on_stream_open(self.stream_id, self.node_id, request.node.cluster)
        type_url: str = request.type_url
        if not type_url:
            log.warning("node %s sent a request without type_url; ignored", self.node_id)
            return None
        state = self.types.setdefault(type_url, _TypeState())
        if request.response_nonce:
            if request.response_nonce != state.nonce:
                return None  # stale: answers a response that has been superseded
            if request.HasField("error_detail"):
                self.callbacks.on_nack(
                    self.stream_id,
                    type_url,
                    state.sent_version or "",
                    request.error_detail.message,
                )
            else:
                self.callbacks.on_ack(self.stream_id, type_url, request.version_info)
        elif not state.subscribed:
            state.subscribed = True
            self.callbacks.on_subscribe(self.stream_id, type_url)
            if request.version_info:
                # A reconnecting client already holds this version: do not resend it, and
                # count it as delivered and accepted (what the publisher waits for).
                state.sent_version = request.version_info
                state.sent_names = frozenset(request.resource_names)
                self.callbacks.on_sent(
                    self.stream_id, type_url, request.version_info, state.sent_names
                )
                self.callbacks.on_ack(self.stream_id, type_url, request.version_info)
        if type_url not in WILDCARD_TYPES:
            state.names = frozenset(n for n in request.resource_names if n != "*")
        return type_url

    def response_for(
        self, type_url: str, snapshot: Snapshot | None
    ) -> discovery_pb2.DiscoveryResponse | None:
        state = self.types.get(type_url)
        if state is None or not state.subscribed or snapshot is None:
            return None
        resources = snapshot.resources(type_url)
        if type_url in WILDCARD_TYPES or not state.names:
            items = dict(resources.items)
        else:
            items = resources.select(state.names)
        names_missing = bool(state.names - state.sent_names)
        if state.sent_version == resources.version and not names_missing:
            return None
        nonce = str(next(self.nonces))
        state.nonce = nonce
        state.sent_version = resources.version
        state.sent_names = state.names or frozenset(items)
        self.callbacks.on_sent(self.stream_id, type_url, resources.version, frozenset(items))
        return discovery_pb2.DiscoveryResponse(
            version_info=resources.version,
            resources=[items[name] for name in sorted(items)],
            type_url=type_url,
            nonce=nonce,
        )


class AggregatedDiscoveryServer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, cache: ConfigCache, callbacks: StreamCallbacks) -> None:
        self._cache = cache
        self._callbacks = callbacks

    async def StreamAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext[
            discovery_pb2.DiscoveryRequest, discovery_pb2.DiscoveryResponse
        ],
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        stream = _Stream(next(_stream_ids), self._callbacks)
        events: asyncio.Queue[discovery_pb2.DiscoveryRequest | int | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await events.put(request)
            finally:
                await events.put(None)

        async def watch() -> None:
            generation, _ = self._cache.current()
            while True:
                await self._cache.wait_newer(generation)
                generation, _ = self._cache.current()
                await events.put(generation)

        tasks = [asyncio.create_task(read()), asyncio.create_task(watch())]
        try:
            while True:
                event = await events.get()
                if event is None:
                    return
                _, snapshot = self._cache.current()
                if isinstance(event, int):
                    pending = list(PUSH_ORDER)
                else:
                    changed = stream.handle_request(event)
                    pending = [changed] if changed else []
                for type_url in pending:
                    response = stream.response_for(type_url, snapshot)
                    if response is not None:
                        yield response
        finally:
            for task in tasks:
                task.cancel()
            if stream.node_id:
                self._callbacks.on_stream_closed(stream.stream_id)
