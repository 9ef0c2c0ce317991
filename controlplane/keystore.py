"""Where API keys live: an SQLite file under the state directory (the embedded default), or
a PostgreSQL database shared by several control plane replicas (controlplane.keystore_postgres).

The store holds hashes and metadata only (`StoredKey`). Every write bumps a revision in the
same transaction, so a watcher learns of a change made by any process (the CLI, the
management API, another replica) by reading one integer.

The logic of keys is written once (`SqlKeyStore`) over a small contract each database
gives: `transaction()` (a write; it bumps the revision) and `query()` (a read), both with
'?' placeholders. Project settings (controlplane.settings_store) use the same contract.
"""

from __future__ import annotations

import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from controlplane.api_keys import (
    PROJECT_PATTERN,
    SCOPES,
    StoredKey,
    display_prefix,
    generate_key,
    generate_key_id,
    key_hash,
    now_ms,
)
from controlplane.errors import KeyNotFound, KeyStoreError, KeyStoreUnavailable

STORE_FILE: Final = "weir.db"
BUSY_TIMEOUT_MS: Final = 5000
# A store URL (it may hold a password) comes from the environment, never a command line;
# set, it wins over the SQLite file.
STORE_URL_ENV: Final = "WEIR_STORE_URL"
POSTGRES_SCHEMES: Final = ("postgresql", "postgres")


def key_schema(binary: str, exact_text: str) -> str:
    """The keys' tables, in a database's own words for bytes and for text that compares
    byte by byte (the ids' order is then the same in both databases)."""
    return f"""
CREATE TABLE IF NOT EXISTS api_keys (
    id {exact_text} PRIMARY KEY,
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    sha256 {binary} NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT,
    revoked_at_ms BIGINT,
    rotated_to TEXT
);
CREATE INDEX IF NOT EXISTS api_keys_project ON api_keys (project);
CREATE TABLE IF NOT EXISTS api_key_revision (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision BIGINT NOT NULL
);
INSERT INTO api_key_revision (id, revision) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
"""


_COLUMNS: Final = (
    "id, project, name, prefix, sha256, scopes, created_at_ms, expires_at_ms, "
    "revoked_at_ms, rotated_to"
)
BUMP_REVISION: Final = "UPDATE api_key_revision SET revision = revision + 1 WHERE id = 1"


class KeyStore(Protocol):
    """What the control plane and the CLI need from a key store."""

    def create(
        self,
        project: str,
        scopes: tuple[str, ...],
        name: str = "",
        expires_at_ms: int | None = None,
    ) -> tuple[StoredKey, str]: ...

    def get(self, key_id: str) -> StoredKey | None: ...

    def find(self, sha256: bytes) -> StoredKey | None: ...

    def list(self, project: str | None = None) -> list[StoredKey]: ...

    def revoke(self, key_id: str) -> StoredKey: ...

    def rotate(self, key_id: str, grace_ms: int) -> tuple[StoredKey, str]: ...

    def revision(self) -> int: ...

    def close(self) -> None: ...


class Rows(Protocol):
    """What a statement gives back (an sqlite3 or a psycopg cursor)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Statements(Protocol):
    """Runs statements inside a store transaction, with '?' placeholders."""

    def execute(self, sql: str, params: tuple[Any, ...] = (), /) -> Rows: ...


class SqlStore(Protocol):
    """The contract the key logic and the project settings are written against."""

    def transaction(self) -> AbstractContextManager[Statements]:
        """A write to the store (any of its tables): it bumps the store's revision, which
        the control plane polls to publish keys and project settings. Raises
        KeyStoreUnavailable when the database fails; other errors roll it back."""
        ...

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Rows of a read. Raises KeyStoreUnavailable."""
        ...


def default_store_path(state_dir: Path) -> Path:
    return state_dir / STORE_FILE


def store_location(state_dir: Path, environ: Mapping[str, str]) -> str | Path:
    """The store a command uses: the URL in WEIR_STORE_URL, else the file in `state_dir`."""
    return environ.get(STORE_URL_ENV) or default_store_path(state_dir)


def is_postgres_url(location: str | Path) -> bool:
    return isinstance(location, str) and urlsplit(location).scheme in POSTGRES_SCHEMES


def open_key_store(location: str | Path) -> SqlKeyStore:
    """A `postgresql://` (or `postgres://`) URL opens the PostgreSQL store; anything else
    is the path of an SQLite file. Raises KeyStoreError."""
    if is_postgres_url(location):
        from controlplane.keystore_postgres import PostgresKeyStore

        return PostgresKeyStore(str(location))
    if "://" in str(location):  # a URL of another kind: never make a file of it
        scheme = str(location).partition("://")[0]
        raise KeyStoreError(
            f"unsupported store URL scheme {scheme!r}: use postgresql://USER:PASSWORD@HOST:"
            "PORT/DATABASE, or a file path for SQLite"
        )
    return SqliteKeyStore(Path(location))


def check_scopes(scopes: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise KeyStoreError(
            f"unknown scope(s) {', '.join(map(repr, unknown))}; use one or more of "
            f"{', '.join(SCOPES)}"
            if unknown
            else f"a key needs at least one scope ({', '.join(SCOPES)})"
        )
    return tuple(s for s in SCOPES if s in scopes)  # canonical order, no duplicates


def _row(row: Any) -> StoredKey:
    (id_, project, name, prefix, sha, scopes, created, expires, revoked, rotated) = row
    return StoredKey(
        id=id_,
        project=project,
        name=name,
        prefix=prefix,
        sha256=bytes(sha),
        scopes=tuple(scopes.split(",")),
        created_at_ms=created,
        expires_at_ms=expires,
        revoked_at_ms=revoked,
        rotated_to=rotated,
    )


def _insert(
    db: Statements,
    project: str,
    scopes: tuple[str, ...],
    name: str,
    expires_at_ms: int | None,
) -> tuple[StoredKey, str]:
    key = generate_key(project)
    stored = StoredKey(
        id=generate_key_id(),
        project=project,
        name=name,
        prefix=display_prefix(key),
        sha256=key_hash(key),
        scopes=scopes,
        created_at_ms=now_ms(),
        expires_at_ms=expires_at_ms,
    )
    db.execute(
        f"INSERT INTO api_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
        (
            stored.id,
            stored.project,
            stored.name,
            stored.prefix,
            stored.sha256,
            ",".join(stored.scopes),
            stored.created_at_ms,
            stored.expires_at_ms,
        ),
    )
    return stored, key


class SqlKeyStore(ABC):
    """The key store (`KeyStore`) over SQL: each database gives `transaction()`, `query()`
    and `close()`; `where` names it in messages and never holds a secret."""

    where: str

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Statements]: ...

    @abstractmethod
    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]: ...

    @abstractmethod
    def close(self) -> None: ...

    def _unavailable(self, error: object) -> KeyStoreUnavailable:
        return KeyStoreUnavailable(f"the key store {self.where} failed: {error}")

    def create(
        self,
        project: str,
        scopes: tuple[str, ...],
        name: str = "",
        expires_at_ms: int | None = None,
    ) -> tuple[StoredKey, str]:
        if not PROJECT_PATTERN.match(project):
            raise KeyStoreError(
                f"invalid project {project!r}: use at most 63 lowercase letters, digits and "
                "'-', starting and ending with a letter or digit"
            )
        scopes = check_scopes(scopes)
        if len(name) > 128:
            raise KeyStoreError("a key name is at most 128 characters")
        with self.transaction() as db:
            return _insert(db, project, scopes, name, expires_at_ms)

    def get(self, key_id: str) -> StoredKey | None:
        rows = self.query(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?", (key_id,))
        return _row(rows[0]) if rows else None

    def find(self, sha256: bytes) -> StoredKey | None:
        """The key whose hash is `sha256` (the management API authenticates with it)."""
        rows = self.query(f"SELECT {_COLUMNS} FROM api_keys WHERE sha256 = ?", (sha256,))
        return _row(rows[0]) if rows else None

    def list(self, project: str | None = None) -> list[StoredKey]:
        if project is None:
            rows = self.query(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at_ms, id")
        else:
            rows = self.query(
                f"SELECT {_COLUMNS} FROM api_keys WHERE project = ? ORDER BY created_at_ms, id",
                (project,),
            )
        return [_row(r) for r in rows]

    def revoke(self, key_id: str) -> StoredKey:
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE api_keys SET revoked_at_ms = ? WHERE id = ? AND revoked_at_ms IS NULL",
                (now_ms(), key_id),
            )
            if (
                cursor.rowcount == 0
                and db.execute("SELECT 1 FROM api_keys WHERE id = ?", (key_id,)).fetchone() is None
            ):
                raise KeyNotFound(key_id)
            row = db.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return _row(row)

    def rotate(self, key_id: str, grace_ms: int) -> tuple[StoredKey, str]:
        """A new key with the same project, name and scopes; the old one stays valid for
        `grace_ms` more (never longer than it already would)."""
        if grace_ms < 0:
            raise KeyStoreError("the grace period cannot be negative")
        with self.transaction() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
            if row is None:
                raise KeyNotFound(key_id)
            old = _row(row)
            now = now_ms()
            if old.state(now) != "active":
                raise KeyStoreError(
                    f"API key {key_id} is {old.state(now)}; only an active key rotates"
                )
            new, key = _insert(db, old.project, old.scopes, old.name, old.expires_at_ms)
            until = now + grace_ms
            if old.expires_at_ms is not None:
                until = min(until, old.expires_at_ms)
            db.execute(
                "UPDATE api_keys SET expires_at_ms = ?, rotated_to = ? WHERE id = ?",
                (until, new.id, key_id),
            )
        return new, key

    def revision(self) -> int:
        return int(self.query("SELECT revision FROM api_key_revision WHERE id = 1")[0][0])


class SqliteKeyStore(SqlKeyStore):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(key_schema(binary="BLOB", exact_text="TEXT"))
        except (OSError, sqlite3.Error) as error:
            raise KeyStoreUnavailable(f"cannot open the key store {path}: {error}") from None
        self._lock = threading.Lock()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute(BUMP_REVISION)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as error:
                raise self._unavailable(error) from None

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as error:
                raise self._unavailable(error) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()
