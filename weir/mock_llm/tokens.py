"""Cheap tokenisation: a token is a word plus the whitespace that follows it.

Concatenating the tokens of a text gives back the text exactly, so streamed deltas add up
to the non-streamed content. Counting is an approximation, good enough for usage figures.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import orjson

__all__ = [
    "DEFAULT_ANSWER",
    "DEFAULT_ANSWER_TOKENS",
    "TOOL_PREAMBLE",
    "TOOL_PREAMBLE_TOKENS",
    "count_prompt_tokens",
    "count_tokens",
    "message_text",
    "split_tokens",
]

_TOKEN_RE = re.compile(r"\s*\S+\s*|\s+")

DEFAULT_ANSWER = (
    "This is a mock response from the Weir mock LLM, "
    "sent one word at a time for testing the gateway."
)
# What the ``text_then_tool_call`` behaviour says before its tool call.
TOOL_PREAMBLE = "Let me check that for you."

# Tokens added per message and per request, in the spirit of OpenAI's chat format.
_PER_MESSAGE = 3
_PER_REQUEST = 3


def split_tokens(text: str) -> list[str]:
    """Split ``text`` into tokens whose concatenation is exactly ``text``."""
    return _TOKEN_RE.findall(text)


DEFAULT_ANSWER_TOKENS: tuple[str, ...] = tuple(split_tokens(DEFAULT_ANSWER))
TOOL_PREAMBLE_TOKENS: tuple[str, ...] = tuple(split_tokens(TOOL_PREAMBLE))


def count_tokens(text: str) -> int:
    """Number of tokens :func:`split_tokens` would return (without building them)."""
    n = len(text.split())
    if n == 0 and text:
        return 1
    return n


def message_text(content: Any) -> str:
    """The text of a message ``content``: the string itself, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
        return "".join(parts)
    return ""


def count_prompt_tokens(messages: Sequence[Any], tools: Any = None) -> int:
    """Approximate prompt size of a chat request."""
    total = _PER_REQUEST
    for message in messages:
        total += _PER_MESSAGE
        if not isinstance(message, dict):
            continue
        total += count_tokens(message_text(message.get("content")))
        tool_calls = message.get("tool_calls")
        if isinstance(tool_calls, list):
            # Roughly 4 bytes a token for the JSON of the calls.
            total += len(orjson.dumps(tool_calls)) // 4
    if tools:
        total += len(orjson.dumps(tools)) // 4
    return total
