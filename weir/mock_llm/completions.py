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


@dataclass(slots=True)
class ChoicePlan:
    """What one choice says: content tokens, or a tool call."""

    tokens: Sequence[str] = ()
    tool_call: ToolCallPlan | None = None
    finish_reason: str = "stop"
    _fragments: list[str] | None = field(default=None, repr=False)

    @property
    def fragments(self) -> list[str]:
        """The tool-call arguments fragments (one per streamed chunk)."""
        if self._fragments is None:
            self._fragments = split_arguments(self.tool_call.arguments) if self.tool_call else []
        return self._fragments

    @property
    def n_events(self) -> int:
        """How many chunks this choice is streamed in."""
        if self.tool_call is not None:
            return 1 + len(self.fragments)
        return max(1, len(self.tokens))

    @property
    def completion_tokens(self) -> int:
        if self.tool_call is not None:
            return self.n_events
        return len(self.tokens)

    def message(self) -> dict[str, Any]:
        """The non-streamed ``message`` of this choice."""
        if self.tool_call is not None:
            call = self.tool_call
            return {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }
                ],
                "annotations": [],
            }
        return {
            "role": "assistant",
            "content": "".join(self.tokens),
            "refusal": None,
            "annotations": [],
        }

    def delta(self, step: int) -> dict[str, Any]:
        """The ``delta`` of streamed chunk number ``step`` (``0 <= step < n_events``)."""
        if self.tool_call is not None:
            call = self.tool_call
            if step == 0:
                return {
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": ""},
                        }
                    ],
                }
            return {
                "tool_calls": [{"index": 0, "function": {"arguments": self.fragments[step - 1]}}]
            }
        text = self.tokens[step] if self.tokens else ""
        if step == 0:
            return {"role": "assistant", "content": text, "refusal": None}
        return {"content": text}


@dataclass(slots=True)
class Completion:
    """A planned answer to one chat request; renders it whole or as a stream."""

    model: str
    choices: list[ChoicePlan]
    prompt_tokens: int
    ttft_s: float = 0.0
    tpot_s: float = 0.0
    include_usage: bool = False
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
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
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
        return orjson.dumps(
            {
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
                "usage": self.usage(),
                "service_tier": "default",
            }
        )

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
        if not self.include_usage:
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
