"""Chat-completions request validation: OpenAI's rules, params and codes, boundaries."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from extproc.errors import InvalidRequest
from extproc.openai_request import validate_chat_request

USER = {"role": "user", "content": "Hi"}

FULL_REQUEST: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
        {
            "role": "user",
            "name": "alice",
            "content": [
                {"type": "text", "text": "What is in this image, and the weather in Paris?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 18}'},
        {"role": "assistant", "content": "A cat; 18 °C in Paris."},
        {"role": "user", "content": "Thanks!"},
    ],
    "temperature": 0.7,
    "top_p": 0.9,
    "n": 1,
    "frequency_penalty": 0.5,
    "presence_penalty": -0.5,
    "logprobs": True,
    "top_logprobs": 5,
    "logit_bias": {"50256": -100, "1234": 2.5},
    "metadata": {"team": "search", "run": "42"},
    "max_tokens": 256,
    "max_completion_tokens": 512,
    "stream": True,
    "stream_options": {"include_usage": True},
    "stop": ["\n\n", "END"],
    "seed": 1234,
    "user": "user-1",
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
                "strict": True,
            },
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
    },
    "parallel_tool_calls": False,
    "reasoning_effort": "low",
    "service_tier": "auto",
}


def body(**params: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [USER], **params}


def rejects(request: dict[str, Any], param: str, code: str | None = None) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        validate_chat_request(request)
    error = caught.value
    assert error.status == 400
    assert error.error_type == "invalid_request_error"
    assert error.param == param, error.message
    if code is not None:
        assert error.code == code, error.message
    assert param in error.message
    return error


# ------------------------------------------------------------------ whole requests


def test_realistic_full_request_passes() -> None:
    request = copy.deepcopy(FULL_REQUEST)
    validate_chat_request(request)
    assert request == FULL_REQUEST  # not modified


def test_minimal_request_passes() -> None:
    validate_chat_request(body())


def test_unknown_extra_fields_pass() -> None:
    validate_chat_request(
        body(
            top_k=40,  # vLLM / provider extensions
            repetition_penalty=1.1,
            guided_json={"type": "object"},
            chat_template_kwargs={"enable_thinking": False},
            extra_body=[1, "two"],
            temperature_is_a_string="yes",
        )
    )
    message = {"role": "user", "content": "hi", "cache_control": {"type": "ephemeral"}}
    validate_chat_request({"messages": [message], "x-custom": None})


@pytest.mark.parametrize(
    "param",
    [
        "temperature", "top_p", "n", "frequency_penalty", "presence_penalty", "logprobs",
        "top_logprobs", "logit_bias", "metadata", "max_tokens", "max_completion_tokens",
        "stream", "stream_options", "stop", "seed", "user", "tools", "tool_choice",
        "response_format", "parallel_tool_calls", "reasoning_effort", "service_tier",
    ],
)  # fmt: skip
def test_null_means_unset(param: str) -> None:
    validate_chat_request(body(**{param: None}))


@pytest.mark.parametrize(
    ("param", "value", "code"),
    [
        ("temperature", True, "invalid_type"),
        ("top_p", False, "invalid_type"),
        ("n", True, "invalid_type"),
        ("frequency_penalty", True, "invalid_type"),
        ("presence_penalty", False, "invalid_type"),
        ("top_logprobs", True, "invalid_type"),
        ("max_tokens", True, "invalid_type"),
        ("max_completion_tokens", True, "invalid_type"),
        ("seed", True, "invalid_type"),
    ],
)
def test_bool_is_not_a_number(param: str, value: bool, code: str) -> None:
    error = rejects(body(logprobs=True, **{param: value}), param, code)
    assert "got a boolean" in error.message


def test_bool_is_not_a_logit_bias() -> None:
    rejects(body(logit_bias={"50256": True}), "logit_bias", "invalid_type")


# ------------------------------------------------------------------ number ranges


@pytest.mark.parametrize(
    ("param", "low", "high"),
    [
        ("temperature", 0, 2),
        ("top_p", 0, 1),
        ("frequency_penalty", -2, 2),
        ("presence_penalty", -2, 2),
    ],
)
def test_decimal_ranges(param: str, low: float, high: float) -> None:
    for ok in (low, high, float(low), float(high), (low + high) / 2):
        validate_chat_request(body(**{param: ok}))
    rejects(body(**{param: low - 0.01}), param, "decimal_below_min_value")
    error = rejects(body(**{param: high + 0.01}), param, "decimal_above_max_value")
    assert f"<= {high}" in error.message
    rejects(body(**{param: "1"}), param, "invalid_type")
    rejects(body(**{param: float("nan")}), param)
    rejects(body(**{param: float("inf")}), param, "decimal_above_max_value")


def test_temperature_message_says_what_is_allowed() -> None:
    error = rejects(body(temperature=3.5), "temperature", "decimal_above_max_value")
    assert "3.5" in error.message
    assert "0 to 2" in error.message


@pytest.mark.parametrize(
    ("param", "low", "high", "extra"),
    [
        ("n", 1, 128, {}),
        ("top_logprobs", 0, 20, {"logprobs": True}),
        ("max_tokens", 1, None, {}),
        ("max_completion_tokens", 1, None, {}),
        ("seed", -(2**63), 2**63 - 1, {}),
    ],
)
def test_integer_ranges(param: str, low: int, high: int | None, extra: dict[str, Any]) -> None:
    validate_chat_request(body(**extra, **{param: low}))
    rejects(body(**extra, **{param: low - 1}), param, "integer_below_min_value")
    if high is None:
        validate_chat_request(body(**extra, **{param: 10**9}))
    else:
        validate_chat_request(body(**extra, **{param: high}))
        rejects(body(**extra, **{param: high + 1}), param, "integer_above_max_value")
    error = rejects(body(**extra, **{param: float(low + 1)}), param, "invalid_type")
    assert "expected an integer" in error.message
    rejects(body(**extra, **{param: str(low)}), param, "invalid_type")


def test_seed_any_int64() -> None:
    for seed in (0, -1, 42):
        validate_chat_request(body(seed=seed))


# ------------------------------------------------------------------ booleans and strings


@pytest.mark.parametrize("param", ["logprobs", "stream", "parallel_tool_calls"])
def test_booleans(param: str) -> None:
    validate_chat_request(body(**{param: True}))
    validate_chat_request(body(**{param: False}))
    for bad in (1, 0, "true", [True]):
        rejects(body(**{param: bad}), param, "invalid_type")


@pytest.mark.parametrize("param", ["user", "reasoning_effort", "service_tier"])
def test_strings(param: str) -> None:
    validate_chat_request(body(**{param: "anything-a-provider-accepts"}))
    for bad in (1, True, ["x"], {"x": 1}):
        rejects(body(**{param: bad}), param, "invalid_type")


# ------------------------------------------------------------------ dependent parameters


def test_top_logprobs_needs_logprobs_true() -> None:
    validate_chat_request(body(logprobs=True, top_logprobs=0))
    for logprobs in (False, None):
        rejects(body(logprobs=logprobs, top_logprobs=3), "top_logprobs")
    error = rejects(body(top_logprobs=3), "top_logprobs")
    assert "logprobs" in error.message
    validate_chat_request(body(top_logprobs=None))  # null is unset


def test_stream_options_need_stream_true() -> None:
    validate_chat_request(body(stream=True, stream_options={"include_usage": False}))
    validate_chat_request(body(stream=True, stream_options={}))
    validate_chat_request(body(stream_options=None))
    rejects(body(stream_options={"include_usage": True}), "stream_options")
    rejects(body(stream=False, stream_options={"include_usage": True}), "stream_options")
    rejects(body(stream=True, stream_options=[]), "stream_options", "invalid_type")
    rejects(
        body(stream=True, stream_options={"include_usage": "yes"}),
        "stream_options.include_usage",
        "invalid_type",
    )


# ------------------------------------------------------------------ logit_bias and metadata


def test_logit_bias() -> None:
    validate_chat_request(body(logit_bias={}))
    validate_chat_request(body(logit_bias={"0": -100, "100257": 100, "7": 0.5}))
    rejects(body(logit_bias={"1": -100.5}), "logit_bias", "invalid_value")
    error = rejects(body(logit_bias={"1": 101}), "logit_bias", "invalid_value")
    assert "-100 to 100" in error.message
    for key in ("abc", "-1", "1.5", "", " 1", "١٢"):  # the last one: Arabic-Indic digits
        rejects(body(logit_bias={key: 1}), "logit_bias", "invalid_value")
    rejects(body(logit_bias={"1": "5"}), "logit_bias", "invalid_type")
    rejects(body(logit_bias=[["1", 5]]), "logit_bias", "invalid_type")


def test_metadata() -> None:
    full = {f"k{i}": "v" for i in range(16)}
    validate_chat_request(body(metadata=full))
    validate_chat_request(body(metadata={"k" * 64: "v" * 512}))
    validate_chat_request(body(metadata={}))
    rejects(body(metadata={**full, "k16": "v"}), "metadata", "object_above_max_properties")
    rejects(body(metadata={"k" * 65: "v"}), "metadata", "string_above_max_length")
    rejects(body(metadata={"key": "v" * 513}), "metadata.key", "string_above_max_length")
    rejects(body(metadata={"key": 1}), "metadata.key", "invalid_type")
    rejects(body(metadata="team=search"), "metadata", "invalid_type")


# ------------------------------------------------------------------ stop


def test_stop() -> None:
    validate_chat_request(body(stop="END"))
    validate_chat_request(body(stop=["a", "b", "c", "d"]))
    rejects(body(stop=["a", "b", "c", "d", "e"]), "stop", "array_above_max_length")
    rejects(body(stop=["a", 1]), "stop[1]", "invalid_type")
    rejects(body(stop=1), "stop", "invalid_type")


# ------------------------------------------------------------------ tools


def function_tool(name: Any = "get_weather", **function: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, **function}}


@pytest.mark.parametrize("name", ["a", "A" * 64, "get_weather", "get-weather-2", "_", "-"])
def test_tool_names_that_pass(name: str) -> None:
    validate_chat_request(body(tools=[function_tool(name)]))


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("", "empty_string"),
        ("a" * 65, "string_above_max_length"),
        ("get weather", "invalid_value"),
        ("mcp.get_weather", "invalid_value"),
        ("server/tool", "invalid_value"),
        ("météo", "invalid_value"),
        ("name\n", "invalid_value"),
    ],
)
def test_tool_names_that_fail(name: str, code: str) -> None:
    tools = [function_tool(), function_tool(name)]
    rejects(body(tools=tools), "tools[1].function.name", code)


def test_tools() -> None:
    validate_chat_request(body(tools=[]))
    validate_chat_request(body(tools=[function_tool(parameters={"type": "object"})]))
    validate_chat_request(body(tools=[{"type": "custom", "custom": {"name": "grep"}}]))
    rejects(body(tools={"type": "function"}), "tools", "invalid_type")
    rejects(body(tools=["get_weather"]), "tools[0]", "invalid_type")
    rejects(
        body(tools=[{"function": {"name": "f"}}]), "tools[0].type", "missing_required_parameter"
    )
    rejects(body(tools=[{"type": "retrieval"}]), "tools[0].type", "invalid_value")
    rejects(body(tools=[{"type": "function"}]), "tools[0].function", "missing_required_parameter")
    rejects(
        body(tools=[{"type": "function", "function": {}}]),
        "tools[0].function.name",
        "missing_required_parameter",
    )
    rejects(body(tools=[function_tool(7)]), "tools[0].function.name", "invalid_type")
    rejects(
        body(tools=[function_tool(parameters=[])]), "tools[0].function.parameters", "invalid_type"
    )
    rejects(
        body(tools=[function_tool(parameters='{"type": "object"}')]),
        "tools[0].function.parameters",
        "invalid_type",
    )
    rejects(body(tools=[function_tool(strict="yes")]), "tools[0].function.strict", "invalid_type")


@pytest.mark.parametrize(
    "choice",
    [
        "none",
        "auto",
        "required",
        {"type": "function", "function": {"name": "get_weather"}},
        {"type": "custom", "custom": {"name": "grep"}},
        {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}},
    ],
)
def test_tool_choice_that_passes(choice: Any) -> None:
    validate_chat_request(body(tools=[function_tool()], tool_choice=choice))


@pytest.mark.parametrize(
    ("choice", "param", "code"),
    [
        ("any", "tool_choice", "invalid_value"),
        ("function", "tool_choice", "invalid_value"),
        (True, "tool_choice", "invalid_type"),
        ({"function": {"name": "f"}}, "tool_choice.type", "missing_required_parameter"),
        ({"type": "tool", "function": {"name": "f"}}, "tool_choice.type", "invalid_value"),
        ({"type": "function"}, "tool_choice.function", "missing_required_parameter"),
        ({"type": "function", "function": "f"}, "tool_choice.function", "invalid_type"),
        (
            {"type": "function", "function": {}},
            "tool_choice.function.name",
            "missing_required_parameter",
        ),
        ({"type": "function", "function": {"name": 1}}, "tool_choice.function.name", None),
        (
            {"type": "allowed_tools", "allowed_tools": {"mode": "none", "tools": []}},
            "tool_choice.allowed_tools.mode",
            "invalid_value",
        ),
    ],
)
def test_tool_choice_that_fails(choice: Any, param: str, code: str | None) -> None:
    rejects(body(tool_choice=choice), param, code)


def test_tool_choice_error_lists_the_allowed_values() -> None:
    error = rejects(body(tool_choice="any"), "tool_choice", "invalid_value")
    assert "'none', 'auto', and 'required'" in error.message


# ------------------------------------------------------------------ response_format


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "text"},
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "answer"}},
        {"type": "json_schema", "json_schema": {"name": "a-b_C9", "schema": {}, "strict": None}},
    ],
)
def test_response_format_that_passes(response_format: dict[str, Any]) -> None:
    validate_chat_request(body(response_format=response_format))


@pytest.mark.parametrize(
    ("response_format", "param", "code"),
    [
        ("json_object", "response_format", "invalid_type"),
        ({}, "response_format.type", "missing_required_parameter"),
        ({"type": "json"}, "response_format.type", "invalid_value"),
        ({"type": "json_schema"}, "response_format.json_schema", "missing_required_parameter"),
        (
            {"type": "json_schema", "json_schema": {"schema": {}}},
            "response_format.json_schema.name",
            "missing_required_parameter",
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "my answer"}},
            "response_format.json_schema.name",
            "invalid_value",
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "a", "schema": "{}"}},
            "response_format.json_schema.schema",
            "invalid_type",
        ),
    ],
)
def test_response_format_that_fails(response_format: Any, param: str, code: str) -> None:
    rejects(body(response_format=response_format), param, code)


# ------------------------------------------------------------------ messages


def test_messages_required_and_non_empty() -> None:
    rejects({"model": "m"}, "messages", "missing_required_parameter")
    rejects({"model": "m", "messages": None}, "messages", "missing_required_parameter")
    rejects({"model": "m", "messages": []}, "messages", "empty_array")
    rejects({"model": "m", "messages": USER}, "messages", "invalid_type")
    rejects({"model": "m", "messages": "Hi"}, "messages", "invalid_type")


@pytest.mark.parametrize("role", ["system", "developer", "user", "assistant", "tool", "function"])
def test_every_role_passes(role: str) -> None:
    message: dict[str, Any] = {"role": role, "content": "x"}
    if role == "tool":
        message["tool_call_id"] = "call_1"
    if role == "function":
        message["name"] = "get_weather"
    validate_chat_request(body(messages=[USER, message]))


def test_role() -> None:
    error = rejects(
        body(messages=[USER, USER, {"role": "bot", "content": "x"}]), "messages[2].role"
    )
    assert error.code == "invalid_value"
    assert "'system'" in error.message and "'tool'" in error.message
    rejects(body(messages=[{"role": "User", "content": "x"}]), "messages[0].role", "invalid_value")
    rejects(body(messages=[{"content": "x"}]), "messages[0].role", "missing_required_parameter")
    rejects(body(messages=[{"role": 1, "content": "x"}]), "messages[0].role", "invalid_type")
    rejects(body(messages=[{"role": ["user"], "content": "x"}]), "messages[0].role", "invalid_type")
    rejects(body(messages=[USER, "hello"]), "messages[1]", "invalid_type")


@pytest.mark.parametrize("role", ["system", "developer", "user", "tool"])
def test_content_required(role: str) -> None:
    message: dict[str, Any] = {"role": role, "tool_call_id": "call_1"}
    rejects(body(messages=[message]), "messages[0].content", "missing_required_parameter")
    rejects(body(messages=[{**message, "content": None}]), "messages[0].content", "invalid_type")
    rejects(body(messages=[{**message, "content": 5}]), "messages[0].content", "invalid_type")
    rejects(body(messages=[{**message, "content": {"type": "text"}}]), "messages[0].content")
    rejects(body(messages=[{**message, "content": []}]), "messages[0].content", "empty_array")
    validate_chat_request(body(messages=[{**message, "content": ""}]))
    validate_chat_request(body(messages=[{**message, "content": [{"type": "text", "text": ""}]}]))


def test_content_parts() -> None:
    def user(*parts: Any) -> dict[str, Any]:
        return body(messages=[{"role": "user", "content": list(parts)}])

    text = {"type": "text", "text": "hi"}
    validate_chat_request(user(text, {"type": "image_url", "image_url": {"url": "data:,"}}))
    validate_chat_request(user({"type": "video_url", "video_url": {"url": "x"}}))  # extension
    rejects(user(text, "hi"), "messages[0].content[1]", "invalid_type")
    rejects(user({"text": "hi"}), "messages[0].content[0].type", "missing_required_parameter")
    rejects(user({"type": 1}), "messages[0].content[0].type", "invalid_type")
    rejects(user({"type": "text"}), "messages[0].content[0].text", "missing_required_parameter")
    rejects(user({"type": "text", "text": 1}), "messages[0].content[0].text", "invalid_type")


def test_name() -> None:
    validate_chat_request(body(messages=[{**USER, "name": "alice"}]))
    rejects(body(messages=[{**USER, "name": 1}]), "messages[0].name", "invalid_type")


def test_tool_message_needs_tool_call_id() -> None:
    tool = {"role": "tool", "content": "18 °C"}
    rejects(body(messages=[tool]), "messages[0].tool_call_id", "missing_required_parameter")
    rejects(
        body(messages=[{**tool, "tool_call_id": 1}]), "messages[0].tool_call_id", "invalid_type"
    )


def test_function_message() -> None:
    validate_chat_request(body(messages=[{"role": "function", "name": "f", "content": None}]))
    rejects(
        body(messages=[{"role": "function", "content": "x"}]),
        "messages[0].name",
        "missing_required_parameter",
    )
    rejects(
        body(messages=[{"role": "function", "name": "f"}]),
        "messages[0].content",
        "missing_required_parameter",
    )
    rejects(
        body(messages=[{"role": "function", "name": "f", "content": [{"type": "text"}]}]),
        "messages[0].content",
        "invalid_type",
    )


CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.mark.parametrize(
    "assistant",
    [
        {"role": "assistant", "content": "Hello"},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]},
        {"role": "assistant", "tool_calls": [CALL]},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [CALL]},
        {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}},
        {"role": "assistant", "content": None, "audio": {"id": "audio_1"}},
        {
            "role": "assistant",
            "tool_calls": [{"id": "c", "type": "custom", "custom": {"name": "grep", "input": "x"}}],
        },
    ],
)
def test_assistant_that_passes(assistant: dict[str, Any]) -> None:
    validate_chat_request(body(messages=[USER, assistant]))


@pytest.mark.parametrize(
    ("assistant", "param", "code"),
    [
        ({"role": "assistant"}, "messages[1].content", "invalid_value"),
        ({"role": "assistant", "content": None}, "messages[1].content", "invalid_value"),
        (
            {"role": "assistant", "content": None, "tool_calls": []},
            "messages[1].content",
            "invalid_value",
        ),
        ({"role": "assistant", "content": 1}, "messages[1].content", "invalid_type"),
        ({"role": "assistant", "tool_calls": CALL}, "messages[1].tool_calls", "invalid_type"),
        ({"role": "assistant", "tool_calls": ["f"]}, "messages[1].tool_calls[0]", "invalid_type"),
        (
            {"role": "assistant", "tool_calls": [{**CALL, "id": None}]},
            "messages[1].tool_calls[0].id",
            "missing_required_parameter",
        ),
        (
            {"role": "assistant", "tool_calls": [{**CALL, "type": "tool"}]},
            "messages[1].tool_calls[0].type",
            "invalid_value",
        ),
        (
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]},
            "messages[1].tool_calls[0].function",
            "missing_required_parameter",
        ),
        (
            {
                "role": "assistant",
                "tool_calls": [CALL, {**CALL, "function": {"arguments": "{}"}}],
            },
            "messages[1].tool_calls[1].function.name",
            "missing_required_parameter",
        ),
        (
            {"role": "assistant", "tool_calls": [{**CALL, "function": {"name": "f"}}]},
            "messages[1].tool_calls[0].function.arguments",
            "missing_required_parameter",
        ),
        (
            {
                "role": "assistant",
                "tool_calls": [{**CALL, "function": {"name": "f", "arguments": {"a": 1}}}],
            },
            "messages[1].tool_calls[0].function.arguments",
            "invalid_type",
        ),
        (
            {"role": "assistant", "function_call": {"name": "f"}},
            "messages[1].function_call.arguments",
            "missing_required_parameter",
        ),
        (
            {"role": "assistant", "content": "x", "refusal": 1},
            "messages[1].refusal",
            "invalid_type",
        ),
    ],
)
def test_assistant_that_fails(assistant: dict[str, Any], param: str, code: str) -> None:
    rejects(body(messages=[USER, assistant]), param, code)


# ------------------------------------------------------------------ error shape


def test_first_problem_wins_and_renders_as_openai_error() -> None:
    request = body(temperature=9, top_p=9)
    request["messages"] = [{"role": "bot"}]
    error = rejects(request, "messages[0].role", "invalid_value")  # messages come first
    envelope = error.envelope()["error"]
    assert envelope["type"] == "invalid_request_error"
    assert envelope["param"] == "messages[0].role"
    rejects(body(temperature=9, top_p=9), "temperature")
    rejects(body(top_p=9, temperature=9), "top_p")
