"""The PostgreSQL key store (controlplane.keystore_postgres) against a real server, for
what the SQLite store has no counterpart of: replicas sharing one database, writers
racing, the server going away and coming back, the URL's password kept out of every
message. The behaviour both stores share is tested on both in test_api_keys_store.py."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from controlplane.api_keys import DISPLAY_PREFIX_SECRET_CHARS, key_hash
from controlplane.errors import KeyStoreError, KeyStoreUnavailable
from controlplane.keystore import (
    STORE_URL_ENV,
    SqliteKeyStore,
    open_key_store,
    store_location,
)
from controlplane.keystore_postgres import PostgresKeyStore, describe_url
from controlplane.settings_store import PiiProjectSettings, SettingsStore
from tests.postgres_server import PostgresServer, running_postgres
from weir.cli import main

NOW = 1_750_000_000_000


def database_of(url: str) -> str:
    return url.rpartition("/")[2]


@pytest.fixture
def replicas(postgres_url: str) -> Iterator[list[PostgresKeyStore]]:
    """Two stores on one database, as two control plane replicas have."""
    stores = [PostgresKeyStore(postgres_url), PostgresKeyStore(postgres_url)]
    yield stores
    for store in stores:
        store.close()


@pytest.fixture
def store(replicas: list[PostgresKeyStore]) -> PostgresKeyStore:
    return replicas[0]


# --- the factory and how a store is named ---------------------------------------------------


def test_the_factory_opens_postgres_for_a_url_and_sqlite_for_a_path(
    postgres_url: str, tmp_path: Path
) -> None:
    for url in (postgres_url, postgres_url.replace("postgresql://", "postgres://", 1)):
        store = open_key_store(url)
        assert isinstance(store, PostgresKeyStore)
        store.close()
    for path in (tmp_path / "weir.db", str(tmp_path / "other.db")):
        store = open_key_store(path)
        assert isinstance(store, SqliteKeyStore)
        store.close()


def test_a_url_of_another_kind_is_refused_without_its_password(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="unsupported store URL scheme 'mysql'") as caught:
        open_key_store("mysql://weir:hunter2-secret@127.0.0.1/weir")
    assert "hunter2-secret" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_the_url_comes_from_the_environment_before_the_state_dir(tmp_path: Path) -> None:
    url = "postgresql://weir:pw@db:5432/weir"
    assert store_location(tmp_path, {STORE_URL_ENV: url}) == url
    assert store_location(tmp_path, {}) == tmp_path / "weir.db"
    assert store_location(tmp_path, {STORE_URL_ENV: ""}) == tmp_path / "weir.db"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://weir:s3cr%40t@db.example:6432/keys?sslmode=require", "db.example:6432/keys"),
        ("postgres://weir:pw@db/keys", "db:5432/keys"),
        ("postgresql://weir:p@ss@[::1]:5433/keys", "[::1]:5433/keys"),
        ("postgresql://weir@h1:5432,h2:5433/keys", "h1:5432,h2:5433/keys"),
        ("postgresql:///keys", "localhost:5432/keys"),
    ],
)
def test_a_store_url_is_shown_as_host_port_and_database_only(url: str, shown: str) -> None:
    assert describe_url(url) == shown


# --- only the hash is stored ------------------------------------------------------------------


def test_only_the_hash_reaches_the_database(
    store: PostgresKeyStore, postgres_server: PostgresServer, postgres_url: str
) -> None:
    keys = [store.create("demo", ("inference",))[1] for _ in range(3)]
    keys.append(store.rotate(store.list()[0].id, 60_000)[1])
    database = database_of(postgres_url)
    dump = "\n".join(
        row[0] for row in postgres_server.query(database, "SELECT api_keys::text FROM api_keys")
    )
    hashes = {bytes(r[0]) for r in postgres_server.query(database, "SELECT sha256 FROM api_keys")}
    columns = {
        r[0]
        for r in postgres_server.query(
            database,
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'api_keys'",
        )
    }
    assert hashes == {key_hash(k) for k in keys}
    assert "key" not in columns and "secret" not in columns
    for key in keys:
        secret = key.rpartition("_")[2]
        assert key not in dump
        # the displayable prefix is stored; the rest of the secret never
        assert secret[DISPLAY_PREFIX_SECRET_CHARS:] not in dump
        assert key_hash(key).hex() in dump


# --- replicas ---------------------------------------------------------------------------------


def test_two_replicas_see_each_others_keys_and_settings_through_the_revision(
    replicas: list[PostgresKeyStore],
) -> None:
    first, second = replicas
    first_settings, second_settings = SettingsStore(first), SettingsStore(second)
    seen = second.revision()
    stored, key = first.create("demo", ("inference",))
    assert second.revision() > seen
    assert second.find(key_hash(key)) == stored

    seen = first.revision()
    second_settings.set_pii("demo", PiiProjectSettings(True, ("EMAIL",)), NOW)
    assert first.revision() > seen
    assert first_settings.pii("demo") == PiiProjectSettings(True, ("EMAIL",))
    assert first_settings.all_pii() == {"demo": PiiProjectSettings(True, ("EMAIL",))}

    seen = first.revision()
    revoked = second.revoke(stored.id)
    assert first.revision() > seen
    assert first.get(stored.id) == revoked
    assert first.revision() == second.revision()


def test_replicas_opening_a_new_database_at_once_all_open_it(postgres_url: str) -> None:
    """Eight replicas start together on an empty database: the schema is made once."""
    barrier = threading.Barrier(8)

    def open_one(_: int) -> PostgresKeyStore:
        barrier.wait(10)
        store = PostgresKeyStore(postgres_url)
        SettingsStore(store)
        return store

    with ThreadPoolExecutor(8) as pool:
        stores = list(pool.map(open_one, range(8)))
    try:
        assert len({s.revision() for s in stores}) == 1
        stored, _ = stores[0].create("demo", ("inference",))
        assert all(s.get(stored.id) == stored for s in stores)
    finally:
        for s in stores:
            s.close()


def test_concurrent_creates_from_two_replicas_lose_nothing(
    replicas: list[PostgresKeyStore],
) -> None:
    start = replicas[0].revision()
    barrier = threading.Barrier(4)

    def create_many(worker: int) -> list[str]:
        store = replicas[worker % 2]
        barrier.wait(10)
        return [store.create(f"p{worker}", ("inference",))[0].id for _ in range(20)]

    with ThreadPoolExecutor(4) as pool:
        created = [key_id for ids in pool.map(create_many, range(4)) for key_id in ids]
    assert len(set(created)) == 80
    for replica in replicas:
        assert {k.id for k in replica.list()} == set(created)
        assert replica.revision() == start + 80  # one bump per write, none lost
    assert [len(replicas[1].list(f"p{w}")) for w in range(4)] == [20] * 4


def test_concurrent_settings_writes_from_two_replicas(replicas: list[PostgresKeyStore]) -> None:
    settings = [SettingsStore(r) for r in replicas]
    start = replicas[0].revision()

    def write(worker: int) -> None:
        for i in range(10):
            on = PiiProjectSettings(enabled=i % 2 == 0)
            settings[worker % 2].set_pii(f"p{worker}", on, NOW + i)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(4)))
    assert replicas[1].revision() == start + 40
    assert settings[0].all_pii() == {f"p{w}": PiiProjectSettings(False) for w in range(4)}


def test_an_unreadable_settings_row_reads_as_nothing_set(
    store: PostgresKeyStore, postgres_server: PostgresServer, postgres_url: str
) -> None:
    settings = SettingsStore(store)
    settings.set_pii("demo", PiiProjectSettings(True), NOW)
    postgres_server.query(
        database_of(postgres_url), "UPDATE project_settings SET pii = 'not json' RETURNING 1"
    )
    assert settings.pii("demo") == PiiProjectSettings()
    assert settings.pii("nobody") == PiiProjectSettings()


# --- the server going away ----------------------------------------------------------------


RESTART_PASSWORD = "restart-pass-91d0c2f7"


@pytest.fixture(scope="module")
def restartable() -> Iterator[PostgresServer]:
    with running_postgres(RESTART_PASSWORD) as server:
        yield server


@pytest.fixture
def own_server(restartable: PostgresServer) -> PostgresServer:
    """A server of these tests' own, to stop and start; running when a test begins."""
    if restartable.process is None:
        restartable.start()
    return restartable


def assert_unavailable(url: str, error: KeyStoreUnavailable) -> None:
    message = str(error)
    assert f"{url.rpartition('@')[2]}" in message, message  # host:port/dbname
    assert RESTART_PASSWORD not in message
    assert "://" not in message  # no part of the URL but host:port/dbname


def test_server_down_then_back(own_server: PostgresServer) -> None:
    url = own_server.new_database()
    store = PostgresKeyStore(url)
    try:
        stored, key = store.create("demo", ("inference",))
        own_server.stop()
        calls: list[Callable[[], object]] = [
            store.revision,
            store.list,
            lambda: store.find(key_hash(key)),
            lambda: store.create("demo", ("inference",)),
            lambda: store.revoke(stored.id),
            lambda: store.rotate(stored.id, 1000),
            lambda: SettingsStore(store),
        ]
        for call in calls:
            with pytest.raises(KeyStoreUnavailable) as caught:
                call()
            assert_unavailable(url, caught.value)

        own_server.start()
        assert store.get(stored.id) == stored
        revoked = store.revoke(stored.id)
        assert revoked.revoked_at_ms is not None
        assert store.list() == [revoked]  # the create while it was down left nothing
    finally:
        store.close()


def test_a_restart_while_idle_is_not_noticed(own_server: PostgresServer) -> None:
    """The connection went stale while unused: a read, and a write, go through at once on
    a new one."""
    url = own_server.new_database()
    reader, writer = PostgresKeyStore(url), PostgresKeyStore(url)
    try:
        stored, _ = writer.create("demo", ("inference",))
        revision = reader.revision()
        own_server.stop()
        own_server.start()
        assert reader.revision() == revision
        own_server.stop()
        own_server.start()
        new, _ = writer.create("demo", ("inference",))
        assert {k.id for k in reader.list()} == {stored.id, new.id}
    finally:
        reader.close()
        writer.close()


def test_a_store_that_cannot_open_says_where_without_the_password(
    own_server: PostgresServer,
) -> None:
    url = own_server.new_database()
    own_server.stop()
    with pytest.raises(KeyStoreUnavailable, match="cannot open the key store") as caught:
        PostgresKeyStore(url)
    assert_unavailable(url, caught.value)

    own_server.start()
    wrong = url.replace(RESTART_PASSWORD, "wrong-" + RESTART_PASSWORD)
    with pytest.raises(KeyStoreUnavailable, match="password authentication failed") as caught:
        PostgresKeyStore(wrong)
    assert_unavailable(url, caught.value)
    assert "wrong-" not in str(caught.value)

    bad_port = f"postgresql://weir:{RESTART_PASSWORD}@127.0.0.1:notaport/weir"
    with pytest.raises(KeyStoreUnavailable, match="cannot open the key store") as caught:
        PostgresKeyStore(bad_port)
    assert RESTART_PASSWORD not in str(caught.value)


def test_keys_cli_uses_the_url_from_the_environment(
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(STORE_URL_ENV, postgres_url)
    assert main(["keys", "create", "--project", "demo", "--state-dir", str(tmp_path)]) == 0
    key = capsys.readouterr().out.strip()
    assert list(tmp_path.iterdir()) == []  # no SQLite file was made
    store = PostgresKeyStore(postgres_url)
    try:
        found = store.find(key_hash(key))
        assert found is not None and found.project == "demo"
    finally:
        store.close()
    assert main(["keys", "list", "--state-dir", str(tmp_path)]) == 0
    assert found.id in capsys.readouterr().out

    monkeypatch.setenv(STORE_URL_ENV, postgres_url.replace("/test_", "/missing_"))
    assert main(["keys", "list"]) == 1
    err = capsys.readouterr().err
    assert "cannot open the key store 127.0.0.1:" in err
    assert postgres_url.split("@")[0] not in err  # neither user nor password
