"""Versioned, consistency-checked snapshots of every xDS resource type.

A snapshot holds, per type URL, the resources by name and a version string. The version
is a hash of the resources' serialized bytes, so an unchanged type keeps its version and
is never resent, and a control plane that restarts with the same config offers the same
versions Envoy already holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from google.protobuf.any_pb2 import Any as AnyProto
from google.protobuf.message import Message

from controlplane.errors import WeirControlPlaneError
from weir.config.v1 import keys_pb2, runtime_pb2, settings_pb2

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
RUNTIME = "type.googleapis.com/weir.config.v1.RuntimeConfig"
KEYS = "type.googleapis.com/weir.config.v1.ApiKeySet"
SETTINGS = "type.googleapis.com/weir.config.v1.ProjectSettingsSet"

M = TypeVar("M", bound=Message)

# Make-before-break: clusters, then their endpoints, then listeners, then routes;
# ext_proc's runtime (which names clusters to route to) last. The API keys and the
# project settings depend on nothing and nothing on them.
PUSH_ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, ROUTE, RUNTIME, KEYS, SETTINGS)
# Types whose responses always carry the full set (absent = deleted).
WILDCARD_TYPES = frozenset({CLUSTER, LISTENER, RUNTIME, KEYS, SETTINGS})

_MESSAGE_TYPES: Mapping[str, type[Message]] = {
    CLUSTER: cluster_pb2.Cluster,
    ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    LISTENER: listener_pb2.Listener,
    ROUTE: route_pb2.RouteConfiguration,
    RUNTIME: runtime_pb2.RuntimeConfig,
    KEYS: keys_pb2.ApiKeySet,
    SETTINGS: settings_pb2.ProjectSettingsSet,
}


class InconsistentSnapshot(WeirControlPlaneError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("inconsistent snapshot: " + "; ".join(problems))


@dataclass(frozen=True)
class TypedResources:
    version: str
    items: Mapping[str, AnyProto]  # resource name -> packed resource

    @classmethod
    def revised(cls, type_url: str, name: str, message: Message) -> TypedResources:
        """One resource whose `revision` field becomes the content hash of the rest, and
        the xDS version the same hash, so logs, xDS status and ext_proc name it alike."""
        version = cls.build(type_url, [(name, message)]).version
        message.revision = version  # type: ignore[attr-defined]
        return dataclasses.replace(cls.build(type_url, [(name, message)]), version=version)

    @classmethod
    def build(cls, type_url: str, resources: Iterable[tuple[str, Message]]) -> TypedResources:
        """Pack (name, message) pairs; the version is a hash of their content."""
        items: dict[str, AnyProto] = {}
        for name, message in resources:
            if not isinstance(message, _MESSAGE_TYPES[type_url]):
                raise TypeError(f"{type_url} resource {name!r} is a {type(message)}")
            if name in items:
                raise InconsistentSnapshot([f"duplicate {type_url} resource {name!r}"])
            packed = AnyProto()
            packed.Pack(message, deterministic=True)
            items[name] = packed
        digest = hashlib.sha256()
        for name in sorted(items):
            digest.update(name.encode())
            digest.update(b"\0")
            digest.update(items[name].value)
            digest.update(b"\0")
        return cls(digest.hexdigest()[:16], MappingProxyType(items))

    def select(self, names: Iterable[str]) -> dict[str, AnyProto]:
        return {n: self.items[n] for n in names if n in self.items}


@dataclass(frozen=True)
class Snapshot:
    by_type: Mapping[str, TypedResources] = field(default_factory=dict)

    @classmethod
    def build(cls, resources: Mapping[str, Iterable[tuple[str, Message]]]) -> Snapshot:
        """`resources`: type URL -> (name, message) pairs. Versions are content hashes."""
        return cls(
            MappingProxyType({t: TypedResources.build(t, resources.get(t, ())) for t in PUSH_ORDER})
        )

    def with_type(self, type_url: str, resources: TypedResources) -> Snapshot:
        """This snapshot with the resources of one type replaced."""
        return Snapshot(MappingProxyType({**self.by_type, type_url: resources}))

    def resources(self, type_url: str) -> TypedResources:
        return self.by_type.get(type_url) or TypedResources("", MappingProxyType({}))

    def version(self, type_url: str) -> str:
        return self.resources(type_url).version

    def problems(self) -> list[str]:
        """Reference checks: every EDS cluster has its assignment, every RDS name used by
        a listener exists, every cluster the runtime routes to exists."""
        problems: list[str] = []
        clusters = {
            n: _unpack(a, cluster_pb2.Cluster) for n, a in self.resources(CLUSTER).items.items()
        }
        assignments = set(self.resources(ENDPOINT).items)
        for name, cluster in clusters.items():
            if cluster.type == cluster_pb2.Cluster.EDS:
                service = cluster.eds_cluster_config.service_name or name
                if service not in assignments:
                    problems.append(f"EDS cluster {name!r} has no ClusterLoadAssignment")
        route_names = set(self.resources(ROUTE).items)
        for name, packed in self.resources(LISTENER).items.items():
            for rds_name in _listener_route_names(_unpack(packed, listener_pb2.Listener)):
                if rds_name not in route_names:
                    problems.append(f"listener {name!r} uses unknown route config {rds_name!r}")
        for packed in self.resources(RUNTIME).items.values():
            runtime = _unpack(packed, runtime_pb2.RuntimeConfig)
            for backend in runtime.backends:
                if backend.cluster not in clusters:
                    problems.append(
                        f"runtime backend {backend.name!r} routes to unknown cluster "
                        f"{backend.cluster!r}"
                    )
        return problems

    def check(self) -> None:
        problems = self.problems()
        if problems:
            raise InconsistentSnapshot(problems)


def _unpack(packed: AnyProto, message_type: type[M]) -> M:
    message = message_type()
    packed.Unpack(message)
    return message


def _listener_route_names(listener: listener_pb2.Listener) -> list[str]:
    names = []
    for chain in listener.filter_chains:
        for network_filter in chain.filters:
            hcm = http_connection_manager_pb2.HttpConnectionManager()
            if network_filter.typed_config.Is(hcm.DESCRIPTOR):
                network_filter.typed_config.Unpack(hcm)
                if hcm.HasField("rds"):
                    names.append(hcm.rds.route_config_name)
    return names
