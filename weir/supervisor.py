"""`weir up`: start the mock LLM, the control plane, ext_proc and Envoy; stop them all.

Each part is a child process in its own session (so a Ctrl-C reaches only the
supervisor, which then stops the parts in order) that also dies with the supervisor
(PR_SET_PDEATHSIG), so no part outlives it. Parts start in dependency order, each
awaited until it reports ready; if one fails, `weir up` says which and why, stops the
others and exits non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from controlplane.keystore import default_store_path
from weir.envoy_launch import envoy_argv, write_bootstrap
from weir.ports import free_port, port_in_use

_PR_SET_PDEATHSIG = 1
# The environment variable that gives ext_proc its Redis URL (it may hold a password).
REDIS_URL_ENV = "WEIR_REDIS_URL"


class StartupFailed(Exception):
    """A part did not come up; the message says which and why."""


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Part:
    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    process: asyncio.subprocess.Process | None = None
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=30))
    pump: asyncio.Task[None] | None = None
    log_file: Path | None = None
    nack: str | None = None  # the first config rejection this part reported

    async def start(self, echo: bool) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.pump = asyncio.create_task(self._pump(echo))

    async def _pump(self, echo: bool) -> None:
        assert self.process is not None and self.process.stdout is not None
        sink = self.log_file.open("a", encoding="utf-8") if self.log_file else None
        pending = b""
        try:
            # Chunks, not readline(): a line longer than the stream's limit must not stop
            # the pump (the part would then block on a full pipe).
            while chunk := await self.process.stdout.read(65536):
                *lines, pending = (pending + chunk).split(b"\n")
                for raw in lines:
                    self._emit(raw, sink, echo)
            if pending:
                self._emit(pending, sink, echo)
        finally:
            if sink is not None:
                sink.close()

    def _emit(self, raw: bytes, sink: TextIO | None, echo: bool) -> None:
        line = raw.decode("utf-8", "replace").rstrip()
        self.recent.append(line)
        if "rejected (NACK)" in line and self.nack is None:
            self.nack = line.split(": ", 1)[-1]
        if sink is not None:
            sink.write(line + "\n")
            sink.flush()
        if echo:
            print(f"{self.name:>13} | {line}", flush=True)

    @property
    def exited(self) -> bool:
        return self.process is not None and self.process.returncode is not None

    def why(self) -> str:
        tail = "\n".join(f"    {line}" for line in list(self.recent)[-12:])
        return f"its last output:\n{tail}" if tail else "it printed nothing"

    async def stop(self, timeout: float = 8.0) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        if self.pump is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self.pump, 2)


UP_PORTS = ("port", "mock", "xds", "extproc", "admin", "management")


def up_argv(config_dir: Path, state_dir: Path, ports: dict[str, int], *extra: str) -> list[str]:
    """The `weir up` command line with every port given (keys: UP_PORTS), for callers that
    need to know the ports up front: the benchmark and the integration tests."""
    return [
        sys.executable,
        "-m",
        "weir",
        "up",
        "--config",
        str(config_dir),
        "--state-dir",
        str(state_dir),
        "--port",
        str(ports["port"]),
        "--mock-port",
        str(ports["mock"]),
        "--xds-port",
        str(ports["xds"]),
        "--extproc-port",
        str(ports["extproc"]),
        "--admin-port",
        str(ports["admin"]),
        "--management-port",
        str(ports["management"]),
        *extra,
    ]


@dataclass(frozen=True)
class UpSettings:
    config_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    state_dir: Path = Path(".weir")
    xds_port: int = 0
    extproc_port: int = 0
    admin_port: int = 0
    management_port: int = 0
    mock_port: int = 0
    extproc_replicas: int = 1
    start_mock: bool = True
    mock_ttft_ms: float = 0.0
    mock_tpot_ms: float = 0.0
    max_request_bytes: int = 8 * 1024 * 1024
    extproc_message_timeout_ms: int = 5000
    # Rate-limit counters shared by the ext_proc replicas (passed in their environment,
    # never on a command line); None: each replica counts alone.
    redis_url: str | None = None
    limit_store_failure: str = "open"
    verbose: bool = False
    ready_timeout_s: float = 30.0


async def _wait_until(
    part: Part,
    check: Callable[[], Awaitable[bool]],
    what: str,
    timeout: float,
    failure: Callable[[], str | None] = lambda: None,
) -> None:
    """Poll `check` until it holds; fail at once if the part exits or `failure` says why."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if part.exited:
            code = part.process.returncode if part.process else None
            raise StartupFailed(f"{part.name} exited with code {code} while starting; {part.why()}")
        reason = failure()
        if reason is not None:
            raise StartupFailed(f"{part.name} did not become ready: {reason}")
        with contextlib.suppress(Exception):
            if await check():
                return
        await asyncio.sleep(0.05)
    raise StartupFailed(
        f"{part.name} did not become ready ({what}) within {timeout:.0f}s; {part.why()}"
    )


def _http_ok(url: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        async with httpx.AsyncClient(timeout=1.0) as client:
            return (await client.get(url)).status_code == 200

    return check


def _grpc_serving(target: str, service: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    return check


def _pick(port: int, what: str, flag: str) -> int:
    if port == 0:
        return free_port()
    if port_in_use("127.0.0.1", port):
        raise StartupFailed(
            f"port {port} for the {what} is already in use; choose another with {flag}"
        )
    return port


def _other_free_ports(count: int, taken: set[int]) -> list[int]:
    """`count` free ports, none in `taken` and no two alike."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in taken and port not in ports:
            ports.append(port)
    return ports


class Stack:
    """The running parts, in start order."""

    def __init__(self, settings: UpSettings) -> None:
        self.settings = settings
        self.parts: list[Part] = []
        self.env = dict(os.environ)
        self.env.pop(REDIS_URL_ENV, None)
        if settings.redis_url:
            self.env[REDIS_URL_ENV] = settings.redis_url
        self.management_url = ""
        self.metrics_urls: list[str] = []

    def _part(self, name: str, argv: Sequence[str]) -> Part:
        logs = self.settings.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        part = Part(name, list(argv), env=self.env, log_file=logs / f"{name}.log")
        self.parts.append(part)
        return part

    async def start(self) -> None:
        s = self.settings
        try:
            taken = port_in_use(s.host, s.port)
        except OSError as error:
            raise StartupFailed(
                f"Envoy cannot listen on {s.host}:{s.port}: {error.strerror}"
            ) from None
        if taken:
            raise StartupFailed(
                f"port {s.port} on {s.host} is already in use, so Envoy cannot listen there; "
                "stop what uses it or choose another with --port"
            )
        xds_port = _pick(s.xds_port, "xDS server", "--xds-port")
        extproc_ports = [_pick(s.extproc_port, "ext_proc server", "--extproc-port")]
        extproc_ports += [free_port() for _ in range(s.extproc_replicas - 1)]
        admin_port = _pick(s.admin_port, "Envoy admin", "--admin-port")
        management_port = _pick(s.management_port, "management API", "--management-port")
        self.management_url = f"http://127.0.0.1:{management_port}"
        mock_port = _pick(s.mock_port, "mock LLM", "--mock-port") if s.start_mock else 0
        in_use = {s.port, xds_port, *extproc_ports, admin_port, management_port, mock_port}
        metrics_ports = _other_free_ports(s.extproc_replicas, in_use)
        self.metrics_urls = [f"http://127.0.0.1:{port}/metrics" for port in metrics_ports]
        store = default_store_path(s.state_dir)
        me = [sys.executable, "-m", "weir"]

        if s.start_mock:
            self.env["WEIR_MOCK_LLM_URL"] = f"http://127.0.0.1:{mock_port}/v1"
            await self._launch(
                "mock-llm",
                [
                    *me,
                    "mock-llm",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(mock_port),
                    "--ttft-ms",
                    str(s.mock_ttft_ms),
                    "--tpot-ms",
                    str(s.mock_tpot_ms),
                ],
                s.verbose,
                _http_ok(f"http://127.0.0.1:{mock_port}/healthz"),
                "GET /healthz",
                f"mock LLM ready on http://127.0.0.1:{mock_port}/v1",
            )
        plane = await self._launch(
            "controlplane",
            [
                *me,
                "controlplane",
                "--config",
                str(s.config_dir),
                "--xds-address",
                f"127.0.0.1:{xds_port}",
                "--listen",
                f"{s.host}:{s.port}",
                *(a for port in extproc_ports for a in ("--extproc-address", f"127.0.0.1:{port}")),
                "--store",
                str(store),
                "--management-address",
                f"127.0.0.1:{management_port}",
                "--max-request-bytes",
                str(s.max_request_bytes),
                "--extproc-message-timeout-ms",
                str(s.extproc_message_timeout_ms),
            ],
            True,
            _grpc_serving(f"127.0.0.1:{xds_port}", "weir.controlplane"),
            "config accepted and xDS serving",
            f"control plane ready, xDS on 127.0.0.1:{xds_port}",
        )
        for i, (port, metrics_port) in enumerate(zip(extproc_ports, metrics_ports, strict=True)):
            name = "extproc" if s.extproc_replicas == 1 else f"extproc-{i}"
            await self._launch(
                name,
                [
                    *me,
                    "extproc",
                    "--listen",
                    f"127.0.0.1:{port}",
                    "--control-plane",
                    f"127.0.0.1:{xds_port}",
                    "--node-id",
                    f"extproc-{i}",
                    "--records",
                    str(store),
                    "--metrics-address",
                    f"127.0.0.1:{metrics_port}",
                    "--limit-store-failure",
                    s.limit_store_failure,
                ],
                True,
                _grpc_serving(f"127.0.0.1:{port}", "weir.extproc"),
                "runtime config and API keys received",
                f"{name} ready on 127.0.0.1:{port}",
            )
        s.state_dir.mkdir(parents=True, exist_ok=True)
        bootstrap = write_bootstrap(
            s.state_dir / "envoy-bootstrap.yaml", "envoy-0", admin_port, xds_port
        )
        await self._launch(
            "envoy",
            envoy_argv(bootstrap, concurrency=2),
            True,
            _http_ok(f"http://{s.host}:{s.port}/healthz"),
            f"GET http://{s.host}:{s.port}/healthz",
            None,
            failure=lambda: plane.nack,
        )

    async def _launch(
        self,
        name: str,
        argv: Sequence[str],
        echo: bool,
        ready: Callable[[], Awaitable[bool]],
        what: str,
        announce: str | None,
        failure: Callable[[], str | None] = lambda: None,
    ) -> Part:
        """Start one part and wait until `ready` holds (or fail, saying why)."""
        part = self._part(name, argv)
        await part.start(echo)
        await _wait_until(part, ready, what, self.settings.ready_timeout_s, failure)
        if announce:
            print(f"weir up: {announce}", flush=True)
        return part

    async def stop(self) -> None:
        # Front to back: Envoy stops taking requests first, the mock LLM goes last.
        for part in reversed(self.parts):
            await part.stop()

    async def wait_any_exit(self) -> Part:
        waits = {
            asyncio.create_task(p.process.wait()): p for p in self.parts if p.process is not None
        }
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return waits[next(iter(done))]


def ready_message(
    settings: UpSettings,
    endpoints: Sequence[tuple[str, str, Sequence[str]]],
    management_url: str = "",
    new_keys: dict[str, str] | None = None,
    metrics_urls: Sequence[str] = (),
) -> str:
    """What `weir up` prints once everything is ready. `new_keys`: project -> a key
    created for this start (shown here once), for projects that had no active key."""
    new_keys = new_keys or {}
    base = f"http://{settings.host}:{settings.port}"
    lines = ["", "Weir is ready.", f"  Health:    {base}/healthz"]
    for project, slug, models in endpoints:
        lines.append(f"  Endpoint:  {base}/{project}/{slug}/v1   models: {', '.join(models)}")
    if management_url:
        lines.append(f"  Management API: {management_url}/v1/keys (needs a management key)")
    for i, url in enumerate(metrics_urls):
        which = "" if len(metrics_urls) == 1 else f" (extproc-{i})"
        lines.append(f"  Metrics:   {url}{which}")
    if settings.redis_url:
        lines.append(
            f"  Rate limits: counted in Redis, shared by {settings.extproc_replicas} ext_proc "
            f"replica(s); with Redis unreachable they fail {settings.limit_store_failure}"
        )
    state = f" --state-dir {settings.state_dir}" if settings.state_dir != Path(".weir") else ""
    if endpoints:
        project, slug, models = endpoints[0]
        url = f"{base}/{project}/{slug}/v1"
        model = models[0] if models else "MODEL"
        if new_keys:
            lines += ["", "API keys created for this first start (shown only this once):"]
            lines += [f"  {p}: {k}" for p, k in new_keys.items()]
            lines.append(
                "  (scopes inference,management,routing; revoke with `weir keys revoke ID`)"
            )
        key = new_keys.get(project)
        lines += [
            "",
            f"Get an API key for project {project}"
            + (" (or use the one above)" if key else "")
            + ":",
            f"  weir keys create --project {project}{state}",
        ]
        shown = key or "wk_..."
        lines += [
            "",
            "Call it with curl:",
            f"  curl {url}/chat/completions -H 'content-type: application/json' \\",
            f"    -H 'authorization: Bearer {shown}' \\",
            f'    -d \'{{"model": "{model}", "messages": [{{"role": "user", '
            '"content": "Hello!"}]}\'',
            "",
            "or with the OpenAI SDK (pip install openai):",
            "  from openai import OpenAI",
            f'  client = OpenAI(base_url="{url}", api_key="{shown}")',
            "  reply = client.chat.completions.create(",
            f'      model="{model}", messages=[{{"role": "user", "content": "Hello!"}}])',
            "  print(reply.choices[0].message.content)",
        ]
    lines += ["", "Press Ctrl-C to stop.", ""]
    return "\n".join(lines)


async def run_up(
    settings: UpSettings,
    endpoints: Callable[[dict[str, str]], list[tuple[str, str, list[str]]]],
    new_keys: dict[str, str] | None = None,
) -> int:
    stack = Stack(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(stack.start())
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({starting, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, StartupFailed):
                await starting
            print("weir up: stopped while starting", flush=True)
            return 130
        try:
            starting.result()
        except StartupFailed as error:
            print(f"weir up: {error}", file=sys.stderr, flush=True)
            return 1
        except Exception as error:  # a bug or an OS error: still say it and clean up
            print(f"weir up: failed to start: {error!r}", file=sys.stderr, flush=True)
            return 1
        print(
            ready_message(
                settings, endpoints(stack.env), stack.management_url, new_keys, stack.metrics_urls
            ),
            flush=True,
        )
        exited = asyncio.create_task(stack.wait_any_exit())
        await asyncio.wait({exited, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if exited.done():
            part = exited.result()
            code = part.process.returncode if part.process else None
            print(
                f"weir up: {part.name} exited unexpectedly with code {code}; {part.why()}",
                file=sys.stderr,
                flush=True,
            )
            return 1
        exited.cancel()
        print("weir up: stopping", flush=True)
        return 0
    finally:
        stopper.cancel()
        await stack.stop()
