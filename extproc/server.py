"""The ext_proc process: a grpc.aio server with health checking and graceful shutdown.

gRPC health: service `weir.extproc` (and "") is NOT_SERVING until the first runtime config
and API key set from the control plane are applied (readiness); `liveness` is SERVING while
the server runs.
On SIGTERM it reports NOT_SERVING, stops taking new streams and lets the ones in flight
finish (up to the grace period).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_grpc
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extproc.auth import KeyIndexHolder
from extproc.config_client import (
    ConfigClient,
    keys_subscription,
    runtime_subscription,
    settings_subscription,
)
from extproc.limit_store import LimitStore, MemoryStore
from extproc.limits import FailureMode, Limiter
from extproc.metrics import serve_metrics
from extproc.processor import ExternalProcessor
from extproc.project_settings import ProjectSettingsHolder
from extproc.records import RecordWriter
from extproc.routes import RouteTableHolder

log = logging.getLogger("weir.extproc")

HEALTH_SERVICE = "weir.extproc"
LIVENESS_SERVICE = "liveness"


@dataclass(frozen=True)
class ExtProcSettings:
    listen: str  # host:port
    control_plane: str  # host:port of the xDS server
    node_id: str
    grace_s: float = 5.0
    # Where request records go (an SQLite file); None: not recorded.
    records_path: Path | None = None
    # host:port of the Prometheus /metrics endpoint; None: not served.
    metrics_address: str | None = None
    # Where rate-limit counters live: None for this process; a redis:// URL to share
    # them with every replica.
    redis_url: str | None = None
    # With Redis unreachable: "open" keeps limiting with this replica's own counters,
    # "closed" answers 503 (extproc.limits).
    limit_store_failure: FailureMode = "open"


class ExtProcServer:
    def __init__(self, settings: ExtProcSettings) -> None:
        self.settings = settings
        self.routes = RouteTableHolder()
        self.keys = KeyIndexHolder()
        self.project_settings = ProjectSettingsHolder()
        self.health = health_aio.HealthServicer()
        self.client = ConfigClient(
            settings.control_plane,
            settings.node_id,
            [
                runtime_subscription(self.routes),
                keys_subscription(self.keys),
                settings_subscription(self.project_settings),
            ],
            on_applied=self._on_applied,
        )
        self.records = (
            RecordWriter(settings.records_path) if settings.records_path is not None else None
        )
        self.limit_store: LimitStore
        if settings.redis_url is not None:
            from extproc.redis_store import RedisStore

            self.limit_store = RedisStore(settings.redis_url)
        else:
            self.limit_store = MemoryStore()
        self._stopping = asyncio.Event()
        self.bound_port = 0

    async def _on_applied(self) -> None:
        await self.health.set(HEALTH_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)

    async def run(self) -> None:
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                # Accept Envoy's HTTP/2 keepalive pings (see controlplane.server).
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 1000),
                ("grpc.http2.max_ping_strikes", 0),
            ]
        )
        ext_grpc.add_ExternalProcessorServicer_to_server(
            ExternalProcessor(
                self.routes,
                self.keys,
                self.records,
                self.project_settings,
                limiter=Limiter(
                    self.limit_store, on_store_failure=self.settings.limit_store_failure
                ),
            ),
            server,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        for service in (HEALTH_SERVICE, ""):
            await self.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.bound_port = server.add_insecure_port(self.settings.listen)
        if self.bound_port == 0:
            raise OSError(f"cannot listen on {self.settings.listen}")
        if self.records is not None:
            self.records.start()
        metrics = None
        if self.settings.metrics_address is not None:
            metrics, _ = serve_metrics(self.settings.metrics_address)
        await server.start()
        await self.health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "ext_proc listening on %s; rate-limit counters in %s",
            self.settings.listen,
            self.limit_store.where,
        )
        client = asyncio.create_task(self.client.run())
        try:
            await self._stopping.wait()
        finally:
            await self.health.enter_graceful_shutdown()
            await server.stop(grace=self.settings.grace_s)
            client.cancel()
            if metrics is not None:
                metrics.shutdown()
            if self.records is not None:
                await asyncio.to_thread(self.records.close)
            await self.limit_store.close()
            log.info("ext_proc stopped")

    def stop(self) -> None:
        self._stopping.set()


async def serve(settings: ExtProcSettings) -> None:
    server = ExtProcServer(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stop)
    await server.run()
