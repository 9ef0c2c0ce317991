"""Keeps one Kubernetes collection in memory with list + watch (a "reflector").

It lists the collection, then watches from the list's resourceVersion, applying each
ADDED/MODIFIED/DELETED event to its map of objects by name. It runs in a thread of its own
(the official client blocks) and calls `on_change` after every list and every event.

- A watch the server ends (its timeout) is resumed from the last resourceVersion seen,
  which BOOKMARK events keep fresh; so is a watch silent for `silence_s` (no event, no
  bookmark), which is how a connection that died without being closed shows.
- 410 Gone (the resourceVersion is too old, as after a long disconnection or an etcd
  compaction) makes it list again from scratch; objects deleted meanwhile disappear then.
- Any other failure (unreachable API server, 5xx, a cut connection) is retried with
  exponential backoff, resuming the watch where it stopped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from controlplane.kube_api import (
    Collection,
    KubeApi,
    KubeApiError,
    WatchExpired,
    WatchSilent,
    WatchStream,
)

log = logging.getLogger("weir.controlplane.kubernetes")

__all__ = ["Reflector"]


def _name(obj: dict[str, Any]) -> str | None:
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return name if isinstance(name, str) else None


def _version(obj: dict[str, Any]) -> str | None:
    metadata = obj.get("metadata")
    version = metadata.get("resourceVersion") if isinstance(metadata, dict) else None
    return str(version) if version is not None else None


class Reflector:
    def __init__(
        self,
        api: KubeApi,
        collection: Collection,
        on_change: Callable[[], None],
        *,
        watch_timeout_s: int = 300,
        silence_s: float = 90.0,
        backoff_s: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        self.api = api
        self.collection = collection
        self.on_change = on_change
        self.watch_timeout_s = watch_timeout_s
        self.silence_s = silence_s
        self.backoff_s = backoff_s
        self.synced = threading.Event()  # set after the first successful list
        self._objects: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._stream: WatchStream | None = None
        self._version: str | None = None  # where the next watch resumes; None: list first
        self._thread = threading.Thread(
            target=self._run, name=f"watch-{collection.plural}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # closing a half-dead connection may fail; we are leaving anyway
                log.debug("closing the watch of %s failed", self.collection, exc_info=True)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def objects(self) -> dict[str, dict[str, Any]]:
        """A copy of the objects by name (the dicts themselves are shared: do not modify)."""
        with self._lock:
            return dict(self._objects)

    # --- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        delay = self.backoff_s[0]
        while not self._stopping.is_set():
            try:
                if self._version is None:
                    self._version = self._list()
                self._watch()
                delay = self.backoff_s[0]
            except WatchExpired:
                log.info("the watch of %s expired (410 Gone); listing again", self.collection)
                self._version = None
            except WatchSilent as error:
                log.info("%s; watching again", error)
            except KubeApiError as error:
                if self._stopping.is_set():
                    break
                log.warning("%s; retrying in %.1f s", error, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, self.backoff_s[1])
            except Exception:  # a bug must not end the watch silently: log it and go on
                log.exception("the watch of %s failed", self.collection)
                self._stopping.wait(delay)
                delay = min(delay * 2, self.backoff_s[1])
                self._version = None

    def _list(self) -> str:
        items, version = self.api.list(self.collection)
        objects = {name: item for item in items if (name := _name(item)) is not None}
        with self._lock:
            self._objects = objects
        log.info("listed %d %s (resourceVersion %s)", len(objects), self.collection, version)
        self.synced.set()
        self.on_change()
        return version

    def _watch(self) -> None:
        """Apply events until the server ends the watch, keeping `_version` current."""
        assert self._version is not None
        stream = self.api.watch(
            self.collection, self._version, self.watch_timeout_s, self.silence_s
        )
        self._stream = stream
        try:
            for event in stream:
                if self._stopping.is_set():
                    return
                if event.type == "ERROR":
                    code = event.object.get("code")
                    message = event.object.get("message") or event.object.get("reason") or ""
                    what = f"watching {self.collection}: {message}"
                    if code == 410:
                        raise WatchExpired(what, 410)
                    raise KubeApiError(what, code if isinstance(code, int) else None)
                version = _version(event.object)
                if version is not None:
                    self._version = version
                if event.type == "BOOKMARK":
                    continue
                name = _name(event.object)
                if name is None:
                    continue
                with self._lock:
                    if event.type == "DELETED":
                        self._objects.pop(name, None)
                    else:
                        self._objects[name] = event.object
                self.on_change()
        finally:
            self._stream = None
            stream.close()
