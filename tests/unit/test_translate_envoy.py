"""Translation to Envoy resources, checked by the real Envoy binary (`--mode validate`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from controlplane import translate_envoy, translate_runtime
from controlplane.dataplane import Address, DataPlaneSettings
from controlplane.errors import ConfigInvalid
from controlplane.model import (
    Backend,
    BackendModel,
    ConfigSet,
    Endpoint,
    ModelAlias,
    ModelTarget,
    RetryBudget,
    ServiceTier,
)
from controlplane.publisher import build_snapshot
from controlplane.snapshot import CLUSTER, InconsistentSnapshot
from tests.envoy_validate import assert_envoy_accepts

CONFIG = ConfigSet(
    backends=(
        Backend(
            "mock", "http://127.0.0.1:9100/v1", (BackendModel("mock-gpt"),), timeout_seconds=20
        ),
        Backend(
            "openai",
            "https://api.openai.com/v1",
            (BackendModel("gpt-4o"),),
            api_key_env="TEST_OPENAI_KEY",
            timeout_seconds=42.0,
        ),
    ),
    endpoints=(
        Endpoint(
            "demo-chat",
            "demo",
            "chat",
            (
                ModelAlias("gpt-4o-mini", (ModelTarget("mock", "mock-gpt"),)),
                ModelAlias("gpt-4o", (ModelTarget("openai", "gpt-4o"),)),
            ),
        ),
        Endpoint(
            "demo-resilient",
            "demo",
            "resilient",
            (
                ModelAlias(
                    "smart", (ModelTarget("openai", "gpt-4o"), ModelTarget("mock", "mock-gpt"))
                ),
            ),
            service_tier="gold",
        ),
    ),
    service_tiers=(
        ServiceTier(
            "gold",
            priority="high",
            request_timeout_seconds=60.0,
            stream_idle_timeout_seconds=5.0,
            first_byte_timeout_seconds=30.0,
            retry_budget=RetryBudget(max_retries=1, percent=30, min_concurrent=2),
        ),
    ),
)
DATAPLANE = DataPlaneSettings(
    listener=Address("127.0.0.1", 8080), extproc=(Address("127.0.0.1", 18080),)
)


def as_dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def test_envoy_accepts_the_translated_resources(tmp_path: Path) -> None:
    resources = translate_envoy.translate(CONFIG, DATAPLANE)
    assignments = {e.cluster_name: as_dict(e) for e in resources.endpoints}
    clusters = []
    for cluster in map(as_dict, resources.clusters):
        if cluster["type"] == "EDS":  # inline what ADS would deliver, for a static check
            cluster["type"] = "STATIC"
            del cluster["eds_cluster_config"]
            cluster["load_assignment"] = assignments[cluster["name"]]
        clusters.append(cluster)
    listener = as_dict(resources.listeners[0])
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    del hcm["rds"]
    hcm["route_config"] = as_dict(resources.routes[0])
    bootstrap = tmp_path / "bootstrap.json"
    bootstrap.write_text(
        json.dumps({"static_resources": {"listeners": [listener], "clusters": clusters}})
    )
    assert_envoy_accepts(bootstrap)


def test_ip_backends_use_eds_and_dns_backends_resolve_with_tls() -> None:
    resources = translate_envoy.translate(CONFIG, DATAPLANE)
    clusters = {c.name: as_dict(c) for c in resources.clusters}
    assert clusters["backend-mock"]["type"] == "EDS"
    assert clusters["backend-openai"]["type"] == "STRICT_DNS"
    assert clusters["backend-openai"]["transport_socket"]["typed_config"]["sni"] == "api.openai.com"
    assert clusters["weir-extproc"]["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]["explicit_http_config"] == {"http2_protocol_options": {}}
    assert {e.cluster_name for e in resources.endpoints} == {"weir-extproc", "backend-mock"}


def test_routes_use_the_cluster_header_and_the_backend_timeout() -> None:
    routes = as_dict(translate_envoy.translate(CONFIG, DATAPLANE).routes[0])
    by_name = {r["name"]: r for r in routes["virtual_hosts"][0]["routes"]}
    demo = by_name["endpoint-demo-chat"]
    # Matched by the endpoint ext_proc chose, not the path (ext_proc rewrites it).
    assert demo["match"]["headers"] == [
        {"name": "x-weir-endpoint", "string_match": {"exact": "demo-chat"}}
    ]
    assert demo["route"]["cluster_header"] == translate_envoy.CLUSTER_HEADER
    assert demo["route"]["timeout"] == "42s"
    assert demo["route"]["idle_timeout"] == "42s"  # or the listener-wide 300 s would cut it
    assert by_name["healthz"]["match"] == {"path": "/healthz"}
    assert list(by_name)[-1] == "unrouted"


def test_a_model_with_fallbacks_has_its_candidates_at_successive_priorities() -> None:
    resources = translate_envoy.translate(CONFIG, DATAPLANE)
    cluster = {c.name: as_dict(c) for c in resources.clusters}["fallback-demo-resilient-0"]
    localities = cluster["load_assignment"]["endpoints"]
    assert [loc.get("priority", 0) for loc in localities] == [0, 1]
    first, second = (loc["lb_endpoints"][0] for loc in localities)
    assert first["metadata"]["filter_metadata"]["weir"] == {
        "candidate": "0",
        "backend": "openai",
        "model": "gpt-4o",
    }
    assert second["endpoint"]["address"]["socket_address"]["port_value"] == 9100
    # TLS only towards the provider that needs it.
    assert first["metadata"]["filter_metadata"]["envoy.transport_socket_match"] == {"tls": "openai"}
    assert "envoy.transport_socket_match" not in second["metadata"]["filter_metadata"]
    assert cluster["transport_socket_matches"][0]["match"] == {"tls": "openai"}
    # An ejected candidate is skipped, never used in "panic".
    assert cluster["common_lb_config"]["healthy_panic_threshold"] == {}  # 0 %
    assert cluster["outlier_detection"]["consecutive_5xx"] == 3
    thresholds = cluster["circuit_breakers"]["thresholds"]
    assert [t.get("priority", "DEFAULT") for t in thresholds] == ["DEFAULT", "HIGH"]
    assert thresholds[1]["retry_budget"] == {
        "budget_percent": {"value": 30.0},
        "min_retry_concurrency": 2,
    }
    options = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    attempt, codec = options["http_filters"]
    assert attempt["typed_config"]["request_attributes"] == ["xds.upstream_host_metadata"]
    assert attempt["typed_config"]["grpc_service"]["initial_metadata"] == [
        {"key": "x-weir-phase", "value": "attempt"}
    ]
    assert codec["name"] == "envoy.filters.http.upstream_codec"


def test_the_tier_sets_the_routes_timeouts_priority_and_retries() -> None:
    routes = as_dict(translate_envoy.translate(CONFIG, DATAPLANE).routes[0])
    by_name = {r["name"]: r for r in routes["virtual_hosts"][0]["routes"]}
    names = list(by_name)
    resilient = [n for n in names if n.startswith("endpoint-demo-resilient")]
    # The most specific first: fallback streams, fallbacks, streams, the rest.
    assert resilient == [
        "endpoint-demo-resilient-fallback-stream",
        "endpoint-demo-resilient-fallback",
        "endpoint-demo-resilient-stream",
        "endpoint-demo-resilient",
    ]
    stream = {"name": "x-weir-stream", "present_match": True}
    fallback = {"name": "x-weir-fallback", "present_match": True}
    streamed_fallback = by_name["endpoint-demo-resilient-fallback-stream"]
    assert fallback in streamed_fallback["match"]["headers"]
    assert stream in streamed_fallback["match"]["headers"]
    route = streamed_fallback["route"]
    assert (route["timeout"], route["priority"]) == ("60s", "HIGH")
    assert route["idle_timeout"] == "60s"  # each attempt has streamIdle instead
    policy = route["retry_policy"]
    assert policy["num_retries"] == 1
    assert policy["per_try_idle_timeout"] == "5s"
    assert "per_try_timeout" not in policy
    assert policy["retry_priority"]["name"] == "envoy.retry_priorities.previous_priorities"
    assert streamed_fallback["response_headers_to_add"][0]["header"] == {
        "key": "x-weir-candidate",
        "value": "%UPSTREAM_METADATA(weir:candidate)%",
    }
    # A non-streamed answer is silent until whole: no idle limit but its firstByte.
    whole = by_name["endpoint-demo-resilient-fallback"]
    assert stream not in whole["match"]["headers"]
    assert whole["route"]["retry_policy"]["per_try_timeout"] == "30s"
    assert "per_try_idle_timeout" not in whole["route"]["retry_policy"]
    assert whole["route"]["idle_timeout"] == "60s"
    direct_stream = by_name["endpoint-demo-resilient-stream"]["route"]
    assert (direct_stream["timeout"], direct_stream["idle_timeout"]) == ("60s", "5s")
    assert "retry_policy" not in direct_stream
    direct = by_name["endpoint-demo-resilient"]["route"]
    assert (direct["timeout"], direct["idle_timeout"]) == ("60s", "60s")
    assert "priority" not in by_name["endpoint-demo-chat"]["route"]
    assert routes["virtual_hosts"][0]["include_attempt_count_in_response"] is True
    assert routes["virtual_hosts"][0]["include_request_attempt_count"] is True


def test_retries_never_outnumber_the_other_candidates() -> None:
    tier = ServiceTier("many", retry_budget=RetryBudget(max_retries=10))
    config = ConfigSet(
        backends=CONFIG.backends,
        endpoints=(
            Endpoint(
                "e",
                "p",
                "s",
                (
                    ModelAlias(
                        "m", (ModelTarget("openai", "gpt-4o"), ModelTarget("mock", "mock-gpt"))
                    ),
                ),
                service_tier="many",
            ),
        ),
        service_tiers=(tier,),
    )
    routes = as_dict(translate_envoy.translate(config, DATAPLANE).routes[0])
    by_name = {r["name"]: r for r in routes["virtual_hosts"][0]["routes"]}
    assert by_name["endpoint-e-fallback"]["route"]["retry_policy"]["num_retries"] == 1


def test_extproc_filter_is_fail_closed_with_a_deliberate_timeout() -> None:
    listener = as_dict(translate_envoy.translate(CONFIG, DATAPLANE).listeners[0])
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    ext_proc = hcm["http_filters"][0]["typed_config"]
    assert ext_proc.get("failure_mode_allow", False) is False
    assert ext_proc["message_timeout"] == "5s"
    assert ext_proc["allow_mode_override"] is True
    assert ext_proc["processing_mode"]["request_body_mode"] == "BUFFERED"
    assert listener["per_connection_buffer_limit_bytes"] == 8 * 1024 * 1024


def test_runtime_config_resolves_keys_and_paths() -> None:
    runtime = translate_runtime.translate(CONFIG, {"TEST_OPENAI_KEY": "sk-test"})
    backends = {b.name: b for b in runtime.backends}
    assert backends["openai"].api_key == "sk-test"
    assert backends["openai"].authority == "api.openai.com"
    assert backends["mock"].authority == "127.0.0.1:9100"
    assert backends["mock"].path_prefix == "/v1"
    assert runtime.cluster_header == translate_envoy.CLUSTER_HEADER
    assert runtime.revision


def test_missing_credential_is_a_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigInvalid) as raised:
        translate_runtime.translate(CONFIG, {})
    assert "Backend/openai: spec.apiKey.env" in str(raised.value)
    assert "TEST_OPENAI_KEY" in str(raised.value)


def test_snapshot_is_consistent_and_detects_missing_pieces() -> None:
    resources = translate_envoy.translate(CONFIG, DATAPLANE)
    runtime = translate_runtime.translate(CONFIG, {"TEST_OPENAI_KEY": "k"})
    build_snapshot(resources, runtime).check()
    broken = translate_envoy.EnvoyResources(
        clusters=resources.clusters, endpoints=(), listeners=resources.listeners, routes=()
    )
    with pytest.raises(InconsistentSnapshot) as raised:
        build_snapshot(broken, runtime).check()
    text = str(raised.value)
    assert "EDS cluster 'backend-mock' has no ClusterLoadAssignment" in text
    assert "unknown route config 'weir-routes'" in text


def test_versions_are_content_hashes() -> None:
    runtime = translate_runtime.translate(CONFIG, {"TEST_OPENAI_KEY": "k"})
    one = build_snapshot(translate_envoy.translate(CONFIG, DATAPLANE), runtime)
    two = build_snapshot(translate_envoy.translate(CONFIG, DATAPLANE), runtime)
    assert one.version(CLUSTER) == two.version(CLUSTER)
    moved = DataPlaneSettings(listener=DATAPLANE.listener, extproc=(Address("127.0.0.1", 1),))
    three = build_snapshot(translate_envoy.translate(CONFIG, moved), runtime)
    assert three.version(CLUSTER) == one.version(CLUSTER)  # only the endpoints moved
    assert three.version(
        "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
    ) != one.version("type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment")


KUBERNETES_DATAPLANE = DataPlaneSettings(
    listener=Address("0.0.0.0", 8080),
    extproc=(Address("weir-extproc.weir.svc.cluster.local", 18080),),
)


def test_extproc_replicas_named_by_dns_are_resolved_by_envoy_not_sent_over_eds(
    tmp_path: Path,
) -> None:
    resources = translate_envoy.translate(CONFIG, KUBERNETES_DATAPLANE)
    cluster = {c.name: as_dict(c) for c in resources.clusters}["weir-extproc"]
    # A headless Service: one host per ready pod the name resolves to, re-resolved often.
    assert cluster["type"] == "STRICT_DNS"
    assert "eds_cluster_config" not in cluster
    assert cluster["dns_lookup_family"] == "V4_PREFERRED"
    assert cluster.get("respect_dns_ttl", False) is False
    assert cluster["dns_refresh_rate"] == "5s"
    [locality] = cluster["load_assignment"]["endpoints"]
    assert [e["endpoint"]["address"]["socket_address"] for e in locality["lb_endpoints"]] == [
        {"address": "weir-extproc.weir.svc.cluster.local", "port_value": 18080}
    ]
    # Still gRPC: HTTP/2.
    assert cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]["explicit_http_config"] == {"http2_protocol_options": {}}
    # EDS carries only the IP backend's assignment; the snapshot is still consistent.
    assert {e.cluster_name for e in resources.endpoints} == {"backend-mock"}
    runtime = translate_runtime.translate(CONFIG, {"TEST_OPENAI_KEY": "k"})
    build_snapshot(resources, runtime).check()
    # And Envoy accepts the cluster as translated.
    bootstrap = tmp_path / "bootstrap.json"
    bootstrap.write_text(json.dumps({"static_resources": {"clusters": [cluster]}}))
    assert_envoy_accepts(bootstrap)


def test_any_extproc_name_makes_the_cluster_resolve_every_address() -> None:
    mixed = DataPlaneSettings(
        listener=DATAPLANE.listener,
        extproc=(Address("10.0.0.7", 18080), Address("extproc-b.example", 18081)),
    )
    resources = translate_envoy.translate(CONFIG, mixed)
    cluster = {c.name: as_dict(c) for c in resources.clusters}["weir-extproc"]
    assert cluster["type"] == "STRICT_DNS"
    [locality] = cluster["load_assignment"]["endpoints"]
    assert [e["endpoint"]["address"]["socket_address"] for e in locality["lb_endpoints"]] == [
        {"address": "10.0.0.7", "port_value": 18080},
        {"address": "extproc-b.example", "port_value": 18081},
    ]
    assert "weir-extproc" not in {e.cluster_name for e in resources.endpoints}


def test_extproc_replicas_at_ip_addresses_arrive_over_eds() -> None:
    two = DataPlaneSettings(
        listener=DATAPLANE.listener,
        extproc=(Address("127.0.0.1", 18080), Address("::1", 18081)),
    )
    resources = translate_envoy.translate(CONFIG, two)
    cluster = {c.name: as_dict(c) for c in resources.clusters}["weir-extproc"]
    assert cluster["type"] == "EDS"
    assert "load_assignment" not in cluster
    assignment = {e.cluster_name: as_dict(e) for e in resources.endpoints}["weir-extproc"]
    hosts = [
        e["endpoint"]["address"]["socket_address"]["address"]
        for e in assignment["endpoints"][0]["lb_endpoints"]
    ]
    assert hosts == ["127.0.0.1", "::1"]
