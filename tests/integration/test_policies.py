"""Rego policies through the real stack: request denials that never reach the model,
patches, tool calls blocked in answers (whole and streamed), fail-closed and fail-open
evaluation errors, compile errors on reload, and the decisions in the request records."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.integration.harness import (
    REPO,
    WeirUp,
    copy_quickstart,
    record_of,
    wait_until,
    weir_argv,
    weir_up,
)

pytestmark = pytest.mark.integration

POLICIES = REPO / "tests" / "fixtures" / "policies" / "policies.yaml"
HI = [{"role": "user", "content": "hi"}]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def tool(name: str, path: str | None = None) -> dict[str, Any]:
    """A function tool; with `path`, the mock's arguments are {"path": path} (enum)."""
    parameters: dict[str, Any] = {"type": "object", "properties": {}}
    if path is not None:
        parameters = {
            "type": "object",
            "properties": {"path": {"type": "string", "enum": [path]}},
            "required": ["path"],
        }
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeirUp]:
    root = tmp_path_factory.mktemp("policies")
    config = copy_quickstart(root / "config")
    shutil.copy(POLICIES, config / "test-policies.yaml")
    with weir_up(config, root / "state") as up:
        yield up


@pytest.fixture
def client(stack: WeirUp) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.endpoint(), api_key=stack.key, max_retries=0)


def mock_requests(stack: WeirUp) -> int:
    count: int = httpx.get(f"{stack.mock_url}/mock/stats").json()["requests"]
    return count


def last_upstream_request(stack: WeirUp) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{stack.mock_url}/mock/stats").json()["last_request"]
    return body


# --- request stage ----------------------------------------------------------------------------


def test_the_quickstart_policy_refuses_a_blocked_tool_before_the_model_is_called(
    stack: WeirUp, client: openai.OpenAI
) -> None:
    before = mock_requests(stack)
    with pytest.raises(openai.PermissionDeniedError) as raised:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=HI,
            tools=[tool("get_weather"), tool("delete_everything")],  # type: ignore[list-item]
            extra_headers={"traceparent": TRACEPARENT},
        )
    error = raised.value
    assert error.status_code == 403
    assert isinstance(error.body, dict)
    assert error.body["type"] == "policy_violation"
    assert error.body["code"] == "policy_denied"
    assert "block-dangerous-tools" in error.body["message"]
    assert 'the tool "delete_everything" may not be offered' in error.body["message"]
    assert error.response.headers["x-weir-trace-id"] == TRACE_ID
    assert mock_requests(stack) == before

    record = record_of(stack, error.response.headers["x-request-id"])
    assert record["status"] == 403
    assert record["error_code"] == "policy_denied"
    decisions = {d["policy"]: d for d in record["policy_decisions"]}
    assert decisions["block-dangerous-tools"]["result"] == "deny"
    assert decisions["block-dangerous-tools"]["reasons"] == [
        'the tool "delete_everything" may not be offered to the model'
    ]
    assert decisions["request-rules"]["result"] == "allow"


@pytest.mark.parametrize(
    "offer",
    [
        {"functions": [{"name": "delete_everything", "parameters": {}}]},
        {"tools": [{"type": "custom", "custom": {"name": "delete_everything"}}]},
    ],
    ids=["deprecated-functions", "custom-tool"],
)
def test_the_blocked_tool_is_refused_in_every_form_it_can_be_offered(
    stack: WeirUp, offer: dict[str, Any]
) -> None:
    before = mock_requests(stack)
    response = httpx.post(
        f"{stack.endpoint()}/chat/completions",
        json={"model": "gpt-4o-mini", "messages": HI, **offer},
        headers=stack.auth,
    )
    assert response.status_code == 403, response.text
    assert "delete_everything" in response.json()["error"]["message"]
    assert mock_requests(stack) == before


def test_a_streamed_request_is_refused_the_same_way(stack: WeirUp, client: openai.OpenAI) -> None:
    before = mock_requests(stack)
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=HI, tools=[tool("delete_everything")], stream=True
        )
    assert mock_requests(stack) == before


def test_a_policy_reads_the_messages(stack: WeirUp, client: openai.OpenAI) -> None:
    before = mock_requests(stack)
    with pytest.raises(openai.PermissionDeniedError, match="forbidden topic"):
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Tell me about FORBIDDEN-TOPIC."}],
        )
    assert mock_requests(stack) == before


def test_a_policy_reads_the_key_the_endpoint_and_the_custom_properties(
    stack: WeirUp, client: openai.OpenAI
) -> None:
    with pytest.raises(
        openai.PermissionDeniedError,
        match=r"team sandbox may not use demo/chat \(endpoint demo-chat\)",
    ):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=HI, extra_headers={"X-Weir-Property-Team": "sandbox"}
        )
    assert client.chat.completions.create(
        model="gpt-4o-mini", messages=HI, extra_headers={"X-Weir-Property-Team": "search"}
    ).choices


def test_a_patch_caps_max_tokens_removes_a_tool_and_forces_a_model(
    stack: WeirUp, client: openai.OpenAI
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=HI,
        max_tokens=500,
        tools=[tool("keep_me"), tool("drop_me")],  # type: ignore[list-item]
        user="force-model",
    )
    raw.parse()
    upstream = last_upstream_request(stack)
    assert upstream["max_tokens"] == 16
    assert [t["function"]["name"] for t in upstream["tools"]] == ["keep_me"]
    assert upstream["model"] == "mock-gpt"  # gpt-4o-mini would have gone as mock-gpt-mini
    record = record_of(stack, raw.headers["x-request-id"])
    patched = {d["policy"]: d.get("patched") for d in record["policy_decisions"]}
    assert patched["request-rules"] == ["max_tokens", "model", "tools"]
    assert record["served_model"] == "mock-gpt"


def test_a_runtime_error_fails_closed_with_500_policy_error(
    stack: WeirUp, client: openai.OpenAI
) -> None:
    before = mock_requests(stack)
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI, user="explode")
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["code"] == "policy_error"
    assert "broken-closed" in raised.value.body["message"]
    assert mock_requests(stack) == before
    record = record_of(stack, raised.value.response.headers["x-request-id"])
    errors = [d for d in record["policy_decisions"] if d["result"] == "error"]
    assert [d["policy"] for d in errors] == ["broken-closed"]
    assert "could not parse string as number" in errors[0]["reasons"][0]
    assert "policy broken-closed (request stage) failed to evaluate" in stack.process.output
    [metrics_url] = re.findall(r"Metrics:\s+(\S+)", stack.process.output)
    counted = re.search(
        r'^weir_policy_decisions_total\{policy="broken-closed",result="error",stage="request"\}'
        r" (\S+)$",
        httpx.get(metrics_url).text,
        re.MULTILINE,
    )
    assert counted is not None and float(counted.group(1)) >= 1


def test_a_runtime_error_in_a_fail_open_policy_lets_the_request_through(
    stack: WeirUp, client: openai.OpenAI
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=HI, user="explode-open"
    )
    assert raw.parse().choices[0].message.content
    record = record_of(stack, raw.headers["x-request-id"])
    results = {d["policy"]: d["result"] for d in record["policy_decisions"]}
    assert results["broken-open"] == "error"
    assert "fail-open: the request goes on" in stack.process.output


# --- response stage: whole answers ------------------------------------------------------------


def test_a_forbidden_tool_call_in_an_answer_is_a_403(stack: WeirUp, client: openai.OpenAI) -> None:
    with pytest.raises(openai.PermissionDeniedError) as raised:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=HI,
            tools=[tool("read_file", "/etc/passwd")],  # type: ignore[list-item]
            extra_headers={"X-Mock-Behavior": "tool_call"},
        )
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["type"] == "policy_violation"
    assert 'not "/etc/passwd"' in raised.value.body["message"]
    assert "tool_calls" not in raised.value.response.text  # the answer itself never came
    record = record_of(stack, raised.value.response.headers["x-request-id"])
    assert record["tool_calls"] == [{"name": "read_file", "arguments": '{"path":"/etc/passwd"}'}]
    assert {"policy": "tool-paths", "stage": "response", "result": "deny"}.items() <= next(
        d for d in record["policy_decisions"] if d["policy"] == "tool-paths"
    ).items()


def test_an_allowed_tool_call_comes_through_and_is_recorded(
    stack: WeirUp, client: openai.OpenAI
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=HI,
        tools=[tool("read_file", "/srv/data/report.csv")],  # type: ignore[list-item]
        extra_headers={"X-Mock-Behavior": "tool_call"},
    )
    calls = raw.parse().choices[0].message.tool_calls
    assert calls is not None and calls[0].function.name == "read_file"  # type: ignore[union-attr]
    record = record_of(stack, raw.headers["x-request-id"])
    assert record["tool_calls"] == [
        {"name": "read_file", "arguments": '{"path":"/srv/data/report.csv"}'}
    ]


def test_a_final_message_that_breaks_a_policy_is_a_403(client: openai.OpenAI) -> None:
    with pytest.raises(openai.PermissionDeniedError, match="launch code"):
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "the launch code is 0000"}],
            extra_headers={"X-Mock-Behavior": "echo"},
        )


# --- response stage: streams ------------------------------------------------------------------


def raw_stream(stack: WeirUp, body: dict[str, Any], **headers: str) -> tuple[int, bytes]:
    with httpx.stream(
        "POST",
        f"{stack.endpoint()}/chat/completions",
        json={"stream": True, **body},
        headers={**stack.auth, **headers},
        timeout=30,
    ) as response:
        return response.status_code, response.read()


def test_a_forbidden_tool_call_never_reaches_a_streaming_client(
    stack: WeirUp, client: openai.OpenAI
) -> None:
    status, raw = raw_stream(
        stack,
        {"model": "gpt-4o-mini", "messages": HI, "tools": [tool("read_file", "/etc/passwd")]},
        **{"X-Mock-Behavior": "tool_call"},
    )
    assert status == 200
    before_error = raw.partition(b"event: error")[0]
    assert b"read_file" not in before_error
    assert b"tool_calls" not in before_error
    assert b"[DONE]" not in raw
    events = [e for e in raw.decode().split("\n\n") if e]
    assert events[-1].startswith("event: error\ndata: ")
    envelope = json.loads(events[-1].split("data: ", 1)[1])
    assert envelope["error"]["type"] == "policy_violation"
    assert 'not "/etc/passwd"' in envelope["error"]["message"]

    # The SDK raises APIError at that event, having seen no tool call.
    seen: list[Any] = []
    with pytest.raises(openai.APIError, match="read_file may only read under"):
        for chunk in client.chat.completions.create(
            model="gpt-4o-mini",
            messages=HI,
            tools=[tool("read_file", "/etc/passwd")],  # type: ignore[list-item]
            stream=True,
            extra_headers={"X-Mock-Behavior": "tool_call"},
        ):
            seen.extend(c.delta.tool_calls or [] for c in chunk.choices)
    assert not any(seen)


def test_an_allowed_streamed_tool_call_arrives_whole(client: openai.OpenAI) -> None:
    arguments = ""
    names = []
    finish = None
    for chunk in client.chat.completions.create(
        model="gpt-4o-mini",
        messages=HI,
        tools=[tool("read_file", "/srv/data/a.txt")],  # type: ignore[list-item]
        stream=True,
        extra_headers={"X-Mock-Behavior": "tool_call"},
    ):
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                if call.function and call.function.name:
                    names.append(call.function.name)
                if call.function and call.function.arguments:
                    arguments += call.function.arguments
            finish = choice.finish_reason or finish
    assert names == ["read_file"]
    assert json.loads(arguments) == {"path": "/srv/data/a.txt"}
    assert finish == "tool_calls"


def test_a_streamed_final_message_that_breaks_a_policy_ends_with_an_error_event(
    stack: WeirUp,
) -> None:
    status, raw = raw_stream(
        stack,
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "the launch code"}]},
        **{"X-Mock-Behavior": "echo"},
    )
    assert status == 200
    text = b"".join(
        json.loads(event[len(b"data: ") :])["choices"][0]["delta"].get("content", "").encode()
        for event in raw.split(b"\n\n")
        if event.startswith(b"data: {") and json.loads(event[len(b"data: ") :])["choices"]
    )
    assert text == b"the launch code"  # the text went out as it came
    assert b"[DONE]" not in raw
    assert raw.rstrip().split(b"\n\n")[-1].startswith(b"event: error\ndata: ")


def test_text_before_a_tool_call_streams_without_waiting_for_the_policy(
    stack: WeirUp,
) -> None:
    """The text deltas reach the client as they are made; only the tool call is held."""
    arrivals: list[tuple[float, bytes]] = []
    started = time.perf_counter()
    with httpx.stream(
        "POST",
        f"{stack.endpoint()}/chat/completions",
        json={
            "model": "gpt-4o-mini",
            "messages": HI,
            "stream": True,
            "tools": [tool("read_file", "/etc/passwd")],
        },
        headers={
            **stack.auth,
            "X-Mock-Behavior": "text_then_tool_call",
            "X-Mock-TPOT-Ms": "100",
        },
        timeout=30,
    ) as response:
        for piece in response.iter_raw():
            arrivals.append((time.perf_counter() - started, piece))
    raw = b"".join(piece for _, piece in arrivals)
    first_text = next(t for t, piece in arrivals if b'"content":"' in piece)
    end = arrivals[-1][0]
    assert end - first_text > 0.5  # the text came while the model was still generating
    assert b"read_file" not in raw.partition(b"event: error")[0]
    assert raw.rstrip().split(b"\n\n")[-1].startswith(b"event: error\ndata: ")


def test_of_parallel_tool_calls_the_allowed_one_arrives_and_the_forbidden_one_does_not(
    stack: WeirUp,
) -> None:
    status, raw = raw_stream(
        stack,
        {
            "model": "gpt-4o-mini",
            "messages": HI,
            "tools": [tool("list_dir", "/srv/data/"), tool("read_file", "/etc/passwd")],
        },
        **{"X-Mock-Behavior": "parallel_tool_calls"},
    )
    assert status == 200
    assert b"list_dir" in raw
    assert b"read_file" not in raw.partition(b"event: error")[0]
    assert raw.rstrip().split(b"\n\n")[-1].startswith(b"event: error\ndata: ")


# --- compile errors ---------------------------------------------------------------------------

BROKEN_POLICY = """\
apiVersion: weir.dev/v1alpha1
kind: Policy
metadata:
  name: broken-syntax
spec:
  stage: request
  rego: |
    package weir.broken_syntax

    deny contains msg if {
        msg :=
    }
"""


def test_weir_validate_names_the_line_of_a_rego_compile_error(tmp_path: Path) -> None:
    config = copy_quickstart(tmp_path / "config")
    (config / "broken.yaml").write_text(BROKEN_POLICY)
    done = subprocess.run(
        weir_argv("validate", str(config)),
        capture_output=True,
        text=True,
        timeout=60,
        env={"WEIR_MOCK_LLM_URL": "http://127.0.0.1:9/v1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 1
    assert (
        "Policy/broken-syntax: spec.rego: the Rego module does not compile: line 4, column 9: "
        "expecting `}`" in done.stderr
    )


def test_a_policy_that_does_not_compile_is_rejected_and_the_last_good_config_stays(
    stack: WeirUp, client: openai.OpenAI
) -> None:
    broken = stack.config_dir / "zz-broken.yaml"
    broken.write_text(BROKEN_POLICY)
    try:
        wait_until(
            lambda: (
                "broken-syntax: spec.rego: the Rego module does not compile" in stack.process.output
            ),
            15,
            "the control plane to reject the broken policy",
        )
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(
                model="gpt-4o-mini", messages=HI, tools=[tool("delete_everything")]
            )
        assert client.chat.completions.create(model="gpt-4o-mini", messages=HI).choices
    finally:
        broken.unlink()


NEW_POLICY = """\
apiVersion: weir.dev/v1alpha1
kind: Policy
metadata:
  name: no-shell
spec:
  stage: request
  endpoints: [demo-chat]
  rego: |
    package weir.no_shell

    deny contains "no shell access" if {
        some t in input.request.tools
        t.function.name == "shell"
    }
"""


def test_a_new_or_removed_policy_takes_effect_without_a_restart(
    stack: WeirUp, client: openai.OpenAI
) -> None:
    def shell_refused() -> bool:
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=HI, tools=[tool("shell")])  # type: ignore[list-item]
        except openai.PermissionDeniedError as error:
            return "no shell access" in str(error)
        return False

    assert not shell_refused()
    added = stack.config_dir / "no-shell.yaml"
    added.write_text(NEW_POLICY)
    try:
        wait_until(shell_refused, 15, "the new policy to refuse the shell tool")
    finally:
        added.unlink()
    wait_until(lambda: not shell_refused(), 15, "the removed policy to stop refusing")
