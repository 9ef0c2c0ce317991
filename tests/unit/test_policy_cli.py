"""`weir policy test DIR`: the test_ rules of .rego files and Policy resources."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from weir.cli import main

REPO = Path(__file__).resolve().parents[2]

POLICY = """\
apiVersion: weir.dev/v1alpha1
kind: Policy
metadata:
  name: caps
spec:
  stage: request
  rego: |
    package weir.caps

    patch.max_tokens := 100 if input.request.max_tokens > 100
"""

TESTS = """\
package weir.caps

test_a_large_max_tokens_is_capped if {
    patch.max_tokens == 100 with input as {"request": {"max_tokens": 5000}}
}

test_a_small_one_is_kept if {
    not patch.max_tokens with input as {"request": {"max_tokens": 50}}
}
"""


def write(directory: Path, tests: str = TESTS) -> Path:
    (directory / "policies.yaml").write_text(POLICY)
    (directory / "tests").mkdir()
    (directory / "tests" / "caps_test.rego").write_text(tests)
    return directory


def test_passing_tests_exit_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "test", str(write(tmp_path)), "-v"]) == 0
    out = capsys.readouterr().out
    assert "PASS: data.weir.caps.test_a_large_max_tokens_is_capped" in out
    assert out.rstrip().endswith("PASS: 2/2")


def test_a_failing_test_exits_one_and_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failing = TESTS.replace("== 100 with", "== 99 with")
    assert main(["policy", "test", str(write(tmp_path, failing))]) == 1
    out = capsys.readouterr().out
    assert "FAIL: data.weir.caps.test_a_large_max_tokens_is_capped" in out
    assert "PASS: data.weir.caps.test_a_small_one_is_kept" not in out  # only with -v
    assert "PASS: 1/2" in out and "FAIL: 1/2" in out


def test_a_test_that_errors_exits_one_with_the_engines_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    erroring = TESTS + '\ntest_bad if to_number("x") == 1\n'
    assert main(["policy", "test", str(write(tmp_path, erroring))]) == 1
    out = capsys.readouterr().out
    assert "ERROR: data.weir.caps.test_bad" in out
    assert "could not parse string as number" in out


def test_a_module_that_does_not_compile_exits_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "test", str(write(tmp_path, "package weir.caps\n\ntest_x if {\n"))]) == 2
    assert "caps_test.rego: line " in capsys.readouterr().err


def test_no_tests_exits_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "policies.yaml").write_text(POLICY)
    assert main(["policy", "test", str(tmp_path)]) == 1
    assert "no test_ rules found" in capsys.readouterr().out


def test_the_quickstart_policy_passes_its_tests_from_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "weir", "policy", "test", str(REPO / "examples" / "quickstart")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS: 3/3" in done.stdout
