"""The Kubernetes source against the REST protocol (tests/kube_apiserver.py), through the
official client: list, watch, 410 Gone, cut connections, server errors, Secrets."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.errors import ConfigInvalid
from controlplane.kube_api import KubeApi
from controlplane.model import ConfigSet
from controlplane.source_kubernetes import KubernetesSource, ResourceKey
from tests.kube_apiserver import KubeApiServer

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"


def quickstart_text() -> str:
    texts = [p.read_text() for p in sorted(QUICKSTART.glob("*.yaml"))]
    return "\n---\n".join(texts).replace("${WEIR_MOCK_LLM_URL}", "http://mock.weir.svc:9100/v1")


def backend(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "weir.dev/v1alpha1",
        "kind": "Backend",
        "metadata": {"name": name},
        "spec": {"baseURL": "http://upstream.example:9000/v1", "models": [{"name": "m"}], **spec},
    }


def secret(name: str, **values: str) -> dict[str, Any]:
    data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": data}


class Results:
    """Runs a source's watch() in the background and hands out its results."""

    def __init__(self, source: KubernetesSource) -> None:
        self.source = source
        self.queue: asyncio.Queue[ConfigSet | ConfigInvalid] = asyncio.Queue()
        self.task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        async for result in self.source.watch():
            self.queue.put_nowait(result)

    async def next(self, timeout: float = 10.0) -> ConfigSet | ConfigInvalid:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def nothing(self, for_s: float = 0.6) -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(self.queue.get(), for_s)

    async def close(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


@pytest.fixture
async def results(kube_api: KubeApi) -> AsyncIterator[Results]:
    source = KubernetesSource(kube_api, backoff_s=(0.05, 0.2))
    watching = Results(source)
    yield watching
    await watching.close()


async def test_the_quickstart_resources_make_the_same_config_as_the_directory(
    kube_server: KubeApiServer, results: Results
) -> None:
    kube_server.put_yaml(quickstart_text())
    result = await results.next()
    assert isinstance(result, ConfigSet), str(result)
    assert [b.name for b in result.backends] == ["mock"]
    assert {e.name for e in result.endpoints} == {"demo-chat", "demo-trial"}
    assert result.backends[0].base_url == "http://mock.weir.svc:9100/v1"
    build = results.source.last_build
    assert build is not None
    assert build.generations[ResourceKey("Backend", "mock")] == 1
    assert build.problems == {}


async def test_an_empty_namespace_is_an_error_not_an_empty_gateway(results: Results) -> None:
    result = await results.next()
    assert isinstance(result, ConfigInvalid)
    assert "no Weir resources in the namespace" in str(result)


async def test_spec_changes_yield_and_status_writes_do_not(
    kube_server: KubeApiServer, results: Results, kube_api: KubeApi
) -> None:
    kube_server.put_yaml(quickstart_text())
    assert isinstance(await results.next(), ConfigSet)
    # A status write (as the control plane's own) changes resourceVersion, not generation.
    kube_api.patch_status(
        next(c for c in results.source.reflectors if c.kind == "Backend"),
        "mock",
        {"observedGeneration": 1},
    )
    await results.nothing()
    changed = kube_server.get("Backend", "mock")
    assert changed is not None
    changed["spec"]["models"].append({"name": "mock-gpt-nano"})
    kube_server.put(changed)
    result = await results.next()
    assert isinstance(result, ConfigSet), str(result)
    assert [m.name for m in result.backends[0].models] == [
        "mock-gpt",
        "mock-gpt-mini",
        "mock-gpt-nano",
    ]
    assert results.source.last_build is not None
    assert results.source.last_build.generations[ResourceKey("Backend", "mock")] == 2


async def test_problems_are_tied_to_the_resource_that_has_them(
    kube_server: KubeApiServer, results: Results
) -> None:
    kube_server.put_yaml(quickstart_text())
    assert isinstance(await results.next(), ConfigSet)
    endpoint = kube_server.get("Endpoint", "demo-chat")
    assert endpoint is not None
    endpoint["spec"]["models"][0]["targets"][0]["backend"] = "nowhere"
    kube_server.put(endpoint)
    result = await results.next()
    assert isinstance(result, ConfigInvalid)
    build = results.source.last_build
    assert build is not None
    assert list(build.problems) == [ResourceKey("Endpoint", "demo-chat")]
    assert "nowhere" in build.problems[ResourceKey("Endpoint", "demo-chat")][0]


async def test_referenced_secret_keys_are_read_and_followed(
    kube_server: KubeApiServer, results: Results
) -> None:
    kube_server.put(secret("unrelated", token="not-for-weir"))
    kube_server.put(secret("provider", apiKey="sk-first", other="\u00e9t\u00e9"))
    kube_server.put(backend("up", apiKey={"secretRef": {"name": "provider", "key": "apiKey"}}))
    kube_server.put_yaml(
        """
apiVersion: weir.dev/v1alpha1
kind: Endpoint
metadata: {name: e}
spec:
  project: p
  slug: s
  models: [{name: m, targets: [{backend: up, model: m}]}]
"""
    )
    result = await results.next()
    assert isinstance(result, ConfigSet), str(result)
    assert result.secrets[0].values == {"apiKey": "sk-first"}  # the referenced key only
    kube_server.put(secret("unrelated", token="changed"))
    await results.nothing()  # a Secret no Backend uses changes nothing
    kube_server.put(secret("provider", apiKey="sk-second"))
    result = await results.next()
    assert isinstance(result, ConfigSet)
    assert result.secrets[0].values == {"apiKey": "sk-second"}
    kube_server.delete("Secret", "provider")
    result = await results.next()
    assert isinstance(result, ConfigInvalid)
    assert "unknown Secret 'provider'" in str(result)
    assert "sk-" not in str(result)


async def test_an_expired_watch_lists_again_and_misses_nothing(
    kube_server: KubeApiServer, results: Results
) -> None:
    kube_server.put_yaml(quickstart_text())
    assert isinstance(await results.next(), ConfigSet)
    lists_before = kube_server.count("GET", "/backends", watch=False)
    # The connection drops; meanwhile a resource changes and the history is compacted, so
    # the resumed watch gets 410 Gone and must list again to see the change.
    kube_server.cut_watches()
    kube_server.delete("Endpoint", "demo-trial")
    kube_server.compact()
    result = await results.next()
    assert isinstance(result, ConfigSet), str(result)
    assert [e.name for e in result.endpoints] == ["demo-chat"]
    assert kube_server.count("GET", "/backends", watch=False) > lists_before


async def test_bookmarks_keep_a_quiet_watch_from_going_stale(
    kube_server: KubeApiServer, results: Results
) -> None:
    kube_server.bookmark_interval_s = 0.2
    kube_server.put_yaml(quickstart_text())
    assert isinstance(await results.next(), ConfigSet)
    # The resourceVersion moves on elsewhere; the Backends' watch hears only bookmarks.
    kube_server.put(secret("unrelated", token="x"))
    version = str(kube_server.version)
    await asyncio.sleep(1.0)
    lists = kube_server.count("GET", "/backends", watch=False)
    kube_server.cut_watches()
    kube_server.compact()  # everything before `version` is forgotten
    await results.nothing(1.0)  # nothing changed, so nothing is published

    def resumed_from(rv: str) -> bool:
        return any(
            "/backends" in path and query.get("resourceVersion") == [rv]
            for method, path, query in kube_server.requests
            if "watch" in query
        )

    assert resumed_from(version)  # from the last bookmark: no 410, no list again
    assert kube_server.count("GET", "/backends", watch=False) == lists


async def test_a_watch_gone_silent_is_replaced_and_misses_nothing(
    kube_api: KubeApi, kube_server: KubeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "weir.controlplane.kubernetes")
    kube_server.bookmark_interval_s = 0.2
    results = Results(KubernetesSource(kube_api, watch_silence_s=1.0, backoff_s=(0.05, 0.2)))
    try:
        kube_server.put_yaml(quickstart_text())
        assert isinstance(await results.next(), ConfigSet)
        await asyncio.sleep(1.5)  # quiet, but the bookmarks say the watches are alive
        assert "nothing heard" not in caplog.text
        lists = kube_server.count("GET", "/endpoints", watch=False)
        # The connections die without being closed: the change is never sent on them.
        kube_server.freeze_watches()
        kube_server.delete("Endpoint", "demo-trial")
        result = await results.next(timeout=5.0)
        assert isinstance(result, ConfigSet)
        assert [e.name for e in result.endpoints] == ["demo-chat"]
        assert "endpoints.weir.dev in namespace weir: nothing heard for 1 s; watching again" in (
            caplog.text
        )
        assert kube_server.count("GET", "/endpoints", watch=False) == lists  # resumed
    finally:
        await results.close()


async def test_server_errors_are_retried_and_the_watch_resumes(
    kube_server: KubeApiServer, results: Results, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "weir.controlplane.kubernetes")
    kube_server.put_yaml(quickstart_text())
    assert isinstance(await results.next(), ConfigSet)
    kube_server.fail("GET", "/servicetiers", 500, count=3)
    kube_server.fail("GET", "/endpoints", 503, count=2)
    kube_server.cut_watches()
    tier = kube_server.get("ServiceTier", "trial")
    assert tier is not None
    tier["spec"]["priority"] = "high"
    kube_server.put(tier)
    result = await results.next()
    assert isinstance(result, ConfigSet)
    assert next(t for t in result.service_tiers if t.name == "trial").priority == "high"
    assert "servicetiers.weir.dev in namespace weir: HTTP 500" in caplog.text
    assert "endpoints.weir.dev in namespace weir: HTTP 503" in caplog.text


async def test_a_resource_deleted_and_made_again_is_published_anew(
    kube_server: KubeApiServer, results: Results
) -> None:
    kube_server.put_yaml(quickstart_text())
    assert isinstance(await results.next(), ConfigSet)
    backend = kube_server.get("Backend", "mock")
    assert backend is not None
    kube_server.delete("Backend", "mock")
    backend["spec"]["baseURL"] = "http://elsewhere.weir.svc:9100/v1"
    del backend["metadata"]["uid"], backend["metadata"]["resourceVersion"]
    kube_server.put(backend)  # generation 1 again, as before the delete
    while True:
        result = await results.next()
        if isinstance(result, ConfigSet):
            break
    assert result.backends[0].base_url == "http://elsewhere.weir.svc:9100/v1"
