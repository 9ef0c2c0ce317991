"""The control plane process: config source -> validate -> translate -> snapshot -> ADS,
plus the API keys (key store -> key watcher -> ADS) and the management API (uvicorn).

The config source is a directory (`DirectorySource`) or, on Kubernetes, the custom
resources of one namespace (`KubernetesSource`). On Kubernetes every replica serves xDS;
the one that holds the leader Lease also writes the resources' status.

gRPC health: service `weir.controlplane` (and "") reports SERVING once a first config has
been published (readiness); `liveness` is SERVING while the process runs. SIGTERM/SIGINT
stop it gracefully: connected clients keep their last config and reconnect with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
import uvicorn
from envoy.service.discovery.v3 import ads_pb2_grpc
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from controlplane.ads_server import AggregatedDiscoveryServer
from controlplane.cache import SnapshotCache
from controlplane.dataplane import Address, DataPlaneSettings
from controlplane.errors import ConfigInvalid, WeirControlPlaneError
from controlplane.key_watch import KeyWatcher
from controlplane.keystore import STORE_URL_ENV, SqlKeyStore, open_key_store
from controlplane.kube_api import KubeApi, connect
from controlplane.leader import LeaderElector
from controlplane.management_api import create_app
from controlplane.model import ConfigSet
from controlplane.publisher import Publisher, generate
from controlplane.resource_status import StatusWriter
from controlplane.settings_store import SettingsStore
from controlplane.source_files import DirectorySource
from controlplane.source_kubernetes import KubernetesSource
from controlplane.status import XdsStatus

log = logging.getLogger("weir.controlplane")

HEALTH_SERVICE = "weir.controlplane"
LIVENESS_SERVICE = "liveness"
# Envoy pings its xDS connection every 5 s (bootstrap connection_keepalive). gRPC's
# default policy answers pings more often than every 5 min with GOAWAY "too_many_pings",
# which would cut the ADS stream over and over: accept them.
SERVER_OPTIONS = [
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 1000),
    ("grpc.http2.max_ping_strikes", 0),
]


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the control plane owns SIGTERM/SIGINT
    and stops the management API itself (`should_exit`)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass(frozen=True)
class KubernetesSettings:
    """Where the custom resources are, and who this replica is for leader election."""

    namespace: str
    identity: str
    kubeconfig: str | None = None  # None: the pod's service account, else ~/.kube/config
    lease_name: str = "weir-controlplane"
    leader_election: bool = True
    watch_timeout_s: int = 300
    lease_duration_s: int = 15
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0


@dataclass(frozen=True)
class ControlPlaneSettings:
    config_dir: Path | None  # the files source; None with `kubernetes`
    xds: Address
    dataplane: DataPlaneSettings
    store_path: Path
    # host:port of the management HTTP API; None: not served.
    management: Address | None = None
    poll_interval_s: float = 0.2
    kubernetes: KubernetesSettings | None = None


class ControlPlane:
    """Wires the pieces; `run()` serves until `stop()`."""

    def __init__(self, settings: ControlPlaneSettings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.environ = environ
        self.cache = SnapshotCache()
        self.status = XdsStatus()
        self.publisher = Publisher(self.cache, self.status)
        self.health = health_aio.HealthServicer()
        self.last_error: str | None = None
        self.accepted: ConfigSet | None = None
        self._stopping = asyncio.Event()
        self.bound_port = 0
        self.failed = False
        self.store: SqlKeyStore | None = None
        self.keys: KeyWatcher | None = None
        self.project_settings: SettingsStore | None = None
        self.management: uvicorn.Server | None = None

    async def apply(self, result: ConfigSet | ConfigInvalid) -> bool:
        """Publish a load result (True: it is what is served now), or report why it keeps
        the last good config (False; `last_error` says why)."""
        if isinstance(result, ConfigInvalid):
            self._report(result)
            return False
        if result == self.accepted:
            return True
        try:
            await self.publisher.publish(generate(result, self.settings.dataplane, self.environ))
        except WeirControlPlaneError as error:
            self._report(error)
            return False
        except Exception as error:  # a bug or an unforeseen input: keep the last good config
            log.exception("config could not be translated; the last good config keeps serving")
            self.last_error = f"internal error ({type(error).__name__})"
            return False
        self.accepted = result
        self.last_error = None
        await self.health.set(HEALTH_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        return True

    def _report(self, error: WeirControlPlaneError) -> None:
        self.last_error = str(error)
        kept = "the last good config keeps serving" if self.accepted else "nothing is served yet"
        log.error("config rejected (%s):\n%s", kept, error)

    async def _consume(
        self,
        results: AsyncIterator[ConfigSet | ConfigInvalid],
        on_outcome: Callable[[bool], None] | None = None,
    ) -> None:
        try:
            async for result in results:
                published = await self.apply(result)
                if on_outcome is not None:
                    on_outcome(published)
        except Exception:
            # Without its source the control plane would serve a frozen config silently:
            # stop, so that the supervisor (or Kubernetes) sees it and restarts it.
            log.exception("the config source failed; stopping")
            self.failed = True
            self.stop()

    def _open_keys(self) -> KeyWatcher:
        """Raises KeyStoreError when the store cannot be opened or read."""
        self.store = open_key_store(self.environ.get(STORE_URL_ENV) or self.settings.store_path)
        self.project_settings = SettingsStore(self.store)
        self.keys = KeyWatcher(self.store, self.cache, settings=self.project_settings)
        self.keys.load()
        return self.keys

    async def _serve_management(self, address: Address, watcher: KeyWatcher) -> None:
        assert self.store is not None
        config = uvicorn.Config(
            create_app(self.store, watcher.notify, self.project_settings),
            host=address.host,
            port=address.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self.management = _QuietServer(config)
        await self.management.serve()
        if not self.management.started:
            log.error("the management API could not listen on %s", address)
            self.failed = True
            self.stop()

    async def run(self) -> None:
        kube = self.settings.kubernetes
        # A Kubernetes client that cannot be configured stops the start, before anything runs.
        api = connect(kube.namespace, kube.kubeconfig) if kube is not None else None
        watcher = self._open_keys()
        server = grpc.aio.server(options=SERVER_OPTIONS)
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(
            AggregatedDiscoveryServer(self.cache, self.status), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        await self.health.set(HEALTH_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        self.bound_port = server.add_insecure_port(str(self.settings.xds))
        if self.bound_port == 0:
            raise WeirControlPlaneError(f"cannot listen for xDS on {self.settings.xds}")
        await server.start()
        log.info("xDS (ADS) listening on %s:%d", self.settings.xds.host, self.bound_port)
        await self.health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        tasks = [asyncio.create_task(watcher.run())]
        elector: LeaderElector | None = None
        if kube is not None and api is not None:
            elector = self._watch_kubernetes(api, kube, tasks)
        else:
            assert self.settings.config_dir is not None
            source = DirectorySource(
                self.settings.config_dir, self.environ, interval=self.settings.poll_interval_s
            )
            tasks.append(asyncio.create_task(self._consume(source.watch())))
        background = len(tasks)
        if self.settings.management is not None:
            tasks.append(
                asyncio.create_task(self._serve_management(self.settings.management, watcher))
            )
            log.info("management API listening on %s", self.settings.management)
        try:
            await self._stopping.wait()
        finally:
            if self.management is not None:
                self.management.should_exit = True
            for task in tasks[:background]:
                task.cancel()
            await asyncio.wait(tasks[:background], timeout=2.0)
            if elector is not None:
                await elector.release()
            if len(tasks) > background:
                await asyncio.wait(tasks[background:], timeout=2.0)
            await self.health.enter_graceful_shutdown()
            await server.stop(grace=1.0)
            if self.store is not None:
                self.store.close()
            log.info("control plane stopped")

    def _watch_kubernetes(
        self, api: KubeApi, settings: KubernetesSettings, tasks: list[asyncio.Task[None]]
    ) -> LeaderElector | None:
        """Start the Kubernetes source, the status writer and (if on) leader election."""
        source = KubernetesSource(api, watch_timeout_s=settings.watch_timeout_s)
        status = StatusWriter(api, source)

        def on_outcome(published: bool) -> None:
            if source.last_build is not None:
                failure = None if published or self.last_error is None else self.last_error
                if source.last_build.problems or source.last_build.general:
                    failure = None  # the resources' own problems say it
                status.record(source.last_build, published, failure)

        tasks.append(asyncio.create_task(self._consume(source.watch(), on_outcome)))
        tasks.append(asyncio.create_task(status.run()))
        if not settings.leader_election:
            status.set_leading(True)
            return None
        elector = LeaderElector(
            api,
            settings.lease_name,
            settings.identity,
            status.set_leading,
            lease_duration_s=settings.lease_duration_s,
            renew_deadline_s=settings.renew_deadline_s,
            retry_period_s=settings.retry_period_s,
        )
        status.lead_time_left = elector.lead_time_left
        tasks.append(asyncio.create_task(elector.run()))
        return elector

    def stop(self) -> None:
        self._stopping.set()


async def serve(settings: ControlPlaneSettings) -> None:
    plane = ControlPlane(settings, dict(os.environ))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, plane.stop)
    try:
        await plane.run()
    except WeirControlPlaneError as error:
        log.error("the control plane cannot start: %s", error)
        raise SystemExit(1) from None
    if plane.failed:
        raise SystemExit(1)
