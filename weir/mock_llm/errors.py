"""OpenAI-style error envelopes: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from starlette.responses import Response

__all__ = ["APIError", "error_body", "error_response"]

INVALID_REQUEST = "invalid_request_error"


class APIError(Exception):
    """An error to be answered with an OpenAI error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers) if headers else {}

    def to_response(self, extra_headers: Mapping[str, str] | None = None) -> Response:
        headers = self.headers
        if extra_headers:
            headers = {**headers, **extra_headers}
        return error_response(
            self.status,
            self.message,
            type=self.type,
            param=self.param,
            code=self.code,
            headers=headers,
        )


def error_body(
    message: str,
    *,
    type: str = INVALID_REQUEST,
    param: str | None = None,
    code: str | None = None,
) -> bytes:
    """The JSON bytes of an OpenAI error envelope."""
    return orjson.dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


def error_response(
    status: int,
    message: str,
    *,
    type: str = INVALID_REQUEST,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A JSON response carrying an OpenAI error envelope."""
    return Response(
        error_body(message, type=type, param=param, code=code),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )
