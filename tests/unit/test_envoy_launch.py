"""The Envoy bootstrap renders to a config the real Envoy accepts; `weir envoy` writes it
and becomes Envoy; the preStop drain (`weir.envoy_drain`) against a real Envoy and a fake."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import string
import subprocess
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)

import weir
from controlplane import translate_envoy
from controlplane.dataplane import Address, DataPlaneSettings
from controlplane.model import ConfigSet
from tests.envoy_validate import assert_envoy_accepts
from weir import envoy_drain
from weir.cli import main
from weir.envoy_launch import (
    BOOTSTRAP_TEMPLATE,
    envoy_argv,
    envoy_binary,
    write_bootstrap,
)
from weir.ports import free_port

REPO = Path(__file__).resolve().parents[2]


def test_bootstrap_is_valid_for_envoy(tmp_path: Path) -> None:
    # "n" would be YAML's boolean false if the template did not quote it.
    path = write_bootstrap(tmp_path / "bootstrap.yaml", "n", 9901, 18000)
    rendered = yaml.safe_load(path.read_text())
    assert rendered["node"] == {"id": "n", "cluster": "weir"}
    assert rendered["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    # Only the xDS cluster is static: everything else arrives over ADS.
    assert [c["name"] for c in rendered["static_resources"]["clusters"]] == ["weir-xds"]
    assert "listeners" not in rendered["static_resources"]
    assert_envoy_accepts(path)


def test_envoy_runs_without_hot_restart() -> None:
    argv = envoy_argv(Path("b.yaml"), concurrency=2)
    assert "--disable-hot-restart" in argv
    assert argv[argv.index("--concurrency") + 1] == "2"


def test_the_template_is_package_data_of_weir() -> None:
    # An installed wheel has no repository folders: the template ships inside `weir`.
    assert BOOTSTRAP_TEMPLATE.parent == Path(weir.__file__).parent
    with (REPO / "pyproject.toml").open("rb") as f:
        package_data = tomllib.load(f)["tool"]["setuptools"]["package-data"]["weir"]
    assert BOOTSTRAP_TEMPLATE.name in package_data


def test_without_a_ready_port_the_bootstrap_is_the_template_filled_in(tmp_path: Path) -> None:
    # What `weir up` writes: the template with its placeholders replaced, nothing more.
    path = write_bootstrap(tmp_path / "b.yaml", "envoy-0", 9901, 18000)
    assert path.read_text() == string.Template(BOOTSTRAP_TEMPLATE.read_text()).substitute(
        NODE_ID="envoy-0",
        NODE_CLUSTER="weir",
        ADMIN_PORT=9901,
        XDS_HOST="127.0.0.1",
        XDS_PORT=18000,
    )


@pytest.mark.parametrize("ready_port", [None, 19001])
@pytest.mark.parametrize("node_id", ['a "quoted" id', "n", "yes"])
def test_odd_node_ids_and_ipv6_control_planes_stay_valid_yaml(
    tmp_path: Path, node_id: str, ready_port: int | None
) -> None:
    path = write_bootstrap(tmp_path / "b.yaml", node_id, 9901, 18000, "::1", ready_port)
    rendered = yaml.safe_load(path.read_text())
    assert rendered["node"]["id"] == node_id
    # Envoy reads YAML 1.1: a bare n would be false there.
    assert "id: n\n" not in path.read_text()
    [cluster] = rendered["static_resources"]["clusters"]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"]["address"] == "::1"
    assert_envoy_accepts(path)


def test_a_ready_port_adds_a_readiness_listener_envoy_accepts(tmp_path: Path) -> None:
    path = write_bootstrap(
        tmp_path / "b.yaml",
        "weir-envoy-1",
        19000,
        18000,
        "weir-controlplane.weir.svc.cluster.local",
        ready_port=19001,
    )
    rendered = yaml.safe_load(path.read_text())
    assert rendered["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 19000,
    }
    [listener] = rendered["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 19001}
    [chain] = listener["filter_chains"]
    [hcm] = chain["filters"]
    health, router = hcm["typed_config"]["http_filters"]
    assert health["name"] == "envoy.filters.http.health_check"
    # Answered by Envoy itself from its health state, never forwarded anywhere.
    assert health["typed_config"]["pass_through_mode"] is False
    assert health["typed_config"]["headers"] == [
        {"name": ":path", "string_match": {"exact": "/ready"}}
    ]
    assert router["name"] == "envoy.filters.http.router"
    # Not ready before the control plane's config: Envoy waits for it indefinitely.
    for source in ("cds_config", "lds_config"):
        assert rendered["dynamic_resources"][source]["initial_fetch_timeout"] == "0s"
    [cluster] = rendered["static_resources"]["clusters"]
    assert cluster["type"] == "STRICT_DNS"
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {
        "address": "weir-controlplane.weir.svc.cluster.local",
        "port_value": 18000,
    }
    assert_envoy_accepts(path)


class Exec(Exception):
    """Stands in for os.execvp, which never returns."""


@pytest.fixture
def exec_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []

    def execvp(file: str, argv: list[str]) -> None:
        assert file == argv[0]
        calls.append(argv)
        raise Exec

    monkeypatch.setattr(os, "execvp", execvp)
    return calls


def test_weir_envoy_writes_the_bootstrap_and_becomes_envoy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exec_calls: list[list[str]]
) -> None:
    monkeypatch.setenv("POD_NAME", "weir-envoy-7d9c6b5f4-x2k8q")
    bootstrap = tmp_path / "boot" / "envoy.yaml"
    with pytest.raises(Exec):
        main(
            [
                "envoy",
                "--control-plane",
                "weir-controlplane.weir.svc.cluster.local:18000",
                "--ready-port",
                "19001",
                "--drain-time-s",
                "30",
                "--bootstrap-path",
                str(bootstrap),
            ]
        )
    [argv] = exec_calls
    assert argv == [
        envoy_binary(),
        "-c",
        str(bootstrap),
        "--disable-hot-restart",
        "--log-level",
        "warning",
        "--concurrency",
        "2",
        "--drain-time-s",
        "30",
    ]
    rendered = yaml.safe_load(bootstrap.read_text())
    assert rendered["node"] == {"id": "weir-envoy-7d9c6b5f4-x2k8q", "cluster": "weir"}
    assert rendered["admin"]["address"]["socket_address"]["port_value"] == 19000
    [listener] = rendered["static_resources"]["listeners"]
    assert listener["address"]["socket_address"]["port_value"] == 19001
    assert_envoy_accepts(bootstrap)


def test_weir_envoy_defaults(monkeypatch: pytest.MonkeyPatch, exec_calls: list[list[str]]) -> None:
    monkeypatch.delenv("POD_NAME", raising=False)
    with pytest.raises(Exec):
        main(["envoy", "--control-plane", "127.0.0.1:18000", "--concurrency", "4"])
    [argv] = exec_calls
    bootstrap = Path(argv[argv.index("-c") + 1])
    try:
        assert bootstrap.parent.name.startswith("weir-envoy-")  # a new temp directory
        rendered = yaml.safe_load(bootstrap.read_text())
        assert rendered["node"]["id"] == socket.gethostname()
        assert "listeners" not in rendered["static_resources"]  # no ready port
        assert argv[argv.index("--concurrency") + 1] == "4"
        assert "--drain-time-s" not in argv
    finally:
        shutil.rmtree(bootstrap.parent)


def test_weir_envoy_refuses_a_bad_control_plane_address(
    exec_calls: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["envoy", "--control-plane", "weir-controlplane"]) == 2
    assert "expected host:port" in capsys.readouterr().err
    assert exec_calls == []


def test_envoy_answers_ready_until_drained(tmp_path: Path) -> None:
    admin, ready = free_port(), free_port()
    path = write_bootstrap(tmp_path / "b.yaml", "n", admin, free_port(), ready_port=ready)
    # No control plane here: let Envoy stop waiting for one at once.
    rendered = yaml.safe_load(path.read_text())
    for source in ("cds_config", "lds_config"):
        rendered["dynamic_resources"][source]["initial_fetch_timeout"] = "0.01s"
    path.write_text(json.dumps(rendered))  # JSON: a bare n would be false in YAML 1.1
    envoy = subprocess.Popen(envoy_argv(path, concurrency=1), stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{ready}"
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"{url}/ready", timeout=1)
                break
            except httpx.TransportError:
                assert envoy.poll() is None, "Envoy exited"
                assert time.monotonic() < deadline, "the ready listener never opened"
                time.sleep(0.1)
        assert response.status_code == 200
        assert httpx.get(f"{url}/anything-else").status_code == 404
        server_info = httpx.get(f"http://127.0.0.1:{admin}/server_info").json()
        assert server_info["state"] == "LIVE"
        lines: list[str] = []
        left = envoy_drain.drain(f"127.0.0.1:{admin}", timeout_s=10, min_wait_s=0, log=lines.append)
        assert left == 0
        # Draining: /ready fails (the pod leaves the Service), the listener stays open.
        assert httpx.get(f"{url}/ready").status_code == 503
        server_info = httpx.get(f"http://127.0.0.1:{admin}/server_info").json()
        assert server_info["state"] == "DRAINING"
        assert "0 request(s) still in flight" in lines[-1]
    finally:
        envoy.terminate()
        envoy.wait(timeout=30)


class FakeAdmin(http.server.BaseHTTPRequestHandler):
    calls: list[tuple[str, str]]
    active: list[int]
    dies_mid_answer = False

    def do_POST(self) -> None:
        self.calls.append(("POST", self.path))
        self._answer("OK\n")

    def do_GET(self) -> None:
        self.calls.append(("GET", self.path))
        value = self.active.pop(0) if len(self.active) > 1 else self.active[0]
        if self.dies_mid_answer:  # headers promise more than comes before the close
            self.send_response(200)
            self.send_header("content-length", "1000")
            self.end_headers()
            self.wfile.write(b"http.downstream")
            self.close_connection = True
            return
        self._answer(f"{envoy_drain.ACTIVE_REQUESTS_STAT}: {value}\n")

    def _answer(self, text: str) -> None:
        body = text.encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_admin() -> Iterator[tuple[str, type[FakeAdmin]]]:
    handler = type("Handler", (FakeAdmin,), {"calls": [], "active": [0]})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_drain_fails_the_health_check_first_then_waits_for_requests_to_end(
    fake_admin: tuple[str, type[FakeAdmin]],
) -> None:
    address, admin = fake_admin
    admin.active[:] = [3, 2, 1, 0]
    clock = Clock()
    left = envoy_drain.drain(
        address, timeout_s=45, min_wait_s=0, log=lambda _: None, clock=clock, sleep=clock.sleep
    )
    assert left == 0
    assert admin.calls[:2] == [
        ("POST", "/healthcheck/fail"),
        ("POST", "/drain_listeners?graceful&skip_exit"),
    ]
    assert [method for method, _ in admin.calls[2:]] == ["GET"] * 4
    assert clock.now == 1.5  # three waits of 0.5 s


def test_drain_waits_at_least_the_minimum_and_at_most_the_timeout(
    fake_admin: tuple[str, type[FakeAdmin]],
) -> None:
    address, admin = fake_admin
    clock = Clock()
    assert (
        envoy_drain.drain(
            address, timeout_s=45, min_wait_s=5, log=lambda _: None, clock=clock, sleep=clock.sleep
        )
        == 0
    )
    assert clock.now == 5.0  # nothing in flight, but the endpoint change takes a moment
    admin.active[:] = [7]
    clock = Clock()
    assert (
        envoy_drain.drain(
            address, timeout_s=3, min_wait_s=1, log=lambda _: None, clock=clock, sleep=clock.sleep
        )
        == 7
    )
    assert clock.now == 3.0


def test_drain_ends_quietly_when_envoy_dies_mid_answer(
    fake_admin: tuple[str, type[FakeAdmin]],
) -> None:
    address, admin = fake_admin
    admin.dies_mid_answer = True
    lines: list[str] = []
    left = envoy_drain.drain(address, timeout_s=45, min_wait_s=0, log=lines.append)
    assert left == 0  # gone: nothing is in flight any more
    assert lines[-1].startswith("weir envoy drain: 0 request(s) still in flight")


def test_drain_of_an_envoy_that_is_gone_is_a_no_op() -> None:
    lines: list[str] = []
    assert (
        envoy_drain.drain(f"127.0.0.1:{free_port()}", timeout_s=5, min_wait_s=5, log=lines.append)
        == 0
    )
    assert "did not answer" in lines[0]


def test_drain_counts_the_requests_of_the_listener_the_control_plane_configures() -> None:
    listener = translate_envoy.translate(
        ConfigSet(), DataPlaneSettings(Address("0.0.0.0", 8080), (Address("127.0.0.1", 1),))
    ).listeners[0]
    hcm = http_connection_manager_pb2.HttpConnectionManager()
    listener.filter_chains[0].filters[0].typed_config.Unpack(hcm)
    assert f"http.{hcm.stat_prefix}.downstream_rq_active" == envoy_drain.ACTIVE_REQUESTS_STAT
