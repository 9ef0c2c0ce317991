"""The validated, typed form of the public config kinds (weir.dev/v1alpha1).

The loader (`controlplane.source_files`) turns YAML documents into these after schema and
reference validation; the translators read only these, never raw dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from weir.pii_types import DEFAULT_MAX_SCAN_BYTES

API_VERSION = "weir.dev/v1alpha1"


@dataclass(frozen=True)
class Pricing:
    """USD per 1M tokens."""

    input: float = 0.0
    cached_input: float = 0.0
    output: float = 0.0


QUALITY_TIERS = ("basic", "standard", "premium", "frontier")


@dataclass(frozen=True)
class BackendModel:
    """A model a Backend serves, under the name the provider knows it by."""

    name: str
    context_window: int | None = None
    max_output_tokens: int | None = None
    pricing: Pricing = field(default_factory=Pricing)
    tier: str = "standard"  # quality tier: basic, standard, premium, frontier

    @property
    def quality(self) -> int:
        """The quality tier as a rank, 1 (basic) to 4 (frontier)."""
        return QUALITY_TIERS.index(self.tier) + 1


@dataclass(frozen=True)
class Backend:
    """An upstream OpenAI-compatible provider."""

    name: str
    base_url: str  # e.g. http://127.0.0.1:9000/v1 ; scheme http or https
    models: tuple[BackendModel, ...]
    api_key_env: str | None = None  # name of the env var holding the provider key
    api_key_secret: tuple[str, str] | None = None  # (Secret name, key) holding it
    timeout_seconds: float = 300.0
    connect_timeout_seconds: float = 5.0
    weight: int = 1
    source_file: str = ""


@dataclass(frozen=True)
class ModelTarget:
    """One candidate for a model alias: which backend, and the backend's model name."""

    backend: str
    model: str


@dataclass(frozen=True)
class ModelAlias:
    """A model name clients ask for, and its ordered candidates (first = primary)."""

    name: str
    targets: tuple[ModelTarget, ...]


@dataclass(frozen=True)
class Endpoint:
    """`/{project}/{slug}/v1`: the models it offers."""

    name: str
    project: str
    slug: str
    models: tuple[ModelAlias, ...]
    source_file: str = ""
    pii_policy: str | None = None  # a PIIPolicy name
    service_tier: str | None = None  # a ServiceTier name
    auto: AutoRouting | None = None  # set: clients may ask for model "auto"


@dataclass(frozen=True)
class AutoRouting:
    """`model: "auto"`: the candidates (endpoint model names) and the default mode."""

    models: tuple[str, ...]
    mode: str = "balanced"


POLICY_STAGES = ("request", "response")


@dataclass(frozen=True)
class Policy:
    """A Rego module evaluated by ext_proc at one stage of the requests of some endpoints."""

    name: str
    stage: str  # one of POLICY_STAGES
    rego: str
    package: str  # "data.weir.tools", as the module declares it
    endpoints: tuple[str, ...] = ()  # Endpoint names; empty = every endpoint
    fail_open: bool = False
    source_file: str = ""

    def applies_to(self, endpoint: str) -> bool:
        return not self.endpoints or endpoint in self.endpoints


@dataclass(frozen=True)
class PIIPolicy:
    """What ext_proc does with personal data (weir.dev/v1alpha1 PIIPolicy)."""

    name: str
    action: str = "anonymize"  # anonymize | block | flag
    entity_types: tuple[str, ...] = ()  # empty = every type
    art9_detect: bool = True
    art9_action: str = "flag"  # flag | block | ignore
    restore_responses: bool = True
    max_scan_bytes: int = DEFAULT_MAX_SCAN_BYTES
    source_file: str = ""


@dataclass(frozen=True)
class Limits:
    """Limits over one scope (a key, or a project); 0 = not enforced."""

    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    concurrent_requests: int = 0


@dataclass(frozen=True)
class RetryBudget:
    """Fallbacks to later candidates: attempts per request, and Envoy's retry budget."""

    max_retries: int = 2
    percent: int = 20
    min_concurrent: int = 3


@dataclass(frozen=True)
class ServiceTier:
    """What the requests of an endpoint may use (weir.dev/v1alpha1 ServiceTier)."""

    name: str
    per_key: Limits = Limits()
    per_project: Limits = Limits()
    priority: str = "default"  # or "high"
    request_timeout_seconds: float | None = None  # None: the Backends' longest
    stream_idle_timeout_seconds: float | None = None  # streams; None: the request timeout
    first_byte_timeout_seconds: float | None = None  # non-streamed attempts; None: none
    retry_budget: RetryBudget = RetryBudget()
    source_file: str = ""


@dataclass(frozen=True)
class Secret:
    """A Kubernetes Secret (v1) that Backends take API keys from. Its values never
    appear in a repr, a log or an error."""

    name: str
    values: Mapping[str, str] = field(repr=False, default_factory=dict)
    source_file: str = ""


@dataclass(frozen=True)
class ConfigSet:
    """Every accepted resource of one consistent load."""

    backends: tuple[Backend, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    policies: tuple[Policy, ...] = ()
    pii_policies: tuple[PIIPolicy, ...] = ()
    service_tiers: tuple[ServiceTier, ...] = ()
    secrets: tuple[Secret, ...] = ()

    def backend(self, name: str) -> Backend | None:
        for b in self.backends:
            if b.name == name:
                return b
        return None

    def secret(self, name: str) -> Secret | None:
        return next((secret for secret in self.secrets if secret.name == name), None)

    def service_tier(self, name: str | None) -> ServiceTier | None:
        for tier in self.service_tiers:
            if tier.name == name:
                return tier
        return None
