"""Let Envoy finish its requests before its pod stops: the preStop hook of `weir-envoy`.

    python -m weir.envoy_drain [--admin 127.0.0.1:19000] [--timeout-s 45] [--min-wait-s 5]

1. `POST /healthcheck/fail`: `GET /ready` (the `weir envoy --ready-port` listener) answers
   503, so the pod leaves its Services' endpoints and no new client is sent to it;
2. `POST /drain_listeners?graceful&skip_exit`: Envoy asks its clients to go away
   (`Connection: close` on HTTP/1.1, GOAWAY on HTTP/2) over its `--drain-time-s`, and keeps
   listening meanwhile (clients that have not seen the endpoint change yet still get in);
3. waits at least `--min-wait-s` (endpoint removal takes a moment to reach every node and
   load balancer), then until no request is in flight on Weir's listener, at most
   `--timeout-s` in all.

Then the kubelet sends SIGTERM and Envoy exits. Keep the pod's
`terminationGracePeriodSeconds` above `--timeout-s`: the grace period counts the hook too.
Standard library only (it runs once per pod stop, and quickly); it never fails the hook:
an Envoy that is already gone has nothing left to drain.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence

# Requests in flight on the listener the control plane sends (its HTTP connection
# manager's stat_prefix is "weir", controlplane.translate_envoy._listener).
ACTIVE_REQUESTS_STAT = "http.weir.downstream_rq_active"
_STAT_QUERY = urllib.parse.urlencode(
    {"filter": "^" + ACTIVE_REQUESTS_STAT.replace(".", r"\.") + "$"}
)


def _call(admin: str, method: str, path: str, timeout_s: float = 2.0) -> str:
    request = urllib.request.Request(f"http://{admin}{path}", method=method)
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        body: bytes = response.read()
    return body.decode("utf-8", "replace")


def active_requests(admin: str) -> int:
    """Requests in flight on Weir's listener (0 when it has none yet)."""
    text = _call(admin, "GET", f"/stats?{_STAT_QUERY}")
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == ACTIVE_REQUESTS_STAT:
            return int(value.strip())
    return 0


def drain(
    admin: str,
    *,
    timeout_s: float,
    min_wait_s: float,
    interval_s: float = 0.5,
    log: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Fail the health check, drain gracefully, wait; the requests still in flight at the end."""
    start = clock()
    try:
        _call(admin, "POST", "/healthcheck/fail")
        _call(admin, "POST", "/drain_listeners?graceful&skip_exit")
    except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
        log(f"weir envoy drain: Envoy's admin at {admin} did not answer ({error}); nothing to do")
        return 0
    log(f"weir envoy drain: health check failed, listeners draining (admin {admin})")
    while True:
        elapsed = clock() - start
        try:
            active = active_requests(admin)
        except (OSError, http.client.HTTPException, ValueError):
            active = 0  # Envoy is gone: nothing is in flight any more
            break
        if elapsed >= timeout_s or (elapsed >= min_wait_s and active == 0):
            break
        sleep(interval_s)
    log(f"weir envoy drain: {active} request(s) still in flight after {clock() - start:.1f} s")
    return active


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m weir.envoy_drain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--admin", default="127.0.0.1:19000", help="Envoy's admin host:port")
    parser.add_argument("--timeout-s", type=float, default=45.0, help="wait at most this long")
    parser.add_argument(
        "--min-wait-s",
        type=float,
        default=5.0,
        help="wait at least this long, for the endpoint change to reach every client",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    drain(args.admin, timeout_s=args.timeout_s, min_wait_s=args.min_wait_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
