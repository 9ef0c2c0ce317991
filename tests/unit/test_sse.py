"""The SSE decoder against arbitrary chunk boundaries."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from extproc.sse import Event, SSEDecoder

STREAM = (
    b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n'
    b": keep-alive comment\n\n"
    b'data: {"choices":[{"delta":{"content":"lo"}}]}\r\n\r\n'
    b"event: error\ndata: line one\ndata: line two\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    Event(b'{"choices":[{"delta":{"content":"Hel"}}]}'),
    Event(b'{"choices":[{"delta":{"content":"lo"}}]}'),
    Event(b"line one\nline two", "error"),
    Event(b"[DONE]"),
]


def test_whole_stream() -> None:
    assert SSEDecoder().feed(STREAM) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    decoder = SSEDecoder()
    events = []
    bounds = [0, *sorted(cuts), len(STREAM)]
    for start, end in itertools.pairwise(bounds):
        events += decoder.feed(STREAM[start:end])
    assert events == EXPECTED
    assert decoder.pending == b""


def test_incomplete_event_is_held_back() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: par") == []
    assert decoder.pending == b"data: par"
    assert decoder.feed(b"tial\n\n") == [Event(b"partial")]
