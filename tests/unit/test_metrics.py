"""extproc.metrics: the Prometheus endpoint and the policy counters."""

from __future__ import annotations

import httpx

from extproc.metrics import policy_decided, serve_metrics


def test_policy_decisions_are_served_on_metrics() -> None:
    server, _ = serve_metrics("127.0.0.1:0")
    try:
        policy_decided("unit-policy", "request", "error")
        policy_decided("unit-policy", "request", "error")
        body = httpx.get(f"http://127.0.0.1:{server.server_port}/metrics").text
    finally:
        server.shutdown()
    assert (
        'weir_policy_decisions_total{policy="unit-policy",result="error",stage="request"} 2.0'
        in body
    )
    assert "process_cpu_seconds_total" in body
