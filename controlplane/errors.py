"""The control plane's exceptions.

Every config problem is a `ConfigError` that names the file, the resource (kind/name) and the
field path, so a user can find and fix it without guessing. Loading collects *all* of them and
raises one `ConfigInvalid`; a running control plane keeps serving its last good config.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

UNKNOWN = "?"
"""Shown for a kind or name that could not be determined (e.g. the document has no `kind`)."""


class WeirControlPlaneError(Exception):
    """Base class of every error the control plane raises on purpose."""


@dataclass(frozen=True)
class ConfigError:
    """One problem in the user's config.

    `path` is the field path inside the resource, like `spec.models[0].pricing.input`;
    empty when the problem is about the file or the resource as a whole.
    """

    file: str
    kind: str
    name: str
    path: str
    message: str

    def __str__(self) -> str:
        kind = self.kind or UNKNOWN
        name = self.name or UNKNOWN
        path = self.path or "(resource)"
        return f"{self.file}: {kind}/{name}: {path}: {self.message}"


class ConfigInvalid(WeirControlPlaneError):
    """The config was rejected; `errors` lists every problem found (at least one)."""

    errors: tuple[ConfigError, ...]

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors = tuple(errors)
        # A single positional arg that round-trips through the constructor keeps it picklable.
        super().__init__(self.errors)

    def __str__(self) -> str:
        if not self.errors:
            return "invalid config"
        return "\n".join(str(e) for e in self.errors)


class KeyStoreError(WeirControlPlaneError):
    """A key operation could not be done (bad input, or the store failed)."""


class KeyStoreUnavailable(KeyStoreError):
    """The store itself failed (cannot be opened, locked, broken): not the caller's fault."""


class KeyNotFound(KeyStoreError):
    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        super().__init__(f"no API key with id {key_id!r}")
