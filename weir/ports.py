"""Port helpers for the supervisor and the tests."""

from __future__ import annotations

import errno
import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on (host, port). Raises OSError when nothing
    can listen there at all (e.g. an address this machine does not have)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
            raise
        return False


def distinct_ports() -> dict[str, int]:
    """A free port for each of `weir up`'s ports, no two alike (a port closed by one
    free_port() call can be handed out again by the next)."""
    from weir.supervisor import UP_PORTS

    while True:
        ports = {name: free_port() for name in UP_PORTS}
        if len(set(ports.values())) == len(ports):
            return ports
