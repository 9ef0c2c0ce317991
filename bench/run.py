"""Weir benchmark: what the gateway adds on top of calling the upstream directly.

One run starts `weir up` once (mock LLM with 0 ms latency, so the gateway's own cost
dominates), then measures two targets side by side, interleaved so that machine noise
hits both alike:

    direct  POST http://127.0.0.1:{mock_port}/v1/chat/completions       (the baseline)
    weir    POST http://127.0.0.1:{port}/demo/chat/v1/chat/completions  (Envoy + ext_proc)

1. latency at concurrency 1, non-streamed (requests alternate direct/weir one by one);
2. throughput at concurrency C (default 16), non-streamed, in alternating 2 s slices;
3. streams at concurrency 1: time to first token and total stream time.

The client is a small HTTP/1.1 client written here on plain keep-alive sockets (blocking
at concurrency 1, an asyncio Protocol on uvloop for the concurrent phase), because the
usual clients cost more than what is measured: on a 2-core VM one request to the mock took
~50 us of client CPU with it, ~230 us with http.client and ~900 us with httpx, and
httpx.AsyncClient topped out near 700 req/s at 16 workers. It also hands over a stream's
bytes the moment they arrive. Usage:

    .venv/bin/python bench/run.py [--quick] [--requests N] [--duration S] [--json FILE]

Exit status: 0 when every response was valid, 1 when any request failed, 2 when the
stack could not be started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import math
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar, cast

import orjson
import policy_cost
import uvloop

from weir.ports import distinct_ports
from weir.supervisor import up_argv

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
PROMPT = "Hello, how are you?"
# Personal data the quickstart's demo/chat tags; echoed back, so Weir restores a stream.
PII_PROMPT = (
    "My name is Jan Kowalski, PESEL 44051401359, e-mail jan.kowalski@example.com, "
    "phone +48 601 234 567. Please confirm my details."
)
READY_LINE = "Weir is ready."
DEFAULT_CONFIG = "examples/quickstart"
CLIENT_DESCRIPTION = (
    "own minimal HTTP/1.1 client on keep-alive TCP sockets with TCP_NODELAY "
    "(blocking socket at c=1, asyncio Protocol on uvloop at c>1)"
)
REQUEST_TIMEOUT_S = 10.0
SLICE_S = 2.0  # throughput phases alternate targets in slices of at most this long
TARGET_NAMES = ("direct", "weir")
_T = TypeVar("_T")
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class BenchError(Exception):
    """The benchmark cannot go on (the stack did not start, a target does not answer)."""


class ProtocolError(Exception):
    """The server sent something that is not a valid HTTP/1.1 response."""


# --------------------------------------------------------------------------------------
# A minimal HTTP/1.1 client
# --------------------------------------------------------------------------------------


class ResponseReader:
    """Parses one HTTP/1.1 response from bytes fed in as they arrive.

    Handles Content-Length and chunked bodies. `feed` returns the body bytes decoded so
    far (so a stream's events can be timed as they come); `done` is set once the
    response is complete.
    """

    __slots__ = (
        "_buf",
        "_chunk_left",
        "_crlf",
        "_length",
        "_trailer",
        "done",
        "keep_alive",
        "status",
    )

    def __init__(self) -> None:
        self._buf = bytearray()
        self.status = 0
        self.keep_alive = True
        self.done = False
        self._length: int | None = None  # Content-Length bytes still to come
        self._chunk_left = 0
        self._crlf = False  # a CRLF ends the current chunk
        self._trailer = False  # past the last chunk

    def feed(self, data: bytes) -> bytes:
        buf = self._buf
        buf += data
        out = bytearray()
        while not self.done:
            if self.status == 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                self._head(bytes(buf[:end]))
                del buf[: end + 4]
            elif self._length is not None:
                take = min(self._length, len(buf))
                out += buf[:take]
                del buf[:take]
                self._length -= take
                if self._length == 0:
                    self.done = True
                break
            elif self._chunk_left:
                take = min(self._chunk_left, len(buf))
                if take == 0:
                    break
                out += buf[:take]
                del buf[:take]
                self._chunk_left -= take
                self._crlf = self._chunk_left == 0
            elif self._crlf:
                if len(buf) < 2:
                    break
                if buf[:2] != b"\r\n":
                    raise ProtocolError("a chunk is not followed by CRLF")
                del buf[:2]
                self._crlf = False
            else:
                end = buf.find(b"\r\n")
                if end < 0:
                    break
                line = bytes(buf[:end])
                del buf[: end + 2]
                if self._trailer:
                    self.done = not line  # trailer fields are ignored
                    continue
                try:
                    size = int(line.split(b";", 1)[0], 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size line {line[:40]!r}") from None
                if size == 0:
                    self._trailer = True
                else:
                    self._chunk_left = size
        if self.done and buf:
            raise ProtocolError(f"{len(buf)} unexpected bytes after the response")
        return bytes(out)

    def _head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ProtocolError(f"bad status line {lines[0][:80]!r}")
        self.status = int(parts[1])
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                self._length = int(value)
            elif name == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == "connection":
                self.keep_alive = "close" not in value.lower()
        if chunked:
            self._length = None
        elif self._length is None:
            raise ProtocolError("a response with neither Content-Length nor chunked encoding")
        if self._length == 0:
            self.done = True


def build_request(
    port: int, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> bytes:
    """The bytes of a POST with a JSON body (built once, sent many times)."""
    payload = orjson.dumps(body)
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {HOST}:{port}",
        "Content-Type: application/json",
        "Accept: */*",
        f"Content-Length: {len(payload)}",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def build_get(port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode("latin-1")


class BlockingConnection:
    """One keep-alive connection; reconnects after an error or `Connection: close`."""

    def __init__(self, port: int, timeout: float = REQUEST_TIMEOUT_S) -> None:
        self.port = port
        self.timeout = timeout
        self._sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((HOST, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def exchange(
        self, request: bytes, on_body: Callable[[bytes], None] | None = None
    ) -> tuple[int, bytes]:
        """Send `request`, read the whole response: (status, body).

        With `on_body`, each piece of body is handed to it as it arrives (and the returned
        body is empty).
        """
        sock = self._sock or self._connect()
        reader = ResponseReader()
        body = bytearray()
        try:
            sock.sendall(request)
            while not reader.done:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("the server closed the connection")
                piece = reader.feed(data)
                if piece:
                    if on_body is None:
                        body += piece
                    else:
                        on_body(piece)
        except BaseException:
            self.close()
            raise
        if not reader.keep_alive:
            self.close()
        return reader.status, bytes(body)


class AsyncConnection(asyncio.Protocol):
    """One keep-alive connection for asyncio; one request at a time."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._reader: ResponseReader | None = None
        self._body = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    @classmethod
    async def open(cls, port: int) -> AsyncConnection:
        loop = asyncio.get_running_loop()
        _, protocol = await asyncio.wait_for(
            loop.create_connection(cls, HOST, port), REQUEST_TIMEOUT_S
        )
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError(f"the connection was lost ({exc or 'closed by the server'})"))

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        if reader is None:
            self._fail(ProtocolError("bytes arrived while no request was waiting"))
            self.close()
            return
        try:
            self._body += reader.feed(data)
        except (ProtocolError, ValueError) as error:
            self._fail(error)
            self.close()
            return
        if reader.done:
            waiter = self._waiter
            self._reader = None
            if not reader.keep_alive:
                self.close()
            if waiter is not None and not waiter.done():
                waiter.set_result((reader.status, bytes(self._body)))

    def _fail(self, error: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        if self.closed or self._transport is None:
            raise ConnectionError("the connection is closed")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        self._waiter = waiter
        self._reader = ResponseReader()
        self._body = bytearray()
        timer = loop.call_later(REQUEST_TIMEOUT_S, self._time_out, waiter)
        self._transport.write(request)
        try:
            return await waiter
        finally:
            timer.cancel()

    def _time_out(self, waiter: asyncio.Future[tuple[int, bytes]]) -> None:
        if not waiter.done():
            waiter.set_exception(TimeoutError(f"no full response within {REQUEST_TIMEOUT_S}s"))
            self.close()


class SseWatcher:
    """Follows a chat completion stream: when the first content arrived, and [DONE]."""

    def __init__(self) -> None:
        self._buf = b""
        self.first_token_ns: int | None = None
        self.done = False

    def feed(self, piece: bytes) -> None:
        self._buf += piece
        if b"\r" in self._buf:
            self._buf = self._buf.replace(b"\r\n", b"\n")
        while (end := self._buf.find(b"\n\n")) >= 0:
            event, self._buf = self._buf[:end], self._buf[end + 2 :]
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    self.done = True
                elif self.first_token_ns is None and _has_content(data):
                    self.first_token_ns = time.perf_counter_ns()


def _has_content(data: bytes) -> bool:
    try:
        chunk = orjson.loads(data)
        return bool(chunk["choices"][0]["delta"].get("content"))
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        return False


# --------------------------------------------------------------------------------------
# Targets, results, statistics
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    path: str
    model: str
    key: str = ""  # Weir's API key; the mock takes none

    def chat(
        self, *, stream: bool = False, headers: dict[str, str] | None = None, prompt: str = PROMPT
    ) -> bytes:
        if self.key:
            headers = {**(headers or {}), "Authorization": f"Bearer {self.key}"}
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
        }
        if stream:
            body["stream"] = True
        return build_request(self.port, self.path, body, headers)


@dataclass
class Tally:
    """One target's samples (ns) and errors in one phase."""

    samples_ns: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def error(self, what: str) -> None:
        self.errors[what[:160]] += 1


def valid_completion(status: int, body: bytes) -> str | None:
    """None if this is a successful non-streamed chat completion, else what is wrong."""
    if status != 200:
        return f"HTTP {status}: {body[:120]!r}"
    if b'"chat.completion"' not in body or b'"choices"' not in body:
        return f"HTTP 200 without a chat completion: {body[:120]!r}"
    return None


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return math.nan
    rank = (len(sorted_values) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def summary_ms(samples_ns: Sequence[int]) -> dict[str, float]:
    values = sorted(s / 1e6 for s in samples_ns)
    return {
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "mean": sum(values) / len(values) if values else math.nan,
        "min": values[0] if values else math.nan,
        "max": values[-1] if values else math.nan,
        "count": float(len(values)),
    }


def alternating(count: int) -> Iterator[tuple[int, int]]:
    """(0, 1), (1, 0), (0, 1), ...: the order of the two targets flips every round."""
    for i in range(count):
        yield (0, 1) if i % 2 == 0 else (1, 0)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No garbage collection pauses inside a measured phase (collected before)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# CPU accounting (Linux /proc), to show who is busy during the throughput phase
# --------------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user+system CPU seconds) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def child_pids(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[0] == parent:
                found.append(int(entry.name))
    return found


def _part_name(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"pid {pid}"
    words = [a.decode(errors="replace") for a in argv if a]
    if words and Path(words[0]).name == "envoy":
        return "envoy"
    for name in ("mock-llm", "controlplane", "extproc"):
        if name in words:
            return name
    return Path(words[0]).name if words else f"pid {pid}"


def _machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return 0.0, 0.0
    ticks = [int(x) for x in first[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return (sum(ticks) - idle) / CLK_TCK, sum(ticks) / CLK_TCK


class CpuMeter:
    """CPU seconds used by the benchmark client, each part of the stack, and the machine."""

    def __init__(self, parts: dict[str, int]) -> None:
        self.parts = parts  # name -> pid
        self.used: dict[str, dict[str, float]] = {n: {} for n in TARGET_NAMES}
        self.wall: dict[str, float] = dict.fromkeys(TARGET_NAMES, 0.0)

    def snapshot(self) -> dict[str, float]:
        snap = {"client": time.process_time()}
        for name, pid in self.parts.items():
            stat = _proc_stat(pid)
            snap[name] = stat[1] if stat else 0.0
        busy, _ = _machine_busy_s()
        snap["machine"] = busy
        return snap

    def add(
        self, target: str, before: dict[str, float], after: dict[str, float], wall: float
    ) -> None:
        for key, value in after.items():
            used = self.used[target]
            used[key] = used.get(key, 0.0) + value - before.get(key, value)
        self.wall[target] += wall

    def percent(self, target: str, key: str) -> float:
        """CPU use in % of one core; "other" is everything not in this benchmark."""
        wall = self.wall[target]
        used = self.used[target]
        if key == "other":
            mine = used.get("client", 0.0) + sum(used.get(name, 0.0) for name in self.parts)
            seconds = max(0.0, used.get("machine", 0.0) - mine)
        else:
            seconds = used.get(key, 0.0)
        return 100 * seconds / wall if wall else math.nan


# --------------------------------------------------------------------------------------
# The stack
# --------------------------------------------------------------------------------------


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    state_dir: Path
    log_path: Path
    port: int
    mock_port: int
    key: str
    parts: dict[str, int] = field(default_factory=dict)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def create_key(state_dir: Path) -> str:
    """A demo-project key, made with `weir keys create` as a user would."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "weir",
            "keys",
            "create",
            "--project",
            "demo",
            "--json",
            "--name",
            "bench",
            "--state-dir",
            str(state_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
    )
    if done.returncode != 0:
        raise BenchError(f"`weir keys create` failed: {done.stderr.strip()}")
    key: str = orjson.loads(done.stdout)["key"]
    return key


def launch_stack(config: Path, state_dir: Path) -> Stack:
    """Start `weir up` on free ports (all chosen here, so the mock's port is known)."""
    ports = distinct_ports()
    key = create_key(state_dir / "state")
    argv = up_argv(config, state_dir / "state", ports, "--mock-ttft-ms", "0", "--mock-tpot-ms", "0")
    log_path = state_dir / "weir-up.log"
    progress(f"starting: {shlex.join(argv)}")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C reaches only us; we stop it in order
        )
    return Stack(process, state_dir, log_path, ports["port"], ports["mock"], key)


def wait_ready(stack: Stack, timeout_s: float = 90.0) -> None:
    """Wait for `weir up` to say it is ready, then check both targets' /healthz."""
    process = stack.process
    deadline = time.monotonic() + timeout_s
    while READY_LINE not in stack.log_text():
        if process.poll() is not None:
            raise BenchError(
                f"`weir up` exited with code {process.returncode} before it was ready; "
                f"its output:\n{stack.log_text()}"
            )
        if time.monotonic() > deadline:
            raise BenchError(
                f"`weir up` did not print {READY_LINE!r} within {timeout_s:.0f}s; "
                f"its output:\n{stack.log_text()}"
            )
        time.sleep(0.05)
    for port, what in ((stack.port, "Weir"), (stack.mock_port, "the mock LLM")):
        conn = BlockingConnection(port)
        try:
            status, _ = conn.exchange(build_get(port, "/healthz"))
        except OSError as error:
            raise BenchError(f"GET /healthz on {what} (port {port}) failed: {error}") from error
        finally:
            conn.close()
        if status != 200:
            raise BenchError(f"GET /healthz on {what} (port {port}) answered {status}")
    stack.parts = {_part_name(pid): pid for pid in child_pids(process.pid)}


def stop_stack(stack: Stack) -> list[str]:
    """SIGTERM `weir up`, wait for it and its parts to exit; what had to be killed."""
    parts = child_pids(stack.process.pid) or list(stack.parts.values())
    killed: list[str] = []
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGTERM)
        try:
            stack.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            stack.process.kill()
            stack.process.wait()
            killed.append(f"weir up (pid {stack.process.pid})")
    deadline = time.monotonic() + 10
    for pid in parts:
        while _proc_stat(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if _proc_stat(pid) is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.append(f"pid {pid}")
    return killed


# --------------------------------------------------------------------------------------
# The three phases
# --------------------------------------------------------------------------------------


def latency_c1(targets: Sequence[Target], requests: int, warmup: int) -> list[Tally]:
    """Non-streamed requests one at a time, alternating targets request by request."""
    payloads = [t.chat() for t in targets]
    conns = [BlockingConnection(t.port) for t in targets]
    tallies = [Tally() for _ in targets]
    clock = time.perf_counter_ns
    try:
        with gc_paused():
            for i, order in enumerate(alternating(warmup + requests)):
                for k in order:
                    start = clock()
                    try:
                        status, body = conns[k].exchange(payloads[k])
                    except (OSError, ProtocolError, ValueError) as error:
                        tallies[k].error(f"{type(error).__name__}: {error}")
                        continue
                    elapsed = clock() - start
                    problem = valid_completion(status, body)
                    if problem is not None:
                        tallies[k].error(problem)
                    elif i >= warmup:
                        tallies[k].samples_ns.append(elapsed)
    finally:
        for conn in conns:
            conn.close()
    return tallies


def streams_c1(
    targets: Sequence[Target],
    streams: int,
    warmup: int,
    tpot_ms: float,
    prompt: str = PROMPT,
    extra_headers: dict[str, str] | None = None,
) -> tuple[list[Tally], list[Tally]]:
    """Streamed requests one at a time: (time to first token, total stream time)."""
    headers = {"X-Mock-TTFT-Ms": "0", "X-Mock-TPOT-Ms": f"{tpot_ms:g}", **(extra_headers or {})}
    payloads = [t.chat(stream=True, headers=headers, prompt=prompt) for t in targets]
    conns = [BlockingConnection(t.port) for t in targets]
    ttft = [Tally() for _ in targets]
    total = [Tally() for _ in targets]
    clock = time.perf_counter_ns
    try:
        with gc_paused():
            for i, order in enumerate(alternating(warmup + streams)):
                for k in order:
                    watcher = SseWatcher()
                    start = clock()
                    try:
                        status, _ = conns[k].exchange(payloads[k], watcher.feed)
                    except (OSError, ProtocolError, ValueError) as error:
                        ttft[k].error(f"{type(error).__name__}: {error}")
                        continue
                    end = clock()
                    if status != 200:
                        ttft[k].error(f"stream: HTTP {status}")
                    elif not watcher.done:
                        ttft[k].error("stream: no 'data: [DONE]'")
                    elif watcher.first_token_ns is None:
                        ttft[k].error("stream: no content delta")
                    elif i >= warmup:
                        ttft[k].samples_ns.append(watcher.first_token_ns - start)
                        total[k].samples_ns.append(end - start)
    finally:
        for conn in conns:
            conn.close()
    return ttft, total


@dataclass
class ThroughputResult:
    tallies: list[Tally]
    completed: list[int]
    seconds: list[float]
    cpu: CpuMeter

    def rps(self, k: int) -> float:
        return self.completed[k] / self.seconds[k] if self.seconds[k] else math.nan


async def _run_slice(
    conns: list[AsyncConnection | None],
    target: Target,
    payload: bytes,
    seconds: float,
    tally: Tally,
    record: bool = True,
) -> tuple[int, float]:
    """`len(conns)` closed-loop workers for `seconds`: (responses, wall seconds).

    Errors always go to `tally`; latencies only when `record` (not in the warm-up).
    """
    clock = time.perf_counter_ns
    deadline = clock() + int(seconds * 1e9)
    completed = 0
    samples = tally.samples_ns if record else []

    async def worker(slot: int) -> None:
        nonlocal completed
        while clock() < deadline:
            conn = conns[slot]
            try:
                if conn is None or conn.closed:
                    conn = conns[slot] = await AsyncConnection.open(target.port)
                start = clock()
                status, body = await conn.exchange(payload)
                elapsed = clock() - start
            except (OSError, ProtocolError, ValueError) as error:
                tally.error(f"{type(error).__name__}: {error}")
                if conn is not None:
                    conn.close()
                conns[slot] = None
                await asyncio.sleep(0.01)
                continue
            problem = valid_completion(status, body)
            if problem is not None:
                tally.error(problem)
                continue
            completed += 1
            samples.append(elapsed)

    began = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(len(conns))))
    return completed, time.perf_counter() - began


async def _throughput(
    targets: Sequence[Target], concurrency: int, duration: float, parts: dict[str, int]
) -> ThroughputResult:
    payloads = [t.chat() for t in targets]
    pools: list[list[AsyncConnection | None]] = [[None] * concurrency for _ in targets]
    tallies = [Tally() for _ in targets]
    completed = [0, 0]
    seconds = [0.0, 0.0]
    cpu = CpuMeter(parts)
    slices = max(1, math.ceil(duration / SLICE_S - 1e-9))
    slice_s = duration / slices
    try:
        for k in (0, 1):  # warm-up: open the connections, fill the caches
            await _run_slice(
                pools[k], targets[k], payloads[k], min(0.5, slice_s), tallies[k], False
            )
        with gc_paused():
            for order in alternating(slices):
                for k in order:
                    before = cpu.snapshot()
                    done, wall = await _run_slice(
                        pools[k], targets[k], payloads[k], slice_s, tallies[k]
                    )
                    cpu.add(targets[k].name, before, cpu.snapshot(), wall)
                    completed[k] += done
                    seconds[k] += wall
    finally:
        for pool in pools:
            for conn in pool:
                if conn is not None:
                    conn.close()
        await asyncio.sleep(0)  # let the transports close
    return ThroughputResult(tallies, completed, seconds, cpu)


async def _stoppable(work: Coroutine[Any, Any, _T]) -> _T:
    """Run `work`; a SIGTERM cancels it and raises KeyboardInterrupt, as Ctrl-C does.

    (A Python signal handler that raises would raise inside whatever callback the event
    loop happens to run, where it would be taken for a failed request.)
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    terminated = False

    def on_sigterm() -> None:
        nonlocal terminated
        terminated = True
        task.cancel()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        return await work
    except asyncio.CancelledError:
        if terminated:
            raise KeyboardInterrupt("SIGTERM") from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _raise_interrupt)


def throughput(
    targets: Sequence[Target], concurrency: int, duration: float, parts: dict[str, int]
) -> ThroughputResult:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_stoppable(_throughput(targets, concurrency, duration, parts)))


# --------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    label: str
    unit: str
    direct: float
    weir: float
    kind: str = "latency"  # latency: added = weir - direct; rate: change in %; count

    @property
    def added(self) -> float:
        return self.weir - self.direct

    def cells(self) -> tuple[str, str, str]:
        if self.kind == "count":
            return f"{self.direct:.0f}", f"{self.weir:.0f}", f"{self.added:+.0f}"
        if self.kind == "rate":
            change = 100 * self.added / self.direct if self.direct else math.nan
            return f"{self.direct:.0f}", f"{self.weir:.0f}", f"{self.added:+.0f} ({change:+.0f}%)"
        return f"{self.direct:.2f}", f"{self.weir:.2f}", f"{self.added:+.2f}"


@dataclass
class Section:
    title: str
    rows: list[Row]


def render(sections: Sequence[Section], header: tuple[str, str, str, str]) -> str:
    table = [(r.label, *r.cells()) for s in sections for r in s.rows]
    widths = [max(len(header[i]), *(len(t[i]) for t in table)) for i in range(4)]
    widths[3] = max(widths[3], 8)

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = "  ".join(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return f"{first}  {rest}".rstrip()

    out = [line(header)]
    for section in sections:
        out.append(f"-- {section.title}")
        out.extend(line((r.label, *r.cells())) for r in section.rows)
    return "\n".join(out)


def envoy_version() -> str:
    beside = Path(sys.executable).parent / "envoy"
    binary = str(beside) if beside.exists() else shutil.which("envoy")
    if binary is None:
        return "?"
    try:
        text = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    for word in text.replace("/", " ").split():
        if word.count(".") == 2 and word.replace(".", "").isdigit():
            return word
    return "?"


def machine_facts() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "cpu_model": model,
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "uvloop": importlib.metadata.version("uvloop"),
        "envoy": envoy_version(),
    }


def command_line() -> str:
    return shlex.join([sys.executable, *sys.argv])


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    requests: int
    warmup: int
    duration: float
    concurrency: int
    streams: int
    stream_warmup: int
    tpot_ms: float
    config: Path
    json_path: Path | None
    quick: bool


def parse_args(argv: Sequence[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(
        description="Benchmark Weir against calling its mock LLM directly (starts `weir up`).",
    )
    parser.add_argument("--requests", type=int, help="c=1 requests per target (2000; quick 300)")
    parser.add_argument("--warmup", type=int, help="discarded c=1 requests per target (200; 50)")
    parser.add_argument("--duration", type=float, help="throughput seconds per target (10; 3)")
    parser.add_argument("--concurrency", type=int, default=16, help="throughput workers (16)")
    parser.add_argument("--streams", type=int, help="streams per target (300; quick 60)")
    parser.add_argument("--tpot-ms", type=float, default=1.0, help="mock time per token (1)")
    parser.add_argument("--config", help=f"weir config directory (default: {DEFAULT_CONFIG})")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args(argv)

    def pick(value: Any, normal: Any, quick: Any) -> Any:
        return value if value is not None else (quick if args.quick else normal)

    settings = Settings(
        requests=pick(args.requests, 2000, 300),
        warmup=pick(args.warmup, 200, 50),
        duration=pick(args.duration, 10.0, 3.0),
        concurrency=args.concurrency,
        streams=pick(args.streams, 300, 60),
        stream_warmup=20 if not args.quick else 10,
        tpot_ms=args.tpot_ms,
        config=Path(args.config).resolve() if args.config else REPO_ROOT / DEFAULT_CONFIG,
        json_path=Path(args.json) if args.json else None,
        quick=args.quick,
    )
    for name in ("requests", "concurrency", "streams"):
        if getattr(settings, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if settings.warmup < 0 or settings.duration <= 0 or settings.tpot_ms < 0:
        parser.error("--warmup must be >= 0, --duration > 0 and --tpot-ms >= 0")
    return settings


def benchmark(settings: Settings, stack: Stack) -> tuple[list[Section], dict[str, Any]]:
    targets = (
        Target("direct", stack.mock_port, "/v1/chat/completions", "mock-gpt-mini"),
        Target("weir", stack.port, "/demo/chat/v1/chat/completions", "gpt-4o-mini", stack.key),
    )
    s = settings
    progress(f"latency, c=1: {s.warmup} + {s.requests} requests per target, alternating")
    c1 = latency_c1(targets, s.requests, s.warmup)
    progress(f"throughput, c={s.concurrency}: {s.duration:g} s per target, alternating slices")
    tp = throughput(targets, s.concurrency, s.duration, stack.parts)
    progress(f"streams, c=1: {s.stream_warmup} + {s.streams} per target, TPOT {s.tpot_ms:g} ms")
    ttft, total = streams_c1(targets, s.streams, s.stream_warmup, s.tpot_ms)
    progress(f"streams with personal data, echoed (Weir restores them): {s.streams} per target")
    pii_ttft, pii_total = streams_c1(
        targets,
        s.streams,
        s.stream_warmup,
        s.tpot_ms,
        prompt=PII_PROMPT,
        extra_headers={"X-Mock-Behavior": "echo"},
    )

    c1s = [summary_ms(t.samples_ns) for t in c1]
    tps = [summary_ms(t.samples_ns) for t in tp.tallies]
    ttfts = [summary_ms(t.samples_ns) for t in ttft]
    totals = [summary_ms(t.samples_ns) for t in total]
    pii_ttfts = [summary_ms(t.samples_ns) for t in pii_ttft]
    pii_totals = [summary_ms(t.samples_ns) for t in pii_total]
    c = s.concurrency
    errors = [
        sum(sum(t.errors.values()) for t in (c1[k], tp.tallies[k], ttft[k], pii_ttft[k]))
        for k in (0, 1)
    ]

    def row(key: str, label: str, stats: list[dict[str, float]], stat: str) -> Row:
        return Row(key, label, "ms", stats[0][stat], stats[1][stat])

    sections = [
        Section(
            f"non-streamed, concurrency 1, {s.requests} requests per target",
            [
                row("c1_p50_ms", "p50 latency, c=1 (ms)", c1s, "p50"),
                row("c1_p90_ms", "p90 latency, c=1 (ms)", c1s, "p90"),
                row("c1_p99_ms", "p99 latency, c=1 (ms)", c1s, "p99"),
                row("c1_mean_ms", "mean latency, c=1 (ms)", c1s, "mean"),
            ],
        ),
        Section(
            f"non-streamed, concurrency {c}, {s.duration:g} s per target",
            [
                Row(
                    f"c{c}_rps",
                    f"throughput, c={c} (req/s)",
                    "req/s",
                    tp.rps(0),
                    tp.rps(1),
                    "rate",
                ),
                row(f"c{c}_p50_ms", f"p50 latency, c={c} (ms)", tps, "p50"),
                row(f"c{c}_p99_ms", f"p99 latency, c={c} (ms)", tps, "p99"),
                Row(
                    f"c{c}_errors",
                    f"errors, c={c}",
                    "count",
                    sum(tp.tallies[0].errors.values()),
                    sum(tp.tallies[1].errors.values()),
                    "count",
                ),
            ],
        ),
        Section(
            f"streamed, concurrency 1, {s.streams} streams per target, "
            f"mock TTFT 0 ms, TPOT {s.tpot_ms:g} ms",
            [
                row("stream_ttft_p50_ms", "p50 time to first token (ms)", ttfts, "p50"),
                row("stream_ttft_p99_ms", "p99 time to first token (ms)", ttfts, "p99"),
                row("stream_total_p50_ms", "p50 total stream time (ms)", totals, "p50"),
                row("stream_total_p99_ms", "p99 total stream time (ms)", totals, "p99"),
            ],
        ),
        Section(
            f"streamed with personal data in the prompt, echoed back (Weir tags it upstream "
            f"and restores the stream), {s.streams} streams per target",
            [
                row("pii_ttft_p50_ms", "p50 time to first token (ms)", pii_ttfts, "p50"),
                row("pii_ttft_p99_ms", "p99 time to first token (ms)", pii_ttfts, "p99"),
                row("pii_total_p50_ms", "p50 total stream time (ms)", pii_totals, "p50"),
            ],
        ),
        Section(
            "all phases",
            [Row("errors", "errors, all phases", "count", errors[0], errors[1], "count")],
        ),
    ]
    details: dict[str, Any] = {
        "latency_c1_ms": dict(zip(TARGET_NAMES, c1s, strict=True)),
        f"latency_c{c}_ms": dict(zip(TARGET_NAMES, tps, strict=True)),
        f"throughput_c{c}": {
            name: {"responses": tp.completed[k], "seconds": tp.seconds[k], "rps": tp.rps(k)}
            for k, name in enumerate(TARGET_NAMES)
        },
        "stream_ttft_ms": dict(zip(TARGET_NAMES, ttfts, strict=True)),
        "stream_total_ms": dict(zip(TARGET_NAMES, totals, strict=True)),
        "pii_stream_ttft_ms": dict(zip(TARGET_NAMES, pii_ttfts, strict=True)),
        "cpu_percent_of_one_core": {
            name: {
                key: tp.cpu.percent(name, key)
                for key in ["client", *stack.parts, "other", "machine"]
            }
            for name in TARGET_NAMES
        },
        "errors": {
            name: dict(
                sum(
                    (t.errors for t in (c1[k], tp.tallies[k], ttft[k], pii_ttft[k])),
                    Counter[str](),
                )
            )
            for k, name in enumerate(TARGET_NAMES)
        },
    }
    return sections, details


def report(
    settings: Settings, sections: Sequence[Section], details: dict[str, Any], facts: dict[str, Any]
) -> str:
    cpus = facts["cpus_usable"] or facts["cpu_count"]
    title = (
        f"Weir benchmark  ({cpus} cores, Envoy {facts['envoy']}, loopback, "
        "mock LLM with 0 ms latency)"
    )
    lines = [
        title,
        f"machine: {facts['cpu_count']} CPUs ({cpus} usable), {facts['cpu_model'] or '?'}, "
        f"{facts['platform']}",
        f"python:  {facts['python']}, uvloop {facts['uvloop']}",
        f"command: {command_line()}",
        f"client:  {CLIENT_DESCRIPTION}; targets interleaved request by request at c=1, "
        f"in alternating {SLICE_S:g} s slices at c={settings.concurrency}",
        "",
        render(sections, ("metric", "direct", "weir", "added")),
        "",
    ]
    cpu: dict[str, dict[str, float]] = details["cpu_percent_of_one_core"]
    keys = list(cpu["direct"])
    width = max(len(k) for k in keys) + 2
    lines.append(
        f"CPU during the c={settings.concurrency} phase, % of one core "
        "(the client shares the machine with the stack):"
    )
    lines.append(f"  {'':<{width}}{'direct':>8}{'weir':>8}")
    for key in keys:
        label = {"machine": "whole machine", "other": "other processes"}.get(key, key)
        lines.append(f"  {label:<{width}}{cpu['direct'][key]:>8.0f}{cpu['weir'][key]:>8.0f}")
    for name in TARGET_NAMES:
        client, other = cpu[name]["client"], cpu[name]["other"]
        if client > 80:
            lines.append(
                f"  note: the client used {client:.0f}% of a core against {name}; "
                "it may limit that throughput"
            )
        if other > 20:
            lines.append(
                f"  note: other processes used {other:.0f}% of a core while {name} was measured; "
                "the figures are noisier than on an idle machine"
            )
    errors: dict[str, dict[str, int]] = details["errors"]
    if any(errors.values()):
        lines.append("")
        lines.append("ERRORS:")
        for name, kinds in errors.items():
            for what, count in sorted(kinds.items(), key=lambda item: -item[1]):
                lines.append(f"  {name}: {count} x {what}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    facts = machine_facts()
    work_dir = Path(tempfile.mkdtemp(prefix="weir-bench-"))
    stack: Stack | None = None
    keep_dir = False
    try:
        stack = launch_stack(settings.config, work_dir)
        try:
            wait_ready(stack)
        except BenchError as error:
            keep_dir = True
            print(f"bench: weir up failed to start: {error}", file=sys.stderr)
            return 2
        progress(f"weir up is ready: Envoy on :{stack.port}, mock LLM on :{stack.mock_port}")
        sections, details = benchmark(settings, stack)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        # Finish cleaning up even if asked again to stop.
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in _STOP_SIGNALS}
        try:
            if stack is not None:
                progress("stopping weir up")
                killed = stop_stack(stack)
                if killed:
                    print(f"bench: had to kill {', '.join(killed)}", file=sys.stderr)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if keep_dir:
                print(f"bench: logs kept in {work_dir}", file=sys.stderr)
            else:
                shutil.rmtree(work_dir, ignore_errors=True)

    print(report(settings, sections, details, facts))
    progress("policy evaluation, in-process")
    policy_runs = 1000 if settings.quick else 5000
    policy_cases = policy_cost.measure(Path(settings.config), policy_runs)
    print()
    print(policy_cost.render(policy_cases, policy_runs))
    details["policy_evaluation_us"] = {
        case.label: {"p50": case.p50_us, "p99": case.p99_us} for case in policy_cases
    }
    total_errors = sum(sum(kinds.values()) for kinds in details["errors"].values())
    if settings.json_path is not None:
        document = {
            "command": command_line(),
            "machine": facts,
            "client": CLIENT_DESCRIPTION,
            "settings": {
                "requests": settings.requests,
                "warmup": settings.warmup,
                "duration_s": settings.duration,
                "concurrency": settings.concurrency,
                "streams": settings.streams,
                "mock_ttft_ms": 0.0,
                "stream_tpot_ms": settings.tpot_ms,
            },
            "metrics": {
                r.key: {
                    "label": r.label,
                    "unit": r.unit,
                    "direct": r.direct,
                    "weir": r.weir,
                    "added": r.added,
                }
                for section in sections
                for r in section.rows
            },
            "details": details,
            "ok": total_errors == 0,
        }
        settings.json_path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        print(f"\nJSON written to {settings.json_path}")
    if total_errors:
        print(f"\nFAILED: {total_errors} request(s) failed (see ERRORS above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
