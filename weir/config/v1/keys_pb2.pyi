from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ApiKeySet(_message.Message):
    __slots__ = ("revision", "keys")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    revision: str
    keys: _containers.RepeatedCompositeFieldContainer[ApiKey]
    def __init__(self, revision: _Optional[str] = ..., keys: _Optional[_Iterable[_Union[ApiKey, _Mapping]]] = ...) -> None: ...

class ApiKey(_message.Message):
    __slots__ = ("id", "project", "sha256", "scopes", "expires_at_ms", "revoked_at_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    project: str
    sha256: bytes
    scopes: _containers.RepeatedScalarFieldContainer[str]
    expires_at_ms: int
    revoked_at_ms: int
    def __init__(self, id: _Optional[str] = ..., project: _Optional[str] = ..., sha256: _Optional[bytes] = ..., scopes: _Optional[_Iterable[str]] = ..., expires_at_ms: _Optional[int] = ..., revoked_at_ms: _Optional[int] = ...) -> None: ...
