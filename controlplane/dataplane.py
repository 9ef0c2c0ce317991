"""Settings of the data plane that do not come from the config kinds.

Where Envoy listens, where the ext_proc replicas are, and the ext_proc filter's limits:
these are deployment facts (CLI flags / Helm values), not user resources.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Address:
        """`host:port` (IPv6 as `[::1]:port`)."""
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"expected host:port, got {text!r}")
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class DataPlaneSettings:
    listener: Address
    extproc: tuple[Address, ...]
    # ext_proc: how long Envoy waits for each reply. Large buffered bodies need more than
    # Envoy's 200 ms default.
    extproc_message_timeout_ms: int = 5000
    # Fail closed: if ext_proc cannot be reached the request gets an error, never an
    # unchecked pass-through to the provider.
    extproc_failure_mode_allow: bool = False
    # Bounds BUFFERED request bodies (and so the largest request accepted).
    max_request_bytes: int = 8 * 1024 * 1024
    stream_idle_timeout_s: float = 300.0
