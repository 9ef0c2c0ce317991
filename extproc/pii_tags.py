"""Reversible tags for personal data: `<PERSON_1>`, `<PESEL_1>`, ... and back.

One `TagBook` per request: the same value (by type and canonical form, so an identifier
written with other spacing or dashes too) always gets the same tag, in every message
and tool-call argument. Restoring replaces only the tags the book issued; a tag the
model invents stays as it is.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

import orjson

TAG: Final = re.compile(r"<([A-Z][A-Z0-9]*(?:_[A-Z][A-Z0-9]*)*)_([1-9][0-9]{0,5})>")
"""A tag: `<` TYPE `_` number `>`; TYPE is upper-case words joined by `_`."""
MAX_TAG_CHARS: Final = 40


class Span(Protocol):
    """A finding as the detectors report it."""

    @property
    def type(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def canonical(self) -> str: ...


@dataclass(slots=True)
class TagBook:
    """The tags of one request."""

    by_value: dict[tuple[str, str], str] = field(default_factory=dict)
    originals: dict[str, str] = field(default_factory=dict)  # tag -> the text it replaced
    counts: Counter[str] = field(default_factory=Counter)  # type -> values tagged

    def tag(self, span: Span) -> str:
        key = (span.type, span.canonical)
        tag = self.by_value.get(key)
        if tag is None:
            self.counts[span.type] += 1
            tag = f"<{span.type}_{self.counts[span.type]}>"
            self.by_value[key] = tag
            self.originals[tag] = span.text
        return tag

    def __bool__(self) -> bool:
        return bool(self.originals)

    def anonymize(self, text: str, spans: Sequence[Span]) -> str:
        """`text` with each span (sorted, non-overlapping) replaced by its tag."""
        if not spans:
            return text
        out: list[str] = []
        at = 0
        for span in spans:
            out.append(text[at : span.start])
            out.append(self.tag(span))
            at = span.end
        out.append(text[at:])
        return "".join(out)

    def restore(self, text: str) -> str:
        """`text` with every issued tag replaced by its original."""
        if "<" not in text or not self.originals:
            return text
        return TAG.sub(lambda m: self.originals.get(m.group(0), m.group(0)), text)

    def restore_in_json_string(self, text: str) -> str:
        """Like `restore`, for text inside a JSON string (tool-call arguments): the
        original is escaped as JSON string content."""
        if "<" not in text or not self.originals:
            return text
        return TAG.sub(
            lambda m: (
                _json_escaped(self.originals[m.group(0)])
                if m.group(0) in self.originals
                else m.group(0)
            ),
            text,
        )

    def conceal(self, text: str) -> str:
        """`text` with each original (also JSON-escaped) replaced by its tag again: for
        what Weir stores (records), which must never hold the values."""
        if not self.originals:
            return text
        for tag, original in sorted(self.originals.items(), key=lambda t: -len(t[1])):
            text = text.replace(original, tag)
            escaped = _json_escaped(original)
            if escaped != original:
                text = text.replace(escaped, tag)
        return text


def _json_escaped(text: str) -> str:
    return orjson.dumps(text).decode()[1:-1]


def could_be_tag_start(tail: str) -> bool:
    """Whether `tail` (starting with `<`) could still grow into a tag."""
    if len(tail) >= MAX_TAG_CHARS:
        return False
    return _TAG_PREFIX.fullmatch(tail) is not None


# Every prefix of a tag: "<", "<P", "<PERSON", "<PERSON_", "<PERSON_1", "<EMAIL_ADDR_1".
_TAG_PREFIX: Final = re.compile(r"<(?:[A-Z][A-Z0-9]*(?:_(?:[A-Z][A-Z0-9]*)?)*(?:_[0-9]{0,6})?)?")


class StreamRestorer:
    """Restores tags in text that arrives in pieces (one per SSE event).

    A tag may be split across pieces: only the shortest tail that could still be the
    start of a tag is held back, never a whole piece, and it goes out with the next
    piece (or `flush` at the end)."""

    __slots__ = ("_book", "_held", "_json")

    def __init__(self, book: TagBook, json_string: bool = False) -> None:
        self._book = book
        self._held = ""
        self._json = json_string  # the pieces are JSON string content (tool arguments)

    def feed(self, piece: str) -> str:
        text = self._held + piece if self._held else piece
        self._held = ""
        cut = text.rfind("<")
        if cut != -1 and could_be_tag_start(text[cut:]):
            self._held = text[cut:]
            text = text[:cut]
        if self._json:
            return self._book.restore_in_json_string(text)
        return self._book.restore(text)

    def flush(self) -> str:
        """What is still held back (the stream ended): it was not a tag after all."""
        held, self._held = self._held, ""
        return held

    @property
    def held(self) -> str:
        """The tail held back now: empty, or the start of what may be a tag."""
        return self._held


def counts_of(types: Iterable[str]) -> dict[str, int]:
    """type -> how many, sorted by type (for records and policy input)."""
    return dict(sorted(Counter(types).items()))
