"""ext_proc's Prometheus metrics, served on `GET /metrics` of their own HTTP port.

Labels hold only names from the config (policy, stage, result): never a key, a prompt
or anything a request carries.
"""

from __future__ import annotations

import logging
import threading
from typing import Final
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

log = logging.getLogger("weir.extproc.metrics")

REGISTRY: Final = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

POLICY_DECISIONS: Final = Counter(
    "weir_policy_decisions",
    "Rego policy evaluations by policy, stage and result (allow, deny, or error: the "
    "policy failed to evaluate; fail-closed ones answered 500 policy_error).",
    ("policy", "stage", "result"),
    registry=REGISTRY,
)


RATE_LIMIT_CHECKS: Final = Counter(
    "weir_rate_limit_checks",
    "Rate-limit checks by service tier and result: admitted, refused (429), local "
    "(admitted on this replica's own counters: the shared store was unreachable) or "
    "unavailable (503: the shared store was unreachable and limits fail closed).",
    ("tier", "result"),
    registry=REGISTRY,
)


def rate_limit_checked(tier: str, result: str) -> None:
    RATE_LIMIT_CHECKS.labels(tier, result).inc()


def policy_decided(policy: str, stage: str, result: str) -> None:
    POLICY_DECISIONS.labels(policy, stage, result).inc()


def serve_metrics(address: str) -> tuple[WSGIServer, threading.Thread]:
    """Serve /metrics on `address` (host:port; port 0 picks one) from a daemon thread."""
    host, _, port = address.rpartition(":")
    server, thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=REGISTRY)
    log.info("metrics on http://%s:%d/metrics", host or "127.0.0.1", server.server_port)
    return server, thread
