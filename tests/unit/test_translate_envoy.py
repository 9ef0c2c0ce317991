"""Translation to Envoy resources, checked by the real Envoy binary (`--mode validate`)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from controlplane import translate_envoy, translate_runtime
from controlplane.dataplane import Address, DataPlaneSettings
from controlplane.errors import ConfigInvalid
from controlplane.model import Backend, BackendModel, ConfigSet, Endpoint, ModelAlias, ModelTarget
from controlplane.publisher import build_snapshot
from controlplane.snapshot import CLUSTER, InconsistentSnapshot
from weir.envoy_launch import envoy_binary

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
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(bootstrap), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


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
    assert list(by_name)[-1] == "fallback"


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
