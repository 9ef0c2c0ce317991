"""Incremental Server-Sent Events decoding.

Envoy hands STREAMED bodies over in arbitrary chunks: an event, or even a line, may be
split across chunks. The decoder keeps only the unfinished tail between calls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# An event ends at a blank line; lines end in \n, \r\n or \r.
_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_LINE = re.compile(rb"\r\n|\n|\r")


@dataclass(frozen=True, slots=True)
class Event:
    data: bytes  # the data lines joined with \n; b"" when the event had none
    event: str = "message"
    # `data` parsed as JSON by whoever parsed it first (None: not yet), so that later
    # stages do not parse it again.
    parsed: Any = field(default=None, compare=False)


class SSEDecoder:
    def __init__(self) -> None:
        self._tail = b""

    def feed(self, chunk: bytes) -> list[Event]:
        return [event for _, event in self.feed_raw(chunk) if event is not None]

    def feed_raw(self, chunk: bytes) -> list[tuple[bytes, Event | None]]:
        """Each complete event as (its exact bytes, terminator included; the event, or
        None for one without data such as a keep-alive comment)."""
        buffer = self._tail + chunk if self._tail else chunk
        events: list[tuple[bytes, Event | None]] = []
        start = 0
        # The tail held no event end, so only its last 3 bytes (a split "\r\n\r\n") need
        # scanning again: the work stays linear in the stream, however long an event.
        scan_from = max(0, len(self._tail) - 3)
        for match in _EVENT_END.finditer(buffer, scan_from):
            events.append((buffer[start : match.end()], parse_event(buffer[start : match.start()])))
            start = match.end()
        self._tail = buffer[start:]
        return events

    def take_pending(self) -> bytes:
        """The bytes of the unfinished event, forgotten by the decoder (end of stream)."""
        tail, self._tail = self._tail, b""
        return tail

    @property
    def pending(self) -> bytes:
        """Bytes of an event not yet complete."""
        return self._tail


def parse_event(raw: bytes) -> Event | None:
    data: list[bytes] = []
    name = "message"
    for line in _LINE.split(raw):
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    if not data and name == "message":
        return None
    return Event(b"\n".join(data), name)
