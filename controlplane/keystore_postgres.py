"""API keys (and project settings) in PostgreSQL, shared by every control plane replica.

The same store as the SQLite one (`SqlKeyStore`: keys hashed, a revision bumped by every
write in the same transaction), so two replicas behind one database agree on the keys
and each learns of the other's writes through `revision()`. Writes are serialized on the
revision row, as SQLite's `BEGIN IMMEDIATE` serializes them.

One connection per store, used under a lock (the control plane calls the store from
threads). A connection the server dropped while it was unused (a restart, a failover) is
replaced, and a read or the start of a write that found it so is tried once more on the
new one; a call cut off mid-way, or made while the server is down, raises
KeyStoreUnavailable, and the next call connects again. Messages name the store by
`host:port/dbname` only: the URL's password never reaches a log or an error.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, Final, TypeVar
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from controlplane.errors import KeyStoreUnavailable
from controlplane.keystore import BUMP_REVISION, Rows, SqlKeyStore, key_schema

T = TypeVar("T")

# Taken while the schema is created, so that replicas starting together do not race on
# CREATE TABLE IF NOT EXISTS (which is not safe against a concurrent create).
SCHEMA_LOCK: Final = 0x5745_4952_4B45_5953  # "WEIRKEYS"
# Used where the URL does not say: fail fast on an unreachable server, and notice a
# dead peer within about a minute rather than the kernel's two hours.
CONNECTION_DEFAULTS: Final = {
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}

_SCHEMA: Final = key_schema(binary="BYTEA", exact_text='TEXT COLLATE "C"')


def describe_url(url: str) -> str:
    """`host:port/dbname` of a PostgreSQL URL: what logs and messages may show (never
    the user or the password)."""
    parts = urlsplit(url)
    hosts = unquote(parts.netloc.rpartition("@")[2]) or "localhost"
    if not re.search(r":\d+$", hosts):
        hosts += ":5432"
    return f"{hosts}/{unquote(parts.path.lstrip('/')) or '(default database)'}"


def _placeholders(sql: str, params: tuple[Any, ...]) -> tuple[str, tuple[Any, ...] | None]:
    """The store's '?' placeholders as psycopg's '%s' (no statement of the stores has a
    '?' or a '%' of its own elsewhere). Without parameters the statement goes as it is,
    so a script of several statements can run."""
    if not params:
        return sql, None
    return sql.replace("%", "%%").replace("?", "%s"), params


def _rollback(db: psycopg.Connection[Any]) -> None:
    with suppress(psycopg.Error):  # a broken connection has nothing to undo
        db.rollback()


class _Statements:
    def __init__(self, db: psycopg.Connection[Any]) -> None:
        self._db = db

    def execute(self, sql: str, params: tuple[Any, ...] = (), /) -> Rows:
        return self._db.execute(*_placeholders(sql, params))


class PostgresKeyStore(SqlKeyStore):
    def __init__(self, url: str) -> None:
        self.where = describe_url(url)
        parts = urlsplit(url)
        self._secrets = {p for p in (parts.password, unquote(parts.password or "")) if p}
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error:
            # libpq's message may quote the URL, password and all.
            raise KeyStoreUnavailable(
                f"cannot open the key store {self.where}: the URL is not a valid PostgreSQL URL"
            ) from None
        if params.get("password"):
            self._secrets.add(str(params["password"]))
        for name, value in CONNECTION_DEFAULTS.items():
            params.setdefault(name, value)
        self._conninfo = make_conninfo("", **params)
        self._lock = threading.Lock()
        self._db: psycopg.Connection[Any] | None = None
        self._closed = False
        try:
            with self._lock:
                db = self._connection()
                with db.transaction():
                    db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                    db.execute(_SCHEMA)
        except psycopg.Error as error:
            self._drop_broken()
            raise KeyStoreUnavailable(
                f"cannot open the key store {self.where}: {self._scrub(error)}"
            ) from None

    def _scrub(self, error: object) -> str:
        text = " ".join(str(error).split())  # libpq's hints on lines of their own: one line
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _unavailable(self, error: object) -> KeyStoreUnavailable:
        return super()._unavailable(self._scrub(error))

    def _connection(self) -> psycopg.Connection[Any]:
        """The open connection, or a new one (under the lock). Raises psycopg.Error."""
        if self._closed:
            raise psycopg.InterfaceError("the store is closed")
        if self._db is None or self._db.closed:
            self._db = psycopg.connect(self._conninfo, autocommit=True)
        return self._db

    def _drop_broken(self) -> bool:
        """Forget a connection the server or the network dropped; True if it was one."""
        db = self._db
        if db is None or not (db.broken or db.closed):
            return False
        db.close()
        self._db = None
        return True

    def _on_connection(self, step: Callable[[psycopg.Connection[Any]], T]) -> T:
        """`step` on the connection; if it fails on one that went stale while unused (the
        server restarted), once more on a new one. Only for steps that are safe to repeat.
        Raises psycopg.Error."""
        for attempt in (1, 2):
            reused = self._db is not None and not self._db.closed
            db = self._connection()
            try:
                return step(db)
            except psycopg.Error:
                if self._drop_broken() and reused and attempt == 1:
                    continue
                raise
        raise AssertionError("not reached")

    @contextmanager
    def transaction(self) -> Iterator[_Statements]:
        with self._lock:
            try:
                db = self._on_connection(self._begin)
                try:
                    yield _Statements(db)
                    db.execute(BUMP_REVISION)
                except BaseException:
                    _rollback(db)
                    raise
                db.commit()
            except psycopg.Error as error:
                self._drop_broken()
                raise self._unavailable(error) from None

    @staticmethod
    def _begin(db: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
        """`db` in a new transaction that holds the revision row: writers queue there, so
        each sees the others' work (nothing is written yet: safe to repeat)."""
        try:
            db.execute("BEGIN")
            db.execute("SELECT revision FROM api_key_revision WHERE id = 1 FOR UPDATE")
        except psycopg.Error:
            _rollback(db)
            raise
        return db

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        def read(db: psycopg.Connection[Any]) -> list[Any]:
            with db.execute(*_placeholders(sql, params)) as cursor:
                return cursor.fetchall()

        with self._lock:
            try:
                return self._on_connection(read)
            except psycopg.Error as error:
                raise self._unavailable(error) from None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._db is not None:
                self._db.close()
                self._db = None
