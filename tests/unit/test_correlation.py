"""Request, trace and session ids and custom properties (extproc.correlation)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from extproc.correlation import (
    MAX_PROPERTIES,
    MAX_PROPERTY_KEY,
    MAX_PROPERTY_VALUE,
    PROPERTY_PREFIX,
    check_properties,
    client_session_id,
    derive_session,
    new_session_id,
    request_id_from,
    trace_id_from,
    turn_of,
)
from extproc.errors import InvalidRequest

HEX32 = re.compile(r"^[0-9a-f]{32}$")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01".encode()


def is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


# --- request id ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        b"3b241101-e2bb-4255-8caf-4136c566a962",
        b"my-request-42",
        b"x",
        b"!" + b"~" * 127,  # 128 printable bytes
    ],
)
def test_request_id_keeps_a_sane_id(header: bytes) -> None:
    assert request_id_from(header) == header.decode()


@pytest.mark.parametrize(
    "header",
    [
        b"",
        b"a" * 129,
        b"has space",
        b"tab\there",
        b"new\nline",
        b"nul\x00",
        b"del\x7f",
        "caf\u00e9".encode(),
    ],
)
def test_request_id_replaces_an_insane_one(header: bytes) -> None:
    replaced = request_id_from(header)
    assert is_uuid(replaced)
    assert replaced != header.decode("utf-8", "replace")


def test_request_id_with_a_trailing_newline_is_replaced() -> None:
    assert is_uuid(request_id_from(b"abc\n"))


def test_new_request_ids_differ() -> None:
    assert request_id_from(b"") != request_id_from(b"")


# --- trace id -----------------------------------------------------------------------------


def test_trace_id_of_a_valid_traceparent() -> None:
    assert trace_id_from(TRACEPARENT) == TRACE_ID
    assert trace_id_from(b"  " + TRACEPARENT + b"\n") == TRACE_ID


@pytest.mark.parametrize(
    "traceparent",
    [
        b"",
        b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01",  # all-zero trace id is invalid
        TRACE_ID.encode(),  # just the id
        TRACEPARENT.upper(),  # hex must be lower-case
        b"00-" + TRACE_ID.encode()[:31] + b"-00f067aa0ba902b7-01",
        b"00-" + TRACE_ID.encode() + b"-00f067aa0ba902b-01",
        b"00-" + TRACE_ID.encode() + b"-00f067aa0ba902b7",
        b"0-" + TRACE_ID.encode() + b"-00f067aa0ba902b7-01",
        b"00_" + TRACE_ID.encode() + b"_00f067aa0ba902b7_01",
        b"zz-" + TRACE_ID.encode() + b"-00f067aa0ba902b7-01",
        b"not a traceparent",
    ],
)
def test_trace_id_is_new_when_traceparent_is_unusable(traceparent: bytes) -> None:
    trace_id = trace_id_from(traceparent)
    assert HEX32.match(trace_id)
    assert trace_id != "0" * 32
    assert trace_id != TRACE_ID


def test_new_trace_ids_differ() -> None:
    assert trace_id_from(b"") != trace_id_from(b"")


# --- session id ---------------------------------------------------------------------------


def test_client_session_id_absent() -> None:
    assert client_session_id(b"") is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"3b241101-e2bb-4255-8caf-4136c566a962", "3b241101-e2bb-4255-8caf-4136c566a962"),
        (b"3B241101-E2BB-4255-8CAF-4136C566A962", "3b241101-e2bb-4255-8caf-4136c566a962"),
        (b" 3b241101-e2bb-4255-8caf-4136c566a962 ", "3b241101-e2bb-4255-8caf-4136c566a962"),
    ],
)
def test_client_session_id_kept_lower_cased(header: bytes, expected: str) -> None:
    assert client_session_id(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        b"session-1",
        b"3b241101e2bb42558caf4136c566a962",  # no dashes
        b"{3b241101-e2bb-4255-8caf-4136c566a962}",
        b"3b241101-e2bb-4255-8caf-4136c566a96",
        b"3b241101-e2bb-4255-8caf-4136c566a962x",
        b"gb241101-e2bb-4255-8caf-4136c566a962",
        b"   ",
    ],
)
def test_client_session_id_not_a_uuid(header: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        client_session_id(header)
    error = caught.value
    assert error.status == 400
    assert error.code == "invalid_session_id"
    assert error.param == "X-Weir-Session-Id"
    assert "UUID" in error.message
    assert error.envelope()["error"]["type"] == "invalid_request_error"


def test_new_session_ids_are_uuids() -> None:
    first, second = new_session_id(), new_session_id()
    assert is_uuid(first) and is_uuid(second)
    assert first != second


SYSTEM = {"role": "system", "content": "You are terse."}
FIRST = {"role": "user", "content": "What is the capital of France?"}
ANSWER = {"role": "assistant", "content": "Paris."}
SECOND = {"role": "user", "content": "And of Spain?"}


def turn1(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [SYSTEM, FIRST], **extra}


def turn2(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [SYSTEM, FIRST, ANSWER, SECOND], **extra}


def test_derived_session_is_a_uuid() -> None:
    session = derive_session("demo", "key_1", turn1())
    assert is_uuid(session)
    assert uuid.UUID(session).version == 5


def test_derived_session_is_shared_by_successive_turns() -> None:
    first = derive_session("demo", "key_1", turn1(user="u1"))
    second = derive_session("demo", "key_1", turn2(user="u1"))
    third = derive_session(
        "demo",
        "key_1",
        {
            "messages": [
                *turn2()["messages"],
                {"role": "assistant", "content": "Madrid."},
                {"role": "user", "content": "Thanks"},
            ],
            "user": "u1",
            "temperature": 0.2,  # other parameters may change from turn to turn
        },
    )
    assert first == second == third


def test_derived_session_is_deterministic() -> None:
    assert derive_session("demo", "key_1", turn1()) == derive_session("demo", "key_1", turn1())


def test_derived_session_differs_for_another_conversation() -> None:
    base = derive_session("demo", "key_1", turn1(user="u1"))
    other_question = {"role": "user", "content": "What is the capital of Italy?"}
    other_system = {"role": "system", "content": "You are verbose."}
    others = [
        derive_session("demo", "key_1", {"messages": [SYSTEM, other_question], "user": "u1"}),
        derive_session("demo", "key_1", {"messages": [other_system, FIRST], "user": "u1"}),
        derive_session("demo", "key_2", turn1(user="u1")),
        derive_session("demo", "key_1", turn1(user="u2")),
        derive_session("demo", "key_1", turn1()),
        derive_session("other", "key_1", turn1(user="u1")),
    ]
    assert base not in others
    assert len(set(others)) == len(others)


def test_developer_message_counts_as_system() -> None:
    developer = {"role": "developer", "content": SYSTEM["content"]}
    assert derive_session("demo", "k", {"messages": [developer, FIRST]}) == derive_session(
        "demo", "k", turn1()
    )
    assert derive_session("demo", "k", {"messages": [FIRST]}) != derive_session(
        "demo", "k", turn1()
    )


def test_derived_session_with_content_parts() -> None:
    def parts(text: str) -> list[dict[str, str]]:
        return [{"type": "text", "text": text}]

    first_user = {"role": "user", "content": parts("Describe this.")}
    system = {"role": "system", "content": parts("Be brief.")}
    one = {"messages": [system, first_user]}
    two = {
        "messages": [
            system,
            first_user,
            {"role": "assistant", "content": "A cat."},
            {"role": "user", "content": parts("What colour?")},
        ]
    }
    session = derive_session("demo", "key_1", one)
    assert is_uuid(session)
    assert derive_session("demo", "key_1", two) == session
    other = {"messages": [system, {"role": "user", "content": parts("Describe that.")}]}
    assert derive_session("demo", "key_1", other) != session


def test_derived_session_tolerates_odd_bodies() -> None:
    for body in (
        {},
        {"messages": "not a list"},
        {"messages": [None, 3, "x", {"role": "user"}]},
        {"messages": [FIRST], "user": 42},
        {"messages": [{"role": "user", "content": None}]},
    ):
        assert is_uuid(derive_session("demo", "key_1", body))


# --- turn ---------------------------------------------------------------------------------


def test_turn_of() -> None:
    assert turn_of(turn1()) == 1
    assert turn_of(turn2()) == 2
    assert turn_of({"messages": [SYSTEM]}) == 0
    assert turn_of({}) == 0
    assert turn_of({"messages": "hello"}) == 0
    assert turn_of({"messages": [FIRST, None, "user", {"role": "user"}]}) == 2


# --- properties ---------------------------------------------------------------------------


def prop(key: str, value: bytes = b"v") -> tuple[str, bytes]:
    return (PROPERTY_PREFIX + key, value)


def property_error(headers: list[tuple[str, bytes]]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        check_properties(headers)
    assert caught.value.status == 400
    return caught.value


def test_properties() -> None:
    assert check_properties([]) == {}
    assert check_properties([prop("team", b"search"), prop("env", b"prod")]) == {
        "team": "search",
        "env": "prod",
    }
    assert check_properties([prop("empty", b"")]) == {"empty": ""}


def test_twenty_properties_are_fine() -> None:
    headers = [prop(f"k{i}", str(i).encode()) for i in range(MAX_PROPERTIES)]
    assert MAX_PROPERTIES == 20
    assert len(check_properties(headers)) == 20


def test_twenty_one_properties_are_too_many() -> None:
    error = property_error([prop(f"k{i}") for i in range(21)])
    assert error.code == "too_many_properties"
    assert "21" in error.message and "at most 20" in error.message


def test_key_length_limit() -> None:
    assert MAX_PROPERTY_KEY == 64
    assert check_properties([prop("k" * 64)]) == {"k" * 64: "v"}
    error = property_error([prop("k" * 65)])
    assert error.code == "property_key_too_long"
    assert "65 characters" in error.message and "at most 64" in error.message


def test_value_length_limit() -> None:
    assert MAX_PROPERTY_VALUE == 512
    assert check_properties([prop("k", b"v" * 512)]) == {"k": "v" * 512}
    # The limit counts characters, not bytes.
    assert check_properties([prop("k", "\u00e9".encode() * 512)]) == {"k": "\u00e9" * 512}
    error = property_error([prop("k", b"v" * 513)])
    assert error.code == "property_value_too_long"
    assert error.param == "X-Weir-Property-k"
    assert "513 characters" in error.message and "at most 512" in error.message
    assert "'k'" in error.message


def test_reserved_prefix() -> None:
    error = property_error([prop("team"), prop("policy_x")])
    assert error.code == "reserved_property"
    assert error.param == "X-Weir-Property-policy_x"
    assert "reserved prefix 'policy_'" in error.message
    assert check_properties([prop("policy")]) == {"policy": "v"}  # only the prefix is reserved


def test_empty_key() -> None:
    error = property_error([(PROPERTY_PREFIX, b"v")])
    assert error.code == "invalid_property"
    assert "needs a key" in error.message


def test_each_rule_has_its_own_code() -> None:
    codes = {
        property_error([prop(f"k{i}") for i in range(21)]).code,
        property_error([prop("k" * 65)]).code,
        property_error([prop("k", b"v" * 513)]).code,
        property_error([prop("policy_x")]).code,
        property_error([(PROPERTY_PREFIX, b"v")]).code,
    }
    assert len(codes) == 5


def test_invalid_utf8_value_is_replaced() -> None:
    assert check_properties([prop("k", b"a\xffb")]) == {"k": "a\ufffdb"}
