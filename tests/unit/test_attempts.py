"""The upstream filter's side of a fallback: which candidate an attempt goes to (from the
host metadata Envoy sends), and the request rewritten for it."""

from __future__ import annotations

from typing import Any

import orjson
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext
from google.protobuf import struct_pb2, text_format

from extproc.attempts import Attempt, candidate_of
from extproc.routes import RouteTable, RouteTableHolder
from weir.config.v1 import runtime_pb2


def table() -> RouteTableHolder:
    config = runtime_pb2.RuntimeConfig(
        revision="r",
        cluster_header="x-weir-cluster",
        endpoint_header="x-weir-endpoint",
        backends=[
            runtime_pb2.Backend(
                name="first",
                cluster="backend-first",
                path_prefix="/v1",
                authority="first.example",
                api_key="sk-first",
                models=[runtime_pb2.BackendModel(name="m1")],
            ),
            runtime_pb2.Backend(
                name="second",
                cluster="backend-second",
                path_prefix="/openai/v1",
                authority="second.example:8443",
                models=[runtime_pb2.BackendModel(name="m2", max_output_tokens=100)],
            ),
        ],
        endpoints=[
            runtime_pb2.Endpoint(
                name="e",
                project="p",
                slug="s",
                models=[
                    runtime_pb2.ModelRoute(
                        name="smart",
                        targets=[
                            runtime_pb2.ModelTarget(backend="first", model="m1"),
                            runtime_pb2.ModelTarget(backend="second", model="m2"),
                        ],
                        fallback_cluster="fallback-e-0",
                    )
                ],
            )
        ],
    )
    holder = RouteTableHolder()
    holder.table = RouteTable.compile(config)
    return holder


def headers_message(
    candidate: dict[str, str] | None, api_path: str = "/chat/completions", attempt: str = "2"
) -> Any:
    message = ext.ProcessingRequest(
        request_headers=ext.HttpHeaders(
            headers=base_pb2.HeaderMap(
                headers=[
                    base_pb2.HeaderValue(key=":path", raw_value=b"/v1/chat/completions"),
                    base_pb2.HeaderValue(key="authorization", raw_value=b"Bearer sk-first"),
                    base_pb2.HeaderValue(key="x-weir-api-path", raw_value=api_path.encode()),
                    base_pb2.HeaderValue(key="x-envoy-attempt-count", raw_value=attempt.encode()),
                ]
            )
        )
    )
    if candidate is not None:
        metadata = base_pb2.Metadata()
        metadata.filter_metadata["weir"].update(candidate)
        attributes = struct_pb2.Struct()
        attributes.fields["xds.upstream_host_metadata"].string_value = text_format.MessageToString(
            metadata, as_one_line=True
        )
        message.attributes["envoy.filters.http.ext_proc"].CopyFrom(attributes)
    return message


def mutations(response: ext.ProcessingResponse) -> tuple[dict[str, bytes], list[str]]:
    common = response.request_headers.response
    set_headers = {h.header.key: h.header.raw_value for h in common.header_mutation.set_headers}
    return set_headers, list(common.header_mutation.remove_headers)


SECOND = {"candidate": "1", "backend": "second", "model": "m2"}


def test_the_candidate_is_read_from_envoys_text_format_metadata() -> None:
    assert candidate_of(headers_message(SECOND)) == SECOND
    assert candidate_of(headers_message(None)) == {}


def test_the_first_candidate_is_set_too_and_its_body_left_as_routed() -> None:
    """Attempts share the request's headers: one that comes back to the first candidate
    after a later one must not carry the later one's key."""
    attempt = Attempt(table())
    reply = attempt.handle(headers_message({"candidate": "0", "backend": "first", "model": "m1"}))
    assert mutations(reply) == (
        {
            ":path": b"/v1/chat/completions",
            ":authority": b"first.example",
            "authorization": b"Bearer sk-first",
        },
        [],
    )
    body = ext.ProcessingRequest(request_body=ext.HttpBody(body=b'{"model":"m1"}'))
    assert not attempt.handle(body).request_body.HasField("response")


def test_a_later_candidate_gets_its_path_host_key_and_model() -> None:
    attempt = Attempt(table())
    set_headers, removed = mutations(
        attempt.handle(headers_message(SECOND, "/chat/completions?x=1"))
    )
    assert set_headers == {
        ":path": b"/openai/v1/chat/completions?x=1",
        ":authority": b"second.example:8443",
    }
    assert removed == ["authorization"]  # the first provider's key never goes to another
    body = orjson.dumps({"model": "m1", "messages": [{"role": "user", "content": "hi"}]})
    reply = attempt.handle(ext.ProcessingRequest(request_body=ext.HttpBody(body=body)))
    common = reply.request_body.response
    sent = orjson.loads(common.body_mutation.body)
    assert sent == {"model": "m2", "messages": [{"role": "user", "content": "hi"}]}
    lengths = [h.header.raw_value for h in common.header_mutation.set_headers]
    assert lengths == [str(len(common.body_mutation.body)).encode()]


def test_an_attempt_that_cannot_be_placed_is_refused_not_sent() -> None:
    for candidate in (None, {"candidate": "1", "backend": "gone", "model": "m9"}):
        reply = Attempt(table()).handle(headers_message(candidate))
        assert reply.immediate_response.status.code == 502
        error = orjson.loads(reply.immediate_response.body)["error"]
        assert error["code"] == "fallback_unavailable"


def test_a_later_candidate_gets_max_tokens_it_can_produce() -> None:
    attempt = Attempt(table())
    attempt.handle(headers_message(SECOND))
    body = orjson.dumps({"model": "m1", "max_tokens": 500, "messages": []})
    reply = attempt.handle(ext.ProcessingRequest(request_body=ext.HttpBody(body=body)))
    sent = orjson.loads(reply.request_body.response.body_mutation.body)
    assert (sent["model"], sent["max_tokens"]) == ("m2", 100)


def test_the_first_attempt_to_the_first_candidate_goes_as_routed_unparsed() -> None:
    first = {"candidate": "0", "backend": "first", "model": "m1"}
    attempt = Attempt(table())
    assert mutations(attempt.handle(headers_message(first, attempt="1"))) == ({}, [])
    unreadable = ext.ProcessingRequest(request_body=ext.HttpBody(body=b"not parsed"))
    assert not attempt.handle(unreadable).request_body.HasField("response")
    # The first attempt to a later candidate (the first one ejected) is rewritten.
    set_headers, _ = mutations(Attempt(table()).handle(headers_message(SECOND, attempt="1")))
    assert set_headers[":authority"] == b"second.example:8443"
