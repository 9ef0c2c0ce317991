"""The management HTTP API: list, create, get, revoke and rotate a project's API keys.

Callers authenticate with `Authorization: Bearer <key>`, an active key with the `management`
scope, and act only on their own project's keys (another project's key id answers 404). Every
error is an OpenAI error envelope in JSON. Store calls (blocking SQLite) run in a worker
thread; `on_change()` runs on the event loop after every successful write, so it must not block.
Keys are shown once, in the create and rotate responses; they and their hashes never appear in
an error message or a log line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Final, ParamSpec, TypeVar

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from controlplane.api_keys import KEY_PATTERN, SCOPES, StoredKey, key_hash, now_ms
from controlplane.errors import KeyNotFound, KeyStoreError, KeyStoreUnavailable
from controlplane.keystore import KeyStore
from controlplane.settings_store import SettingsInvalid, SettingsStore

__all__ = ["MAX_BODY_BYTES", "APIError", "create_app"]

log = logging.getLogger("weir.controlplane.management")

MAX_BODY_BYTES: Final = 64 * 1024
MANAGEMENT_SCOPE: Final = "management"
DEFAULT_GRACE_SECONDS: Final = 86_400
MAX_SECONDS: Final = 100 * 365 * 86_400  # keeps every timestamp well inside SQLite's INTEGER
MAX_NAME_LENGTH: Final = 128
INVALID_REQUEST: Final = "invalid_request_error"
AUTHENTICATION: Final = "authentication_error"
PERMISSION: Final = "permission_error"
SERVER: Final = "server_error"
_KEY_ID: Final = re.compile(r"^key_[0-9a-f]{16}$")
_SECRET_LIKE: Final = re.compile(r"[0-9A-Za-z]{16,}")  # redacts paths before echoing them

P = ParamSpec("P")
T = TypeVar("T")
Handler = Callable[[Request, StoredKey], Awaitable[Response]]


class APIError(Exception):
    """An error answered with an OpenAI error envelope."""

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
        self.headers = dict(headers or {})

    def response(self) -> Response:
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return _json(self.status, {"error": error}, self.headers)


def _json(status: int, body: object, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


def _safe_path(path: str) -> str:
    """A request path fit to echo: long alphanumeric runs (a key's secret) are cut out."""
    return _SECRET_LIKE.sub("…", path[:200])


def _unauthenticated(code: str, message: str) -> APIError:
    return APIError(
        401, message, type=AUTHENTICATION, code=code, headers={"WWW-Authenticate": "Bearer"}
    )


def _not_found(key_id: str) -> APIError:
    shown = f" {key_id}" if _KEY_ID.match(key_id) else ""
    return APIError(
        404, f"No API key{shown} in this project.", param="key_id", code="key_not_found"
    )


def _unavailable() -> APIError:
    return APIError(
        503,
        "The key store is unavailable; try again.",
        type=SERVER,
        code="store_unavailable",
        headers={"Retry-After": "1"},
    )


async def _call_store(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except KeyNotFound as error:
        raise _not_found(error.key_id) from None
    except KeyStoreError as error:
        if isinstance(error, KeyStoreUnavailable):
            log.error("the key store failed: %s", error)
            raise _unavailable() from None
        raise APIError(400, str(error), code="invalid_key_operation") from None
    except Exception as error:
        log.error("the key store failed: %s: %s", type(error).__name__, error)
        raise _unavailable() from None


def _bad(param: str | None, message: str, code: str = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def _check_fields(body: Mapping[str, object], allowed: tuple[str, ...]) -> None:
    for field in body:
        if field not in allowed:
            raise _bad(
                field[:64],
                f"Unknown parameter {field[:64]!r}; expected one of: {', '.join(allowed)}.",
                "unknown_parameter",
            )


def _seconds(body: Mapping[str, object], field: str, minimum: int) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(field, f"{field} must be an integer number of seconds.", "invalid_type")
    if not minimum <= value <= MAX_SECONDS:
        raise _bad(field, f"{field} must be between {minimum} and {MAX_SECONDS} seconds.")
    return value


def _name(body: Mapping[str, object]) -> str:
    value = body.get("name")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad("name", "name must be a string.", "invalid_type")
    if len(value) > MAX_NAME_LENGTH:
        raise _bad("name", f"name is at most {MAX_NAME_LENGTH} characters.")
    return value


def _scopes(body: Mapping[str, object]) -> tuple[str, ...]:
    value = body.get("scopes")
    if value is None:
        return ("inference",)
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise _bad("scopes", "scopes must be a list of strings.", "invalid_type")
    if not value:
        raise _bad("scopes", f"A key needs at least one scope: {', '.join(SCOPES)}.")
    unknown = [s for s in value if s not in SCOPES]
    if unknown:
        raise _bad("scopes", f"Unknown scope {unknown[0][:64]!r}; use {', '.join(SCOPES)}.")
    return tuple(value)


async def _read_object(request: Request) -> dict[str, object]:
    """The JSON object in the body: an empty body (e.g. a bare rotate) reads as `{}`."""
    content_type = request.headers.get("content-type")
    if content_type is not None:
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            raise APIError(
                415, "The request body must be application/json.", code="unsupported_media_type"
            )
    too_large = APIError(
        413, f"The request body is over {MAX_BODY_BYTES} bytes.", code="request_too_large"
    )
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise _bad(None, "Invalid Content-Length.", "invalid_request")
        if int(declared) > MAX_BODY_BYTES:
            raise too_large
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise too_large
    if not raw.strip():
        return {}
    if content_type is None:
        raise APIError(
            415, "The request body must be application/json.", code="unsupported_media_type"
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _bad(None, "The request body is not valid JSON.", "invalid_json") from None
    if not isinstance(body, dict):
        raise _bad(None, "The request body must be a JSON object.", "invalid_body")
    return body


class _ManagementAPI:
    def __init__(
        self,
        store: KeyStore,
        on_change: Callable[[], None],
        settings: SettingsStore | None = None,
    ) -> None:
        self.store = store
        self.on_change = on_change
        self.settings = settings

    def _changed(self) -> None:
        try:
            self.on_change()
        except Exception:
            log.exception("on_change failed after a key write; the watcher will catch up")

    async def authenticate(self, request: Request) -> StoredKey:
        header = request.headers.get("authorization", "").strip()
        if not header:
            raise _unauthenticated(
                "missing_api_key",
                "You didn't provide an API key: send 'Authorization: Bearer <key>'.",
            )
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer":
            raise _unauthenticated(
                "malformed_api_key", "Use the Bearer scheme: 'Authorization: Bearer <key>'."
            )
        if not token:
            raise _unauthenticated(
                "missing_api_key", "You didn't provide an API key after 'Bearer'."
            )
        if not KEY_PATTERN.match(token):
            raise _unauthenticated("malformed_api_key", "The API key is not a Weir key.")
        stored = await _call_store(self.store.find, key_hash(token))
        if stored is None:
            raise _unauthenticated("invalid_api_key", "Incorrect API key provided.")
        state = stored.state(now_ms())
        if state == "expired":
            raise _unauthenticated("expired_api_key", f"API key {stored.id} has expired.")
        if state == "revoked":
            raise _unauthenticated("revoked_api_key", f"API key {stored.id} has been revoked.")
        if MANAGEMENT_SCOPE not in stored.scopes:
            raise APIError(
                403,
                f"API key {stored.id} lacks the '{MANAGEMENT_SCOPE}' scope.",
                type=PERMISSION,
                code="scope_insufficient",
            )
        return stored

    def route(self, path: str, handlers: Mapping[str, Handler]) -> Route:
        methods = dict(handlers)
        if "GET" in methods:
            methods.setdefault("HEAD", methods["GET"])

        async def endpoint(request: Request) -> Response:
            try:
                caller = await self.authenticate(request)
                return await methods[request.method](request, caller)
            except APIError as error:
                return error.response()
            except Exception:
                log.exception("the management API failed on %s %s", request.method, path)
                return APIError(
                    500, "The management API failed.", type=SERVER, code="internal_error"
                ).response()

        return Route(path, endpoint, methods=list(methods))

    async def _own_key(self, request: Request, caller: StoredKey) -> StoredKey:
        key_id = str(request.path_params["key_id"])
        if not _KEY_ID.match(key_id):
            raise _not_found(key_id)
        stored = await _call_store(self.store.get, key_id)
        if stored is None or stored.project != caller.project:
            raise _not_found(key_id)
        return stored

    async def list_keys(self, request: Request, caller: StoredKey) -> Response:
        keys = await _call_store(self.store.list, caller.project)
        now = now_ms()
        return _json(200, {"object": "list", "data": [k.public(now) for k in keys]})

    async def create_key(self, request: Request, caller: StoredKey) -> Response:
        body = await _read_object(request)
        _check_fields(body, ("name", "scopes", "expires_in"))
        name, scopes = _name(body), _scopes(body)
        expires_in = _seconds(body, "expires_in", 1)
        expires_at_ms = None if expires_in is None else now_ms() + expires_in * 1000
        stored, key = await _call_store(
            self.store.create, caller.project, scopes, name=name, expires_at_ms=expires_at_ms
        )
        self._changed()
        log.info("API key %s created in project %s by %s", stored.id, stored.project, caller.id)
        return _json(201, {**stored.public(now_ms()), "key": key}, {"Cache-Control": "no-store"})

    async def get_key(self, request: Request, caller: StoredKey) -> Response:
        stored = await self._own_key(request, caller)
        return _json(200, stored.public(now_ms()))

    async def revoke_key(self, request: Request, caller: StoredKey) -> Response:
        stored = await self._own_key(request, caller)
        revoked = await _call_store(self.store.revoke, stored.id)
        self._changed()
        log.info("API key %s revoked in project %s by %s", stored.id, stored.project, caller.id)
        return _json(200, revoked.public(now_ms()))

    async def rotate_key(self, request: Request, caller: StoredKey) -> Response:
        stored = await self._own_key(request, caller)
        body = await _read_object(request)
        _check_fields(body, ("grace_period",))
        grace = _seconds(body, "grace_period", 0)
        grace_ms = (DEFAULT_GRACE_SECONDS if grace is None else grace) * 1000
        new, key = await _call_store(self.store.rotate, stored.id, grace_ms)
        self._changed()
        log.info(
            "API key %s rotated to %s in project %s by %s",
            stored.id,
            new.id,
            new.project,
            caller.id,
        )
        body_out = {**new.public(now_ms()), "key": key, "replaces": stored.id}
        return _json(201, body_out, {"Cache-Control": "no-store"})

    def _settings_store(self) -> SettingsStore:
        if self.settings is None:
            raise APIError(404, "Settings are not served here.", code="unknown_url")
        return self.settings

    async def get_pii_settings(self, request: Request, caller: StoredKey) -> Response:
        current = await _call_store(self._settings_store().pii, caller.project)
        return _json(
            200, {"object": "settings.pii", "project": caller.project, **current.as_json()}
        )

    async def patch_pii_settings(self, request: Request, caller: StoredKey) -> Response:
        store = self._settings_store()
        body = await _read_object(request)
        current = await _call_store(store.pii, caller.project)
        try:
            updated = current.patched(body)
        except SettingsInvalid as error:
            raise _bad(None, f"Invalid PII settings: {error}.", "invalid_settings") from None
        await _call_store(store.set_pii, caller.project, updated, now_ms())
        self._changed()
        log.info("PII settings of project %s changed by %s", caller.project, caller.id)
        return _json(
            200, {"object": "settings.pii", "project": caller.project, **updated.as_json()}
        )


async def _healthz(request: Request) -> Response:
    return _json(200, {"status": "ok"})


async def _http_error(request: Request, exc: Exception) -> Response:
    """The router's own 404 and 405, as envelopes."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    headers = exc.headers if isinstance(exc, HTTPException) else None
    where = f"{request.method} {_safe_path(request.url.path)}"
    if status == 405:
        error = APIError(
            405, f"Method not allowed: {where}.", code="method_not_allowed", headers=headers
        )
    elif status == 404:
        error = APIError(404, f"Unknown request URL: {where}.", code="unknown_url")
    else:
        error = APIError(status, f"Request failed: {where}.", headers=headers)
    return error.response()


def create_app(
    store: KeyStore, on_change: Callable[[], None], settings: SettingsStore | None = None
) -> Starlette:
    """The management API as an ASGI app over `store` (and the project `settings`);
    `on_change()` follows every write."""
    api = _ManagementAPI(store, on_change, settings)
    routes = [
        Route("/healthz", _healthz, methods=["GET"]),
        api.route("/v1/keys", {"GET": api.list_keys, "POST": api.create_key}),
        api.route("/v1/keys/{key_id}", {"GET": api.get_key, "DELETE": api.revoke_key}),
        api.route("/v1/keys/{key_id}/rotate", {"POST": api.rotate_key}),
        api.route(
            "/v1/settings/pii", {"GET": api.get_pii_settings, "PATCH": api.patch_pii_settings}
        ),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.router.redirect_slashes = False  # an API answers `/v1/keys/` with 404, not a redirect
    return app
