"""The checked-in generated API matches proto/, and imports resolve as designed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_generated_code_is_current(tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(REPO / "proto")) for p in (REPO / "proto").rglob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{REPO / 'proto'}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            *protos,
        ],
        check=True,
        cwd=REPO,
    )
    generated = sorted(tmp_path.rglob("*_pb2.py*"))
    assert generated
    for fresh in generated:
        checked_in = REPO / fresh.relative_to(tmp_path)
        assert checked_in.read_text() == fresh.read_text(), (
            f"{checked_in} is stale: run `make proto`"
        )


def test_envoy_imports_resolve_to_the_generated_api_not_the_repo_folder() -> None:
    # A repository folder named envoy/ must never shadow the envoy package (the Envoy
    # bootstrap template is package data of weir, weir/envoy_bootstrap.yaml).
    assert not (REPO / "envoy" / "__init__.py").exists()
    import envoy.service.ext_proc.v3.external_processor_pb2 as ext

    assert "site-packages" in ext.__file__
