"""The ext_proc state machine, message by message, as Envoy drives it."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext

from extproc.auth import KeyIndex, KeyIndexHolder
from extproc.envoy_messages import ProcessingMode, header_values
from extproc.processor import Exchange
from extproc.routes import RouteTable, RouteTableHolder, RuntimeConfigInvalid
from tests.openapi_schema import validate_openapi
from weir.config.v1 import keys_pb2, runtime_pb2

KEY = "wk_demo_" + "K" * 43
OTHER_PROJECT_KEY = "wk_other_" + "O" * 43
NO_INFERENCE_KEY = "wk_demo_" + "M" * 43
MESSAGES = [{"role": "user", "content": "Hi"}]


def key_index() -> KeyIndex:
    def key(key_id: str, text: str, project: str, *scopes: str) -> keys_pb2.ApiKey:
        return keys_pb2.ApiKey(
            id=key_id,
            project=project,
            sha256=hashlib.sha256(text.encode()).digest(),
            scopes=scopes,
        )

    return KeyIndex.compile(
        keys_pb2.ApiKeySet(
            revision="k1",
            keys=[
                key("key_demo", KEY, "demo", "inference"),
                key("key_other", OTHER_PROJECT_KEY, "other", "inference"),
                key("key_mgmt", NO_INFERENCE_KEY, "demo", "management"),
            ],
        )
    )


def runtime(api_key: str = "") -> runtime_pb2.RuntimeConfig:
    return runtime_pb2.RuntimeConfig(
        revision="rev1",
        cluster_header="x-weir-cluster",
        endpoint_header="x-weir-endpoint",
        max_request_bytes=1 << 20,
        backends=[
            runtime_pb2.Backend(
                name="mock",
                cluster="backend-mock",
                path_prefix="/v1",
                authority="127.0.0.1:9100",
                api_key=api_key,
                models=[
                    runtime_pb2.BackendModel(
                        name="mock-gpt",
                        max_output_tokens=4096,
                        input_price=2.5,
                        cached_input_price=1.25,
                        output_price=10.0,
                    )
                ],
            )
        ],
        endpoints=[
            runtime_pb2.Endpoint(
                name="demo-chat",
                project="demo",
                slug="chat",
                models=[
                    runtime_pb2.ModelRoute(
                        name="gpt-4o-mini",
                        targets=[runtime_pb2.ModelTarget(backend="mock", model="mock-gpt")],
                    ),
                    runtime_pb2.ModelRoute(
                        name="mock-gpt",
                        targets=[runtime_pb2.ModelTarget(backend="mock", model="mock-gpt")],
                    ),
                ],
            )
        ],
    )


TABLE = RouteTable.compile(runtime())


def exchange_for(table: RouteTable | None, keys: KeyIndex | None = None) -> Exchange:
    holder = RouteTableHolder()
    holder.table = table
    key_holder = KeyIndexHolder()
    key_holder.index = keys or key_index()
    return Exchange(holder, key_holder)


def headers(
    method: str, path: str, end_of_stream: bool = False, **extra: str
) -> ext.ProcessingRequest:
    extra.setdefault("authorization", f"Bearer {KEY}")
    items = [(":method", method), (":path", path), ("x-request-id", "req-1"), *extra.items()]
    return ext.ProcessingRequest(
        request_headers=ext.HttpHeaders(
            headers=base_pb2.HeaderMap(
                headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in items]
            ),
            end_of_stream=end_of_stream,
        )
    )


def body(value: Any) -> ext.ProcessingRequest:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return ext.ProcessingRequest(request_body=ext.HttpBody(body=raw, end_of_stream=True))


def immediate_json(response: ext.ProcessingResponse) -> tuple[int, Any]:
    assert response.WhichOneof("response") == "immediate_response", response
    immediate = response.immediate_response
    content_types = [
        h.header.raw_value for h in immediate.headers.set_headers if h.header.key == "content-type"
    ]
    assert content_types == [b"application/json"]
    return immediate.status.code, orjson.loads(immediate.body)


def set_headers(common: ext.CommonResponse) -> dict[str, bytes]:
    return {h.header.key: h.header.raw_value for h in common.header_mutation.set_headers}


def test_chat_completion_is_routed_and_model_rewritten() -> None:
    exchange = exchange_for(TABLE)
    first = exchange.handle(headers("POST", "/demo/chat/v1/chat/completions?x=1"))
    removed = first.request_headers.response.header_mutation.remove_headers
    assert {"authorization", "x-weir-cluster", "x-weir-endpoint"} <= set(removed)
    second = exchange.handle(body({"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}))
    common = second.request_body.response
    assert common.clear_route_cache
    mutated = set_headers(common)
    assert mutated["x-weir-cluster"] == b"backend-mock"
    assert mutated["x-weir-endpoint"] == b"demo-chat"
    assert mutated[":path"] == b"/v1/chat/completions?x=1"
    assert mutated[":authority"] == b"127.0.0.1:9100"
    assert "authorization" not in mutated  # this backend takes no key
    sent = orjson.loads(common.body_mutation.body)
    assert sent["model"] == "mock-gpt"
    assert mutated["content-length"] == str(len(common.body_mutation.body)).encode()
    assert exchange.routed is not None and exchange.routed.stream


def test_the_checked_request_is_what_goes_upstream_with_the_backend_key() -> None:
    exchange = exchange_for(RouteTable.compile(runtime(api_key="sk-upstream")))
    exchange.handle(headers("POST", "/demo/chat/v1/chat/completions"))
    # Duplicate keys: the parser keeps the last `model`; a provider might keep the first.
    raw = (
        b'{"model": "not-offered", "model": "mock-gpt", '
        b'"messages": [{"role":"user","content":"x"}]}'
    )
    common = exchange.handle(body(raw)).request_body.response
    sent = common.body_mutation.body
    assert sent.count(b'"model"') == 1
    assert orjson.loads(sent) == {
        "model": "mock-gpt",
        "messages": [{"role": "user", "content": "x"}],
    }
    mutated = set_headers(common)
    assert mutated["content-length"] == str(len(sent)).encode()
    assert mutated["authorization"] == b"Bearer sk-upstream"


def test_the_body_is_routed_with_the_config_in_force_when_it_arrives() -> None:
    exchange = exchange_for(TABLE)
    holder = exchange.routes
    exchange.handle(headers("POST", "/demo/chat/v1/chat/completions"))
    moved = runtime()
    moved.backends[0].cluster = "backend-new"
    holder.table = RouteTable.compile(moved)  # the config changed during the upload
    common = exchange.handle(
        body({"model": "mock-gpt", "messages": MESSAGES})
    ).request_body.response
    assert set_headers(common)["x-weir-cluster"] == b"backend-new"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("POST", "/nope/chat/v1/chat/completions", 404, "endpoint_not_found"),
        ("POST", "/demo/other/v1/chat/completions", 404, "endpoint_not_found"),
        ("POST", "/demo/chat/v1/embeddings", 404, "unknown_url"),
        ("GET", "/", 404, "unknown_url"),
        ("GET", "/demo/chat/v1/chat/completions", 405, "method_not_allowed"),
    ],
)
def test_unknown_paths_get_openai_envelopes(method: str, path: str, status: int, code: str) -> None:
    got_status, envelope = immediate_json(exchange_for(TABLE).handle(headers(method, path)))
    assert got_status == status
    assert envelope["error"]["code"] == code
    validate_openapi(envelope, "ErrorResponse")


@pytest.mark.parametrize(
    ("payload", "param", "code"),
    [
        (b"{not json", None, "invalid_json"),
        (b"[1, 2]", None, "invalid_json"),
        ({"messages": MESSAGES}, "model", None),
        ({"model": 7, "messages": MESSAGES}, "model", None),
        ({"model": "mock-gpt", "messages": []}, "messages", "empty_array"),
        (
            {"model": "mock-gpt", "messages": MESSAGES, "temperature": 2.5},
            "temperature",
            "decimal_above_max_value",
        ),
    ],
)
def test_bad_bodies_get_400(payload: Any, param: str | None, code: str | None) -> None:
    exchange = exchange_for(TABLE)
    exchange.handle(headers("POST", "/demo/chat/v1/chat/completions"))
    status, envelope = immediate_json(exchange.handle(body(payload)))
    assert status == 400
    assert envelope["error"]["type"] == "invalid_request_error"
    assert envelope["error"]["param"] == param
    assert envelope["error"]["code"] == code
    validate_openapi(envelope, "ErrorResponse")
    assert exchange.finished


def test_unknown_model_is_404_model_not_found() -> None:
    exchange = exchange_for(TABLE)
    exchange.handle(headers("POST", "/demo/chat/v1/chat/completions"))
    status, envelope = immediate_json(
        exchange.handle(body({"model": "gpt-5", "messages": MESSAGES}))
    )
    assert status == 404
    assert envelope["error"]["code"] == "model_not_found"
    assert "gpt-5" in envelope["error"]["message"]


def test_models_are_listed_without_the_upstream() -> None:
    status, listing = immediate_json(
        exchange_for(TABLE).handle(headers("GET", "/demo/chat/v1/models", True))
    )
    assert status == 200
    assert [m["id"] for m in listing["data"]] == ["gpt-4o-mini", "mock-gpt"]
    validate_openapi(listing, "ListModelsResponse")
    status, model = immediate_json(
        exchange_for(TABLE).handle(headers("GET", "/demo/chat/v1/models/mock-gpt", True))
    )
    assert (status, model["id"]) == (200, "mock-gpt")
    validate_openapi(model, "Model")


def test_healthz_needs_a_config() -> None:
    assert immediate_json(exchange_for(None).handle(headers("GET", "/healthz", True)))[0] == 503
    status, payload = immediate_json(exchange_for(TABLE).handle(headers("GET", "/healthz", True)))
    assert (status, payload["config"]) == (200, "rev1")


def test_without_config_requests_are_refused_not_forwarded() -> None:
    status, envelope = immediate_json(
        exchange_for(None).handle(headers("POST", "/demo/chat/v1/chat/completions"))
    )
    assert status == 503
    assert envelope["error"]["code"] == "gateway_not_ready"


def test_sse_responses_switch_to_streamed_mode_and_json_does_not() -> None:
    def response_headers(content_type: str) -> ext.ProcessingRequest:
        return ext.ProcessingRequest(
            response_headers=ext.HttpHeaders(
                headers=base_pb2.HeaderMap(
                    headers=[
                        base_pb2.HeaderValue(key=":status", raw_value=b"200"),
                        base_pb2.HeaderValue(key="content-type", raw_value=content_type.encode()),
                    ]
                )
            )
        )

    streamed = exchange_for(TABLE).handle(response_headers("text/event-stream; charset=utf-8"))
    assert streamed.HasField("mode_override")
    mode = streamed.mode_override
    assert mode.response_body_mode == ProcessingMode.STREAMED
    # Applied literally by Envoy, so it must be complete.
    assert mode.request_header_mode == ProcessingMode.SEND
    assert mode.response_header_mode == ProcessingMode.SEND
    plain = exchange_for(TABLE).handle(response_headers("application/json"))
    assert not plain.HasField("mode_override")


def test_runtime_config_with_a_dangling_backend_is_rejected() -> None:
    bad = runtime()
    bad.endpoints[0].models[0].targets[0].backend = "ghost"
    with pytest.raises(RuntimeConfigInvalid, match="unknown backend 'ghost'"):
        RouteTable.compile(bad)


def test_a_body_too_deep_to_forward_is_a_400() -> None:
    exchange = exchange_for(TABLE)
    exchange.handle(headers("POST", "/demo/chat/v1/chat/completions"))
    deep = (
        b'{"model": "mock-gpt", "messages": [{"role": "user", "content": "x"}], "extra": '
        + b"[" * 400
        + b"]" * 400
        + b"}"
    )
    status, envelope = immediate_json(exchange.handle(body(deep)))
    assert status == 400
    assert envelope["error"]["code"] == "invalid_json"


def test_an_unexpected_failure_is_a_500_envelope_not_a_grpc_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("internal detail that must not reach the client")

    monkeypatch.setattr("extproc.chat_completions.route", broken)
    exchange = exchange_for(TABLE)
    exchange.handle(headers("POST", "/demo/chat/v1/chat/completions"))
    request = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}
    status, envelope = immediate_json(exchange.handle(body(request)))
    assert status == 500
    assert envelope["error"]["code"] == "internal_error"
    assert "internal detail" not in envelope["error"]["message"]
    assert exchange.finished


def test_a_stream_without_event_ends_stops_being_decoded_but_passes_through() -> None:
    exchange = exchange_for(TABLE)
    exchange.handle(headers("POST", "/demo/chat/v1/chat/completions"))
    exchange.handle(body({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}))
    exchange.handle(response_headers(content_type=b"text/event-stream"))
    assert exchange.watch is not None
    chunk = ext.ProcessingRequest(response_body=ext.HttpBody(body=b"x" * 300_000))
    for _ in range(4):
        reply = exchange.handle(chunk)
        assert reply.WhichOneof("response") == "response_body"
        assert not reply.response_body.response.HasField("body_mutation")
    assert exchange.watch is None


def test_header_values_finds_each_wanted_header_in_one_pass() -> None:
    message = headers("POST", "/p", **{"content-type": "a"}).request_headers
    assert header_values(message, ":path", "content-type", "absent") == [b"/p", b"a", b""]


def immediate_headers(response: ext.ProcessingResponse) -> dict[str, bytes]:
    return {
        h.header.key: h.header.raw_value for h in response.immediate_response.headers.set_headers
    }


def response_headers(
    status: bytes = b"200", content_type: bytes = b"application/json", **extra: bytes
) -> ext.ProcessingRequest:
    items = [(":status", status), ("content-type", content_type), *extra.items()]
    return ext.ProcessingRequest(
        response_headers=ext.HttpHeaders(
            headers=base_pb2.HeaderMap(
                headers=[
                    base_pb2.HeaderValue(key=k.replace("_", "-"), raw_value=v) for k, v in items
                ]
            )
        )
    )


def with_response_policy() -> RouteTable:
    config = runtime()
    config.policies.append(
        runtime_pb2.Policy(
            name="answers",
            stage=runtime_pb2.Policy.STAGE_RESPONSE,
            module='package answers\n\ndeny contains "no" if input.response.message.refusal',
            package="data.answers",
            endpoints=["demo-chat"],
        )
    )
    return RouteTable.compile(config)


def test_the_provider_is_asked_for_uncompressed_answers() -> None:
    exchange = exchange_for(TABLE)
    reply = exchange.handle(
        headers("POST", "/demo/chat/v1/chat/completions", **{"accept-encoding": "gzip, br"})
    )
    removed = reply.request_headers.response.header_mutation.remove_headers
    assert "accept-encoding" in removed


def test_a_compressed_answer_that_response_policies_must_see_is_a_502_not_a_bypass() -> None:
    exchange = exchange_for(with_response_policy())
    exchange.handle(headers("POST", "/demo/chat/v1/chat/completions"))
    exchange.handle(body({"model": "mock-gpt", "messages": MESSAGES}))
    status, envelope = immediate_json(exchange.handle(response_headers(content_encoding=b"gzip")))
    assert status == 502
    assert envelope["error"]["code"] == "upstream_unreadable"
    assert "gzip" in envelope["error"]["message"]


def test_a_compressed_answer_without_response_policies_passes_unread() -> None:
    exchange = exchange_for(TABLE)
    exchange.handle(headers("POST", "/demo/chat/v1/chat/completions"))
    exchange.handle(body({"model": "mock-gpt", "messages": MESSAGES, "tools": TOOLS}))
    reply = exchange.handle(response_headers(content_encoding=b"gzip"))
    assert reply.WhichOneof("response") == "response_headers"
    assert not reply.HasField("mode_override")  # not buffered: it could not be read
    assert not exchange.buffered


TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {}}}]


def test_a_json_answer_to_a_request_with_tools_is_buffered_to_record_its_calls() -> None:
    exchange = exchange_for(TABLE)
    exchange.handle(headers("POST", "/demo/chat/v1/chat/completions"))
    exchange.handle(body({"model": "mock-gpt", "messages": MESSAGES, "tools": TOOLS}))
    reply = exchange.handle(response_headers())
    assert reply.mode_override.response_body_mode == ProcessingMode.BUFFERED
    answer = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
            }
        ]
    }
    exchange.handle(
        ext.ProcessingRequest(
            response_body=ext.HttpBody(body=orjson.dumps(answer), end_of_stream=True)
        )
    )
    record = exchange.record()
    assert record is not None and record.tool_calls == [{"name": "f", "arguments": "{}"}]


def json_answered(answer: bytes, **request: Any) -> tuple[Exchange, ext.ProcessingResponse]:
    """A routed non-streamed request, its JSON answer, and Weir's reply to that body."""
    exchange = exchange_for(TABLE)
    exchange.handle(headers("POST", "/demo/chat/v1/chat/completions"))
    exchange.handle(body({"model": "gpt-4o-mini", "messages": MESSAGES, **request}))
    reply = exchange.handle(response_headers())
    assert reply.mode_override.response_body_mode == ProcessingMode.BUFFERED
    return exchange, exchange.handle(
        ext.ProcessingRequest(response_body=ext.HttpBody(body=answer, end_of_stream=True))
    )


def replaced(reply: ext.ProcessingResponse) -> tuple[dict[str, str], bytes]:
    common = reply.response_body.response
    headers = {
        h.header.key: h.header.raw_value.decode() for h in common.header_mutation.set_headers
    }
    return headers, common.body_mutation.body


COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "mock-gpt",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello there, friend.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 1000,
        "completion_tokens": 200,
        "total_tokens": 1200,
        "prompt_tokens_details": {"cached_tokens": 400},
    },
}


def test_a_json_answer_leaves_with_its_usage_and_cost_in_headers_and_a_weir_object() -> None:
    raw = orjson.dumps(COMPLETION, option=orjson.OPT_INDENT_2) + b"\n"
    exchange, reply = json_answered(raw)
    sent_headers, sent = replaced(reply)
    # 600 x $2.50 + 400 x $1.25 + 200 x $10 per 1M tokens
    assert sent_headers["x-weir-cost-usd"] == "0.004"
    assert sent_headers["x-weir-usage-prompt-tokens"] == "1000"
    assert sent_headers["x-weir-usage-completion-tokens"] == "200"
    assert sent_headers["x-weir-usage-total-tokens"] == "1200"
    assert sent_headers["x-weir-usage-cached-tokens"] == "400"
    assert "x-weir-usage-estimated" not in sent_headers
    assert sent_headers["content-length"] == str(len(sent))
    completion = orjson.loads(sent)
    weir = completion.pop("weir")
    assert completion == COMPLETION  # the provider's answer is otherwise untouched
    assert sent.startswith(raw.rstrip()[:-1].rstrip())  # spliced in, not re-serialised
    assert weir["request_id"] == "req-1"
    assert (weir["backend"], weir["model"], weir["service_tier"]) == ("mock", "mock-gpt", None)
    assert weir["cost_usd"] == 0.004 and weir["latency_ms"] >= 0
    assert weir["usage"] == {
        "prompt_tokens": 1000,
        "completion_tokens": 200,
        "total_tokens": 1200,
        "cached_tokens": 400,
        "estimated": False,
    }
    record = exchange.record()
    assert record is not None
    assert (record.prompt_tokens, record.completion_tokens, record.cached_tokens) == (
        1000,
        200,
        400,
    )
    assert record.usage_estimated is False and record.cost_usd == 0.004


def test_an_answer_without_usage_is_estimated_and_marked_so() -> None:
    answer = {**COMPLETION}
    del answer["usage"]
    exchange, reply = json_answered(orjson.dumps(answer))
    sent_headers, sent = replaced(reply)
    assert sent_headers["x-weir-usage-estimated"] == "true"
    assert sent_headers["x-weir-usage-completion-tokens"] == "5"  # 20 characters
    weir = orjson.loads(sent)["weir"]
    assert weir["usage"]["estimated"] is True
    assert weir["usage"]["prompt_tokens"] > 0
    record = exchange.record()
    assert record is not None and record.usage_estimated is True
    assert exchange.used_tokens() is None  # a limit's reservation is not settled by a guess


def test_a_provider_error_passes_unread_and_records_no_usage() -> None:
    exchange = exchange_for(TABLE)
    exchange.handle(headers("POST", "/demo/chat/v1/chat/completions"))
    exchange.handle(body({"model": "mock-gpt", "messages": MESSAGES}))
    assert not exchange.handle(response_headers(b"500")).HasField("mode_override")
    record = exchange.record()
    assert record is not None and record.prompt_tokens is None and record.cost_usd is None


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        ("", "missing_api_key"),
        ("Basic abc", "malformed_api_key"),
        ("Bearer sk-not-a-weir-key", "malformed_api_key"),
        ("Bearer wk_demo_" + "Z" * 43, "invalid_api_key"),
    ],
)
def test_each_bad_key_is_a_401_with_its_own_code(authorization: str, code: str) -> None:
    exchange = exchange_for(TABLE)
    reply = exchange.handle(
        headers("POST", "/demo/chat/v1/chat/completions", authorization=authorization)
    )
    status, envelope = immediate_json(reply)
    assert (status, envelope["error"]["type"], envelope["error"]["code"]) == (
        401,
        "authentication_error",
        code,
    )
    assert immediate_headers(reply)["www-authenticate"].startswith(b"Bearer")
    validate_openapi(envelope, "ErrorResponse")


@pytest.mark.parametrize(
    ("key", "code"),
    [(OTHER_PROJECT_KEY, "wrong_project"), (NO_INFERENCE_KEY, "scope_insufficient")],
)
def test_a_key_of_another_project_or_without_the_scope_is_a_403(key: str, code: str) -> None:
    reply = exchange_for(TABLE).handle(
        headers("POST", "/demo/chat/v1/chat/completions", authorization=f"Bearer {key}")
    )
    status, envelope = immediate_json(reply)
    assert (status, envelope["error"]["code"]) == (403, code)


def test_errors_carry_the_correlation_headers() -> None:
    reply = exchange_for(TABLE).handle(
        headers("POST", "/demo/chat/v1/chat/completions", authorization="")
    )
    sent = immediate_headers(reply)
    assert sent["x-request-id"] == b"req-1"  # Envoy's request id
    assert len(sent["x-weir-trace-id"]) == 32
    assert len(sent["x-weir-session-id"]) == 36
    assert sent["x-weir-backend"] == b"none"


def test_responses_carry_ids_the_backend_and_the_clamp() -> None:
    exchange = exchange_for(TABLE)
    exchange.handle(
        headers(
            "POST",
            "/demo/chat/v1/chat/completions",
            traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
    )
    routed = exchange.handle(
        body({"model": "mock-gpt", "messages": MESSAGES, "max_tokens": 100_000})
    )
    assert orjson.loads(routed.request_body.response.body_mutation.body)["max_tokens"] == 4096
    reply = exchange.handle(response_headers())
    sent = set_headers(reply.response_headers.response)
    assert sent["x-weir-trace-id"] == b"0af7651916cd43dd8448eb211c80319c"
    assert sent["x-weir-backend"] == b"mock"
    assert sent["x-weir-max-tokens-clamped"] == b"100000"
    assert sent["x-request-id"] == b"req-1"


def test_a_token_limit_within_capacity_is_left_alone() -> None:
    exchange = exchange_for(TABLE)
    exchange.handle(headers("POST", "/demo/chat/v1/chat/completions"))
    routed = exchange.handle(
        body({"model": "mock-gpt", "messages": MESSAGES, "max_completion_tokens": 4096})
    )
    assert (
        orjson.loads(routed.request_body.response.body_mutation.body)["max_completion_tokens"]
        == 4096
    )
    sent = set_headers(exchange.handle(response_headers()).response_headers.response)
    assert "x-weir-max-tokens-clamped" not in sent


def test_head_is_204_and_wrong_content_type_415_and_too_large_413() -> None:
    head = exchange_for(TABLE).handle(headers("HEAD", "/demo/chat/v1/chat/completions", True))
    assert head.immediate_response.status.code == 204
    wrong = exchange_for(TABLE).handle(
        headers("POST", "/demo/chat/v1/chat/completions", **{"content-type": "text/plain"})
    )
    status, envelope = immediate_json(wrong)
    assert (status, envelope["error"]["code"]) == (415, "unsupported_media_type")
    large = exchange_for(TABLE).handle(
        headers("POST", "/demo/chat/v1/chat/completions", **{"content-length": str(2 << 20)})
    )
    status, envelope = immediate_json(large)
    assert (status, envelope["error"]["code"]) == (413, "request_too_large")


def test_a_client_session_must_be_a_uuid_and_is_kept() -> None:
    bad = exchange_for(TABLE).handle(
        headers("POST", "/demo/chat/v1/chat/completions", **{"x-weir-session-id": "abc"})
    )
    status, envelope = immediate_json(bad)
    assert (status, envelope["error"]["code"]) == (400, "invalid_session_id")
    session = "3B241101-E2BB-4255-8CAF-4136C566A962"
    exchange = exchange_for(TABLE)
    exchange.handle(
        headers("POST", "/demo/chat/v1/chat/completions", **{"x-weir-session-id": session})
    )
    exchange.handle(body({"model": "mock-gpt", "messages": MESSAGES}))
    sent = set_headers(exchange.handle(response_headers()).response_headers.response)
    assert sent["x-weir-session-id"] == session.lower().encode()


def test_turns_of_one_conversation_share_a_derived_session() -> None:
    def session_of(messages: list[dict[str, str]]) -> tuple[str, int]:
        exchange = exchange_for(TABLE)
        exchange.handle(headers("POST", "/demo/chat/v1/chat/completions"))
        exchange.handle(body({"model": "mock-gpt", "messages": messages}))
        return exchange.session_id, exchange.turn

    first = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    second = [*first, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "?"}]
    other = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Other"}]
    assert session_of(first)[0] == session_of(second)[0] != session_of(other)[0]
    assert (session_of(first)[1], session_of(second)[1]) == (1, 2)


def test_properties_are_checked_stripped_and_recorded() -> None:
    exchange = exchange_for(TABLE)
    first = exchange.handle(
        headers(
            "POST",
            "/demo/chat/v1/chat/completions",
            **{"x-weir-property-team": "blue", "x-weir-property-run": "7"},
        )
    )
    removed = set(first.request_headers.response.header_mutation.remove_headers)
    assert {"x-weir-property-team", "x-weir-property-run", "x-weir-session-id"} <= removed
    exchange.handle(body({"model": "gpt-4o-mini", "messages": MESSAGES}))
    exchange.handle(response_headers(b"200"))
    record = exchange.record()
    assert record is not None
    assert record.properties == {"team": "blue", "run": "7"}
    assert (record.project, record.endpoint, record.key_id) == ("demo", "demo-chat", "key_demo")
    assert (record.requested_model, record.served_model, record.backend) == (
        "gpt-4o-mini",
        "mock-gpt",
        "mock",
    )
    assert (record.status, record.turn, record.request_id) == (200, 1, "req-1")
    reserved = exchange_for(TABLE).handle(
        headers("POST", "/demo/chat/v1/chat/completions", **{"x-weir-property-policy_x": "1"})
    )
    status, envelope = immediate_json(reserved)
    assert (status, envelope["error"]["code"]) == (400, "reserved_property")


def test_a_refused_request_is_recorded_with_its_code_and_never_the_key() -> None:
    exchange = exchange_for(TABLE)
    exchange.handle(
        headers(
            "POST", "/demo/chat/v1/chat/completions", authorization="Bearer wk_demo_" + "Z" * 43
        )
    )
    record = exchange.record()
    assert record is not None
    assert (record.status, record.error_code, record.key_id) == (401, "invalid_api_key", "")
    assert "Z" * 43 not in repr(record)
    assert exchange_for(TABLE).record() is None  # nothing happened: nothing to record


def answered(table: RouteTable, **response: bytes) -> Exchange:
    exchange = exchange_for(table)
    exchange.handle(headers("POST", "/demo/chat/v1/chat/completions"))
    exchange.handle(body({"model": "mock-gpt", "messages": MESSAGES}))
    exchange.handle(response_headers(**response))
    return exchange


def whole_body(raw: bytes) -> ext.ProcessingRequest:
    return ext.ProcessingRequest(response_body=ext.HttpBody(body=raw, end_of_stream=True))


def test_response_policies_see_every_2xx_answer_whatever_its_content_type() -> None:
    for content_type in (b"application/json", b"Application/JSON; charset=utf-8", b"text/plain"):
        exchange = exchange_for(with_response_policy())
        exchange.handle(headers("POST", "/demo/chat/v1/chat/completions"))
        exchange.handle(body({"model": "mock-gpt", "messages": MESSAGES}))
        reply = exchange.handle(response_headers(status=b"201", content_type=content_type))
        assert reply.mode_override.response_body_mode == ProcessingMode.BUFFERED, content_type


def test_a_denied_whole_answer_is_replaced_by_a_403() -> None:
    exchange = answered(with_response_policy())
    refusal = {"choices": [{"index": 0, "message": {"role": "assistant", "refusal": "no"}}]}
    status, envelope = immediate_json(exchange.handle(whole_body(orjson.dumps(refusal))))
    assert status == 403
    assert envelope["error"]["type"] == "policy_violation"
    record = exchange.record()
    assert record is not None and record.policy_decisions[0]["result"] == "deny"


def test_an_answer_policies_cannot_read_is_a_502() -> None:
    exchange = answered(with_response_policy(), content_type=b"text/plain")
    status, envelope = immediate_json(exchange.handle(whole_body(b"plain words")))
    assert status == 502
    assert envelope["error"]["code"] == "upstream_unreadable"


def test_a_provider_error_passes_unread_even_with_response_policies() -> None:
    exchange = exchange_for(with_response_policy())
    exchange.handle(headers("POST", "/demo/chat/v1/chat/completions"))
    exchange.handle(body({"model": "mock-gpt", "messages": MESSAGES}))
    assert not exchange.handle(response_headers(status=b"500")).HasField("mode_override")


def test_a_stream_event_too_large_to_check_ends_the_stream_with_an_error_event() -> None:
    exchange = answered(with_response_policy(), content_type=b"text/event-stream")
    chunk = ext.ProcessingRequest(response_body=ext.HttpBody(body=b"data: " + b"x" * 600_000))
    first = exchange.handle(chunk).response_body.response.body_mutation
    assert first.clear_body  # held while it might still be one event
    second = exchange.handle(chunk).response_body.response.body_mutation
    assert second.body.startswith(b"event: error\ndata: ")
    assert b"upstream_unreadable" in second.body
    third = exchange.handle(chunk).response_body.response.body_mutation
    assert third.clear_body  # nothing more after the error


def test_response_policies_judge_the_candidate_that_answered() -> None:
    """A model with fallbacks: the answer came from the second candidate (Envoy says so
    in x-weir-candidate), so the response policies see that backend and model."""
    config = runtime()
    config.backends.append(
        runtime_pb2.Backend(
            name="spare",
            cluster="backend-spare",
            path_prefix="/v1",
            authority="127.0.0.1:9200",
            models=[runtime_pb2.BackendModel(name="spare-gpt")],
        )
    )
    config.endpoints[0].models.append(
        runtime_pb2.ModelRoute(
            name="resilient",
            targets=[
                runtime_pb2.ModelTarget(backend="mock", model="mock-gpt"),
                runtime_pb2.ModelTarget(backend="spare", model="spare-gpt"),
            ],
            fallback_cluster="fallback-demo-chat-2",
        )
    )
    config.policies.append(
        runtime_pb2.Policy(
            name="no-spare",
            stage=runtime_pb2.Policy.STAGE_RESPONSE,
            module="package no_spare\n\n"
            'deny contains "spare" if input.response.backend == "spare"\n',
            package="data.no_spare",
            endpoints=["demo-chat"],
        )
    )
    exchange = exchange_for(RouteTable.compile(config))
    exchange.handle(headers("POST", "/demo/chat/v1/chat/completions"))
    exchange.handle(body({"model": "resilient", "messages": MESSAGES}))
    exchange.handle(response_headers(x_weir_candidate=b"1", x_envoy_attempt_count=b"2"))
    reply = exchange.handle(
        ext.ProcessingRequest(
            response_body=ext.HttpBody(body=orjson.dumps(COMPLETION), end_of_stream=True)
        )
    )
    status, envelope = immediate_json(reply)
    assert (status, envelope["error"]["code"]) == (403, "policy_denied")
    record = exchange.record()
    assert record is not None
    assert (record.backend, record.served_model, record.attempts) == ("spare", "spare-gpt", 2)
