"""The CRDs: generated from the validator's schemas, structural as Kubernetes requires,
current in deploy/crds/, and of the same verdict as the file validator on every example
and fixture (schema and CEL rules, evaluated here with a real CEL engine), except for the
references between resources, which only the control plane can check."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cel
import pytest
import yaml
from jsonschema import Draft202012Validator

from controlplane import crds
from controlplane.errors import ConfigInvalid
from controlplane.schema import KINDS
from controlplane.source_files import _expand
from controlplane.validate import validate_documents

REPO = Path(__file__).resolve().parents[2]


class Environ(dict[str, str]):
    """Every variable is set: base URLs (the fixtures' *_URL) to a URL, others to text."""

    def __missing__(self, name: str) -> str:
        return "http://127.0.0.1:9100/v1" if name.endswith("_URL") else "set"

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return self[name]

    def __contains__(self, name: object) -> bool:
        return True


ENVIRON = Environ()
FORBIDDEN = {"const", "oneOf", "anyOf", "allOf", "not", "$ref"}

# Invalid fixtures whose every document the API server accepts: what is wrong is a
# reference to another resource (or a Rego module), which the control plane reports in
# the resource's Accepted condition.
CAUGHT_BY_THE_CONTROL_PLANE = {
    "backend/unknown-secret.yaml",  # a Secret that does not exist
    "endpoint/duplicate-name.yaml",  # two resources of one name: one object in a cluster
    "endpoint/duplicate-route.yaml",  # two Endpoints with one project/slug
    "endpoint/unknown-backend.yaml",
    "endpoint/unknown-model.yaml",  # a model the Backend does not serve
    "policy/compile-error.yaml",
    "policy/duplicate-package.yaml",
    "policy/no-decision.yaml",
    "policy/response-patch.yaml",
    "policy/unknown-endpoint.yaml",
    "policy/unknown-function.yaml",
    "servicetier/unknown-tier.yaml",  # an Endpoint names a tier that does not exist
}


def documents(path: Path) -> list[Any]:
    text, _ = _expand(path.read_text(), ENVIRON)
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def strict(schema: Any) -> Any:
    """Kubernetes' strict field validation (kubectl's default) rejects unknown fields."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items() if k != "x-kubernetes-validations"}
        preserved = out.get("x-kubernetes-preserve-unknown-fields") is True
        if "properties" in out and "additionalProperties" not in out and not preserved:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def cel_rules(schema: Any, value: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(path, rule, self) for every CEL rule whose object is present in `value`."""
    if not isinstance(schema, dict):
        return
    for rule in schema.get("x-kubernetes-validations", []):
        yield path, rule["rule"], value
    if isinstance(value, dict):
        for key, child in schema.get("properties", {}).items():
            if key in value:
                yield from cel_rules(child, value[key], f"{path}.{key}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from cel_rules(schema["items"], item, f"{path}[{i}]")


def api_server_verdict(doc: Any) -> list[str]:
    """What the API server would refuse in `doc`: schema errors and broken CEL rules."""
    if isinstance(doc, dict) and doc.get("kind") == "Secret":
        return kubernetes_secret_errors(doc)
    if not isinstance(doc, dict) or doc.get("kind") not in KINDS:
        return []
    schema = crds.open_api_schema(doc["kind"])
    checked = strict(schema)
    del checked["properties"]["metadata"]["additionalProperties"]  # ObjectMeta: Kubernetes'
    errors = [e.message for e in Draft202012Validator(checked).iter_errors(doc)]
    if errors:
        return errors  # CEL rules run only on objects of the right shape
    return [
        f"{path}: {rule}"
        for path, rule, value in cel_rules(schema, doc)
        if cel.evaluate(rule, {"self": value}) is not True
    ]


def kubernetes_secret_errors(doc: dict[str, Any]) -> list[str]:
    """What the API server checks of a Secret's data itself: base64."""
    errors = []
    for key, value in (doc.get("data") or {}).items():
        try:
            base64.b64decode(str(value), validate=True)
        except binascii.Error:
            errors.append(f"data.{key}: illegal base64 data")
    return errors


def test_the_files_in_deploy_are_current() -> None:
    directory = REPO / "deploy" / "crds"
    expected = crds.all_files()
    assert sorted(p.name for p in directory.glob("*.yaml")) == sorted(expected)
    for name, text in expected.items():
        assert (directory / name).read_text() == text, f"run `make crds` ({name})"
    # The kustomization lists every CRD.
    assert yaml.safe_load(expected[crds.KUSTOMIZATION])["resources"] == sorted(crds.all_crds())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_crd_is_structural(kind: str) -> None:
    crd = crds.crd(kind)
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.weir.dev"
    schema = version["schema"]["openAPIV3Schema"]
    assert schema["properties"]["metadata"] == {
        "type": "object",
        "properties": {"name": schema["properties"]["metadata"]["properties"]["name"]},
    }

    def walk(node: dict[str, Any], where: str) -> None:
        assert not FORBIDDEN & set(node), where
        assert node.get("additionalProperties") is not False, where
        if node.get("x-kubernetes-preserve-unknown-fields"):
            return
        assert "type" in node, where
        assert not ("properties" in node and "additionalProperties" in node), where
        for key, child in node.get("properties", {}).items():
            walk(child, f"{where}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], f"{where}[{key}]")

    walk(schema, kind)
    columns = {c["name"] for c in version["additionalPrinterColumns"]}
    assert {"Accepted", "Age"} <= columns


def test_every_cel_rule_compiles_and_walks_bounded_lists() -> None:
    for kind, rules in crds.CEL_RULES.items():
        schema = crds.open_api_schema(kind)
        for path, rule, _ in rules:
            cel.compile(rule)
            node = schema
            for key in path:
                node = node["properties"][key]
            for field in ("models",):
                if field in node.get("properties", {}) and field in rule:
                    assert node["properties"][field].get("maxItems"), (kind, path, field)


def example_files() -> list[Path]:
    files = sorted((REPO / "examples" / "quickstart").glob("*.yaml"))
    files += sorted((REPO / "tests" / "fixtures" / "valid").glob("*.y*ml"))
    files += sorted((REPO / "tests" / "fixtures" / "limits").glob("*.yaml"))
    files += sorted((REPO / "tests" / "fixtures" / "fallbacks").glob("*.yaml"))
    return files


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_the_api_server_accepts_every_example(path: Path) -> None:
    for doc in documents(path):
        assert api_server_verdict(doc) == [], doc.get("metadata")


def invalid_fixtures() -> list[Path]:
    root = REPO / "tests" / "fixtures" / "invalid"
    return sorted(p for p in root.glob("*/*.yaml") if p.parent.name != "document")


@pytest.mark.parametrize("path", invalid_fixtures(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_both_refuse_every_invalid_fixture(path: Path) -> None:
    docs = documents(path)
    with pytest.raises(ConfigInvalid):
        validate_documents([(path.name, doc) for doc in docs])
    refused = [message for doc in docs for message in api_server_verdict(doc)]
    name = f"{path.parent.name}/{path.name}"
    if name in CAUGHT_BY_THE_CONTROL_PLANE:
        assert refused == [], "the API server refuses it: take it off the list"
    else:
        assert refused, "the API server would accept it: add a schema or CEL rule"
