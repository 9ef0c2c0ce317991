"""Building ``chat.completion`` objects and ``chat.completion.chunk`` SSE events."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from weir.mock_llm.tools import split_arguments

__all__ = [
    "DONE_EVENT",
    "ChoicePlan",
    "Completion",
    "ToolCallPlan",
    "new_call_id",
    "new_completion_id",
    "sse_event",
]

DONE_EVENT = b"data: [DONE]\n\n"


def new_completion_id() -> str:
    return "chatcmpl-" + os.urandom(12).hex()


def new_call_id() -> str:
    return "call_" + os.urandom(12).hex()


def sse_event(obj: Any) -> bytes:
    """One server-sent event carrying ``obj`` as JSON."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"


@dataclass(slots=True)
class ToolCallPlan:
    """A function call the mock will answer with."""

    id: str
    name: str
    arguments: str
    fragments: list[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.fragments = split_arguments(self.arguments)  # one per streamed chunk

    @property
    def n_events(self) -> int:
        """How many chunks this call is streamed in: its head, then its arguments."""
        return 1 + len(self.fragments)

    def message(self) -> dict[str, Any]:
        """This call in a non-streamed ``message.tool_calls``."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }

    def delta(self, index: int, step: int) -> dict[str, Any]:
        """This call's part of streamed chunk ``step`` (``0 <= step < n_events``).

        The first chunk names the call (id, type, name, empty arguments); the others carry
        the arguments, a fragment each. ``index`` is the call's place in the message.
        """
        if step == 0:
            return {
                "index": index,
                "id": self.id,
                "type": "function",
                "function": {"name": self.name, "arguments": ""},
            }
        return {"index": index, "function": {"arguments": self.fragments[step - 1]}}


@dataclass(slots=True)
class ChoicePlan:
    """What one choice says: content tokens, then tool calls (either may be empty)."""

    tokens: Sequence[str] = ()
    tool_calls: Sequence[ToolCallPlan] = ()
    finish_reason: str = "stop"

    @property
    def n_events(self) -> int:
        """How many chunks this choice is streamed in: its tokens, then its calls."""
        return max(1, self.completion_tokens)

    @property
    def completion_tokens(self) -> int:
        """A token per content token, and per chunk of each tool call."""
        return len(self.tokens) + sum(call.n_events for call in self.tool_calls)

    def message(self) -> dict[str, Any]:
        """The non-streamed ``message`` of this choice."""
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(self.tokens) if self.tokens or not self.tool_calls else None,
            "refusal": None,
        }
        if self.tool_calls:
            message["tool_calls"] = [call.message() for call in self.tool_calls]
        message["annotations"] = []
        return message

    def delta(self, step: int) -> dict[str, Any]:
        """The ``delta`` of streamed chunk number ``step`` (``0 <= step < n_events``).

        The first chunk also says the role; content comes before any tool call.
        """
        if step < len(self.tokens) or not self.tool_calls:
            text = self.tokens[step] if self.tokens else ""
            if step == 0:
                return {"role": "assistant", "content": text, "refusal": None}
            return {"content": text}
        delta: dict[str, Any] = {"tool_calls": [self._tool_call_delta(step - len(self.tokens))]}
        if step == 0:
            return {"role": "assistant", "content": None, "refusal": None, **delta}
        return delta

    def _tool_call_delta(self, step: int) -> dict[str, Any]:
        """The tool-call delta of chunk ``step`` counted from the first call's head."""
        for index, call in enumerate(self.tool_calls):
            if step < call.n_events:
                return call.delta(index, step)
            step -= call.n_events
        raise IndexError("step past the last tool call")


@dataclass(slots=True)
class Completion:
    """A planned answer to one chat request; renders it whole or as a stream."""

    model: str
    choices: list[ChoicePlan]
    prompt_tokens: int
    ttft_s: float = 0.0
    tpot_s: float = 0.0
    include_usage: bool = False
    report_usage: bool = True  # False: no usage at all, even when asked for
    cached_tokens: int = 0  # of the prompt tokens, reported as served from a cache
    id: str = field(default_factory=new_completion_id)
    created: int = field(default_factory=lambda: int(time.time()))
    _chunk_frame: tuple[bytes, bytes] | None = field(default=None, repr=False)

    @property
    def n_steps(self) -> int:
        return max(c.n_events for c in self.choices)

    def usage(self) -> dict[str, Any]:
        completion = sum(c.completion_tokens for c in self.choices)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
            "prompt_tokens_details": {
                "cached_tokens": min(self.cached_tokens, self.prompt_tokens),
                "audio_tokens": 0,
            },
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def full_delay_s(self) -> float:
        """How long a non-streamed answer takes: ttft + n_tokens * tpot."""
        return self.ttft_s + self.n_steps * self.tpot_s

    def body(self) -> bytes:
        """The JSON of the non-streamed ``chat.completion``."""
        completion: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": i,
                    "message": choice.message(),
                    "logprobs": None,
                    "finish_reason": choice.finish_reason,
                }
                for i, choice in enumerate(self.choices)
            ],
        }
        if self.report_usage:
            completion["usage"] = self.usage()
        completion["service_tier"] = "default"
        return orjson.dumps(completion)

    def _frame(self) -> tuple[bytes, bytes]:
        """The bytes around the ``choices`` list of every chunk (built once per stream)."""
        if self._chunk_frame is None:
            head = orjson.dumps(
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "service_tier": "default",
                }
            )
            prefix = b"data: " + head[:-1] + b',"choices":['
            suffix = b'],"usage":null}\n\n' if self.include_usage else b"]}\n\n"
            self._chunk_frame = (prefix, suffix)
        return self._chunk_frame

    def step_events(self, step: int) -> bytes:
        """The SSE events of one step: one chunk per choice that still has a token.

        Each is a ``chat.completion.chunk`` with one choice; the last chunk of a choice
        carries its ``finish_reason``.
        """
        prefix, suffix = self._frame()
        events = []
        for index, choice in enumerate(self.choices):
            n_events = choice.n_events
            if step < n_events:
                choice_chunk = {
                    "index": index,
                    "delta": choice.delta(step),
                    "logprobs": None,
                    "finish_reason": choice.finish_reason if step == n_events - 1 else None,
                }
                events.append(prefix + orjson.dumps(choice_chunk) + suffix)
        return b"".join(events)

    def tail_events(self) -> bytes:
        """The usage chunk (if asked for) and ``[DONE]``."""
        if not (self.include_usage and self.report_usage):
            return DONE_EVENT
        usage_chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "service_tier": "default",
            "choices": [],
            "usage": self.usage(),
        }
        return sse_event(usage_chunk) + DONE_EVENT

    def whole_stream(self) -> bytes:
        """All the SSE events of the stream, ``[DONE]`` included."""
        return b"".join(self.step_events(s) for s in range(self.n_steps)) + self.tail_events()

    async def stream(self) -> AsyncIterator[bytes]:
        """The SSE body, one step at a time with the configured delays.

        Step ``k`` is sent at ``ttft + k * tpot`` after the start (deadlines, so sleeps do
        not drift). With no delay between tokens everything after the first delay is sent
        in one write: there is nothing to observe between tokens and it is much cheaper.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        if self.ttft_s > 0:
            await asyncio.sleep(self.ttft_s)
        n_steps = self.n_steps
        if self.tpot_s <= 0:
            yield self.whole_stream()
            return
        for step in range(n_steps):
            if step:
                delay = start + self.ttft_s + step * self.tpot_s - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            events = self.step_events(step)
            if step == n_steps - 1:
                events += self.tail_events()
            yield events
