"""Errors a client sees, each rendered as the OpenAI error envelope.

`{"error": {"message", "type", "param", "code"}}` with the HTTP status the OpenAI API
uses for the same situation, so SDKs raise the exception users expect
(404 -> NotFoundError, 400 -> BadRequestError, ...).
"""

from __future__ import annotations

from typing import Any

import orjson


class GatewayError(Exception):
    """Base class: an error answered to the client before the upstream is called."""

    status: int = 500
    error_type: str = "server_error"
    code: str | None = None
    # Seconds after which a retry may succeed: `retry_after` in the envelope and the
    # Retry-After header. None: not retryable.
    retry_after: int | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def envelope(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.error_type,
            "param": self.param,
            "code": self.code,
        }
        if self.retry_after is not None:
            error["retry_after"] = self.retry_after
        return {"error": error}

    def body(self) -> bytes:
        return orjson.dumps(self.envelope())


class InvalidRequest(GatewayError):
    status = 400
    error_type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    """401: the SDK raises AuthenticationError. `code` says which way the key failed."""

    status = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    """403: the SDK raises PermissionDeniedError."""

    status = 403
    error_type = "permission_error"
    code = "permission_denied"


class PolicyDenied(PermissionDenied):
    """403 from a Rego policy's `deny`: the SDK raises PermissionDeniedError."""

    error_type = "policy_violation"
    code = "policy_denied"


class PolicyFailed(GatewayError):
    """500: a fail-closed policy could not be evaluated."""

    status = 500
    error_type = "server_error"
    code = "policy_error"


class NotFound(GatewayError):
    status = 404
    error_type = "invalid_request_error"


class EndpointNotFound(NotFound):
    code = "endpoint_not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class UnknownURL(NotFound):
    code = "unknown_url"


class PayloadTooLarge(GatewayError):
    status = 413
    error_type = "invalid_request_error"
    code = "request_too_large"


class UnsupportedMediaType(GatewayError):
    status = 415
    error_type = "invalid_request_error"
    code = "unsupported_media_type"


class MethodNotAllowed(GatewayError):
    status = 405
    error_type = "invalid_request_error"
    code = "method_not_allowed"


class UpstreamUnreadable(GatewayError):
    """502: the provider's answer cannot be inspected (e.g. compressed) though it must be."""

    status = 502
    error_type = "server_error"
    code = "upstream_unreadable"


class InternalError(GatewayError):
    status = 500
    error_type = "server_error"
    code = "internal_error"


class NotReady(GatewayError):
    status = 503
    error_type = "server_error"
    code = "gateway_not_ready"
