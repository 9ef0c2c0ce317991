"""A small in-memory Kubernetes API server for the tests, speaking the real REST protocol.

No kube-apiserver can run on this machine (no container runtime, no binary in the package
registries we reach), so the control plane's Kubernetes source is tested against this:
an HTTP/1.1 server that answers the requests the official `kubernetes` client makes, with
the API server's wire format:

- list: `GET /apis/{group}/{version}/namespaces/{ns}/{plural}` (and `/api/v1/.../secrets`)
  returns a `...List` with `metadata.resourceVersion`;
- watch: the same with `?watch=true&resourceVersion=N` streams newline-delimited JSON
  events (ADDED, MODIFIED, DELETED) with chunked encoding until `timeoutSeconds`, and a
  BOOKMARK carrying the current resourceVersion after each quiet `bookmark_interval_s`
  when the client allows bookmarks; a resourceVersion older than the last compaction
  gets the API server's answer, one `ERROR` event carrying a 410 `Expired` Status;
- status: `PATCH .../{plural}/{name}/status` with a JSON merge patch (any other patch
  type gets 415); a change bumps the resourceVersion, never the generation (the spec's
  changes do), and a patch that changes nothing changes nothing, resourceVersion included;
- leases (coordination.k8s.io/v1): GET, POST (409 AlreadyExists) and PUT guarded by
  metadata.resourceVersion when given (409 Conflict); `acquireTime`/`renewTime` must be
  RFC 3339 MicroTime (400 otherwise).

Tests change objects through the methods (`put`, `delete`), compact the history, cut every
open watch connection or freeze it, make the next requests fail, stall or drop without an
answer, and read `requests` to see what the client asked for.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

# (group, version, plural) -> kind
KINDS: dict[tuple[str, str, str], str] = {
    ("weir.dev", "v1alpha1", "backends"): "Backend",
    ("weir.dev", "v1alpha1", "endpoints"): "Endpoint",
    ("weir.dev", "v1alpha1", "servicetiers"): "ServiceTier",
    ("weir.dev", "v1alpha1", "policies"): "Policy",
    ("weir.dev", "v1alpha1", "piipolicies"): "PIIPolicy",
    ("", "v1", "secrets"): "Secret",
    ("coordination.k8s.io", "v1", "leases"): "Lease",
}
PLURALS = {kind: plural for (_, _, plural), kind in KINDS.items()}
MERGE_PATCH = "application/merge-patch+json"
LEASE_TIMES = ("acquireTime", "renewTime")
MICRO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)")


def _collection_of(kind: str) -> tuple[str, str, str]:
    return next(c for c, k in KINDS.items() if k == kind)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _bad_lease(body: Any) -> str:
    """Why the API server would refuse this Lease body ("" when it would not): its times
    are MicroTime, which Go parses with the layout 2006-01-02T15:04:05.000000Z07:00,
    exactly six fractional digits."""
    spec = body.get("spec") if isinstance(body, dict) else None
    for field_name in LEASE_TIMES:
        value = (spec or {}).get(field_name)
        if value is not None and not (isinstance(value, str) and MICRO_TIME.fullmatch(value)):
            where = f"spec.{field_name}: parsing time {value!r}"
            return f'Lease in version "v1" cannot be handled as a Lease: {where}'
    return ""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@dataclass
class Failure:
    """What the next `count` matching requests get: an HTTP `status` error (when not 0),
    their answer only after `stall_s`, or (`drop`) a closed connection and no answer."""

    method: str
    path_part: str
    count: int
    status: int = 0
    stall_s: float = 0.0
    drop: bool = False


@dataclass
class _Watch:
    collection: tuple[str, str, str]
    cut: threading.Event = field(default_factory=threading.Event)
    frozen: threading.Event = field(default_factory=threading.Event)


class KubeApiServer:
    def __init__(self, namespace: str = "weir") -> None:
        self.namespace = namespace
        self.objects: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {c: {} for c in KINDS}
        self.version = 100
        # (resourceVersion, collection, event type, object): what watches replay.
        self.history: list[tuple[int, tuple[str, str, str], str, dict[str, Any]]] = []
        self.compacted = 0
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.status_patches: list[tuple[str, str, dict[str, Any]]] = []
        self.failures: list[Failure] = []
        self.watches: list[_Watch] = []
        self.bookmark_interval_s = 1.0
        self.lock = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> KubeApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.cut_watches()
        self._server.shutdown()
        self._server.server_close()

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "test", "cluster": {"server": self.url}}],
                    "users": [{"name": "test", "user": {"token": "test-token"}}],
                    "contexts": [
                        {
                            "name": "test",
                            "context": {
                                "cluster": "test",
                                "user": "test",
                                "namespace": self.namespace,
                            },
                        }
                    ],
                    "current-context": "test",
                }
            )
        )
        return path

    # --- what tests do -----------------------------------------------------------------------

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or update an object as `kubectl apply` would; returns the stored copy."""
        collection = _collection_of(obj["kind"])
        with self.lock:
            stored = self._store(collection, copy.deepcopy(obj))
            return copy.deepcopy(stored)

    def put_yaml(self, text: str) -> list[dict[str, Any]]:
        return [self.put(doc) for doc in yaml.safe_load_all(text) if doc]

    def delete(self, kind: str, name: str) -> None:
        collection = _collection_of(kind)
        with self.lock:
            obj = self.objects[collection].pop(name)
            self._bump(obj)
            self._record(collection, "DELETED", obj)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects[_collection_of(kind)].get(name)
            return copy.deepcopy(obj) if obj is not None else None

    def compact(self) -> None:
        """Forget the history so far: watches from an older resourceVersion get 410."""
        with self.lock:
            self.compacted = self.version
            self.history.clear()

    def cut_watches(self) -> None:
        """Drop every open watch connection mid-stream, as a restarting API server does."""
        with self.lock:
            for watch in self.watches:
                watch.cut.set()
            self.lock.notify_all()

    def freeze_watches(self) -> None:
        """Every open watch goes silent and stays open, as over a connection that died
        without being closed (a node or proxy gone): no events, no bookmarks, no end."""
        with self.lock:
            for watch in self.watches:
                watch.frozen.set()

    def fail(self, method: str, path_part: str, status: int, count: int = 1) -> None:
        """The next `count` requests whose path contains `path_part` get HTTP `status`."""
        with self.lock:
            self.failures.append(Failure(method, path_part, count, status=status))

    def stall(self, method: str, path_part: str, seconds: float, count: int = 1) -> None:
        """The next `count` such requests are served only after `seconds`, as by an
        overloaded API server (a write is still applied when the client gave up)."""
        with self.lock:
            self.failures.append(Failure(method, path_part, count, stall_s=seconds))

    def drop(self, method: str, path_part: str, count: int = 1) -> None:
        """The next `count` such requests see their connection closed, with no answer."""
        with self.lock:
            self.failures.append(Failure(method, path_part, count, drop=True))

    def count(self, method: str, path_part: str, *, watch: bool | None = None) -> int:
        with self.lock:
            return sum(
                1
                for m, path, query in self.requests
                if m == method
                and path_part in path
                and (watch is None or ("watch" in query) == watch)
            )

    # --- the store ---------------------------------------------------------------------------

    def _bump(self, obj: dict[str, Any]) -> None:
        self.version += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.version)

    def _record(self, collection: tuple[str, str, str], kind: str, obj: dict[str, Any]) -> None:
        self.history.append((self.version, collection, kind, copy.deepcopy(obj)))
        self.lock.notify_all()

    def _store(self, collection: tuple[str, str, str], obj: dict[str, Any]) -> dict[str, Any]:
        metadata = obj.setdefault("metadata", {})
        metadata["namespace"] = self.namespace
        name = metadata["name"]
        old = self.objects[collection].get(name)
        is_custom = collection[0] == "weir.dev"
        if old is None:
            metadata["uid"] = str(uuid.uuid4())
            metadata["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            if is_custom:
                metadata["generation"] = 1
                obj.pop("status", None)
            event = "ADDED"
        else:
            metadata["uid"] = old["metadata"]["uid"]
            metadata["creationTimestamp"] = old["metadata"]["creationTimestamp"]
            if is_custom:
                generation = old["metadata"]["generation"]
                changed = obj.get("spec") != old.get("spec")
                metadata["generation"] = generation + 1 if changed else generation
                if "status" in old:
                    obj["status"] = old["status"]  # the main resource cannot change status
                else:
                    obj.pop("status", None)
            event = "MODIFIED"
        self._bump(obj)
        self.objects[collection][name] = obj
        self._record(collection, event, obj)
        return obj

    # --- HTTP --------------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._serve(self, "GET")

            def do_POST(self) -> None:
                server._serve(self, "POST")

            def do_PUT(self) -> None:
                server._serve(self, "PUT")

            def do_PATCH(self) -> None:
                server._serve(self, "PATCH")

        return Handler

    def _send(self, handler: BaseHTTPRequestHandler, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _route(self, path: str) -> tuple[tuple[str, str, str], str | None, str | None] | None:
        parts = path.strip("/").split("/")
        if parts[:1] == ["api"] and len(parts) >= 5:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 6:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        if rest[0] != "namespaces" or rest[1] != self.namespace:
            return None
        collection = (group, version, rest[2])
        if collection not in KINDS:
            return None
        name = rest[3] if len(rest) > 3 else None
        sub = rest[4] if len(rest) > 4 else None
        return collection, name, sub

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(handler.path)
        query = parse_qs(url.query)
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length)) if length else None
        with self.lock:
            self.requests.append((method, url.path, query))
            failure = next(
                (
                    f
                    for f in self.failures
                    if f.count > 0 and f.method == method and f.path_part in url.path
                ),
                None,
            )
            if failure is not None:
                failure.count -= 1
        if failure is not None and failure.drop:
            handler.close_connection = True
            return
        if failure is not None and failure.status:
            status = _status(failure.status, "InternalError", "injected failure")
            self._send(handler, failure.status, status)
            return
        if failure is not None:
            time.sleep(failure.stall_s)
        try:
            self._answer(handler, method, url.path, query, body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
            handler.close_connection = True

    def _answer(
        self,
        handler: BaseHTTPRequestHandler,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: Any,
    ) -> None:
        route = self._route(path)
        if route is None:
            self._send(handler, 404, _status(404, "NotFound", f"no route {path}"))
            return
        collection, name, sub = route
        if method == "GET" and name is None:
            if query.get("watch", ["false"])[0] == "true":
                self._watch(handler, collection, query)
            else:
                self._list(handler, collection)
            return
        if method == "PATCH":
            content_type = (handler.headers.get("Content-Type") or "").split(";")[0].strip()
            if content_type != MERGE_PATCH:
                message = f"the body of the request was in an unknown format - {content_type}"
                self._send(handler, 415, _status(415, "UnsupportedMediaType", message))
                return
        with self.lock:
            code, answer = self._write(method, collection, name, sub, body)
        self._send(handler, code, answer)

    def _list(self, handler: BaseHTTPRequestHandler, collection: tuple[str, str, str]) -> None:
        with self.lock:
            items = [copy.deepcopy(o) for _, o in sorted(self.objects[collection].items())]
            version = str(self.version)
        kind = KINDS[collection]
        api_version = f"{collection[0]}/{collection[1]}" if collection[0] else collection[1]
        self._send(
            handler,
            200,
            {
                "apiVersion": api_version,
                "kind": f"{kind}List",
                "metadata": {"resourceVersion": version},
                "items": items,
            },
        )

    def _write(
        self,
        method: str,
        collection: tuple[str, str, str],
        name: str | None,
        sub: str | None,
        body: Any,
    ) -> tuple[int, dict[str, Any]]:
        objects = self.objects[collection]
        kind = KINDS[collection]
        if method == "GET" and name is not None:
            if name not in objects:
                return 404, _status(404, "NotFound", f'{kind} "{name}" not found')
            return 200, copy.deepcopy(objects[name])
        if method == "PATCH" and name is not None and sub == "status":
            if name not in objects:
                return 404, _status(404, "NotFound", f'{kind} "{name}" not found')
            obj = objects[name]
            self.status_patches.append((kind, name, copy.deepcopy(body)))
            status = merge_patch(obj.get("status"), body.get("status"))
            if status == obj.get("status"):
                return 200, copy.deepcopy(obj)  # a no-op write changes nothing
            obj["status"] = status
            self._bump(obj)
            self._record(collection, "MODIFIED", obj)
            return 200, copy.deepcopy(obj)
        if method in ("POST", "PUT") and kind == "Lease" and (problem := _bad_lease(body)):
            return 400, _status(400, "BadRequest", problem)
        if method == "POST" and name is None:
            new_name = body["metadata"]["name"]
            if new_name in objects:
                return 409, _status(409, "AlreadyExists", f'{kind} "{new_name}" already exists')
            body["metadata"].pop("resourceVersion", None)
            return 201, copy.deepcopy(self._store(collection, body))
        if method == "PUT" and name is not None:
            old = objects.get(name)
            if old is None:
                return 404, _status(404, "NotFound", f'{kind} "{name}" not found')
            wanted = body.get("metadata", {}).get("resourceVersion")
            if wanted is not None and wanted != old["metadata"]["resourceVersion"]:
                return 409, _status(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {PLURALS[kind]} "{name}": the object '
                    "has been modified; please apply your changes to the latest version",
                )
            return 200, copy.deepcopy(self._store(collection, body))
        return 405, _status(405, "MethodNotAllowed", f"{method} not supported here")

    def _events(
        self, watch: _Watch, since: int, deadline: float, bookmarks: bool
    ) -> Iterator[tuple[str, dict[str, Any]] | None]:
        """Events after `since` until the deadline; None when the connection is to be cut."""
        position = since
        quiet_since = time.monotonic()
        while True:
            with self.lock:
                pending = self._pending(watch.collection, position)
                if not pending and not watch.cut.is_set():
                    self.lock.wait(timeout=max(0.0, min(0.2, deadline - time.monotonic())))
                    pending = self._pending(watch.collection, position)
                current = self.version  # every event of the collection up to it is pending
            if watch.frozen.is_set():  # silent from now on, until cut or the deadline
                watch.cut.wait(max(0.0, deadline - time.monotonic()))
            if watch.cut.is_set() or watch.frozen.is_set():
                yield None
                return
            for rv, kind, obj in pending:
                position = rv
                yield kind, obj
            moment = time.monotonic()
            if pending:
                quiet_since = moment
            elif bookmarks and moment - quiet_since >= self.bookmark_interval_s:
                yield "BOOKMARK", self._bookmark(watch.collection, current)
                quiet_since = moment
            if moment >= deadline:
                return

    def _pending(
        self, collection: tuple[str, str, str], after: int
    ) -> list[tuple[int, str, dict[str, Any]]]:
        return [
            (rv, kind, obj) for rv, c, kind, obj in self.history if rv > after and c == collection
        ]

    def _bookmark(self, collection: tuple[str, str, str], version: int) -> dict[str, Any]:
        api_version = f"{collection[0]}/{collection[1]}" if collection[0] else collection[1]
        return {
            "kind": KINDS[collection],
            "apiVersion": api_version,
            "metadata": {"resourceVersion": str(version)},
        }

    def _watch(
        self,
        handler: BaseHTTPRequestHandler,
        collection: tuple[str, str, str],
        query: dict[str, list[str]],
    ) -> None:
        since = int(query.get("resourceVersion", ["0"])[0] or 0)
        timeout = float(query.get("timeoutSeconds", ["1800"])[0])
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

        def chunk(event: dict[str, Any]) -> None:
            data = json.dumps(event).encode() + b"\n"
            handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            handler.wfile.flush()

        watch = _Watch(collection)
        with self.lock:
            expired = since < self.compacted
            self.watches.append(watch)
        try:
            if expired:
                message = f"too old resource version: {since} ({self.compacted})"
                chunk({"type": "ERROR", "object": _status(410, "Expired", message)})
            else:
                bookmarks = query.get("allowWatchBookmarks", ["false"])[0] == "true"
                deadline = time.monotonic() + timeout
                for event in self._events(watch, since, deadline, bookmarks):
                    if event is None:
                        handler.close_connection = True
                        return  # cut: no terminating chunk, as with a dropped connection
                    chunk({"type": event[0], "object": event[1]})
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True
        finally:
            with self.lock:
                self.watches.remove(watch)
