"""Following the model's answer: its tool calls (for the record) and response policies.

A non-streamed answer is read whole (`parse_completion`, `completion_of`) and checked with
`ResponseCheck.run`. A streamed one goes
through `StreamWatch` chunk by chunk: text deltas pass at once; the events of a tool
call are held only until its arguments are complete (they parse as a JSON object, or a
later call, a `finish_reason` or the end says so), then the response policies run on
the calls so far and the held events go on, or the stream ends with an SSE `error`
event and the forbidden call never reaches the client. The final message is checked
when `[DONE]` (or the end of the stream) arrives, before `[DONE]` is passed on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson

from extproc.errors import GatewayError, UpstreamUnreadable
from extproc.policies import Decision, PolicyGroup, evaluate
from extproc.policy_input import response_document
from extproc.sse import Event, SSEDecoder, parse_event
from extproc.tool_calls import (
    LEGACY_INDEX,
    CallDelta,
    ToolCall,
    calls_in_message,
    deltas_of,
)
from extproc.usage import is_usage_chunk

MAX_RECORDED_CALLS: Final = 64
_DONE: Final = b"[DONE]"
_USAGE: Final = b'"usage":{'  # a chunk with usage (compact JSON, as providers send it)
_NO_USAGE: Final = b'"usage":null'  # every chunk before it, when usage was asked for


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


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
        """Raises PolicyDenied or PolicyFailed. The decisions of a check before the end
        are recorded only when they are not `allow` (a stream checks once per call)."""
        document = response_document(
            self.request,
            backend=self.backend,
            model=self.model,
            choices=choices,
            tool_calls=[call.as_input() for call in calls],
            usage=usage,
            complete=complete,
        )
        if complete:
            evaluate(self.policies, document, self.decisions)
            return
        decisions: list[Decision] = []
        try:
            evaluate(self.policies, document, decisions)
        finally:
            self.decisions.extend(d for d in decisions if d.result != "allow")


@dataclass(frozen=True, slots=True)
class Completion:
    """What response policies and the record need of a non-streamed chat completion."""

    choices: list[dict[str, Any]]
    calls: list[ToolCall]
    usage: Any


def parse_completion(body: bytes) -> dict[str, Any] | None:
    """A non-streamed chat completion as JSON; None if `body` is not one."""
    try:
        completion = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(completion, dict) or not isinstance(completion.get("choices"), list):
        return None
    return completion


def completion_of(completion: dict[str, Any]) -> Completion:
    """The choices, tool calls and usage of a parsed chat completion."""
    choices = [c for c in completion["choices"] if isinstance(c, dict)]
    calls: list[ToolCall] = []
    for position, choice in enumerate(choices):
        message = choice.get("message")
        if isinstance(message, dict):
            index = choice.get("index")
            calls.extend(calls_in_message(message, index if isinstance(index, int) else position))
    return Completion(choices, calls, completion.get("usage"))


def error_event(error: GatewayError) -> bytes:
    """An SSE `error` event carrying the OpenAI error envelope (the SDK raises APIError)."""
    return b"event: error\ndata: " + error.body() + b"\n\n"


class Rewriter(Protocol):
    """Changes events before they are followed and checked (PII restoration)."""

    def rewrite(self, raw: bytes, event: Event | None) -> Iterable[tuple[bytes, Event | None]]: ...


class StreamWatch:
    """Follows one SSE answer. Without a check it only collects the tool calls and never
    changes the stream; with one it holds tool-call events until they are checked."""

    __slots__ = (
        "blocked",
        "calls",
        "check",
        "chunks",
        "content",
        "decoder",
        "finals",
        "finished",
        "held",
        "refusal",
        "rewriter",
        "strip_usage",
        "usage",
    )

    def __init__(
        self,
        check: ResponseCheck | None,
        rewriter: Rewriter | None = None,
        strip_usage: bool = False,
    ) -> None:
        self.check = check
        self.rewriter = rewriter
        self.strip_usage = strip_usage  # Weir asked for the usage chunk: not the client's
        self.decoder = SSEDecoder()
        self.calls: dict[tuple[int, int], ToolCall] = {}
        self.content: dict[int, list[str]] = {}
        self.refusal: dict[int, list[str]] = {}
        self.finals: dict[int, str] = {}  # choice -> finish_reason
        self.usage: Any = None
        self.chunks = 0  # events received, [DONE] included: to estimate usage if need be
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
        self.chunks += len(events)
        if self.check is None and self.rewriter is None and not self.strip_usage:
            for _, event in events:
                # tool_calls, function_call; the usage (not the `"usage": null` of each chunk)
                if event is not None and (b"_call" in event.data or _USAGE in event.data):
                    self._follow(event)
            return None
        out: list[bytes] = []
        for raw, event in events:
            self._on_rewritten(raw, event, out)
            if self.blocked:
                return b"".join(out)
        if end_of_stream:
            self._on_end(out)
            return b"".join(out)
        out_bytes = b"".join(out)
        return None if out_bytes == chunk else out_bytes

    def abort(self, error: GatewayError) -> bytes:
        """End the stream here with `error`: what to send in place of the held bytes."""
        self.blocked = True
        self.held.clear()
        self.decoder.take_pending()
        return error_event(error)

    # --- with a check or a rewriter ----------------------------------------------------

    def _on_rewritten(self, raw: bytes, event: Event | None, out: list[bytes]) -> None:
        if self.rewriter is None:
            self._on_event(raw, event, out)
            return
        for new_raw, new_event in self.rewriter.rewrite(raw, event):
            self._on_event(new_raw, new_event, out)
            if self.blocked:
                return

    def _on_event(self, raw: bytes, event: Event | None, out: list[bytes]) -> None:
        if (
            self.strip_usage
            and event is not None
            and b'"usage"' in event.data
            and _NO_USAGE not in event.data
        ):
            chunk = event.parsed if event.parsed is not None else _loads(event.data)
            if is_usage_chunk(chunk):
                self.usage = chunk["usage"]
                return  # Weir's, not the client's
        if self.check is None:  # only rewritten: follow the calls, hold nothing
            if event is not None and event.data != _DONE and b"_call" in event.data:
                self._follow(event)
            out.append(raw)
            return
        if event is not None and event.data == _DONE:
            self._finish(out)
            if not self.blocked:
                out.append(raw)
            return
        try:
            completed = self._follow(event) if event is not None else None
        except GatewayError as error:
            out.append(self.abort(error))
            return
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
        """The upstream's body ended. An event it left unterminated is still an event:
        it is checked like the others, never passed on unseen."""
        tail = self.decoder.take_pending()
        if tail:
            self._on_rewritten(tail, parse_event(tail), out)
        if not self.finished and not self.blocked and self.check is not None:
            self._finish(out)

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
            self.check.run(self._choices(), calls, self.usage, complete)
        except GatewayError as error:
            out.append(self.abort(error))

    def _choices(self) -> list[dict[str, Any]]:
        indexes = sorted({*self.content, *self.refusal, *self.finals, *(c for c, _ in self.calls)})
        choices = []
        for index in indexes or [0]:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": "".join(self.content[index]) if index in self.content else None,
            }
            if index in self.refusal:
                message["refusal"] = "".join(self.refusal[index])
            calls = [c for c in self.tool_calls() if c.choice == index and c.complete]
            parts = [c.as_message_part() for c in calls if c.index != LEGACY_INDEX]
            if parts:
                message["tool_calls"] = parts
            for call in calls:
                if call.index == LEGACY_INDEX:
                    message["function_call"] = {"name": call.name, "arguments": call.arguments}
            choices.append(
                {"index": index, "message": message, "finish_reason": self.finals.get(index)}
            )
        return choices

    # --- following the chunks -----------------------------------------------------------

    def _follow(self, event: Event) -> list[ToolCall] | None:
        """Take in one chunk. Returns None if it carried no tool-call delta, else the
        calls whose arguments it completed (maybe none). Raises UpstreamUnreadable for a
        call too large to check."""
        chunk = event.parsed if event.parsed is not None else _loads(event.data)
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
                deltas = deltas_of(delta)
                if deltas:
                    completed = completed if completed is not None else []
                    for item in deltas:
                        self._tool_delta(index, item, completed)
            reason = choice.get("finish_reason")
            if isinstance(reason, str):
                self.finals[index] = reason
                done = self._close_choice(index)
                if done:
                    completed = (completed or []) + done
        return completed

    def _tool_delta(self, choice: int, item: CallDelta, completed: list[ToolCall]) -> None:
        call = self.calls.get((choice, item.index))
        if call is None:
            # A new call: the earlier ones of this choice are complete.
            completed.extend(self._close_choice(choice))
            if len(self.calls) >= MAX_RECORDED_CALLS and self.check is None:
                return
            call = self.calls[(choice, item.index)] = ToolCall(choice, item.index, item.kind)
        elif call.complete and (item.name or item.arguments.strip()):
            # More of a call already complete (and maybe allowed): check it again.
            call.reopen()
        if item.id is not None:
            call.id = item.id
        call.name += item.name
        if item.arguments and call.add_arguments(item.arguments) and not call.complete:
            call.complete = True
            completed.append(call)
        if call.overflow and self.check is not None:
            raise UpstreamUnreadable(
                f"The model's call of {call.name!r} has more arguments than Weir can check "
                f"({call.size} characters so far); the stream was stopped."
            )

    def _close_choice(self, choice: int) -> list[ToolCall]:
        closed = []
        for call in self.calls.values():
            if call.choice == choice and not call.complete:
                call.complete = True
                closed.append(call)
        return closed
