"""Tool calls: choosing a tool and making up arguments from its JSON schema."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

__all__ = [
    "asks_for_tool",
    "example_value",
    "function_tools",
    "generate_arguments",
    "pick_tool",
    "split_arguments",
]

_ASK_RE = re.compile(r"\bcall\b|\buse\s+(?:the\s+|a\s+)?tools?\b", re.IGNORECASE)
_MAX_DEPTH = 8
_FRAGMENT_CHARS = 8

# Plausible strings for commonly named properties (matched on lower-cased name).
_NAMED_STRINGS: dict[str, str] = {
    "location": "San Francisco, CA",
    "city": "Paris",
    "country": "France",
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "url": "https://example.com",
    "query": "weather forecast",
    "q": "weather forecast",
    "language": "en",
    "unit": "celsius",
    "date": "2024-01-01",
    "id": "abc123",
}

_FORMAT_STRINGS: dict[str, str] = {
    "date-time": "2024-01-01T12:00:00Z",
    "date": "2024-01-01",
    "time": "12:00:00",
    "email": "ada@example.com",
    "uri": "https://example.com",
    "url": "https://example.com",
    "uuid": "123e4567-e89b-12d3-a456-426614174000",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "hostname": "example.com",
}


def function_tools(tools: Any) -> list[Mapping[str, Any]]:
    """The ``function`` objects of the function tools offered in a request."""
    out: list[Mapping[str, Any]] = []
    if not isinstance(tools, list):
        return out
    for tool in tools:
        if isinstance(tool, dict) and tool.get("type", "function") == "function":
            function = tool.get("function")
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                out.append(function)
    return out


def asks_for_tool(prompt: str, functions: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a user message asks for a tool call ("call ...", "use the tool", a tool name)."""
    if _ASK_RE.search(prompt):
        return True
    lowered = prompt.lower()
    return any(str(f["name"]).lower() in lowered for f in functions)


def pick_tool(
    functions: Sequence[Mapping[str, Any]], prompt: str, named: str | None = None
) -> Mapping[str, Any]:
    """The tool to call: the named one, else the one named in the prompt, else the first."""
    if named is not None:
        for function in functions:
            if function["name"] == named:
                return function
    lowered = prompt.lower()
    for function in functions:
        if str(function["name"]).lower() in lowered:
            return function
    return functions[0]


def generate_arguments(parameters: Any) -> str:
    """A JSON string of an object that satisfies the ``parameters`` schema (required keys)."""
    if not isinstance(parameters, dict):
        return "{}"
    value = example_value(parameters, "", parameters, 0)
    if not isinstance(value, dict):
        value = {}
    return orjson.dumps(value).decode()


def split_arguments(arguments: str) -> list[str]:
    """Cut an arguments string into the fragments streamed one per chunk."""
    if len(arguments) <= _FRAGMENT_CHARS:
        return [arguments]
    return [arguments[i : i + _FRAGMENT_CHARS] for i in range(0, len(arguments), _FRAGMENT_CHARS)]


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a local ``$ref`` (``#/$defs/...``, ``#/definitions/...``) if there is one."""
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#"):
        return schema
    node: Any = root
    for part in ref[1:].split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return {}
        node = node[part]
    return node if isinstance(node, dict) else {}


def _schema_type(schema: Mapping[str, Any]) -> str | None:
    typ = schema.get("type")
    if isinstance(typ, list):
        non_null = [t for t in typ if t != "null"]
        typ = non_null[0] if non_null else "null"
    if isinstance(typ, str):
        return typ
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return None


def _clamp(value: float, schema: Mapping[str, Any], step: float) -> float:
    low = schema.get("minimum")
    high = schema.get("maximum")
    xlow = schema.get("exclusiveMinimum")
    xhigh = schema.get("exclusiveMaximum")
    if isinstance(low, int | float) and not isinstance(low, bool) and value < low:
        value = low
    if isinstance(xlow, int | float) and not isinstance(xlow, bool) and value <= xlow:
        value = xlow + step
    if isinstance(high, int | float) and not isinstance(high, bool) and value > high:
        value = high
    if isinstance(xhigh, int | float) and not isinstance(xhigh, bool) and value >= xhigh:
        value = xhigh - step
    return value


def _string_value(schema: Mapping[str, Any], name: str) -> str:
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMAT_STRINGS:
        value = _FORMAT_STRINGS[fmt]
    else:
        value = _NAMED_STRINGS.get(name.lower(), f"example {name}" if name else "example")
    min_len = schema.get("minLength")
    max_len = schema.get("maxLength")
    if isinstance(max_len, int) and len(value) > max_len:
        value = value[:max_len]
    if isinstance(min_len, int) and len(value) < min_len:
        value = value + "x" * (min_len - len(value))
    return value


def example_value(schema: Any, name: str, root: Mapping[str, Any], depth: int) -> Any:
    """A plausible value for ``schema`` (``name`` is the property it is for, if any)."""
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return None
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            chosen = next(
                (b for b in branches if isinstance(b, dict) and b.get("type") != "null"),
                branches[0],
            )
            return example_value(chosen, name, root, depth + 1)
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and all_of:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for branch in all_of:
            if isinstance(branch, dict):
                branch = _resolve(branch, root)
                for key, val in branch.items():
                    if key == "properties" and isinstance(val, dict):
                        merged["properties"] = {**merged.get("properties", {}), **val}
                    elif key == "required" and isinstance(val, list):
                        merged["required"] = [*merged.get("required", []), *val]
                    else:
                        merged.setdefault(key, val)
        return example_value(merged, name, root, depth + 1)

    typ = _schema_type(schema)
    if typ == "object":
        return _object_value(schema, root, depth)
    if typ == "array":
        items = schema.get("items")
        min_items = schema.get("minItems")
        count = max(1, min_items if isinstance(min_items, int) else 1)
        max_items = schema.get("maxItems")
        if isinstance(max_items, int):
            count = min(count, max_items)
        item = _singular(name)
        return [example_value(items or {"type": "string"}, item, root, depth + 1)] * count
    if typ == "integer":
        return int(_clamp(42, schema, 1))
    if typ == "number":
        return _clamp(3.5, schema, 0.5)
    if typ == "boolean":
        return True
    if typ == "null":
        return None
    return _string_value(schema, name)


def _singular(name: str) -> str:
    """``cities`` → ``city``, ``tags`` → ``tag``: the name of one item of a list property."""
    if name.endswith("ies") and len(name) > 3:
        return name[:-3] + "y"
    if name.endswith("s") and not name.endswith("ss"):
        return name[:-1]
    return name


def _object_value(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> Any:
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        properties = {}
    required = schema.get("required")
    out: dict[str, Any] = {}
    if isinstance(required, list):
        for key in required:
            if isinstance(key, str):
                out[key] = example_value(properties.get(key, {}), key, root, depth + 1)
    return out
