"""Provider keys: sent upstream in place of the client's key, and never logged."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import httpx
import openai
import pytest

from tests.integration.harness import (
    copy_quickstart,
    create_key,
    run_up_expecting_failure,
    weir_up,
)
from weir.ports import free_port

pytestmark = pytest.mark.integration

SECRET = "sk-weir-test-3b1f0c9e7d2a4c55"  # stands in for a real provider key

KEYED_BACKEND = """
apiVersion: weir.dev/v1alpha1
kind: Backend
metadata: {name: keyed}
spec:
  baseURL: ${WEIR_MOCK_LLM_URL}
  apiKey: {env: WEIR_TEST_PROVIDER_KEY}
  models: [{name: mock-gpt}]
---
apiVersion: weir.dev/v1alpha1
kind: Endpoint
metadata: {name: keyed}
spec:
  project: demo
  slug: keyed
  models: [{name: keyed-model, targets: [{backend: keyed, model: mock-gpt}]}]
"""


def test_the_provider_key_goes_upstream_and_never_into_logs(tmp_path: Path) -> None:
    config = copy_quickstart(tmp_path / "config")
    (config / "keyed.yaml").write_text(KEYED_BACKEND)
    state = tmp_path / "state"
    client_key = create_key(state, "demo")["key"]
    with weir_up(config, state, "-v", env={"WEIR_TEST_PROVIDER_KEY": SECRET}) as up:
        assert not up.key  # the project had a key: `weir up` printed none
        keyed = openai.OpenAI(base_url=up.endpoint("demo", "keyed"), api_key=client_key)
        raw = keyed.chat.completions.with_raw_response.create(
            model="keyed-model", messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.headers["x-mock-received-authorization-present"] == "true"
        # Exactly the provider's key arrived, not the client's (the mock sends a hash).
        expected = hashlib.sha256(f"Bearer {SECRET}".encode()).hexdigest()
        assert raw.headers["x-mock-received-authorization-sha256"] == expected
        received = httpx.get(f"{up.mock_url}/mock/stats").json()["last_request"]
        assert received["model"] == "mock-gpt"
        # Without a key on the backend, the client's key is removed, not forwarded.
        plain = openai.OpenAI(base_url=up.endpoint(), api_key=client_key)
        raw = plain.chat.completions.with_raw_response.create(
            model="mock-gpt", messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.headers["x-mock-received-authorization-present"] == "false"
        output = up.process.output
    logs = "".join(p.read_text() for p in (state / "logs").iterdir())
    for text in (output, logs):
        assert SECRET not in text
        assert client_key not in text
    assert "runtime config" in logs  # the logs were written, and were searched


def test_a_missing_provider_key_is_reported_by_name_before_anything_starts(
    tmp_path: Path,
) -> None:
    config = copy_quickstart(tmp_path / "config")
    (config / "keyed.yaml").write_text(KEYED_BACKEND)
    environ = {k: v for k, v in os.environ.items() if k != "WEIR_TEST_PROVIDER_KEY"}
    result = run_up_expecting_failure(
        config, tmp_path / "state", "--port", str(free_port()), env=environ
    )
    assert result.returncode == 2
    assert "keyed.yaml: Backend/keyed: spec.apiKey.env:" in result.stderr
    assert "WEIR_TEST_PROVIDER_KEY is not set" in result.stderr
    assert not (tmp_path / "state" / "logs").exists()


SECRET_BACKEND = """
apiVersion: v1
kind: Secret
metadata: {name: provider-keys}
type: Opaque
data:
  mock: %s
---
apiVersion: weir.dev/v1alpha1
kind: Backend
metadata: {name: from-secret}
spec:
  baseURL: ${WEIR_MOCK_LLM_URL}
  apiKey: {secretRef: {name: provider-keys, key: mock}}
  models: [{name: mock-gpt}]
---
apiVersion: weir.dev/v1alpha1
kind: Endpoint
metadata: {name: from-secret}
spec:
  project: demo
  slug: from-secret
  models: [{name: m, targets: [{backend: from-secret, model: mock-gpt}]}]
"""


def test_a_key_from_a_secret_goes_upstream_and_never_into_logs(tmp_path: Path) -> None:
    secret = "sk-from-a-secret-7c2d9e"
    config = copy_quickstart(tmp_path / "config")
    encoded = base64.b64encode(secret.encode()).decode()
    (config / "secret.yaml").write_text(SECRET_BACKEND % encoded)
    state = tmp_path / "state"
    with weir_up(config, state, "-v") as up:
        raw = openai.OpenAI(
            base_url=up.endpoint("demo", "from-secret"), api_key=up.key
        ).chat.completions.with_raw_response.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
        expected = hashlib.sha256(f"Bearer {secret}".encode()).hexdigest()
        assert raw.headers["x-mock-received-authorization-sha256"] == expected
        output = up.process.output
    logs = "".join(p.read_text() for p in (state / "logs").iterdir())
    for text in (output, logs):
        assert secret not in text and encoded not in text
