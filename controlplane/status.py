"""What each connected xDS client has been sent, has ACKed and has NACKed.

The ADS server reports into it through the `StreamCallbacks` protocol; the publisher
waits on it to sequence make-before-break pushes across Envoy and ext_proc clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger("weir.controlplane.xds")


class StreamCallbacks(Protocol):
    def on_stream_open(self, stream_id: int, node_id: str, node_cluster: str) -> None: ...

    def on_stream_closed(self, stream_id: int) -> None: ...

    def on_subscribe(self, stream_id: int, type_url: str) -> None: ...

    def on_sent(
        self, stream_id: int, type_url: str, version: str, names: frozenset[str]
    ) -> None: ...

    def on_ack(self, stream_id: int, type_url: str, version: str) -> None: ...

    def on_nack(self, stream_id: int, type_url: str, version: str, message: str) -> None: ...


# type URL -> (version, names that must have been delivered); empty names = any.
Wanted = dict[str, tuple[str, frozenset[str]]]


@dataclass(frozen=True)
class Nack:
    node_id: str
    type_url: str
    version: str
    message: str
    at: float


@dataclass
class StreamStatus:
    node_id: str
    node_cluster: str
    subscribed: set[str] = field(default_factory=set)
    sent: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)
    acked: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)
    nacked: dict[str, str] = field(default_factory=dict)


class XdsStatus:
    """Implements StreamCallbacks; keeps the NACK history for reports and tests."""

    def __init__(self) -> None:
        self.streams: dict[int, StreamStatus] = {}
        self.nacks: list[Nack] = []
        self.connects: Counter[str] = Counter()  # streams opened, per node id
        self._changed = asyncio.Condition()

    def _notify(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.get_running_loop().create_task(notify())

    def on_stream_open(self, stream_id: int, node_id: str, node_cluster: str) -> None:
        self.streams[stream_id] = StreamStatus(node_id, node_cluster)
        self.connects[node_id] += 1
        log.info("xDS stream %d opened by node %s (cluster %s)", stream_id, node_id, node_cluster)

    def on_stream_closed(self, stream_id: int) -> None:
        status = self.streams.pop(stream_id, None)
        if status is not None:
            log.info("xDS stream %d of node %s closed", stream_id, status.node_id)
        self._notify()

    def on_subscribe(self, stream_id: int, type_url: str) -> None:
        self.streams[stream_id].subscribed.add(type_url)

    def on_sent(self, stream_id: int, type_url: str, version: str, names: frozenset[str]) -> None:
        self.streams[stream_id].sent[type_url] = (version, names)

    def on_ack(self, stream_id: int, type_url: str, version: str) -> None:
        status = self.streams[stream_id]
        _, names = status.sent.get(type_url, (version, frozenset()))
        status.acked[type_url] = (version, names)
        log.debug("node %s ACKed %s version %s", status.node_id, type_url, version)
        self._notify()

    def on_nack(self, stream_id: int, type_url: str, version: str, message: str) -> None:
        status = self.streams[stream_id]
        status.nacked[type_url] = version
        self.nacks.append(Nack(status.node_id, type_url, version, message, time.time()))
        log.error(
            "node %s rejected (NACK) %s version %s: %s; it keeps its last good config",
            status.node_id,
            type_url,
            version,
            message,
        )
        self._notify()

    def _settled(self, wanted: Wanted) -> tuple[bool, list[Nack]]:
        done = True
        rejected: list[Nack] = []
        for status in self.streams.values():
            for type_url, (version, names) in wanted.items():
                if type_url not in status.subscribed:
                    continue
                acked_version, acked_names = status.acked.get(type_url, ("", frozenset()))
                if status.nacked.get(type_url) == version:
                    rejected.append(Nack(status.node_id, type_url, version, "", 0.0))
                elif acked_version != version or not names <= acked_names:
                    done = False
        return done, rejected

    async def wait_settled(self, wanted: Wanted, timeout: float) -> list[Nack]:
        """Wait until every open stream subscribed to each type has ACKed (holding all
        the wanted names) or NACKed the wanted version, or `timeout` passes. Returns the
        rejections.

        Names matter for EDS: a client ACKs a version for the names it asked for, and asks
        for a new cluster's endpoints only after it has the cluster."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                done, rejected = self._settled(wanted)
                remaining = deadline - time.monotonic()
                if done or remaining <= 0:
                    if not done:
                        log.warning("xDS clients did not confirm %s in %.1fs", wanted, timeout)
                    return rejected
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):  # (wait_for can swallow a cancel)
                        await self._changed.wait()
