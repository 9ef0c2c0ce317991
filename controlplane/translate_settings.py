"""Translate the stored project settings into the ProjectSettingsSet ext_proc applies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from controlplane.settings_store import PiiProjectSettings
from controlplane.snapshot import SETTINGS, TypedResources
from weir.config.v1 import settings_pb2

SETTINGS_RESOURCE_NAME: Final = "settings"


def settings_set(pii: Mapping[str, PiiProjectSettings]) -> settings_pb2.ProjectSettingsSet:
    message = settings_pb2.ProjectSettingsSet()
    for project, settings in sorted(pii.items()):
        fields = settings_pb2.PiiSettings(
            enabled_types=list(settings.enabled_types or ()),
            has_enabled_types=settings.enabled_types is not None,
        )
        if settings.enabled is not None:
            fields.enabled = settings.enabled
        if settings.art9_detection is not None:
            fields.art9_detection = settings.art9_detection
        if settings.art9_action is not None:
            fields.art9_action = settings.art9_action
        message.projects.append(settings_pb2.ProjectSettings(project=project, pii=fields))
    return message


def settings_resources(pii: Mapping[str, PiiProjectSettings]) -> TypedResources:
    return TypedResources.revised(SETTINGS, SETTINGS_RESOURCE_NAME, settings_set(pii))
