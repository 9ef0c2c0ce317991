"""Validation of a `POST /v1/chat/completions` body, the way the OpenAI API validates it.

`validate_chat_request` checks the standard parameters that are present and raises
`InvalidRequest` on the first problem, with OpenAI's `param` path (`messages[2].role`,
`tools[0].function.name`, ...), code and wording. Unknown parameters pass through
untouched (providers have extensions), and `null` for an optional parameter means unset.
`model` is checked by the router, not here. Plain type checks only: this is a hot path.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final, NoReturn

from extproc.errors import InvalidRequest

__all__ = ["validate_chat_request"]

# Function, tool and response-format names; fullmatch, so a trailing newline fails too.
_NAME: Final = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_NAME_PATTERN: Final = "^[a-zA-Z0-9_-]{1,64}$"

_ROLES: Final = ("system", "developer", "user", "assistant", "tool", "function")
_TOOL_CHOICE_MODES: Final = ("none", "auto", "required")
_TOOL_CHOICE_TYPES: Final = ("function", "custom", "allowed_tools")
_TOOL_TYPES: Final = ("function", "custom")
_RESPONSE_FORMATS: Final = ("text", "json_object", "json_schema")
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_METADATA_MAX_PAIRS: Final = 16
_METADATA_KEY_MAX: Final = 64
_METADATA_VALUE_MAX: Final = 512
_STOP_MAX: Final = 4
_STRING_OR_PARTS: Final = "one of a string or array of objects"


# ---------------------------------------------------------------------------- errors
# Only reached on the error path, so they may take their time building messages.


def _kind(value: Any) -> str:
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
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def _fmt(number: float) -> str:
    return str(int(number)) if isinstance(number, float) and number.is_integer() else str(number)


def _supported(values: tuple[str, ...]) -> str:
    quoted = [f"'{value}'" for value in values]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}"


def _invalid_type(param: str, expected: str, value: Any) -> NoReturn:
    raise InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _missing(param: str) -> NoReturn:
    raise InvalidRequest(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def _invalid_value(param: str, value: Any, supported: tuple[str, ...]) -> NoReturn:
    raise InvalidRequest(
        f"Invalid value for '{param}': {value!r}. Supported values are: {_supported(supported)}.",
        param=param,
        code="invalid_value",
    )


def _out_of_range(
    param: str, kind: str, value: float, low: float | None, high: float | None
) -> NoReturn:
    if low is not None and value < low:
        side, bound, code = "below minimum", f">= {_fmt(low)}", f"{kind}_below_min_value"
    elif high is not None:
        side, bound, code = "above maximum", f"<= {_fmt(high)}", f"{kind}_above_max_value"
    else:  # pragma: no cover - callers only get here with a bound crossed
        raise AssertionError(value)
    allowed = (
        f" The allowed range is {_fmt(low)} to {_fmt(high)}."
        if low is not None and high is not None
        else ""
    )
    raise InvalidRequest(
        f"Invalid '{param}': {kind} {side} value. Expected a value {bound}, "
        f"but got {value} instead.{allowed}",
        param=param,
        code=code,
    )


def _bad_name(param: str, name: str) -> NoReturn:
    if not name:
        detail, code = "empty string. Expected a string with minimum length 1", "empty_string"
    elif len(name) > 64:
        detail = (
            "string too long. Expected a string with maximum length 64, "
            f"but got a string with length {len(name)} instead"
        )
        code = "string_above_max_length"
    else:
        detail = (
            f"string does not match pattern. Expected a string that matches the pattern "
            f"'{_NAME_PATTERN}' (letters, digits, underscores and dashes)"
        )
        code = "invalid_value"
    raise InvalidRequest(f"Invalid '{param}': {detail}.", param=param, code=code)


def _only_when(param: str, other: str) -> NoReturn:
    raise InvalidRequest(
        f"The '{param}' parameter is only allowed when '{other}' is enabled "
        f"(set '{other}' to true).",
        param=param,
    )


# ---------------------------------------------------------------------------- helpers
# `type(x) is int` rather than isinstance: orjson only makes exact types, and a bool
# (a subclass of int) must not pass as a number.


def _check_number(param: str, value: Any, low: float, high: float) -> None:
    kind = type(value)
    if kind is not float and kind is not int:
        _invalid_type(param, "a decimal", value)
    if not low <= value <= high:  # also false for NaN
        _out_of_range(param, "decimal", value, low, high)


def _check_int(param: str, value: Any, low: int | None, high: int | None) -> None:
    if type(value) is not int:
        _invalid_type(param, "an integer", value)
    if (low is not None and value < low) or (high is not None and value > high):
        _out_of_range(param, "integer", value, low, high)


def _check_bool(param: str, value: Any) -> None:
    if value is not True and value is not False:
        _invalid_type(param, "a boolean", value)


def _check_str(param: str, value: Any) -> None:
    if type(value) is not str:
        _invalid_type(param, "a string", value)


def _require_dict(param: str, value: Any) -> dict[str, Any]:
    if type(value) is not dict:
        _invalid_type(param, "an object", value)
    return value


def _require_list(param: str, value: Any) -> list[Any]:
    if type(value) is not list:
        _invalid_type(param, "an array", value)
    return value


def _required_str(obj: dict[str, Any], key: str, prefix: str) -> str:
    value = obj.get(key)
    if value is None:
        _missing(f"{prefix}.{key}")
    if type(value) is not str:
        _invalid_type(f"{prefix}.{key}", "a string", value)
    return value


def _optional_str(obj: dict[str, Any], key: str, prefix: str) -> None:
    value = obj.get(key)
    if value is not None and type(value) is not str:
        _invalid_type(f"{prefix}.{key}", "a string", value)


def _optional_bool(obj: dict[str, Any], key: str, prefix: str) -> None:
    value = obj.get(key)
    if value is not None and value is not True and value is not False:
        _invalid_type(f"{prefix}.{key}", "a boolean", value)


def _required_dict(obj: dict[str, Any], key: str, prefix: str) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        _missing(f"{prefix}.{key}")
    if type(value) is not dict:
        _invalid_type(f"{prefix}.{key}", "an object", value)
    return value


def _check_name(param: str, name: str) -> None:
    if _NAME.fullmatch(name) is None:
        _bad_name(param, name)


# ---------------------------------------------------------------------------- messages


def _check_content(content: Any, prefix: str) -> None:
    """A string, or a non-empty array of content parts (objects with a string `type`)."""
    if type(content) is str:
        return
    if type(content) is not list:
        _invalid_type(f"{prefix}.content", _STRING_OR_PARTS, content)
    if not content:
        raise InvalidRequest(
            f"Invalid '{prefix}.content': empty array. Expected an array with minimum "
            "length 1, but got an empty array instead.",
            param=f"{prefix}.content",
            code="empty_array",
        )
    for j, part in enumerate(content):
        if type(part) is not dict:
            _invalid_type(f"{prefix}.content[{j}]", "an object", part)
        part_type = part.get("type")
        if part_type is None:
            _missing(f"{prefix}.content[{j}].type")
        if type(part_type) is not str:
            _invalid_type(f"{prefix}.content[{j}].type", "a string", part_type)
        if part_type == "text":
            _required_str(part, "text", f"{prefix}.content[{j}]")


def _check_tool_calls(tool_calls: Any, prefix: str) -> None:
    for j, call in enumerate(_require_list(f"{prefix}.tool_calls", tool_calls)):
        where = f"{prefix}.tool_calls[{j}]"
        if type(call) is not dict:
            _invalid_type(where, "an object", call)
        _required_str(call, "id", where)
        call_type = _required_str(call, "type", where)
        if call_type == "function":
            function = _required_dict(call, "function", where)
            _required_str(function, "name", f"{where}.function")
            _required_str(function, "arguments", f"{where}.function")
        elif call_type == "custom":
            custom = _required_dict(call, "custom", where)
            _required_str(custom, "name", f"{where}.custom")
            _required_str(custom, "input", f"{where}.custom")
        else:
            _invalid_value(f"{where}.type", call_type, _TOOL_TYPES)


def _check_message(message: Any, i: int) -> None:
    if type(message) is not dict:
        _invalid_type(f"messages[{i}]", "an object", message)
    role = message.get("role")
    if role is None:
        _missing(f"messages[{i}].role")
    if role not in _ROLES:  # also rejects non-strings
        if type(role) is not str:
            _invalid_type(f"messages[{i}].role", "a string", role)
        _invalid_value(f"messages[{i}].role", role, _ROLES)
    name = message.get("name")
    if name is not None and type(name) is not str:
        _invalid_type(f"messages[{i}].name", "a string", name)
    content = message.get("content")

    if role == "assistant":
        tool_calls = message.get("tool_calls")
        if tool_calls is not None:
            _check_tool_calls(tool_calls, f"messages[{i}]")
        function_call = message.get("function_call")
        if function_call is not None:
            where = f"messages[{i}].function_call"
            _require_dict(where, function_call)
            _required_str(function_call, "name", where)
            _required_str(function_call, "arguments", where)
        refusal = message.get("refusal")
        if refusal is not None and type(refusal) is not str:
            _invalid_type(f"messages[{i}].refusal", "a string", refusal)
        if content is not None:
            _check_content(content, f"messages[{i}]")
        elif not (tool_calls or function_call is not None or message.get("audio") is not None):
            raise InvalidRequest(
                f"Invalid value for 'messages[{i}].content': expected a string or an array of "
                "content parts; it may only be omitted or null on an assistant message that "
                "has 'tool_calls' or 'function_call'.",
                param=f"messages[{i}].content",
                code="invalid_value",
            )
        return

    if role == "function":  # deprecated: content is a string or null, name is required
        if "content" not in message:
            _missing(f"messages[{i}].content")
        if content is not None and type(content) is not str:
            _invalid_type(f"messages[{i}].content", "a string", content)
        if name is None:
            _missing(f"messages[{i}].name")
        return

    # system, developer, user, tool
    if content is None:
        if "content" not in message:
            _missing(f"messages[{i}].content")
        _invalid_type(f"messages[{i}].content", _STRING_OR_PARTS, content)
    _check_content(content, f"messages[{i}]")
    if role == "tool":
        _required_str(message, "tool_call_id", f"messages[{i}]")


def _check_messages(messages: Any) -> None:
    if type(messages) is not list:
        _invalid_type("messages", "an array", messages)
    if not messages:
        raise InvalidRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    for i, message in enumerate(messages):
        _check_message(message, i)


# ---------------------------------------------------------------------------- parameters
# Each check gets the (non-null) value and the whole body, for the parameters that
# depend on another one.

_Check = Callable[[Any, dict[str, Any]], None]


def _number(param: str, low: float, high: float) -> _Check:
    def check(value: Any, body: dict[str, Any]) -> None:
        _check_number(param, value, low, high)

    return check


def _integer(param: str, low: int | None, high: int | None) -> _Check:
    def check(value: Any, body: dict[str, Any]) -> None:
        _check_int(param, value, low, high)

    return check


def _boolean(param: str) -> _Check:
    def check(value: Any, body: dict[str, Any]) -> None:
        _check_bool(param, value)

    return check


def _string(param: str) -> _Check:
    def check(value: Any, body: dict[str, Any]) -> None:
        _check_str(param, value)

    return check


def _top_logprobs(value: Any, body: dict[str, Any]) -> None:
    _check_int("top_logprobs", value, 0, 20)
    if body.get("logprobs") is not True:
        _only_when("top_logprobs", "logprobs")


def _logit_bias(value: Any, body: dict[str, Any]) -> None:
    for token, bias in _require_dict("logit_bias", value).items():
        if type(token) is not str or not (token.isascii() and token.isdigit()):
            raise InvalidRequest(
                f"Invalid 'logit_bias': key {token!r} is not a token ID. Keys must be "
                'token IDs as strings of digits, such as "50256".',
                param="logit_bias",
                code="invalid_value",
            )
        kind = type(bias)
        if kind is not int and kind is not float:
            raise InvalidRequest(
                f"Invalid type for 'logit_bias': the bias for token {token} must be a number, "
                f"but got {_kind(bias)} instead.",
                param="logit_bias",
                code="invalid_type",
            )
        if not -100 <= bias <= 100:
            raise InvalidRequest(
                f"Invalid 'logit_bias': the bias for token {token} is {bias}, outside the "
                "allowed range of -100 to 100.",
                param="logit_bias",
                code="invalid_value",
            )


def _metadata(value: Any, body: dict[str, Any]) -> None:
    metadata = _require_dict("metadata", value)
    if len(metadata) > _METADATA_MAX_PAIRS:
        raise InvalidRequest(
            "Invalid 'metadata': too many properties. Expected an object with at most "
            f"{_METADATA_MAX_PAIRS} properties, but got an object with {len(metadata)} "
            "properties instead.",
            param="metadata",
            code="object_above_max_properties",
        )
    for key, item in metadata.items():
        if len(key) > _METADATA_KEY_MAX:  # JSON object keys are always strings
            raise InvalidRequest(
                f"Invalid 'metadata': key {key[:16]!r}... is too long. Expected keys with "
                f"maximum length {_METADATA_KEY_MAX}, but got a key with length {len(key)} "
                "instead.",
                param="metadata",
                code="string_above_max_length",
            )
        if type(item) is not str:
            _invalid_type(f"metadata.{key}", "a string", item)
        if len(item) > _METADATA_VALUE_MAX:
            raise InvalidRequest(
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum "
                f"length {_METADATA_VALUE_MAX}, but got a string with length {len(item)} "
                "instead.",
                param=f"metadata.{key}",
                code="string_above_max_length",
            )


def _stream_options(value: Any, body: dict[str, Any]) -> None:
    options = _require_dict("stream_options", value)
    if body.get("stream") is not True:
        _only_when("stream_options", "stream")
    _optional_bool(options, "include_usage", "stream_options")
    _optional_bool(options, "include_obfuscation", "stream_options")


def _stop(value: Any, body: dict[str, Any]) -> None:
    if type(value) is str:
        return
    if type(value) is not list:
        _invalid_type("stop", "one of a string or array of strings", value)
    if len(value) > _STOP_MAX:
        raise InvalidRequest(
            f"Invalid 'stop': array too long. Expected an array with maximum length {_STOP_MAX}, "
            f"but got an array with length {len(value)} instead.",
            param="stop",
            code="array_above_max_length",
        )
    for j, item in enumerate(value):
        if type(item) is not str:
            _invalid_type(f"stop[{j}]", "a string", item)


def _tools(value: Any, body: dict[str, Any]) -> None:
    for j, tool in enumerate(_require_list("tools", value)):
        where = f"tools[{j}]"
        if type(tool) is not dict:
            _invalid_type(where, "an object", tool)
        tool_type = _required_str(tool, "type", where)
        if tool_type == "function":
            function = _required_dict(tool, "function", where)
            _check_name(
                f"{where}.function.name", _required_str(function, "name", f"{where}.function")
            )
            _optional_str(function, "description", f"{where}.function")
            parameters = function.get("parameters")
            if parameters is not None and type(parameters) is not dict:
                _invalid_type(f"{where}.function.parameters", "an object", parameters)
            _optional_bool(function, "strict", f"{where}.function")
        elif tool_type == "custom":
            custom = _required_dict(tool, "custom", where)
            _check_name(f"{where}.custom.name", _required_str(custom, "name", f"{where}.custom"))
        else:
            _invalid_value(f"{where}.type", tool_type, _TOOL_TYPES)


def _tool_choice(value: Any, body: dict[str, Any]) -> None:
    if type(value) is str:
        if value not in _TOOL_CHOICE_MODES:
            _invalid_value("tool_choice", value, _TOOL_CHOICE_MODES)
        return
    if type(value) is not dict:
        _invalid_type("tool_choice", "one of a string or object", value)
    choice_type = _required_str(value, "type", "tool_choice")
    if choice_type == "function":
        _required_str(
            _required_dict(value, "function", "tool_choice"), "name", "tool_choice.function"
        )
    elif choice_type == "custom":
        _required_str(_required_dict(value, "custom", "tool_choice"), "name", "tool_choice.custom")
    elif choice_type == "allowed_tools":
        allowed = _required_dict(value, "allowed_tools", "tool_choice")
        mode = _required_str(allowed, "mode", "tool_choice.allowed_tools")
        if mode not in ("auto", "required"):
            _invalid_value("tool_choice.allowed_tools.mode", mode, ("auto", "required"))
        tools = allowed.get("tools")
        if tools is None:
            _missing("tool_choice.allowed_tools.tools")
        _require_list("tool_choice.allowed_tools.tools", tools)
    else:
        _invalid_value("tool_choice.type", choice_type, _TOOL_CHOICE_TYPES)


def _response_format(value: Any, body: dict[str, Any]) -> None:
    response_format = _require_dict("response_format", value)
    format_type = _required_str(response_format, "type", "response_format")
    if format_type == "json_schema":
        schema = _required_dict(response_format, "json_schema", "response_format")
        name = _required_str(schema, "name", "response_format.json_schema")
        _check_name("response_format.json_schema.name", name)
        inner = schema.get("schema")
        if inner is not None and type(inner) is not dict:
            _invalid_type("response_format.json_schema.schema", "an object", inner)
        _optional_bool(schema, "strict", "response_format.json_schema")
    elif format_type not in _RESPONSE_FORMATS:
        _invalid_value("response_format.type", format_type, _RESPONSE_FORMATS)


_CHECKS: Final[dict[str, _Check]] = {
    "temperature": _number("temperature", 0, 2),
    "top_p": _number("top_p", 0, 1),
    "n": _integer("n", 1, 128),
    "frequency_penalty": _number("frequency_penalty", -2, 2),
    "presence_penalty": _number("presence_penalty", -2, 2),
    "logprobs": _boolean("logprobs"),
    "top_logprobs": _top_logprobs,
    "logit_bias": _logit_bias,
    "metadata": _metadata,
    "max_tokens": _integer("max_tokens", 1, None),
    "max_completion_tokens": _integer("max_completion_tokens", 1, None),
    "stream": _boolean("stream"),
    "stream_options": _stream_options,
    "stop": _stop,
    "seed": _integer("seed", _INT64_MIN, _INT64_MAX),
    "user": _string("user"),
    "tools": _tools,
    "tool_choice": _tool_choice,
    "response_format": _response_format,
    "parallel_tool_calls": _boolean("parallel_tool_calls"),
    "reasoning_effort": _string("reasoning_effort"),
    "service_tier": _string("service_tier"),
}


def validate_chat_request(body: dict[str, Any]) -> None:
    """Raise `InvalidRequest` for the first invalid standard parameter of a chat request.

    `messages` is checked first (it is required), then the other standard parameters in
    the order the client sent them. Unknown parameters are not looked at.
    """
    messages = body.get("messages")
    if messages is None:
        _missing("messages")
    _check_messages(messages)
    checks = _CHECKS
    for key, value in body.items():
        if value is not None:
            check = checks.get(key)
            if check is not None:
                check(value, body)
