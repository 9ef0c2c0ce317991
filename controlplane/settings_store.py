"""Per-project settings changed at run time (the management API), kept in the store.

They live in the same store as the keys (the SQLite file or the PostgreSQL database) and
share its revision, so the watcher that publishes keys publishes them too, within a
fraction of a second of a change, to every ext_proc replica. Today a project's settings
are its PII settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from controlplane.errors import KeyStoreError
from controlplane.keystore import SqlStore
from weir.pii_types import ART9_ACTIONS, ENTITY_TYPES

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS project_settings (
    project TEXT PRIMARY KEY,
    pii TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
)
"""
PII_FIELDS: Final = ("enabled", "enabled_types", "art9_detection", "art9_action")


class SettingsInvalid(KeyStoreError):
    """A settings change with a bad field; the message names it."""


@dataclass(frozen=True)
class PiiProjectSettings:
    """What a project set; None: not set (the endpoint's PIIPolicy decides)."""

    enabled: bool | None = None
    enabled_types: tuple[str, ...] | None = None
    art9_detection: bool | None = None
    art9_action: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "enabled_types": list(self.enabled_types) if self.enabled_types is not None else None,
            "art9_detection": self.art9_detection,
            "art9_action": self.art9_action,
        }

    def patched(self, changes: Any) -> PiiProjectSettings:
        """These settings with the fields of a PATCH body changed (null unsets one).
        Raises SettingsInvalid."""
        if not isinstance(changes, dict):
            raise SettingsInvalid("the body must be a JSON object of settings")
        unknown = sorted(set(changes) - set(PII_FIELDS))
        if unknown:
            raise SettingsInvalid(
                f"unknown setting {unknown[0]!r} (known: {', '.join(PII_FIELDS)})"
            )
        current = self.as_json()
        for key, value in changes.items():
            current[key] = _checked(key, value)
        types = current["enabled_types"]
        return PiiProjectSettings(
            current["enabled"],
            tuple(types) if types is not None else None,
            current["art9_detection"],
            current["art9_action"],
        )


def _checked(key: str, value: Any) -> Any:
    if value is None:
        return None
    if key in ("enabled", "art9_detection"):
        if not isinstance(value, bool):
            raise SettingsInvalid(f"{key} must be true, false or null")
        return value
    if key == "art9_action":
        if value not in ART9_ACTIONS:
            raise SettingsInvalid(f"art9_action must be one of: {', '.join(ART9_ACTIONS)}")
        return value
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise SettingsInvalid("enabled_types must be a list of type names or null")
    unknown = [t for t in value if t not in ENTITY_TYPES]
    if unknown:
        raise SettingsInvalid(
            f"enabled_types: unknown type {unknown[0]!r} (known: {', '.join(ENTITY_TYPES)})"
        )
    return [t for t in ENTITY_TYPES if t in value]  # canonical order, no duplicates


class SettingsStore:
    def __init__(self, store: SqlStore) -> None:
        self._store = store
        with store.transaction() as db:
            db.execute(_SCHEMA)

    def pii(self, project: str) -> PiiProjectSettings:
        rows = self._store.query("SELECT pii FROM project_settings WHERE project = ?", (project,))
        return _pii_of(rows[0][0]) if rows else PiiProjectSettings()

    def set_pii(self, project: str, settings: PiiProjectSettings, now_ms: int) -> None:
        with self._store.transaction() as db:
            db.execute(
                "INSERT INTO project_settings (project, pii, updated_at_ms) VALUES (?, ?, ?) "
                "ON CONFLICT (project) DO UPDATE SET pii = excluded.pii, "
                "updated_at_ms = excluded.updated_at_ms",
                (project, json.dumps(settings.as_json()), now_ms),
            )

    def all_pii(self) -> dict[str, PiiProjectSettings]:
        rows = self._store.query("SELECT project, pii FROM project_settings ORDER BY project")
        return {project: _pii_of(text) for project, text in rows}


def _pii_of(text: str) -> PiiProjectSettings:
    try:
        return PiiProjectSettings().patched(json.loads(text))
    except (ValueError, SettingsInvalid):
        return PiiProjectSettings()  # unreadable row: as if nothing were set
