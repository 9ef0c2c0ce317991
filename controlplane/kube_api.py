"""The few Kubernetes API calls the control plane makes, through the official client.

Everything Kubernetes-specific that the rest of the control plane needs goes through
`KubeApi`: list and watch a collection (Weir's custom resources, Secrets), patch a custom
resource's status, and read/create/replace the leader-election Lease. The client is
synchronous (urllib3): callers run these methods in worker threads.

Objects are plain dicts as the API server sends them (custom resources have no generated
models, and a Secret's `data` stays base64 exactly as served). Failures raise `KubeApiError`
(with the HTTP status when there was one); a watch whose resourceVersion is too old raises
`WatchExpired` (410 Gone), after which the caller must list again; a watch that stays
silent too long (a dead connection looks just like that) raises `WatchSilent`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from controlplane.errors import WeirControlPlaneError

__all__ = [
    "SECRETS",
    "WEIR_COLLECTIONS",
    "Collection",
    "KubeApi",
    "KubeApiError",
    "Lease",
    "LeaseConflict",
    "WatchEvent",
    "WatchExpired",
    "WatchSilent",
    "connect",
]

GROUP: Final = "weir.dev"
VERSION: Final = "v1alpha1"
IN_CLUSTER_NAMESPACE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_JSON: Final = {"Accept": "application/json"}


@dataclass(frozen=True)
class Collection:
    """A namespaced resource collection: its kind, plural and API group/version."""

    kind: str
    plural: str
    group: str = ""
    version: str = "v1"

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


WEIR_COLLECTIONS: Final = (
    Collection("Backend", "backends", GROUP, VERSION),
    Collection("Endpoint", "endpoints", GROUP, VERSION),
    Collection("ServiceTier", "servicetiers", GROUP, VERSION),
    Collection("Policy", "policies", GROUP, VERSION),
    Collection("PIIPolicy", "piipolicies", GROUP, VERSION),
)
SECRETS: Final = Collection("Secret", "secrets")
_LEASES: Final = ("coordination.k8s.io", "v1")
_LEASES_PLURAL: Final = "leases"


class KubeApiError(WeirControlPlaneError):
    """A Kubernetes API call failed; `status` is the HTTP status, None when unreachable."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class WatchExpired(KubeApiError):
    """410 Gone: the resourceVersion a watch started from is no longer kept; list again."""


class WatchSilent(KubeApiError):
    """Neither an event nor a bookmark came for the watch's silence limit: the connection
    may be dead without having been closed. Watch again from the last resourceVersion."""


class LeaseConflict(KubeApiError):
    """The Lease changed (or appeared) since it was read: someone else wrote it first."""


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK or ERROR
    object: dict[str, Any]


@dataclass(frozen=True)
class Lease:
    """A coordination.k8s.io/v1 Lease, as leader election uses it."""

    name: str
    holder: str
    duration_s: int
    acquired: datetime | None = None
    renewed: datetime | None = None
    transitions: int = 0
    resource_version: str = ""

    def held(self, holder: str, duration_s: int, now: datetime) -> Lease:
        """This lease renewed by `holder` at `now` (a take-over when the holder changes)."""
        if holder == self.holder:
            return replace(self, duration_s=duration_s, renewed=now)
        return replace(
            self,
            holder=holder,
            duration_s=duration_s,
            acquired=now,
            renewed=now,
            transitions=self.transitions + 1,
        )


def _error(what: str, error: Exception) -> KubeApiError:
    if isinstance(error, ApiException):
        status = error.status if isinstance(error.status, int) else None
        reason = _status_message(error.body) or error.reason or "no reason given"
        kind = WatchExpired if status == 410 else KubeApiError
        return kind(f"{what}: HTTP {status}: {reason}", status)
    return KubeApiError(f"{what}: the API server is unreachable ({type(error).__name__})")


def _status_message(body: Any) -> str:
    """The `message` of a metav1.Status body, if that is what `body` is."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str):
        return ""
    try:
        status = json.loads(body)
    except ValueError:
        return body[:200]
    message = status.get("message") if isinstance(status, dict) else None
    return message if isinstance(message, str) else ""


_FAILURES: Final = (ApiException, urllib3.exceptions.HTTPError, OSError)


class WatchStream:
    """One open watch request: iterate for events; `close()` ends it from any thread."""

    def __init__(self, response: urllib3.BaseHTTPResponse, what: str, silence_s: float) -> None:
        self._response = response
        self._what = what
        self._silence_s = silence_s

    def __iter__(self) -> Iterator[WatchEvent]:
        try:
            for line in iter_resp_lines(self._response):
                if not line:
                    continue
                try:
                    event = json.loads(line)
                    yield WatchEvent(str(event["type"]), dict(event["object"]))
                except (ValueError, KeyError, TypeError) as error:
                    raise KubeApiError(f"{self._what}: unreadable watch event") from error
        except urllib3.exceptions.ReadTimeoutError as error:
            message = f"{self._what}: nothing heard for {self._silence_s:.0f} s"
            raise WatchSilent(message) from error
        except _FAILURES as error:
            raise _error(self._what, error) from error
        finally:
            self._response.release_conn()

    def close(self) -> None:
        # shutdown() wakes a read blocked in another thread; it is not there on every
        # connection (nor needed once the response is done).
        with contextlib.suppress(ValueError, RuntimeError, OSError, AttributeError):
            self._response.shutdown()
        self._response.close()


class KubeApi:
    """The namespace-scoped calls Weir makes. Methods block: call them in threads."""

    def __init__(self, api_client: k8s.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self._client = api_client
        self._custom = k8s.CustomObjectsApi(api_client)
        self._core = k8s.CoreV1Api(api_client)

    @property
    def server(self) -> str:
        host: str = self._client.configuration.host
        return host

    # --- list and watch ------------------------------------------------------------------

    def _list_call(self, collection: Collection, **options: Any) -> Any:
        """The raw response (`_preload_content=False`); an `ApiException` outside 2xx."""
        if collection.group:
            return self._custom.list_namespaced_custom_object(
                collection.group,
                collection.version,
                self.namespace,
                collection.plural,
                _preload_content=False,
                **options,
            )
        if collection == SECRETS:
            return self._core.list_namespaced_secret(
                self.namespace, _preload_content=False, **options
            )
        raise ValueError(f"no list call for {collection}")

    def list(self, collection: Collection) -> tuple[list[dict[str, Any]], str]:
        """Every object of the collection, and the list's resourceVersion to watch from."""
        what = f"listing {collection} in namespace {self.namespace}"
        try:
            response = self._list_call(collection, _request_timeout=(10, 60))
            body = json.loads(response.data)
        except _FAILURES as error:
            raise _error(what, error) from error
        except ValueError as error:
            raise KubeApiError(f"{what}: the answer is not JSON") from error
        items = body.get("items") or []
        version = (body.get("metadata") or {}).get("resourceVersion") or ""
        return [item for item in items if isinstance(item, dict)], str(version)

    def watch(
        self, collection: Collection, resource_version: str, timeout_s: int, silence_s: float
    ) -> WatchStream:
        """Changes after `resource_version`, for at most `timeout_s` (the server ends it);
        `WatchSilent` when no event or bookmark comes for `silence_s`."""
        what = f"watching {collection} in namespace {self.namespace}"
        try:
            response = self._list_call(
                collection,
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout_s,
                # A dead connection shows as silence, which the server's bookmarks break.
                _request_timeout=(10, silence_s),
            )
        except _FAILURES as error:  # the client raises ApiException outside 2xx (410 too)
            raise _error(what, error) from error
        return WatchStream(response, what, silence_s)

    # --- status --------------------------------------------------------------------------

    def patch_status(
        self, collection: Collection, name: str, status: dict[str, Any], timeout_s: float = 30.0
    ) -> dict[str, Any]:
        """Merge-patch the status subresource of one custom resource; the updated object.
        Gives up after `timeout_s` (to connect, and then for each read)."""
        what = f"writing the status of {collection.kind}/{name}"
        try:
            updated = self._custom.patch_namespaced_custom_object_status(
                collection.group,
                collection.version,
                self.namespace,
                collection.plural,
                name,
                {"status": status},
                _content_type="application/merge-patch+json",
                _request_timeout=(min(10.0, timeout_s), timeout_s),
            )
        except _FAILURES as error:
            raise _error(what, error) from error
        return dict(updated) if isinstance(updated, dict) else {}

    # --- leases --------------------------------------------------------------------------
    # Leases go through the generic object calls, as plain dicts: the client's typed Lease
    # model would write its times with isoformat(), which leaves the fraction out on a
    # whole second, and the API server then refuses the write. Each call gives up after
    # `timeout_s` (to connect, and then for each read): leader election must be able to
    # step down before its renew deadline.

    def read_lease(self, name: str, timeout_s: float = 10.0) -> Lease | None:
        what = f"reading Lease {name}"
        try:
            found = self._custom.get_namespaced_custom_object(
                *_LEASES,
                self.namespace,
                _LEASES_PLURAL,
                name,
                _request_timeout=(timeout_s, timeout_s),
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise _error(what, error) from error
        except _FAILURES as error:
            raise _error(what, error) from error
        try:
            return _lease(name, found)
        except (AttributeError, TypeError, ValueError) as error:
            raise KubeApiError(f"{what}: the answer is not a Lease ({error})") from error

    def _body(self, lease: Lease) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": lease.name, "namespace": self.namespace}
        if lease.resource_version:
            metadata["resourceVersion"] = lease.resource_version
        spec = {
            "holderIdentity": lease.holder,
            "leaseDurationSeconds": lease.duration_s,
            "acquireTime": _micro_time(lease.acquired),
            "renewTime": _micro_time(lease.renewed),
            "leaseTransitions": lease.transitions,
        }
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {key: value for key, value in spec.items() if value is not None},
        }

    def create_lease(self, lease: Lease, timeout_s: float = 10.0) -> None:
        try:
            self._custom.create_namespaced_custom_object(
                *_LEASES,
                self.namespace,
                _LEASES_PLURAL,
                self._body(lease),
                _request_timeout=(timeout_s, timeout_s),
            )
        except ApiException as error:
            if error.status == 409:
                raise LeaseConflict(f"Lease {lease.name} already exists", 409) from error
            raise _error(f"creating Lease {lease.name}", error) from error
        except _FAILURES as error:
            raise _error(f"creating Lease {lease.name}", error) from error

    def replace_lease(self, lease: Lease, timeout_s: float = 10.0) -> None:
        """Write `lease` if nobody changed it since it was read (its resourceVersion)."""
        try:
            self._custom.replace_namespaced_custom_object(
                *_LEASES,
                self.namespace,
                _LEASES_PLURAL,
                lease.name,
                self._body(lease),
                _request_timeout=(timeout_s, timeout_s),
            )
        except ApiException as error:
            if error.status == 409:
                raise LeaseConflict(f"Lease {lease.name} changed since it was read", 409) from error
            raise _error(f"updating Lease {lease.name}", error) from error
        except _FAILURES as error:
            raise _error(f"updating Lease {lease.name}", error) from error


def _lease(name: str, found: Any) -> Lease:
    """A Lease from the API server's JSON (times in RFC 3339)."""
    spec = found.get("spec") or {}
    metadata = found.get("metadata") or {}
    return Lease(
        name=name,
        holder=str(spec.get("holderIdentity") or ""),
        duration_s=int(spec.get("leaseDurationSeconds") or 0),
        acquired=_parse_time(spec.get("acquireTime")),
        renewed=_parse_time(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=str(metadata.get("resourceVersion") or ""),
    )


def _parse_time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def _micro_time(moment: datetime | None) -> str | None:
    """A MicroTime as the API server parses it: always six fractional digits (the client's
    own `isoformat()` leaves the fraction out when it is zero, and would be refused)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now() -> datetime:
    return datetime.now(UTC)


def default_namespace() -> str:
    """POD_NAMESPACE, else the service account's namespace in a pod, else `default`."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return IN_CLUSTER_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def connect(namespace: str, kubeconfig: str | None = None) -> KubeApi:
    """A client from `kubeconfig`; without one, the pod's service account when in a
    cluster, else $KUBECONFIG or ~/.kube/config."""
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = k8s.Configuration()
            k8s_config.load_incluster_config(client_configuration=configuration)
        else:
            configuration = k8s.Configuration()
            k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    except (k8s_config.ConfigException, OSError, TypeError, ValueError) as error:
        where = kubeconfig or "the default kubeconfig"
        message = f"cannot configure the Kubernetes client from {where}: {error}"
        raise KubeApiError(message) from error
    # urllib3 would otherwise retry a failed request 3 times, silently: one Lease call could
    # then outlast the renew deadline, and a cut watch would stall without a log line. Every
    # caller here retries on its own terms instead.
    configuration.retries = False
    return KubeApi(k8s.ApiClient(configuration), namespace)
