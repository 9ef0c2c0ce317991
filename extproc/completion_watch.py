"""Following the model's answer: its tool calls (for the record) and response policies.

A non-streamed answer is read whole (`read_completion`) and checked with
`ResponseCheck.run`. A streamed one goes
through `StreamWatch` chunk by chunk: text deltas pass at once; the events of a tool
call are held only until its arguments are complete (they parse as a JSON object, or a
later call, a `finish_reason` or the end says so), then the response policies run on
the calls so far and the held events go on, or the stream ends with an SSE `error`
event and the forbidden call never reaches the client. The final message is checked
when `[DONE]` (or the end of the stream) arrives, before `[DONE]` is passed on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from extproc.errors import GatewayError
from extproc.policies import Decision, PolicyGroup, evaluate
from extproc.policy_input import response_document
from extproc.sse import Event, SSEDecoder

MAX_RECORDED_ARGUMENT_CHARS: Final = 8192
MAX_RECORDED_CALLS: Final = 64
_DONE: Final = b"[DONE]"


@dataclass(slots=True)
class ToolCall:
    choice: int
    index: int
    id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)
    complete: bool = False
    checked: bool = False

    @property
    def arguments(self) -> str:
        return "".join(self.parts)

    def as_input(self) -> dict[str, Any]:
        text = self.arguments
        try:
            parsed: Any = orjson.loads(text) if text else {}
        except orjson.JSONDecodeError:
            parsed = None  # the model wrote arguments that are not JSON
        return {
            "id": self.id,
            "name": self.name,
            "arguments": parsed,
            "arguments_raw": text,
            "choice": self.choice,
            "index": self.index,
        }

    def as_message_part(self) -> dict[str, Any]:
        """The call in OpenAI's message shape."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }

    def as_record(self) -> dict[str, Any]:
        text = self.arguments
        if len(text) > MAX_RECORDED_ARGUMENT_CHARS:
            text = text[:MAX_RECORDED_ARGUMENT_CHARS] + "...(truncated)"
        return {"name": self.name, "arguments": text}


def _is_object(text: str) -> bool:
    try:
        return isinstance(orjson.loads(text), dict)
    except orjson.JSONDecodeError:
        return False


@dataclass(slots=True)
class ResponseCheck:
    """Runs an endpoint's response policies on an answer (whole or so far)."""

    policies: PolicyGroup
    request: dict[str, Any]  # the request stage's document, request as sent upstream
    backend: str
    model: str
    decisions: list[Decision]

    def run(
        self,
        choices: list[dict[str, Any]],
        calls: list[ToolCall],
        usage: Any,
        complete: bool,
    ) -> None:
        """Raises PolicyDenied or PolicyFailed."""
        document = response_document(
            self.request,
            backend=self.backend,
            model=self.model,
            choices=choices,
            tool_calls=[call.as_input() for call in calls],
            usage=usage,
            complete=complete,
        )
        evaluate(self.policies, document, self.decisions)


def _calls_of(message: Mapping[str, Any], choice: int) -> list[ToolCall]:
    calls = []
    raw_calls = message.get("tool_calls")
    for i, raw in enumerate(raw_calls if isinstance(raw_calls, list) else []):
        function = raw.get("function") if isinstance(raw, dict) else None
        if not isinstance(function, dict):
            continue
        arguments = function.get("arguments")
        calls.append(
            ToolCall(
                choice,
                i,
                str(raw.get("id") or ""),
                str(function.get("name") or ""),
                [arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()],
                complete=True,
            )
        )
    return calls


@dataclass(frozen=True, slots=True)
class Completion:
    """What response policies and the record need of a non-streamed chat completion."""

    choices: list[dict[str, Any]]
    calls: list[ToolCall]
    usage: Any


def read_completion(body: bytes) -> Completion | None:
    """A non-streamed chat completion's choices and tool calls; None if `body` is not
    one (it is then left alone)."""
    try:
        completion = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(completion, dict) or not isinstance(completion.get("choices"), list):
        return None
    choices = [c for c in completion["choices"] if isinstance(c, dict)]
    calls: list[ToolCall] = []
    for position, choice in enumerate(choices):
        message = choice.get("message")
        if isinstance(message, dict):
            index = choice.get("index")
            calls.extend(_calls_of(message, index if isinstance(index, int) else position))
    return Completion(choices, calls, completion.get("usage"))


def error_event(error: GatewayError) -> bytes:
    """An SSE `error` event carrying the OpenAI error envelope (the SDK raises APIError)."""
    return b"event: error\ndata: " + error.body() + b"\n\n"


class StreamWatch:
    """Follows one SSE answer. Without a check it only collects the tool calls and never
    changes the stream; with one it holds tool-call events until they are checked."""

    __slots__ = (
        "blocked",
        "calls",
        "check",
        "content",
        "decoder",
        "finals",
        "finished",
        "held",
        "refusal",
        "usage",
    )

    def __init__(self, check: ResponseCheck | None) -> None:
        self.check = check
        self.decoder = SSEDecoder()
        self.calls: dict[tuple[int, int], ToolCall] = {}
        self.content: dict[int, list[str]] = {}
        self.refusal: dict[int, list[str]] = {}
        self.finals: dict[int, str] = {}  # choice -> finish_reason
        self.usage: Any = None
        self.held: list[bytes] = []
        self.blocked = False
        self.finished = False  # the final message was checked

    @property
    def pending(self) -> bytes:
        return self.decoder.pending

    def tool_calls(self) -> list[ToolCall]:
        return sorted(self.calls.values(), key=lambda c: (c.choice, c.index))

    def feed(self, chunk: bytes, end_of_stream: bool = False) -> bytes | None:
        """The bytes to pass on in place of `chunk`; None to pass it unchanged."""
        if self.blocked:
            return b""
        events = self.decoder.feed_raw(chunk)
        if self.check is None:
            for _, event in events:
                if event is not None and b"tool_calls" in event.data:
                    self._follow(event)
            return None
        out: list[bytes] = []
        for raw, event in events:
            self._on_event(raw, event, out)
            if self.blocked:
                return b"".join(out)
        if end_of_stream:
            self._on_end(out)
        else:
            out_bytes = b"".join(out)
            return None if out_bytes == chunk else out_bytes
        return b"".join(out)

    # --- with a check -----------------------------------------------------------------

    def _on_event(self, raw: bytes, event: Event | None, out: list[bytes]) -> None:
        if event is not None and event.data == _DONE:
            self._finish(out)
            if not self.blocked:
                out.append(raw)
            return
        completed = self._follow(event) if event is not None else None
        if completed is None:  # not a chunk with a tool call
            if self.held:
                self.held.append(raw)
            else:
                out.append(raw)
            return
        self.held.append(raw)
        if completed:
            self._check_calls(out)
        if not self.blocked and all(call.checked for call in self.calls.values()):
            out.extend(self.held)
            self.held.clear()

    def _on_end(self, out: list[bytes]) -> None:
        """The upstream's body ended (normally after [DONE], already handled)."""
        tail = self.decoder.take_pending()
        if not self.finished:
            self._finish(out)
        if not self.blocked and tail:
            out.append(tail)

    def _finish(self, out: list[bytes]) -> None:
        """Close the calls still open, check them, then check the final message."""
        for call in self.calls.values():
            call.complete = True
        if any(not call.checked for call in self.calls.values()):
            self._check_calls(out)
            if self.blocked:
                return
        out.extend(self.held)
        self.held.clear()
        self.finished = True
        assert self.check is not None
        self._run(out, complete=True)

    def _check_calls(self, out: list[bytes]) -> None:
        self._run(out, complete=False)
        if not self.blocked:
            for call in self.calls.values():
                if call.complete:
                    call.checked = True

    def _run(self, out: list[bytes], complete: bool) -> None:
        assert self.check is not None
        calls = [call for call in self.tool_calls() if call.complete]
        try:
            self.check.run(self._choices(complete), calls, self.usage, complete)
        except GatewayError as error:
            self.blocked = True
            self.held.clear()
            out.append(error_event(error))

    def _choices(self, complete: bool) -> list[dict[str, Any]]:
        indexes = sorted({*self.content, *self.refusal, *self.finals, *(c for c, _ in self.calls)})
        choices = []
        for index in indexes or [0]:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": "".join(self.content[index]) if index in self.content else None,
            }
            if index in self.refusal:
                message["refusal"] = "".join(self.refusal[index])
            calls = [
                call.as_message_part()
                for call in self.tool_calls()
                if call.choice == index and call.complete
            ]
            if calls:
                message["tool_calls"] = calls
            choices.append(
                {"index": index, "message": message, "finish_reason": self.finals.get(index)}
            )
        return choices

    # --- following the chunks -----------------------------------------------------------

    def _follow(self, event: Event) -> list[ToolCall] | None:
        """Take in one chunk. Returns None if it carried no tool-call delta, else the
        calls whose arguments it completed (maybe none)."""
        try:
            chunk = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(chunk, dict):
            return None
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        choices = chunk.get("choices")
        completed: list[ToolCall] | None = None
        for position, choice in enumerate(choices if isinstance(choices, list) else ()):
            if not isinstance(choice, dict):
                continue
            index = choice.get("index")
            index = index if isinstance(index, int) else position
            delta = choice.get("delta")
            if isinstance(delta, dict):
                if isinstance(delta.get("content"), str):
                    self.content.setdefault(index, []).append(delta["content"])
                if isinstance(delta.get("refusal"), str):
                    self.refusal.setdefault(index, []).append(delta["refusal"])
                deltas = delta.get("tool_calls")
                if isinstance(deltas, list) and deltas:
                    completed = completed if completed is not None else []
                    for item in deltas:
                        if isinstance(item, dict):
                            self._tool_delta(index, item, completed)
            reason = choice.get("finish_reason")
            if isinstance(reason, str):
                self.finals[index] = reason
                done = self._close_choice(index)
                if done:
                    completed = (completed or []) + done
        return completed

    def _tool_delta(self, choice: int, item: Mapping[str, Any], completed: list[ToolCall]) -> None:
        index = item.get("index")
        index = index if isinstance(index, int) else 0
        call = self.calls.get((choice, index))
        if call is None:
            # A new call: the earlier ones of this choice are complete.
            completed.extend(self._close_choice(choice))
            if len(self.calls) >= MAX_RECORDED_CALLS and self.check is None:
                return
            call = self.calls[(choice, index)] = ToolCall(choice, index)
        if isinstance(item.get("id"), str):
            call.id = item["id"]
        function = item.get("function")
        if not isinstance(function, dict):
            return
        if isinstance(function.get("name"), str):
            call.name += function["name"]
        fragment = function.get("arguments")
        if isinstance(fragment, str) and fragment:
            call.parts.append(fragment)
            if not call.complete and fragment.rstrip().endswith("}") and _is_object(call.arguments):
                call.complete = True
                completed.append(call)

    def _close_choice(self, choice: int) -> list[ToolCall]:
        closed = []
        for call in self.calls.values():
            if call.choice == choice and not call.complete:
                call.complete = True
                closed.append(call)
        return closed
