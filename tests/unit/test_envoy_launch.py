"""The Envoy bootstrap renders to a config the real Envoy accepts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from weir.envoy_launch import envoy_argv, envoy_binary, write_bootstrap


def test_bootstrap_is_valid_for_envoy(tmp_path: Path) -> None:
    # "n" would be YAML's boolean false if the template did not quote it.
    path = write_bootstrap(tmp_path / "bootstrap.yaml", "n", 9901, 18000)
    rendered = yaml.safe_load(path.read_text())
    assert rendered["node"] == {"id": "n", "cluster": "weir"}
    assert rendered["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    # Only the xDS cluster is static: everything else arrives over ADS.
    assert [c["name"] for c in rendered["static_resources"]["clusters"]] == ["weir-xds"]
    assert "listeners" not in rendered["static_resources"]
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "-l", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_runs_without_hot_restart() -> None:
    argv = envoy_argv(Path("b.yaml"), concurrency=2)
    assert "--disable-hot-restart" in argv
    assert argv[argv.index("--concurrency") + 1] == "2"
