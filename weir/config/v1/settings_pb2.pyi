from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProjectSettingsSet(_message.Message):
    __slots__ = ("revision", "projects")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    revision: str
    projects: _containers.RepeatedCompositeFieldContainer[ProjectSettings]
    def __init__(self, revision: _Optional[str] = ..., projects: _Optional[_Iterable[_Union[ProjectSettings, _Mapping]]] = ...) -> None: ...

class ProjectSettings(_message.Message):
    __slots__ = ("project", "pii")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    PII_FIELD_NUMBER: _ClassVar[int]
    project: str
    pii: PiiSettings
    def __init__(self, project: _Optional[str] = ..., pii: _Optional[_Union[PiiSettings, _Mapping]] = ...) -> None: ...

class PiiSettings(_message.Message):
    __slots__ = ("enabled", "enabled_types", "has_enabled_types", "art9_detection", "art9_action")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    ENABLED_TYPES_FIELD_NUMBER: _ClassVar[int]
    HAS_ENABLED_TYPES_FIELD_NUMBER: _ClassVar[int]
    ART9_DETECTION_FIELD_NUMBER: _ClassVar[int]
    ART9_ACTION_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    enabled_types: _containers.RepeatedScalarFieldContainer[str]
    has_enabled_types: bool
    art9_detection: bool
    art9_action: str
    def __init__(self, enabled: _Optional[bool] = ..., enabled_types: _Optional[_Iterable[str]] = ..., has_enabled_types: _Optional[bool] = ..., art9_detection: _Optional[bool] = ..., art9_action: _Optional[str] = ...) -> None: ...
