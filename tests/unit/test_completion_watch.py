"""extproc.completion_watch: tool calls followed in whole and streamed answers, and
response policies that hold back only a tool call until it is checked."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from extproc.completion_watch import (
    Completion,
    ResponseCheck,
    StreamWatch,
    completion_of,
    parse_completion,
)
from extproc.errors import PolicyDenied
from extproc.policies import Decision, compile_policies
from weir.config.v1 import runtime_pb2

TOOL_PATHS = """\
package tool_paths

deny contains msg if {
    some call in input.response.tool_calls
    not startswith(call.arguments.path, "/srv/")
    msg := sprintf("%s may not touch %s", [call.name, call.arguments.path])
}

deny contains "secret in the answer" if {
    input.response.complete
    is_string(input.response.message.content)  # null when the answer is only tool calls
    contains(input.response.message.content, "secret")
}
"""


def check(decisions: list[Decision] | None = None) -> ResponseCheck:
    policies = compile_policies(
        [
            runtime_pb2.Policy(
                name="tool-paths",
                stage=runtime_pb2.Policy.STAGE_RESPONSE,
                module=TOOL_PATHS,
                package="data.tool_paths",
                endpoints=["e"],
            )
        ]
    )["e"].response
    request = {"stage": "request", "request": {"model": "m", "messages": []}}
    return ResponseCheck(policies, request, "mock", "m", decisions if decisions is not None else [])


def event(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> bytes:
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def call_events(index: int, name: str, path: str) -> list[bytes]:
    arguments = orjson.dumps({"path": path}).decode()
    first = {"index": index, "id": f"call_{index}", "type": "function"}
    first["function"] = {"name": name, "arguments": ""}  # type: ignore[assignment]
    parts = [arguments[i : i + 5] for i in range(0, len(arguments), 5)]
    return [
        event({"tool_calls": [first]}),
        *(event({"tool_calls": [{"index": index, "function": {"arguments": p}}]}) for p in parts),
    ]


DONE = b"data: [DONE]\n\n"
TEXT = [
    event({"role": "assistant", "content": ""}),
    event({"content": "Let me"}),
    event({"content": " look."}),
]


def run(watch: StreamWatch, chunks: list[bytes]) -> list[bytes]:
    """What the client receives for each upstream chunk."""
    out = []
    for i, chunk in enumerate(chunks):
        replaced = watch.feed(chunk, end_of_stream=i == len(chunks) - 1)
        out.append(chunk if replaced is None else replaced)
    return out


def test_text_passes_at_once_and_an_allowed_tool_call_is_released_when_complete() -> None:
    decisions: list[Decision] = []
    watch = StreamWatch(check(decisions))
    calls = call_events(0, "read_file", "/srv/a")
    stream = [*TEXT, *calls, event({}, "tool_calls"), DONE]
    out = run(watch, stream)
    assert out[: len(TEXT)] == TEXT  # unchanged, chunk by chunk
    assert out[len(TEXT) : len(TEXT) + len(calls) - 1] == [b""] * (len(calls) - 1)  # held
    assert out[len(TEXT) + len(calls) - 1] == b"".join(calls)  # released at its last fragment
    assert b"".join(out) == b"".join(stream)
    assert [c.as_record() for c in watch.tool_calls()] == [
        {"name": "read_file", "arguments": '{"path":"/srv/a"}'}
    ]
    # The check of the call allowed it (not recorded: a stream checks once per call);
    # the final check is.
    assert [d.result for d in decisions] == ["allow"]


def test_a_forbidden_tool_call_ends_the_stream_with_an_error_event_instead() -> None:
    watch = StreamWatch(check())
    stream = [*TEXT, *call_events(0, "read_file", "/etc/passwd"), event({}, "tool_calls"), DONE]
    received = b"".join(run(watch, stream))
    assert received.startswith(b"".join(TEXT))
    assert b"read_file" not in received.split(b"event: error")[0]
    tail = received[len(b"".join(TEXT)) :]
    assert tail.startswith(b"event: error\ndata: ")
    envelope = orjson.loads(tail.split(b"data: ", 1)[1])
    assert envelope["error"]["type"] == "policy_violation"
    assert "read_file may not touch /etc/passwd" in envelope["error"]["message"]
    assert b"[DONE]" not in received
    assert watch.blocked


@pytest.mark.parametrize("size", [1, 7, 64])
def test_events_split_across_chunks_anywhere_give_the_same_result(size: int) -> None:
    allowed = b"".join([*TEXT, *call_events(0, "read_file", "/srv/x"), event({}, "stop"), DONE])
    chunks = [allowed[i : i + size] for i in range(0, len(allowed), size)]
    assert b"".join(run(StreamWatch(check()), chunks)) == allowed

    denied = b"".join([*TEXT, *call_events(0, "read_file", "/etc/x"), event({}, "stop"), DONE])
    chunks = [denied[i : i + size] for i in range(0, len(denied), size)]
    received = b"".join(run(StreamWatch(check()), chunks))
    assert received.startswith(b"".join(TEXT))
    before_error, error, _ = received.partition(b"event: error")
    assert error
    assert b"/etc/x" not in before_error


def test_of_parallel_calls_each_is_checked_when_the_next_begins_or_its_json_closes() -> None:
    watch = StreamWatch(check())
    first, second = call_events(0, "list_dir", "/srv/"), call_events(1, "read_file", "/etc/x")
    out = run(watch, [*first, *second, event({}, "tool_calls"), DONE])
    received = b"".join(out)
    assert received.startswith(b"".join(first))  # the allowed call went out whole
    before_error, _, error = received.partition(b"event: error")
    assert b"read_file" not in before_error
    assert b"read_file may not touch /etc/x" in error


def test_a_final_message_is_checked_before_done() -> None:
    stream = [event({"content": "the secret is 42"}), event({}, "stop"), DONE]
    received = b"".join(run(StreamWatch(check()), stream))
    assert received.startswith(stream[0] + stream[1])  # text is never held
    assert b"secret in the answer" in received
    assert b"[DONE]" not in received


def test_without_a_check_the_stream_is_never_changed_but_calls_are_followed() -> None:
    watch = StreamWatch(None)
    stream = [*TEXT, *call_events(0, "read_file", "/etc/passwd"), DONE]
    assert all(watch.feed(chunk) is None for chunk in stream)
    assert watch.tool_calls()[0].as_input()["arguments"] == {"path": "/etc/passwd"}


def completion(content: str | None, calls: list[tuple[str, str]]) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": a}}
            for i, (n, a) in enumerate(calls)
        ]
    return orjson.dumps(
        {"object": "chat.completion", "choices": [{"index": 0, "message": message}]}
    )


def read_completion(body: bytes) -> Completion | None:
    parsed = parse_completion(body)
    return None if parsed is None else completion_of(parsed)


def test_a_whole_answer_is_read_and_checked() -> None:
    allowed = read_completion(completion(None, [("read_file", '{"path": "/srv/a"}')]))
    assert allowed is not None
    assert [c.as_record()["name"] for c in allowed.calls] == ["read_file"]
    check().run(allowed.choices, allowed.calls, allowed.usage, complete=True)
    denied = read_completion(completion(None, [("read_file", '{"path": "/etc/passwd"}')]))
    assert denied is not None
    with pytest.raises(PolicyDenied, match="read_file may not touch /etc/passwd"):
        check().run(denied.choices, denied.calls, denied.usage, complete=True)
    secret = read_completion(completion("a secret", []))
    assert secret is not None and secret.calls == []
    with pytest.raises(PolicyDenied, match="secret in the answer"):
        check().run(secret.choices, secret.calls, secret.usage, complete=True)
    assert read_completion(b"not json") is None
    assert read_completion(b'{"error": {"message": "x"}}') is None


def test_an_unterminated_last_event_is_checked_not_passed_unseen() -> None:
    call = b"".join(call_events(0, "read_file", "/etc/passwd"))
    received = b"".join(run(StreamWatch(check()), [*TEXT, call.rstrip(b"\n")]))
    before_error, error, _ = received.partition(b"event: error")
    assert error and b"read_file" not in before_error


def custom_call_events(name: str, text: str) -> list[bytes]:
    first = {"index": 0, "id": "c", "type": "custom", "custom": {"name": name, "input": ""}}
    return [
        event({"tool_calls": [first]}),
        event({"tool_calls": [{"index": 0, "custom": {"input": text}}]}),
    ]


def watch_denying_calls(condition: str) -> StreamWatch:
    """A StreamWatch whose one response policy denies each call `c` meeting `condition`."""
    group = compile_policies(
        [
            runtime_pb2.Policy(
                name="calls",
                stage=runtime_pb2.Policy.STAGE_RESPONSE,
                module="package calls\n\ndeny contains c.name if {\n"
                f"    some c in input.response.tool_calls\n    {condition}\n}}\n",
                endpoints=["e"],
            )
        ]
    )["e"].response
    return StreamWatch(ResponseCheck(group, {"request": {}}, "b", "m", []))


def test_custom_tool_calls_and_the_deprecated_function_call_are_checked_too() -> None:
    for stream in (
        [*custom_call_events("rm", "-rf /"), event({}, "tool_calls"), DONE],
        [
            event({"function_call": {"name": "rm", "arguments": ""}}),
            event({"function_call": {"arguments": '{"path": "/"}'}}),
            event({}, "function_call"),
            DONE,
        ],
    ):
        watch = watch_denying_calls('c.name == "rm"')
        received = b"".join(run(watch, stream))
        before_error, error, _ = received.partition(b"event: error")
        assert error, received
        assert b'"rm"' not in before_error
        assert watch.tool_calls()[0].name == "rm"


def test_a_call_that_changes_after_it_was_allowed_is_held_and_checked_again() -> None:
    watch = watch_denying_calls('contains(c.name, "delete")')
    calls = call_events(0, "read_file", "/srv/a")
    change = event({"tool_calls": [{"index": 0, "function": {"name": "_and_delete"}}]})
    received = b"".join(run(watch, [*calls, change, event({}, "stop"), DONE]))
    before_error, _, error = received.partition(b"event: error")
    assert before_error == b"".join(calls)  # the allowed call went out as it was...
    assert b"read_file_and_delete" in error  # ...and its change was checked, then refused


def test_the_final_check_sees_the_streams_usage() -> None:
    watch = StreamWatch(
        ResponseCheck(
            compile_policies(
                [
                    runtime_pb2.Policy(
                        name="budget",
                        stage=runtime_pb2.Policy.STAGE_RESPONSE,
                        module='package budget\n\ndeny contains "too long" if {\n'
                        "    input.response.complete\n"
                        "    input.response.usage.completion_tokens > 2\n}\n",
                        endpoints=["e"],
                    )
                ]
            )["e"].response,
            {"request": {}},
            "b",
            "m",
            [],
        )
    )
    usage = {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 3}}
    stream = [*TEXT, event({}, "stop"), b"data: " + orjson.dumps(usage) + b"\n\n", DONE]
    received = b"".join(run(watch, stream))
    assert b"too long" in received.partition(b"event: error")[2]
    assert b"[DONE]" not in received


USAGE = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
USAGE_EVENT = b"data: " + orjson.dumps({"id": "c", "choices": [], "usage": USAGE}) + b"\n\n"


@pytest.mark.parametrize("with_check", [False, True])
def test_usage_weir_asked_for_is_taken_and_kept_from_the_client(with_check: bool) -> None:
    watch = StreamWatch(check() if with_check else None, strip_usage=True)
    text = event({"content": "Hi"}) + event({}, finish="stop")
    passed = [watch.feed(text), watch.feed(USAGE_EVENT + DONE, end_of_stream=True)]
    assert passed[0] in (None, text)
    assert passed[1] == DONE
    assert watch.usage == USAGE


def test_usage_the_client_asked_for_passes_and_is_read() -> None:
    watch = StreamWatch(None)
    assert watch.feed(event({"content": "Hi"})) is None
    assert watch.feed(USAGE_EVENT + DONE, end_of_stream=True) is None
    assert watch.usage == USAGE


def test_chunks_are_counted_to_estimate_a_stream_that_reports_no_usage() -> None:
    watch = StreamWatch(None, strip_usage=True)
    text = event({"content": "Hi"}) + event({"content": " there"})
    watch.feed(text[:7])
    watch.feed(text[7:] + event({}, finish="stop") + DONE, end_of_stream=True)
    assert watch.usage is None and watch.chunks == 4  # 3 chunks and [DONE]


def test_chunks_saying_usage_null_are_not_taken_for_the_usage_chunk() -> None:
    watch = StreamWatch(None, strip_usage=True)
    chunk = b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}\n\n'
    assert watch.feed(chunk) in (None, chunk)
    assert watch.usage is None
