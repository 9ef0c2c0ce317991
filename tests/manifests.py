"""The Kubernetes manifests as `kubectl kustomize` renders them, for the tests."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
KUSTOMIZE = REPO / "deploy" / "kustomize"
TARGETS = ("base", "overlays/quickstart", "overlays/production")
IMAGE = "ghcr.io/weir-gateway/weir"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
# What the downward API gives a pod (the values are examples).
POD_NAME = "weir-pod-7d9c6b5f4-x2k8q"
_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@functools.cache
def _render(target: str) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the manifests are rendered by `kubectl kustomize`")
    result = subprocess.run(
        [kubectl, "kustomize", str(KUSTOMIZE / target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {target}: {result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(target: str) -> list[dict[str, Any]]:
    return list(_render(target))


def workloads(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (doc for doc in docs if doc["kind"] in WORKLOAD_KINDS)


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def is_weir(container: dict[str, Any]) -> bool:
    return str(container["image"]).split(":")[0] == IMAGE


def environment(workload: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: downward API values, and
    `$(NAME)` references to variables defined before."""
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = expand(var["value"], env)
            continue
        secret = var["valueFrom"].get("secretKeyRef")
        if secret is not None:  # a Secret's value: stands for itself here
            env[var["name"]] = f"<secret {secret['name']}/{secret['key']}>"
            continue
        field = var["valueFrom"]["fieldRef"]["fieldPath"]
        env[var["name"]] = {
            "metadata.name": POD_NAME,
            "metadata.namespace": workload["metadata"]["namespace"],
        }[field]
    return env


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(NAME)` expansion in command, args and env values: a reference to an
    undefined variable stays as written (and `$$` escapes)."""

    def substitute(match: re.Match[str]) -> str:
        return env.get(match.group(1), match.group(0))

    parts = text.split("$$")
    return "$".join(_REFERENCE.sub(substitute, part) for part in parts)


def args_of(workload: dict[str, Any], container: dict[str, Any]) -> list[str]:
    env = environment(workload, container)
    return [expand(str(arg), env) for arg in container.get("args", [])]
