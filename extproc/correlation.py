"""The ids every response carries, and the client's custom trace properties.

* request id: Envoy's `x-request-id` (a UUID Envoy generates, or the client's own);
* trace id: the W3C trace id of the client's `traceparent` when it sends one, else new;
* session id: the client's `X-Weir-Session-Id` (must be a UUID), else derived from the
  conversation (see `derive_session`), so every turn of one conversation shares it;
* turn: the number of user messages in the request, i.e. which turn of the
  conversation this request is.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Sequence
from typing import Any, Final

import orjson

from extproc.errors import InvalidRequest

PROPERTY_PREFIX: Final = "x-weir-property-"
MAX_PROPERTIES: Final = 20
MAX_PROPERTY_KEY: Final = 64
MAX_PROPERTY_VALUE: Final = 512
RESERVED_PROPERTY_PREFIX: Final = "policy_"
SESSION_NAMESPACE: Final = uuid.UUID("6f1c3a52-8a39-4d0e-9a3b-5e7d0c2b9f11")
_TRACEPARENT: Final = re.compile(rb"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_UUID: Final = re.compile(
    rb"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


_REQUEST_ID: Final = re.compile(rb"^[\x21-\x7e]{1,128}$")


def request_id_from(header: bytes) -> str:
    """Envoy's `x-request-id` when it is sane (printable, at most 128 bytes), else new."""
    if _REQUEST_ID.fullmatch(header):
        return header.decode()
    return str(uuid.uuid4())


def trace_id_from(traceparent: bytes) -> str:
    """The trace id of a valid `traceparent`, else a new one."""
    match = _TRACEPARENT.fullmatch(traceparent.strip()) if traceparent else None
    if match and match.group(1) != b"0" * 32:
        return match.group(1).decode()
    return os.urandom(16).hex()


def client_session_id(value: bytes) -> str | None:
    """The client's `X-Weir-Session-Id`, normalised; None if absent; 400 if not a UUID."""
    if not value:
        return None
    value = value.strip()
    if not _UUID.fullmatch(value):
        raise InvalidRequest(
            "The X-Weir-Session-Id header must be a UUID, like "
            "'3b241101-e2bb-4255-8caf-4136c566a962'.",
            param="X-Weir-Session-Id",
            code="invalid_session_id",
        )
    return value.decode().lower()


def new_session_id() -> str:
    return str(uuid.uuid4())


def _first_content(messages: Sequence[Any], roles: tuple[str, ...]) -> bytes:
    for message in messages:
        if isinstance(message, dict) and message.get("role") in roles:
            content = message.get("content")
            return content.encode() if isinstance(content, str) else orjson.dumps(content)
    return b""


def derive_session(project: str, key_id: str, body: dict[str, Any]) -> str:
    """A session id that every turn of one conversation shares, without the client's help.

    A conversation resends its history, so its first system (or developer) message and its
    first user message stay the same from turn to turn: the session is a name-based UUID
    (v5) of the project, the key, the request's `user` field and those two messages.
    Two conversations that open with the very same words from the same key and user share
    a session; clients that need exact sessions send `X-Weir-Session-Id`.
    """
    messages = body.get("messages")
    if not isinstance(messages, list):
        messages = []
    user = body.get("user")
    name = b"\0".join(
        (
            project.encode(),
            key_id.encode(),
            user.encode() if isinstance(user, str) else b"",
            _first_content(messages, ("system", "developer")),
            _first_content(messages, ("user",)),
        )
    )
    return str(uuid.uuid5(SESSION_NAMESPACE, name.decode("utf-8", "surrogateescape")))


def turn_of(body: dict[str, Any]) -> int:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 0
    return sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "user")


def check_properties(headers: Sequence[tuple[str, bytes]]) -> dict[str, str]:
    """`X-Weir-Property-<key>: <value>` headers as a dict; 400 naming the rule broken."""
    if len(headers) > MAX_PROPERTIES:
        raise InvalidRequest(
            f"Too many X-Weir-Property-* headers: {len(headers)}; at most "
            f"{MAX_PROPERTIES} are allowed.",
            param="X-Weir-Property-*",
            code="too_many_properties",
        )
    properties: dict[str, str] = {}
    for name, raw in headers:
        key = name[len(PROPERTY_PREFIX) :]
        header = f"X-Weir-Property-{key}"
        if not key:
            raise InvalidRequest(
                "An X-Weir-Property- header needs a key after the prefix.",
                param=header,
                code="invalid_property",
            )
        if len(key) > MAX_PROPERTY_KEY:
            raise InvalidRequest(
                f"The property key '{key[:16]}...' is {len(key)} characters long; keys are "
                f"at most {MAX_PROPERTY_KEY}.",
                param="X-Weir-Property-*",
                code="property_key_too_long",
            )
        if key.startswith(RESERVED_PROPERTY_PREFIX):
            raise InvalidRequest(
                f"The property key '{key}' uses the reserved prefix "
                f"'{RESERVED_PROPERTY_PREFIX}' (kept for policy decisions).",
                param=header,
                code="reserved_property",
            )
        value = raw.decode("utf-8", "replace")
        if len(value) > MAX_PROPERTY_VALUE:
            raise InvalidRequest(
                f"The value of property '{key}' is {len(value)} characters long; values "
                f"are at most {MAX_PROPERTY_VALUE}.",
                param=header,
                code="property_value_too_long",
            )
        properties[key] = value
    return properties
