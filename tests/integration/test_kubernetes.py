"""`weir controlplane --source kubernetes` in the real stack: the control plane process
watches custom resources through the official client over HTTP (tests/kube_apiserver.py
speaks the API server's REST protocol), and real Envoy, ext_proc and mock LLM processes
serve OpenAI SDK calls from them. Covers status conditions, rejected changes, 410 Gone and
dropped watches, Backend keys from Secrets, and two replicas sharing their API keys in a
real PostgreSQL while leader election picks the one that writes status."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.integration.harness import (
    Process,
    create_key,
    start_envoy,
    start_mock_llm,
    wait_until,
    weir_argv,
)
from tests.kube_apiserver import KubeApiServer
from tests.postgres_server import PostgresServer, running_postgres
from tests.unit.test_source_kubernetes import QUICKSTART
from weir.ports import free_port

pytestmark = pytest.mark.integration

HELLO = [{"role": "user", "content": "Hello"}]
STORE_PASSWORD = "store-pass-5b2d8e41"


def quickstart_resources(mock_url: str) -> str:
    texts = [p.read_text() for p in sorted(QUICKSTART.glob("*.yaml"))]
    return "\n---\n".join(texts).replace("${WEIR_MOCK_LLM_URL}", mock_url)


@dataclass
class Cluster:
    api: KubeApiServer
    kubeconfig: Path
    state: Path
    store: dict[str, str]  # WEIR_STORE_URL: the PostgreSQL both replicas share
    mock: Process
    mock_url: str
    plane: Process
    xds_port: int
    extproc: Process
    envoy: Process
    port: int
    key: str

    def client(self, port: int = 0, key: str = "") -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"http://127.0.0.1:{port or self.port}/demo/chat/v1",
            api_key=key or self.key,
            max_retries=0,
        )

    def accepted(self, kind: str, name: str) -> dict[str, Any]:
        obj = self.api.get(kind, name)
        assert obj is not None
        for condition in obj.get("status", {}).get("conditions", []):
            if condition["type"] == "Accepted":
                return dict(condition)
        return {}

    def wait_accepted(self, kind: str, name: str, generation: int, status: str) -> dict[str, Any]:
        def judged() -> bool:
            condition = self.accepted(kind, name)
            return (
                condition.get("observedGeneration") == generation
                and condition.get("status") == status
            )

        wait_until(judged, 20, f"{kind}/{name} Accepted={status} at generation {generation}")
        return self.accepted(kind, name)


def control_plane(
    name: str,
    kubeconfig: Path,
    state: Path,
    xds_port: int,
    extproc_port: int,
    listen_port: int,
    store: dict[str, str],
) -> Process:
    return Process(
        name,
        weir_argv(
            "controlplane",
            "--source",
            "kubernetes",
            "--kubeconfig",
            str(kubeconfig),
            "--namespace",
            "weir",
            "--identity",
            name,
            "--xds-address",
            f"127.0.0.1:{xds_port}",
            "--listen",
            f"127.0.0.1:{listen_port}",
            "--extproc-address",
            f"127.0.0.1:{extproc_port}",
            "--store",
            str(state / "weir.db"),
        ),
        env={**os.environ, "PYTHONUNBUFFERED": "1", **store},
    ).start()


def extproc(extproc_port: int, xds_port: int) -> Process:
    argv = weir_argv(
        "extproc",
        "--listen",
        f"127.0.0.1:{extproc_port}",
        "--control-plane",
        f"127.0.0.1:{xds_port}",
    )
    return Process(f"extproc-{extproc_port}", argv).start()


def wait_serving(port: int) -> None:
    def serves() -> bool:
        try:
            models = httpx.get(f"http://127.0.0.1:{port}/demo/chat/v1/models")
            return models.status_code in (200, 401)
        except httpx.HTTPError:
            return False

    wait_until(serves, 60, f"Envoy serves the gateway listener on {port}")


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres(STORE_PASSWORD) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("kubernetes")
    state = root / "state"
    state.mkdir()
    store = {"WEIR_STORE_URL": postgres.url()}
    api = KubeApiServer().start()
    kubeconfig = api.kubeconfig(root / "kubeconfig")
    mock, mock_url = start_mock_llm("k8s")
    api.put_yaml(quickstart_resources(mock_url))
    xds_port, extproc_port, port = free_port(), free_port(), free_port()
    plane = control_plane("cp-a", kubeconfig, state, xds_port, extproc_port, port, store)
    processor = extproc(extproc_port, xds_port)
    envoy, _ = start_envoy(root, xds_port)
    processes = [mock, plane, processor, envoy]
    try:
        key = create_key(state, env=store)["key"]
        wait_serving(port)
        yield Cluster(
            api,
            kubeconfig,
            state,
            store,
            mock,
            mock_url,
            plane,
            xds_port,
            processor,
            envoy,
            port,
            key,
        )
    finally:
        for process in reversed(processes):
            if process.alive():
                process.stop()
        api.stop()


def completion(cluster: Cluster, model: str = "mock-gpt", port: int = 0, key: str = "") -> str:
    deadline = time.monotonic() + 20
    while True:
        try:
            answer = cluster.client(port, key).chat.completions.create(
                model=model, messages=HELLO, max_tokens=5
            )
            return answer.model
        except openai.AuthenticationError:
            if time.monotonic() > deadline:  # the new key reaches ext_proc within a poll
                raise
            time.sleep(0.1)


def test_the_sdk_is_served_from_the_custom_resources_and_each_is_accepted(
    cluster: Cluster,
) -> None:
    assert completion(cluster) == "mock-gpt"
    for kind, name in [
        ("Backend", "mock"),
        ("Endpoint", "demo-chat"),
        ("Endpoint", "demo-trial"),
        ("ServiceTier", "trial"),
        ("PIIPolicy", "anonymize-all"),
    ]:
        condition = cluster.wait_accepted(kind, name, 1, "True")
        assert condition["reason"] == "Accepted"
        obj = cluster.api.get(kind, name)
        assert obj is not None and obj["status"]["observedGeneration"] == 1
    lease = cluster.api.get("Lease", "weir-controlplane")
    assert lease is not None and lease["spec"]["holderIdentity"] == "cp-a"


def add_model(cluster: Cluster, alias: str, target: str = "mock") -> int:
    endpoint = cluster.api.get("Endpoint", "demo-chat")
    assert endpoint is not None
    endpoint["spec"]["models"].append(
        {"name": alias, "targets": [{"backend": target, "model": "mock-gpt"}]}
    )
    stored = cluster.api.put(endpoint)
    generation: int = stored["metadata"]["generation"]
    return generation


def listed(cluster: Cluster, port: int = 0) -> set[str]:
    return {m.id for m in cluster.client(port).models.list()}


def test_a_change_reaches_envoy_and_the_status_follows(cluster: Cluster) -> None:
    generation = add_model(cluster, "k8s-added")
    wait_until(lambda: "k8s-added" in listed(cluster), 20, "the new model is listed")
    assert completion(cluster, "k8s-added") == "mock-gpt"
    cluster.wait_accepted("Endpoint", "demo-chat", generation, "True")


def test_a_rejected_change_keeps_the_last_good_config_and_says_why(cluster: Cluster) -> None:
    good = cluster.api.get("Endpoint", "demo-chat")
    assert good is not None
    generation = add_model(cluster, "k8s-broken", target="no-such-backend")
    condition = cluster.wait_accepted("Endpoint", "demo-chat", generation, "False")
    assert condition["reason"] == "Invalid"
    assert "no-such-backend" in condition["message"]
    assert "The last good config keeps serving." in condition["message"]
    # The Backend, unchanged and still served, stays accepted.
    assert cluster.accepted("Backend", "mock")["status"] == "True"
    assert "k8s-broken" not in listed(cluster)
    assert completion(cluster) == "mock-gpt"  # still served, from the last good config

    good_spec = good["spec"]
    fixed = cluster.api.get("Endpoint", "demo-chat")
    assert fixed is not None
    fixed["spec"] = good_spec
    stored = cluster.api.put(fixed)
    cluster.wait_accepted("Endpoint", "demo-chat", stored["metadata"]["generation"], "True")


def test_changes_made_while_the_watch_was_down_arrive_after_410(cluster: Cluster) -> None:
    lists = cluster.api.count("GET", "/endpoints", watch=False)
    cluster.api.cut_watches()
    generation = add_model(cluster, "k8s-after-gap")
    cluster.api.compact()  # the resumed watch is too old: 410 Gone, list again
    wait_until(lambda: "k8s-after-gap" in listed(cluster), 30, "the change made in the gap")
    assert cluster.api.count("GET", "/endpoints", watch=False) > lists
    cluster.wait_accepted("Endpoint", "demo-chat", generation, "True")
    assert "expired (410 Gone); listing again" in cluster.plane.output


def test_api_server_errors_are_retried(cluster: Cluster) -> None:
    cluster.api.fail("GET", "/endpoints", 500, count=3)
    cluster.api.cut_watches()
    add_model(cluster, "k8s-after-errors")
    wait_until(lambda: "k8s-after-errors" in listed(cluster), 30, "the change after errors")
    assert "HTTP 500" in cluster.plane.output


def secret(name: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "data": {"apiKey": base64.b64encode(value.encode()).decode()},
    }


def test_a_backend_key_comes_from_a_secret_and_follows_its_rotation(cluster: Cluster) -> None:
    stats = cluster.mock_url.removesuffix("/v1") + "/mock/stats"
    cluster.api.put(secret("mock-provider", "sk-k8s-first"))
    backend = cluster.api.get("Backend", "mock")
    assert backend is not None
    backend["spec"]["apiKey"] = {"secretRef": {"name": "mock-provider", "key": "apiKey"}}
    generation = cluster.api.put(backend)["metadata"]["generation"]
    cluster.wait_accepted("Backend", "mock", generation, "True")

    def seen(key: str) -> bool:
        httpx.post(cluster.mock_url.removesuffix("/v1") + "/mock/reset")
        completion(cluster)
        digest = hashlib.sha256(f"Bearer {key}".encode()).hexdigest()
        authorizations: list[str] = httpx.get(stats).json()["authorizations"]
        return authorizations == [digest]

    wait_until(lambda: seen("sk-k8s-first"), 20, "the provider gets the Secret's key")
    cluster.api.put(secret("mock-provider", "sk-k8s-rotated"))
    wait_until(lambda: seen("sk-k8s-rotated"), 20, "the provider gets the rotated key")
    assert "sk-k8s" not in cluster.plane.output


def test_two_replicas_share_the_keys_and_one_leads(cluster: Cluster, tmp_path: Path) -> None:
    """A second control plane on the same PostgreSQL, with its own ext_proc and Envoy (as
    pods behind the Service would reach either): the same keys work through both; only
    the Lease holder writes status; when it stops, the other takes over."""
    xds_port, extproc_port, port = free_port(), free_port(), free_port()
    second = control_plane(
        "cp-b", cluster.kubeconfig, tmp_path, xds_port, extproc_port, port, cluster.store
    )
    processor = extproc(extproc_port, xds_port)
    envoy, _ = start_envoy(tmp_path, xds_port, node_id="envoy-b")
    try:
        wait_serving(port)
        assert completion(cluster, port=port) == "mock-gpt"  # cp-a's first key, via cp-b
        created = create_key(tmp_path, env=cluster.store)["key"]  # one store, both see it
        assert completion(cluster, key=created) == "mock-gpt"
        assert completion(cluster, port=port, key=created) == "mock-gpt"

        generation = add_model(cluster, "k8s-two-replicas")
        cluster.wait_accepted("Endpoint", "demo-chat", generation, "True")
        wait_until(lambda: "k8s-two-replicas" in listed(cluster, port), 20, "cp-b serves it")
        time.sleep(1.0)
        assert "now leads" not in second.output
        assert "Accepted=" not in second.output  # a follower writes no status

        cluster.plane.stop()  # SIGTERM: the leader releases its Lease
        assert "cp-a no longer leads" in cluster.plane.output
        second.wait_for_line("cp-b now leads", timeout=15)
        generation = add_model(cluster, "k8s-after-failover", target="no-such-backend")
        condition = cluster.wait_accepted("Endpoint", "demo-chat", generation, "False")
        assert condition["reason"] == "Invalid"
        lease = cluster.api.get("Lease", "weir-controlplane")
        assert lease is not None and lease["spec"]["holderIdentity"] == "cp-b"
        assert completion(cluster, port=port, key=created) == "mock-gpt"  # still served
        for process in (cluster.plane, second):
            assert STORE_PASSWORD not in process.output
    finally:
        for process in (envoy, processor, second):
            process.stop()


def rbac_request(method: str, path: str, query: dict[str, list[str]]) -> tuple[str, str, str, str]:
    """(API group, resource, verb, name) of a request, as the API server authorizes it."""
    parts = path.strip("/").split("/")
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    plural, name, sub = rest[2], (rest[3] if len(rest) > 3 else ""), rest[4:]
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method)
    if verb is None:
        verb = "get" if name else ("watch" if "watch" in query else "list")
    return group, "/".join([plural, *sub]), verb, name


def test_every_call_the_control_planes_made_is_granted_by_the_role(cluster: Cluster) -> None:
    """The Role in deploy/ against what the control plane really asked for in this module
    (both replicas, the leader's status writes and Lease included)."""
    from tests.manifests import render

    role = next(d for d in render("base") if d["kind"] == "Role")

    def granted(group: str, resource: str, verb: str, name: str) -> bool:
        return any(
            group in rule.get("apiGroups", [])
            and resource in rule.get("resources", [])
            and verb in rule.get("verbs", [])
            and (not rule.get("resourceNames") or name in rule["resourceNames"])
            for rule in role["rules"]
        )

    made = {rbac_request(*request) for request in cluster.api.requests}
    assert ("weir.dev", "endpoints/status", "patch", "demo-chat") in made
    assert ("coordination.k8s.io", "leases", "update", "weir-controlplane") in made
    assert ("", "secrets", "watch", "") in made
    refused = sorted(request for request in made if not granted(*request))
    assert refused == []
