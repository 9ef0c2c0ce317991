"""validate_documents: schema and cross-resource checks, error reporting, conversion."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest

from controlplane import validate
from controlplane.errors import ConfigError, ConfigInvalid, WeirControlPlaneError
from controlplane.model import (
    Backend,
    BackendModel,
    ConfigSet,
    Endpoint,
    ModelAlias,
    ModelTarget,
    Pricing,
)
from controlplane.schema import KINDS
from controlplane.validate import format_path, parse_duration, validate_documents

API = "weir.dev/v1alpha1"


def backend(name: str = "openai", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "baseURL": "https://api.openai.com/v1",
        "models": [{"name": "gpt-4o-mini"}, {"name": "gpt-4o"}],
    }
    body.update(spec)
    return {"apiVersion": API, "kind": "Backend", "metadata": {"name": name}, "spec": body}


def endpoint(
    name: str = "demo-chat",
    project: str = "demo",
    slug: str = "chat",
    models: list[Any] | None = None,
) -> dict[str, Any]:
    if models is None:
        models = [
            {"name": "gpt-4o-mini", "targets": [{"backend": "openai", "model": "gpt-4o-mini"}]}
        ]
    return {
        "apiVersion": API,
        "kind": "Endpoint",
        "metadata": {"name": name},
        "spec": {"project": project, "slug": slug, "models": models},
    }


def errors_of(docs: list[tuple[str, Any]], **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigInvalid) as info:
        validate_documents(docs, **kwargs)
    return [str(e) for e in info.value.errors]


# --- errors module ----------------------------------------------------------------------------


def test_config_error_str() -> None:
    e = ConfigError("a.yaml", "Backend", "openai", "spec.models[0].pricing.input", "bad")
    assert str(e) == "a.yaml: Backend/openai: spec.models[0].pricing.input: bad"
    assert str(ConfigError("a.yaml", "?", "?", "", "oops")) == "a.yaml: ?/?: (resource): oops"
    assert str(ConfigError("a.yaml", "", "", "", "oops")) == "a.yaml: ?/?: (resource): oops"


def test_config_invalid_lists_every_error_one_per_line() -> None:
    errors = [
        ConfigError("a.yaml", "Backend", "x", "spec", "one"),
        ConfigError("b.yaml", "?", "?", "", "two"),
    ]
    exc = ConfigInvalid(errors)
    assert isinstance(exc, WeirControlPlaneError)
    assert exc.errors == tuple(errors)
    assert str(exc) == "a.yaml: Backend/x: spec: one\nb.yaml: ?/?: (resource): two"
    again = pickle.loads(pickle.dumps(exc))
    assert again.errors == exc.errors
    assert str(again) == str(exc)


# --- happy path and conversion ----------------------------------------------------------------


def test_full_conversion() -> None:
    docs = [
        (
            "b.yaml",
            backend(
                baseURL="https://api.openai.com/v1/",
                apiKey={"env": "OPENAI_API_KEY"},
                timeout="2m",
                connectTimeout="500ms",
                weight=3,
                models=[
                    {
                        "name": "gpt-4o-mini",
                        "contextWindow": 128000,
                        "maxOutputTokens": 16384,
                        "tier": "premium",
                        "pricing": {"input": 0.15, "cachedInput": 0.075, "output": 0.6},
                    },
                    {"name": "gpt-4o", "pricing": {"output": 10}},
                ],
            ),
        ),
        (
            "e.yaml",
            endpoint(
                models=[
                    {
                        "name": "fast",
                        "targets": [
                            {"backend": "openai", "model": "gpt-4o-mini"},
                            {"backend": "openai", "model": "gpt-4o"},
                        ],
                    }
                ]
            ),
        ),
    ]
    assert validate_documents(docs) == ConfigSet(
        backends=(
            Backend(
                name="openai",
                base_url="https://api.openai.com/v1",
                models=(
                    BackendModel(
                        name="gpt-4o-mini",
                        context_window=128000,
                        max_output_tokens=16384,
                        pricing=Pricing(input=0.15, cached_input=0.075, output=0.6),
                        tier="premium",
                    ),
                    BackendModel(name="gpt-4o", pricing=Pricing(output=10.0)),
                ),
                api_key_env="OPENAI_API_KEY",
                timeout_seconds=120.0,
                connect_timeout_seconds=0.5,
                weight=3,
                source_file="b.yaml",
            ),
        ),
        endpoints=(
            Endpoint(
                name="demo-chat",
                project="demo",
                slug="chat",
                models=(
                    ModelAlias(
                        name="fast",
                        targets=(
                            ModelTarget(backend="openai", model="gpt-4o-mini"),
                            ModelTarget(backend="openai", model="gpt-4o"),
                        ),
                    ),
                ),
                source_file="e.yaml",
            ),
        ),
    )


def test_defaults() -> None:
    config = validate_documents([("b.yaml", backend())])
    b = config.backends[0]
    assert (b.timeout_seconds, b.connect_timeout_seconds, b.weight, b.api_key_env) == (
        300.0,
        5.0,
        1,
        None,
    )
    assert b.models[0] == BackendModel(name="gpt-4o-mini")
    assert config.endpoints == ()


def test_resource_order_is_document_order() -> None:
    docs = [
        ("1.yaml", endpoint("z-endpoint")),
        ("1.yaml", backend("openai")),
        ("2.yaml", endpoint("a-endpoint", slug="other")),
        ("2.yaml", backend("azure")),
    ]
    config = validate_documents(docs)
    assert [b.name for b in config.backends] == ["openai", "azure"]
    assert [e.name for e in config.endpoints] == ["z-endpoint", "a-endpoint"]
    assert [b.source_file for b in config.backends] == ["1.yaml", "2.yaml"]


def test_metadata_extras_and_status_are_accepted() -> None:
    doc = backend()
    doc["metadata"].update(
        namespace="weir",
        labels={"app.kubernetes.io/name": "weir"},
        annotations={"note": "hi"},
    )
    doc["status"] = {"conditions": [{"type": "Ready"}]}
    assert validate_documents([("b.yaml", doc)]).backends[0].name == "openai"


def test_input_is_not_modified() -> None:
    docs = [("b.yaml", backend()), ("e.yaml", endpoint())]
    before = copy.deepcopy(docs)
    validate_documents(docs)
    assert docs == before


def test_empty_input_is_an_empty_config() -> None:
    assert validate_documents([]) == ConfigSet()


# --- durations and paths ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("500ms", 0.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1.5s", 1.5),
        ("1h1m1s1ms", 3661.001),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "30", "s", "-1s", "1d", "30 s", "0s", "0ms", "1s ", "ms5"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_path() -> None:
    assert format_path(()) == ""
    assert format_path(("spec", "models", 0, "pricing", "input")) == "spec.models[0].pricing.input"
    assert format_path(["metadata", "labels", "app.kubernetes.io/name"]) == (
        'metadata.labels["app.kubernetes.io/name"]'
    )


# --- per-document errors ----------------------------------------------------------------------


def test_every_error_is_reported_in_document_then_path_order() -> None:
    docs = [
        (
            "a.yaml",
            backend(
                baseURL="https://api.openai.com:99999/v1",
                timeot="3s",
                timeout=30,
                connectTimeout="0s",
                weight=0,
                models=[
                    {"name": "gpt-4o-mini", "pricing": {"input": -1, "foo": 1}},
                    {"name": "gpt-4o-mini"},
                ],
            ),
        ),
        (
            "a.yaml",
            endpoint(
                name="Demo",
                models=[{"name": "x", "targets": [{"backend": "openai", "model": "nope"}]}],
            ),
        ),
        ("b.yaml", {"apiVersion": "weir.dev/v1", "kind": "Gizmo", "metadata": {}}),
        ("b.yaml", ["not", "a", "resource"]),
    ]
    assert errors_of(docs) == [
        "a.yaml: Backend/openai: spec.baseURL: 'https://api.openai.com:99999/v1': "
        "the port must be 1-65535",
        "a.yaml: Backend/openai: spec.connectTimeout: '0s': the duration must be greater than zero",
        "a.yaml: Backend/openai: spec.models[0].pricing.foo: unknown field "
        "(expected one of: input, cachedInput, output)",
        "a.yaml: Backend/openai: spec.models[0].pricing.input: must be at least 0, got -1",
        "a.yaml: Backend/openai: spec.models[1].name: duplicate model 'gpt-4o-mini': "
        "already listed at spec.models[0]",
        "a.yaml: Backend/openai: spec.timeot: unknown field (did you mean 'timeout'?)",
        "a.yaml: Backend/openai: spec.timeout: expected a duration (a string), got an integer",
        "a.yaml: Backend/openai: spec.weight: must be at least 1, got 0",
        "a.yaml: Endpoint/Demo: metadata.name: 'Demo' is not a valid name: use at most 63 "
        "lowercase letters, digits and '-', starting and ending with a letter or digit",
        "a.yaml: Endpoint/Demo: spec.models[0].targets[0].model: Backend 'openai' does not "
        "serve model 'nope' (it serves: gpt-4o-mini)",
        "b.yaml: Gizmo/?: apiVersion: unsupported apiVersion 'weir.dev/v1': "
        "expected 'weir.dev/v1alpha1'",
        "b.yaml: Gizmo/?: kind: unknown kind 'Gizmo': "
        "expected one of: Backend, Endpoint, Policy, PIIPolicy, ServiceTier",
        "b.yaml: ?/?: (resource): expected a mapping (a resource), got a list",
    ]


def test_error_fields() -> None:
    doc = backend()
    doc["spec"]["models"][1]["pricing"] = {"input": "cheap"}
    with pytest.raises(ConfigInvalid) as info:
        validate_documents([("dir/b.yaml", doc)])
    assert info.value.errors == (
        ConfigError(
            file="dir/b.yaml",
            kind="Backend",
            name="openai",
            path="spec.models[1].pricing.input",
            message="expected a number, got a string",
        ),
    )


def test_missing_header_fields() -> None:
    assert errors_of([("x.yaml", {"metadata": {"name": "x"}, "spec": {}})]) == [
        "x.yaml: ?/x: apiVersion: required field is missing (use weir.dev/v1alpha1)",
        "x.yaml: ?/x: kind: required field is missing "
        "(one of: Backend, Endpoint, Policy, PIIPolicy, ServiceTier)",
    ]


def test_non_string_kind() -> None:
    assert errors_of([("x.yaml", {"apiVersion": API, "kind": ["Backend"]})]) == [
        "x.yaml: ?/?: kind: unknown kind ['Backend']: "
        "expected one of: Backend, Endpoint, Policy, PIIPolicy, ServiceTier",
    ]


def test_required_fields_are_named_individually() -> None:
    doc = {"apiVersion": API, "kind": "Endpoint", "metadata": {"name": "e"}, "spec": {}}
    assert errors_of([("e.yaml", doc)]) == [
        "e.yaml: Endpoint/e: spec.models: required field is missing",
        "e.yaml: Endpoint/e: spec.project: required field is missing",
        "e.yaml: Endpoint/e: spec.slug: required field is missing",
    ]


def test_trailing_newline_does_not_sneak_past_a_pattern() -> None:
    # Python's `$` matches before a final newline; the validator must not.
    doc = backend(name="openai\n")
    assert errors_of([("b.yaml", doc)]) == [
        "b.yaml: Backend/'openai\\n': metadata.name: 'openai\\n' is not a valid name: use at most "
        "63 lowercase letters, digits and '-', starting and ending with a letter or digit"
    ]
    doc = backend(baseURL="http://localhost/v1\n")
    assert [e.split(": ")[2] for e in errors_of([("b.yaml", doc)])] == ["spec.baseURL"]


def test_booleans_are_not_integers() -> None:
    assert errors_of([("b.yaml", backend(weight=True))]) == [
        "b.yaml: Backend/openai: spec.weight: expected an integer, got a boolean"
    ]


def test_yaml_dates_are_reported_not_crashed_on() -> None:
    import datetime

    doc = backend(models=[{"name": "m", "tier": datetime.date(2024, 1, 1)}])
    assert errors_of([("b.yaml", doc)]) == [
        "b.yaml: Backend/openai: spec.models[0].tier: expected a string, got a date"
    ]


def test_secret_like_values_are_not_echoed() -> None:
    errors = errors_of([("b.yaml", backend(apiKey={"env": "sk-secret-123"}))])
    assert errors == [
        "b.yaml: Backend/openai: spec.apiKey.env: is not a valid environment variable name: "
        "give the name of the variable holding the value, like OPENAI_API_KEY, not the value"
    ]
    errors = errors_of([("b.yaml", backend(apiKey="sk-secret-123"))])
    assert errors == ["b.yaml: Backend/openai: spec.apiKey: expected a mapping, got a string"]


# --- cross-resource errors --------------------------------------------------------------------


def test_duplicate_names_per_kind() -> None:
    docs = [
        ("a.yaml", backend("openai")),
        ("b.yaml", backend("openai")),
        ("b.yaml", endpoint("openai")),  # another kind may reuse the name
    ]
    docs[2][1]["spec"]["models"][0]["targets"][0]["backend"] = "openai"
    assert errors_of(docs) == [
        "b.yaml: Backend/openai: metadata.name: duplicate Backend name 'openai': "
        "already defined in a.yaml"
    ]


def test_duplicate_project_slug() -> None:
    docs = [
        ("b.yaml", backend()),
        ("e1.yaml", endpoint("one")),
        ("e2.yaml", endpoint("two")),
        ("e2.yaml", endpoint("three", slug="other")),
        ("e2.yaml", endpoint("four", project="other")),
        ("e3.yaml", endpoint("five")),
    ]
    assert errors_of(docs) == [
        "e2.yaml: Endpoint/two: spec.slug: project/slug demo/chat is already served by "
        "Endpoint 'one' in e1.yaml",
        "e3.yaml: Endpoint/five: spec.slug: project/slug demo/chat is already served by "
        "Endpoint 'one' in e1.yaml",
    ]


def test_duplicate_alias_and_backend_model_names() -> None:
    target = [{"backend": "openai", "model": "gpt-4o"}]
    docs = [
        ("b.yaml", backend(models=[{"name": "gpt-4o"}, {"name": "gpt-4o"}, {"name": "gpt-4o"}])),
        (
            "e.yaml",
            endpoint(models=[{"name": "a", "targets": target}, {"name": "a", "targets": target}]),
        ),
    ]
    assert errors_of(docs) == [
        "b.yaml: Backend/openai: spec.models[1].name: duplicate model 'gpt-4o': "
        "already listed at spec.models[0]",
        "b.yaml: Backend/openai: spec.models[2].name: duplicate model 'gpt-4o': "
        "already listed at spec.models[0]",
        "e.yaml: Endpoint/demo-chat: spec.models[1].name: duplicate model name 'a': "
        "already listed at spec.models[0]",
    ]


def test_unknown_backend_and_model() -> None:
    models = [
        {
            "name": "m",
            "targets": [
                {"backend": "openai", "model": "gpt-4o"},
                {"backend": "azure", "model": "gpt-4o"},
                {"backend": "openai", "model": "o1"},
            ],
        }
    ]
    docs = [("b.yaml", backend()), ("e.yaml", endpoint(models=models))]
    assert errors_of(docs) == [
        "e.yaml: Endpoint/demo-chat: spec.models[0].targets[1].backend: unknown Backend "
        "'azure' (defined Backends: openai)",
        "e.yaml: Endpoint/demo-chat: spec.models[0].targets[2].model: Backend 'openai' does "
        "not serve model 'o1' (it serves: gpt-4o, gpt-4o-mini)",
    ]
    assert errors_of([("e.yaml", endpoint())]) == [
        "e.yaml: Endpoint/demo-chat: spec.models[0].targets[0].backend: unknown Backend "
        "'openai' (defined Backends: none)"
    ]


def test_partial_skips_only_unknown_backend_errors() -> None:
    models = [
        {
            "name": "m",
            "targets": [{"backend": "azure", "model": "x"}, {"backend": "openai", "model": "o1"}],
        }
    ]
    docs = [("b.yaml", backend()), ("e.yaml", endpoint(models=models))]
    assert errors_of(docs, partial=True) == [
        "e.yaml: Endpoint/demo-chat: spec.models[0].targets[1].model: Backend 'openai' does "
        "not serve model 'o1' (it serves: gpt-4o, gpt-4o-mini)",
    ]


def test_an_invalid_backend_causes_no_consequential_errors() -> None:
    # The Backend is broken (bad URL, one model without a name): references to it are neither
    # "unknown Backend" nor "does not serve", since we cannot tell what it serves.
    broken = backend(baseURL="nope", models=[{"name": "gpt-4o"}, {"tier": "basic"}])
    models = [{"name": "m", "targets": [{"backend": "openai", "model": "something"}]}]
    docs = [("b.yaml", broken), ("e.yaml", endpoint(models=models))]
    assert [e.split(": ")[2] for e in errors_of(docs)] == ["spec.baseURL", "spec.models[1].name"]


def test_checks_also_run_on_schema_invalid_endpoints() -> None:
    models = [{"name": "m", "targets": [{"backend": "azure", "model": "x"}], "extra": 1}]
    docs = [("b.yaml", backend()), ("e.yaml", endpoint(models=models))]
    assert errors_of(docs) == [
        "e.yaml: Endpoint/demo-chat: spec.models[0].extra: unknown field (expected one of: "
        "name, targets)",
        "e.yaml: Endpoint/demo-chat: spec.models[0].targets[0].backend: unknown Backend "
        "'azure' (defined Backends: openai)",
    ]


def test_every_kind_has_a_converter() -> None:
    assert set(validate._CONVERTERS) == {*KINDS, validate.SECRET_KIND}
