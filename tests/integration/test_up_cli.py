"""`weir up` and `weir validate` as a user runs them: start, stop, fail clearly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.harness import (
    Process,
    WeirUp,
    child_pids,
    copy_quickstart,
    pid_alive,
    run_up_expecting_failure,
    wait_until,
    weir_argv,
    weir_up,
)
from weir.ports import free_port, port_in_use

pytestmark = pytest.mark.integration


def ports_of(up: WeirUp) -> list[int]:
    return [up.port, up.mock_port, up.xds_port, up.extproc_port, up.admin_port]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_every_part_and_frees_every_port(tmp_path: Path, sig: int) -> None:
    with weir_up(copy_quickstart(tmp_path / "config"), tmp_path / "state") as up:
        children = child_pids(up.process.pid)
        assert len(children) == 4  # mock LLM, control plane, ext_proc, Envoy
        assert up.process.stop(sig) == 0
    assert "weir up: stopping" in up.process.output
    for pid in children:
        assert not pid_alive(pid), f"child {pid} outlived weir up"
    for port in ports_of(up):
        assert not port_in_use("127.0.0.1", port), f"port {port} still bound"


def test_killing_weir_up_leaves_no_orphans(tmp_path: Path) -> None:
    with weir_up(copy_quickstart(tmp_path / "config"), tmp_path / "state") as up:
        children = child_pids(up.process.pid)
        up.process.stop(signal.SIGKILL)
        wait_until(
            lambda: not any(pid_alive(p) for p in children), 15.0, "children die with their parent"
        )


def test_a_part_that_dies_is_named_and_weir_up_exits_non_zero(tmp_path: Path) -> None:
    with weir_up(copy_quickstart(tmp_path / "config"), tmp_path / "state") as up:
        children = child_pids(up.process.pid)
        envoy = [p for p in children if "envoy" in Path(f"/proc/{p}/cmdline").read_text()]
        assert len(envoy) == 1
        os.kill(envoy[0], signal.SIGKILL)
        assert up.process.popen is not None
        assert up.process.popen.wait(30) == 1
    assert "envoy exited unexpectedly" in up.process.output
    for pid in children:
        assert not pid_alive(pid)


def up_with_a_taken_port(tmp_path: Path, flag: str) -> tuple[int, str]:
    """Run `weir up` with `flag` set to a port something else listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"--port": str(free_port()), flag: str(port)}
        args = [item for pair in ports.items() for item in pair]
        result = run_up_expecting_failure(
            copy_quickstart(tmp_path / "config"), tmp_path / "state", *args
        )
    assert result.returncode == 1
    return port, result.stderr


def test_a_taken_port_is_reported_before_anything_starts(tmp_path: Path) -> None:
    port, stderr = up_with_a_taken_port(tmp_path, "--port")
    assert f"port {port} on 127.0.0.1 is already in use" in stderr
    assert "--port" in stderr
    assert not (tmp_path / "state" / "logs").exists()


def test_a_taken_internal_port_names_the_part(tmp_path: Path) -> None:
    port, stderr = up_with_a_taken_port(tmp_path, "--extproc-port")
    assert f"port {port} for the ext_proc server is already in use" in stderr
    assert "--extproc-port" in stderr


def test_bad_config_is_reported_with_every_error_and_nothing_starts(tmp_path: Path) -> None:
    config = copy_quickstart(tmp_path / "config")
    endpoints = config / "endpoints.yaml"
    endpoints.write_text(
        endpoints.read_text()
        .replace("slug: chat", "slug: Bad_Slug")
        .replace("backend: mock", "backend: missing", 1)
    )
    started = time.monotonic()
    result = run_up_expecting_failure(config, tmp_path / "state", "--port", str(free_port()))
    assert result.returncode == 2
    assert time.monotonic() - started < 20
    assert "endpoints.yaml: Endpoint/demo-chat: spec.slug:" in result.stderr
    assert "endpoints.yaml: Endpoint/demo-chat: spec.models[0].targets[0].backend:" in (
        result.stderr
    )
    assert not (tmp_path / "state" / "logs").exists()


def test_validate_lists_every_error_and_exits_non_zero(tmp_path: Path) -> None:
    config = copy_quickstart(tmp_path / "config")
    ok = subprocess.run(
        weir_argv("validate", str(config)),
        capture_output=True,
        text=True,
        env={**os.environ, "WEIR_MOCK_LLM_URL": "http://127.0.0.1:9/v1"},
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().endswith(
        ": OK (1 Backend(s), 2 Endpoint(s), 1 Policy(ies), 1 PIIPolicy(ies), 1 ServiceTier(s), "
        "0 Secret(s))"
    )
    backends = config / "backends.yaml"
    backends.write_text(
        backends.read_text()
        .replace("input: 0.15", "input: -1")
        .replace("timeout: 300s", "timeout: soon")
    )
    bad = subprocess.run(
        weir_argv("validate", str(config)),
        capture_output=True,
        text=True,
        env={**os.environ, "WEIR_MOCK_LLM_URL": "http://127.0.0.1:9/v1"},
    )
    assert bad.returncode == 1
    assert "backends.yaml: Backend/mock: spec.models[0].pricing.input:" in bad.stderr
    assert "backends.yaml: Backend/mock: spec.timeout:" in bad.stderr
    assert "2 error(s)" in bad.stderr


def test_default_state_dir_is_dot_weir(tmp_path: Path) -> None:
    config = copy_quickstart(tmp_path / "config")
    process = Process(
        "weir up",
        weir_argv("up", "--config", str(config), "--port", str(free_port())),
    )
    process.argv = ["bash", "-c", f"cd {tmp_path} && exec " + " ".join(process.argv)]
    process.start()
    try:
        process.wait_for_line("Weir is ready.")
        assert (tmp_path / ".weir" / "logs" / "envoy.log").exists()
    finally:
        assert process.stop() == 0


def test_a_host_name_instead_of_an_address_is_refused_at_once(tmp_path: Path) -> None:
    result = run_up_expecting_failure(
        copy_quickstart(tmp_path / "config"), tmp_path / "state", "--host", "localhost"
    )
    assert result.returncode == 2
    assert "--host must be an IPv4 address" in result.stderr
