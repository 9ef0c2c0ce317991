"""Per-project settings from the management API, applied on top of the config.

Today: PII settings. A project's fields, when set, override the PIIPolicy of each of its
endpoints: `enabled: false` turns PII processing off, `enabled: true` turns it on (an
endpoint without a PIIPolicy anonymizes every type), `enabled_types` narrows the types,
`art9_detection` and `art9_action` replace the policy's Art. 9 handling.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from extproc.pii_request import ANONYMIZE, FLAG, PiiSettings
from weir.config.v1 import settings_pb2
from weir.pii_types import ART9_ACTIONS, ENTITY_TYPES

PROJECT_DEFAULT: Final = PiiSettings("project-settings", ANONYMIZE, None, True, FLAG, True)
"""What `enabled: true` means for an endpoint without a PIIPolicy."""


class SettingsInvalid(Exception):
    """The ProjectSettingsSet from the control plane is not usable (it is NACKed)."""


@dataclass(frozen=True, slots=True)
class PiiOverride:
    enabled: bool | None
    types: frozenset[str] | None  # None: not set
    art9_detect: bool | None
    art9_action: str | None

    def apply(self, policy: PiiSettings | None) -> PiiSettings | None:
        if self.enabled is False:
            return None
        if policy is None:
            if self.enabled is not True:
                return None
            policy = PROJECT_DEFAULT
        changes: dict[str, object] = {}
        if self.types is not None:
            changes["types"] = self.types
        if self.art9_detect is not None:
            changes["art9_detect"] = self.art9_detect
        if self.art9_action is not None:
            changes["art9_action"] = self.art9_action
        return dataclasses.replace(policy, **changes) if changes else policy  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class ProjectSettingsIndex:
    revision: str
    pii: MappingProxyType[str, PiiOverride]

    def effective_pii(self, project: str, policy: PiiSettings | None) -> PiiSettings | None:
        override = self.pii.get(project)
        return policy if override is None else override.apply(policy)

    @classmethod
    def compile(cls, message: settings_pb2.ProjectSettingsSet) -> ProjectSettingsIndex:
        pii: dict[str, PiiOverride] = {}
        for project in message.projects:
            fields = project.pii
            unknown = set(fields.enabled_types) - set(ENTITY_TYPES)
            if not project.project or unknown:
                raise SettingsInvalid(f"project settings {project.project!r} are not valid")
            action = fields.art9_action if fields.HasField("art9_action") else None
            if action is not None and action not in ART9_ACTIONS:
                raise SettingsInvalid(f"project {project.project!r}: bad art9_action {action!r}")
            pii[project.project] = PiiOverride(
                fields.enabled if fields.HasField("enabled") else None,
                frozenset(fields.enabled_types) if fields.has_enabled_types else None,
                fields.art9_detection if fields.HasField("art9_detection") else None,
                action,
            )
        return cls(message.revision, MappingProxyType(pii))


EMPTY: Final = ProjectSettingsIndex("", MappingProxyType({}))


class ProjectSettingsHolder:
    """The settings in force; swapped whole."""

    def __init__(self) -> None:
        self.index: ProjectSettingsIndex | None = None
