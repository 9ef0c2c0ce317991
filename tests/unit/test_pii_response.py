"""extproc.pii_response: answers restored whole and event by event, and the
`anonymization` object of X-Show-Raw-Prompt."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from extproc.pii_request import PiiScan
from extproc.pii_response import StreamRewriter, restore_completion
from extproc.pii_tags import TagBook
from extproc.sse import SSEDecoder

ORIGINALS = {"<PERSON_1>": "Jan Kowalski", "<EMAIL_1>": 'j"k@example.com'}


def scanned() -> PiiScan:
    scan = PiiScan(TagBook(originals=dict(ORIGINALS)))
    scan.found = ["PERSON", "EMAIL"]
    scan.anonymized_prompt = "Hi, I am <PERSON_1>"
    return scan


def test_a_whole_answer_is_restored_in_content_and_tool_arguments() -> None:
    answer = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello <PERSON_1>, and <PERSON_9>",
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "mail", "arguments": '{"to":"<EMAIL_1>"}'},
                        }
                    ],
                },
            }
        ]
    }
    body = orjson.loads(orjson.dumps(answer))
    restore_completion(body, scanned(), restore=True, show_raw=True)
    message = body["choices"][0]["message"]
    assert message["content"] == "Hello Jan Kowalski, and <PERSON_9>"  # invented tag stays
    assert orjson.loads(message["tool_calls"][0]["function"]["arguments"]) == {
        "to": 'j"k@example.com'
    }
    assert body["anonymization"] == {
        "entities_found": 2,
        "entity_types": ["EMAIL", "PERSON"],
        "anonymized_prompt": "Hi, I am <PERSON_1>",
        "raw_llm_response": "Hello <PERSON_1>, and <PERSON_9>",
    }
    plain = orjson.loads(orjson.dumps(answer))
    restore_completion(plain, scanned(), restore=True, show_raw=False)
    assert "anonymization" not in plain


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]  # type: ignore[assignment]
    return b"data: " + orjson.dumps(body) + b"\n\n"


TEXT = "Dear <PERSON_1>, write to <EMAIL_1> or <EMA"


def rewrite_stream(raw: bytes, show_raw: bool = False) -> list[dict[str, Any]]:
    rewriter = StreamRewriter(scanned(), restore=True, show_raw=show_raw)
    decoder = SSEDecoder()
    out = b""
    for event_raw, event in decoder.feed_raw(raw):
        for new_raw, _ in rewriter.rewrite(event_raw, event):
            out += new_raw
    return [
        orjson.loads(e.data) if e.data != b"[DONE]" else {"done": True}
        for e in SSEDecoder().feed(out)
    ]


@given(st.lists(st.integers(min_value=1, max_value=len(TEXT) - 1), max_size=10))
def test_tags_split_across_events_come_out_whole(cuts: list[int]) -> None:
    points = sorted({0, len(TEXT), *cuts})
    pieces = [TEXT[a:b] for a, b in itertools.pairwise(points)]
    raw = b"".join(chunk({"content": p}) for p in pieces) + chunk({}, "stop")
    raw += b"data: [DONE]\n\n"
    events = rewrite_stream(raw)
    assert len(events) == len(pieces) + 2  # no event dropped, none added
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == 'Dear Jan Kowalski, write to j"k@example.com or <EMA'
    assert events[-1] == {"done": True}


def test_the_transparency_chunk_comes_last_before_done() -> None:
    raw = chunk({"content": "Hi <PERSON_1>"}) + chunk({}, "stop") + b"data: [DONE]\n\n"
    events = rewrite_stream(raw, show_raw=True)
    assert events[0]["choices"][0]["delta"]["content"] == "Hi Jan Kowalski"
    assert events[-2]["choices"] == []
    assert events[-2]["anonymization"]["raw_llm_response"] == "Hi <PERSON_1>"
    assert events[-2]["id"] == "x" and events[-2]["object"] == "chat.completion.chunk"
    assert events[-1] == {"done": True}


def test_streamed_tool_arguments_are_restored_json_escaped() -> None:
    def args(text: str) -> bytes:
        return chunk({"tool_calls": [{"index": 0, "function": {"arguments": text}}]})

    raw = args('{"to":"<EMAI') + args('L_1>"}') + chunk({}, "tool_calls") + b"data: [DONE]\n\n"
    events = rewrite_stream(raw)
    joined = "".join(
        call["function"]["arguments"]
        for e in events[:-1]
        for call in e["choices"][0]["delta"].get("tool_calls", [])
    )
    assert orjson.loads(joined) == {"to": 'j"k@example.com'}
