"""The OpenAI contract per endpoint through the real stack: request validation with the
field named, HEAD, content types, max_tokens clamping, correlation headers (streams
included), sessions, custom properties, and the request records they leave."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.integration.harness import (
    WeirUp,
    copy_quickstart,
    record_of,
    records,
    weir_up,
)
from tests.openapi_schema import validate_openapi

pytestmark = pytest.mark.integration

HI = [{"role": "user", "content": "hi"}]
IDS = ("x-request-id", "x-weir-trace-id", "x-weir-session-id", "x-weir-backend")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeirUp]:
    root = tmp_path_factory.mktemp("contract")
    with weir_up(copy_quickstart(root / "config"), root / "state") as up:
        yield up


@pytest.fixture
def client(stack: WeirUp) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.endpoint(), api_key=stack.key, max_retries=0)


def mock_stats(stack: WeirUp) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{stack.mock_url}/mock/stats").json()
    return stats


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"n": 0}, "n"),
        ({"n": 129}, "n"),
        ({"frequency_penalty": -2.5}, "frequency_penalty"),
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logit_bias": {"50256": 101}}, "logit_bias"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ],
)
def test_out_of_range_parameters_are_400s_naming_the_field(
    client: openai.OpenAI, stack: WeirUp, extra: dict[str, Any], param: str
) -> None:
    before = mock_stats(stack)["requests"]
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": HI, **extra}
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(**body)
    assert raised.value.param == param
    assert raised.value.type == "invalid_request_error"
    validate_openapi(raised.value.response.json(), "ErrorResponse")
    assert mock_stats(stack)["requests"] == before


def test_every_standard_parameter_passes_through(client: openai.OpenAI, stack: WeirUp) -> None:
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "hi"},
        ],
        temperature=0,
        top_p=1,
        n=1,
        frequency_penalty=-2,
        presence_penalty=2,
        logprobs=True,
        top_logprobs=20,
        logit_bias={"50256": -100},
        metadata={"team": "blue"},
        seed=7,
        stop=["END"],
        user="u-1",
        max_completion_tokens=50,
    )
    sent = mock_stats(stack)["last_request"]
    for name, value in {
        "temperature": 0,
        "frequency_penalty": -2,
        "top_logprobs": 20,
        "logit_bias": {"50256": -100},
        "metadata": {"team": "blue"},
        "seed": 7,
        "stop": ["END"],
        "user": "u-1",
    }.items():
        assert sent.get(name) == value, (name, sent)


def test_head_content_type_and_malformed_json(stack: WeirUp) -> None:
    url = f"{stack.endpoint()}/chat/completions"
    head = httpx.head(url, headers=stack.auth)
    assert head.status_code == 204
    assert all(head.headers.get(h) for h in IDS)
    form = httpx.post(url, content=b"a=b", headers={**stack.auth, "content-type": "text/plain"})
    assert (form.status_code, form.json()["error"]["code"]) == (415, "unsupported_media_type")
    validate_openapi(form.json(), "ErrorResponse")
    client = openai.OpenAI(base_url=stack.endpoint(), api_key=stack.key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as raised:
        client.post(
            "/chat/completions",
            content=b"x",
            cast_to=httpx.Response,
            options={"headers": {"content-type": "text/plain"}},
        )
    assert raised.value.status_code == 415
    broken = httpx.post(
        url, content=b'{"model": ', headers={**stack.auth, "content-type": "application/json"}
    )
    assert (broken.status_code, broken.json()["error"]["code"]) == (400, "invalid_json")


def test_models_are_listed_per_endpoint(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == [
        "gpt-4o-mini",
        "gpt-4o",
        "mock-gpt",
        "auto",
    ]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9")


def test_max_tokens_above_capacity_is_clamped_not_rejected(
    client: openai.OpenAI, stack: WeirUp
) -> None:
    # gpt-4o -> mock-gpt, whose Backend says maxOutputTokens: 4096.
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=HI, max_tokens=100_000
    )
    assert raw.headers["x-weir-max-tokens-clamped"] == "100000"
    assert mock_stats(stack)["last_request"]["max_tokens"] == 4096
    within = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=HI, max_completion_tokens=4096
    )
    assert "x-weir-max-tokens-clamped" not in within.headers


def test_every_response_carries_the_ids_errors_and_streams_included(stack: WeirUp) -> None:
    url = f"{stack.endpoint()}/chat/completions"
    ok = httpx.post(url, json={"model": "gpt-4o-mini", "messages": HI}, headers=stack.auth)
    assert ok.headers["x-weir-backend"] == "mock"
    unauthenticated = httpx.post(url, json={"model": "gpt-4o-mini", "messages": HI})
    unknown = httpx.post(url, json={"model": "nope", "messages": HI}, headers=stack.auth)
    upstream_error = httpx.post(
        url,
        json={"model": "gpt-4o-mini", "messages": HI},
        headers={**stack.auth, "x-mock-behavior": "error-500"},
    )
    for response in (ok, unauthenticated, unknown, upstream_error):
        assert all(response.headers.get(h) for h in IDS), response.headers
        uuid.UUID(response.headers["x-weir-session-id"])
    assert len({r.headers["x-request-id"] for r in (ok, unauthenticated, unknown)}) == 3
    # On a stream the ids come with the headers, before the first byte of the body.
    with httpx.stream(
        "POST",
        url,
        json={"model": "gpt-4o-mini", "messages": HI, "stream": True},
        headers={**stack.auth, "x-mock-ttft-ms": "300"},
    ) as stream:
        assert all(stream.headers.get(h) for h in IDS)
        assert stream.headers["x-weir-backend"] == "mock"
        assert stream.num_bytes_downloaded == 0
        body = b"".join(stream.iter_bytes())
    assert body.rstrip().endswith(b"data: [DONE]")


def test_sessions_are_kept_or_derived_so_turns_share_them(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=HI, extra_headers={"X-Weir-Session-Id": "not-a-uuid"}
        )
    assert raised.value.param == "X-Weir-Session-Id"
    mine = str(uuid.uuid4())
    kept = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=HI, extra_headers={"X-Weir-Session-Id": mine}
    )
    assert kept.headers["x-weir-session-id"] == mine
    opening = [{"role": "system", "content": "Plan a trip."}, {"role": "user", "content": "Rome"}]
    turn1 = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=opening)
    answer = turn1.parse().choices[0].message.content or ""
    turn2 = client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[
            *opening,
            {"role": "assistant", "content": answer},
            {"role": "user", "content": "3 days"},
        ],
    )
    other = client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[
            {"role": "system", "content": "Plan a trip."},
            {"role": "user", "content": "Oslo"},
        ],
    )
    assert turn1.headers["x-weir-session-id"] == turn2.headers["x-weir-session-id"]
    assert other.headers["x-weir-session-id"] != turn1.headers["x-weir-session-id"]


def test_properties_are_checked_and_records_hold_what_happened(
    client: openai.OpenAI, stack: WeirUp
) -> None:
    with pytest.raises(openai.BadRequestError) as reserved:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=HI, extra_headers={"X-Weir-Property-policy_x": "1"}
        )
    assert reserved.value.code == "reserved_property"
    too_many = {f"X-Weir-Property-p{i}": "v" for i in range(21)}
    with pytest.raises(openai.BadRequestError) as many:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI, extra_headers=too_many)
    assert many.value.code == "too_many_properties"
    with pytest.raises(openai.BadRequestError) as long_value:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=HI, extra_headers={"X-Weir-Property-a": "v" * 513}
        )
    assert "512" in long_value.value.message
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=HI,
        extra_headers={"X-Weir-Property-team": "blue", "X-Weir-Property-run": "42"},
    )
    # Weir's own headers stay with Weir.
    assert "x-weir-property-team" not in json.dumps(mock_stats(stack)["last_request"]).lower()
    record = record_of(stack, raw.headers["x-request-id"])
    assert record["properties"] == {"team": "blue", "run": "42"}
    assert (record["project"], record["endpoint"], record["status"]) == ("demo", "demo-chat", 200)
    assert (record["requested_model"], record["served_model"], record["backend"]) == (
        "gpt-4o-mini",
        "mock-gpt-mini",
        "mock",
    )
    assert record["key_id"].startswith("key_")
    assert record["session_id"] == raw.headers["x-weir-session-id"]
    assert record["trace_id"] == raw.headers["x-weir-trace-id"]
    assert record["turn"] == 1 and record["latency_ms"] > 0
    stream = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=HI, stream=True, extra_headers={"X-Mock-TTFT-Ms": "50"}
    )
    for _ in stream.parse():
        pass
    streamed = record_of(stack, stream.headers["x-request-id"])
    assert streamed["stream"] is True and streamed["ttft_ms"] >= 50
    refused = httpx.post(f"{stack.endpoint()}/chat/completions", json={"model": "x"})
    denied = record_of(stack, refused.headers["x-request-id"])
    assert (denied["status"], denied["error_code"], denied["key_id"]) == (
        401,
        "missing_api_key",
        "",
    )
    everything = json.dumps(records(stack))
    assert stack.key not in everything and "hi" not in everything.replace("hint", "")


def test_requests_flow_while_the_record_store_is_down(client: openai.OpenAI, stack: WeirUp) -> None:
    blocker = sqlite3.connect(stack.state_dir / "weir.db", timeout=5)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        for _ in range(3):
            reply = client.chat.completions.create(model="gpt-4o-mini", messages=HI)
            assert reply.choices[0].message.content
        log = stack.state_dir / "logs" / "extproc.log"
        deadline = time.monotonic() + 5
        while "lost" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
    finally:
        blocker.rollback()
        blocker.close()
    after = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HI)
    assert record_of(stack, after.headers["x-request-id"], timeout=5.0)
