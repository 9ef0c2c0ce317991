"""`weir keys create|list|revoke|rotate` (weir.keys_cli) through `weir.cli.main`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controlplane.api_keys import KEY_PATTERN, StoredKey, key_hash, now_ms
from controlplane.keystore import SqliteKeyStore, default_store_path
from weir.cli import main
from weir.keys_cli import parse_duration_ms, parse_scopes

DAY_MS = 86_400_000


def keys(tmp_path: Path, *args: str) -> int:
    """Run `weir keys <action> --state-dir tmp_path <args...>`."""
    action, *rest = args
    return main(["keys", action, "--state-dir", str(tmp_path), *rest])


def stored_keys(tmp_path: Path) -> list[StoredKey]:
    store = SqliteKeyStore(default_store_path(tmp_path))
    try:
        return store.list()
    finally:
        store.close()


def stored_key(tmp_path: Path, key_id: str) -> StoredKey:
    store = SqliteKeyStore(default_store_path(tmp_path))
    try:
        found = store.get(key_id)
    finally:
        store.close()
    assert found is not None
    return found


def create(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[dict[str, Any], str]:
    """Create a key with --json; its public form and the key."""
    assert keys(tmp_path, "create", "--project", "demo", "--json", *args) == 0
    body = json.loads(capsys.readouterr().out)
    assert isinstance(body, dict)
    key = body["key"]
    assert isinstance(key, str)
    return body, key


# --- create -------------------------------------------------------------------------------


def test_create_prints_the_key_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert keys(tmp_path, "create", "--project", "demo", "--name", "laptop") == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 1  # stdout is the key alone, for `$(weir keys create ...)`
    key = lines[0]
    match = KEY_PATTERN.match(key)
    assert match is not None and match.group(1) == "demo"
    assert out.count(key) == 1

    # stderr: the metadata, never the key
    assert key not in err
    assert key.rpartition("_")[2] not in err
    [stored] = stored_keys(tmp_path)
    assert stored.id in err
    assert "project demo" in err
    assert "scopes inference" in err
    assert "expires never" in err
    assert "only time" in err

    assert stored.sha256 == key_hash(key)
    assert stored.name == "laptop"
    assert stored.scopes == ("inference",)
    assert stored.expires_at_ms is None
    assert default_store_path(tmp_path).exists()


def test_create_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert keys(tmp_path, "create", "--project", "demo", "--json", "--name", "ci") == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert len(out.splitlines()) == 1
    body = json.loads(out)
    [stored] = stored_keys(tmp_path)
    assert body == {**stored.public(now_ms()), "key": body["key"]}
    assert KEY_PATTERN.match(body["key"])
    assert key_hash(body["key"]) == stored.sha256
    assert body["object"] == "api_key"
    assert body["state"] == "active"
    assert body["name"] == "ci"
    assert body["scopes"] == ["inference"]
    assert "sha256" not in body and "replaces" not in body


def test_create_with_scopes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body, _ = create(tmp_path, capsys, "--scopes", "inference,management")
    assert body["scopes"] == ["inference", "management"]
    assert stored_key(tmp_path, body["id"]).scopes == ("inference", "management")

    body, _ = create(tmp_path, capsys, "--scopes", "management")
    assert stored_key(tmp_path, body["id"]).scopes == ("management",)


def test_create_with_expiry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = now_ms()
    body, _ = create(tmp_path, capsys, "--expires", "30d")
    after = now_ms()
    expires = stored_key(tmp_path, body["id"]).expires_at_ms
    assert expires is not None
    assert before + 30 * DAY_MS <= expires <= after + 30 * DAY_MS
    assert body["expires_at"] == expires // 1000


def test_create_with_expiry_says_when(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert keys(tmp_path, "create", "--project", "demo", "--expires", "12h") == 0
    err = capsys.readouterr().err
    assert "expires never" not in err
    assert "expires 2" in err and "Z." in err  # an ISO-8601 UTC time


@pytest.mark.parametrize("scopes", ["admin", "inference,admin", "", ",", "Inference"])
def test_create_bad_scopes_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scopes: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        keys(tmp_path, "create", "--project", "demo", "--scopes", scopes)
    assert caught.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "--scopes" in err and "inference, management" in err
    assert not default_store_path(tmp_path).exists()


@pytest.mark.parametrize("duration", ["30", "30x", "d", "-1d", "1.5h", "30 days", "3651d"])
def test_create_bad_duration_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], duration: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        keys(tmp_path, "create", "--project", "demo", "--expires", duration)
    assert caught.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "--expires" in err
    assert not default_store_path(tmp_path).exists()


def test_create_needs_a_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        keys(tmp_path, "create")
    assert caught.value.code == 2
    assert "--project" in capsys.readouterr().err


def test_create_invalid_project_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert keys(tmp_path, "create", "--project", "Bad_Project") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("weir keys: invalid project 'Bad_Project'")
    assert stored_keys(tmp_path) == []


@pytest.mark.parametrize(
    ("text", "ms"),
    [("90s", 90_000), ("15m", 900_000), ("12h", 43_200_000), ("30d", 30 * DAY_MS), ("0s", 0)],
)
def test_parse_duration(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


def test_parse_scopes() -> None:
    assert parse_scopes("inference, management") == ("inference", "management")
    assert parse_scopes("management,") == ("management",)


# --- list ---------------------------------------------------------------------------------


def test_list_shows_no_key_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, first_key = create(tmp_path, capsys, "--name", "one")
    second, second_key = create(tmp_path, capsys, "--scopes", "management", "--name", "two")
    assert keys(tmp_path, "list") == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "PROJECT", "PREFIX", "SCOPES", "STATE", "NAME"]
    assert len(lines) == 3
    for body, key in ((first, first_key), (second, second_key)):
        assert key not in out
        secret = key.rpartition("_")[2]
        assert secret not in out
        assert secret[4:] not in out
        assert body["id"] in out
        assert body["prefix"] + "..." in out
        assert key.startswith(body["prefix"])
    row = next(line for line in lines if first["id"] in line)
    assert row.split() == [
        first["id"],
        "demo",
        first["prefix"] + "...",
        "inference",
        "active",
        "one",
    ]


def test_list_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body, key = create(tmp_path, capsys)
    assert keys(tmp_path, "list", "--json") == 0
    out = capsys.readouterr().out
    assert key not in out
    listing = json.loads(out)
    assert listing["object"] == "list"
    [item] = listing["data"]
    assert item == {k: v for k, v in body.items() if k != "key"}
    assert "key" not in item and "sha256" not in item


def test_list_by_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    demo, _ = create(tmp_path, capsys)
    assert keys(tmp_path, "create", "--project", "other", "--json") == 0
    other = json.loads(capsys.readouterr().out)

    assert keys(tmp_path, "list", "--project", "other") == 0
    out = capsys.readouterr().out
    assert other["id"] in out and demo["id"] not in out

    assert keys(tmp_path, "list", "--project", "nobody") == 0
    assert capsys.readouterr().out.strip() == "no API keys for project nobody"


def test_list_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert keys(tmp_path, "list") == 0
    assert capsys.readouterr().out.strip() == "no API keys"
    assert keys(tmp_path, "list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"object": "list", "data": []}


# --- revoke -------------------------------------------------------------------------------


def test_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body, key = create(tmp_path, capsys)
    assert keys(tmp_path, "revoke", body["id"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == f"revoked {body['id']} ({body['prefix']}...)"
    assert key not in out
    revoked = stored_key(tmp_path, body["id"])
    assert revoked.revoked_at_ms is not None
    assert revoked.state(now_ms()) == "revoked"

    assert keys(tmp_path, "list") == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if body["id"] in line)
    assert "revoked" in row.split()

    assert keys(tmp_path, "revoke", body["id"]) == 0  # again: fine
    capsys.readouterr()


def test_revoke_unknown_id_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert keys(tmp_path, "revoke", "key_doesnotexist") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == "weir keys: no API key with id 'key_doesnotexist'"


# --- rotate -------------------------------------------------------------------------------


def test_rotate_prints_a_new_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, old_key = create(tmp_path, capsys, "--scopes", "inference,management", "--name", "ci")
    before = now_ms()
    assert keys(tmp_path, "rotate", old["id"], "--grace", "1h") == 0
    after = now_ms()
    out, err = capsys.readouterr()
    [new_key] = out.splitlines()
    assert new_key != old_key
    match = KEY_PATTERN.match(new_key)
    assert match is not None and match.group(1) == "demo"
    assert new_key not in err and old_key not in err
    assert old["id"] in err and "grace period" in err

    retired = stored_key(tmp_path, old["id"])
    assert retired.rotated_to is not None
    new = stored_key(tmp_path, retired.rotated_to)
    assert new.sha256 == key_hash(new_key)
    assert (new.project, new.scopes, new.name) == ("demo", ("inference", "management"), "ci")
    assert new.id in err
    assert retired.expires_at_ms is not None
    assert before + 3_600_000 <= retired.expires_at_ms <= after + 3_600_000


def test_rotate_default_grace_is_a_day(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, _ = create(tmp_path, capsys)
    before = now_ms()
    assert keys(tmp_path, "rotate", old["id"]) == 0
    after = now_ms()
    capsys.readouterr()
    expires = stored_key(tmp_path, old["id"]).expires_at_ms
    assert expires is not None
    assert before + DAY_MS <= expires <= after + DAY_MS


def test_rotate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, old_key = create(tmp_path, capsys)
    assert keys(tmp_path, "rotate", old["id"], "--json") == 0
    out, err = capsys.readouterr()
    assert err == ""
    body = json.loads(out)
    assert body["replaces"] == old["id"]
    assert body["id"] != old["id"]
    assert body["key"] != old_key
    assert KEY_PATTERN.match(body["key"])
    assert stored_key(tmp_path, old["id"]).rotated_to == body["id"]


def test_rotate_revoked_key_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, _ = create(tmp_path, capsys)
    assert keys(tmp_path, "revoke", old["id"]) == 0
    capsys.readouterr()
    assert keys(tmp_path, "rotate", old["id"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("weir keys: ") and "revoked" in err
    assert len(stored_keys(tmp_path)) == 1


def test_rotate_unknown_id_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert keys(tmp_path, "rotate", "key_nope") == 1
    assert "no API key with id 'key_nope'" in capsys.readouterr().err


def test_rotate_bad_grace_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        keys(tmp_path, "rotate", "key_x", "--grace", "soon")
    assert caught.value.code == 2
    assert "--grace" in capsys.readouterr().err
