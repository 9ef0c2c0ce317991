"""Small builders and readers for ext_proc protocol messages.

Header values travel in `raw_value` (bytes), both ways.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext
from envoy.type.v3 import http_status_pb2

from extproc.errors import GatewayError

ProcessingMode = processing_mode_pb2.ProcessingMode
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def header_values(headers: ext.HttpHeaders, *names: str) -> list[bytes]:
    """The raw values of the (lower-case) `names`, b"" where absent; one pass that stops
    when all are found, and no dict of every header on the hot path."""
    found = [b""] * len(names)
    missing = len(names)
    for header in headers.headers.headers:
        if header.key in names:
            index = names.index(header.key)
            if not found[index]:
                missing -= 1
            found[index] = header.raw_value or header.value.encode()
            if not missing:
                break
    return found


@cache
def _positions(names: tuple[str, ...]) -> dict[str, int]:
    """Where each name is in `names` (the callers pass module-level tuples: one dict
    each, made once)."""
    return {name: index for index, name in enumerate(names)}


def headers_and_prefixed(
    headers: ext.HttpHeaders, names: tuple[str, ...], prefix: str
) -> tuple[list[bytes], list[tuple[str, bytes]]]:
    """The raw values of `names` (b"" where absent) and every header whose (lower-case)
    name starts with `prefix`, in one pass over the headers."""
    found = [b""] * len(names)
    prefixed: list[tuple[str, bytes]] = []
    positions = _positions(names)
    for header in headers.headers.headers:
        key = header.key
        position = positions.get(key)
        if position is not None:
            found[position] = header.raw_value or header.value.encode()
        elif key.startswith(prefix):
            prefixed.append((key, header.raw_value or header.value.encode()))
    return found, prefixed


def set_header(key: str, value: bytes) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, raw_value=value), append_action=_OVERWRITE
    )


def header_mutation(
    set_headers: Iterable[tuple[str, bytes]] = (), remove: Iterable[str] = ()
) -> ext.HeaderMutation:
    return ext.HeaderMutation(
        set_headers=[set_header(k, v) for k, v in set_headers], remove_headers=list(remove)
    )


def immediate(
    status: int, body: bytes, details: str, headers: Iterable[tuple[str, bytes]] = ()
) -> ext.ProcessingResponse:
    """An answer from ext_proc itself. `details` (Envoy's response code details) must
    start with "weir_": Envoy's local-reply mappers leave those replies alone."""
    all_headers = [("content-type", b"application/json"), *headers]
    return ext.ProcessingResponse(
        immediate_response=ext.ImmediateResponse(
            status=http_status_pb2.HttpStatus(code=status),
            headers=header_mutation(all_headers),
            body=body,
            details=details,
        )
    )


def error_response(
    error: GatewayError, headers: Iterable[tuple[str, bytes]] = ()
) -> ext.ProcessingResponse:
    return immediate(error.status, error.body(), f"weir_{error.code or 'error'}", headers)


CONTINUE_RESPONSE_HEADERS = ext.ProcessingResponse(response_headers=ext.HeadersResponse())
CONTINUE_RESPONSE_BODY = ext.ProcessingResponse(response_body=ext.BodyResponse())
CONTINUE_REQUEST_TRAILERS = ext.ProcessingResponse(request_trailers=ext.TrailersResponse())
CONTINUE_RESPONSE_TRAILERS = ext.ProcessingResponse(response_trailers=ext.TrailersResponse())


def body_replacement(body: bytes) -> ext.ProcessingResponse:
    """Answer a response body chunk with other bytes (maybe none)."""
    mutation = ext.BodyMutation(body=body) if body else ext.BodyMutation(clear_body=True)
    return ext.ProcessingResponse(
        response_body=ext.BodyResponse(response=ext.CommonResponse(body_mutation=mutation))
    )


def _response_body_mode(body_mode: int) -> processing_mode_pb2.ProcessingMode:
    """The complete mode with `body_mode` for the response body: mode_override is
    applied literally, so every field is spelled out."""
    mode: processing_mode_pb2.ProcessingMode = ProcessingMode(
        request_header_mode=ProcessingMode.SEND,
        response_header_mode=ProcessingMode.SEND,
        request_body_mode=ProcessingMode.BUFFERED,
        response_body_mode=body_mode,
        request_trailer_mode=ProcessingMode.SKIP,
        response_trailer_mode=ProcessingMode.SKIP,
    )
    return mode


def whole_body_replacement(
    body: bytes, headers: list[tuple[str, bytes]] | None = None
) -> ext.ProcessingResponse:
    """Answer a BUFFERED response body with another one, its length and `headers` (the
    response headers are still held, so they can change)."""
    return ext.ProcessingResponse(
        response_body=ext.BodyResponse(
            response=ext.CommonResponse(
                header_mutation=header_mutation(
                    [("content-length", str(len(body)).encode()), *(headers or [])]
                ),
                body_mutation=ext.BodyMutation(body=body),
            )
        )
    )


# A streamed (SSE) response goes through chunk by chunk.
STREAM_RESPONSE_MODE = _response_body_mode(ProcessingMode.STREAMED)
# A JSON response that must be seen whole before the client gets any of it.
BUFFER_RESPONSE_MODE = _response_body_mode(ProcessingMode.BUFFERED)
