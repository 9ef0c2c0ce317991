"""The ExternalProcessor service: one state machine (`Exchange`) per HTTP stream.

Envoy opens one gRPC stream per HTTP request and sends, in order, the request headers,
the buffered request body, the response headers and (for SSE, after a mode override)
the response body chunks. Exactly one ProcessingResponse answers each message. An
ImmediateResponse ends the exchange before the upstream is called.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_grpc

from extproc import chat_completions
from extproc.envoy_messages import (
    CONTINUE_REQUEST_TRAILERS,
    CONTINUE_RESPONSE_BODY,
    CONTINUE_RESPONSE_HEADERS,
    CONTINUE_RESPONSE_TRAILERS,
    STREAM_RESPONSE_MODE,
    error_response,
    header_mutation,
    header_values,
    immediate,
)
from extproc.errors import (
    EndpointNotFound,
    GatewayError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    ModelNotFound,
    NotReady,
    UnknownURL,
)
from extproc.routes import EndpointRoutes, RouteTableHolder
from extproc.sse import SSEDecoder

log = logging.getLogger("weir.extproc")

HEALTH_PATH = "/healthz"
# An SSE event larger than this means the stream is not SSE: decoding stops (the bytes
# still pass through unchanged), so memory stays bounded.
MAX_SSE_EVENT_BYTES = 1 << 20


class Exchange:
    """What ext_proc knows about one HTTP request/response."""

    __slots__ = ("endpoint", "finished", "query", "routed", "routes", "sse", "table")

    def __init__(self, routes: RouteTableHolder) -> None:
        self.routes = routes
        self.table = routes.table
        self.endpoint: EndpointRoutes | None = None
        self.query = ""
        self.routed: chat_completions.RoutedRequest | None = None
        self.sse: SSEDecoder | None = None
        self.finished = False

    def handle(self, message: ext.ProcessingRequest) -> ext.ProcessingResponse:
        kind = message.WhichOneof("request")
        try:
            if kind == "request_headers":
                return self.on_request_headers(message.request_headers)
            if kind == "request_body":
                return self.on_request_body(message.request_body)
            if kind == "response_headers":
                return self.on_response_headers(message.response_headers)
            if kind == "response_body":
                return self.on_response_body(message.response_body)
        except GatewayError as error:
            self.finished = True
            return error_response(error)
        except Exception:
            # A bug must not become a gRPC error (Envoy would show its details to the
            # client): answer a plain 500 envelope and keep the details in the log.
            log.exception("ext_proc failed on a %s message", kind)
            self.finished = True
            return error_response(InternalError("The gateway failed to process the request."))
        if kind == "request_trailers":
            return CONTINUE_REQUEST_TRAILERS
        return CONTINUE_RESPONSE_TRAILERS

    def on_request_headers(self, message: ext.HttpHeaders) -> ext.ProcessingResponse:
        raw_method, raw_path = header_values(message, ":method", ":path")
        method = raw_method.decode("latin-1")
        path, _, self.query = (raw_path or b"/").decode("latin-1").partition("?")
        table = self.table
        if path == HEALTH_PATH:
            self.finished = True
            if table is None:
                return error_response(NotReady("Weir has not received its configuration yet."))
            body = b'{"status":"ok","config":"' + table.revision.encode() + b'"}'
            return immediate(200, body, "weir_healthz")
        if table is None:
            raise NotReady("Weir has not received its configuration yet.")
        parts = path.split("/", 4)
        if len(parts) < 4 or parts[3] != "v1":
            raise UnknownURL(f"Invalid URL ({method} {path})")
        endpoint = table.endpoint(parts[1], parts[2])
        if endpoint is None:
            raise EndpointNotFound(
                f"No endpoint is configured at /{parts[1]}/{parts[2]}/v1 "
                "(expected /{project}/{endpoint}/v1)."
            )
        self.endpoint = endpoint
        api = parts[4] if len(parts) == 5 else ""
        if api == chat_completions.API_PATH:
            if method != "POST":
                raise MethodNotAllowed(f"Method {method} is not allowed on {path}; use POST.")
            if message.end_of_stream:
                raise InvalidRequest("The request body is empty; expected a JSON object.")
            # The client's gateway key never goes upstream; the backend's key is set
            # once the backend is chosen. Nobody but ext_proc chooses the cluster.
            return ext.ProcessingResponse(
                request_headers=ext.HeadersResponse(
                    response=ext.CommonResponse(
                        header_mutation=header_mutation(
                            remove=(
                                "authorization",
                                table.cluster_header,
                                table.endpoint_header,
                            )
                        )
                    )
                )
            )
        if api == "models" or api.startswith("models/"):
            if method != "GET":
                raise MethodNotAllowed(f"Method {method} is not allowed on {path}; use GET.")
            self.finished = True
            if api == "models":
                return immediate(200, endpoint.models_body, "weir_models")
            model = api.removeprefix("models/")
            model_body = endpoint.model_body(model)
            if model_body is None:
                raise ModelNotFound(f"The model `{model}` does not exist.", param="model")
            return immediate(200, model_body, "weir_model")
        raise UnknownURL(f"Invalid URL ({method} {path})")

    def on_request_body(self, message: ext.HttpBody) -> ext.ProcessingResponse:
        if self.endpoint is None:
            # Only reachable if Envoy sent a body for a request we did not route:
            # never let it through unchecked.
            raise UnknownURL("Invalid URL")
        # The config may have changed while the body was uploading: route with the one in
        # force now (the clusters of the one at the headers may be gone from Envoy).
        table = self.routes.table
        assert table is not None
        endpoint = table.endpoint(self.endpoint.project, self.endpoint.slug)
        if endpoint is None:
            raise EndpointNotFound(
                f"The endpoint /{self.endpoint.project}/{self.endpoint.slug}/v1 was just removed."
            )
        routed = chat_completions.route(endpoint, message.body, table, self.query)
        self.routed = routed
        common = ext.CommonResponse(
            header_mutation=header_mutation(routed.headers), clear_route_cache=True
        )
        common.body_mutation.body = routed.body
        return ext.ProcessingResponse(request_body=ext.BodyResponse(response=common))

    def on_response_headers(self, message: ext.HttpHeaders) -> ext.ProcessingResponse:
        (content_type,) = header_values(message, "content-type")
        if content_type.startswith(b"text/event-stream"):
            # Stream the body through chunk by chunk: never buffer an SSE response.
            self.sse = SSEDecoder()
            return ext.ProcessingResponse(
                response_headers=ext.HeadersResponse(), mode_override=STREAM_RESPONSE_MODE
            )
        return CONTINUE_RESPONSE_HEADERS

    def on_response_body(self, message: ext.HttpBody) -> ext.ProcessingResponse:
        if self.sse is not None:
            self.sse.feed(message.body)
            if len(self.sse.pending) > MAX_SSE_EVENT_BYTES:
                # Not SSE after all (no event ends): stop decoding, keep passing through.
                self.sse = None
        return CONTINUE_RESPONSE_BODY


class ExternalProcessor(ext_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    def __init__(self, routes: RouteTableHolder) -> None:
        self._routes = routes

    async def Process(
        self,
        request_iterator: AsyncIterator[ext.ProcessingRequest],
        context: grpc.aio.ServicerContext[ext.ProcessingRequest, ext.ProcessingResponse],
    ) -> AsyncIterator[ext.ProcessingResponse]:
        exchange = Exchange(self._routes)
        async for message in request_iterator:
            yield exchange.handle(message)
            if exchange.finished:
                return
