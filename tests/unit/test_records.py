"""The request-record writer: batching, bounded queue, a locked/unopenable/removed store."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from extproc.records import COLUMNS, TABLE, RecordWriter, RequestRecord

LOGGER = "weir.extproc.records"


def make_record(n: int, **changes: object) -> RequestRecord:
    record = RequestRecord(
        request_id=f"req-{n}",
        trace_id=f"trace-{n}",
        session_id="sess-1",
        turn=n,
        project="demo",
        endpoint="chat",
        key_id="k_abc123",
        requested_model="gpt-4o-mini",
        served_model="mock-gpt-mini",
        backend="mock",
        status=200,
        stream=n % 2 == 0,
        started_at=1_795_000_000.0 + n,
        latency_ms=12.5,
        ttft_ms=4.25 if n % 2 == 0 else None,
        properties={},
        error_code=None,
    )
    for name, value in changes.items():
        setattr(record, name, value)
    return record


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def rows(path: Path) -> list[dict[str, object]]:
    conn = sqlite3.connect(path)
    try:
        cursor = conn.execute(f"SELECT id, {', '.join(COLUMNS)} FROM {TABLE} ORDER BY id")
        return [dict(zip(("id", *COLUMNS), row, strict=True)) for row in cursor]
    finally:
        conn.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "requests.db"


@pytest.fixture
def writers() -> Iterator[list[RecordWriter]]:
    """Writers to close at the end of a test, whatever happens."""
    created: list[RecordWriter] = []
    yield created
    for writer in created:
        writer.close(timeout=2.0)


def test_records_are_written_in_batches_and_readable(db: Path, writers: list[RecordWriter]) -> None:
    writer = RecordWriter(db, batch_size=256)
    writers.append(writer)
    for n in range(600):  # queued before the thread starts: three full-ish batches
        writer.submit(make_record(n))
    writer.start()
    wait_for(lambda: writer.written == 600)
    assert writer.batches == 3
    assert writer.dropped == 0

    stored = rows(db)
    assert [r["request_id"] for r in stored] == [f"req-{n}" for n in range(600)]
    assert [r["id"] for r in stored] == list(range(1, 601))
    first, second = stored[0], stored[1]
    assert first["stream"] == 1 and first["ttft_ms"] == 4.25
    assert second["stream"] == 0 and second["ttft_ms"] is None
    assert first["key_id"] == "k_abc123" and first["status"] == 200
    assert first["started_at"] == 1_795_000_000.0

    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = [r[1] for r in conn.execute(f"PRAGMA index_list({TABLE})")]
        assert any("started_at" in name for name in indexes)
    finally:
        conn.close()


def test_properties_and_nullable_fields_round_trip(db: Path, writers: list[RecordWriter]) -> None:
    writer = RecordWriter(db)
    writers.append(writer)
    writer.start()
    properties = {"team": "search", "unicode": "héllo ✓", "quote": 'a"b'}
    writer.submit(make_record(1, properties=properties, error_code="upstream_timeout"))
    writer.submit(make_record(2, key_id="", status=401))
    writer.close()
    assert writer.written == 2

    first, second = rows(db)
    assert isinstance(first["properties"], str)
    assert json.loads(first["properties"]) == properties
    assert first["error_code"] == "upstream_timeout"
    assert second["properties"] == "{}"
    assert second["key_id"] == "" and second["status"] == 401 and second["error_code"] is None


def test_full_queue_drops_and_counts_without_blocking(
    db: Path, writers: list[RecordWriter]
) -> None:
    writer = RecordWriter(db, queue_size=5)
    writers.append(writer)
    started = time.monotonic()
    for n in range(1000):  # nothing drains the queue: the thread is not started
        writer.submit(make_record(n))
    assert time.monotonic() - started < 1.0
    assert writer.dropped == 995
    writer.start()
    writer.close()
    assert writer.written == 5
    assert [r["request_id"] for r in rows(db)] == [f"req-{n}" for n in range(5)]


def test_close_flushes_everything_queued(db: Path) -> None:
    writer = RecordWriter(db, batch_size=64, flush_interval_s=1.0)
    writer.start()
    for n in range(500):
        writer.submit(make_record(n))
    writer.close()
    assert writer.written == 500 and writer.dropped == 0
    assert len(rows(db)) == 500
    writer.submit(make_record(500))  # after close: dropped, not raised
    assert writer.dropped == 1


def test_locked_database_loses_batches_warns_once_and_recovers(
    db: Path, writers: list[RecordWriter], caplog: pytest.LogCaptureFixture
) -> None:
    writer = RecordWriter(db, flush_interval_s=0.01)
    writers.append(writer)
    writer.start()
    writer.submit(make_record(0))
    wait_for(lambda: writer.written == 1)

    caplog.set_level(logging.WARNING, logger=LOGGER)
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        writer.submit(make_record(1))
        assert time.monotonic() - started < 0.1  # submit does not wait for the lock
        wait_for(lambda: writer.dropped == 1)
        writer.submit(make_record(2))
        wait_for(lambda: writer.dropped == 2)
        assert writer.lost == 2
    finally:
        other.execute("COMMIT")
        other.close()

    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert "locked" in message and "1 record(s) lost" in message
    assert "req-1" not in message and "k_abc123" not in message

    writer.submit(make_record(3))
    wait_for(lambda: writer.written == 2)
    assert [r["request_id"] for r in rows(db)] == ["req-0", "req-3"]
    assert writer.dropped == 2


def test_unopenable_path_counts_losses_and_retries(
    tmp_path: Path,
    writers: list[RecordWriter],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(RecordWriter, "_REOPEN_INTERVAL_S", 0.05)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a regular file")
    path = blocker / "requests.db"  # its parent is a regular file
    caplog.set_level(logging.WARNING, logger=LOGGER)

    writer = RecordWriter(path, flush_interval_s=0.01)
    writers.append(writer)
    writer.start()
    for n in range(10):
        writer.submit(make_record(n))  # never raises
    wait_for(lambda: writer.dropped == 10)
    assert writer.written == 0
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cannot open" in warnings[0].getMessage()

    # Once the path becomes usable the writer opens it on a later batch.
    blocker.unlink()
    blocker.mkdir()
    time.sleep(0.06)  # past the reopen interval
    writer.submit(make_record(10))
    wait_for(lambda: writer.written == 1)
    assert [r["request_id"] for r in rows(path)] == ["req-10"]
    assert writer.dropped == 10


def test_removed_database_is_recreated(db: Path, writers: list[RecordWriter]) -> None:
    writer = RecordWriter(db, flush_interval_s=0.01)
    writers.append(writer)
    writer.start()
    writer.submit(make_record(0))
    wait_for(lambda: writer.written == 1)
    db.unlink()
    writer.submit(make_record(1))
    wait_for(lambda: writer.written + writer.dropped == 2)
    assert writer.written == 2
    assert [r["request_id"] for r in rows(db)] == ["req-1"]
