"""Editing the config directory of a running `weir up` changes behaviour within 1 s,
restarts nothing, never drops requests, and an invalid edit keeps the last good config."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import WeirUp, child_pids, copy_quickstart, wait_until, weir_up

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[WeirUp]:
    with weir_up(copy_quickstart(tmp_path / "config"), tmp_path / "state") as up:
        yield up


def chat(stack: WeirUp, model: str, slug: str = "chat") -> httpx.Response:
    return httpx.post(
        f"{stack.endpoint('demo', slug)}/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        headers={"X-Mock-Behavior": "echo", **stack.auth},
        timeout=5.0,
    )


def backend(name: str) -> str:
    return (
        f"apiVersion: weir.dev/v1alpha1\nkind: Backend\nmetadata: {{name: {name}}}\n"
        "spec:\n  baseURL: ${WEIR_MOCK_LLM_URL}\n  models:\n    - name: mock-gpt\n"
    )


def endpoint(slug: str, alias: str, backend_name: str) -> str:
    return (
        f"apiVersion: weir.dev/v1alpha1\nkind: Endpoint\nmetadata: {{name: ep-{slug}}}\n"
        f"spec:\n  project: demo\n  slug: {slug}\n  models:\n    - name: {alias}\n"
        f"      targets:\n        - {{backend: {backend_name}, model: mock-gpt}}\n"
    )


def test_an_edit_reaches_envoy_and_extproc_within_a_second(stack: WeirUp) -> None:
    children = sorted(child_pids(stack.process.pid))
    assert chat(stack, "fresh", "extra").status_code == 404
    # A new Backend is a new Envoy cluster; the new Endpoint is a new route and new
    # ext_proc routing: a 200 needs both to have the update.
    (stack.config_dir / "extra.yaml").write_text(
        backend("mock-extra") + "---\n" + endpoint("extra", "fresh", "mock-extra")
    )
    took = wait_until(
        lambda: chat(stack, "fresh", "extra").status_code == 200,
        1.0,
        "the new endpoint and backend serve",
    )
    assert took <= 1.0
    assert sorted(child_pids(stack.process.pid)) == children  # nothing restarted


def test_an_invalid_edit_keeps_the_last_good_config_and_is_reported(stack: WeirUp) -> None:
    endpoints = stack.config_dir / "endpoints.yaml"
    good = endpoints.read_text()
    endpoints.write_text(good.replace("slug: chat", "slug: Not_A_Slug"))
    log = stack.state_dir / "logs" / "controlplane.log"
    wait_until(lambda: "spec.slug" in log.read_text(), 2.0, "the control plane reports it")
    report = log.read_text()
    assert "endpoints.yaml" in report and "Endpoint/demo-chat" in report
    for _ in range(5):
        assert chat(stack, "gpt-4o-mini").status_code == 200
    # Fixing the file is picked up again.
    fixed = good.replace("- name: gpt-4o\n", "- name: gpt-4o-renamed\n")
    endpoints.write_text(fixed.replace("[gpt-4o-mini, gpt-4o]", "[gpt-4o-mini, gpt-4o-renamed]"))
    wait_until(lambda: chat(stack, "gpt-4o-renamed").status_code == 200, 1.0, "fix applied")


def test_moving_a_model_to_a_new_backend_drops_no_request(stack: WeirUp) -> None:
    (stack.config_dir / "extra.yaml").write_text(
        backend("old") + "---\n" + endpoint("move", "moving", "old")
    )
    wait_until(lambda: chat(stack, "moving", "move").status_code == 200, 2.0, "first config")
    failures: list[str] = []
    served = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal served
        with httpx.Client(timeout=5.0) as client:
            while not stop.is_set():
                response = client.post(
                    f"{stack.endpoint('demo', 'move')}/chat/completions",
                    json={"model": "moving", "messages": [{"role": "user", "content": "x"}]},
                    headers=stack.auth,
                )
                served += 1
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text}")

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(0.3)
        # Replace the backend: the old cluster goes, a new one comes, in one edit.
        (stack.config_dir / "extra.yaml").write_text(
            backend("new") + "---\n" + endpoint("move", "moving", "new")
        )
        envoy_clusters = f"http://127.0.0.1:{stack.admin_port}/clusters"
        wait_until(
            lambda: "backend-old::" not in httpx.get(envoy_clusters).text,
            3.0,
            "the old cluster is removed from Envoy",
        )
        assert "backend-new::" in httpx.get(envoy_clusters).text
        time.sleep(0.3)
    finally:
        stop.set()
        worker.join()
    assert served > 20
    assert failures == []


def test_a_request_uploading_across_a_change_is_routed_with_the_new_config(
    stack: WeirUp,
) -> None:
    (stack.config_dir / "extra.yaml").write_text(
        backend("old") + "---\n" + endpoint("move", "moving", "old")
    )
    wait_until(lambda: chat(stack, "moving", "move").status_code == 200, 2.0, "first config")
    body = b'{"model": "moving", "messages": [{"role": "user", "content": "x"}]}'
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as conn:
        # The headers go first; the body only after the backend has been replaced.
        conn.sendall(
            b"POST /demo/move/v1/chat/completions HTTP/1.1\r\nHost: weir\r\n"
            b"Content-Type: application/json\r\n"
            + b"Authorization: Bearer "
            + stack.key.encode()
            + b"\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        (stack.config_dir / "extra.yaml").write_text(
            backend("new") + "---\n" + endpoint("move", "moving", "new")
        )
        clusters = f"http://127.0.0.1:{stack.admin_port}/clusters"
        wait_until(
            lambda: "backend-old::" not in httpx.get(clusters).text,
            3.0,
            "the old cluster is removed from Envoy",
        )
        conn.sendall(body)
        status_line = conn.recv(65536).split(b"\r\n", 1)[0]
    assert status_line == b"HTTP/1.1 200 OK"
