"""extproc.tool_calls: every shape of tool call, and knowing when streamed arguments end."""

from __future__ import annotations

import orjson
import pytest

from extproc.tool_calls import (
    CUSTOM,
    LEGACY_INDEX,
    MAX_ARGUMENT_CHARS,
    ToolCall,
    calls_in_message,
    deltas_of,
    offered_tool_names,
)

TRICKY = {
    "path": "/a}b{c",
    "quote": 'say "}"',
    "escaped": "back\\\\slash\\\\",
    "list": [{"x": "]"}],
}


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 1000])
def test_arguments_are_complete_exactly_when_the_object_closes_however_they_are_cut(
    size: int,
) -> None:
    text = orjson.dumps(TRICKY).decode()
    call = ToolCall(0, 0)
    closed_at = [i for i in range(0, len(text), size) if call.add_arguments(text[i : i + size])]
    assert closed_at == [range(0, len(text), size)[-1]]  # only the last fragment closes it
    assert orjson.loads(call.arguments) == TRICKY


def test_a_closed_array_or_invalid_json_is_not_a_complete_object() -> None:
    assert not ToolCall(0, 0).add_arguments('["a"]')
    assert not ToolCall(0, 0).add_arguments('{"a": }')


def test_custom_arguments_never_close_by_themselves_and_overflow_is_flagged() -> None:
    call = ToolCall(0, 0, CUSTOM)
    assert not call.add_arguments("{}")
    big = ToolCall(0, 0)
    big.add_arguments("{" + "x" * MAX_ARGUMENT_CHARS)
    assert big.overflow and big.size == 0


def test_every_shape_of_call_in_a_message() -> None:
    message = {
        "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}},
            {"id": "b", "type": "custom", "custom": {"name": "sh", "input": "ls -l"}},
        ],
        "function_call": {"name": "legacy", "arguments": "{}"},
    }
    calls = calls_in_message(message, 0)
    assert [(c.kind, c.name, c.arguments, c.index) for c in calls] == [
        ("function", "f", '{"x":1}', 0),
        ("custom", "sh", "ls -l", 1),
        ("function", "legacy", "{}", LEGACY_INDEX),
    ]
    assert calls[0].as_input()["arguments"] == {"x": 1}
    assert calls[1].as_input()["arguments"] is None
    assert calls[1].as_input()["arguments_raw"] == "ls -l"
    assert calls[2].as_record() == {"name": "legacy", "arguments": "{}", "type": "function_call"}


def test_deltas_of_every_shape() -> None:
    delta = {
        "tool_calls": [
            {"index": 1, "id": "a", "function": {"name": "f", "arguments": "{"}},
            {"index": 2, "custom": {"input": "ls"}},
        ],
        "function_call": {"arguments": "}"},
    }
    assert [(d.index, d.kind, d.id, d.name, d.arguments) for d in deltas_of(delta)] == [
        (1, "function", "a", "f", "{"),
        (2, "custom", None, "", "ls"),
        (LEGACY_INDEX, "function", None, "", "}"),
    ]


def test_offered_tool_names_cover_functions_custom_tools_and_legacy_functions() -> None:
    request = {
        "tools": [
            {"type": "function", "function": {"name": "f"}},
            {"type": "custom", "custom": {"name": "c"}},
        ],
        "functions": [{"name": "legacy"}],
    }
    assert offered_tool_names(request) == ["f", "c", "legacy"]
    assert offered_tool_names({}) == []
