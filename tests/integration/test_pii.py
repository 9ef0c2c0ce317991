"""PII through the real stack: the provider only ever sees tags (proved with the mock
LLM's echo mode), answers come back restored, whole and streamed, tool-call arguments
too; block and flag; the transparency header; settings changed at run time reach every
ext_proc replica within a second; no personal data in records or logs."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.integration.harness import REPO, WeirUp, copy_quickstart, record_of, records, weir_up

pytestmark = pytest.mark.integration

PESEL = "44051401359"
EMAIL = "jan.kowalski@example.com"
IBAN = "PL61 1090 1014 0000 0712 1981 2874"
PROMPT = f"My name is Jan Kowalski, PESEL {PESEL}, e-mail {EMAIL}. Please confirm."
SECRETS = ("Kowalski", PESEL, EMAIL, "1090 1014")
ECHO = {"X-Mock-Behavior": "echo"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeirUp]:
    root = tmp_path_factory.mktemp("pii")
    config = copy_quickstart(root / "config")
    shutil.copy(REPO / "tests" / "fixtures" / "pii" / "endpoints.yaml", config / "pii-tests.yaml")
    with weir_up(config, root / "state", "--extproc-replicas", "2") as up:
        yield up


@pytest.fixture
def client(stack: WeirUp) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.endpoint(), api_key=stack.key, max_retries=0)


def upstream_saw(stack: WeirUp) -> str:
    """The messages of the last request the mock LLM received, as JSON text."""
    body = httpx.get(f"{stack.mock_url}/mock/stats").json()["last_request"]
    return json.dumps(body["messages"], ensure_ascii=False)


def test_the_provider_sees_only_tags_and_the_answer_comes_back_restored(
    stack: WeirUp, client: openai.OpenAI
) -> None:
    reply = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": f"The customer is Jan Kowalski ({EMAIL})."},
            {"role": "user", "content": "Look me up."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "crm", "arguments": json.dumps({"email": EMAIL})},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": f"PESEL {PESEL}"},
            {"role": "user", "content": PROMPT},
        ],
        extra_headers=ECHO,
    )
    answer = reply.parse().choices[0].message.content
    saw = upstream_saw(stack)
    for secret in SECRETS:
        assert secret not in saw
    assert "<PESEL_1>" in saw and "<EMAIL_1>" in saw and "<PERSON_1>" in saw
    # The same value, the same tag, in every message and in tool-call arguments.
    assert saw.count("<EMAIL_1>") == 3
    assert saw.count("<PESEL_1>") == 2
    assert answer == PROMPT  # the echo of the tagged prompt, restored exactly
    assert "anonymization" not in reply.http_response.json()
    record = record_of(stack, reply.headers["x-request-id"])
    assert record["pii"]["action"] == "anonymize"
    assert record["pii"]["entities"]["PESEL"] == 2  # found twice, one value, one tag
    dumped = json.dumps(record)
    assert all(secret not in dumped for secret in SECRETS)


def test_a_streamed_answer_is_restored_token_by_token(stack: WeirUp, client: openai.OpenAI) -> None:
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            extra_headers=ECHO,
        )
        if chunk.choices
    ]
    assert "".join(pieces) == PROMPT
    assert len([p for p in pieces if p]) > 5  # it streamed, it was not buffered whole
    assert all("<PESEL" not in p and "<EMAIL" not in p for p in pieces)
    assert PESEL not in upstream_saw(stack)


def test_tool_call_arguments_are_restored(stack: WeirUp, client: openai.OpenAI) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "send_mail",
            "parameters": {
                "type": "object",
                "properties": {"to": {"type": "string", "enum": ["<EMAIL_1>"]}},
                "required": ["to"],
            },
        },
    }
    for stream in (False, True):
        arguments = ""
        response = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"Write to {EMAIL}"}],
            tools=[tool],  # type: ignore[list-item]
            stream=stream,
            extra_headers={"X-Mock-Behavior": "tool_call"},
        )
        if stream:
            for chunk in response:  # type: ignore[union-attr]
                for choice in chunk.choices:
                    for call in choice.delta.tool_calls or []:
                        arguments += (call.function and call.function.arguments) or ""
        else:
            calls = response.choices[0].message.tool_calls  # type: ignore[union-attr]
            assert calls is not None
            arguments = calls[0].function.arguments  # type: ignore[union-attr]
        assert json.loads(arguments) == {"to": EMAIL}, stream


def test_show_raw_prompt_tells_what_the_provider_saw(stack: WeirUp) -> None:
    headers = {**stack.auth, **ECHO, "X-Show-Raw-Prompt": "true"}
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}
    whole = httpx.post(f"{stack.endpoint()}/chat/completions", json=body, headers=headers)
    shown = whole.json()["anonymization"]
    assert shown["entities_found"] == 3
    assert shown["entity_types"] == ["EMAIL", "PERSON", "PESEL"]
    assert PESEL not in shown["anonymized_prompt"] and "<PESEL_1>" in shown["anonymized_prompt"]
    assert shown["raw_llm_response"] == shown["anonymized_prompt"]  # the echo, before restoring
    assert whole.json()["choices"][0]["message"]["content"] == PROMPT

    with httpx.stream(
        "POST",
        f"{stack.endpoint()}/chat/completions",
        json={**body, "stream": True},
        headers=headers,
    ) as response:
        events = [e for e in response.read().decode().split("\n\n") if e.strip()]
    assert events[-1] == "data: [DONE]"
    last = json.loads(events[-2].removeprefix("data: "))
    assert last["anonymization"]["raw_llm_response"] == shown["anonymized_prompt"]
    assert last["choices"] == []


def test_block_names_the_types_and_never_calls_the_model(stack: WeirUp) -> None:
    before = httpx.get(f"{stack.mock_url}/mock/stats").json()["requests"]
    response = httpx.post(
        f"{stack.endpoint('demo', 'strict')}/chat/completions",
        json={
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": f"Pay from {IBAN}, PESEL {PESEL}"}],
        },
        headers=stack.auth,
    )
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "pii_blocked"
    assert "IBAN" in error["message"] and "PESEL" in error["message"]
    assert PESEL not in response.text and "1090" not in response.text
    assert httpx.get(f"{stack.mock_url}/mock/stats").json()["requests"] == before


def test_special_categories_are_blocked_or_flagged_per_policy(stack: WeirUp) -> None:
    health = {"role": "user", "content": "I was diagnosed with diabetes last year."}
    blocked = httpx.post(
        f"{stack.endpoint('demo', 'strict')}/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [health]},
        headers=stack.auth,
    )
    assert blocked.status_code == 403
    assert "special category HEALTH" in blocked.json()["error"]["message"]
    assert "diabetes" not in blocked.text
    flagged = httpx.post(
        f"{stack.endpoint()}/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [health]},
        headers=stack.auth,
    )
    assert flagged.status_code == 200
    record = record_of(stack, flagged.headers["x-request-id"])
    assert set(record["pii"]["art9"]) == {"HEALTH"}  # "diagnosed" and "diabetes"


def test_flag_forwards_unchanged_and_records_the_types(stack: WeirUp) -> None:
    response = httpx.post(
        f"{stack.endpoint('demo', 'flag')}/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]},
        headers={**stack.auth, **ECHO},
    )
    assert response.status_code == 200
    assert PESEL in upstream_saw(stack)
    record = record_of(stack, response.headers["x-request-id"])
    assert record["pii"]["action"] == "flag"
    assert record["pii"]["entities"] == {"EMAIL": 1, "PERSON": 1, "PESEL": 1}


def test_more_text_than_the_policy_scans_is_refused_never_forwarded(stack: WeirUp) -> None:
    url = f"{stack.endpoint('demo', 'small-scan')}/chat/completions"
    before = httpx.get(f"{stack.mock_url}/mock/stats").json()["requests"]
    # 4,096 bytes at most; "ł" is two bytes in UTF-8, so 2,100 characters are 4,200 bytes
    too_much = [
        {"role": "system", "content": f"Customer {EMAIL}."},
        {"role": "user", "content": "ł" * 2100},
    ]
    refused = httpx.post(
        url, json={"model": "gpt-4o-mini", "messages": too_much}, headers=stack.auth
    )
    assert refused.status_code == 413
    error = refused.json()["error"]
    assert error["code"] == "pii_scan_too_large"
    assert error["type"] == "invalid_request_error"
    assert "4096 bytes" in error["message"] and "small-scan" in error["message"]
    assert EMAIL not in refused.text
    assert httpx.get(f"{stack.mock_url}/mock/stats").json()["requests"] == before
    # Under the limit it is scanned and tagged as usual.
    fits = [{"role": "user", "content": f"Customer {EMAIL}. " + "x" * 3000}]
    accepted = httpx.post(
        url, json={"model": "gpt-4o-mini", "messages": fits}, headers={**stack.auth, **ECHO}
    )
    assert accepted.status_code == 200
    assert "<EMAIL_1>" in upstream_saw(stack) and EMAIL not in upstream_saw(stack)


LARGE = "1 " * 750_000  # 1.5 MB: digit groups are the costliest text to scan


def post_large(stack: WeirUp) -> httpx.Response:
    return httpx.post(
        f"{stack.endpoint('demo', 'large-scan')}/chat/completions",
        json={
            "model": "gpt-4o-mini",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": LARGE}],
        },
        headers=stack.auth,
        timeout=60,
    )


def test_a_large_prompt_does_not_hold_up_other_requests(stack: WeirUp) -> None:
    """A 1.5 MB prompt takes ext_proc a second or more to scan. It is scanned on a worker
    thread: small requests sent meanwhile, whichever replica they reach, are answered
    before it is."""
    done: dict[str, float] = {}

    def large() -> None:
        response = post_large(stack)
        assert response.status_code == 200, response.text
        done["large"] = time.monotonic()

    worker = threading.Thread(target=large)
    worker.start()
    time.sleep(0.2)  # the large body is with ext_proc by now
    for _ in range(4):  # round robin over the 2 replicas: at least 2 reach the busy one
        small = httpx.post(
            f"{stack.endpoint()}/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]},
            headers=stack.auth,
            timeout=60,
        )
        assert small.status_code == 200
    smalls_done = time.monotonic()
    worker.join(60)
    assert "large" in done, "the large request failed"
    assert smalls_done < done["large"]


def test_a_scan_slower_than_the_ext_proc_timeout_is_a_clear_504(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("pii-timeout")
    config = copy_quickstart(root / "config")
    shutil.copy(REPO / "tests" / "fixtures" / "pii" / "endpoints.yaml", config / "pii-tests.yaml")
    with weir_up(config, root / "state", "--extproc-message-timeout-ms", "200") as up:
        before = httpx.get(f"{up.mock_url}/mock/stats").json()["requests"]
        response = post_large(up)
        assert response.status_code == 504
        error = response.json()["error"]
        assert error["type"] == "server_error"
        assert error["message"].startswith("The gateway did not finish inspecting the request")
        assert httpx.get(f"{up.mock_url}/mock/stats").json()["requests"] == before


def test_settings_reach_every_replica_within_a_second(stack: WeirUp) -> None:
    admin = {**stack.auth}  # the quickstart key has the management scope

    def upstream_sees_pesel() -> bool:
        httpx.post(
            f"{stack.endpoint()}/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]},
            headers={**stack.auth, **ECHO},
        ).raise_for_status()
        return PESEL in upstream_saw(stack)

    try:
        changed = httpx.patch(
            f"{stack.management_url}/v1/settings/pii", json={"enabled": False}, headers=admin
        )
        assert changed.status_code == 200, changed.text
        started = time.monotonic()
        time.sleep(1.0)
        # Twenty requests in a row: both replicas answer some of them.
        assert all(upstream_sees_pesel() for _ in range(20))
        assert time.monotonic() - started < 10
    finally:
        httpx.patch(
            f"{stack.management_url}/v1/settings/pii", json={"enabled": None}, headers=admin
        ).raise_for_status()
    time.sleep(1.0)
    assert not any(upstream_sees_pesel() for _ in range(20))


def test_no_personal_data_in_any_record_or_log(stack: WeirUp) -> None:
    everything: Any = json.dumps(records(stack))
    for secret in SECRETS:
        assert secret not in everything
        assert secret not in stack.process.output
