"""Fixtures shared by the unit tests: for the Kubernetes parts, an in-memory API server
speaking the REST protocol (tests/kube_apiserver.py) and a client of it; for the stores,
a real PostgreSQL server (tests/postgres_server.py), started once when a test asks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.kube_api import KubeApi, connect
from tests.kube_apiserver import KubeApiServer
from tests.postgres_server import PostgresServer, running_postgres

POSTGRES_PASSWORD = "pg-pass-3c9e71d4a8"


@pytest.fixture
def kube_server() -> Iterator[KubeApiServer]:
    server = KubeApiServer().start()
    yield server
    server.stop()


@pytest.fixture
def kube_api(kube_server: KubeApiServer, tmp_path: Path) -> KubeApi:
    """The official client, configured from a kubeconfig file as a user's would be."""
    return connect("weir", str(kube_server.kubeconfig(tmp_path / "kubeconfig")))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with running_postgres(POSTGRES_PASSWORD) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL (with its password) of a new, empty database for this test."""
    return postgres_server.new_database()
