"""The mock LLM's building blocks: tokenisation, tool-argument generation, settings."""

from __future__ import annotations

from typing import Any

import jsonschema
import orjson
import pytest

from weir.mock_llm import MockSettings
from weir.mock_llm.completions import ChoicePlan, ToolCallPlan
from weir.mock_llm.tokens import (
    DEFAULT_ANSWER,
    DEFAULT_ANSWER_TOKENS,
    count_prompt_tokens,
    count_tokens,
    message_text,
    split_tokens,
)
from weir.mock_llm.tools import (
    asks_for_tool,
    function_tools,
    generate_arguments,
    pick_tool,
    split_arguments,
)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "one",
        "two words",
        "  lead and trail  ",
        "multi\nline\n\ttext \u00e9t\u00e9 !",
        "a  b",
    ],
)
def test_tokens_concatenate_to_the_text(text: str) -> None:
    tokens = split_tokens(text)
    assert "".join(tokens) == text
    assert len(tokens) == count_tokens(text)
    assert all(t for t in tokens)


def test_tokens_are_words_with_following_space() -> None:
    assert split_tokens("Hello big world") == ["Hello ", "big ", "world"]
    assert split_tokens(" x  y\n") == [" x  ", "y\n"]


def test_default_answer_is_about_twenty_tokens() -> None:
    assert "".join(DEFAULT_ANSWER_TOKENS) == DEFAULT_ANSWER
    assert 15 <= len(DEFAULT_ANSWER_TOKENS) <= 25
    assert DEFAULT_ANSWER.startswith("This is a mock response")


def test_message_text() -> None:
    assert message_text("plain") == "plain"
    parts = [
        {"type": "text", "text": "a "},
        {"type": "input_audio", "input_audio": {}},
        {"type": "text", "text": "b"},
    ]
    assert message_text(parts) == "a b"
    assert message_text(None) == ""


def test_count_prompt_tokens() -> None:
    one = count_prompt_tokens([{"role": "user", "content": "one two three"}])
    two = count_prompt_tokens(
        [{"role": "system", "content": "x"}, {"role": "user", "content": "one two three"}]
    )
    assert one > 3
    assert two > one
    tools = [{"type": "function", "function": {"name": "f", "description": "d " * 40}}]
    with_tools = count_prompt_tokens([{"role": "user", "content": "one two three"}], tools)
    assert with_tools > one


FUNCTIONS = [
    {"name": "search_docs", "parameters": {"type": "object", "properties": {}}},
    {"name": "Get_Weather", "parameters": {"type": "object", "properties": {}}},
]


def test_function_tools_keeps_function_tools_only() -> None:
    tools: list[Any] = [
        {"type": "custom", "custom": {"name": "grammar"}},
        {"type": "function", "function": {"name": "f"}},
        "junk",
    ]
    assert [f["name"] for f in function_tools(tools)] == ["f"]
    assert function_tools(None) == []


@pytest.mark.parametrize(
    "prompt, asks",
    [
        ("Please call it", True),
        ("CALL now", True),
        ("use the tool", True),
        ("Use tools if you like", True),
        ("what does get_weather return", True),
        ("I recall nothing", False),
        ("Hello", False),
    ],
)
def test_asks_for_tool(prompt: str, asks: bool) -> None:
    assert asks_for_tool(prompt, FUNCTIONS) is asks


def test_pick_tool() -> None:
    assert pick_tool(FUNCTIONS, "anything")["name"] == "search_docs"
    assert pick_tool(FUNCTIONS, "use get_weather")["name"] == "Get_Weather"
    assert pick_tool(FUNCTIONS, "use get_weather", named="search_docs")["name"] == "search_docs"


SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {}},
    {"type": "object"},
    {
        "type": "object",
        "properties": {
            "s": {"type": "string", "maxLength": 3},
            "e": {"enum": [7, 8]},
            "c": {"const": "fixed"},
            "i": {"type": "integer", "maximum": -5},
            "n": {"type": "number", "minimum": 10, "maximum": 10.5},
            "x": {"type": "integer", "exclusiveMaximum": 0},
            "b": {"type": "boolean"},
            "z": {"type": "null"},
            "u": {"type": "string", "format": "uuid"},
            "d": {"type": "string", "format": "date"},
            "nested": {
                "type": "object",
                "properties": {
                    "deep": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"k": {"type": "string"}},
                            "required": ["k"],
                        },
                        "minItems": 3,
                    }
                },
                "required": ["deep"],
            },
            "one": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
            "all": {
                "allOf": [
                    {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                    {"properties": {"b": {"type": "string"}}, "required": ["b"]},
                ]
            },
            "untyped": {},
        },
        "required": ["s", "e", "c", "i", "n", "x", "b", "z", "u", "d", "nested", "one", "all"],
        "additionalProperties": False,
    },
    {
        "type": "object",
        "properties": {"node": {"$ref": "#/definitions/node"}},
        "required": ["node"],
        "definitions": {
            "node": {
                "type": "object",
                "properties": {"child": {"$ref": "#/definitions/node"}, "v": {"type": "string"}},
                "required": ["v"],
            }
        },
    },
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_generated_arguments_satisfy_the_schema(schema: dict[str, Any]) -> None:
    arguments = generate_arguments(schema)
    value = orjson.loads(arguments)
    assert isinstance(value, dict)
    jsonschema.validate(value, schema)
    for key in schema.get("required", []):
        assert key in value


def test_generated_arguments_are_plausible() -> None:
    schema = {
        "type": "object",
        "properties": {
            "location": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "cities": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["location", "unit", "cities"],
    }
    value = orjson.loads(generate_arguments(schema))
    assert value["location"] == "San Francisco, CA"
    assert value["unit"] == "celsius"
    assert value["cities"] == ["Paris"]


def test_generate_arguments_without_parameters() -> None:
    assert generate_arguments(None) == "{}"


def test_split_arguments() -> None:
    arguments = generate_arguments(SCHEMAS[2])
    fragments = split_arguments(arguments)
    assert len(fragments) > 3
    assert "".join(fragments) == arguments
    assert split_arguments("{}") == ["{}"]


def test_choice_plan_streams_content_then_each_call_in_turn() -> None:
    calls = [ToolCallPlan("call_a", "a", '{"x":"0123456789"}'), ToolCallPlan("call_b", "b", "{}")]
    plan = ChoicePlan(tokens=("Hi ", "there"), tool_calls=calls, finish_reason="tool_calls")
    assert plan.n_events == plan.completion_tokens == 2 + (1 + 3) + (1 + 1)
    deltas = [plan.delta(step) for step in range(plan.n_events)]
    assert deltas[:2] == [
        {"role": "assistant", "content": "Hi ", "refusal": None},
        {"content": "there"},
    ]
    head_a = {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"name": "a", "arguments": ""},
    }
    assert deltas[2] == {"tool_calls": [head_a]}
    fragments = [d["tool_calls"][0] for d in deltas[3:6]]
    assert all(set(f) == {"index", "function"} and f["index"] == 0 for f in fragments)
    assert "".join(f["function"]["arguments"] for f in fragments) == calls[0].arguments
    assert deltas[6:] == [
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "b", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]},
    ]
    message = plan.message()
    assert message["content"] == "Hi there"
    assert [c["id"] for c in message["tool_calls"]] == ["call_a", "call_b"]


def test_choice_plan_without_content() -> None:
    calls_only = ChoicePlan(tool_calls=[ToolCallPlan("call_a", "a", "{}")])
    assert calls_only.message()["content"] is None
    assert calls_only.delta(0)["role"] == "assistant"
    assert calls_only.delta(0)["content"] is None
    assert calls_only.delta(0)["tool_calls"][0]["id"] == "call_a"
    empty = ChoicePlan()
    assert (empty.n_events, empty.completion_tokens) == (1, 0)
    assert empty.delta(0) == {"role": "assistant", "content": "", "refusal": None}
    assert empty.message()["content"] == ""
    assert "tool_calls" not in empty.message()


def test_settings_validation() -> None:
    assert MockSettings().model_ids == ("mock-gpt", "mock-gpt-mini")
    with pytest.raises(ValueError):
        MockSettings(ttft_ms=-1)
    with pytest.raises(ValueError):
        MockSettings(model_ids="mock-gpt")  # type: ignore[arg-type]
