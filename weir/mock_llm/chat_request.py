"""Minimal, OpenAI-like validation of a ``CreateChatCompletionRequest`` body."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from weir.mock_llm.errors import APIError
from weir.mock_llm.tools import function_tools

__all__ = ["ChatRequest", "parse_body", "parse_chat_request"]

_ROLES = frozenset({"developer", "system", "user", "assistant", "tool", "function"})
_MAX_N = 128

_JSON_HINT = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON.)"
)


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """The parts of a chat request the mock acts on."""

    model: str
    messages: list[Any]
    stream: bool
    include_usage: bool
    n: int
    max_tokens: int | None
    functions: list[Mapping[str, Any]]
    tool_choice: str  # "auto", "none" or "required"
    named_tool: str | None
    allowed_tools: frozenset[str] | None
    parallel_tool_calls: bool
    tools: Any


def parse_body(raw: bytes) -> Any:
    """The JSON value of a request body, or :class:`APIError` (400) if it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise APIError(400, _JSON_HINT) from None


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _invalid_type(param: str, expected: str, value: Any) -> APIError:
    return APIError(
        400,
        f"Invalid type for '{param}': expected {expected}, but got {_type_name(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _missing(param: str) -> APIError:
    return APIError(
        400,
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def _optional_int(body: Mapping[str, Any], key: str, minimum: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid_type(key, "an integer", value)
    if value < minimum:
        raise APIError(
            400,
            f"Invalid '{key}': integer below minimum value. Expected a value >= {minimum}, "
            f"but got {value} instead.",
            param=key,
            code="integer_below_min_value",
        )
    return value


def _check_messages(messages: Any) -> list[Any]:
    if messages is None:
        raise _missing("messages")
    if not isinstance(messages, list):
        raise _invalid_type("messages", "an array", messages)
    if not messages:
        raise APIError(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _invalid_type(f"messages[{i}]", "an object", message)
        role = message.get("role")
        if role is None:
            raise _missing(f"messages[{i}].role")
        if role not in _ROLES:
            raise APIError(
                400,
                f"Invalid value for 'messages[{i}].role': '{role}'. Supported values are: "
                "'system', 'assistant', 'user', 'function', 'tool', and 'developer'.",
                param=f"messages[{i}].role",
                code="invalid_value",
            )
    return messages


def _check_tools(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    tools = body.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise _invalid_type("tools", "an array", tools)
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise _invalid_type(f"tools[{i}]", "an object", tool)
        if tool.get("type", "function") != "function":
            continue
        function = tool.get("function")
        if not isinstance(function, dict):
            raise _missing(f"tools[{i}].function")
        if not isinstance(function.get("name"), str) or not function["name"]:
            raise _missing(f"tools[{i}].function.name")
    return function_tools(tools)


def _named_function(choice: Mapping[str, Any]) -> str | None:
    function = choice.get("function")
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return str(function["name"])
    return None


def _tool_choice(
    body: Mapping[str, Any], functions: list[Mapping[str, Any]]
) -> tuple[str, str | None, frozenset[str] | None]:
    """``(mode, named tool, allowed tool names)`` from ``tool_choice``."""
    choice = body.get("tool_choice")
    if choice is None:
        return "auto", None, None
    if body.get("tools") is None:
        raise APIError(
            400,
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
            "are specified.",
            param="tool_choice",
        )
    names = {str(f["name"]) for f in functions}
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise APIError(
                400,
                f"Invalid value for 'tool_choice': '{choice}'. Supported values are: 'none', "
                "'auto', and 'required'.",
                param="tool_choice",
                code="invalid_value",
            )
        return choice, None, None
    if not isinstance(choice, dict):
        raise _invalid_type("tool_choice", "a string or an object", choice)
    if choice.get("type") == "allowed_tools":
        spec = choice.get("allowed_tools")
        spec = spec if isinstance(spec, dict) else {}
        mode = "required" if spec.get("mode") == "required" else "auto"
        listed = spec.get("tools")
        allowed = frozenset(
            name
            for tool in (listed if isinstance(listed, list) else [])
            if isinstance(tool, dict) and (name := _named_function(tool)) is not None
        )
        return mode, None, (allowed & names) or None
    named = _named_function(choice)
    if named is None:
        raise _missing("tool_choice.function.name")
    if named not in names:
        raise APIError(
            400,
            f"Invalid value for 'tool_choice': function '{named}' is not one of the "
            "functions in 'tools'.",
            param="tool_choice",
            code="invalid_value",
        )
    return "required", named, None


def parse_chat_request(body: Any) -> ChatRequest:
    """Check a chat completion body; raise :class:`APIError` like OpenAI would."""
    if not isinstance(body, dict):
        raise APIError(
            400,
            f"Invalid type for body: expected an object, but got {_type_name(body)} instead.",
            code="invalid_type",
        )
    model = body.get("model")
    if model is None:
        raise _missing("model")
    if not isinstance(model, str):
        raise _invalid_type("model", "a string", model)
    messages = _check_messages(body.get("messages"))

    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid_type("stream", "a boolean", stream)
    stream_options = body.get("stream_options")
    include_usage = False
    if stream_options is not None:
        if not stream:
            raise APIError(
                400,
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
                code="invalid_value",
            )
        if not isinstance(stream_options, dict):
            raise _invalid_type("stream_options", "an object", stream_options)
        include_usage = stream_options.get("include_usage") is True

    n = _optional_int(body, "n", 1) or 1
    if n > _MAX_N:
        raise APIError(
            400,
            f"Invalid 'n': integer above maximum value. Expected a value <= {_MAX_N}, "
            f"but got {n} instead.",
            param="n",
            code="integer_above_max_value",
        )
    max_tokens = _optional_int(body, "max_completion_tokens", 1)
    legacy_max = _optional_int(body, "max_tokens", 1)
    if max_tokens is None:
        max_tokens = legacy_max

    functions = _check_tools(body)
    mode, named, allowed = _tool_choice(body, functions)
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise _invalid_type("parallel_tool_calls", "a boolean", parallel)
    return ChatRequest(
        model=model,
        messages=messages,
        stream=bool(stream),
        include_usage=include_usage,
        n=n,
        max_tokens=max_tokens,
        functions=functions,
        tool_choice=mode,
        named_tool=named,
        allowed_tools=allowed,
        parallel_tool_calls=parallel is not False,
        tools=body.get("tools"),
    )
