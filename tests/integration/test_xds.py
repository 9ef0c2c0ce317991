"""xDS behaviour with a real Envoy and a real ext_proc: NACKs keep the last good config,
and both keep serving while the control plane is down, then resync when it returns.

The control plane runs in the test's event loop so a test can publish hand-made bad
updates and stop and restart it; Envoy, ext_proc and the mock LLM are real processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from controlplane.dataplane import Address, DataPlaneSettings
from controlplane.publisher import Generated, UpdateRejected, generate
from controlplane.server import ControlPlane, ControlPlaneSettings
from controlplane.snapshot import LISTENER, RUNTIME
from controlplane.source_files import load_directory
from tests.integration.harness import (
    Process,
    copy_quickstart,
    create_key,
    start_envoy,
    weir_argv,
)
from weir.ports import free_port

pytestmark = pytest.mark.integration

# A second Backend (so a new Envoy cluster) and a second Endpoint using it.
MORE_CONFIG = """
apiVersion: weir.dev/v1alpha1
kind: Backend
metadata: {name: mock-two}
spec:
  baseURL: ${WEIR_MOCK_LLM_URL}
  models:
    - name: mock-gpt
---
apiVersion: weir.dev/v1alpha1
kind: Endpoint
metadata: {name: demo-more}
spec:
  project: demo
  slug: more
  models:
    - name: added-while-down
      targets:
        - {backend: mock-two, model: mock-gpt}
"""

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@dataclass
class Parts:
    config_dir: Path
    environ: dict[str, str]
    settings: ControlPlaneSettings
    plane: ControlPlane
    plane_task: asyncio.Task[None]
    envoy: Process
    extproc: Process
    http: httpx.AsyncClient
    base: str

    async def start_plane(self) -> None:
        self.plane = ControlPlane(self.settings, self.environ)
        self.plane_task = asyncio.create_task(self.plane.run())

    async def stop_plane(self) -> None:
        self.plane.stop()
        await self.plane_task

    async def chat(self, model: str = "gpt-4o-mini", slug: str = "chat") -> httpx.Response:
        return await self.http.post(
            f"{self.base}/demo/{slug}/v1/chat/completions", json={**CHAT, "model": model}
        )

    async def eventually(
        self, model: str, status: int, slug: str = "chat", timeout: float = 10.0
    ) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        last = None
        while asyncio.get_running_loop().time() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                last = await self.chat(model, slug)
                if last.status_code == status:
                    return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{model} never answered {status}; last: {last and last.text}")


async def _wait_ok(http: httpx.AsyncClient, url: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if (await http.get(url)).status_code == 200:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never answered 200")


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[Parts]:
    mock_port, xds_port, extproc_port, listen_port = (free_port() for _ in range(4))
    mock = Process("mock", weir_argv("mock-llm", "--port", str(mock_port))).start()
    environ = {**os.environ, "WEIR_MOCK_LLM_URL": f"http://127.0.0.1:{mock_port}/v1"}
    settings = ControlPlaneSettings(
        config_dir=copy_quickstart(tmp_path / "config"),
        xds=Address("127.0.0.1", xds_port),
        dataplane=DataPlaneSettings(
            listener=Address("127.0.0.1", listen_port),
            extproc=(Address("127.0.0.1", extproc_port),),
        ),
        store_path=tmp_path / "state" / "weir.db",
    )
    key = create_key(tmp_path / "state", "demo")["key"]
    plane = ControlPlane(settings, environ)
    extproc = Process(
        "extproc",
        weir_argv(
            "extproc",
            "--listen",
            f"127.0.0.1:{extproc_port}",
            "--control-plane",
            f"127.0.0.1:{xds_port}",
            "--node-id",
            "extproc-test",
        ),
    ).start()
    envoy, _ = start_envoy(tmp_path / "state", xds_port)
    http = httpx.AsyncClient(timeout=5.0, headers={"authorization": f"Bearer {key}"})
    result = Parts(
        settings.config_dir,
        environ,
        settings,
        plane,
        asyncio.create_task(plane.run()),
        envoy,
        extproc,
        http,
        f"http://127.0.0.1:{listen_port}",
    )
    try:
        await _wait_ok(http, f"http://127.0.0.1:{mock_port}/healthz")
        await _wait_ok(http, f"{result.base}/healthz")
        yield result
    finally:
        await http.aclose()
        for process in (envoy, extproc, mock):
            process.stop()
        if not result.plane_task.done():
            await result.stop_plane()


def _current(parts: Parts) -> Generated:
    config = load_directory(parts.config_dir, parts.environ)
    return generate(config, parts.settings.dataplane, parts.environ)


async def test_update_envoy_nacks_is_reported_and_last_good_keeps_serving(parts: Parts) -> None:
    assert (await parts.chat()).status_code == 200
    good = parts.plane.cache.snapshot
    bad = _current(parts)
    listener = bad.envoy.listeners[0]
    listener.address.socket_address.address = "256.0.0.1"  # Envoy rejects; we did not check
    with pytest.raises(UpdateRejected) as raised:
        await parts.plane.publisher.publish(bad)
    assert "envoy-test" in str(raised.value)
    nacks = [n for n in parts.plane.status.nacks if n.node_id == "envoy-test"]
    assert [n.type_url for n in nacks] == [LISTENER]
    assert "256.0.0.1" in nacks[0].message
    # The control plane went back to the last good snapshot, and Envoy kept serving it.
    assert parts.plane.cache.snapshot == good
    for _ in range(5):
        assert (await parts.chat()).status_code == 200


async def test_update_extproc_nacks_is_reported_and_last_good_keeps_serving(
    parts: Parts,
) -> None:
    good = parts.plane.cache.snapshot
    bad = _current(parts)
    # The update changes Envoy's side too, which Envoy accepts before ext_proc rejects.
    bad.envoy.routes[0].virtual_hosts[0].routes[1].route.timeout.seconds = 7
    bad.runtime.endpoints[0].models[0].targets[0].backend = "ghost"
    bad.runtime.endpoints[0].models.add(name="only-in-bad-update").targets.add(
        backend="mock", model="mock-gpt"
    )
    with pytest.raises(UpdateRejected) as raised:
        await parts.plane.publisher.publish(bad)
    assert "extproc-test" in str(raised.value)
    nacks = [n for n in parts.plane.status.nacks if n.node_id == "extproc-test"]
    assert [n.type_url for n in nacks] == [RUNTIME]
    assert "unknown backend 'ghost'" in nacks[0].message
    # All of the last good config is back, Envoy's side included.
    assert parts.plane.cache.snapshot == good
    assert (await parts.chat()).status_code == 200
    assert (await parts.chat("only-in-bad-update")).status_code == 404
    await asyncio.sleep(0.3)
    assert "rejected (NACK)" in parts.extproc.output


async def test_serving_continues_while_the_control_plane_is_down_and_resyncs(
    parts: Parts,
) -> None:
    await parts.stop_plane()
    # Envoy and ext_proc keep their last config.
    for _ in range(10):
        assert (await parts.chat()).status_code == 200
        await asyncio.sleep(0.1)
    # Meanwhile the config changes: a new backend (a new Envoy cluster) and a new alias.
    (parts.config_dir / "more.yaml").write_text(MORE_CONFIG)
    assert (await parts.chat("added-while-down", "more")).status_code == 404
    await parts.start_plane()
    await parts.eventually("added-while-down", 200, slug="more")
    assert parts.envoy.alive() and parts.extproc.alive()
    listing = (await parts.http.get(f"{parts.base}/demo/more/v1/models")).json()
    assert "added-while-down" in [m["id"] for m in listing["data"]]
    # After the restart, edits still apply within a second (the clients' resumed
    # versions count as accepted, so no push waits for a confirmation that never comes).
    (parts.config_dir / "more.yaml").write_text(
        MORE_CONFIG.replace("added-while-down", "renamed-after-restart")
    )
    started = asyncio.get_running_loop().time()
    await parts.eventually("renamed-after-restart", 200, slug="more", timeout=1.0)
    assert asyncio.get_running_loop().time() - started <= 1.0


async def test_requests_fail_closed_when_extproc_is_down(parts: Parts) -> None:
    assert (await parts.chat()).status_code == 200
    parts.extproc.stop()
    response = await parts.chat()
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["type"] == "server_error"


async def test_extproc_sigterm_lets_the_streams_in_flight_finish(parts: Parts) -> None:
    assert parts.extproc.popen is not None
    body = {**CHAT, "stream": True}
    async with parts.http.stream(
        "POST",
        f"{parts.base}/demo/chat/v1/chat/completions",
        json=body,
        headers={"X-Mock-TPOT-Ms": "50"},
    ) as response:
        assert response.status_code == 200
        chunks = response.aiter_bytes()
        received = await anext(chunks)
        parts.extproc.popen.send_signal(signal.SIGTERM)
        async for chunk in chunks:
            received += chunk
    assert received.count(b"data: ") >= 20
    assert received.rstrip().endswith(b"data: [DONE]")
    assert await asyncio.to_thread(parts.extproc.popen.wait, 10) == 0
    assert "ext_proc stopped" in parts.extproc.output


async def test_keepalive_pings_do_not_cut_the_xds_streams(parts: Parts) -> None:
    # Envoy pings its xDS connection every 5 s; gRPC's default policy would answer the
    # third ping with GOAWAY "too_many_pings" and Envoy would reconnect over and over.
    await asyncio.sleep(26)  # the default policy cut it after about 21 s
    assert parts.plane.status.connects["envoy-test"] == 1
    assert parts.plane.status.connects["extproc-test"] == 1
    assert "too_many_pings" not in parts.envoy.output.lower().replace(" ", "_")
