"""One attempt of a request for a model with fallbacks, as ext_proc's upstream filter
sees it.

A model with several candidates is served by one Envoy cluster holding candidate k's
provider at priority k; Envoy retries on the next priority. The upstream ext_proc filter
runs once per attempt, after Envoy chose the host, and the host's metadata names the
candidate: its backend and its model. Each attempt gets that backend's path, host and
provider key, the body's `model` for it, and max_tokens clamped to what it can
produce. Whatever else the request holds (checked, patched by policies, anonymised) is
the same for every attempt.
"""

from __future__ import annotations

import logging
from typing import Final

import orjson
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext
from google.protobuf import text_format

from extproc.chat_completions import API_PATH_HEADER, clamp_max_tokens
from extproc.envoy_messages import error_response, header_mutation, header_values
from extproc.errors import GatewayError, InternalError
from extproc.routes import RouteTableHolder, Target

log = logging.getLogger("weir.extproc.attempts")

ATTEMPT_METADATA: Final = ("x-weir-phase", "attempt")  # the upstream filter's gRPC metadata
CANDIDATE_HEADER: Final = "x-weir-candidate"  # on the answer: the candidate (0, 1, ...)
ATTEMPT_COUNT_HEADER: Final = "x-envoy-attempt-count"  # on each attempt: 1, 2, ...
HOST_METADATA: Final = "xds.upstream_host_metadata"
NAMESPACE: Final = "weir"

CONTINUE_REQUEST_BODY: Final = ext.ProcessingResponse(request_body=ext.BodyResponse())


class AttemptFailed(GatewayError):
    """502: the attempt cannot be prepared (the config changed under it)."""

    status = 502
    error_type = "server_error"
    code = "fallback_unavailable"


def candidate_of(message: ext.ProcessingRequest) -> dict[str, str]:
    """The `weir` metadata of the host this attempt goes to ({} when there is none).
    Envoy sends the host's Metadata message in protobuf text format."""
    for attributes in message.attributes.values():
        value = attributes.fields.get(HOST_METADATA)
        if value is None or not value.string_value:
            continue
        metadata = base_pb2.Metadata()
        try:
            text_format.Parse(value.string_value, metadata)
        except text_format.ParseError:
            log.warning("the upstream host metadata could not be read")
            return {}
        if NAMESPACE not in metadata.filter_metadata:
            return {}
        fields = metadata.filter_metadata[NAMESPACE].fields
        return {key: item.string_value for key, item in fields.items()}
    return {}


class Attempt:
    """The state of one attempt's upstream ext_proc stream. Every attempt is rewritten
    for its candidate, the first included: attempts share one set of request headers,
    so a retry that comes back to the first candidate (retries outnumbering the
    candidates) would otherwise carry the last one's key."""

    __slots__ = ("routes", "target")

    def __init__(self, routes: RouteTableHolder) -> None:
        self.routes = routes
        self.target: Target | None = None

    def handle(self, message: ext.ProcessingRequest) -> ext.ProcessingResponse:
        try:
            if message.HasField("request_headers"):
                return self.on_headers(message)
            if message.HasField("request_body"):
                return self.on_body(message.request_body)
        except GatewayError as error:
            return error_response(error)
        except Exception:
            log.exception("preparing an attempt failed")
            return error_response(
                InternalError("The gateway failed to prepare a fallback attempt.")
            )
        return CONTINUE_REQUEST_BODY

    def on_headers(self, message: ext.ProcessingRequest) -> ext.ProcessingResponse:
        candidate = candidate_of(message)
        # Kept for the attempts after this one: they share the request's headers, and
        # each sets its own path from it (the provider sees it, and ignores it).
        api_path, attempt = header_values(
            message.request_headers, API_PATH_HEADER, ATTEMPT_COUNT_HEADER
        )
        remove: list[str] = []
        if attempt == b"1" and candidate.get("candidate") == "0":
            # The first attempt, to the first candidate: the request as ext_proc routed
            # it (headers and body), nothing to rewrite or parse.
            return _headers_response([], remove)
        if not candidate:
            # Never guess: the request holds candidate 0's key, which no other provider
            # may see.
            raise AttemptFailed(
                "The gateway could not tell which provider this attempt goes to; the "
                "request was not sent."
            )
        table = self.routes.table
        target = (
            table.target(candidate.get("backend", ""), candidate.get("model", ""))
            if table is not None
            else None
        )
        if target is None or not api_path:
            raise AttemptFailed(
                f"The fallback to backend '{candidate.get('backend')}' is not configured "
                "any more; the request was not sent there."
            )
        self.target = target
        headers = [
            (":path", target.path_prefix.encode() + api_path),
            (":authority", target.authority.encode()),
        ]
        if target.authorization:
            headers.append(("authorization", target.authorization))
        else:
            remove.append("authorization")  # candidate 0's key is not this provider's
        return _headers_response(headers, remove)

    def on_body(self, message: ext.HttpBody) -> ext.ProcessingResponse:
        target = self.target
        if target is None:
            return CONTINUE_REQUEST_BODY
        body = orjson.loads(message.body)  # what ext_proc itself serialised
        renamed = body.get("model") != target.model
        body["model"] = target.model
        # The first candidate's clamp may be above what this one can produce.
        clamped = clamp_max_tokens(body, target.max_output_tokens)
        if not renamed and clamped is None:
            return CONTINUE_REQUEST_BODY
        new_body = orjson.dumps(body)
        common = ext.CommonResponse(
            header_mutation=header_mutation([("content-length", str(len(new_body)).encode())])
        )
        common.body_mutation.body = new_body
        return ext.ProcessingResponse(request_body=ext.BodyResponse(response=common))


def _headers_response(
    headers: list[tuple[str, bytes]], remove: list[str]
) -> ext.ProcessingResponse:
    return ext.ProcessingResponse(
        request_headers=ext.HeadersResponse(
            response=ext.CommonResponse(header_mutation=header_mutation(headers, remove))
        )
    )
