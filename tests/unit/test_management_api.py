"""The management API over a real SQLite key store, through Starlette's TestClient."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from starlette.testclient import TestClient

from controlplane.api_keys import StoredKey, key_hash, now_ms
from controlplane.errors import KeyStoreUnavailable
from controlplane.keystore import SqliteKeyStore
from controlplane.management_api import MAX_BODY_BYTES, create_app

if TYPE_CHECKING:  # what TestClient returns: httpx2's Response when installed, as here
    from httpx2 import Response


class Changes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


class Env:
    def __init__(self, store: SqliteKeyStore, client: TestClient, changes: Changes) -> None:
        self.store = store
        self.client = client
        self.changes = changes
        self.admin, self.admin_key = store.create("demo", ("management",), name="admin")
        self.keys: list[str] = [self.admin_key]  # every key made: none may leak

    def new_key(
        self, project: str = "demo", scopes: tuple[str, ...] = ("inference",), **kw: Any
    ) -> tuple[StoredKey, str]:
        stored, key = self.store.create(project, scopes, **kw)
        self.keys.append(key)
        return stored, key

    def request(self, method: str, url: str, key: str | None = None, **kw: Any) -> Response:
        headers = dict(kw.pop("headers", {}))
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return self.client.request(method, url, headers=headers, **kw)

    def admin_call(self, method: str, url: str, **kw: Any) -> Response:
        return self.request(method, url, self.admin_key, **kw)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    store = SqliteKeyStore(tmp_path / "weir.db")
    changes = Changes()
    with TestClient(create_app(store, changes)) as client:
        yield Env(store, client, changes)
    store.close()


def error_of(response: Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["code"] == code
    return error


def assert_unauthenticated(response: Response, code: str) -> None:
    error = error_of(response, 401, code)
    assert error["type"] == "authentication_error"
    assert response.headers["www-authenticate"] == "Bearer"


def test_healthz_needs_no_key(env: Env) -> None:
    response = env.request("GET", "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["content-type"] == "application/json"


def test_missing_key(env: Env) -> None:
    assert_unauthenticated(env.request("GET", "/v1/keys"), "missing_api_key")
    response = env.request("GET", "/v1/keys", headers={"Authorization": "Bearer "})
    assert_unauthenticated(response, "missing_api_key")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer not-a-key",
        "Bearer wk_demo_tooshort",
        "Bearer wk_Demo_" + "a" * 43,
        "Basic dXNlcjpwYXNz",
        "wk_demo_" + "a" * 43,
    ],
)
def test_malformed_key(env: Env, header: str) -> None:
    response = env.request("GET", "/v1/keys", headers={"Authorization": header})
    assert_unauthenticated(response, "malformed_api_key")


def test_unknown_key(env: Env) -> None:
    response = env.request("GET", "/v1/keys", "wk_demo_" + "A" * 43)
    assert_unauthenticated(response, "invalid_api_key")


def test_expired_key(env: Env) -> None:
    _, key = env.new_key(scopes=("management",), expires_at_ms=now_ms() - 1000)
    assert_unauthenticated(env.request("GET", "/v1/keys", key), "expired_api_key")


def test_revoked_key(env: Env) -> None:
    stored, key = env.new_key(scopes=("management",))
    env.store.revoke(stored.id)
    assert_unauthenticated(env.request("GET", "/v1/keys", key), "revoked_api_key")


def test_key_without_management_scope(env: Env) -> None:
    _, key = env.new_key(scopes=("inference",))
    for method, url in [("GET", "/v1/keys"), ("POST", "/v1/keys"), ("GET", "/v1/keys/key_x")]:
        error = error_of(env.request(method, url, key), 403, "scope_insufficient")
        assert error["type"] == "permission_error"
    assert env.changes.count == 0


def test_other_projects_keys_are_not_found(env: Env) -> None:
    other, _ = env.new_key(project="other", scopes=("management", "inference"))
    for method, url in [
        ("GET", f"/v1/keys/{other.id}"),
        ("DELETE", f"/v1/keys/{other.id}"),
        ("POST", f"/v1/keys/{other.id}/rotate"),
    ]:
        error = error_of(env.admin_call(method, url), 404, "key_not_found")
        assert error["type"] == "invalid_request_error"
        assert error["param"] == "key_id"
    missing = error_of(env.admin_call("GET", "/v1/keys/key_0123456789abcdef"), 404, "key_not_found")
    mine = error_of(env.admin_call("GET", f"/v1/keys/{other.id}"), 404, "key_not_found")
    assert missing["message"].replace("key_0123456789abcdef", "") == mine["message"].replace(
        other.id, ""
    )  # "not yours" and "does not exist" read the same
    listed = env.admin_call("GET", "/v1/keys").json()
    assert [k["id"] for k in listed["data"]] == [env.admin.id]
    after = env.store.get(other.id)
    assert after is not None and after.state(now_ms()) == "active" and after.rotated_to is None
    assert env.changes.count == 0


def test_lifecycle(env: Env) -> None:
    # create
    response = env.admin_call(
        "POST", "/v1/keys", json={"name": "ci", "scopes": ["management", "inference"]}
    )
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    created = response.json()
    key = created.pop("key")
    env.keys.append(key)
    assert key.startswith("wk_demo_") and key.startswith(created["prefix"])
    assert created["object"] == "api_key" and created["project"] == "demo"
    assert created["name"] == "ci" and created["scopes"] == ["inference", "management"]
    assert created["state"] == "active" and created["expires_at"] is None
    assert "sha256" not in created
    assert env.changes.count == 1
    stored = env.store.find(key_hash(key))
    assert stored is not None and stored.id == created["id"]

    # list
    listed = env.admin_call("GET", "/v1/keys").json()
    assert listed["object"] == "list"
    assert [k["id"] for k in listed["data"]] == [env.admin.id, created["id"]]
    assert all("key" not in k for k in listed["data"])

    # get
    got = env.admin_call("GET", f"/v1/keys/{created['id']}")
    assert got.status_code == 200 and got.json() == created

    # rotate with the default grace: the old key keeps working for management
    response = env.request("POST", f"/v1/keys/{created['id']}/rotate", key)
    assert response.status_code == 201, response.text
    rotated = response.json()
    new_key = rotated.pop("key")
    env.keys.append(new_key)
    assert rotated.pop("replaces") == created["id"]
    assert rotated["id"] != created["id"] and rotated["scopes"] == created["scopes"]
    assert rotated["name"] == "ci" and rotated["state"] == "active"
    assert env.changes.count == 2
    old = env.admin_call("GET", f"/v1/keys/{created['id']}").json()
    assert old["rotated_to"] == rotated["id"] and old["state"] == "active"
    assert 86_000 <= old["expires_at"] - now_ms() // 1000 <= 86_401
    assert env.request("GET", "/v1/keys", key).status_code == 200
    assert env.request("GET", "/v1/keys", new_key).status_code == 200

    # rotate with no grace: the old key is expired at once
    response = env.request(
        "POST", f"/v1/keys/{rotated['id']}/rotate", new_key, json={"grace_period": 0}
    )
    assert response.status_code == 201, response.text
    third = response.json()
    env.keys.append(third["key"])
    assert third["replaces"] == rotated["id"]
    assert env.changes.count == 3
    assert_unauthenticated(env.request("GET", "/v1/keys", new_key), "expired_api_key")
    gone = env.admin_call("GET", f"/v1/keys/{rotated['id']}").json()
    assert gone["state"] == "expired"

    # delete, twice
    for _ in range(2):
        response = env.admin_call("DELETE", f"/v1/keys/{third['id']}")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["id"] == third["id"] and body["state"] == "revoked"
        assert body["revoked_at"] is not None and "key" not in body
    assert env.changes.count == 5
    assert_unauthenticated(env.request("GET", "/v1/keys", third["key"]), "revoked_api_key")

    # rotating a revoked key is the store's KeyStoreError: 400 with its message
    error = error_of(
        env.admin_call("POST", f"/v1/keys/{third['id']}/rotate"), 400, "invalid_key_operation"
    )
    assert error["type"] == "invalid_request_error" and "only an active key" in error["message"]
    assert env.changes.count == 5


def test_create_defaults_and_expiry(env: Env) -> None:
    response = env.admin_call("POST", "/v1/keys")  # no body at all: every default
    assert response.status_code == 201, response.text
    body = response.json()
    env.keys.append(body["key"])
    assert body["scopes"] == ["inference"] and body["name"] == ""
    response = env.admin_call("POST", "/v1/keys", json={"expires_in": 3600})
    assert response.status_code == 201
    body = response.json()
    env.keys.append(body["key"])
    assert 3599 <= body["expires_at"] - now_ms() // 1000 <= 3600
    assert response.headers["cache-control"] == "no-store"
    assert env.changes.count == 2


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": 3}, "name"),
        ({"name": "x" * 129}, "name"),
        ({"scopes": "inference"}, "scopes"),
        ({"scopes": []}, "scopes"),
        ({"scopes": ["inference", 1]}, "scopes"),
        ({"scopes": ["admin"]}, "scopes"),
        ({"expires_in": 0}, "expires_in"),
        ({"expires_in": -5}, "expires_in"),
        ({"expires_in": "3600"}, "expires_in"),
        ({"expires_in": 1.5}, "expires_in"),
        ({"expires_in": True}, "expires_in"),
        ({"expires_in": 10**30}, "expires_in"),
        ({"project": "other"}, "project"),
        ({"name": "ok", "surprise": 1}, "surprise"),
    ],
)
def test_create_rejects_bad_fields(env: Env, body: dict[str, Any], param: str) -> None:
    response = env.admin_call("POST", "/v1/keys", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert env.changes.count == 0
    assert len(env.store.list()) == 1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"grace_period": -1}, "grace_period"),
        ({"grace_period": "60"}, "grace_period"),
        ({"grace_period": None, "extra": 1}, "extra"),
    ],
)
def test_rotate_rejects_bad_fields(env: Env, body: dict[str, Any], param: str) -> None:
    response = env.admin_call("POST", f"/v1/keys/{env.admin.id}/rotate", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert env.changes.count == 0


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"{not json", "invalid_json"), (b"[1, 2]", "invalid_body"), (b'"x"', "invalid_body")],
)
def test_bad_json(env: Env, content: bytes, code: str) -> None:
    headers = {"Content-Type": "application/json"}
    for url in ["/v1/keys", f"/v1/keys/{env.admin.id}/rotate"]:
        response = env.admin_call("POST", url, content=content, headers=headers)
        error = error_of(response, 400, code)
        assert error["type"] == "invalid_request_error" and error["param"] is None
    assert env.changes.count == 0


def test_body_must_be_json(env: Env) -> None:
    for headers in [{"Content-Type": "text/plain"}, {}]:
        response = env.admin_call("POST", "/v1/keys", content=b'{"name": "x"}', headers=headers)
        error_of(response, 415, "unsupported_media_type")
    response = env.admin_call(
        "POST",
        "/v1/keys",
        content=b'{"name": "x"}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 201
    env.keys.append(response.json()["key"])


def test_body_size_cap(env: Env) -> None:
    headers = {"Content-Type": "application/json"}
    big = b'{"name": "' + b"x" * MAX_BODY_BYTES + b'"}'
    error_of(
        env.admin_call("POST", "/v1/keys", content=big, headers=headers), 413, "request_too_large"
    )

    def chunks() -> Iterator[bytes]:  # no Content-Length: the stream itself is capped
        yield b'{"name": "'
        for _ in range(MAX_BODY_BYTES // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    response = env.admin_call("POST", "/v1/keys", content=chunks(), headers=headers)
    error_of(response, 413, "request_too_large")
    assert env.changes.count == 0


def test_unknown_route_and_wrong_method(env: Env) -> None:
    for url in ["/v1/nope", "/v1/keys/", "/", "/v1/keys/key_0123456789abcdef/nope"]:
        error = error_of(env.admin_call("GET", url), 404, "unknown_url")
        assert error["type"] == "invalid_request_error"
    response = env.admin_call("PUT", "/v1/keys")
    error_of(response, 405, "method_not_allowed")
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
    error_of(env.admin_call("GET", f"/v1/keys/{env.admin.id}/rotate"), 405, "method_not_allowed")
    error_of(env.admin_call("POST", "/healthz"), 405, "method_not_allowed")
    assert env.changes.count == 0


def test_paths_with_a_key_are_not_echoed(env: Env) -> None:
    for method, url in [("GET", f"/v1/nope/{env.admin_key}"), ("PUT", f"/v1/keys/{env.admin_key}")]:
        response = env.admin_call(method, url)
        assert response.status_code in (404, 405)
        assert env.admin_key not in response.text
        assert env.admin_key[-20:] not in response.text
    response = env.admin_call("GET", f"/v1/keys/{env.admin_key}")
    error_of(response, 404, "key_not_found")
    assert env.admin_key[-20:] not in response.text


class FailingStore(SqliteKeyStore):
    """A store whose chosen operations fail the way a broken database does."""

    failing: frozenset[str] = frozenset()

    def find(self, sha256: bytes) -> StoredKey | None:
        if "find" in self.failing:
            raise sqlite3.OperationalError("disk I/O error")
        return super().find(sha256)

    def list(self, project: str | None = None) -> list[StoredKey]:
        if "list" in self.failing:
            raise RuntimeError("boom")
        return super().list(project)

    def create(
        self,
        project: str,
        scopes: tuple[str, ...],
        name: str = "",
        expires_at_ms: int | None = None,
    ) -> tuple[StoredKey, str]:
        if "create" in self.failing:
            # What SqliteKeyStore raises when its database fails.
            raise KeyStoreUnavailable(f"the key store {self.path} failed: database is locked")
        return super().create(project, scopes, name, expires_at_ms)


@pytest.mark.parametrize(
    ("failing", "method", "url"),
    [
        ("find", "GET", "/v1/keys"),
        ("list", "GET", "/v1/keys"),
        ("create", "POST", "/v1/keys"),
    ],
)
def test_store_failure_is_503(
    tmp_path: Path, failing: str, method: str, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = FailingStore(tmp_path / "weir.db")
    _, key = store.create("demo", ("management",))
    store.failing = frozenset({failing})
    changes = Changes()
    with TestClient(create_app(store, changes)) as client:
        response = client.request(method, url, headers={"Authorization": f"Bearer {key}"})
    error = error_of(response, 503, "store_unavailable")
    assert error["type"] == "server_error"
    assert "Traceback" not in response.text and str(tmp_path) not in response.text
    assert changes.count == 0
    assert key not in caplog.text
    store.close()


def test_closed_store_is_503(env: Env) -> None:
    env.store.close()
    error_of(env.admin_call("GET", "/v1/keys"), 503, "store_unavailable")


def test_on_change_failure_does_not_fail_the_write(tmp_path: Path) -> None:
    store = SqliteKeyStore(tmp_path / "weir.db")
    _, key = store.create("demo", ("management",))

    def broken() -> None:
        raise RuntimeError("push failed")

    with TestClient(create_app(store, broken)) as client:
        response = client.post("/v1/keys", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 201
    assert len(store.list("demo")) == 2
    store.close()


def test_no_key_text_leaks(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    other, _ = env.new_key(project="other", scopes=("management",))
    expired, expired_key = env.new_key(scopes=("management",), expires_at_ms=now_ms() - 1)
    revoked, revoked_key = env.new_key(scopes=("management",))
    env.store.revoke(revoked.id)
    _, inference_key = env.new_key()
    shown: list[Response] = []  # create/rotate responses: the only ones with a key
    others: list[Response] = []
    for key in [env.admin_key, expired_key, revoked_key, inference_key, "wk_demo_" + "Z" * 43]:
        others.append(env.request("GET", "/v1/keys", key))
    created = env.admin_call("POST", "/v1/keys", json={"scopes": ["management"]})
    shown.append(created)
    env.keys.append(created.json()["key"])
    rotated = env.admin_call("POST", f"/v1/keys/{created.json()['id']}/rotate")
    shown.append(rotated)
    env.keys.append(rotated.json()["key"])
    for method, url in [
        ("GET", "/v1/keys"),
        ("GET", f"/v1/keys/{created.json()['id']}"),
        ("GET", f"/v1/keys/{other.id}"),
        ("GET", f"/v1/keys/{expired.id}"),
        ("DELETE", f"/v1/keys/{created.json()['id']}"),
        ("POST", f"/v1/keys/{revoked.id}/rotate"),
        ("POST", "/v1/keys/nope/rotate"),
        ("GET", "/v1/missing"),
        ("PATCH", "/v1/keys"),
    ]:
        others.append(env.admin_call(method, url))
    others.append(env.admin_call("POST", "/v1/keys", json={"name": env.keys[-1][:8] + "x"}))
    assert all(r.status_code != 500 for r in others + shown)
    secrets = [s for k in env.keys for s in (k, key_hash(k).hex(), k.rpartition("_")[2])]
    for response in others:
        text = response.text + str(response.headers)
        assert not [s for s in secrets if s in text], (response.request.url, response.text)
    for response in shown:
        own = response.json()["key"]
        text = response.text.replace(own, "")
        assert not [s for s in secrets if s in text]
    assert caplog.records  # the writes were logged...
    assert not [s for s in secrets if s in caplog.text]  # ...without a key or a hash
