from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RuntimeConfig(_message.Message):
    __slots__ = ("revision", "backends", "endpoints", "cluster_header", "endpoint_header", "max_request_bytes", "policies", "pii_policies", "service_tiers")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_HEADER_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_HEADER_FIELD_NUMBER: _ClassVar[int]
    MAX_REQUEST_BYTES_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    PII_POLICIES_FIELD_NUMBER: _ClassVar[int]
    SERVICE_TIERS_FIELD_NUMBER: _ClassVar[int]
    revision: str
    backends: _containers.RepeatedCompositeFieldContainer[Backend]
    endpoints: _containers.RepeatedCompositeFieldContainer[Endpoint]
    cluster_header: str
    endpoint_header: str
    max_request_bytes: int
    policies: _containers.RepeatedCompositeFieldContainer[Policy]
    pii_policies: _containers.RepeatedCompositeFieldContainer[PiiPolicy]
    service_tiers: _containers.RepeatedCompositeFieldContainer[ServiceTier]
    def __init__(self, revision: _Optional[str] = ..., backends: _Optional[_Iterable[_Union[Backend, _Mapping]]] = ..., endpoints: _Optional[_Iterable[_Union[Endpoint, _Mapping]]] = ..., cluster_header: _Optional[str] = ..., endpoint_header: _Optional[str] = ..., max_request_bytes: _Optional[int] = ..., policies: _Optional[_Iterable[_Union[Policy, _Mapping]]] = ..., pii_policies: _Optional[_Iterable[_Union[PiiPolicy, _Mapping]]] = ..., service_tiers: _Optional[_Iterable[_Union[ServiceTier, _Mapping]]] = ...) -> None: ...

class ServiceTier(_message.Message):
    __slots__ = ("name", "per_key", "per_project", "request_timeout_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PER_KEY_FIELD_NUMBER: _ClassVar[int]
    PER_PROJECT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    per_key: RateLimits
    per_project: RateLimits
    request_timeout_ms: int
    def __init__(self, name: _Optional[str] = ..., per_key: _Optional[_Union[RateLimits, _Mapping]] = ..., per_project: _Optional[_Union[RateLimits, _Mapping]] = ..., request_timeout_ms: _Optional[int] = ...) -> None: ...

class RateLimits(_message.Message):
    __slots__ = ("requests_per_minute", "tokens_per_minute", "concurrent_requests")
    REQUESTS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    CONCURRENT_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests_per_minute: int
    tokens_per_minute: int
    concurrent_requests: int
    def __init__(self, requests_per_minute: _Optional[int] = ..., tokens_per_minute: _Optional[int] = ..., concurrent_requests: _Optional[int] = ...) -> None: ...

class PiiPolicy(_message.Message):
    __slots__ = ("name", "action", "entity_types", "art9_detect", "art9_action", "restore_responses", "max_scan_bytes")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTION_UNSPECIFIED: _ClassVar[PiiPolicy.Action]
        ACTION_ANONYMIZE: _ClassVar[PiiPolicy.Action]
        ACTION_BLOCK: _ClassVar[PiiPolicy.Action]
        ACTION_FLAG: _ClassVar[PiiPolicy.Action]
    ACTION_UNSPECIFIED: PiiPolicy.Action
    ACTION_ANONYMIZE: PiiPolicy.Action
    ACTION_BLOCK: PiiPolicy.Action
    ACTION_FLAG: PiiPolicy.Action
    class Art9Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ART9_ACTION_UNSPECIFIED: _ClassVar[PiiPolicy.Art9Action]
        ART9_ACTION_FLAG: _ClassVar[PiiPolicy.Art9Action]
        ART9_ACTION_BLOCK: _ClassVar[PiiPolicy.Art9Action]
        ART9_ACTION_IGNORE: _ClassVar[PiiPolicy.Art9Action]
    ART9_ACTION_UNSPECIFIED: PiiPolicy.Art9Action
    ART9_ACTION_FLAG: PiiPolicy.Art9Action
    ART9_ACTION_BLOCK: PiiPolicy.Art9Action
    ART9_ACTION_IGNORE: PiiPolicy.Art9Action
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ENTITY_TYPES_FIELD_NUMBER: _ClassVar[int]
    ART9_DETECT_FIELD_NUMBER: _ClassVar[int]
    ART9_ACTION_FIELD_NUMBER: _ClassVar[int]
    RESTORE_RESPONSES_FIELD_NUMBER: _ClassVar[int]
    MAX_SCAN_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    action: PiiPolicy.Action
    entity_types: _containers.RepeatedScalarFieldContainer[str]
    art9_detect: bool
    art9_action: PiiPolicy.Art9Action
    restore_responses: bool
    max_scan_bytes: int
    def __init__(self, name: _Optional[str] = ..., action: _Optional[_Union[PiiPolicy.Action, str]] = ..., entity_types: _Optional[_Iterable[str]] = ..., art9_detect: _Optional[bool] = ..., art9_action: _Optional[_Union[PiiPolicy.Art9Action, str]] = ..., restore_responses: _Optional[bool] = ..., max_scan_bytes: _Optional[int] = ...) -> None: ...

class Policy(_message.Message):
    __slots__ = ("name", "stage", "module", "package", "endpoints", "fail_open")
    class Stage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STAGE_UNSPECIFIED: _ClassVar[Policy.Stage]
        STAGE_REQUEST: _ClassVar[Policy.Stage]
        STAGE_RESPONSE: _ClassVar[Policy.Stage]
    STAGE_UNSPECIFIED: Policy.Stage
    STAGE_REQUEST: Policy.Stage
    STAGE_RESPONSE: Policy.Stage
    NAME_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    FAIL_OPEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    stage: Policy.Stage
    module: str
    package: str
    endpoints: _containers.RepeatedScalarFieldContainer[str]
    fail_open: bool
    def __init__(self, name: _Optional[str] = ..., stage: _Optional[_Union[Policy.Stage, str]] = ..., module: _Optional[str] = ..., package: _Optional[str] = ..., endpoints: _Optional[_Iterable[str]] = ..., fail_open: _Optional[bool] = ...) -> None: ...

class Backend(_message.Message):
    __slots__ = ("name", "cluster", "path_prefix", "authority", "api_key", "models")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    PATH_PREFIX_FIELD_NUMBER: _ClassVar[int]
    AUTHORITY_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    cluster: str
    path_prefix: str
    authority: str
    api_key: str
    models: _containers.RepeatedCompositeFieldContainer[BackendModel]
    def __init__(self, name: _Optional[str] = ..., cluster: _Optional[str] = ..., path_prefix: _Optional[str] = ..., authority: _Optional[str] = ..., api_key: _Optional[str] = ..., models: _Optional[_Iterable[_Union[BackendModel, _Mapping]]] = ...) -> None: ...

class BackendModel(_message.Message):
    __slots__ = ("name", "context_window", "max_output_tokens", "input_price", "cached_input_price", "output_price", "quality_tier")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    INPUT_PRICE_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_PRICE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PRICE_FIELD_NUMBER: _ClassVar[int]
    QUALITY_TIER_FIELD_NUMBER: _ClassVar[int]
    name: str
    context_window: int
    max_output_tokens: int
    input_price: float
    cached_input_price: float
    output_price: float
    quality_tier: int
    def __init__(self, name: _Optional[str] = ..., context_window: _Optional[int] = ..., max_output_tokens: _Optional[int] = ..., input_price: _Optional[float] = ..., cached_input_price: _Optional[float] = ..., output_price: _Optional[float] = ..., quality_tier: _Optional[int] = ...) -> None: ...

class Endpoint(_message.Message):
    __slots__ = ("name", "project", "slug", "models", "pii_policy", "service_tier", "auto_routing")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    SLUG_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    PII_POLICY_FIELD_NUMBER: _ClassVar[int]
    SERVICE_TIER_FIELD_NUMBER: _ClassVar[int]
    AUTO_ROUTING_FIELD_NUMBER: _ClassVar[int]
    name: str
    project: str
    slug: str
    models: _containers.RepeatedCompositeFieldContainer[ModelRoute]
    pii_policy: str
    service_tier: str
    auto_routing: AutoRouting
    def __init__(self, name: _Optional[str] = ..., project: _Optional[str] = ..., slug: _Optional[str] = ..., models: _Optional[_Iterable[_Union[ModelRoute, _Mapping]]] = ..., pii_policy: _Optional[str] = ..., service_tier: _Optional[str] = ..., auto_routing: _Optional[_Union[AutoRouting, _Mapping]] = ...) -> None: ...

class AutoRouting(_message.Message):
    __slots__ = ("models", "mode")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedScalarFieldContainer[str]
    mode: str
    def __init__(self, models: _Optional[_Iterable[str]] = ..., mode: _Optional[str] = ...) -> None: ...

class ModelRoute(_message.Message):
    __slots__ = ("name", "targets", "fallback_cluster")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    name: str
    targets: _containers.RepeatedCompositeFieldContainer[ModelTarget]
    fallback_cluster: str
    def __init__(self, name: _Optional[str] = ..., targets: _Optional[_Iterable[_Union[ModelTarget, _Mapping]]] = ..., fallback_cluster: _Optional[str] = ...) -> None: ...

class ModelTarget(_message.Message):
    __slots__ = ("backend", "model")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    backend: str
    model: str
    def __init__(self, backend: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...
