"""`weir requests tail`: print (and follow) the ext_proc's request records.

Reads the SQLite file written by `extproc.records.RecordWriter`, read-only, following new
rows by their increasing `id`.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from extproc.records import COLUMNS, TABLE

_PAGE = 1000
_SELECT = f"SELECT id, {', '.join(COLUMNS)} FROM {TABLE}"


def _connect(path: Path) -> sqlite3.Connection:
    uri = f"{path.absolute().as_uri()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=1.0)
    conn.execute("PRAGMA busy_timeout = 1000")
    return conn


def _no_table(error: sqlite3.Error) -> bool:
    return "no such table" in str(error)


def _decode(row: tuple[Any, ...]) -> tuple[int, dict[str, Any]]:
    record = dict(zip(COLUMNS, row[1:], strict=True))
    record["stream"] = bool(record["stream"])
    try:
        properties = json.loads(record["properties"] or "{}")
    except (TypeError, ValueError):
        properties = {}
    record["properties"] = properties if isinstance(properties, dict) else {}
    for column in ("policy_decisions", "tool_calls"):
        try:
            value = json.loads(record.get(column) or "[]")
        except (TypeError, ValueError):
            value = []
        record[column] = value if isinstance(value, list) else []
    try:
        pii = json.loads(record.get("pii") or "{}")
    except (TypeError, ValueError):
        pii = {}
    record["pii"] = pii if isinstance(pii, dict) else {}
    try:
        routing = json.loads(record["routing"]) if record.get("routing") else None
    except (TypeError, ValueError):
        routing = None
    record["routing"] = routing if isinstance(routing, dict) else None
    return int(row[0]), record


def _query(path: Path, sql: str, params: tuple[int, ...]) -> list[tuple[Any, ...]]:
    conn = _connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as error:
        if _no_table(error):  # the writer has created the file but not the table yet
            return []
        raise
    finally:
        conn.close()


def read_records(
    path: Path, after_id: int = 0, limit: int = 1000
) -> list[tuple[int, dict[str, Any]]]:
    """Up to `limit` records with id > after_id, oldest first, as (id, record fields).

    Raises sqlite3.Error when the database cannot be opened (e.g. it does not exist).
    """
    rows = _query(path, f"{_SELECT} WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))
    return [_decode(row) for row in rows]


def last_records(path: Path, count: int) -> list[tuple[int, dict[str, Any]]]:
    """The last `count` records, oldest first."""
    if count <= 0:
        return []
    rows = _query(path, f"{_SELECT} ORDER BY id DESC LIMIT ?", (count,))
    return [_decode(row) for row in reversed(rows)]


def max_id(path: Path) -> int:
    """The id of the newest record (0 when there is none)."""
    rows = _query(path, f"SELECT COALESCE(MAX(id), 0) FROM {TABLE}", ())
    return int(rows[0][0]) if rows else 0


def _timestamp(started_at: Any) -> str:
    try:
        moment = datetime.fromtimestamp(float(started_at), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return "-"
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(value: Any) -> str:
    return f"{value:.1f}ms" if isinstance(value, int | float) else "-"


def format_record(record_id: int, record: dict[str, Any]) -> str:
    """One readable line, e.g.
    `2026-11-22T02:10:00.123Z 200 demo/chat key=k_abc gpt-4o->mock-gpt@mock 12.3ms ttft=4.1ms
    stream session=s1 turn=2 req=r1`."""
    model = str(record.get("requested_model") or "-")
    served, backend = record.get("served_model"), record.get("backend")
    if served or backend:
        model += f"->{served or '-'}@{backend or '-'}"
    parts = [
        _timestamp(record.get("started_at")),
        str(record.get("status")),
        f"{record.get('project')}/{record.get('endpoint')}",
        f"key={record.get('key_id') or '-'}",
        model,
        _ms(record.get("latency_ms")),
    ]
    if record.get("ttft_ms") is not None:
        parts.append(f"ttft={_ms(record['ttft_ms'])}")
    if record.get("stream"):
        parts.append("stream")
    if record.get("tier"):
        parts.append(f"tier={record['tier']}")
    routing = record.get("routing")
    if isinstance(routing, dict):
        parts.append(f"auto={routing.get('chosen')}({routing.get('mode')})")
    if (record.get("attempts") or 1) > 1:
        parts.append(f"attempts={record['attempts']}")
    if record.get("prompt_tokens") is not None:
        estimated = "~" if record.get("usage_estimated") else ""
        parts.append(
            f"tokens={estimated}{record['prompt_tokens']}+{record.get('completion_tokens')}"
        )
    if record.get("cost_usd") is not None:
        parts.append(f"cost=${record['cost_usd']:.6f}")
    if record.get("error_code"):
        parts.append(f"error={record['error_code']}")
    parts.append(f"session={record.get('session_id') or '-'}")
    parts.append(f"turn={record.get('turn')}")
    parts.append(f"req={record.get('request_id') or '-'}")
    properties = record.get("properties")
    if properties:
        parts.append("props=" + json.dumps(properties, ensure_ascii=False, separators=(",", ":")))
    for decision in record.get("policy_decisions") or ():
        if isinstance(decision, dict):
            parts.append(f"policy={decision.get('policy')}:{decision.get('result')}")
    pii = record.get("pii") or {}
    if isinstance(pii, dict) and pii.get("entities"):
        found = ",".join(f"{k}:{v}" for k, v in pii["entities"].items())
        parts.append(f"pii={pii.get('action')}[{found}]")
    for call in record.get("tool_calls") or ():
        if isinstance(call, dict):
            parts.append(f"tool={call.get('name')}")
    return " ".join(parts)


def _emit(records: list[tuple[int, dict[str, Any]]], as_json: bool, out: TextIO) -> None:
    for record_id, record in records:
        if as_json:
            line = json.dumps({"id": record_id, **record}, ensure_ascii=False)
        else:
            line = format_record(record_id, record)
        out.write(line + "\n")
    if records:
        out.flush()


def tail(
    path: Path,
    *,
    lines: int = 10,
    follow: bool = True,
    as_json: bool = False,
    poll_s: float = 0.2,
    out: TextIO | None = None,
    err: TextIO | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Print the last `lines` records, then (when following) new ones as they arrive,
    until `stop` is set or Ctrl-C. `out`/`err` default to sys.stdout/sys.stderr.

    Returns 0; 1 when not following and the database cannot be read."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    stop = threading.Event() if stop is None else stop
    path = Path(path)
    try:
        if not path.exists():
            if not follow:
                err.write(f"no request records yet: {path} does not exist\n")
                return 0
            while not path.exists():  # print nothing: everything in it will be new
                if stop.wait(poll_s):
                    return 0
            after_id = 0
        else:
            try:
                recent = last_records(path, lines)
                after_id = recent[-1][0] if recent else max_id(path)
            except sqlite3.Error as error:
                err.write(f"cannot read {path}: {error}\n")
                if not follow:
                    return 1
                recent, after_id = [], 0
            _emit(recent, as_json, out)
            if not follow:
                return 0
        return _follow(path, after_id, as_json, poll_s, out, err, stop)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # e.g. `weir requests tail | head`
        return 0


def _follow(
    path: Path,
    after_id: int,
    as_json: bool,
    poll_s: float,
    out: TextIO,
    err: TextIO,
    stop: threading.Event,
) -> int:
    reported: str | None = None  # the last read error shown, so it is shown once
    while True:
        try:
            records = read_records(path, after_id, _PAGE) if path.exists() else []
            if records:
                _emit(records, as_json, out)
                after_id = records[-1][0]
                if len(records) == _PAGE:
                    continue  # more are waiting: no pause
            elif after_id and path.exists() and max_id(path) < after_id:
                after_id = 0  # the database was replaced: follow the new one from its start
                continue
            reported = None
        except sqlite3.Error as error:
            message = f"cannot read {path}: {error}"
            if message != reported:
                err.write(message + "\n")
                err.flush()
                reported = message
        if stop.wait(poll_s):
            return 0
