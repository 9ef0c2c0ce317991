"""`weir requests tail`: the last N records, following new ones, --json, a missing database."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from extproc.records import RecordWriter, RequestRecord
from weir.requests_tail import read_records, tail


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
        stream=False,
        started_at=1_795_000_000.5 + n,  # 2026-11-18
        latency_ms=12.34,
        ttft_ms=None,
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


def write(path: Path, records: list[RequestRecord]) -> None:
    writer = RecordWriter(path)
    writer.start()
    for record in records:
        writer.submit(record)
    writer.close()
    assert writer.written == len(records)


class Follower:
    """`tail(follow=True)` on a thread, its output collected."""

    def __init__(self, path: Path, *, lines: int = 10, as_json: bool = False) -> None:
        self.out = io.StringIO()
        self.err = io.StringIO()
        self.stop = threading.Event()
        self.result: list[int] = []

        def run() -> None:
            self.result.append(
                tail(
                    path,
                    lines=lines,
                    as_json=as_json,
                    poll_s=0.02,
                    out=self.out,
                    err=self.err,
                    stop=self.stop,
                )
            )

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def lines(self) -> list[str]:
        return self.out.getvalue().splitlines()

    def finish(self) -> int:
        self.stop.set()
        self.thread.join(5.0)
        assert not self.thread.is_alive()
        return self.result[0]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "requests.db"


@pytest.fixture
def followers() -> Iterator[list[Follower]]:
    created: list[Follower] = []
    yield created
    for follower in created:
        follower.stop.set()
        follower.thread.join(5.0)


def test_read_records_decodes_rows(db: Path) -> None:
    write(
        db,
        [
            make_record(0, properties={"team": "search"}, stream=True, ttft_ms=4.5),
            make_record(1, key_id="", error_code="upstream_error", status=502),
        ],
    )
    records = read_records(db)
    assert [record_id for record_id, _ in records] == [1, 2]
    first, second = records[0][1], records[1][1]
    assert first["properties"] == {"team": "search"}
    assert first["stream"] is True and first["ttft_ms"] == 4.5
    assert second["stream"] is False and second["ttft_ms"] is None
    assert second["key_id"] == "" and second["error_code"] == "upstream_error"
    assert [r for _, r in read_records(db, after_id=1)] == [second]
    assert len(read_records(db, limit=1)) == 1


def test_prints_the_last_n_records(db: Path) -> None:
    write(db, [make_record(n) for n in range(20)])
    out = io.StringIO()
    assert tail(db, lines=3, follow=False, out=out) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert [line.rsplit("req=", 1)[1] for line in lines] == ["req-17", "req-18", "req-19"]
    first = lines[0]
    assert first.startswith("2026-11-") and "Z 200 demo/chat key=k_abc123 " in first
    assert "gpt-4o-mini->mock-gpt-mini@mock 12.3ms" in first
    assert "session=sess-1 turn=17" in first


def test_plain_format_shows_optional_fields(db: Path) -> None:
    write(
        db,
        [
            make_record(
                0,
                key_id="",
                stream=True,
                ttft_ms=4.06,
                error_code="rate_limited",
                status=429,
                properties={"team": "x"},
            )
        ],
    )
    out = io.StringIO()
    tail(db, lines=5, follow=False, out=out)
    (line,) = out.getvalue().splitlines()
    assert " 429 " in line and "key=- " in line
    assert "ttft=4.1ms stream error=rate_limited" in line
    assert line.endswith('props={"team":"x"}')


def test_json_output_parses(db: Path) -> None:
    write(db, [make_record(n, properties={"n": str(n)}) for n in range(3)])
    out = io.StringIO()
    assert tail(db, lines=2, follow=False, as_json=True, out=out) == 0
    objects = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [o["id"] for o in objects] == [2, 3]
    assert [o["request_id"] for o in objects] == ["req-1", "req-2"]
    assert objects[1]["properties"] == {"n": "2"}
    assert objects[1]["stream"] is False and objects[1]["latency_ms"] == 12.34


def test_follows_records_written_by_another_thread(db: Path, followers: list[Follower]) -> None:
    write(db, [make_record(n) for n in range(5)])
    follower = Follower(db, lines=2, as_json=True)
    followers.append(follower)
    wait_for(lambda: len(follower.lines()) == 2)

    writer = RecordWriter(db, flush_interval_s=0.01)
    writer.start()
    try:
        for n in range(5, 8):
            writer.submit(make_record(n))
        wait_for(lambda: len(follower.lines()) == 5)
    finally:
        writer.close()
    assert follower.finish() == 0
    ids = [json.loads(line)["request_id"] for line in follower.lines()]
    assert ids == ["req-3", "req-4", "req-5", "req-6", "req-7"]


def test_missing_database_without_follow(db: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert tail(db, follow=False, out=out, err=err) == 0
    assert out.getvalue() == ""
    assert str(db) in err.getvalue()


def test_missing_database_is_waited_for_when_following(db: Path, followers: list[Follower]) -> None:
    follower = Follower(db, lines=10)
    followers.append(follower)
    time.sleep(0.1)  # a few polls with no file
    assert follower.lines() == [] and follower.err.getvalue() == ""
    assert not db.exists()

    writer = RecordWriter(db, flush_interval_s=0.01)
    writer.start()
    try:
        writer.submit(make_record(0))
        writer.submit(make_record(1))
        wait_for(lambda: len(follower.lines()) == 2)
    finally:
        writer.close()
    assert follower.finish() == 0
    assert [line.rsplit("req=", 1)[1] for line in follower.lines()] == ["req-0", "req-1"]


def test_stop_ends_an_idle_follow_promptly(db: Path) -> None:
    write(db, [make_record(0)])
    follower = Follower(db, lines=0)
    time.sleep(0.05)  # a few idle polls
    started = time.monotonic()
    assert follower.finish() == 0
    assert time.monotonic() - started < 1.0
    assert follower.lines() == []
