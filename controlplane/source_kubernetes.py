"""The Kubernetes config source: Weir's custom resources in one namespace, watched.

One reflector (list + watch, `controlplane.kube_watch`) per kind, plus one for the
namespace's Secrets, of which only the keys that Backends reference (`apiKey.secretRef`)
are read. After the first list of every collection, and after each change (a few changes
close together are taken as one), the resources are validated together exactly as a
config directory is (`validate_documents`) and the result is yielded: a `ConfigSet`, or a
`ConfigInvalid` listing every problem. Changes that leave every resource's `generation`
and every referenced Secret key as they were (status writes, label edits, unrelated
Secrets) yield nothing.

Each yielded result has a `Build` (`last_build`): which generation of each resource it
was made from and the problems found in each, from which `controlplane.resource_status`
writes the resources' `Accepted` conditions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final

from controlplane.errors import UNKNOWN, ConfigError, ConfigInvalid
from controlplane.kube_api import SECRETS, WEIR_COLLECTIONS, Collection, KubeApi
from controlplane.kube_watch import Reflector
from controlplane.model import ConfigSet
from controlplane.validate import validate_documents

log = logging.getLogger("weir.controlplane.kubernetes")

__all__ = ["Build", "KubernetesSource", "ResourceKey"]

# Only these parts of a custom resource are configuration (status is ours, the rest of the
# metadata is the API server's).
_METADATA_KEPT: Final = ("name", "namespace", "labels", "annotations")


@dataclass(frozen=True, order=True)
class ResourceKey:
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass
class Build:
    """One validation of the namespace's resources and what it was made from."""

    result: ConfigSet | ConfigInvalid
    generations: dict[ResourceKey, int]
    problems: dict[ResourceKey, list[str]] = field(default_factory=dict)
    # Problems that could not be tied to one resource.
    general: list[str] = field(default_factory=list)


def _generation(obj: dict[str, Any]) -> int:
    generation = obj.get("metadata", {}).get("generation")
    return generation if isinstance(generation, int) else 0


def _config_document(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata") or {}
    doc = {key: value for key, value in obj.items() if key not in ("metadata", "status")}
    doc["metadata"] = {key: metadata[key] for key in _METADATA_KEPT if key in metadata}
    return doc


def _secret_references(
    backends: dict[str, dict[str, Any]],
) -> dict[str, tuple[set[str], list[ResourceKey]]]:
    """Secret name -> the keys Backends take API keys from, and those Backends."""
    wanted: dict[str, tuple[set[str], list[ResourceKey]]] = {}
    for name, backend in sorted(backends.items()):
        spec = backend.get("spec")
        api_key = spec.get("apiKey") if isinstance(spec, dict) else None
        ref = api_key.get("secretRef") if isinstance(api_key, dict) else None
        if isinstance(ref, dict) and isinstance(ref.get("name"), str):
            keys, users = wanted.setdefault(ref["name"], (set(), []))
            if isinstance(ref.get("key"), str):
                keys.add(ref["key"])
            users.append(ResourceKey("Backend", name))
    return wanted


def _message(error: ConfigError) -> str:
    return f"{error.path or '(resource)'}: {error.message}"


class KubernetesSource:
    """Watches one namespace; `watch()` yields results like `DirectorySource.watch()`."""

    def __init__(
        self,
        api: KubeApi,
        *,
        debounce_s: float = 0.05,
        watch_timeout_s: int = 300,
        watch_silence_s: float = 90.0,
        backoff_s: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        self.api = api
        self.debounce_s = debounce_s
        self.watch_timeout_s = watch_timeout_s
        self.watch_silence_s = watch_silence_s
        self.backoff_s = backoff_s
        self.last_build: Build | None = None
        self.changed = asyncio.Event()  # set on any change, status writes included
        self.reflectors: dict[Collection, Reflector] = {}

    @property
    def where(self) -> str:
        return f"namespace {self.api.namespace} at {self.api.server}"

    def objects(self, collection: Collection) -> dict[str, dict[str, Any]]:
        reflector = self.reflectors.get(collection)
        return reflector.objects() if reflector is not None else {}

    async def watch(self) -> AsyncIterator[ConfigSet | ConfigInvalid]:
        """Yield a result once every collection has been listed, then one per change of
        configuration. Runs until cancelled; the watches stop with it."""
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def on_change() -> None:
            def note() -> None:
                wake.set()
                self.changed.set()

            loop.call_soon_threadsafe(note)

        self.reflectors = {
            collection: Reflector(
                self.api,
                collection,
                on_change,
                watch_timeout_s=self.watch_timeout_s,
                silence_s=self.watch_silence_s,
                backoff_s=self.backoff_s,
            )
            for collection in (*WEIR_COLLECTIONS, SECRETS)
        }
        for reflector in self.reflectors.values():
            reflector.start()
        log.info("watching Weir's resources in %s", self.where)
        last: object = None
        try:
            while True:
                await wake.wait()
                wake.clear()
                if not all(r.synced.is_set() for r in self.reflectors.values()):
                    continue
                await asyncio.sleep(self.debounce_s)  # let a burst of changes settle
                wake.clear()
                build, fingerprint = await asyncio.to_thread(self._build)
                if fingerprint == last:
                    continue
                last = fingerprint
                self.last_build = build
                yield build.result
        finally:
            for reflector in self.reflectors.values():
                reflector.stop()

    def _build(self) -> tuple[Build, object]:
        docs: list[tuple[str, Any]] = []
        keys: dict[str, ResourceKey] = {}
        generations: dict[ResourceKey, int] = {}
        uids: list[tuple[ResourceKey, str]] = []
        namespace = self.api.namespace
        for collection in WEIR_COLLECTIONS:
            for name, obj in sorted(self.objects(collection).items()):
                where = f"{namespace}/{collection.plural}/{name}"
                key = ResourceKey(collection.kind, name)
                keys[where] = key
                generations[key] = _generation(obj)
                # A resource deleted and made again restarts at generation 1: its uid tells.
                uids.append((key, str(obj.get("metadata", {}).get("uid", ""))))
                docs.append((where, _config_document(obj)))
        wanted = _secret_references(self.objects(WEIR_COLLECTIONS[0]))
        secrets = self.objects(SECRETS)
        secret_versions = []
        for name in sorted(wanted):
            secret = secrets.get(name)
            if secret is None:
                continue
            data = secret.get("data") or {}
            taken = {k: v for k, v in data.items() if k in wanted[name][0]}
            secret_versions.append((name, tuple(sorted(taken.items()))))
            secret_doc = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}}
            docs.append((f"{namespace}/secrets/{name}", {**secret_doc, "data": taken}))
        # Secret values are compared, never logged: the fingerprint stays in memory.
        fingerprint = (
            tuple(sorted(generations.items())),
            tuple(sorted(uids)),
            tuple(secret_versions),
        )
        build = Build(result=ConfigInvalid([]), generations=generations)
        if not generations:
            build.result = ConfigInvalid(
                [ConfigError(namespace, UNKNOWN, UNKNOWN, "", "no Weir resources in the namespace")]
            )
            build.general.append("no Weir resources in the namespace")
            return build, fingerprint
        try:
            build.result = validate_documents(docs)
        except ConfigInvalid as invalid:
            build.result = invalid
            for error in invalid.errors:
                owner = keys.get(error.file)
                if owner is not None:
                    build.problems.setdefault(owner, []).append(_message(error))
                elif error.name in wanted and error.file.startswith(f"{namespace}/secrets/"):
                    for user in wanted[error.name][1]:
                        build.problems.setdefault(user, []).append(
                            f"Secret {error.name}: {_message(error)}"
                        )
                else:
                    build.general.append(str(error))
        return build, fingerprint
