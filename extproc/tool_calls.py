"""Tool calls as a model makes them: whole in a message, or fragment by fragment in a stream.

Three shapes reach Weir: function calls (`tool_calls[].function`, JSON arguments), custom
tool calls (`tool_calls[].custom`, free-text input) and the deprecated `function_call`.
Each is one `ToolCall` here, so that policies and records see every call, whatever its
shape. In a stream, a function call's arguments are known to be complete the moment
they form one JSON object: a small scanner follows the JSON structure fragment by
fragment (linear in the arguments), and they are parsed once, when it closes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

FUNCTION: Final = "function"
CUSTOM: Final = "custom"
LEGACY_INDEX: Final = -1  # the deprecated `function_call` of a choice
MAX_ARGUMENT_CHARS: Final = 1 << 20  # beyond this a call is not followed (and not allowed)
MAX_RECORDED_ARGUMENT_CHARS: Final = 8192
_STRUCTURE: Final = re.compile(r'[{}\[\]"\\]')


@dataclass(slots=True)
class ToolCall:
    choice: int
    index: int  # LEGACY_INDEX for a `function_call`
    kind: str = FUNCTION  # FUNCTION or CUSTOM
    id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)
    size: int = 0
    overflow: bool = False  # arguments beyond MAX_ARGUMENT_CHARS were dropped
    complete: bool = False
    checked: bool = False  # response policies allowed it as it is
    # The JSON scanner: nesting depth, inside a string, an escape pending across
    # fragments, and whether an object or array was opened at all.
    depth: int = 0
    in_string: bool = False
    escaped: bool = False
    opened: bool = False

    @property
    def arguments(self) -> str:
        return "".join(self.parts)

    def add_arguments(self, fragment: str) -> bool:
        """Append a fragment; True when the arguments now form one whole JSON object."""
        if self.size + len(fragment) > MAX_ARGUMENT_CHARS:
            self.overflow = True
            return False
        self.parts.append(fragment)
        self.size += len(fragment)
        return self.kind == FUNCTION and self._scan(fragment) and self._is_object()

    def _scan(self, fragment: str) -> bool:
        """Follow the JSON structure through `fragment`; True if the top level closed."""
        closed = False
        skip = 0 if self.escaped else -1  # the character after a backslash
        self.escaped = False
        for match in _STRUCTURE.finditer(fragment):
            at, char = match.start(), match.group()
            if at == skip:
                continue
            if self.in_string:
                if char == "\\":
                    if match.end() == len(fragment):
                        self.escaped = True
                    else:
                        skip = match.end()
                elif char == '"':
                    self.in_string = False
            elif char == '"':
                self.in_string = True
            elif char in "{[":
                self.depth += 1
                self.opened = True
            elif char in "}]":
                self.depth -= 1
                closed = closed or (self.depth == 0 and self.opened)
        return closed

    def _is_object(self) -> bool:
        try:
            return isinstance(orjson.loads(self.arguments), dict)
        except orjson.JSONDecodeError:
            return False

    def reopen(self) -> None:
        """The call changed after it was checked: it must be complete and checked again."""
        self.complete = False
        self.checked = False

    def as_input(self) -> dict[str, Any]:
        """The call as response policies see it: function arguments parsed (null when
        the model wrote invalid JSON), the raw text always."""
        text = self.arguments
        parsed: Any = None
        if self.kind == FUNCTION:
            try:
                parsed = orjson.loads(text) if text else {}
            except orjson.JSONDecodeError:
                parsed = None
        return {
            "id": self.id,
            "type": self.kind,
            "name": self.name,
            "arguments": parsed,
            "arguments_raw": text,
            "choice": self.choice,
            "index": self.index,
        }

    def as_message_part(self) -> dict[str, Any]:
        """The call in OpenAI's message shape (for `tool_calls`)."""
        if self.kind == CUSTOM:
            return {
                "id": self.id,
                "type": CUSTOM,
                "custom": {"name": self.name, "input": self.arguments},
            }
        return {
            "id": self.id,
            "type": FUNCTION,
            "function": {"name": self.name, "arguments": self.arguments},
        }

    def as_record(self) -> dict[str, Any]:
        text = self.arguments
        if len(text) > MAX_RECORDED_ARGUMENT_CHARS or self.overflow:
            text = text[:MAX_RECORDED_ARGUMENT_CHARS] + "...(truncated)"
        record = {"name": self.name, "arguments": text}
        if self.kind != FUNCTION:
            record["type"] = self.kind
        if self.index == LEGACY_INDEX:
            record["type"] = "function_call"
        return record


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def calls_in_message(message: Mapping[str, Any], choice: int) -> list[ToolCall]:
    """Every call of a whole assistant message, complete."""
    calls = []
    raw_calls = message.get("tool_calls")
    for i, raw in enumerate(raw_calls if isinstance(raw_calls, list) else []):
        if not isinstance(raw, dict):
            continue
        kind = CUSTOM if isinstance(raw.get("custom"), dict) else FUNCTION
        body = raw.get(kind)
        if not isinstance(body, dict):
            continue
        arguments = _text(body.get("input" if kind == CUSTOM else "arguments"))
        call = ToolCall(choice, i, kind, _text(raw.get("id")), _text(body.get("name")))
        call.add_arguments(arguments)
        call.complete = True
        calls.append(call)
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        call = ToolCall(choice, LEGACY_INDEX, FUNCTION, "", _text(legacy.get("name")))
        call.add_arguments(_text(legacy.get("arguments")))
        call.complete = True
        calls.append(call)
    return calls


@dataclass(frozen=True, slots=True)
class CallDelta:
    """One streamed fragment of a call."""

    index: int
    kind: str
    id: str | None
    name: str
    arguments: str


def deltas_of(delta: Mapping[str, Any]) -> list[CallDelta]:
    """The call fragments in one streamed `delta` (tool_calls and function_call)."""
    found = []
    items = delta.get("tool_calls")
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict):
            continue
        kind = CUSTOM if isinstance(item.get("custom"), dict) else FUNCTION
        body = item.get(kind)
        body = body if isinstance(body, dict) else {}
        index = item.get("index")
        found.append(
            CallDelta(
                index if isinstance(index, int) and index >= 0 else 0,
                kind,
                item["id"] if isinstance(item.get("id"), str) else None,
                _text(body.get("name")),
                _text(body.get("input" if kind == CUSTOM else "arguments")),
            )
        )
    legacy = delta.get("function_call")
    if isinstance(legacy, dict):
        found.append(
            CallDelta(
                LEGACY_INDEX,
                FUNCTION,
                None,
                _text(legacy.get("name")),
                _text(legacy.get("arguments")),
            )
        )
    return found


def offered_tool_names(request: Mapping[str, Any]) -> list[str]:
    """The names of every tool a request offers: function and custom tools, and the
    deprecated `functions`."""
    names = []
    tools = request.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        if isinstance(tool, dict):
            body = tool.get(tool.get("type") or FUNCTION)
            if isinstance(body, dict) and isinstance(body.get("name"), str):
                names.append(body["name"])
    functions = request.get("functions")
    for function in functions if isinstance(functions, list) else ():
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.append(function["name"])
    return names
