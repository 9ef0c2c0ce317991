"""API keys through the real stack with the OpenAI SDK: each way a key fails, projects
and scopes, the CLI and the management API, and revocation reaching every ext_proc
replica within a second."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.integration.harness import WeirUp, copy_quickstart, create_key, weir_argv, weir_up
from tests.openapi_schema import validate_openapi

pytestmark = pytest.mark.integration

HI = [{"role": "user", "content": "hi"}]
OTHER_PROJECT = """
apiVersion: weir.dev/v1alpha1
kind: Endpoint
metadata: {name: other-chat}
spec:
  project: other
  slug: chat
  models: [{name: mock-gpt, targets: [{backend: mock, model: mock-gpt}]}]
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeirUp]:
    root = tmp_path_factory.mktemp("keys")
    config = copy_quickstart(root / "config")
    (config / "other.yaml").write_text(OTHER_PROJECT)
    with weir_up(config, root / "state", "--extproc-replicas", "2") as up:
        yield up


def sdk(stack: WeirUp, key: str, project: str = "demo") -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.endpoint(project, "chat"), api_key=key, max_retries=0)


def mock_requests(stack: WeirUp) -> int:
    count: int = httpx.get(f"{stack.mock_url}/mock/stats").json()["requests"]
    return count


def until_refused(stack: WeirUp, key: str, code: str, timeout: float = 1.0) -> float:
    """Seconds until every replica refuses `key` with `code` (20 calls in a row, which
    Envoy spreads over both replicas)."""
    started = time.monotonic()
    client = sdk(stack, key)
    while True:
        refused = 0
        for _ in range(20):
            try:
                client.models.list()
            except openai.AuthenticationError as error:
                assert error.code == code
                refused += 1
        if refused == 20:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, f"{refused}/20 refused after {timeout}s"


def test_weir_up_printed_a_working_key(stack: WeirUp) -> None:
    reply = sdk(stack, stack.key).chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert reply.choices[0].message.content


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "missing_api_key"),
        ("Basic dXNlcjpwYXNz", "malformed_api_key"),
        ("Bearer sk-proj-an-openai-key", "malformed_api_key"),
        ("Bearer wk_demo_" + "x" * 43, "invalid_api_key"),
    ],
)
def test_missing_malformed_and_unknown_keys_are_401s_with_distinct_codes(
    stack: WeirUp, authorization: str | None, code: str
) -> None:
    before = mock_requests(stack)
    headers = {"authorization": authorization} if authorization else {}
    response = httpx.post(
        f"{stack.endpoint()}/chat/completions",
        json={"model": "gpt-4o-mini", "messages": HI},
        headers=headers,
    )
    assert response.status_code == 401
    validate_openapi(response.json(), "ErrorResponse")
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.json()["error"]["code"] == code
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert mock_requests(stack) == before
    if authorization is not None and "x" * 43 in authorization:
        with pytest.raises(openai.AuthenticationError) as raised:
            sdk(stack, authorization.removeprefix("Bearer ")).models.list()
        assert raised.value.code == code


def test_an_expired_key_is_refused_as_expired(stack: WeirUp) -> None:
    created = create_key(stack.state_dir, "demo", "--expires", "1s")
    assert created["expires_at"] is not None
    time.sleep(1.1)
    until_refused(stack, created["key"], "expired_api_key", timeout=2.0)


def test_a_revoked_key_stops_working_on_every_replica_within_a_second(stack: WeirUp) -> None:
    created = create_key(stack.state_dir, "demo")
    key = created["key"]
    deadline = time.monotonic() + 2.0
    while True:  # a key created while running is accepted once pushed
        try:
            sdk(stack, key).models.list()
            break
        except openai.AuthenticationError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    subprocess.run(
        weir_argv("keys", "revoke", created["id"], "--state-dir", str(stack.state_dir)),
        check=True,
        capture_output=True,
        timeout=30,
    )
    assert until_refused(stack, key, "revoked_api_key", timeout=1.0) < 1.0
    for replica in ("extproc-0", "extproc-1"):
        log = (stack.state_dir / "logs" / f"{replica}.log").read_text()
        assert log.count("API key set") >= 2, log  # each replica applied the change


def test_a_key_of_another_project_and_a_key_without_the_scope_are_403(stack: WeirUp) -> None:
    other = create_key(stack.state_dir, "other")["key"]
    management_only = create_key(stack.state_dir, "demo", "--scopes", "management")["key"]
    time.sleep(0.5)
    assert sdk(stack, other, "other").models.list().data  # its own project works
    with pytest.raises(openai.PermissionDeniedError) as wrong_project:
        sdk(stack, other).chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert wrong_project.value.code == "wrong_project"
    with pytest.raises(openai.PermissionDeniedError) as no_scope:
        sdk(stack, management_only).chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert no_scope.value.code == "scope_insufficient"


def test_the_management_api_creates_lists_rotates_and_revokes(stack: WeirUp) -> None:
    api = httpx.Client(base_url=stack.management_url, headers=stack.auth, timeout=5.0)
    assert api.get("/v1/keys", headers={"authorization": ""}).status_code == 401
    created = api.post("/v1/keys", json={"name": "ci", "scopes": ["inference"]})
    assert created.status_code == 201, created.text
    key, key_id = created.json()["key"], created.json()["id"]
    listing = api.get("/v1/keys").json()["data"]
    assert key_id in {k["id"] for k in listing}
    assert key not in api.get("/v1/keys").text  # listed, never shown again
    # An inference-only key cannot manage keys.
    refused = api.get("/v1/keys", headers={"authorization": f"Bearer {key}"})
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "scope_insufficient")
    time.sleep(0.3)
    assert sdk(stack, key).models.list().data
    rotated = api.post(f"/v1/keys/{key_id}/rotate", json={"grace_period": 60})
    assert rotated.status_code == 201, rotated.text
    new_key = rotated.json()["key"]
    time.sleep(0.5)
    assert sdk(stack, new_key).models.list().data
    assert sdk(stack, key).models.list().data  # the old key still works during the grace
    revoked = api.delete(f"/v1/keys/{key_id}")
    assert revoked.json()["state"] == "revoked"
    assert until_refused(stack, key, "revoked_api_key") < 1.0
    assert sdk(stack, new_key).models.list().data


def test_keys_are_stored_hashed_and_never_logged(stack: WeirUp) -> None:
    created = create_key(stack.state_dir, "demo")
    time.sleep(0.3)
    sdk(stack, created["key"]).chat.completions.create(model="gpt-4o-mini", messages=HI)
    secret = created["key"].rsplit("_", 1)[1]
    state: Path = stack.state_dir
    for path in [*state.glob("weir.db*"), *(state / "logs").iterdir()]:
        assert secret.encode() not in path.read_bytes(), path
    assert secret not in stack.process.output.replace(stack.key, "")
