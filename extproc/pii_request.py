"""Personal data in a chat request: found, then tagged (or blocked, or flagged).

Every place a request carries text is scanned: each message's content (a string, or
the text parts of an array), the arguments of the tool calls an assistant made
(`tool_calls[].function.arguments`, `function_call.arguments`) and a custom tool call's
input. One `TagBook` covers the whole request, so a value has one tag everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from extproc.errors import PayloadTooLarge, PermissionDenied
from extproc.pii_detect import Finding, detect, detect_art9
from extproc.pii_tags import TagBook, counts_of
from weir.config.v1 import runtime_pb2
from weir.pii_types import DEFAULT_MAX_SCAN_BYTES

ANONYMIZE: Final = "anonymize"
BLOCK: Final = "block"
FLAG: Final = "flag"
_ACTIONS: Final = {
    runtime_pb2.PiiPolicy.ACTION_ANONYMIZE: ANONYMIZE,
    runtime_pb2.PiiPolicy.ACTION_BLOCK: BLOCK,
    runtime_pb2.PiiPolicy.ACTION_FLAG: FLAG,
}
_ART9_ACTIONS: Final = {
    runtime_pb2.PiiPolicy.ART9_ACTION_FLAG: FLAG,
    runtime_pb2.PiiPolicy.ART9_ACTION_BLOCK: BLOCK,
    runtime_pb2.PiiPolicy.ART9_ACTION_IGNORE: "ignore",
}


class PiiBlocked(PermissionDenied):
    """403: personal data (or a special category) the endpoint does not let through."""

    code = "pii_blocked"


class PiiScanTooLarge(PayloadTooLarge):
    """413: more text than the endpoint's PII policy scans; refused, never forwarded
    unscanned."""

    code = "pii_scan_too_large"


class PiiPolicyInvalid(Exception):
    """A PiiPolicy of the runtime config is not usable (the config is NACKed)."""


@dataclass(frozen=True, slots=True)
class PiiSettings:
    """A PiiPolicy compiled for the hot path."""

    name: str
    action: str  # ANONYMIZE, BLOCK or FLAG
    types: frozenset[str] | None  # None: every type
    art9_detect: bool
    art9_action: str  # FLAG, BLOCK or "ignore"
    restore: bool
    max_scan_bytes: int = DEFAULT_MAX_SCAN_BYTES

    @classmethod
    def compile(cls, policy: runtime_pb2.PiiPolicy, known_types: Collection[str]) -> PiiSettings:
        action = _ACTIONS.get(policy.action)
        art9_action = _ART9_ACTIONS.get(policy.art9_action)
        if not policy.name or action is None or art9_action is None:
            raise PiiPolicyInvalid(f"PII policy {policy.name!r} has no name or a bad action")
        unknown = set(policy.entity_types) - set(known_types)
        if unknown:
            raise PiiPolicyInvalid(
                f"PII policy {policy.name!r} names unknown types: {', '.join(sorted(unknown))}"
            )
        types = frozenset(policy.entity_types) or None
        return cls(
            policy.name,
            action,
            types,
            policy.art9_detect,
            art9_action,
            policy.restore_responses,
            policy.max_scan_bytes or DEFAULT_MAX_SCAN_BYTES,
        )


@dataclass(slots=True)
class PiiScan:
    """What was found in one request, and its tags."""

    book: TagBook = field(default_factory=TagBook)
    found: list[str] = field(default_factory=list)  # entity type per finding
    art9: list[str] = field(default_factory=list)  # category per mention
    anonymized_prompt: str | None = None  # the last user message as sent upstream

    def counts(self) -> dict[str, int]:
        return counts_of(self.found)

    def art9_counts(self) -> dict[str, int]:
        return counts_of(self.art9)


@dataclass(frozen=True, slots=True)
class Slot:
    """A place in a message that holds text: read it, write a new one. `json` says the
    text is JSON (tool-call arguments), so a value put into it must be JSON-escaped."""

    container: MutableMapping[str, Any]
    key: str
    json: bool = False

    def read(self) -> str:
        value = self.container.get(self.key)
        return value if isinstance(value, str) else ""

    def write(self, text: str) -> None:
        self.container[self.key] = text


def text_slots(message: MutableMapping[str, Any]) -> Iterator[Slot]:
    """Every text of a message: content (or its text parts), refusal, tool-call
    arguments, custom tool input, the deprecated function_call's arguments."""
    content = message.get("content")
    if isinstance(content, str):
        yield Slot(message, "content")
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                yield Slot(part, "text")
    if isinstance(message.get("refusal"), str):
        yield Slot(message, "refusal")
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        if not isinstance(call, dict):
            continue
        function, custom = call.get("function"), call.get("custom")
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            yield Slot(function, "arguments", json=True)
        if isinstance(custom, dict) and isinstance(custom.get("input"), str):
            yield Slot(custom, "input")
    legacy = message.get("function_call")
    if isinstance(legacy, dict) and isinstance(legacy.get("arguments"), str):
        yield Slot(legacy, "arguments", json=True)


def scan(
    messages: Sequence[Any],
    settings: PiiSettings,
    detector: Callable[[str, Collection[str] | None], list[Finding]] = detect,
) -> PiiScan:
    """Find personal data (and Art. 9 mentions) in `messages`; with the anonymize
    action, replace it by tags in place (the caller passes a copy to keep).

    Raises PiiScanTooLarge, before scanning anything, when the messages hold more text
    than the settings' `max_scan_bytes`."""
    _check_size(messages, settings)
    result = PiiScan()
    last_user: str | None = None
    for message in messages:
        if not isinstance(message, dict):
            continue
        for slot in text_slots(message):
            text = slot.read()
            if not text:
                continue
            findings = detector(text, settings.types)
            result.found.extend(f.type for f in findings)
            if settings.art9_detect and settings.art9_action != "ignore":
                result.art9.extend(f.type for f in detect_art9(text))
            if findings and settings.action == ANONYMIZE:
                slot.write(result.book.anonymize(text, findings))
        if message.get("role") == "user":
            last_user = _plain_text(message)
    result.anonymized_prompt = last_user
    return result


def text_bytes(messages: Sequence[Any], limit: int) -> int:
    """The UTF-8 size of the text `scan` would read, counted until it passes `limit`."""
    total = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        for slot in text_slots(message):
            text = slot.read()
            # a character is 1 to 4 bytes: encode only when the count could matter
            total += len(text) if text.isascii() else len(text.encode())
            if total > limit:
                return total
    return total


def _check_size(messages: Sequence[Any], settings: PiiSettings) -> None:
    size = text_bytes(messages, settings.max_scan_bytes)
    if size > settings.max_scan_bytes:
        raise PiiScanTooLarge(
            f"The messages hold more than {settings.max_scan_bytes} bytes of text, the most "
            f"PII policy {settings.name!r} scans per request."
        )


def _plain_text(message: MutableMapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def copy_messages(messages: Sequence[Any]) -> list[Any]:
    """A copy deep enough that anonymizing it leaves `messages` as it was."""
    return [_copy(message) for message in messages]


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def enforce(result: PiiScan, settings: PiiSettings) -> None:
    """Raise PiiBlocked when the settings block what was found (types, never values)."""
    blocked: list[str] = []
    if settings.action == BLOCK and result.found:
        blocked.extend(sorted(set(result.found)))
    if settings.art9_action == BLOCK and result.art9:
        blocked.extend(f"special category {c}" for c in sorted(set(result.art9)))
    if blocked:
        raise PiiBlocked(
            "The request contains personal data this endpoint does not accept: "
            + ", ".join(blocked)
            + "."
        )
