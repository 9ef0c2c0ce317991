"""The request-record sink: one row per request in a local SQLite file.

The ext_proc calls `RecordWriter.submit` on its hot path; that only puts the record on a
bounded queue (never blocks, never raises). One background thread owns the only SQLite
connection and writes the queue out in batches. A slow, locked or broken store costs
records (counted and warned about), never requests. A record holds metadata, the policy
decisions and the model's tool calls (name and arguments): never a key, a prompt or any
message content.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

log = logging.getLogger("weir.extproc.records")

TABLE: Final = "requests"

# The record columns in table order (the table also has `id INTEGER PRIMARY KEY`).
COLUMNS: Final = (
    "request_id",
    "trace_id",
    "session_id",
    "turn",
    "project",
    "endpoint",
    "key_id",
    "requested_model",
    "served_model",
    "backend",
    "status",
    "stream",
    "started_at",
    "latency_ms",
    "ttft_ms",
    "properties",
    "error_code",
    "policy_decisions",
    "tool_calls",
    "pii",
    "tier",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "usage_estimated",
    "cost_usd",
    "attempts",
    "routing",
)

# Columns added after the first release: ALTERed into older tables when opened.
ADDED_COLUMNS: Final = {
    "policy_decisions": "TEXT NOT NULL DEFAULT '[]'",
    "tool_calls": "TEXT NOT NULL DEFAULT '[]'",
    "pii": "TEXT NOT NULL DEFAULT '{}'",
    "tier": "TEXT",
    "prompt_tokens": "INTEGER",
    "completion_tokens": "INTEGER",
    "cached_tokens": "INTEGER",
    "usage_estimated": "INTEGER",
    "cost_usd": "REAL",
    "attempts": "INTEGER",
    "routing": "TEXT",
}

DDL: Final = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    turn INTEGER NOT NULL,
    project TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    key_id TEXT NOT NULL,
    requested_model TEXT NOT NULL,
    served_model TEXT NOT NULL,
    backend TEXT NOT NULL,
    status INTEGER NOT NULL,
    stream INTEGER NOT NULL,
    started_at REAL NOT NULL,
    latency_ms REAL NOT NULL,
    ttft_ms REAL,
    properties TEXT NOT NULL,
    error_code TEXT,
    policy_decisions TEXT NOT NULL DEFAULT '[]',
    tool_calls TEXT NOT NULL DEFAULT '[]',
    pii TEXT NOT NULL DEFAULT '{{}}',
    tier TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cached_tokens INTEGER,
    usage_estimated INTEGER,
    cost_usd REAL,
    attempts INTEGER,
    routing TEXT
)""",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_started_at ON {TABLE} (started_at)",
)

INSERT: Final = (
    f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
)

_BUSY_TIMEOUT_MS: Final = 500
_SQLITE_BUSY: Final = 5
_SQLITE_LOCKED: Final = 6


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    trace_id: str
    session_id: str
    turn: int
    project: str
    endpoint: str
    key_id: str  # "" when unauthenticated
    requested_model: str
    served_model: str
    backend: str
    status: int
    stream: bool
    started_at: float  # unix seconds
    latency_ms: float
    ttft_ms: float | None
    properties: dict[str, str]
    error_code: str | None
    # [{"policy", "stage", "result": allow|deny|error, "reasons", "patched"?}]
    policy_decisions: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # The model's tool calls: [{"name", "arguments" (the JSON text as the model wrote it)}]
    tool_calls: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # What the endpoint's PII policy found: {"policy", "action", "entities", "art9"} with
    # types and counts, never values; {} without one.
    pii: dict[str, Any] = dataclasses.field(default_factory=dict)
    tier: str | None = None  # the ServiceTier the request ran under
    # Usage of a routed answer (None for what was refused or failed upstream), the
    # provider's or, when it reported none, Weir's estimate (usage_estimated).
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    usage_estimated: bool | None = None
    cost_usd: float | None = None  # priced with the Backend's table
    attempts: int | None = None  # upstream attempts: more than 1 when fallbacks were tried
    # How model "auto" was resolved: {"requested", "chosen", "mode", "reason", "hints"}
    routing: dict[str, Any] | None = None


assert tuple(f.name for f in dataclasses.fields(RequestRecord)) == COLUMNS


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def record_row(record: RequestRecord) -> tuple[Any, ...]:
    """The INSERT parameters of a record, in COLUMNS order."""
    return (
        record.request_id,
        record.trace_id,
        record.session_id,
        record.turn,
        record.project,
        record.endpoint,
        record.key_id,
        record.requested_model,
        record.served_model,
        record.backend,
        record.status,
        1 if record.stream else 0,
        record.started_at,
        record.latency_ms,
        record.ttft_ms,
        json.dumps(
            record.properties,
            ensure_ascii=False,
            separators=(",", ":"),
            sort_keys=True,
            default=str,
        ),
        record.error_code,
        _json(record.policy_decisions),
        _json(record.tool_calls),
        _json(record.pii),
        record.tier,
        record.prompt_tokens,
        record.completion_tokens,
        record.cached_tokens,
        None if record.usage_estimated is None else int(record.usage_estimated),
        record.cost_usd,
        record.attempts,
        None if record.routing is None else _json(record.routing),
    )


_STOP: Final = object()  # wakes the thread up on close


class RecordWriter:
    """Writes submitted records to `path` from one daemon thread.

    Records are handed over by reference: do not mutate one after submitting it.
    """

    # Class attributes so tests can shorten them.
    _REOPEN_INTERVAL_S: float = 1.0
    _WARN_INTERVAL_S: float = 5.0

    def __init__(
        self,
        path: Path,
        *,
        queue_size: int = 10_000,
        batch_size: int = 256,
        flush_interval_s: float = 0.05,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.path = Path(path)
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._count_lock = threading.Lock()
        # Written only by the thread:
        self._written = 0
        self._lost = 0
        self._batches = 0
        # Written by submitters, under _count_lock:
        self._overflowed = 0
        # Thread state:
        self._conn: sqlite3.Connection | None = None
        self._file_id: tuple[int, int] | None = None
        self._last_open = float("-inf")
        self._last_warning = float("-inf")
        self._failing = False
        self._open_error = "not opened yet"

    # -- statistics -------------------------------------------------------------------

    @property
    def written(self) -> int:
        """Records committed to the database."""
        return self._written

    @property
    def dropped(self) -> int:
        """Records lost: dropped on a full queue or after close, or in a failed write."""
        return self._overflowed + self._lost

    @property
    def lost(self) -> int:
        """The part of `dropped` lost in failed writes (or while the store was unopenable)."""
        return self._lost

    @property
    def batches(self) -> int:
        """Committed write transactions."""
        return self._batches

    # -- the caller's side --------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="weir-records", daemon=True)
        self._thread.start()

    def submit(self, record: RequestRecord) -> None:
        """Queue a record; never blocks, never raises. Dropped (and counted) when full."""
        try:
            if self._closing.is_set():
                raise queue.Full
            self._queue.put_nowait(record)
        except Exception:
            with self._count_lock:
                self._overflowed += 1

    def close(self, timeout: float = 5.0) -> None:
        """Write out what is queued (within `timeout`) and stop the thread."""
        self._closing.set()
        thread = self._thread
        if thread is None:
            self._count_stranded()
            return
        # Wake an idle thread at once; when full, the thread is busy draining and sees
        # _closing after the batch.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_STOP)
        thread.join(timeout)

    # -- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._ensure_connection()
            while True:
                batch = self._next_batch()
                if batch:
                    self._write(batch)
                elif self._closing.is_set():
                    return
        finally:
            self._disconnect()
            self._count_stranded()

    def _count_stranded(self) -> None:
        """Count what is still queued once nothing will write it any more."""
        stranded = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                stranded += 1
        if stranded:
            with self._count_lock:
                self._overflowed += stranded

    def _next_batch(self) -> list[RequestRecord]:
        """Up to batch_size records. The thread sleeps flush_interval_s between drains
        (only close wakes it early) instead of waiting on the queue, so that a busy
        request path does not wake it, and contend for the GIL, once per record."""
        batch: list[RequestRecord] = []
        if self._queue.empty() and not self._closing.is_set():
            self._closing.wait(self._flush_interval_s)
        while len(batch) < self._batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            self._take(item, batch)
        return batch

    def _take(self, item: object, batch: list[RequestRecord]) -> None:
        if isinstance(item, RequestRecord):
            batch.append(item)
        elif item is not _STOP:
            self._lose(1, f"not a RequestRecord: {type(item).__name__}")

    def _write(self, batch: list[RequestRecord]) -> None:
        rows: list[tuple[Any, ...]] = []
        for record in batch:
            try:
                rows.append(record_row(record))
            except Exception as error:  # a malformed record costs itself only
                self._lose(1, f"unserialisable record: {type(error).__name__}")
        if not rows:
            return
        try:
            self._check_file()
            conn = self._ensure_connection()
            if conn is None:
                self._lose(len(rows), self._open_error)
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(INSERT, rows)
                conn.execute("COMMIT")
            except sqlite3.Error as error:
                self._rollback(conn)
                if not _is_busy(error):
                    self._disconnect()  # reopen (rate-limited) before the next batch
                self._lose(len(rows), f"{type(error).__name__}: {error}")
                return
        except Exception as error:  # never let the thread die
            self._lose(len(rows), f"{type(error).__name__}: {error}")
            return
        self._written += len(rows)
        self._batches += 1
        if self._failing:
            self._failing = False
            log.info(
                "request records: writing to %s again (%d record(s) lost in total)",
                self.path,
                self.dropped,
            )

    def _lose(self, count: int, cause: str) -> None:
        self._failing = True
        now = time.monotonic()
        if now - self._last_warning >= self._WARN_INTERVAL_S:
            self._last_warning = now
            log.warning(
                "request records: cannot write to %s (%s); %d record(s) lost so far",
                self.path,
                cause,
                self.dropped + count,
            )
        # Counted once warned about: whoever sees the loss can find the warning.
        self._lost += count

    def _ensure_connection(self) -> sqlite3.Connection | None:
        """The connection, (re)opening it at most once per _REOPEN_INTERVAL_S."""
        if self._conn is not None:
            return self._conn
        now = time.monotonic()
        if now - self._last_open < self._REOPEN_INTERVAL_S:
            return None
        self._last_open = now
        conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            for statement in DDL:
                conn.execute(statement)
            present = {row[1] for row in conn.execute(f"PRAGMA table_info({TABLE})")}
            for column, declaration in ADDED_COLUMNS.items():
                if column not in present:
                    conn.execute(f"ALTER TABLE {TABLE} ADD COLUMN {column} {declaration}")
            stat = os.stat(self.path)
        except Exception as error:  # sqlite3.Error, OSError, or anything odd in the path
            if conn is not None:
                conn.close()
            self._open_error = f"cannot open: {type(error).__name__}: {error}"
            return None
        self._conn = conn
        self._file_id = (stat.st_dev, stat.st_ino)
        return conn

    def _check_file(self) -> None:
        """Reopen when the database file was removed or replaced under the connection."""
        if self._conn is None:
            return
        try:
            stat = os.stat(self.path)
            current: tuple[int, int] | None = (stat.st_dev, stat.st_ino)
        except OSError:
            current = None
        if current != self._file_id:
            log.warning("request records: %s was removed or replaced; reopening it", self.path)
            self._disconnect()
            self._last_open = float("-inf")

    def _disconnect(self) -> None:
        conn, self._conn, self._file_id = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")


def _is_busy(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(code, int) and (code & 0xFF) in (_SQLITE_BUSY, _SQLITE_LOCKED)
