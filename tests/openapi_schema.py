"""Validate JSON values against the schemas of OpenAI's OpenAPI description.

``validate_openapi(body, "CreateChatCompletionResponse")`` raises ``AssertionError`` listing
every violation. The document (``../shared/openai-openapi/openapi.json`` next to the repo) is
OpenAPI 3.1, i.e. JSON Schema 2020-12, but some schemas still use the 3.0 keyword
``nullable: true``; those are rewritten as ``anyOf: [<schema>, {"type": "null"}]`` once, when
the document is loaded.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = ["OPENAPI_PATH", "openapi_schemas", "validate_openapi"]

OPENAPI_PATH = (
    Path(__file__).resolve().parents[1].parent / "shared" / "openai-openapi" / "openapi.json"
)
_BASE_URI = "urn:weir:openai-openapi"
_MAX_ERRORS = 20


def _without_nullable(node: Any) -> Any:
    """A copy of ``node`` where every ``nullable: true`` schema also accepts ``null``."""
    if isinstance(node, list):
        return [_without_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _without_nullable(value) for key, value in node.items()}
    nullable = out.pop("nullable", None)
    if nullable is True:
        # Keep annotations at the top, move the constraints into the non-null branch.
        annotations = {k: out.pop(k) for k in ("description", "title", "deprecated") if k in out}
        return {**annotations, "anyOf": [out, {"type": "null"}]}
    if isinstance(nullable, dict):  # a property actually named "nullable"
        out["nullable"] = nullable
    return out


@functools.cache
def _document() -> dict[str, Any]:
    with OPENAPI_PATH.open("rb") as f:
        document: dict[str, Any] = json.load(f)
    components = document.get("components", {})
    return {"components": {"schemas": _without_nullable(components.get("schemas", {}))}}


def openapi_schemas() -> dict[str, Any]:
    """``components.schemas`` of the document (with ``nullable`` rewritten)."""
    schemas: dict[str, Any] = _document()["components"]["schemas"]
    return schemas


@functools.cache
def _registry() -> Registry[Any]:
    resource: Resource[Any] = Resource.from_contents(_document(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(_BASE_URI, resource)
    return registry


@functools.cache
def _validator(schema_name: str) -> jsonschema.protocols.Validator:
    if schema_name not in openapi_schemas():
        raise KeyError(f"no schema {schema_name!r} in {OPENAPI_PATH}")
    schema = {"$ref": f"{_BASE_URI}#/components/schemas/{schema_name}"}
    validator: jsonschema.protocols.Validator = jsonschema.Draft202012Validator(
        schema, registry=_registry()
    )
    return validator


def _path(error: jsonschema.ValidationError) -> str:
    path = "$"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def validate_openapi(instance: Any, schema_name: str) -> None:
    """Assert that ``instance`` is valid against ``#/components/schemas/<schema_name>``."""
    errors = sorted(_validator(schema_name).iter_errors(instance), key=lambda e: list(e.path))
    if not errors:
        return
    lines = [f"{len(errors)} error(s) validating against {schema_name}:"]
    for error in errors[:_MAX_ERRORS]:
        lines.append(f"  at {_path(error)}: {error.message}")
        # anyOf/oneOf failures say little by themselves: show the deepest sub-errors.
        for sub in sorted(error.context or (), key=lambda e: -len(e.absolute_path))[:3]:
            lines.append(f"    - at {_path(sub)}: {sub.message}")
    if len(errors) > _MAX_ERRORS:
        lines.append(f"  ... and {len(errors) - _MAX_ERRORS} more")
    raise AssertionError("\n".join(lines))
