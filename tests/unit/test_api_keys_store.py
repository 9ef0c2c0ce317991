"""API keys (controlplane.api_keys) and the key stores: every behavioural check runs on
the SQLite store (controlplane.keystore) and on the PostgreSQL one
(controlplane.keystore_postgres, against a real server); what only one of them has is
tested apart (here for SQLite, in test_keystore_postgres.py for PostgreSQL)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from controlplane import keystore as keystore_module
from controlplane.api_keys import (
    DISPLAY_PREFIX_SECRET_CHARS,
    KEY_PATTERN,
    SECRET_LENGTH,
    StoredKey,
    display_prefix,
    generate_key,
    key_hash,
)
from controlplane.errors import KeyNotFound, KeyStoreError
from controlplane.keystore import (
    SqliteKeyStore,
    SqlKeyStore,
    check_scopes,
    default_store_path,
    open_key_store,
)

NOW = 1_750_000_000_000
HOUR = 3_600_000


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock(NOW)
    monkeypatch.setattr(keystore_module, "now_ms", clock)
    return clock


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """Where a store lives: an SQLite file, or a new database on the PostgreSQL server."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return default_store_path(tmp_path)


@pytest.fixture
def store(location: str | Path) -> Iterator[SqlKeyStore]:
    store = open_key_store(location)
    yield store
    store.close()


def file_bytes(path: Path) -> bytes:
    """The database file and its WAL / journal side files, concatenated."""
    data = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            data += side.read_bytes()
    return data


# --- the key itself -----------------------------------------------------------------------


def test_generated_key_matches_pattern_and_carries_project() -> None:
    key = generate_key("demo-1")
    match = KEY_PATTERN.match(key)
    assert match is not None
    assert match.group(1) == "demo-1"
    assert key.startswith("wk_demo-1_")
    assert len(key.rpartition("_")[2]) == SECRET_LENGTH


def test_generated_keys_differ() -> None:
    assert len({generate_key("demo") for _ in range(50)}) == 50


def test_key_hash_is_sha256_of_utf8() -> None:
    key = generate_key("demo")
    assert key_hash(key) == hashlib.sha256(key.encode()).digest()
    assert len(key_hash(key)) == 32


def test_display_prefix_shows_only_a_few_secret_chars() -> None:
    key = generate_key("demo")
    secret = key.rpartition("_")[2]
    assert display_prefix(key) == f"wk_demo_{secret[:DISPLAY_PREFIX_SECRET_CHARS]}"


# --- create / get / find / list -----------------------------------------------------------


def test_create_returns_key_and_metadata(store: SqlKeyStore, clock: Clock) -> None:
    stored, key = store.create("demo", ("inference",), name="ci", expires_at_ms=NOW + HOUR)
    match = KEY_PATTERN.match(key)
    assert match is not None and match.group(1) == "demo"
    assert stored.id.startswith("key_")
    assert stored.project == "demo"
    assert stored.name == "ci"
    assert stored.scopes == ("inference",)
    assert stored.sha256 == key_hash(key)
    assert stored.prefix == display_prefix(key)
    assert stored.created_at_ms == NOW
    assert stored.expires_at_ms == NOW + HOUR
    assert stored.revoked_at_ms is None
    assert stored.rotated_to is None


def test_get_and_find(store: SqlKeyStore) -> None:
    stored, key = store.create("demo", ("inference",))
    assert store.get(stored.id) == stored
    assert store.find(key_hash(key)) == stored
    assert store.get("key_unknown") is None
    assert store.find(key_hash(generate_key("demo"))) is None


def test_list_all_and_by_project(store: SqlKeyStore, clock: Clock) -> None:
    a, _ = store.create("alpha", ("inference",))
    clock.now += 1
    b, _ = store.create("beta", ("inference",))
    clock.now += 1
    c, _ = store.create("alpha", ("management",))
    assert [k.id for k in store.list()] == [a.id, b.id, c.id]
    assert [k.id for k in store.list("alpha")] == [a.id, c.id]
    assert [k.id for k in store.list("beta")] == [b.id]
    assert store.list("gamma") == []


def test_scopes_are_canonical(store: SqlKeyStore) -> None:
    stored, _ = store.create("demo", ("management", "inference", "management"))
    assert stored.scopes == ("inference", "management")
    assert store.get(stored.id) == stored
    assert check_scopes(("management",)) == ("management",)


@pytest.mark.parametrize(
    "project",
    ["", "Demo", "de_mo", "-demo", "demo-", "de mo", "a" * 64, "démo"],
)
def test_invalid_project_is_refused(store: SqlKeyStore, project: str) -> None:
    with pytest.raises(KeyStoreError, match="invalid project"):
        store.create(project, ("inference",))
    assert store.list() == []


@pytest.mark.parametrize("project", ["a", "demo", "a" * 63, "team-42", "0"])
def test_valid_projects(store: SqlKeyStore, project: str) -> None:
    stored, key = store.create(project, ("inference",))
    assert stored.project == project
    assert KEY_PATTERN.match(key) is not None


@pytest.mark.parametrize("scopes", [("admin",), ("inference", "root"), ()])
def test_unknown_or_no_scopes_are_refused(store: SqlKeyStore, scopes: tuple[str, ...]) -> None:
    with pytest.raises(KeyStoreError, match="scope"):
        store.create("demo", scopes)
    assert store.list() == []


def test_over_long_name_is_refused(store: SqlKeyStore) -> None:
    store.create("demo", ("inference",), name="n" * 128)
    with pytest.raises(KeyStoreError, match="128"):
        store.create("demo", ("inference",), name="n" * 129)


def test_store_that_cannot_open_raises_key_store_error(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="cannot open"):
        SqliteKeyStore(tmp_path)  # a directory, not a database file


# --- only the hash is stored --------------------------------------------------------------


def test_only_the_hash_reaches_the_file(tmp_path: Path) -> None:
    path = default_store_path(tmp_path)
    store = SqliteKeyStore(path)
    try:
        keys = [store.create("demo", ("inference",))[1] for _ in range(3)]
        _, rotated_key = store.rotate(store.list()[0].id, HOUR)
        keys.append(rotated_key)

        def check() -> None:
            data = file_bytes(path)
            assert data  # something was written
            for key in keys:
                secret = key.rpartition("_")[2]
                assert key.encode() not in data
                assert secret.encode() not in data
                # the displayable prefix is stored; the rest of the secret never
                assert secret[DISPLAY_PREFIX_SECRET_CHARS:].encode() not in data
                assert key_hash(key) in data

        check()
        with closing(sqlite3.connect(path)) as raw:
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        check()
        with closing(sqlite3.connect(path)) as raw:
            stored_hashes = {bytes(r[0]) for r in raw.execute("SELECT sha256 FROM api_keys")}
            columns = [r[1] for r in raw.execute("PRAGMA table_info(api_keys)")]
        assert stored_hashes == {key_hash(k) for k in keys}
        assert "key" not in columns and "secret" not in columns
        # After the checkpoint the main file alone holds every hash.
        main = path.read_bytes()
        for key in keys:
            assert key_hash(key) in main
            assert key.encode() not in main
    finally:
        store.close()


# --- revoke -------------------------------------------------------------------------------


def test_revoke(store: SqlKeyStore, clock: Clock) -> None:
    stored, _ = store.create("demo", ("inference",))
    clock.now += 1000
    revoked = store.revoke(stored.id)
    assert revoked.revoked_at_ms == NOW + 1000
    assert revoked.state(clock.now) == "revoked"
    assert store.get(stored.id) == revoked


def test_revoke_twice_keeps_the_first_time(store: SqlKeyStore, clock: Clock) -> None:
    stored, _ = store.create("demo", ("inference",))
    first = store.revoke(stored.id)
    clock.now += 5000
    second = store.revoke(stored.id)
    assert second == first
    assert second.revoked_at_ms == NOW


def test_revoke_unknown_raises_key_not_found(store: SqlKeyStore) -> None:
    with pytest.raises(KeyNotFound) as caught:
        store.revoke("key_nope")
    assert caught.value.key_id == "key_nope"
    assert isinstance(caught.value, KeyStoreError)
    assert "key_nope" in str(caught.value)


# --- rotate -------------------------------------------------------------------------------


def test_rotate(store: SqlKeyStore, clock: Clock) -> None:
    old, old_key = store.create("demo", ("inference", "management"), name="ci")
    clock.now += 10_000
    new, new_key = store.rotate(old.id, HOUR)
    assert new_key != old_key
    match = KEY_PATTERN.match(new_key)
    assert match is not None and match.group(1) == "demo"
    assert new.id != old.id
    assert (new.project, new.scopes, new.name) == (old.project, old.scopes, old.name)
    assert new.sha256 == key_hash(new_key)
    assert new.created_at_ms == NOW + 10_000
    assert store.find(key_hash(new_key)) == new

    retired = store.get(old.id)
    assert retired is not None
    assert retired.expires_at_ms == NOW + 10_000 + HOUR
    assert retired.rotated_to == new.id
    assert retired.revoked_at_ms is None
    assert retired.state(clock.now) == "active"  # during the grace period
    assert retired.state(NOW + 10_000 + HOUR) == "expired"


def test_rotate_with_zero_grace_expires_the_old_key_now(store: SqlKeyStore, clock: Clock) -> None:
    old, _ = store.create("demo", ("inference",))
    store.rotate(old.id, 0)
    retired = store.get(old.id)
    assert retired is not None
    assert retired.expires_at_ms == NOW
    assert retired.state(clock.now) == "expired"


def test_rotate_grace_never_extends_an_earlier_expiry(store: SqlKeyStore, clock: Clock) -> None:
    old, _ = store.create("demo", ("inference",), expires_at_ms=NOW + 1000)
    store.rotate(old.id, HOUR)
    retired = store.get(old.id)
    assert retired is not None
    assert retired.expires_at_ms == NOW + 1000


def test_rotate_grace_shortens_a_later_expiry(store: SqlKeyStore, clock: Clock) -> None:
    old, _ = store.create("demo", ("inference",), expires_at_ms=NOW + 10 * HOUR)
    store.rotate(old.id, HOUR)
    retired = store.get(old.id)
    assert retired is not None
    assert retired.expires_at_ms == NOW + HOUR


def test_rotate_revoked_key_fails(store: SqlKeyStore, clock: Clock) -> None:
    old, _ = store.create("demo", ("inference",))
    store.revoke(old.id)
    count = len(store.list())
    with pytest.raises(KeyStoreError, match="revoked") as caught:
        store.rotate(old.id, HOUR)
    assert not isinstance(caught.value, KeyNotFound)
    assert len(store.list()) == count  # no new key was left behind


def test_rotate_expired_key_fails(store: SqlKeyStore, clock: Clock) -> None:
    old, _ = store.create("demo", ("inference",), expires_at_ms=NOW + 1000)
    clock.now += 1000
    with pytest.raises(KeyStoreError, match="expired"):
        store.rotate(old.id, HOUR)
    assert len(store.list()) == 1


def test_rotate_unknown_raises_key_not_found(store: SqlKeyStore) -> None:
    with pytest.raises(KeyNotFound):
        store.rotate("key_nope", HOUR)


def test_rotate_negative_grace_fails(store: SqlKeyStore) -> None:
    old, _ = store.create("demo", ("inference",))
    with pytest.raises(KeyStoreError, match="negative"):
        store.rotate(old.id, -1)


# --- revision -----------------------------------------------------------------------------


def test_revision_bumps_on_every_write(store: SqlKeyStore) -> None:
    revisions = [store.revision()]
    stored, _ = store.create("demo", ("inference",))
    revisions.append(store.revision())
    new, _ = store.rotate(stored.id, HOUR)
    revisions.append(store.revision())
    store.revoke(new.id)
    revisions.append(store.revision())
    store.revoke(new.id)  # a repeated revoke is still a write
    revisions.append(store.revision())
    assert revisions == sorted(set(revisions))
    assert len(revisions) == 5


def test_failed_writes_do_not_bump_revision(store: SqlKeyStore) -> None:
    stored, _ = store.create("demo", ("inference",))
    store.revoke(stored.id)
    before = store.revision()
    with pytest.raises(KeyNotFound):
        store.revoke("key_nope")
    with pytest.raises(KeyNotFound):
        store.rotate("key_nope", HOUR)
    with pytest.raises(KeyStoreError):
        store.rotate(stored.id, HOUR)
    with pytest.raises(KeyStoreError):
        store.create("Bad", ("inference",))
    assert store.revision() == before


def test_reads_do_not_bump_revision(store: SqlKeyStore) -> None:
    stored, key = store.create("demo", ("inference",))
    before = store.revision()
    store.get(stored.id)
    store.find(key_hash(key))
    store.list()
    store.list("demo")
    assert store.revision() == before


def test_second_store_sees_writes_and_revision(location: str | Path) -> None:
    first = open_key_store(location)
    second = open_key_store(location)
    try:
        start = second.revision()
        stored, key = first.create("demo", ("inference",))
        assert second.revision() == first.revision() > start
        assert second.get(stored.id) == stored
        assert second.find(key_hash(key)) == stored

        revoked = second.revoke(stored.id)
        assert first.revision() == second.revision()
        assert first.get(stored.id) == revoked
    finally:
        first.close()
        second.close()


def test_store_reopens_with_its_keys(location: str | Path) -> None:
    store = open_key_store(location)
    stored, _ = store.create("demo", ("inference",))
    revision = store.revision()
    store.close()
    reopened = open_key_store(location)
    try:
        assert reopened.get(stored.id) == stored
        assert reopened.revision() == revision
    finally:
        reopened.close()


# --- StoredKey ----------------------------------------------------------------------------


def make_key(**overrides: object) -> StoredKey:
    fields: dict[str, object] = {
        "id": "key_0123456789abcdef",
        "project": "demo",
        "name": "ci",
        "prefix": "wk_demo_AbCd",
        "sha256": b"\x01" * 32,
        "scopes": ("inference",),
        "created_at_ms": NOW,
    }
    fields.update(overrides)
    return StoredKey(**fields)  # type: ignore[arg-type]


def test_state() -> None:
    assert make_key().state(NOW + 10 * HOUR) == "active"
    expiring = make_key(expires_at_ms=NOW + 1000)
    assert expiring.state(NOW + 999) == "active"
    assert expiring.state(NOW + 1000) == "expired"
    assert expiring.state(NOW + 5000) == "expired"
    revoked = make_key(revoked_at_ms=NOW + 10, expires_at_ms=NOW + 1000)
    assert revoked.state(NOW) == "revoked"  # revoked wins, whatever the clock says
    assert revoked.state(NOW + 5000) == "revoked"


def test_public_has_no_hash() -> None:
    key = make_key(
        expires_at_ms=NOW + 1500,
        revoked_at_ms=NOW + 2500,
        rotated_to="key_fedcba9876543210",
        scopes=("inference", "management"),
    )
    public = key.public(NOW)
    assert public == {
        "id": "key_0123456789abcdef",
        "object": "api_key",
        "project": "demo",
        "name": "ci",
        "prefix": "wk_demo_AbCd",
        "scopes": ["inference", "management"],
        "created_at": NOW // 1000,
        "expires_at": (NOW + 1500) // 1000,
        "revoked_at": (NOW + 2500) // 1000,
        "rotated_to": "key_fedcba9876543210",
        "state": "revoked",
    }
    assert "sha256" not in public and "hash" not in public
    assert not any(isinstance(v, bytes) for v in public.values())


def test_public_of_a_fresh_key() -> None:
    public = make_key().public(NOW)
    assert public["expires_at"] is None
    assert public["revoked_at"] is None
    assert public["rotated_to"] is None
    assert public["state"] == "active"


def test_a_store_that_cannot_be_opened_is_unavailable_not_bad_input(tmp_path: Path) -> None:
    from controlplane.errors import KeyStoreUnavailable

    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(KeyStoreUnavailable, match="cannot open the key store"):
        SqliteKeyStore(tmp_path / "file" / "weir.db")


def test_a_closed_store_is_unavailable(location: str | Path) -> None:
    from controlplane.errors import KeyStoreUnavailable

    store = open_key_store(location)
    store.close()
    with pytest.raises(KeyStoreUnavailable, match=r"the key store .* failed"):
        store.revision()
    with pytest.raises(KeyStoreUnavailable):
        store.list()
    with pytest.raises(KeyStoreUnavailable):
        store.create("demo", ("inference",))
