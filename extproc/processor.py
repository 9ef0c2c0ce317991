"""The ExternalProcessor service: one state machine (`Exchange`) per HTTP stream.

Envoy opens one gRPC stream per HTTP request and sends, in order, the request headers,
the buffered request body, the response headers and (for SSE, after a mode override)
the response body chunks. Exactly one ProcessingResponse answers each message. An
ImmediateResponse ends the exchange before the upstream is called.

Stages: request headers → ids, custom properties, the URL, the API key, the endpoint;
request body → validation, session, request policies (deny, patch), model routing,
max-tokens clamp; response headers → the ids on the response, SSE switched to STREAMED,
a JSON answer that may hold tool calls (or meets response policies) to BUFFERED;
response body → tool calls collected, response policies. When the gRPC stream ends, the
request's record is handed to the record sink (never blocking).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final, Protocol

import grpc
import orjson
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_grpc

from extproc import chat_completions, correlation
from extproc.accounting import (
    Metered,
    completion_tokens_of,
    estimated,
    metadata,
    reported,
    usage_headers,
)
from extproc.attempts import ATTEMPT_METADATA, CANDIDATE_HEADER, Attempt
from extproc.auth import INFERENCE_SCOPE, ROUTING_SCOPE, KeyIndexHolder, Principal, authorize
from extproc.chat_completions import TOKEN_LIMIT_FIELDS
from extproc.completion_watch import (
    MAX_RECORDED_CALLS,
    ResponseCheck,
    StreamWatch,
    completion_of,
    parse_completion,
)
from extproc.envoy_messages import (
    BUFFER_RESPONSE_MODE,
    CONTINUE_REQUEST_TRAILERS,
    CONTINUE_RESPONSE_BODY,
    CONTINUE_RESPONSE_TRAILERS,
    STREAM_RESPONSE_MODE,
    body_replacement,
    error_response,
    header_mutation,
    header_values,
    headers_and_prefixed,
    immediate,
    whole_body_replacement,
)
from extproc.errors import (
    AuthenticationFailed,
    EndpointNotFound,
    GatewayError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    ModelNotFound,
    NotReady,
    PayloadTooLarge,
    PolicyFailed,
    UnknownURL,
    UnsupportedMediaType,
    UpstreamUnreadable,
)
from extproc.limit_store import MemoryStore
from extproc.limits import Limiter, Usage, rate_limit_headers, refusal_headers
from extproc.pii_request import ANONYMIZE, PiiScan, PiiSettings, copy_messages, enforce, scan
from extproc.pii_response import SHOW_RAW_HEADER, StreamRewriter, restore_completion
from extproc.policies import Decision, apply_patch, evaluate
from extproc.policy_input import request_document
from extproc.project_settings import ProjectSettingsHolder
from extproc.records import RequestRecord
from extproc.routes import EndpointRoutes, RouteTableHolder, Target
from extproc.routing import (
    AUTO,
    EXPECTED_OUTPUT_TOKENS,
    FAILURE_PENALTY_MS,
    FORCE_HEADER,
    HINT_HEADERS,
    LatencyBoard,
    RoutingDecision,
    choose,
    parse_hints,
)
from extproc.tool_calls import ToolCall
from extproc.usage import DEFAULT_OUTPUT_RESERVATION, ask_for_usage, estimate_tokens

log = logging.getLogger("weir.extproc")

HEALTH_PATH: Final = "/healthz"
# An SSE event larger than this means the stream is not SSE: decoding stops (the bytes
# still pass through unchanged), so memory stays bounded.
MAX_SSE_EVENT_BYTES: Final = 1 << 20
NO_BACKEND: Final = b"none"
_REQUEST_HEADERS: Final = (
    ":method",
    ":path",
    "authorization",
    "content-type",
    "content-length",
    "x-weir-session-id",
    "traceparent",
    "x-request-id",
    SHOW_RAW_HEADER,
    FORCE_HEADER,
    *HINT_HEADERS,
)


class RecordSink(Protocol):
    def submit(self, record: RequestRecord) -> None: ...


class Exchange:
    """What ext_proc knows about one HTTP request/response."""

    __slots__ = (
        "attempts",
        "buffered",
        "candidates",
        "check",
        "clamped_from",
        "decision",
        "decisions",
        "endpoint",
        "error_code",
        "finished",
        "force",
        "forwarded",
        "hint_headers",
        "hold",
        "keys",
        "last_byte",
        "latency",
        "may_call_tools",
        "metered",
        "pii",
        "pii_scan",
        "prescanned",
        "principal",
        "project",
        "properties",
        "query",
        "request_id",
        "requested_model",
        "rewriter",
        "routed",
        "routes",
        "scanned",
        "served",
        "session_id",
        "settings",
        "show_raw",
        "started",
        "started_at",
        "status",
        "strip_usage",
        "table",
        "token_estimate",
        "tool_calls",
        "trace_id",
        "ttft_ms",
        "turn",
        "usage",
        "watch",
    )

    def __init__(
        self,
        routes: RouteTableHolder,
        keys: KeyIndexHolder,
        settings: ProjectSettingsHolder | None = None,
        latency: LatencyBoard | None = None,
    ) -> None:
        self.routes = routes
        self.keys = keys
        self.settings = settings
        self.latency = latency or LatencyBoard()
        self.table = routes.table
        self.endpoint: EndpointRoutes | None = None
        self.project = ""  # from the URL; set once the URL has the endpoint shape
        self.principal: Principal | None = None
        self.properties: dict[str, str] = {}
        self.query = ""
        self.routed: chat_completions.RoutedRequest | None = None
        self.requested_model = ""  # the model the client asked for, once the body is read
        self.show_raw = False  # X-Show-Raw-Prompt: true
        self.pii: PiiSettings | None = None  # the endpoint's PII policy
        self.pii_scan: PiiScan | None = None  # what it found in the request
        self.rewriter: StreamRewriter | None = None  # how a whole answer changes
        self.may_call_tools = False  # the request offered tools (or functions)
        self.check: ResponseCheck | None = None  # the endpoint's response policies
        self.watch: StreamWatch | None = None  # an SSE answer being followed
        self.buffered = False  # a JSON answer comes whole (BUFFERED)
        self.decisions: list[Decision] = []
        self.tool_calls: list[ToolCall] = []
        self.finished = False
        self.request_id = ""
        self.trace_id = ""
        self.session_id = ""
        self.turn = 0
        self.clamped_from: int | None = None
        self.status = 0
        self.error_code: str | None = None
        self.started = 0.0
        self.started_at = 0.0
        self.ttft_ms: float | None = None
        self.hold: Usage | None = None  # what the tier's limits hold for this request
        self.token_estimate = 0  # tokens reserved: prompt estimate + most output
        self.strip_usage = False  # Weir asked a stream for usage the client did not
        self.usage: Any = None  # the usage of a whole answer
        self.metered: Metered | None = None  # its usage as counted (or estimated)
        self.candidates: tuple[Target, ...] = ()  # of the model routed to
        self.served: Target | None = None  # the candidate that answered (first: routed)
        self.attempts = 1  # upstream attempts (more when fallbacks were tried)
        self.hint_headers: dict[str, bytes] = {}  # X-Weir-Routing-*, X-SLO-*
        self.force = b""  # X-Weir-Route-To: backend[/model]
        self.decision: RoutingDecision | None = None  # how model "auto" was resolved
        self.last_byte = 0.0  # perf_counter of the answer's last body chunk
        self.forwarded = 0.0  # perf_counter when the request went upstream
        self.prescanned: Prescanned | None = None  # a large body, parsed ahead
        self.scanned: Scanned | None = None  # and scanned ahead

    # --- dispatch -------------------------------------------------------------------------

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
            return self.fail(error)
        except Exception:
            # A bug must not become a gRPC error (Envoy would show its details to the
            # client): answer a plain 500 envelope and keep the details in the log.
            log.exception("ext_proc failed on a %s message", kind)
            return self.fail(InternalError("The gateway failed to process the request."))
        if kind == "request_trailers":
            return CONTINUE_REQUEST_TRAILERS
        return CONTINUE_RESPONSE_TRAILERS

    def fail(self, error: GatewayError) -> ext.ProcessingResponse:
        self.finished = True
        self.status = error.status
        self.error_code = error.code
        headers = self.correlation_headers()
        if isinstance(error, AuthenticationFailed):
            headers.append(("www-authenticate", b'Bearer realm="weir"'))
        headers.extend(refusal_headers(error))
        return error_response(error, headers)

    def correlation_headers(self) -> list[tuple[str, bytes]]:
        """The headers every response carries, errors included."""
        if not self.session_id:  # refused before the body could name the session
            self.session_id = correlation.new_session_id()
        headers = [
            ("x-request-id", self.request_id.encode()),
            ("x-weir-trace-id", self.trace_id.encode()),
            ("x-weir-session-id", self.session_id.encode()),
            (
                "x-weir-backend",
                self.served.backend.encode() if self.served else NO_BACKEND,
            ),
        ]
        if self.clamped_from is not None:
            headers.append(("x-weir-max-tokens-clamped", str(self.clamped_from).encode()))
        if self.endpoint is not None and self.endpoint.tier is not None:
            headers.append(("x-weir-service-tier", self.endpoint.tier.name.encode()))
        if self.decision is not None:
            headers.append(("x-weir-routing", self.decision.header()))
        headers.extend(rate_limit_headers(self.hold))
        return headers

    # --- request headers ------------------------------------------------------------------

    def on_request_headers(self, message: ext.HttpHeaders) -> ext.ProcessingResponse:
        self.started = time.perf_counter()
        self.started_at = time.time()
        (
            (
                raw_method,
                raw_path,
                authorization,
                content_type,
                length,
                session,
                traceparent,
                request_id,
                show_raw,
                self.force,
                *hint_values,
            ),
            property_headers,
        ) = headers_and_prefixed(message, _REQUEST_HEADERS, correlation.PROPERTY_PREFIX)
        self.hint_headers = {
            name: value for name, value in zip(HINT_HEADERS, hint_values, strict=True) if value
        }
        # Envoy's request id (it generates one, and returns it in the response), so that
        # Envoy's access log, Weir's records and the client all name a request alike.
        self.request_id = correlation.request_id_from(request_id)
        self.trace_id = correlation.trace_id_from(traceparent)
        self.show_raw = show_raw.strip().lower() == b"true"
        method = raw_method.decode("latin-1")
        path, _, self.query = (raw_path or b"/").decode("latin-1").partition("?")
        table = self.table
        if path == HEALTH_PATH:
            self.finished = True
            if table is None or self.keys.index is None:
                raise NotReady("Weir has not received its configuration yet.")
            body = b'{"status":"ok","config":"' + table.revision.encode() + b'"}'
            return immediate(200, body, "weir_healthz", self.correlation_headers())
        keys = self.keys.index
        if table is None or keys is None:
            raise NotReady("Weir has not received its configuration yet.")
        parts = path.split("/", 4)
        if len(parts) < 4 or parts[3] != "v1" or not parts[1] or not parts[2]:
            raise UnknownURL(f"Invalid URL ({method} {path})")
        self.project = parts[1]
        self.session_id = correlation.client_session_id(session) or ""
        self.properties = correlation.check_properties(property_headers)
        self.principal = keys.authenticate(authorization)
        endpoint = table.endpoint(parts[1], parts[2])
        if endpoint is None:
            raise EndpointNotFound(
                f"No endpoint is configured at /{parts[1]}/{parts[2]}/v1 "
                "(expected /{project}/{endpoint}/v1)."
            )
        self.endpoint = endpoint
        authorize(self.principal, endpoint.project, INFERENCE_SCOPE)
        api = parts[4] if len(parts) == 5 else ""
        if api == chat_completions.API_PATH:
            return self.chat_completions_headers(
                method, path, content_type, length, message.end_of_stream, property_headers
            )
        if api == "models" or api.startswith("models/"):
            if method != "GET":
                raise MethodNotAllowed(f"Method {method} is not allowed on {path}; use GET.")
            self.finished = True
            self.status = 200
            if api == "models":
                return immediate(
                    200, endpoint.models_body, "weir_models", self.correlation_headers()
                )
            model = api.removeprefix("models/")
            model_body = endpoint.model_body(model)
            if model_body is None:
                raise ModelNotFound(f"The model `{model}` does not exist.", param="model")
            return immediate(200, model_body, "weir_model", self.correlation_headers())
        raise UnknownURL(f"Invalid URL ({method} {path})")

    def chat_completions_headers(
        self,
        method: str,
        path: str,
        content_type: bytes,
        length: bytes,
        end_of_stream: bool,
        property_headers: list[tuple[str, bytes]],
    ) -> ext.ProcessingResponse:
        table = self.table
        assert table is not None
        if method == "HEAD":
            self.finished = True
            self.status = 204
            return ext.ProcessingResponse(
                immediate_response=ext.ImmediateResponse(
                    status={"code": 204},
                    headers=header_mutation(self.correlation_headers()),
                    details="weir_head",
                )
            )
        if method != "POST":
            raise MethodNotAllowed(f"Method {method} is not allowed on {path}; use POST.")
        if content_type and not content_type.split(b";", 1)[0].strip().lower().endswith(b"/json"):
            raise UnsupportedMediaType(
                f"Unsupported Content-Type '{content_type.decode('latin-1')[:100]}': send "
                "the request body as JSON with 'Content-Type: application/json'."
            )
        if table.max_request_bytes and length.isdigit() and int(length) > table.max_request_bytes:
            raise PayloadTooLarge(
                f"The request body is {int(length)} bytes; this gateway accepts at most "
                f"{table.max_request_bytes} bytes."
            )
        if end_of_stream:
            raise InvalidRequest("The request body is empty; expected a JSON object.")
        # The client's gateway key never goes upstream; the backend's key is set once the
        # backend is chosen. Nobody but ext_proc chooses the cluster. Weir's own request
        # headers stay with Weir.
        return ext.ProcessingResponse(
            request_headers=ext.HeadersResponse(
                response=ext.CommonResponse(
                    header_mutation=header_mutation(
                        remove=(
                            "authorization",
                            table.cluster_header,
                            table.endpoint_header,
                            "x-weir-session-id",
                            chat_completions.FALLBACK_HEADER,
                            chat_completions.API_PATH_HEADER,
                            chat_completions.STREAM_HEADER,
                            # Read above; Weir's own, not the provider's.
                            FORCE_HEADER,
                            *HINT_HEADERS,
                            # Weir reads answers (tool calls, response policies): ask
                            # the provider for them uncompressed.
                            "accept-encoding",
                            SHOW_RAW_HEADER,
                            *(name for name, _ in property_headers),
                        )
                    )
                )
            )
        )

    # --- request body ---------------------------------------------------------------------

    def on_request_body(self, message: ext.HttpBody) -> ext.ProcessingResponse:
        if self.endpoint is None or self.principal is None:
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
        prescanned, self.prescanned = self.prescanned, None
        body = prescanned.body if prescanned else chat_completions.parse_body(message.body)
        self.turn = correlation.turn_of(body)
        # A client's session id is kept; without one, the conversation names it.
        if not self.session_id:
            self.session_id = correlation.derive_session(
                endpoint.project, self.principal.key_id, body
            )
        weir = body.pop("weir", None)  # Weir's own request field: never sent upstream
        if weir is not None and not isinstance(weir, dict):
            raise InvalidRequest("weir must be an object.", param="weir")
        requested = body.get("model")
        if requested == AUTO and endpoint.auto is not None:
            self.decision = self.route_auto(endpoint, body, weir.get("routing") if weir else None)
            body["model"] = self.decision.model
        model, targets = chat_completions.check(endpoint, body)
        if self.force:
            targets = self.forced(endpoint, targets)
        self.requested_model = requested if isinstance(requested, str) else model
        pii = self.pii_settings(endpoint)
        anonymized = self.find_pii(pii, body) if pii is not None else None
        policies = endpoint.policies
        if policies.request or policies.response:
            document = request_document(
                body,
                self.principal,
                endpoint,
                self.properties,
                self.request_id,
                self.session_id,
                self.pii_scan,
            )
            if policies.request:
                outcome = evaluate(policies.request, document, self.decisions)
                if outcome.patch:
                    model, targets = self.apply_patch(endpoint, body, outcome.patch)
                    if "messages" in outcome.patch and pii is not None:
                        anonymized = self.find_pii(pii, body)
            if policies.response:
                target = targets[0]
                self.check = ResponseCheck(
                    policies.response,
                    {**document, "request": dict(body)},  # as sent, before the rename
                    target.backend,
                    target.model,
                    self.decisions,
                )
        if anonymized is not None:
            body["messages"] = anonymized  # the provider sees tags only
        self.may_call_tools = bool(body.get("tools") or body.get("functions"))
        tier = self.endpoint.tier  # as admitted at the headers
        if body.get("stream") is True:  # for the record, its cost and the tier's limits
            self.strip_usage = ask_for_usage(body)
        routed = chat_completions.route(endpoint, body, table, self.query, model, targets)
        self.routed = routed
        self.candidates = targets
        self.served = routed.target
        if tier is not None and tier.limits_tokens:
            most = next((body[f] for f in TOKEN_LIMIT_FIELDS if isinstance(body.get(f), int)), 0)
            output = most or routed.target.max_output_tokens or DEFAULT_OUTPUT_RESERVATION
            self.token_estimate = estimate_tokens(routed.body) + output
        self.clamped_from = routed.clamped_from
        common = ext.CommonResponse(
            header_mutation=header_mutation(routed.headers), clear_route_cache=True
        )
        common.body_mutation.body = routed.body
        self.forwarded = time.perf_counter()
        return ext.ProcessingResponse(request_body=ext.BodyResponse(response=common))

    def route_auto(
        self, endpoint: EndpointRoutes, body: dict[str, Any], body_hints: Any
    ) -> RoutingDecision:
        """Which endpoint model `model: "auto"` goes to, from the hints."""
        assert endpoint.auto is not None
        hints = parse_hints(body_hints, self.hint_headers, endpoint.auto.mode)
        most = next((body[f] for f in TOKEN_LIMIT_FIELDS if isinstance(body.get(f), int)), 0)
        models = {name: endpoint.models[name][0] for name in endpoint.auto.models}
        return choose(models, hints, self.latency, most or EXPECTED_OUTPUT_TOKENS)

    def forced(self, endpoint: EndpointRoutes, targets: tuple[Target, ...]) -> tuple[Target, ...]:
        """X-Weir-Route-To: backend[/model], one of the model's targets, for keys with
        the routing scope: that target only, no fallbacks."""
        assert self.principal is not None
        authorize(self.principal, endpoint.project, ROUTING_SCOPE)
        backend, _, model = self.force.decode("latin-1").strip().partition("/")
        chosen = [t for t in targets if t.backend == backend and (not model or t.model == model)]
        if not chosen:
            offered = ", ".join(f"{t.backend}/{t.model}" for t in targets)
            raise InvalidRequest(
                f"X-Weir-Route-To names no target of this model (its targets: {offered}).",
                param=FORCE_HEADER,
                code="invalid_route",
            )
        return (chosen[0],)

    def find_pii(self, pii: PiiSettings, body: dict[str, Any]) -> list[Any] | None:
        """Scan the messages; the anonymized copy to send when values were tagged.
        Raises PiiBlocked when the endpoint blocks what was found."""
        messages = body.get("messages")
        messages = messages if isinstance(messages, list) else []
        anonymize = pii.action == ANONYMIZE
        self.pii = pii
        done = self.scanned
        if done is not None and done.settings == pii and done.messages is messages:
            working, found = done.working, done.outcome  # scanned on the worker thread
        else:
            working = copy_messages(messages) if anonymize else messages
            found = scan(working, pii)
        self.scanned = None
        if isinstance(found, GatewayError):
            raise found
        self.pii_scan = found
        enforce(found, pii)
        return working if anonymize and found.book else None

    def pii_settings(self, endpoint: EndpointRoutes) -> PiiSettings | None:
        """The PII settings in force for the endpoint: its policy, then its project's."""
        index = self.settings.index if self.settings is not None else None
        return index.effective_pii(endpoint.project, endpoint.pii) if index else endpoint.pii

    def prescan(self, message: ext.HttpBody) -> None:
        """What `on_request_body` would do first with a large body, done ahead on a worker
        thread: parse it and scan it for personal data (pure Python). The rest, policies
        included (a regorus engine works only on the thread that made it), stays on the
        loop. Anything wrong here is left for `on_request_body` to find and report."""
        table = self.routes.table
        if self.endpoint is None or self.principal is None or table is None:
            return
        endpoint = table.endpoint(self.endpoint.project, self.endpoint.slug)
        try:
            body = chat_completions.parse_body(message.body)
        except GatewayError:
            return
        self.prescanned = Prescanned(body)
        pii = self.pii_settings(endpoint) if endpoint is not None else None
        messages = body.get("messages")
        if pii is None or not isinstance(messages, list):
            return
        working = copy_messages(messages) if pii.action == ANONYMIZE else messages
        outcome: PiiScan | GatewayError
        try:
            outcome = scan(working, pii)
        except GatewayError as error:
            outcome = error
        self.scanned = Scanned(pii, messages, working, outcome)

    def rewrites_answer(self) -> StreamRewriter | None:
        """How the answer must change for PII (tags restored, the transparency object),
        or None when it need not."""
        pii, found = self.pii, self.pii_scan
        if pii is None or found is None:
            return None
        restore = pii.action == ANONYMIZE and pii.restore and bool(found.book)
        if not (restore or self.show_raw):
            return None
        return StreamRewriter(found, restore, self.show_raw)

    def apply_patch(
        self, endpoint: EndpointRoutes, body: dict[str, Any], patch: dict[str, Any]
    ) -> tuple[str, tuple[Target, ...]]:
        """Apply the request policies' patch, then check the request again: a patch that
        breaks the request is the policy's fault (500 policy_error), not the client's."""
        apply_patch(body, patch)
        try:
            orjson.dumps(body)
            return chat_completions.check(endpoint, body)
        except (GatewayError, orjson.JSONEncodeError) as error:
            patchers = [d.policy for d in self.decisions if d.patched]
            raise PolicyFailed(
                f"The request as patched by policy {', '.join(patchers)} is not valid: "
                f"{error.message if isinstance(error, GatewayError) else error}"
            ) from None

    # --- response -------------------------------------------------------------------------

    def on_response_headers(self, message: ext.HttpHeaders) -> ext.ProcessingResponse:
        status, content_type, encoding, candidate, attempts = header_values(
            message,
            ":status",
            "content-type",
            "content-encoding",
            CANDIDATE_HEADER,
            "x-envoy-attempt-count",
        )
        self.status = int(status) if status.isdigit() else 0
        if candidate.isdigit() and int(candidate) < len(self.candidates):
            self.served = self.candidates[int(candidate)]  # a fallback answered
            if self.check is not None:  # response policies judge who answered
                self.check.backend, self.check.model = self.served.backend, self.served.model
        if attempts.isdigit():
            self.attempts = int(attempts)
        common = ext.CommonResponse(
            header_mutation=header_mutation(self.correlation_headers(), (CANDIDATE_HEADER,))
        )
        headers = ext.HeadersResponse(response=common)
        # An answer (2xx) to a routed request; the provider's errors pass as they are.
        answer = self.routed is not None and 200 <= self.status < 300
        if not answer:
            if content_type.lower().startswith(b"text/event-stream"):
                return ext.ProcessingResponse(
                    response_headers=headers, mode_override=STREAM_RESPONSE_MODE
                )
            return ext.ProcessingResponse(response_headers=headers)
        rewriter = self.rewrites_answer()
        if encoding and encoding.strip().lower() != b"identity":
            if self.check is not None or rewriter is not None:
                # Never let an answer that response policies must see through unseen.
                raise UpstreamUnreadable(
                    "The provider answered with Content-Encoding "
                    f"'{encoding.decode('latin-1')[:40]}', which Weir cannot inspect; "
                    "this endpoint's response policies or PII restoration need the answer "
                    "uncompressed."
                )
            return ext.ProcessingResponse(response_headers=headers)
        media_type = content_type.split(b";", 1)[0].strip().lower()
        if media_type == b"text/event-stream":
            # Stream the body through chunk by chunk: never buffer an SSE response.
            self.watch = StreamWatch(self.check, rewriter, strip_usage=self.strip_usage)
            return ext.ProcessingResponse(
                response_headers=headers, mode_override=STREAM_RESPONSE_MODE
            )
        self.rewriter = rewriter
        if self.check is not None or rewriter is not None or media_type.endswith(b"json"):
            # The answer comes whole: its usage and cost go in its headers and its `weir`
            # object; its tool calls are recorded; response policies check it before any
            # of it reaches the client.
            self.buffered = True
            return ext.ProcessingResponse(
                response_headers=headers, mode_override=BUFFER_RESPONSE_MODE
            )
        return ext.ProcessingResponse(response_headers=headers)

    def on_response_body(self, message: ext.HttpBody) -> ext.ProcessingResponse:
        if message.body:
            self.last_byte = time.perf_counter()
            if self.ttft_ms is None:
                self.ttft_ms = (self.last_byte - self.started) * 1000
        watch = self.watch
        if watch is not None:
            replacement = watch.feed(message.body, message.end_of_stream)
            if len(watch.pending) > MAX_SSE_EVENT_BYTES:
                if watch.check is not None:
                    # An event too large to be SSE: what policies cannot read, they
                    # cannot allow. The stream ends here.
                    replacement = (replacement or b"") + watch.abort(
                        UpstreamUnreadable(
                            f"The provider sent a stream event over {MAX_SSE_EVENT_BYTES} "
                            "bytes, which the response policies of this endpoint cannot "
                            "check; the stream was stopped."
                        )
                    )
                else:  # not SSE after all: stop following, keep passing it through
                    self.watch = None
            if replacement is None:
                return CONTINUE_RESPONSE_BODY
            return body_replacement(replacement)
        if self.buffered:
            self.buffered = False
            parsed = parse_completion(message.body)
            if parsed is None:
                if self.check is not None or self.rewriter is not None:
                    # What policies must check or PII must restore cannot pass unread.
                    raise UpstreamUnreadable(
                        "The provider's answer is not a chat completion Weir can read, and "
                        "this endpoint's response policies or PII restoration need it."
                    )
                return CONTINUE_RESPONSE_BODY
            if self.rewriter is not None:
                rewriter = self.rewriter
                restore_completion(parsed, rewriter.scan, rewriter.restore, rewriter.show_raw)
            completion = completion_of(parsed)
            self.tool_calls = completion.calls
            self.usage = completion.usage
            if self.check is not None:
                self.check.run(
                    completion.choices, completion.calls, completion.usage, complete=True
                )
            return self.account(message.body, parsed, completion.choices)
        return CONTINUE_RESPONSE_BODY

    def account(
        self, body: bytes, parsed: dict[str, Any], choices: list[dict[str, Any]]
    ) -> ext.ProcessingResponse:
        """A whole answer with its usage and cost: in headers, and in a `weir` object
        added to the body (after any change made to `parsed`)."""
        routed, served = self.routed, self.served
        assert routed is not None and served is not None
        metered = reported(self.usage) or estimated(routed.body, completion_tokens_of(choices))
        self.metered = metered
        cost = metered.cost(served.prices)
        tier = self.endpoint.tier if self.endpoint is not None else None
        weir = orjson.dumps(
            metadata(
                self.request_id,
                served.backend,
                served.model,
                tier.name if tier is not None else None,
                (time.perf_counter() - self.started) * 1000,
                metered,
                cost,
            )
        )
        end = body.rstrip().rfind(b"}")
        if self.rewriter is None and "weir" not in parsed and end > 0:
            # Spliced in: the provider's bytes otherwise pass as they came.
            head = body[:end].rstrip()
            separator = b"" if head.endswith(b"{") else b","
            new_body = head + separator + b'"weir":' + weir + b"}"
        else:
            parsed["weir"] = orjson.Fragment(weir)
            new_body = orjson.dumps(parsed)
        return whole_body_replacement(new_body, usage_headers(metered, cost))

    def observe_latency(self) -> None:
        """Feed the latency board (model "auto"): an answer's time to its first byte from
        when it was forwarded, and a stream's time per output token after that. A model
        whose provider failed (5xx, 429) is charged a penalty, so that it is not taken for
        fast because it never answers; an answer that took several attempts says nothing
        of the one that gave it, only that the first one failed."""
        served, ttft = self.served, self.ttft_ms
        if served is None or not self.candidates or not self.forwarded:
            return
        first_choice = self.candidates[0]
        if self.status >= 500 or self.status == 429 or self.attempts > 1:
            self.latency.observe(first_choice, FAILURE_PENALTY_MS)
            return
        if ttft is None or not 200 <= self.status < 300:
            return
        first = self.started + ttft / 1000
        tpot = None
        metered = self.answer_usage()
        if self.watch is not None and metered is not None and metered.completion_tokens > 1:
            tpot = (self.last_byte - first) * 1000 / (metered.completion_tokens - 1)
        self.latency.observe(served, (first - self.forwarded) * 1000, tpot)

    def answer_usage(self) -> Metered | None:
        """The usage of a routed answer, once it is over: counted when the body was
        buffered, else from a stream's usage chunk or estimated from its chunks."""
        if self.metered is not None or self.routed is None or not 200 <= self.status < 300:
            return self.metered
        watch = self.watch
        if watch is None:
            return None
        return reported(watch.usage) or estimated(self.routed.body, max(0, watch.chunks - 1))

    # --- the record -----------------------------------------------------------------------

    def pii_record(self) -> dict[str, Any]:
        """Types and counts found, never values."""
        if self.pii is None or self.pii_scan is None:
            return {}
        return {
            "policy": self.pii.name,
            "action": self.pii.action,
            "entities": self.pii_scan.counts(),
            "art9": self.pii_scan.art9_counts(),
        }

    def tool_call_records(self) -> list[dict[str, Any]]:
        """The model's tool calls for the record, personal data tagged again."""
        calls = [call.as_record() for call in self.recorded_calls()[:MAX_RECORDED_CALLS]]
        book = self.pii_scan.book if self.pii_scan is not None else None
        if book:
            for call in calls:
                call["arguments"] = book.conceal(call["arguments"])
        return calls

    def recorded_calls(self) -> list[ToolCall]:
        """The model's tool calls, also when the stream was cut short."""
        return self.watch.tool_calls() if self.watch is not None else self.tool_calls

    def used_tokens(self) -> int | None:
        """The tokens this request used, to settle its reservation: the provider's usage;
        0 when it answered with an error (nothing generated); None when unknown."""
        if self.routed is None or not 200 <= self.status < 300:
            return 0
        usage = self.watch.usage if self.watch is not None else self.usage
        total = usage.get("total_tokens") if isinstance(usage, dict) else None
        return total if isinstance(total, int) and total >= 0 else None

    def record(self) -> RequestRecord | None:
        """The request's record, once the exchange is over; None for what is not an API
        request (health checks, URLs without a project)."""
        if not self.project:
            return None
        routed = self.routed
        if not self.session_id:
            self.session_id = correlation.new_session_id()
        tier = self.endpoint.tier if self.endpoint is not None else None
        metered = self.answer_usage()
        served = self.served
        return RequestRecord(
            request_id=self.request_id,
            trace_id=self.trace_id,
            session_id=self.session_id,
            turn=self.turn,
            project=self.project,
            endpoint=self.endpoint.name if self.endpoint else "",
            key_id=self.principal.key_id if self.principal else "",
            requested_model=self.requested_model,
            served_model=served.model if served else "",
            backend=served.backend if served else "",
            status=self.status,
            stream=bool(routed and routed.stream),
            started_at=self.started_at,
            latency_ms=(time.perf_counter() - self.started) * 1000,
            ttft_ms=self.ttft_ms,
            properties=self.properties,
            error_code=self.error_code,
            policy_decisions=[decision.as_record() for decision in self.decisions],
            pii=self.pii_record(),
            tool_calls=self.tool_call_records(),
            tier=tier.name if tier is not None else None,
            prompt_tokens=metered.prompt_tokens if metered else None,
            completion_tokens=metered.completion_tokens if metered else None,
            cached_tokens=metered.cached_tokens if metered else None,
            usage_estimated=metered.estimated if metered else None,
            cost_usd=round(metered.cost(served.prices), 10) if metered and served else None,
            attempts=self.attempts if routed else None,
            routing=self.decision.as_record() if self.decision else None,
        )


LARGE_BODY_BYTES: Final = 16 * 1024
"""A request body this large is parsed and scanned for personal data on a worker thread,
not the event loop: scanning costs 0.2-1.5 ms per KiB, which on the loop would stall
every other request of this replica (a 1 MB prompt: up to a second or more). Smaller
bodies stay on the loop, where they cost less than a thread hop."""


def large_body_executor() -> ThreadPoolExecutor:
    """One worker: large bodies take turns (the GIL would serialise them anyway), while
    the loop keeps serving everything else between the worker's GIL slices."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="weir-large-body")


@dataclass(frozen=True, slots=True)
class Prescanned:
    """A large request body, parsed on the worker thread."""

    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Scanned:
    """Its messages, scanned on the worker thread with `settings`: used if the settings
    in force and the messages are still these when the loop handles the body."""

    settings: PiiSettings
    messages: list[Any]  # as parsed: a policy patch that replaces them means a new scan
    working: list[Any]  # what to send upstream (tagged when anonymizing)
    outcome: PiiScan | GatewayError


class ExternalProcessor(ext_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    async def _limit(
        self, exchange: Exchange, message: ext.ProcessingRequest, response: ext.ProcessingResponse
    ) -> ext.ProcessingResponse:
        """The tier's limits: a request and a concurrency slot once the headers are
        accepted, its tokens once the body is routed. Over a limit: the 429 instead."""
        endpoint, principal = exchange.endpoint, exchange.principal
        tier = endpoint.tier if endpoint is not None else None
        if tier is None or principal is None or endpoint is None:
            return response
        try:
            if message.HasField("request_headers"):
                exchange.hold = await self._limiter.admit(tier, principal.key_id, endpoint.project)
            elif (
                message.HasField("request_body")
                and exchange.hold is not None
                and exchange.token_estimate
            ):
                await self._limiter.reserve(
                    tier, principal.key_id, endpoint.project, exchange.hold, exchange.token_estimate
                )
                # the token headers go on the answer: the body response cannot set them
        except GatewayError as error:  # RateLimited, or LimitsUnavailable failing closed
            return exchange.fail(error)
        return response

    def __init__(
        self,
        routes: RouteTableHolder,
        keys: KeyIndexHolder,
        records: RecordSink | None = None,
        settings: ProjectSettingsHolder | None = None,
        large_bodies: Executor | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        self._routes = routes
        self._keys = keys
        self._records = records
        self._settings = settings or ProjectSettingsHolder()
        self._large_bodies = large_bodies or large_body_executor()
        self._limiter = limiter or Limiter(MemoryStore())
        self._settling: set[asyncio.Task[None]] = set()
        self._latency = LatencyBoard()  # what each backend's models have shown lately

    async def Process(
        self,
        request_iterator: AsyncIterator[ext.ProcessingRequest],
        context: grpc.aio.ServicerContext[ext.ProcessingRequest, ext.ProcessingResponse],
    ) -> AsyncIterator[ext.ProcessingResponse]:
        metadata = context.invocation_metadata() if context is not None else None
        if metadata and ATTEMPT_METADATA in metadata:
            attempt = Attempt(self._routes)  # the upstream filter, once per attempt
            async for message in request_iterator:
                yield attempt.handle(message)
            return
        exchange = Exchange(self._routes, self._keys, self._settings, self._latency)
        try:
            loop = asyncio.get_running_loop()
            async for message in request_iterator:
                if (
                    message.HasField("request_body")
                    and len(message.request_body.body) >= LARGE_BODY_BYTES
                ):
                    body = message.request_body
                    await loop.run_in_executor(self._large_bodies, exchange.prescan, body)
                response = exchange.handle(message)
                if not exchange.finished:
                    response = await self._limit(exchange, message, response)
                yield response
                if exchange.finished:
                    return
        finally:
            if exchange.hold is not None:
                settle = asyncio.ensure_future(
                    self._limiter.finish(exchange.hold, exchange.used_tokens())
                )
                self._settling.add(settle)  # a reference until it is done
                settle.add_done_callback(self._settling.discard)
            try:
                exchange.observe_latency()
            except Exception:  # a bug here must cost the routing sample, not the record
                log.exception("measuring an answer's latency failed")
            if self._records is not None:
                record = exchange.record()
                if record is not None:
                    self._records.submit(record)
