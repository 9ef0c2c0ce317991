"""Kubernetes CustomResourceDefinitions (apiextensions.k8s.io/v1), one per config kind,
generated from the same schemas `controlplane.validate` checks files with.

The file validator's schema becomes the CRD's structural `openAPIV3Schema`: `const`
becomes a one-value `enum`, `additionalProperties: false` is left to Kubernetes (which
rejects unknown fields under strict field validation, kubectl's default, and prunes them
otherwise), `metadata` keeps only the name rule (all Kubernetes allows there). Rules that
span fields, which JSON Schema cannot say, are CEL rules (`x-kubernetes-validations`)
next to the field they guard; the validator checks the same in Python, and a test holds
the two to the same verdict on every example and fixture. References between resources
(an Endpoint's Backend, a Policy's endpoints) cannot be checked by the API server: the
control plane reports them in each resource's `Accepted` condition.

`make crds` writes them to deploy/crds/, with the kustomization that lists them (which
deploy/kustomize/base includes); a test fails when those files are stale.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Final

import yaml

from controlplane.model import API_VERSION
from controlplane.schema import KINDS, JSONSchema

GROUP: Final = API_VERSION.split("/")[0]  # weir.dev
VERSION: Final = API_VERSION.split("/")[1]  # v1alpha1

PLURALS: Final = {
    "Backend": "backends",
    "Endpoint": "endpoints",
    "Policy": "policies",
    "PIIPolicy": "piipolicies",
    "ServiceTier": "servicetiers",
}
SHORT_NAMES: Final = {"PIIPolicy": ["pii"], "ServiceTier": ["tier"]}


# CEL rules per kind: (path of the object they sit on, rule, message). `self` is that
# object. The lists the rules walk have a maxItems (schema.MAX_MODELS), which keeps them
# within the API server's cost budget.
def _duration_rule(field: str) -> str:
    """A duration within Weir's range, 1ms to 24h (controlplane.validate.parse_duration)."""
    return (
        f"!has(self.{field}) || (duration(self.{field}) >= duration('1ms') && "
        f"duration(self.{field}) <= duration('24h'))"
    )


# A port outside 1-65535 in a base URL (the schema's pattern allows up to 5 digits).
_BAD_PORT: Final = (
    "^https?://[^/]*:(0+|6553[6-9]|655[4-9][0-9]|65[6-9][0-9]{2}|6[6-9][0-9]{3}|[7-9][0-9]{4})(/|$)"
)

CEL_RULES: Final[dict[str, list[tuple[tuple[str, ...], str, str]]]] = {
    "Backend": [
        (("spec",), _duration_rule("timeout"), "timeout must be between 1ms and 24h"),
        (
            ("spec",),
            _duration_rule("connectTimeout"),
            "connectTimeout must be between 1ms and 24h",
        ),
        (
            ("spec",),
            f"!self.baseURL.matches('{_BAD_PORT}')",
            "the port of baseURL must be between 1 and 65535",
        ),
        (
            ("spec", "apiKey"),
            "has(self.env) != has(self.secretRef)",
            "give exactly one of `env` and `secretRef`",
        ),
        (
            ("spec",),
            "self.models.all(m, self.models.exists_one(n, n.name == m.name))",
            "model names must be unique",
        ),
    ],
    "Endpoint": [
        (
            ("spec",),
            "self.models.all(m, self.models.exists_one(n, n.name == m.name))",
            "model names must be unique",
        ),
        (
            ("spec",),
            "!has(self.auto) || !self.models.exists(m, m.name == 'auto')",
            "an endpoint with `auto` routing cannot also have a model named 'auto'",
        ),
        (
            ("spec",),
            "!has(self.auto) || !has(self.auto.models) || "
            "self.auto.models.all(a, self.models.exists(m, m.name == a))",
            "`auto.models` may name only models of this endpoint",
        ),
    ],
    "ServiceTier": [
        (
            ("spec", "timeouts"),
            _duration_rule("request"),
            "timeouts.request must be between 1ms and 24h",
        ),
        (
            ("spec", "timeouts"),
            _duration_rule("streamIdle"),
            "timeouts.streamIdle must be between 1ms and 24h",
        ),
        (
            ("spec", "timeouts"),
            _duration_rule("firstByte"),
            "timeouts.firstByte must be between 1ms and 24h",
        ),
    ],
}

_ACCEPTED: Final = '.status.conditions[?(@.type=="Accepted")]'
PRINTER_COLUMNS: Final[dict[str, list[tuple[str, str, str]]]] = {
    "Backend": [("Base URL", "string", ".spec.baseURL")],
    "Endpoint": [
        ("Project", "string", ".spec.project"),
        ("Slug", "string", ".spec.slug"),
        ("Tier", "string", ".spec.serviceTier"),
    ],
    "Policy": [("Stage", "string", ".spec.stage")],
    "PIIPolicy": [("Action", "string", ".spec.action")],
    "ServiceTier": [("Priority", "string", ".spec.priority")],
}


def _node(schema: JSONSchema, path: tuple[str, ...]) -> JSONSchema:
    node = schema
    for key in path:
        node = node["properties"][key]
    return node


def structural(schema: JSONSchema) -> JSONSchema:
    """The validator's JSON Schema as Kubernetes takes it (see the module's notes)."""
    node = copy.deepcopy(schema)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    for key, child in list(node.get("properties", {}).items()):
        node["properties"][key] = structural(child)
    if isinstance(node.get("items"), dict):
        node["items"] = structural(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = structural(node["additionalProperties"])
    return node


# What the control plane writes (controlplane.resource_status): metav1.Condition's shape.
STATUS_SCHEMA: Final[JSONSchema] = {
    "type": "object",
    "description": "Written by the control plane: whether this generation is served.",
    # Other fields are kept, as before this schema was typed (and as other tools may add).
    "x-kubernetes-preserve-unknown-fields": True,
    "properties": {
        "observedGeneration": {
            "type": "integer",
            "format": "int64",
            "description": "The generation the conditions describe.",
        },
        "conditions": {
            "type": "array",
            "description": "`Accepted`: True when this generation is served; False with the "
            "reason (Invalid, NotServed) and a message saying why.",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
            "items": {
                "type": "object",
                "required": ["type", "status", "lastTransitionTime", "reason", "message"],
                "properties": {
                    "type": {"type": "string", "maxLength": 316},
                    "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                    "reason": {"type": "string", "maxLength": 1024},
                    "message": {"type": "string", "maxLength": 32768},
                    "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
                    "lastTransitionTime": {"type": "string", "format": "date-time"},
                },
            },
        },
    },
}


def open_api_schema(kind: str) -> JSONSchema:
    """The CRD's `openAPIV3Schema` for `kind`."""
    schema = structural(KINDS[kind])
    schema["properties"]["status"] = copy.deepcopy(STATUS_SCHEMA)
    name = schema["properties"]["metadata"]["properties"]["name"]
    schema["properties"]["metadata"] = {
        "type": "object",
        "properties": {
            "name": {k: v for k, v in name.items() if k in ("type", "pattern", "maxLength")}
        },
    }
    for path, rule, message in CEL_RULES.get(kind, []):
        _node(schema, path).setdefault("x-kubernetes-validations", []).append(
            {"rule": rule, "message": message}
        )
    return schema


def crd(kind: str) -> dict[str, Any]:
    plural = PLURALS[kind]
    columns: list[dict[str, Any]] = [
        {"name": name, "type": type_, "jsonPath": path}
        for name, type_, path in PRINTER_COLUMNS.get(kind, [])
    ]
    columns += [
        {"name": "Accepted", "type": "string", "jsonPath": f"{_ACCEPTED}.status"},
        {
            "name": "Reason",
            "type": "string",
            "jsonPath": f"{_ACCEPTED}.reason",
            "priority": 1,
        },
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    names: dict[str, Any] = {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
        "categories": ["weir"],
    }
    if kind in SHORT_NAMES:
        names["shortNames"] = SHORT_NAMES[kind]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": names,
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": open_api_schema(kind)},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


def all_crds() -> dict[str, dict[str, Any]]:
    """File name (deploy/crds/) -> CRD, for every kind."""
    return {f"{PLURALS[kind]}.{GROUP}.yaml": crd(kind) for kind in KINDS}


HEADER: Final = "# Generated by `make crds` from controlplane/schema.py: do not edit.\n"


def render(document: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(document, sort_keys=False, width=100)


def kustomization() -> dict[str, Any]:
    """The kustomization of deploy/crds/: every CRD (kustomize reads files only below it)."""
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(all_crds()),
    }


KUSTOMIZATION: Final = "kustomization.yaml"


def all_files() -> dict[str, str]:
    """File name -> text of everything `make crds` writes to deploy/crds/."""
    files = {name: render(document) for name, document in all_crds().items()}
    files[KUSTOMIZATION] = render(kustomization())
    return files


def write_all(directory: str) -> None:
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    for name, text in all_files().items():
        (target / name).write_text(text)
