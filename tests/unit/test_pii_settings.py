"""PII settings per project: the management API, the store, the xDS set, and how
ext_proc applies them on top of an endpoint's PIIPolicy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from controlplane.keystore import SqliteKeyStore
from controlplane.management_api import create_app
from controlplane.settings_store import PiiProjectSettings, SettingsStore
from controlplane.translate_settings import settings_resources, settings_set
from extproc.pii_request import ANONYMIZE, BLOCK, FLAG, PiiSettings
from extproc.project_settings import PROJECT_DEFAULT, ProjectSettingsIndex

POLICY = PiiSettings("strict", BLOCK, frozenset({"EMAIL", "PESEL"}), True, BLOCK, True)


class Env:
    def __init__(self, store: SqliteKeyStore, settings: SettingsStore, client: TestClient):
        self.store, self.settings, self.client = store, settings, client
        self.changes = 0
        _, self.key = store.create("demo", ("management",))
        _, self.other = store.create("other", ("management",))

    def call(self, method: str, key: str | None = None, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        return self.client.request(method, "/v1/settings/pii", headers=headers, **kw)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    store = SqliteKeyStore(tmp_path / "weir.db")
    settings = SettingsStore(store)
    holder: list[Env] = []

    def changed() -> None:
        holder[0].changes += 1

    with TestClient(create_app(store, changed, settings)) as client:
        holder.append(Env(store, settings, client))
        yield holder[0]
    store.close()


def test_get_shows_nothing_set_then_patch_sets_persists_and_is_per_project(env: Env) -> None:
    got = env.call("GET")
    assert got.status_code == 200
    assert got.json() == {
        "object": "settings.pii",
        "project": "demo",
        "enabled": None,
        "enabled_types": None,
        "art9_detection": None,
        "art9_action": None,
    }
    before = env.store.revision()
    patched = env.call(
        "PATCH", json={"enabled": True, "enabled_types": ["PESEL", "EMAIL", "EMAIL"]}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["enabled_types"] == ["EMAIL", "PESEL"]  # canonical order, once
    assert env.store.revision() > before and env.changes == 1
    again = env.call("PATCH", json={"art9_action": "block"})
    assert again.json()["enabled"] is True  # earlier fields stay
    assert env.settings.pii("demo") == PiiProjectSettings(True, ("EMAIL", "PESEL"), None, "block")
    assert env.call("GET", env.other).json()["enabled"] is None  # another project's own
    assert env.call("PATCH", json={"enabled": None}).json()["enabled"] is None  # null unsets


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"enabled": "yes"}, "enabled must be true, false or null"),
        ({"enabled_types": ["EMAIL", "SSN"]}, "unknown type 'SSN'"),
        ({"art9_action": "shout"}, "art9_action must be one of"),
        ({"colour": 1}, "unknown setting 'colour'"),
    ],
)
def test_bad_settings_are_400_and_change_nothing(env: Env, body: Any, needle: str) -> None:
    response = env.call("PATCH", json=body)
    assert response.status_code == 400
    assert needle in response.json()["error"]["message"]
    assert env.changes == 0
    assert env.settings.pii("demo") == PiiProjectSettings()


def test_settings_need_a_management_key(env: Env) -> None:
    _, inference = env.store.create("demo", ("inference",))
    assert env.call("GET", inference).status_code == 403
    assert env.client.get("/v1/settings/pii").status_code == 401


def test_the_xds_set_carries_what_is_set_and_ext_proc_applies_it() -> None:
    stored = {
        "demo": PiiProjectSettings(None, ("EMAIL",), False, None),
        "off": PiiProjectSettings(False),
        "on": PiiProjectSettings(True, None, None, "ignore"),
    }
    index = ProjectSettingsIndex.compile(settings_set(stored))
    assert index.effective_pii("demo", POLICY) == PiiSettings(
        "strict", BLOCK, frozenset({"EMAIL"}), False, BLOCK, True
    )
    assert index.effective_pii("off", POLICY) is None
    assert index.effective_pii("on", None) == PiiSettings(
        PROJECT_DEFAULT.name, ANONYMIZE, None, True, "ignore", True
    )
    assert index.effective_pii("nobody", POLICY) is POLICY
    assert index.effective_pii("nobody", None) is None
    assert PROJECT_DEFAULT.art9_action == FLAG
    assert settings_resources(stored).version == settings_resources(dict(stored)).version
