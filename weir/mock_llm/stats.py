"""Counters of what the mock received, served on ``GET /mock/stats``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["MockStats"]


@dataclass(slots=True)
class MockStats:
    requests: int = 0
    streamed: int = 0
    hanging: int = 0
    by_behavior: dict[str, int] = field(default_factory=dict)
    last_request: Any = None
    # SHA-256 of each distinct Authorization header received ("" for none): which keys
    # reached this upstream, never the keys themselves.
    authorizations: set[str] = field(default_factory=set)

    def record(self, body: Any, behavior: str, authorization_sha256: str = "") -> None:
        """Count one chat completion request (whatever its fate)."""
        self.requests += 1
        self.authorizations.add(authorization_sha256)
        self.by_behavior[behavior] = self.by_behavior.get(behavior, 0) + 1
        self.last_request = body
        if isinstance(body, dict) and body.get("stream") is True:
            self.streamed += 1

    def reset(self) -> None:
        self.requests = 0
        self.streamed = 0
        self.by_behavior = {}
        self.last_request = None
        self.authorizations = set()

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "streamed": self.streamed,
            "hanging": self.hanging,
            "by_behavior": dict(self.by_behavior),
            "last_request": self.last_request,
            "authorizations": sorted(self.authorizations),
        }
