"""bench/policy_cost.py runs on the quickstart (its figures are the benchmark's business)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_policy_benchmark_measures_the_quickstart_policies() -> None:
    spec = importlib.util.spec_from_file_location("policy_cost", REPO / "bench" / "policy_cost.py")
    assert spec is not None and spec.loader is not None
    policy_cost = importlib.util.module_from_spec(spec)
    sys.modules["policy_cost"] = policy_cost  # its dataclasses look their module up
    spec.loader.exec_module(policy_cost)
    cases = policy_cost.measure(REPO / "examples" / "quickstart", runs=20)
    assert [c.label.split(" (")[0].split(",")[0] for c in cases] == [
        "request stage",
        "request stage",
        "response stage",
    ]
    assert "block-dangerous-tools" in cases[0].label
    assert all(c.p50_us > 0 for c in cases)
    assert "p50 us" in policy_cost.render(cases, 20)
