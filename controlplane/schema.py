"""JSON Schemas of the public config kinds (weir.dev/v1alpha1): the single source of truth.

The same schemas validate resources read from a directory today and will be turned into the
OpenAPI v3 schemas of the Kubernetes CRDs later, so they are written as *structural* schemas
(JSON Schema draft 2020-12 dialect, the subset Kubernetes accepts):

* every node has a `type`; every property has a `description` (used for docs and CRDs);
* every object either lists its `properties` (and then has `additionalProperties: false`, so our
  validator rejects unknown fields -- a CRD generator drops that keyword, as Kubernetes prunes
  unknown fields instead), or is a string map (`additionalProperties: {type: string}`), or is
  explicitly free-form (`x-kubernetes-preserve-unknown-fields`, only `status`);
* no `$ref`, `anyOf`, `oneOf`, `allOf` or `not`;
* `pattern`s use the syntax common to Python `re`, ECMA-262 and RE2 (Go), always anchored.

To add a kind: write its schema here, add it to `KINDS`, then add a converter in
`controlplane.validate`.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from controlplane.model import API_VERSION
from weir.pii_types import ART9_ACTIONS, DEFAULT_MAX_SCAN_BYTES, ENTITY_TYPES, PII_ACTIONS

JSONSchema = dict[str, Any]

# The most models a Backend or an Endpoint lists (it also bounds the cost of the CRDs'
# CEL rules over them).
MAX_MODELS: Final = 256

# --- patterns ---------------------------------------------------------------------------------

NAME_PATTERN: Final = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
"""A DNS-1123 label: lowercase alphanumerics and '-', at most 63 chars (resource names)."""

SLUG_PATTERN: Final = NAME_PATTERN
"""An Endpoint's project and slug: the same rules as a DNS-1123 label (they appear in URLs)."""

DURATION_PATTERN: Final = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
"""A Go-style duration: one or more number+unit, units ms, s, m, h (e.g. 30s, 500ms, 1m30s)."""

BASE_URL_PATTERN: Final = (
    r"^https?://"
    r"([A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"  # host name, IPv4 or [IPv6]
    r"(:[0-9]{1,5})?"  # optional port
    r"(/[^\s?#]*)?$"  # optional path; no query, fragment or credentials
)
"""An http:// or https:// URL with a host, an optional port and an optional path."""

ENV_VAR_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_]*$"
"""The name of an environment variable."""

MODEL_NAME_PATTERN: Final = r"^\S+$"

MAX_TOKENS: Final = 1_000_000_000
"""Upper bound of token counts (contextWindow, maxOutputTokens): far above any model, and
within the 32-bit fields they travel in."""
"""A model name as a client or a provider spells it: any non-empty text without whitespace."""

# A Kubernetes Secret's name (a DNS subdomain) and a key of its data.
SECRET_NAME_PATTERN: Final = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
SECRET_KEY_PATTERN: Final = r"^[-._a-zA-Z0-9]+$"

PATTERN_HINTS: Final[dict[str, tuple[str, str]]] = {
    NAME_PATTERN: (
        "name",
        "use at most 63 lowercase letters, digits and '-', starting and ending with a letter "
        "or digit",
    ),
    DURATION_PATTERN: ("duration", "use a number with a unit ms, s, m or h, like 30s or 500ms"),
    BASE_URL_PATTERN: (
        "URL",
        "use http:// or https:// with a host, an optional port and an optional path, "
        "like https://api.openai.com/v1",
    ),
    ENV_VAR_PATTERN: (
        "environment variable name",
        "give the name of the variable holding the value, like OPENAI_API_KEY, not the value",
    ),
    MODEL_NAME_PATTERN: ("model name", "use non-empty text without spaces"),
    SECRET_NAME_PATTERN: (
        "Secret name",
        "use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
    ),
    SECRET_KEY_PATTERN: ("Secret key", "use letters, digits, '-', '_' and '.'"),
}
"""(what it is, how to write it) for each pattern: error messages use these, not the regex.
`SLUG_PATTERN` is `NAME_PATTERN`, so they share one."""

# --- building blocks --------------------------------------------------------------------------


def _obj(
    description: str, properties: dict[str, JSONSchema], required: list[str] | None = None
) -> JSONSchema:
    schema: JSONSchema = {
        "type": "object",
        "description": description,
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return schema


def _str(description: str, pattern: str | None = None, **extra: Any) -> JSONSchema:
    schema: JSONSchema = {"type": "string", "description": description}
    if pattern is not None:
        schema["pattern"] = pattern
    schema.update(extra)
    return schema


def _string_map(description: str) -> JSONSchema:
    return {
        "type": "object",
        "description": description,
        "additionalProperties": {"type": "string"},
    }


def _resource(kind: str, description: str, spec: JSONSchema) -> JSONSchema:
    return _obj(
        description,
        {
            "apiVersion": _str(
                f"The config API version; must be {API_VERSION}.", const=API_VERSION
            ),
            "kind": _str(f"The resource kind; must be {kind}.", const=kind),
            "metadata": METADATA_SCHEMA,
            "spec": spec,
            "status": {
                "type": "object",
                "description": "Written by the control plane when running on Kubernetes; "
                "ignored on input.",
                "x-kubernetes-preserve-unknown-fields": True,
            },
        },
        required=["apiVersion", "kind", "metadata", "spec"],
    )


METADATA_SCHEMA: Final[JSONSchema] = _obj(
    "Standard object metadata; only these fields are read.",
    {
        "name": _str(
            "The resource's name, unique among resources of its kind. "
            "A DNS-1123 label: lowercase letters, digits and '-', at most 63 characters.",
            NAME_PATTERN,
            maxLength=63,
        ),
        "namespace": _str(
            "The Kubernetes namespace; informational when read from a directory.",
            NAME_PATTERN,
            maxLength=63,
        ),
        "labels": _string_map("Arbitrary string key/value labels; not interpreted by Weir."),
        "annotations": _string_map(
            "Arbitrary string key/value annotations; not interpreted by Weir."
        ),
    },
    required=["name"],
)

# --- Backend ----------------------------------------------------------------------------------

PRICING_SCHEMA: Final[JSONSchema] = _obj(
    "Provider list prices in USD per 1M tokens, used for cost accounting. Missing prices are 0.",
    {
        "input": {
            "type": "number",
            "minimum": 0,
            "default": 0,
            "description": "USD per 1M uncached prompt (input) tokens.",
        },
        "cachedInput": {
            "type": "number",
            "minimum": 0,
            "default": 0,
            "description": "USD per 1M prompt tokens served from the provider's prompt cache.",
        },
        "output": {
            "type": "number",
            "minimum": 0,
            "default": 0,
            "description": "USD per 1M completion (output) tokens.",
        },
    },
)

BACKEND_MODEL_SCHEMA: Final[JSONSchema] = _obj(
    "A model the backend serves.",
    {
        "name": _str(
            "The model's name as the provider knows it (sent upstream as `model`).",
            MODEL_NAME_PATTERN,
            maxLength=256,
        ),
        "contextWindow": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_TOKENS,
            "description": "The model's context window in tokens (prompt + completion).",
        },
        "maxOutputTokens": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_TOKENS,
            "description": "The most completion tokens the model can produce in one response.",
        },
        "tier": {
            "type": "string",
            "enum": ["basic", "standard", "premium", "frontier"],
            "default": "standard",
            "description": 'The model\'s quality tier, lowest first: what `model: "auto"` '
            "routing weighs against price and latency.",
        },
        "pricing": PRICING_SCHEMA,
    },
    required=["name"],
)

BACKEND_SPEC_SCHEMA: Final[JSONSchema] = _obj(
    "An upstream OpenAI-compatible provider and the models it serves.",
    {
        "baseURL": _str(
            "The provider's OpenAI-compatible API base URL, e.g. https://api.openai.com/v1; "
            "request paths such as /chat/completions are appended to it.",
            BASE_URL_PATTERN,
            maxLength=2048,
        ),
        "apiKey": _obj(
            "Where the provider API key comes from: exactly one of `env` and `secretRef`. "
            "Omit for providers that need no key.",
            {
                "env": _str(
                    "The name of the environment variable (of the control plane process) "
                    "that holds the key.",
                    ENV_VAR_PATTERN,
                ),
                "secretRef": _obj(
                    "A key of a Kubernetes Secret (`apiVersion: v1`, `kind: Secret`) that "
                    "holds the API key, read from the config directory.",
                    {
                        "name": _str(
                            "The Secret's metadata.name.", SECRET_NAME_PATTERN, maxLength=253
                        ),
                        "key": _str(
                            "The key in the Secret's data (or stringData).",
                            SECRET_KEY_PATTERN,
                            maxLength=253,
                        ),
                    },
                    required=["name", "key"],
                ),
            },
        ),
        "timeout": _str(
            "The longest a whole upstream request may take (e.g. 300s, 2m).",
            DURATION_PATTERN,
            default="300s",
        ),
        "connectTimeout": _str(
            "The longest connecting to the provider may take (e.g. 5s, 500ms).",
            DURATION_PATTERN,
            default="5s",
        ),
        "weight": {
            "type": "integer",
            "minimum": 1,
            "default": 1,
            "description": "Relative share of traffic when several backends serve the same "
            "model at the same priority.",
        },
        "models": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_MODELS,
            "description": "The models this backend serves; names must be unique.",
            "items": BACKEND_MODEL_SCHEMA,
        },
    },
    required=["baseURL", "models"],
)

BACKEND_SCHEMA: Final[JSONSchema] = _resource(
    "Backend", "A Backend: an upstream OpenAI-compatible provider.", BACKEND_SPEC_SCHEMA
)

# --- Endpoint ---------------------------------------------------------------------------------

MODEL_TARGET_SCHEMA: Final[JSONSchema] = _obj(
    "One candidate that can serve the model: a backend and the backend's model name.",
    {
        "backend": _str("The name of a Backend resource.", NAME_PATTERN, maxLength=63),
        "model": _str(
            "A model name listed in that Backend's spec.models.", MODEL_NAME_PATTERN, maxLength=256
        ),
    },
    required=["backend", "model"],
)

MODEL_ALIAS_SCHEMA: Final[JSONSchema] = _obj(
    "A model name clients may request, and where requests for it go.",
    {
        "name": _str(
            "The name clients send as `model`; unique within the endpoint.",
            MODEL_NAME_PATTERN,
            maxLength=256,
        ),
        "targets": {
            "type": "array",
            "minItems": 1,
            "description": "Ordered candidates: the first is the primary, later ones are "
            "fallbacks tried in order.",
            "items": MODEL_TARGET_SCHEMA,
        },
    },
    required=["name", "targets"],
)

ENDPOINT_SPEC_SCHEMA: Final[JSONSchema] = _obj(
    "An OpenAI-compatible API served at /{project}/{slug}/v1 and the models it offers.",
    {
        "project": _str(
            "The project, the first URL path segment. Lowercase letters, digits and '-'.",
            SLUG_PATTERN,
            maxLength=63,
        ),
        "slug": _str(
            "The endpoint's slug within the project, the second URL path segment. "
            "Lowercase letters, digits and '-'.",
            SLUG_PATTERN,
            maxLength=63,
        ),
        "models": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_MODELS,
            "description": "The models clients of this endpoint may request; names must be unique.",
            "items": MODEL_ALIAS_SCHEMA,
        },
        "piiPolicy": _str(
            "The name of the PIIPolicy applied to this endpoint's requests and answers; "
            "omit it for none.",
            NAME_PATTERN,
            maxLength=63,
        ),
        "serviceTier": _str(
            "The name of the ServiceTier whose limits apply to this endpoint's requests; "
            "omit it for no limits.",
            NAME_PATTERN,
            maxLength=63,
        ),
        "auto": _obj(
            'Lets clients ask for `model: "auto"`: Weir picks one of this endpoint\'s '
            "models from the request's routing hints, the models' quality tiers and prices, "
            "and the latency they have shown lately.",
            {
                "models": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_MODELS,
                    "items": _str("A model of this endpoint.", MODEL_NAME_PATTERN, maxLength=256),
                    "description": "The candidates, names from spec.models (default: all).",
                },
                "mode": {
                    "type": "string",
                    "enum": ["fast", "balanced", "quality", "cost"],
                    "default": "balanced",
                    "description": "The routing mode when the request gives none.",
                },
            },
        ),
    },
    required=["project", "slug", "models"],
)

ENDPOINT_SCHEMA: Final[JSONSchema] = _resource(
    "Endpoint",
    "An Endpoint: an OpenAI-compatible API for one project, mapping model names to backends.",
    ENDPOINT_SPEC_SCHEMA,
)

# --- Policy -----------------------------------------------------------------------------------

POLICY_SPEC_SCHEMA: Final[JSONSchema] = _obj(
    "A Rego module that ext_proc evaluates in-process on the requests of some endpoints. "
    "The module's `deny` set (strings) refuses a request or a response when it is not "
    "empty; at the request stage its `patch` object changes request fields.",
    {
        "stage": _str(
            "When it runs: `request` (before the upstream is called) or `response` (on the "
            "answer: on streams at each tool call as soon as its arguments are complete and "
            "on the final message).",
            enum=["request", "response"],
        ),
        "endpoints": {
            "type": "array",
            "description": "The names of the Endpoint resources it applies to; omit it to "
            "apply the policy to every endpoint.",
            "items": _str("The name of an Endpoint resource.", NAME_PATTERN, maxLength=63),
        },
        "failOpen": {
            "type": "boolean",
            "default": False,
            "description": "When evaluating the policy fails at run time: false (the default) "
            "answers 500 `policy_error`; true lets the request go on as if the policy had "
            "allowed it. Either way the failure is logged and recorded.",
        },
        "rego": _str(
            "The Rego module (Rego v1 syntax: `if` and `contains`). It declares a package "
            "and defines `deny` (a set of reasons) and, at the request stage, optionally "
            "`patch` (an object of request fields to set; null removes a field).",
            minLength=1,
            maxLength=262144,
        ),
    },
    required=["stage", "rego"],
)

POLICY_SCHEMA: Final[JSONSchema] = _resource(
    "Policy",
    "A Policy: Rego evaluated on requests and responses of some endpoints.",
    POLICY_SPEC_SCHEMA,
)

# --- PIIPolicy --------------------------------------------------------------------------------

PII_POLICY_SPEC_SCHEMA: Final[JSONSchema] = _obj(
    "What ext_proc does with personal data in the requests of the endpoints that name this "
    "policy (Endpoint spec.piiPolicy).",
    {
        "action": _str(
            "anonymize (the default): each value becomes a tag such as <PERSON_1> before the "
            "provider sees it, and answers are restored; block: 403 pii_blocked naming the "
            "types found; flag: forward unchanged and record the types found.",
            enum=list(PII_ACTIONS),
            default="anonymize",
        ),
        "entityTypes": {
            "type": "array",
            "description": "The types detected; omit for all of them.",
            "items": _str("A personal-data type.", enum=list(ENTITY_TYPES)),
        },
        "art9": _obj(
            "GDPR Art. 9 special categories (health, religion or belief, ethnic origin, "
            "political opinion, trade-union membership, sex life or orientation, genetic and "
            "biometric data): topics, never tagged.",
            {
                "detect": {
                    "type": "boolean",
                    "default": True,
                    "description": "Whether to look for them at all.",
                },
                "action": _str(
                    "flag (the default): record the categories found; block: 403 pii_blocked; "
                    "ignore: do nothing.",
                    enum=list(ART9_ACTIONS),
                    default="flag",
                ),
            },
        ),
        "restoreResponses": {
            "type": "boolean",
            "default": True,
            "description": "Replace the tags in answers (streams included) by the original "
            "values; false leaves the tags in.",
        },
        "maxScanBytes": {
            "type": "integer",
            "minimum": 1024,
            "maximum": 8 * 1024 * 1024,
            "default": DEFAULT_MAX_SCAN_BYTES,
            "description": "The most text (UTF-8 bytes, all messages together) scanned per "
            "request; a request holding more is refused with 413 pii_scan_too_large, never "
            "forwarded unscanned. Scanning costs 0.2-1.5 s per MiB of text, depending on how much "
            "of it looks like personal data; above the default, raise the data plane's "
            "ext_proc message timeout (5 s) to match.",
        },
    },
)

PII_POLICY_SCHEMA: Final[JSONSchema] = _resource(
    "PIIPolicy",
    "A PIIPolicy: detection of personal data and what to do with it.",
    PII_POLICY_SPEC_SCHEMA,
)

# --- ServiceTier ------------------------------------------------------------------------------

MAX_LIMIT: Final = 1_000_000_000


def _limit(description: str) -> JSONSchema:
    return {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "description": description}


LIMITS_SCHEMA: Final[JSONSchema] = _obj(
    "Limits over one scope; a limit left out is not enforced.",
    {
        "requestsPerMinute": _limit("Chat completion requests admitted per minute."),
        "tokensPerMinute": _limit(
            "Tokens (prompt and completion) per minute. A request reserves its prompt "
            "estimate plus its max_tokens (or the model's maximum output) before it is "
            "forwarded, and is settled with the real usage when it ends."
        ),
        "concurrentRequests": _limit("Requests in flight at once."),
    },
)

TIER_TIMEOUTS_SCHEMA: Final[JSONSchema] = _obj(
    "How long the requests of this tier may take (Envoy route timeouts).",
    {
        "request": _str(
            "The longest a whole request may take, retries and a streamed answer included "
            "(e.g. 120s, 10m). Default: the longest timeout of the Backends it may reach.",
            DURATION_PATTERN,
        ),
        "streamIdle": _str(
            "Streams only: the longest a stream may wait for its first byte, and between two "
            "bytes. A stream attempt with no first byte in time goes to the next candidate, "
            "within the retry budget; a stream that stalls this long mid-answer is ended "
            "(e.g. 30s). Default: no limit but the request timeout.",
            DURATION_PATTERN,
        ),
        "firstByte": _str(
            "Non-streamed requests to a model with fallbacks: the longest an attempt may take "
            "to answer (its first byte comes with the whole answer) before the next candidate "
            "is tried, within the retry budget (e.g. 60s). Default: no limit but the request "
            "timeout.",
            DURATION_PATTERN,
        ),
    },
)

RETRY_BUDGET_SCHEMA: Final[JSONSchema] = _obj(
    "How far requests may fall back to later candidates of their model when one fails "
    "(upstream 429, 5xx, connection failure, or no first byte within streamIdle).",
    {
        "maxRetries": {
            "type": "integer",
            "minimum": 0,
            "maximum": 10,
            "default": 2,
            "description": "The most further attempts one request may make (0: none).",
        },
        "percent": {
            "type": "integer",
            "minimum": 1,
            "maximum": 100,
            "default": 20,
            "description": "Retries in flight may be at most this share of the requests "
            "in flight to a model's candidates (Envoy's retry budget), so that a failing "
            "provider does not double the load on the others.",
        },
        "minConcurrent": {
            "type": "integer",
            "minimum": 1,
            "maximum": 1000,
            "default": 3,
            "description": "Retries allowed in flight whatever the share, for low traffic.",
        },
    },
)

SERVICE_TIER_SPEC_SCHEMA: Final[JSONSchema] = _obj(
    "What the requests of the endpoints that name this tier may use: limits (windows "
    "are fixed minutes; over a limit a request gets 429 rate_limit_exceeded with "
    "Retry-After), priority, timeouts and a retry budget.",
    {
        "perKey": {**LIMITS_SCHEMA, "description": "Limits for each API key on its own."},
        "perProject": {
            **LIMITS_SCHEMA,
            "description": "Limits for all the keys of a project together.",
        },
        "priority": {
            "type": "string",
            "enum": ["default", "high"],
            "default": "default",
            "description": "Envoy routing priority: high-priority requests have connection, "
            "request and retry limits of their own on every provider, so that default "
            "traffic cannot use them up.",
        },
        "timeouts": TIER_TIMEOUTS_SCHEMA,
        "retryBudget": RETRY_BUDGET_SCHEMA,
    },
)

SERVICE_TIER_SCHEMA: Final[JSONSchema] = _resource(
    "ServiceTier",
    "A ServiceTier: request, token and concurrency limits per key and per project; "
    "priority, timeouts and a retry budget.",
    SERVICE_TIER_SPEC_SCHEMA,
)

# --- registry ---------------------------------------------------------------------------------

KINDS: Final[dict[str, JSONSchema]] = {
    "Backend": BACKEND_SCHEMA,
    "Endpoint": ENDPOINT_SCHEMA,
    "Policy": POLICY_SCHEMA,
    "PIIPolicy": PII_POLICY_SCHEMA,
    "ServiceTier": SERVICE_TIER_SCHEMA,
}
"""Every kind this version understands, to the JSON Schema of the whole resource."""


def schema_for(kind: str) -> JSONSchema:
    """A deep copy of the JSON Schema of resource `kind`; KeyError for an unknown kind."""
    try:
        return copy.deepcopy(KINDS[kind])
    except KeyError:
        known = ", ".join(sorted(KINDS))
        raise KeyError(f"unknown kind {kind!r} (known kinds: {known})") from None
