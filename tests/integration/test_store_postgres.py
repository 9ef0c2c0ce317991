"""`weir up` with its API keys in a real PostgreSQL server (WEIR_STORE_URL): a key made by
`weir keys create` against the same database authenticates an OpenAI SDK call through
Envoy, revoking it refuses the next one, the keys are in PostgreSQL and not in the state
directory's SQLite file, and the URL's password is in no output and no log."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from controlplane.api_keys import key_hash
from controlplane.keystore import STORE_URL_ENV, default_store_path
from tests.integration.harness import WeirUp, copy_quickstart, run_up_expecting_failure, weir_argv
from tests.integration.harness import weir_up as start_weir_up
from tests.postgres_server import DATABASE, PostgresServer, running_postgres

pytestmark = pytest.mark.integration

PASSWORD = "store-pass-5e0c8b3a71"
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with running_postgres(PASSWORD) as server:
        yield server


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Iterator[WeirUp]:
    root = tmp_path_factory.mktemp("store-postgres")
    config = copy_quickstart(root / "config")
    with start_weir_up(config, root / "state", env={STORE_URL_ENV: postgres.url()}) as up:
        yield up


def weir_keys(postgres: PostgresServer, state_dir: Path, *args: str) -> str:
    """`weir keys ...` as an operator runs it next to a replica: WEIR_STORE_URL set."""
    action, *rest = args
    done = subprocess.run(
        weir_argv("keys", action, "--state-dir", str(state_dir), *rest),
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, STORE_URL_ENV: postgres.url()},
    )
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    return done.stdout


def sdk(stack: WeirUp, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.endpoint(), api_key=key, max_retries=0)


def test_a_key_from_weir_keys_works_through_envoy_and_revoking_it_refuses_the_next_call(
    stack: WeirUp, postgres: PostgresServer, tmp_path: Path
) -> None:
    created = json.loads(weir_keys(postgres, tmp_path, "create", "--project", "demo", "--json"))
    client = sdk(stack, created["key"])
    deadline = time.monotonic() + 5
    while True:  # the control plane polls the store's revision every 0.1 s
        try:
            reply = client.chat.completions.create(model="gpt-4o-mini", messages=HI)
            break
        except openai.AuthenticationError:
            assert time.monotonic() < deadline, "the new key was not accepted within 5 s"
            time.sleep(0.05)
    assert reply.choices[0].message.content

    assert created["id"] in weir_keys(postgres, tmp_path, "revoke", created["id"])
    deadline = time.monotonic() + 5
    while True:
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=HI)
        except openai.AuthenticationError as error:
            assert error.status_code == 401
            assert error.code == "revoked_api_key"
            break
        assert time.monotonic() < deadline, "the revoked key still worked after 5 s"
        time.sleep(0.05)
    assert list(tmp_path.iterdir()) == []  # `weir keys` made no SQLite file of its own


def test_the_keys_are_in_postgres_and_not_in_the_state_dir(
    stack: WeirUp, postgres: PostgresServer
) -> None:
    # The key `weir up` made on its first start works, and PostgreSQL holds its hash.
    reply = sdk(stack, stack.key).chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert reply.choices[0].message.content
    hashes = {bytes(r[0]) for r in postgres.query(DATABASE, "SELECT sha256 FROM api_keys")}
    assert key_hash(stack.key) in hashes

    sqlite_file = default_store_path(stack.state_dir)
    if sqlite_file.exists():  # ext_proc's request records may live there
        with closing(sqlite3.connect(sqlite_file)) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        assert "api_keys" not in tables


def test_the_password_is_in_no_output_and_no_log(stack: WeirUp) -> None:
    assert PASSWORD not in stack.process.output
    for log in (stack.state_dir / "logs").iterdir():
        assert PASSWORD not in log.read_text(errors="replace"), log


def test_an_unreachable_store_stops_weir_up_saying_where_without_the_password(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    config = copy_quickstart(tmp_path / "config")
    url = postgres.url().replace(f":{postgres.port}/", ":1/")
    done = run_up_expecting_failure(
        config, tmp_path / "state", env={**os.environ, STORE_URL_ENV: url}
    )
    assert done.returncode != 0
    assert "cannot open the key store 127.0.0.1:1/weir" in done.stderr, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
