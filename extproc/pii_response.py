"""Putting the originals back into answers: whole ones, and streams event by event.

Tags are restored in the assistant's content, its refusal and its tool-call arguments
(where the original is escaped as JSON string content). In a stream each text field
of each choice has its own `StreamRestorer`, so a tag split across events (or network
chunks) is restored whole while only the shortest possible tag start is held back; it
goes out with the choice's next piece, or with its finish chunk.

With `X-Show-Raw-Prompt: true` the answer also carries an `anonymization` object: a
top-level field of a whole answer, or a last chunk before `[DONE]` on a stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import orjson

from extproc.pii_request import PiiScan, text_slots
from extproc.pii_tags import StreamRestorer, TagBook
from extproc.sse import Event

_DONE: Final = b"[DONE]"
SHOW_RAW_HEADER: Final = "x-show-raw-prompt"


def transparency(scan: PiiScan, raw_response: str | None) -> dict[str, Any]:
    """The `anonymization` object."""
    counts = scan.counts()
    return {
        "entities_found": sum(counts.values()),
        "entity_types": sorted(counts),
        "anonymized_prompt": scan.anonymized_prompt,
        "raw_llm_response": raw_response,
    }


def _restore_message(message: dict[str, Any], book: TagBook) -> None:
    for slot in text_slots(message):
        text = slot.read()
        slot.write(book.restore_in_json_string(text) if slot.json else book.restore(text))


def restore_completion(
    completion: dict[str, Any], scan: PiiScan, restore: bool, show_raw: bool
) -> None:
    """Restore the tags of a parsed chat completion in place (and add the
    `anonymization` object if asked for)."""
    raw_response: str | None = None
    for choice in completion["choices"]:
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        if raw_response is None and isinstance(message.get("content"), str):
            raw_response = message["content"]
        if restore:
            _restore_message(message, scan.book)
    if show_raw:
        completion["anonymization"] = transparency(scan, raw_response)


class StreamRewriter:
    """Restores the tags of an SSE answer, event by event."""

    __slots__ = ("_chunk_base", "_raw", "_restorers", "book", "restore", "scan", "show_raw")

    def __init__(self, scan: PiiScan, restore: bool, show_raw: bool) -> None:
        self.scan = scan
        self.book = scan.book
        self.restore = restore
        self.show_raw = show_raw
        # (choice, field) -> restorer; field is "content", "refusal" or a tool index.
        self._restorers: dict[tuple[int, str | int], StreamRestorer] = {}
        self._raw: list[str] = []  # choice 0's content as the model wrote it
        self._chunk_base: dict[str, Any] = {}  # id, created, model of the chunks

    def rewrite(self, raw: bytes, event: Event | None) -> Iterator[tuple[bytes, Event | None]]:
        if event is None:
            yield raw, event
            return
        if event.data == _DONE:
            yield from self._closing_chunks()
            yield raw, event
            return
        if not self.restore and not self.show_raw:
            yield raw, event
            return
        try:
            chunk = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            yield raw, event
            return
        if not isinstance(chunk, dict) or not isinstance(chunk.get("choices"), list):
            yield raw, event
            return
        for key in ("id", "object", "created", "model"):
            if key in chunk:
                self._chunk_base.setdefault(key, chunk[key])
        if self._rewrite_chunk(chunk):
            data = orjson.dumps(chunk)
            yield b"data: " + data + b"\n\n", Event(data, event.event, chunk)
        else:
            yield raw, Event(event.data, event.event, chunk)

    def _restorer(self, choice: int, field: str | int, json_string: bool) -> StreamRestorer:
        key = (choice, field)
        restorer = self._restorers.get(key)
        if restorer is None:
            restorer = self._restorers[key] = StreamRestorer(self.book, json_string)
        return restorer

    def _rewrite_chunk(self, chunk: dict[str, Any]) -> bool:
        """Restore in place; True when the chunk changed."""
        changed = False
        for position, choice in enumerate(chunk["choices"]):
            if not isinstance(choice, dict):
                continue
            index = choice.get("index")
            index = index if isinstance(index, int) else position
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            if index == 0 and isinstance(delta.get("content"), str):
                self._raw.append(delta["content"])
            if self.restore:
                changed |= self._restore_delta(index, delta)
                if choice.get("finish_reason") is not None:
                    changed |= self._flush_choice(index, delta)
        return changed

    def _restore_delta(self, index: int, delta: dict[str, Any]) -> bool:
        changed = False
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                new = self._restorer(index, key, False).feed(text)
                changed |= new != text
                delta[key] = new
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            if not isinstance(call, dict):
                continue
            tool_index = call.get("index")
            tool: int = tool_index if isinstance(tool_index, int) else 0
            function, custom = call.get("function"), call.get("custom")
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                text = function["arguments"]
                new = self._restorer(index, tool, True).feed(text)
                changed |= new != text
                function["arguments"] = new
            if isinstance(custom, dict) and isinstance(custom.get("input"), str):
                text = custom["input"]
                new = self._restorer(index, tool, False).feed(text)
                changed |= new != text
                custom["input"] = new
        legacy = delta.get("function_call")
        if isinstance(legacy, dict) and isinstance(legacy.get("arguments"), str):
            text = legacy["arguments"]
            new = self._restorer(index, "function_call", True).feed(text)
            changed |= new != text
            legacy["arguments"] = new
        return changed

    def _flush_choice(self, index: int, delta: dict[str, Any]) -> bool:
        """The choice finished: what its restorers held was no tag; it goes out now."""
        changed = False
        for (choice, field), restorer in self._restorers.items():
            held = restorer.flush() if choice == index else ""
            if not held:
                continue
            changed = True
            if field in ("content", "refusal"):
                delta[str(field)] = (delta.get(str(field)) or "") + held
            elif field == "function_call":
                legacy = delta.setdefault("function_call", {})
                legacy["arguments"] = (legacy.get("arguments") or "") + held
            else:
                calls = delta.setdefault("tool_calls", [])
                calls.append({"index": field, "function": {"arguments": held}})
        return changed

    def _closing_chunks(self) -> Iterator[tuple[bytes, Event | None]]:
        """Before [DONE]: what is still held back (a stream without finish chunks), and
        the `anonymization` object when asked for."""
        leftovers: dict[int, dict[str, Any]] = {}
        for (choice, _field), restorer in self._restorers.items():
            if restorer.held:
                self._flush_choice(choice, leftovers.setdefault(choice, {}))
        for choice, delta in sorted(leftovers.items()):
            yield self._chunk(
                {"choices": [{"index": choice, "delta": delta, "finish_reason": None}]}
            )
        if self.show_raw:
            raw = "".join(self._raw) if self._raw else None
            yield self._chunk({"choices": [], "anonymization": transparency(self.scan, raw)})

    def _chunk(self, fields: dict[str, Any]) -> tuple[bytes, Event]:
        data = orjson.dumps({**self._chunk_base, "object": "chat.completion.chunk", **fields})
        return b"data: " + data + b"\n\n", Event(data)
