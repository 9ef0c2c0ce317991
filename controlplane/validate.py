"""Parsed YAML documents -> a validated, typed `ConfigSet`, or `ConfigInvalid` with every error.

Stages, all of which run so that one load reports every problem at once:

1. per document: a mapping with a known `apiVersion` and `kind`, valid against the kind's JSON
   Schema (`controlplane.schema`);
2. across documents: unique names per kind, unique (project, slug) among Endpoints, unique model
   names within a Backend and within an Endpoint, and every Endpoint target naming a Backend
   that exists and serves the target's model;
3. conversion to the dataclasses of `controlplane.model` (durations become seconds).

Errors are reported in document order, and within a document sorted by field path. Each names
the file, the resource (kind/name) and the field path.

To add a kind: add its schema to `controlplane.schema.KINDS`, a converter to `_CONVERTERS`,
its checks to `_CHECKS`, and a field to `ConfigSet`.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final, cast
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import extend

from controlplane.errors import UNKNOWN, ConfigError, ConfigInvalid
from controlplane.model import (
    API_VERSION,
    AutoRouting,
    Backend,
    BackendModel,
    ConfigSet,
    Endpoint,
    Limits,
    ModelAlias,
    ModelTarget,
    PIIPolicy,
    Policy,
    Pricing,
    RetryBudget,
    Secret,
    ServiceTier,
)
from controlplane.schema import (
    DURATION_PATTERN,
    ENV_VAR_PATTERN,
    KINDS,
    PATTERN_HINTS,
    SECRET_KEY_PATTERN,
    SECRET_NAME_PATTERN,
)
from weir.pii_types import DEFAULT_MAX_SCAN_BYTES
from weir.rego import RegoCompileError, compile_module

FieldPath = tuple[str | int, ...]

# Kubernetes Secrets may sit beside Weir's resources: Backends take API keys from them.
SECRET_KIND: Final = "Secret"
SECRET_API_VERSION: Final = "v1"

__all__ = ["FieldPath", "format_path", "parse_duration", "validate_documents"]

# --- helpers ----------------------------------------------------------------------------------

_NO_SPACE = re.compile(r"\S+")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_DURATION_SHAPE = re.compile(DURATION_PATTERN.removeprefix("^").removesuffix("$"))
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def format_path(path: Iterable[str | int]) -> str:
    """`("spec", "models", 0, "name")` -> `spec.models[0].name`; odd keys are quoted."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


# Envoy takes durations in milliseconds at best, and a timeout beyond a day is a mistake.
MIN_DURATION_S: Final = 0.001
MAX_DURATION_S: Final = 24 * 3600.0


def parse_duration(text: str) -> float:
    """A Go-style duration ("30s", "500ms", "2m", "1h", "1m30s", "1.5s") -> seconds.

    Raises ValueError for anything else, including a zero duration, one under 1ms and one
    over 24h.
    """
    if not isinstance(text, str) or not text:
        raise ValueError(f"{text!r} is not a duration")
    pos = 0
    seconds = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        raise ValueError(
            f"{text!r} is not a valid duration: use a number with a unit ms, s, m or h, "
            "like 30s or 500ms"
        )
    if seconds <= 0:
        raise ValueError(f"{text!r}: the duration must be greater than zero")
    if seconds < MIN_DURATION_S:
        raise ValueError(f"{text!r}: the duration must be at least 1ms")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{text!r}: the duration must be at most 24h")
    return seconds


# JSON Schema type names, as YAML users know them.
_TYPE_WORDS: Final = {"object": "mapping", "array": "list", "null": "null (empty) value"}


def _type_word(json_type: str) -> str:
    return _TYPE_WORDS.get(json_type, json_type)


def _value_type(value: Any) -> str:
    """The YAML-ish type name of a parsed value."""
    if value is None:
        return _type_word("null")
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return _type_word("array")
    if isinstance(value, dict):
        return _type_word("object")
    return type(value).__name__  # e.g. a date: YAML turns 2024-01-01 into one


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _printable(text: str) -> str:
    """`text`, or its repr if it has spaces or control characters (keeps errors one line)."""
    return text if _NO_SPACE.fullmatch(text) else repr(text)


def _article(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiouAEIO" else f"a {noun}"  # "a URL"


# --- JSON Schema validation -------------------------------------------------------------------


def _anchored_pattern(
    validator: Validator, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    """`pattern`, but with `$` meaning end of string as in ECMA-262 and Go.

    Python's `$` also matches before a trailing newline, so `"demo\\n"` would pass `^[a-z]+$`.
    """
    if not validator.is_type(instance, "string"):
        return
    match = re.search(pattern, instance)
    if match is None or (pattern.endswith("$") and match.end() != len(instance)):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


# `extend` is untyped in types-jsonschema; it returns a validator class like Draft202012Validator.
_WeirValidator = cast(
    "type[Validator]",
    extend(Draft202012Validator, validators={"pattern": _anchored_pattern}),  # type: ignore[no-untyped-call]
)


@cache
def _validator(kind: str) -> Validator:
    schema = KINDS[kind]
    Draft202012Validator.check_schema(schema)
    return _WeirValidator(schema)


# Values not repeated in messages: someone may have put a secret there by mistake
# (`apiKey: {env: sk-...}` instead of the variable's name).
_NO_ECHO: Final = frozenset({ENV_VAR_PATTERN})


def _path_key(path: FieldPath) -> tuple[tuple[int, int, str], ...]:
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in path)


def _schema_problems(kind: str, body: Mapping[str, Any]) -> list[tuple[FieldPath, str]]:
    found: set[tuple[FieldPath, str]] = set()
    for error in _validator(kind).iter_errors(body):
        found.update(_describe(error))
    return sorted(found, key=lambda item: (_path_key(item[0]), item[1]))


def _describe(error: ValidationError) -> Iterator[tuple[FieldPath, str]]:
    """Turn one jsonschema error into (field path, user-facing message) pairs."""
    path: FieldPath = tuple(error.absolute_path)
    keyword = error.validator
    instance = error.instance
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    hint = PATTERN_HINTS.get(schema.get("pattern", ""))

    if keyword == "required" and isinstance(instance, dict):
        required = error.validator_value
        for prop in required if isinstance(required, list) else []:
            if prop not in instance:
                yield (*path, prop), "required field is missing"
    elif keyword == "additionalProperties" and isinstance(instance, dict):
        known = list(schema.get("properties", {}))
        for prop in sorted(set(instance) - set(known), key=str):
            message = "unknown field"
            close = difflib.get_close_matches(str(prop), known, n=1)
            if close:
                message += f" (did you mean {close[0]!r}?)"
            elif known:
                message += f" (expected one of: {', '.join(known)})"
            yield (*path, str(prop)), message
    elif keyword == "pattern" and hint is not None:
        noun, advice = hint
        shown = "" if schema.get("pattern") in _NO_ECHO else f"{_short(instance)} "
        yield path, f"{shown}is not a valid {noun}: {advice}"
    elif keyword == "type":
        # The value itself is not shown: it could be a secret put in the wrong place.
        expected = error.validator_value
        names = expected if isinstance(expected, list) else [str(expected)]
        wanted = " or ".join(_article(_type_word(n)) for n in names)
        if hint is not None:
            wanted = f"{_article(hint[0])} (a string)"
        yield path, f"expected {wanted}, got {_article(_value_type(instance))}"
    elif keyword in ("minItems", "minLength") and error.validator_value == 1:
        yield path, "must not be empty"
    elif keyword == "maxLength":
        yield path, f"is longer than {error.validator_value} characters"
    elif keyword == "minimum":
        yield path, f"must be at least {error.validator_value}, got {_short(instance)}"
    elif keyword == "enum":
        if schema.get("type") == "string" and not isinstance(instance, str):
            return  # the type error says it
        values = error.validator_value
        allowed = ", ".join(str(v) for v in values) if isinstance(values, list) else str(values)
        yield path, f"must be one of: {allowed}; got {_short(instance)}"
    elif keyword == "const":
        yield path, f"must be {error.validator_value!r}, got {_short(instance)}"
    else:
        yield path, error.message


# --- documents and error collection -----------------------------------------------------------


@dataclass
class _Doc:
    index: int
    file: str
    body: Any
    kind: str = UNKNOWN  # for messages
    name: str = UNKNOWN  # for messages
    raw_name: str | None = None  # metadata.name when it is a string
    known_kind: bool = False  # kind is in KINDS (even if the rest is wrong)
    readable: bool = False  # apiVersion and kind are fine: spec is worth looking at
    valid: bool = False  # ...and it matches the schema: every field has its documented shape
    rego_package: str | None = None  # a Policy whose module compiled: the package it declares

    def resource_name(self) -> str:
        """metadata.name of a valid document."""
        assert self.raw_name is not None
        return self.raw_name

    def spec(self) -> dict[str, Any]:
        """`spec` when readable and a mapping, else {} (checks also look at invalid docs)."""
        spec = self.body.get("spec") if self.readable else None
        return spec if isinstance(spec, dict) else {}


@dataclass
class _Errors:
    items: list[tuple[int, FieldPath, int, ConfigError]] = field(default_factory=list)

    def add(self, doc: _Doc, path: FieldPath, message: str) -> None:
        error = ConfigError(doc.file, doc.kind, doc.name, format_path(path), message)
        self.items.append((doc.index, path, len(self.items), error))

    def __bool__(self) -> bool:
        return bool(self.items)

    def ordered(self) -> list[ConfigError]:
        """By document, then by field path, then in the order found."""
        items = sorted(self.items, key=lambda t: (t[0], _path_key(t[1]), t[2]))
        return [error for *_, error in items]


def _inspect(index: int, file: str, body: Any, errors: _Errors) -> _Doc:
    doc = _Doc(index, file, body)
    if not isinstance(body, dict):
        errors.add(doc, (), f"expected a mapping (a resource), got {_article(_value_type(body))}")
        return doc
    if body.get("kind") == SECRET_KIND and body.get("apiVersion") == SECRET_API_VERSION:
        return _inspect_secret(doc, errors)
    kind = body.get("kind")
    if isinstance(kind, str) and kind:
        doc.kind = _printable(kind)
        doc.known_kind = kind in KINDS
    metadata = body.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if isinstance(name, str) and name:
        doc.raw_name = name
        doc.name = _printable(name)

    readable = True
    if "apiVersion" not in body:
        errors.add(doc, ("apiVersion",), f"required field is missing (use {API_VERSION})")
        readable = False
    elif body["apiVersion"] != API_VERSION:
        errors.add(
            doc,
            ("apiVersion",),
            f"unsupported apiVersion {_short(body['apiVersion'])}: expected {API_VERSION!r}",
        )
        readable = False
    if "kind" not in body:
        errors.add(doc, ("kind",), f"required field is missing (one of: {', '.join(KINDS)})")
        readable = False
    elif not doc.known_kind:
        errors.add(
            doc, ("kind",), f"unknown kind {_short(kind)}: expected one of: {', '.join(KINDS)}"
        )
        readable = False
    if not readable:
        return doc

    doc.readable = True
    problems = _schema_problems(doc.kind, body)
    for path, message in problems:
        errors.add(doc, path, message)
    doc.valid = not problems
    return doc


def _inspect_secret(doc: _Doc, errors: _Errors) -> _Doc:
    """A Kubernetes Secret, checked by hand so that no message can quote a value."""
    doc.kind = SECRET_KIND
    body = doc.body
    metadata = body.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if isinstance(name, str) and re.fullmatch(SECRET_NAME_PATTERN, name):
        doc.raw_name = doc.name = name
    else:
        errors.add(doc, ("metadata", "name"), "a Secret needs a name (a DNS subdomain)")
        return doc
    for key in body:
        if key not in ("apiVersion", "kind", "metadata", "type", "immutable", *_SECRET_FIELDS):
            errors.add(doc, (key,), "unknown field of a Secret")
    for section in _SECRET_FIELDS:
        values = body.get(section, {})
        if not isinstance(values, dict):
            errors.add(doc, (section,), "expected a mapping of keys to strings")
            continue
        for key, value in values.items():
            if not isinstance(key, str) or not re.fullmatch(SECRET_KEY_PATTERN, key):
                errors.add(doc, (section,), "a key must be letters, digits, '-', '_' or '.'")
            elif not isinstance(value, str):
                errors.add(doc, (section, key), "the value must be a string")
            elif section == "data" and _decoded(value) is None:
                errors.add(doc, (section, key), "the value is not base64 of UTF-8 text")
    doc.known_kind = doc.readable = doc.valid = True
    return doc


_SECRET_FIELDS: Final = ("data", "stringData")


def _decoded(value: str) -> str | None:
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def _secret_keys(doc: _Doc) -> set[str]:
    keys: set[str] = set()
    for section in _SECRET_FIELDS:
        values = doc.body.get(section)
        if isinstance(values, dict):
            keys.update(k for k in values if isinstance(k, str))
    return keys


def _check_secret_references(docs: Sequence[_Doc], errors: _Errors, partial: bool) -> None:
    secrets = {d.raw_name: d for d in docs if d.kind == SECRET_KIND and d.raw_name is not None}
    for doc in docs:
        if not (doc.readable and doc.kind == "Backend"):
            continue
        api_key = doc.spec().get("apiKey")
        if not isinstance(api_key, dict):
            continue
        if ("env" in api_key) == ("secretRef" in api_key):
            errors.add(doc, ("spec", "apiKey"), "give exactly one of `env` and `secretRef`")
            continue
        ref = api_key.get("secretRef")
        if not isinstance(ref, dict):
            continue
        name, key = ref.get("name"), ref.get("key")
        if not isinstance(name, str) or not isinstance(key, str):
            continue
        secret = secrets.get(name)
        if secret is None:
            if not partial:
                defined = ", ".join(sorted(secrets)) or "none"
                errors.add(
                    doc,
                    ("spec", "apiKey", "secretRef", "name"),
                    f"unknown Secret {name!r} (defined: {defined})",
                )
        elif key not in _secret_keys(secret):
            keys = ", ".join(sorted(_secret_keys(secret))) or "none"
            errors.add(
                doc,
                ("spec", "apiKey", "secretRef", "key"),
                f"Secret {name!r} has no key {key!r} (its keys: {keys})",
            )


# --- cross-resource and semantic checks -------------------------------------------------------
#
# These also run on documents that failed the schema (so one load reports everything), hence
# read fields defensively: a field of the wrong shape was already reported and is skipped here.


def _items(value: Any) -> list[tuple[int, dict[str, Any]]]:
    """The (index, item) pairs of a list that are mappings."""
    if not isinstance(value, list):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)]


def _string(mapping: Mapping[str, Any], key: str) -> str | None:
    value = mapping.get(key)
    return value if isinstance(value, str) else None


def _check_unique_names(docs: Sequence[_Doc], errors: _Errors, partial: bool) -> None:
    first: dict[tuple[str, str], _Doc] = {}
    for doc in docs:
        if not doc.known_kind or doc.raw_name is None:
            continue
        key = (doc.kind, doc.raw_name)
        if key in first:
            errors.add(
                doc,
                ("metadata", "name"),
                f"duplicate {doc.kind} name {doc.raw_name!r}: already defined in {first[key].file}",
            )
        else:
            first[key] = doc


def _check_unique_model_names(doc: _Doc, what: str, errors: _Errors) -> None:
    seen: dict[str, int] = {}
    for i, item in _items(doc.spec().get("models")):
        name = _string(item, "name")
        if name is None:
            continue
        if name in seen:
            errors.add(
                doc,
                ("spec", "models", i, "name"),
                f"duplicate {what} {name!r}: already listed at spec.models[{seen[name]}]",
            )
        else:
            seen[name] = i


def _check_durations(
    doc: _Doc, spec: Mapping[str, Any], keys: Sequence[str], errors: _Errors, *path: str
) -> None:
    """Durations of the right shape (the schema checks that) within Weir's range."""
    for key in keys:
        text = _string(spec, key)
        if text is not None and _DURATION_SHAPE.fullmatch(text):
            try:
                parse_duration(text)
            except ValueError as e:
                errors.add(doc, ("spec", *path, key), str(e))


def _check_service_tiers(docs: Sequence[_Doc], errors: _Errors, partial: bool) -> None:
    for doc in docs:
        if doc.readable and doc.kind == "ServiceTier":
            timeouts = doc.spec().get("timeouts")
            if isinstance(timeouts, dict):
                _check_durations(
                    doc, timeouts, ("request", "streamIdle", "firstByte"), errors, "timeouts"
                )


def _check_backends(docs: Sequence[_Doc], errors: _Errors, partial: bool) -> None:
    for doc in docs:
        if not (doc.readable and doc.kind == "Backend"):
            continue
        spec = doc.spec()
        _check_unique_model_names(doc, "model", errors)
        _check_durations(doc, spec, ("timeout", "connectTimeout"), errors)
        url = _string(spec, "baseURL")
        if url is not None:
            try:
                port = urlsplit(url).port
            except ValueError:
                port = -1
            if port is not None and not 1 <= port <= 65535:
                errors.add(doc, ("spec", "baseURL"), f"{url!r}: the port must be 1-65535")


def _served_models(doc: _Doc) -> frozenset[str] | None:
    """The model names a Backend serves, or None when its document does not tell for sure."""
    if not doc.readable:
        return None
    models = doc.spec().get("models")
    if not isinstance(models, list):
        return None
    names = [m.get("name") if isinstance(m, dict) else None for m in models]
    if not all(isinstance(n, str) for n in names):
        return None
    return frozenset(n for n in names if isinstance(n, str))


def _check_endpoints(docs: Sequence[_Doc], errors: _Errors, partial: bool) -> None:
    backends: dict[str, frozenset[str] | None] = {}
    for doc in docs:
        if doc.kind == "Backend" and doc.raw_name is not None and doc.raw_name not in backends:
            backends[doc.raw_name] = _served_models(doc)

    routes: dict[tuple[str, str], _Doc] = {}
    for doc in docs:
        if not (doc.readable and doc.kind == "Endpoint"):
            continue
        spec = doc.spec()
        project, slug = _string(spec, "project"), _string(spec, "slug")
        if project is not None and slug is not None:
            other = routes.setdefault((project, slug), doc)
            if other is not doc:
                errors.add(
                    doc,
                    ("spec", "slug"),
                    f"project/slug {project}/{slug} is already served by Endpoint "
                    f"{other.name!r} in {other.file}",
                )

        _check_unique_model_names(doc, "model name", errors)

        for i, alias in _items(spec.get("models")):
            for j, target in _items(alias.get("targets")):
                here: FieldPath = ("spec", "models", i, "targets", j)
                backend, model = _string(target, "backend"), _string(target, "model")
                if backend is None:
                    continue
                if backend not in backends:
                    if not partial:  # else it may be in a document we could not read
                        defined = ", ".join(sorted(backends)) or "none"
                        errors.add(
                            doc,
                            (*here, "backend"),
                            f"unknown Backend {backend!r} (defined Backends: {defined})",
                        )
                    continue
                served = backends[backend]
                if model is not None and served is not None and model not in served:
                    errors.add(
                        doc,
                        (*here, "model"),
                        f"Backend {backend!r} does not serve model {model!r} "
                        f"(it serves: {', '.join(sorted(served))})",
                    )
        _check_auto(doc, spec, errors)


def _check_auto(doc: _Doc, spec: Mapping[str, Any], errors: _Errors) -> None:
    """`auto` names models of the endpoint, which then has none called "auto"."""
    auto = spec.get("auto")
    if not isinstance(auto, dict):
        return
    names = [_string(alias, "name") for _, alias in _items(spec.get("models"))]
    if "auto" in names:
        errors.add(
            doc,
            ("spec", "models", names.index("auto"), "name"),
            "an endpoint with `auto` routing cannot also have a model named 'auto'",
        )
    for k, name in enumerate(auto.get("models") or ()):
        if isinstance(name, str) and name not in names:
            known = ", ".join(sorted(n for n in names if n)) or "none"
            errors.add(
                doc,
                ("spec", "auto", "models", k),
                f"unknown model {name!r} of this endpoint (its models: {known})",
            )


# What a Policy's module must define, per stage: the rules ext_proc evaluates.
POLICY_RULES: Final = {"request": ("deny", "patch"), "response": ("deny",)}


def _check_policies(docs: Sequence[_Doc], errors: _Errors, partial: bool) -> None:
    endpoints = {d.raw_name for d in docs if d.kind == "Endpoint" and d.raw_name is not None}
    packages: dict[str, _Doc] = {}  # ext_proc loads an endpoint's policies into one engine
    for doc in docs:
        if not (doc.readable and doc.kind == "Policy"):
            continue
        spec = doc.spec()
        names = spec.get("endpoints")
        seen: set[str] = set()
        for i, name in enumerate(names if isinstance(names, list) else []):
            if not isinstance(name, str):
                continue
            if name in seen:
                errors.add(doc, ("spec", "endpoints", i), f"Endpoint {name!r} is listed twice")
            elif name not in endpoints and not partial:
                defined = ", ".join(sorted(endpoints)) or "none"
                errors.add(
                    doc,
                    ("spec", "endpoints", i),
                    f"unknown Endpoint {name!r} (defined Endpoints: {defined})",
                )
            seen.add(name)
        package = doc.rego_package = _check_rego(doc, spec, errors)
        if package is not None:
            other = packages.setdefault(package, doc)
            if other is not doc:
                errors.add(
                    doc,
                    ("spec", "rego"),
                    f"package {package.removeprefix('data.')} is already declared by Policy "
                    f"{other.name!r} in {other.file}: each Policy needs a package of its own",
                )


def _check_rego(doc: _Doc, spec: Mapping[str, Any], errors: _Errors) -> str | None:
    """Compile the Policy's module; its package if it compiles."""
    source, stage = _string(spec, "rego"), _string(spec, "stage")
    if not source or stage not in POLICY_RULES:
        return None
    entry_rules = POLICY_RULES[stage]
    try:
        module = compile_module(f"{doc.raw_name or 'policy'}.rego", source, entry_rules)
    except RegoCompileError as error:
        errors.add(doc, ("spec", "rego"), f"the Rego module does not compile: {error}")
        return None
    if not module.rules & set(entry_rules):
        wanted = " or ".join(f"`{rule}`" for rule in entry_rules)
        errors.add(
            doc,
            ("spec", "rego"),
            f"the module (package {module.package.removeprefix('data.')}) defines no {wanted} "
            f"rule, so a {stage} policy would never decide anything",
        )
    if stage == "response" and "patch" in module.rules:
        errors.add(
            doc,
            ("spec", "rego"),
            "`patch` is applied at the request stage only; move it to a request Policy",
        )
    return module.package


def _check_endpoint_references(
    docs: Sequence[_Doc], errors: _Errors, partial: bool, field: str, kind: str
) -> None:
    """Each Endpoint's `spec.<field>` names a resource of `kind` that exists."""
    names = {d.raw_name for d in docs if d.kind == kind and d.raw_name is not None}
    for doc in docs:
        if not (doc.readable and doc.kind == "Endpoint"):
            continue
        name = _string(doc.spec(), field)
        if name is not None and name not in names and not partial:
            defined = ", ".join(sorted(names)) or "none"
            errors.add(doc, ("spec", field), f"unknown {kind} {name!r} (defined: {defined})")


def _check_pii_references(docs: Sequence[_Doc], errors: _Errors, partial: bool) -> None:
    _check_endpoint_references(docs, errors, partial, "piiPolicy", "PIIPolicy")
    for doc in docs:
        if not (doc.readable and doc.kind == "PIIPolicy"):
            continue
        types = doc.spec().get("entityTypes")
        seen: set[str] = set()
        for i, kind in enumerate(types if isinstance(types, list) else []):
            if isinstance(kind, str) and kind in seen:
                errors.add(doc, ("spec", "entityTypes", i), f"{kind} is listed twice")
            if isinstance(kind, str):
                seen.add(kind)


def _check_tier_references(docs: Sequence[_Doc], errors: _Errors, partial: bool) -> None:
    _check_endpoint_references(docs, errors, partial, "serviceTier", "ServiceTier")


_CHECKS: Final[list[Callable[[Sequence[_Doc], _Errors, bool], None]]] = [
    _check_unique_names,
    _check_backends,
    _check_secret_references,
    _check_service_tiers,
    _check_endpoints,
    _check_policies,
    _check_pii_references,
    _check_tier_references,
]

# --- conversion (only of valid documents, once every check passed) ---------------------------


def _to_backend(doc: _Doc) -> Backend:
    spec = doc.spec()
    kwargs: dict[str, Any] = {}  # absent fields keep the dataclass defaults
    if "timeout" in spec:
        kwargs["timeout_seconds"] = parse_duration(spec["timeout"])
    if "connectTimeout" in spec:
        kwargs["connect_timeout_seconds"] = parse_duration(spec["connectTimeout"])
    if "apiKey" in spec:
        api_key = spec["apiKey"]
        if "env" in api_key:
            kwargs["api_key_env"] = api_key["env"]
        else:
            kwargs["api_key_secret"] = (api_key["secretRef"]["name"], api_key["secretRef"]["key"])
    if "weight" in spec:
        kwargs["weight"] = int(spec["weight"])
    return Backend(
        name=doc.resource_name(),
        base_url=spec["baseURL"].rstrip("/"),
        models=tuple(_to_backend_model(m) for m in spec["models"]),
        source_file=doc.file,
        **kwargs,
    )


def _to_backend_model(m: Mapping[str, Any]) -> BackendModel:
    kwargs: dict[str, Any] = {}
    if "contextWindow" in m:
        kwargs["context_window"] = int(m["contextWindow"])
    if "maxOutputTokens" in m:
        kwargs["max_output_tokens"] = int(m["maxOutputTokens"])
    if "tier" in m:
        kwargs["tier"] = m["tier"]
    if "pricing" in m:
        p = m["pricing"]
        kwargs["pricing"] = Pricing(
            input=float(p.get("input", 0)),
            cached_input=float(p.get("cachedInput", 0)),
            output=float(p.get("output", 0)),
        )
    return BackendModel(name=m["name"], **kwargs)


def _to_endpoint(doc: _Doc) -> Endpoint:
    spec = doc.spec()
    return Endpoint(
        name=doc.resource_name(),
        project=spec["project"],
        slug=spec["slug"],
        models=tuple(
            ModelAlias(
                name=alias["name"],
                targets=tuple(
                    ModelTarget(backend=t["backend"], model=t["model"]) for t in alias["targets"]
                ),
            )
            for alias in spec["models"]
        ),
        source_file=doc.file,
        pii_policy=spec.get("piiPolicy"),
        service_tier=spec.get("serviceTier"),
        auto=_auto_routing(spec),
    )


def _auto_routing(spec: Mapping[str, Any]) -> AutoRouting | None:
    auto = spec.get("auto")
    if auto is None:
        return None
    models = auto.get("models") or [alias["name"] for alias in spec["models"]]
    return AutoRouting(models=tuple(models), mode=auto.get("mode", "balanced"))


def _to_policy(doc: _Doc) -> Policy:
    spec = doc.spec()
    name = doc.resource_name()
    assert doc.rego_package is not None  # compiled by _check_policies, which found no error
    return Policy(
        name=name,
        stage=spec["stage"],
        rego=spec["rego"],
        package=doc.rego_package,
        endpoints=tuple(spec.get("endpoints", ())),
        fail_open=bool(spec.get("failOpen", False)),
        source_file=doc.file,
    )


def _to_pii_policy(doc: _Doc) -> PIIPolicy:
    spec = doc.spec()
    art9 = spec.get("art9", {})
    return PIIPolicy(
        name=doc.resource_name(),
        action=spec.get("action", "anonymize"),
        entity_types=tuple(spec.get("entityTypes", ())),
        art9_detect=bool(art9.get("detect", True)),
        art9_action=art9.get("action", "flag"),
        restore_responses=bool(spec.get("restoreResponses", True)),
        max_scan_bytes=int(spec.get("maxScanBytes", DEFAULT_MAX_SCAN_BYTES)),
        source_file=doc.file,
    )


def _to_secret(doc: _Doc) -> Secret:
    values = {}
    for key, value in doc.body.get("data", {}).items():
        values[key] = _decoded(value) or ""
    values.update(doc.body.get("stringData", {}))  # as Kubernetes does: stringData wins
    return Secret(name=doc.resource_name(), values=values, source_file=doc.file)


def _limits(spec: Any) -> Limits:
    spec = spec if isinstance(spec, dict) else {}
    return Limits(
        requests_per_minute=int(spec.get("requestsPerMinute", 0)),
        tokens_per_minute=int(spec.get("tokensPerMinute", 0)),
        concurrent_requests=int(spec.get("concurrentRequests", 0)),
    )


def _to_service_tier(doc: _Doc) -> ServiceTier:
    spec = doc.spec()
    timeouts = spec.get("timeouts", {})
    budget = spec.get("retryBudget", {})
    request, idle = timeouts.get("request"), timeouts.get("streamIdle")
    first_byte = timeouts.get("firstByte")
    return ServiceTier(
        name=doc.resource_name(),
        per_key=_limits(spec.get("perKey")),
        per_project=_limits(spec.get("perProject")),
        priority=spec.get("priority", "default"),
        request_timeout_seconds=parse_duration(request) if request else None,
        stream_idle_timeout_seconds=parse_duration(idle) if idle else None,
        first_byte_timeout_seconds=parse_duration(first_byte) if first_byte else None,
        retry_budget=RetryBudget(
            max_retries=int(budget.get("maxRetries", 2)),
            percent=int(budget.get("percent", 20)),
            min_concurrent=int(budget.get("minConcurrent", 3)),
        ),
        source_file=doc.file,
    )


_CONVERTERS: Final[dict[str, Callable[[_Doc], object]]] = {
    "Backend": _to_backend,
    "Endpoint": _to_endpoint,
    "Policy": _to_policy,
    "PIIPolicy": _to_pii_policy,
    "ServiceTier": _to_service_tier,
    SECRET_KIND: _to_secret,
}

# --- entry point ------------------------------------------------------------------------------


def validate_documents(docs: Sequence[tuple[str, Any]], *, partial: bool = False) -> ConfigSet:
    """Validate `(file path, parsed YAML document)` pairs and build the `ConfigSet`.

    Raises `ConfigInvalid` listing every error found. `partial=True` says some documents could
    not be read (e.g. a YAML syntax error elsewhere): references to Backends that are not among
    `docs` are then not reported, as they may live in the unreadable part.
    """
    errors = _Errors()
    inspected = [_inspect(i, file, body, errors) for i, (file, body) in enumerate(docs)]
    for check in _CHECKS:
        check(inspected, errors, partial)
    if errors:
        raise ConfigInvalid(errors.ordered())
    resources = [_CONVERTERS[doc.kind](doc) for doc in inspected]
    return ConfigSet(
        backends=tuple(r for r in resources if isinstance(r, Backend)),
        endpoints=tuple(r for r in resources if isinstance(r, Endpoint)),
        policies=tuple(r for r in resources if isinstance(r, Policy)),
        pii_policies=tuple(r for r in resources if isinstance(r, PIIPolicy)),
        service_tiers=tuple(r for r in resources if isinstance(r, ServiceTier)),
        secrets=tuple(r for r in resources if isinstance(r, Secret)),
    )
