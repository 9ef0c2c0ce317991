"""Fixtures shared by the unit tests of the Kubernetes parts: an in-memory API server
speaking the REST protocol (tests/kube_apiserver.py) and a client of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.kube_api import KubeApi, connect
from tests.kube_apiserver import KubeApiServer


@pytest.fixture
def kube_server() -> Iterator[KubeApiServer]:
    server = KubeApiServer().start()
    yield server
    server.stop()


@pytest.fixture
def kube_api(kube_server: KubeApiServer, tmp_path: Path) -> KubeApi:
    """The official client, configured from a kubeconfig file as a user's would be."""
    return connect("weir", str(kube_server.kubeconfig(tmp_path / "kubeconfig")))
