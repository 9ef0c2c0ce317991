"""The JSON Schemas in controlplane.schema: valid, structural (CRD-ready) and documented."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from controlplane import schema
from controlplane.model import API_VERSION, Backend, BackendModel
from controlplane.validate import parse_duration

QUICKSTART = Path(__file__).parents[2] / "examples" / "quickstart"

COMBINATORS = {"$ref", "$defs", "definitions", "anyOf", "oneOf", "allOf", "not", "if"}


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def test_kinds() -> None:
    assert set(schema.KINDS) == {"Backend", "Endpoint", "Policy", "PIIPolicy", "ServiceTier"}


@pytest.mark.parametrize("kind", sorted(schema.KINDS))
def test_schema_is_valid_draft_2020_12(kind: str) -> None:
    Draft202012Validator.check_schema(schema.schema_for(kind))


@pytest.mark.parametrize("kind", sorted(schema.KINDS))
def test_schema_is_structural(kind: str) -> None:
    for path, node in walk(schema.schema_for(kind)):
        where = f"{kind}{path}"
        assert "type" in node, where
        assert not COMBINATORS & set(node), where
        if node["type"] == "object":
            ways = [
                "properties" in node,
                isinstance(node.get("additionalProperties"), dict),
                node.get("x-kubernetes-preserve-unknown-fields") is True,
            ]
            assert sum(ways) == 1, where
            if "properties" in node:
                assert node.get("additionalProperties") is False, where
                assert set(node.get("required", [])) <= set(node["properties"]), where
        if node["type"] == "array":
            assert isinstance(node.get("items"), dict), where


@pytest.mark.parametrize("kind", sorted(schema.KINDS))
def test_every_field_is_described(kind: str) -> None:
    for path, node in walk(schema.schema_for(kind)):
        if path.endswith("{}"):  # the value schema of a string map
            continue
        assert node.get("description", "").strip(), f"{kind}{path} has no description"


@pytest.mark.parametrize("kind", sorted(schema.KINDS))
def test_patterns_are_anchored_and_explained(kind: str) -> None:
    for path, node in walk(schema.schema_for(kind)):
        if "pattern" in node:
            assert node["pattern"].startswith("^"), path
            assert node["pattern"].endswith("$"), path
            re.compile(node["pattern"])
            assert node["pattern"] in schema.PATTERN_HINTS, f"{kind}{path}: no hint"


@pytest.mark.parametrize("kind", sorted(schema.KINDS))
def test_header_fields(kind: str) -> None:
    s = schema.schema_for(kind)
    assert s["properties"]["apiVersion"]["const"] == API_VERSION
    assert s["properties"]["kind"]["const"] == kind
    assert s["required"] == ["apiVersion", "kind", "metadata", "spec"]
    assert s["properties"]["metadata"]["required"] == ["name"]
    assert set(s["properties"]["metadata"]["properties"]) == {
        "name",
        "namespace",
        "labels",
        "annotations",
    }


def test_schema_for_returns_a_copy() -> None:
    s = schema.schema_for("Backend")
    s["properties"]["spec"]["required"].append("oops")
    assert "oops" not in schema.schema_for("Backend")["properties"]["spec"]["required"]
    assert "oops" not in schema.BACKEND_SCHEMA["properties"]["spec"]["required"]


def test_schema_for_unknown_kind() -> None:
    with pytest.raises(
        KeyError,
        match=r"unknown kind .Gizmo. \(known kinds: Backend, Endpoint, PIIPolicy, Policy, "
        r"ServiceTier\)",
    ):
        schema.schema_for("Gizmo")


def test_defaults_match_the_model() -> None:
    spec = schema.BACKEND_SPEC_SCHEMA["properties"]
    model = schema.BACKEND_MODEL_SCHEMA["properties"]
    pricing = schema.PRICING_SCHEMA["properties"]
    assert parse_duration(spec["timeout"]["default"]) == Backend.timeout_seconds
    assert parse_duration(spec["connectTimeout"]["default"]) == Backend.connect_timeout_seconds
    assert spec["weight"]["default"] == Backend.weight
    assert model["tier"]["default"] == BackendModel.tier
    assert all(p["default"] == 0 for p in pricing.values())


@pytest.mark.parametrize(
    ("pattern", "good", "bad"),
    [
        (
            schema.NAME_PATTERN,
            ["a", "openai", "demo-chat", "a1", "x" * 63],
            ["", "A", "-a", "a-", "a_b", "a.b", "x" * 64],
        ),
        (
            schema.DURATION_PATTERN,
            ["30s", "500ms", "2m", "1h", "1m30s", "1.5s"],
            ["", "30", "s", "-1s", "1d", "30 s", "1.s", ".5s"],
        ),
        (
            schema.BASE_URL_PATTERN,
            [
                "http://localhost",
                "https://api.openai.com/v1",
                "http://127.0.0.1:8080/v1/",
                "http://[::1]:9000/v1",
                "https://my-host.internal:443",
            ],
            [
                "",
                "api.openai.com/v1",
                "ftp://host/v1",
                "http://",
                "http://host/v1?x=1",
                "http://host/v1#frag",
                "http://user:pass@host/v1",
                "http://host:port/v1",
                "http://ho st/v1",
            ],
        ),
        (schema.ENV_VAR_PATTERN, ["OPENAI_API_KEY", "_x", "a1"], ["", "1A", "sk-abc", "A B"]),
        (schema.MODEL_NAME_PATTERN, ["gpt-4o", "meta/llama-3:8b"], ["", "gpt 4o"]),
    ],
)
def test_patterns(pattern: str, good: list[str], bad: list[str]) -> None:
    for value in good:
        assert re.search(pattern, value), value
    for value in bad:
        assert not re.search(pattern, value), value


def test_quickstart_documents_match_the_schemas() -> None:
    for file in sorted(QUICKSTART.glob("*.yaml")):
        text = file.read_text().replace("${WEIR_MOCK_LLM_URL}", "http://127.0.0.1:9/v1")
        for doc in yaml.safe_load_all(text):
            if doc is None:
                continue
            Draft202012Validator(schema.schema_for(doc["kind"])).validate(doc)
