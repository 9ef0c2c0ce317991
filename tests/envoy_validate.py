"""Envoy's own verdict on a config file: `envoy --mode validate` with the real binary."""

from __future__ import annotations

import subprocess
from pathlib import Path

from weir.envoy_launch import envoy_binary


def assert_envoy_accepts(path: Path) -> None:
    """Envoy loads `path` (a bootstrap, JSON or YAML) without an error."""
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
