"""Translate the accepted config into Envoy resources (LDS, RDS, CDS, EDS).

Pure functions: ConfigSet + DataPlaneSettings in, protobuf messages out. Nothing here
knows about transport; the snapshot and the ADS server take it from there.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# Imported for their side effect too: json_format resolves "@type" in typed_config
# through the descriptor pool, so every extension message used below must be loaded.
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2  # noqa: F401
from envoy.extensions.filters.http.ext_proc.v3 import ext_proc_pb2  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.http.upstream_codec.v3 import upstream_codec_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401
    http_connection_manager_pb2,
)
from envoy.extensions.retry.priority.previous_priorities.v3 import (  # noqa: F401
    previous_priorities_config_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2  # noqa: F401
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401
from google.protobuf import json_format

from controlplane.dataplane import Address, DataPlaneSettings
from controlplane.model import Backend, ConfigSet, Endpoint, RetryBudget, ServiceTier

LISTENER_NAME = "weir-http"
ROUTE_CONFIG_NAME = "weir-routes"
EXTPROC_CLUSTER = "weir-extproc"
CLUSTER_HEADER = "x-weir-cluster"
ENDPOINT_HEADER = "x-weir-endpoint"
# Set by ext_proc on a request for a model with fallbacks: the route that retries.
FALLBACK_HEADER = "x-weir-fallback"
# Set by ext_proc on a streamed request: the routes with the stream timeouts.
STREAM_HEADER = "x-weir-stream"
# Added to the answer of a fallback route: which candidate answered (0 = the first).
CANDIDATE_HEADER = "x-weir-candidate"
# gRPC metadata that tells ext_proc a stream comes from the upstream filter of one attempt.
ATTEMPT_METADATA = ("x-weir-phase", "attempt")
HEALTH_PATH = "/healthz"
METADATA_NAMESPACE = "weir"
# Upstream answers that make a request go to its next candidate (before its first byte).
RETRY_ON = "connect-failure,refused-stream,reset,5xx,retriable-status-codes"
RETRIABLE_STATUS_CODES = (429,)

_ADS: dict[str, Any] = {"ads": {}, "resource_api_version": "V3"}
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


@dataclass(frozen=True)
class EnvoyResources:
    clusters: tuple[cluster_pb2.Cluster, ...]
    endpoints: tuple[endpoint_pb2.ClusterLoadAssignment, ...]
    listeners: tuple[listener_pb2.Listener, ...]
    routes: tuple[route_pb2.RouteConfiguration, ...]


@dataclass(frozen=True)
class Upstream:
    """Where a Backend's base URL points, as Envoy and ext_proc need it."""

    host: str
    port: int
    tls: bool
    path_prefix: str
    authority: str

    @property
    def host_is_ip(self) -> bool:
        return _is_ip(self.host)


def parse_upstream(base_url: str) -> Upstream:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base URL must be http(s)://host[:port][/path], got {base_url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    default_port = (tls and port == 443) or (not tls and port == 80)
    host = parts.hostname
    shown_host = f"[{host}]" if ":" in host else host
    authority = shown_host if default_port else f"{shown_host}:{port}"
    return Upstream(host, port, tls, parts.path.rstrip("/"), authority)


def backend_cluster_name(backend_name: str) -> str:
    return f"backend-{backend_name}"


def fallback_cluster_name(endpoint_name: str, alias_index: int) -> str:
    """The cluster of a model alias with fallbacks: its candidates at priorities 0, 1, ..."""
    return f"fallback-{endpoint_name}-{alias_index}"


def translate(config: ConfigSet, dataplane: DataPlaneSettings) -> EnvoyResources:
    clusters = [_extproc_cluster(dataplane.extproc)]
    assignments = []
    if all(_is_ip(address.host) for address in dataplane.extproc):
        assignments.append(_assignment(EXTPROC_CLUSTER, dataplane.extproc))
    for backend in config.backends:
        upstream = parse_upstream(backend.base_url)
        cluster, assignment = _backend_cluster(backend, upstream)
        clusters.append(cluster)
        if assignment is not None:
            assignments.append(assignment)
    for endpoint in config.endpoints:
        tier = config.service_tier(endpoint.service_tier)
        for index, alias in enumerate(endpoint.models):
            if len(alias.targets) > 1:
                clusters.append(_fallback_cluster(config, endpoint, index, tier))
    return EnvoyResources(
        clusters=tuple(clusters),
        endpoints=tuple(assignments),
        listeners=(_listener(dataplane),),
        routes=(_route_configuration(config, dataplane),),
    )


def _parse(message_type: type[Any], value: dict[str, Any]) -> Any:
    return json_format.ParseDict(value, message_type())


def _seconds(value: float) -> str:
    return f"{value:.3f}s"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _extproc_cluster(addresses: tuple[Address, ...]) -> cluster_pb2.Cluster:
    """The ext_proc replicas. IP literals (`weir up`) arrive over EDS. A DNS name (on
    Kubernetes, the headless Service that resolves to every ready ext_proc pod) makes it a
    STRICT_DNS cluster: one host per address the name resolves to, re-resolved every 5 s
    whatever the record's TTL, so that replicas that come and go are seen quickly."""
    cluster: dict[str, Any] = {
        "name": EXTPROC_CLUSTER,
        "type": "EDS",
        "eds_cluster_config": {"eds_config": _ADS},
        "connect_timeout": "1s",
        # ext_proc is gRPC: the cluster must speak HTTP/2.
        "typed_extension_protocol_options": {
            _HTTP_OPTIONS: {
                "@type": f"type.googleapis.com/{_HTTP_OPTIONS}",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "circuit_breakers": {
            "thresholds": [
                {"max_connections": 1024, "max_pending_requests": 4096, "max_requests": 65536}
            ]
        },
    }
    if not all(_is_ip(address.host) for address in addresses):
        del cluster["eds_cluster_config"]
        cluster["type"] = "STRICT_DNS"
        cluster["dns_lookup_family"] = "V4_PREFERRED"
        cluster["respect_dns_ttl"] = False
        cluster["dns_refresh_rate"] = "5s"
        cluster["load_assignment"] = json_format.MessageToDict(
            _assignment(EXTPROC_CLUSTER, addresses), preserving_proto_field_name=True
        )
    return _parse(cluster_pb2.Cluster, cluster)


def _assignment(
    cluster: str, addresses: tuple[Address, ...], hostname: str = ""
) -> endpoint_pb2.ClusterLoadAssignment:
    endpoints = []
    for address in addresses:
        endpoint: dict[str, Any] = {
            "address": {"socket_address": {"address": address.host, "port_value": address.port}}
        }
        if hostname:
            endpoint["hostname"] = hostname
        endpoints.append({"endpoint": endpoint})
    return _parse(
        endpoint_pb2.ClusterLoadAssignment,
        {"cluster_name": cluster, "endpoints": [{"lb_endpoints": endpoints}]},
    )


def _backend_cluster(
    backend: Backend, upstream: Upstream
) -> tuple[cluster_pb2.Cluster, endpoint_pb2.ClusterLoadAssignment | None]:
    name = backend_cluster_name(backend.name)
    cluster: dict[str, Any] = {
        "name": name,
        "connect_timeout": _seconds(backend.connect_timeout_seconds),
        # Room for many long streams, per routing priority (high-priority tiers have
        # their own); requests to a single target are not retried.
        "circuit_breakers": {"thresholds": _thresholds(RetryBudget())},
        "typed_extension_protocol_options": {
            _HTTP_OPTIONS: {
                "@type": f"type.googleapis.com/{_HTTP_OPTIONS}",
                "explicit_http_config": {"http_protocol_options": {}},
            }
        },
    }
    assignment = None
    if upstream.host_is_ip:
        # IP literal: endpoints arrive over EDS, so the cluster warms only once they do.
        cluster["type"] = "EDS"
        cluster["eds_cluster_config"] = {"eds_config": _ADS}
        assignment = _assignment(name, (Address(upstream.host, upstream.port),))
    else:
        # A DNS name: Envoy resolves it; EDS carries only IPs.
        cluster["type"] = "STRICT_DNS"
        cluster["dns_lookup_family"] = "V4_PREFERRED"
        cluster["load_assignment"] = json_format.MessageToDict(
            _assignment(name, (Address(upstream.host, upstream.port),)),
            preserving_proto_field_name=True,
        )
    if upstream.tls:
        cluster["transport_socket"] = _tls_socket(upstream.host)
    return _parse(cluster_pb2.Cluster, cluster), assignment


def _thresholds(budget: RetryBudget) -> list[dict[str, Any]]:
    """Circuit breakers of each routing priority: high-priority requests have limits of
    their own. LLM streams are long: room for many at once. Retries in flight are capped
    at a share of the requests in flight (Envoy's retry budget)."""
    return [
        {
            "priority": priority,
            "max_connections": 10_000,
            "max_pending_requests": 10_000,
            "max_requests": 10_000,
            "retry_budget": {
                "budget_percent": {"value": float(budget.percent)},
                "min_retry_concurrency": budget.min_concurrent,
            },
        }
        for priority in ("DEFAULT", "HIGH")
    ]


def _fallback_cluster(
    config: ConfigSet, endpoint: Endpoint, alias_index: int, tier: ServiceTier | None
) -> cluster_pb2.Cluster:
    """One cluster per model alias with fallbacks: candidate k's provider at priority k.

    Traffic goes to the lowest priority with a healthy host; a retry goes to the next
    priority (previous_priorities), and outlier detection ejects a candidate that keeps
    failing, so that requests go straight to the next one until it is tried again. The
    upstream ext_proc filter runs once per attempt and rewrites the request for the
    candidate that attempt reaches (its model name, path, host and key), which it reads
    from the endpoint's metadata."""
    alias = endpoint.models[alias_index]
    name = fallback_cluster_name(endpoint.name, alias_index)
    localities = []
    socket_matches = []
    connect_timeouts = []
    for priority, target in enumerate(alias.targets):
        backend = config.backend(target.backend)
        assert backend is not None  # validated
        upstream = parse_upstream(backend.base_url)
        connect_timeouts.append(backend.connect_timeout_seconds)
        metadata: dict[str, Any] = {
            METADATA_NAMESPACE: {
                "candidate": str(priority),
                "backend": backend.name,
                "model": target.model,
            }
        }
        if upstream.tls:
            metadata["envoy.transport_socket_match"] = {"tls": backend.name}
            socket_matches.append(
                {
                    "name": f"tls-{backend.name}",
                    "match": {"tls": backend.name},
                    "transport_socket": _tls_socket(upstream.host),
                }
            )
        localities.append(
            {
                "priority": priority,
                "lb_endpoints": [
                    {
                        "endpoint": {
                            "address": {
                                "socket_address": {
                                    "address": upstream.host,
                                    "port_value": upstream.port,
                                }
                            },
                            "hostname": upstream.host,
                        },
                        "metadata": {"filter_metadata": metadata},
                    }
                ],
            }
        )
    unique_matches = list({m["name"]: m for m in socket_matches}.values())
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": _seconds(max(connect_timeouts)),
        "load_assignment": {"cluster_name": name, "endpoints": localities},
        # A candidate whose host is ejected is skipped, never used anyway ("panic").
        "common_lb_config": {"healthy_panic_threshold": {"value": 0.0}},
        "outlier_detection": {
            "consecutive_5xx": 3,
            "consecutive_gateway_failure": 3,
            "interval": "2s",
            "base_ejection_time": "10s",
            "max_ejection_time": "120s",
            "max_ejection_percent": 100,
        },
        "circuit_breakers": {
            "thresholds": _thresholds(tier.retry_budget if tier else RetryBudget())
        },
        "typed_extension_protocol_options": {
            _HTTP_OPTIONS: {
                "@type": f"type.googleapis.com/{_HTTP_OPTIONS}",
                "explicit_http_config": {"http_protocol_options": {}},
                "http_filters": [
                    _attempt_filter(),
                    {
                        "name": "envoy.filters.http.upstream_codec",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http."
                            "upstream_codec.v3.UpstreamCodec"
                        },
                    },
                ],
            }
        },
    }
    if unique_matches:
        cluster["transport_socket_matches"] = unique_matches
    return _parse(cluster_pb2.Cluster, cluster)


def _tls_socket(host: str) -> dict[str, Any]:
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/"
            "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": host,
        },
    }


def _attempt_filter() -> dict[str, Any]:
    """ext_proc as an upstream filter: called once per attempt, with the metadata of the
    host that attempt goes to, to rewrite the request for that candidate."""
    key, value = ATTEMPT_METADATA
    return {
        "name": "envoy.filters.http.ext_proc",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3."
            "ExternalProcessor",
            "grpc_service": {
                "envoy_grpc": {"cluster_name": EXTPROC_CLUSTER},
                "initial_metadata": [{"key": key, "value": value}],
            },
            "failure_mode_allow": False,
            "processing_mode": {
                "request_header_mode": "SEND",
                "response_header_mode": "SKIP",
                "request_body_mode": "BUFFERED",
                "response_body_mode": "NONE",
                "request_trailer_mode": "SKIP",
                "response_trailer_mode": "SKIP",
            },
            "request_attributes": ["xds.upstream_host_metadata"],
            "message_timeout": "5s",
            "mutation_rules": {"allow_all_routing": True},
        },
    }


def _extproc_filter(dataplane: DataPlaneSettings) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.ext_proc",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3."
            "ExternalProcessor",
            "grpc_service": {"envoy_grpc": {"cluster_name": EXTPROC_CLUSTER}},
            "failure_mode_allow": dataplane.extproc_failure_mode_allow,
            # Request headers (route, authenticate) and the buffered request body
            # (validate, route on `model`, rewrite) always; response headers to stamp ids
            # and to switch SSE bodies to STREAMED; response bodies only on demand, via
            # mode_override.
            "processing_mode": {
                "request_header_mode": "SEND",
                "response_header_mode": "SEND",
                "request_body_mode": "BUFFERED",
                "response_body_mode": "NONE",
                "request_trailer_mode": "SKIP",
                "response_trailer_mode": "SKIP",
            },
            # Envoy 1.40 honours mode_override only when neither
            # send_body_without_waiting_for_header_response nor FULL_DUPLEX_STREAMED is
            # configured: both would save a round trip, but lose the per-response switch.
            "allow_mode_override": True,
            "message_timeout": _seconds(dataplane.extproc_message_timeout_ms / 1000),
            # ext_proc rewrites :path and :authority to the chosen backend's.
            "mutation_rules": {"allow_all_routing": True},
        },
    }


# ext_proc's own replies carry details "weir_<code>" and are already OpenAI envelopes.
_ENVOY_OWN_REPLY = "!response.code_details.startsWith('weir_')"


def _local_reply_config() -> dict[str, Any]:
    """Envoy's own error replies (no healthy upstream, upstream timeout, body over the
    buffer limit, ext_proc unreachable, ...) in the OpenAI error envelope too."""

    def mapper(condition: str, error_type: str) -> dict[str, Any]:
        return {
            "filter": {
                "extension_filter": {
                    "name": "envoy.access_loggers.extension_filters.cel",
                    "typed_config": {
                        "@type": "type.googleapis.com/"
                        "envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                        "expression": f"{_ENVOY_OWN_REPLY} && {condition}",
                    },
                }
            },
            "body_format_override": {
                "json_format": {
                    "error": {
                        "message": "%LOCAL_REPLY_BODY%",
                        "type": error_type,
                        "param": None,
                        "code": "%RESPONSE_CODE_DETAILS%",
                    }
                }
            },
        }

    timeout = mapper(
        "response.code_details == 'ext_proc_error_per-message_timeout_exceeded'", "server_error"
    )
    timeout["body"] = {
        "inline_string": "The gateway did not finish inspecting the request in time; it was "
        "not forwarded. A very large request may need a higher ext_proc message timeout."
    }
    return {
        "mappers": [
            timeout,
            mapper("response.code >= 500", "server_error"),
            mapper("response.code >= 400 && response.code < 500", "invalid_request_error"),
        ]
    }


def _listener(dataplane: DataPlaneSettings) -> listener_pb2.Listener:
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "weir",
        "codec_type": "AUTO",
        "rds": {"route_config_name": ROUTE_CONFIG_NAME, "config_source": _ADS},
        "http_filters": [
            _extproc_filter(dataplane),
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            },
        ],
        "local_reply_config": _local_reply_config(),
        "generate_request_id": True,
        "always_set_request_id_in_response": True,
        "stream_idle_timeout": _seconds(dataplane.stream_idle_timeout_s),
        "request_timeout": "0s",
    }
    return _parse(
        listener_pb2.Listener,
        {
            "name": LISTENER_NAME,
            "address": {
                "socket_address": {
                    "address": dataplane.listener.host,
                    "port_value": dataplane.listener.port,
                }
            },
            "per_connection_buffer_limit_bytes": dataplane.max_request_bytes,
            "filter_chains": [
                {
                    "filters": [
                        {
                            "name": "envoy.filters.network.http_connection_manager",
                            "typed_config": hcm,
                        }
                    ]
                }
            ],
        },
    )


def _route_configuration(
    config: ConfigSet, dataplane: DataPlaneSettings
) -> route_pb2.RouteConfiguration:
    routes: list[dict[str, Any]] = [
        {
            # ext_proc answers /healthz itself (200 once it holds a config); reaching
            # this direct response means it did not.
            "name": "healthz",
            "match": {"path": HEALTH_PATH},
            "direct_response": {
                "status": 503,
                "body": {"inline_string": '{"status":"ext_proc did not answer"}'},
            },
        }
    ]
    for endpoint in config.endpoints:
        tier = config.service_tier(endpoint.service_tier)
        backend_timeouts = []
        for alias in endpoint.models:
            for target in alias.targets:
                backend = config.backend(target.backend)
                if backend is not None:
                    backend_timeouts.append(backend.timeout_seconds)
        timeout = (
            tier.request_timeout_seconds
            if tier is not None and tier.request_timeout_seconds is not None
            else max(backend_timeouts, default=300.0)
        )
        idle = tier.stream_idle_timeout_seconds if tier is not None else None
        first_byte = tier.first_byte_timeout_seconds if tier is not None else None
        budget = tier.retry_budget if tier is not None else RetryBudget()
        matches = [{"name": ENDPOINT_HEADER, "string_match": {"exact": endpoint.name}}]
        stream = {"name": STREAM_HEADER, "present_match": True}
        # Matched after ext_proc routed the request (it clears the route cache), by the
        # endpoint header it set: the path is the backend's by then. A model with
        # fallbacks goes to its own cluster, on a route that retries; a stream goes on a
        # route with the stream timeouts (a non-streamed answer is silent until whole).
        if any(len(alias.targets) > 1 for alias in endpoint.models):
            # Never more retries than the longest list of candidates has others.
            most = max(len(alias.targets) for alias in endpoint.models) - 1
            for streamed in (True, False):
                suffix = "-fallback-stream" if streamed else "-fallback"
                route = _forward_route(
                    f"endpoint-{endpoint.name}{suffix}", "/", timeout, None, tier
                )
                route["match"]["headers"] = [
                    *matches,
                    {"name": FALLBACK_HEADER, "present_match": True},
                    *([stream] if streamed else []),
                ]
                per_try = (
                    ("per_try_idle_timeout", idle) if streamed else ("per_try_timeout", first_byte)
                )
                route["route"]["retry_policy"] = _retry_policy(budget, per_try, most)
                route["response_headers_to_add"] = [
                    {
                        "header": {
                            "key": CANDIDATE_HEADER,
                            "value": f"%UPSTREAM_METADATA({METADATA_NAMESPACE}:candidate)%",
                        },
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                    }
                ]
                routes.append(route)
        route = _forward_route(f"endpoint-{endpoint.name}-stream", "/", timeout, idle, tier)
        route["match"]["headers"] = [*matches, stream]
        routes.append(route)
        route = _forward_route(f"endpoint-{endpoint.name}", "/", timeout, None, tier)
        route["match"]["headers"] = matches
        routes.append(route)
    # Everything else also passes ext_proc, which answers unknown paths with a 404 envelope.
    routes.append(_forward_route("unrouted", "/", 300.0))
    return _parse(
        route_pb2.RouteConfiguration,
        {
            "name": ROUTE_CONFIG_NAME,
            "virtual_hosts": [
                {
                    "name": "weir",
                    "domains": ["*"],
                    "routes": routes,
                    # x-envoy-attempt-count: how many attempts an answer took, and on each
                    # attempt which one it is (the first needs no rewriting).
                    "include_attempt_count_in_response": True,
                    "include_request_attempt_count": True,
                }
            ],
            "request_headers_to_remove": [
                CLUSTER_HEADER,
                ENDPOINT_HEADER,
                FALLBACK_HEADER,
                STREAM_HEADER,
            ],
        },
    )


def _forward_route(
    name: str,
    prefix: str,
    timeout_s: float,
    idle_s: float | None = None,
    tier: ServiceTier | None = None,
) -> dict[str, Any]:
    """`idle_s`: the tier's streamIdle on the stream route without retries (on the route
    that retries, each attempt has it as its per-try idle timeout instead)."""
    route: dict[str, Any] = {
        "cluster_header": CLUSTER_HEADER,
        "timeout": _seconds(timeout_s),
        # A non-streamed answer is silent until it is complete: without a tier's
        # streamIdle, the idle timeout must not cut it before the request timeout does.
        "idle_timeout": _seconds(idle_s if idle_s is not None else max(timeout_s, 1.0)),
    }
    if tier is not None and tier.priority == "high":
        route["priority"] = "HIGH"
    return {"name": name, "match": {"prefix": prefix}, "route": route}


def _retry_policy(
    budget: RetryBudget, per_try: tuple[str, float | None], most: int
) -> dict[str, Any]:
    """Each retry goes to the next candidate (the next priority of the fallback
    cluster). Envoy never retries once the answer's headers went to the client, so a
    stream is never retried after its first byte."""
    policy: dict[str, Any] = {
        "retry_on": RETRY_ON,
        "retriable_status_codes": list(RETRIABLE_STATUS_CODES),
        "num_retries": min(budget.max_retries, most),
        "retry_priority": {
            "name": "envoy.retry_priorities.previous_priorities",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.retry.priority."
                "previous_priorities.v3.PreviousPrioritiesConfig",
                "update_frequency": 1,
            },
        },
        "retry_back_off": {"base_interval": "0.010s", "max_interval": "0.100s"},
    }
    field, seconds = per_try
    if seconds is not None:
        # An attempt with no (first) byte in this long is given up, the next one tried.
        policy[field] = _seconds(seconds)
    return policy
