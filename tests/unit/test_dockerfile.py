"""The Dockerfile, checked without a Docker engine: its build context holds what it copies
(and nothing else of note), the wheel it builds from those sources is the whole of Weir
(the Envoy bootstrap template included), and the image runs `weir` as a non-root user with
every subcommand the Kubernetes manifests use."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.manifests import REPO, TARGETS, args_of, containers, is_weir, render, workloads
from weir.cli import build_parser

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
NON_ROOT_UID = 10001


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    result: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        result.append((keyword.upper(), rest.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return result


def stages() -> tuple[dict[str, str], list[Stage]]:
    args: dict[str, str] = {}
    found: list[Stage] = []
    for keyword, rest in instructions(DOCKERFILE.read_text()):
        if keyword == "ARG" and not found:
            arg, _, default = rest.partition("=")
            args[arg] = default
        elif keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--platform")]
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            stage = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append(Stage(base, stage))
        else:
            assert found, f"{keyword} before the first FROM"
            found[-1].instructions.append((keyword, rest))
    return args, found


def copy_sources(stage: Stage) -> list[str]:
    """The build-context paths a stage's COPY/ADD instructions read."""
    sources = []
    for keyword, rest in stage.instructions:
        if keyword not in ("COPY", "ADD"):
            continue
        words = shlex.split(rest)
        if any(w.startswith("--from") for w in words):
            continue
        paths = [w for w in words if not w.startswith("--")]
        sources += paths[:-1]
    return sources


# --- .dockerignore, as Docker reads it (moby/patternmatcher) ----------------------------------


def ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:].strip() if negated else line
        patterns.append((negated, _regex(pattern.strip("/"))))
    return patterns


def _regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i + 1 :]:  # a character class, as Go's
            end = pattern.index("]", i + 1)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(f"^{out}$")


def excluded(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """The last pattern matching the path or one of its parent directories decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for negated, regex in patterns:
        if any(regex.match(prefix) for prefix in prefixes):
            verdict = not negated
    return verdict


def repository_files() -> list[str]:
    """Files git tracks or would track (new files included, ignored ones not)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return [f for f in listed if (REPO / f).exists()]


def test_the_ignore_rules_read_as_docker_reads_them() -> None:
    patterns = [(False, _regex("*")), (True, _regex("weir")), (False, _regex("**/__pycache__"))]
    assert excluded("README.md", patterns)
    assert not excluded("weir/cli.py", patterns)
    assert excluded("weir/__pycache__/cli.cpython-311.pyc", patterns)
    assert excluded("tests/unit/test_x.py", patterns)
    assert _regex("**/*.py[co]").match("weir/x.pyc")
    assert not _regex("**/*.py[co]").match("weir/x.py")


# --- the build context -------------------------------------------------------------------------


def test_every_copy_source_is_in_the_build_context() -> None:
    _, found = stages()
    patterns = ignore_patterns()
    files = repository_files()
    sources = [s for stage in found for s in copy_sources(stage)]
    assert sources, "nothing is copied from the build context"
    for source in sources:
        path = REPO / source
        assert path.exists(), f"COPY {source}: not in the repository"
        assert not excluded(source, patterns), f"COPY {source}: excluded by .dockerignore"
        inside = [f for f in files if f == source or f.startswith(f"{source.rstrip('/')}/")]
        assert inside, source
        dropped = [f for f in inside if excluded(f, patterns)]
        assert dropped == [], f"COPY {source}: .dockerignore drops {dropped}"


def test_the_build_context_leaves_out_local_state_and_secrets() -> None:
    patterns = ignore_patterns()
    for path in (".git/config", ".venv/bin/python", ".weir/weir.db", ".env", "tests/unit/x.py"):
        assert excluded(path, patterns), path
    for path in ("weir/__pycache__/cli.cpython-311.pyc", "extproc/x.pyc"):
        assert excluded(path, patterns), path


def test_the_build_stage_sources_make_the_whole_wheel(tmp_path: Path) -> None:
    """What the build stage copies is enough to build Weir's wheel, and the wheel holds
    every package and data file the image needs (without a repository checkout)."""
    _, found = stages()
    build = found[0]
    source = tmp_path / "src"
    patterns = ignore_patterns()
    for entry in copy_sources(build):
        for f in repository_files():
            if (f == entry or f.startswith(f"{entry}/")) and not excluded(f, patterns):
                target = source / f
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes((REPO / f).read_bytes())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path / "wheels"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    [wheel] = (tmp_path / "wheels").glob("weir-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "weir/envoy_bootstrap.yaml" in names  # weir.envoy_launch.BOOTSTRAP_TEMPLATE
    assert "weir/config/v1/runtime_pb2.py" in names
    assert {"controlplane/py.typed", "extproc/pii_data/art9_lexicon.txt"} <= names
    # Nothing named `envoy` beside the generated Envoy API package of xds-protos.
    assert {n.split("/")[0] for n in names} == {
        "weir",
        "controlplane",
        "extproc",
        wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info",
    }
    [entry_points] = [n for n in names if n.endswith("entry_points.txt")]
    assert "weir = weir.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


# --- the image ---------------------------------------------------------------------------------


def test_the_image_is_python_slim_multi_stage_and_installs_no_dev_dependencies() -> None:
    _, found = stages()
    assert len(found) >= 2
    for stage in found:
        assert stage.base.startswith("python:3.11-slim"), stage.base
    final = found[-1]
    assert final.name is None or final.name != found[0].name
    copies_from_build = [
        rest for keyword, rest in final.instructions if keyword == "COPY" and "--from=" in rest
    ]
    assert copies_from_build, "the final stage takes the wheels from the build stage"
    assert copy_sources(final) == [], "the final stage copies nothing of the repository"
    assert "[dev]" not in DOCKERFILE.read_text()


def test_the_image_runs_weir_as_a_non_root_user() -> None:
    _, found = stages()
    final = found[-1]
    users = [rest for keyword, rest in final.instructions if keyword == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user == str(NON_ROOT_UID)  # numeric: Kubernetes' runAsNonRoot can check it
    created = " ".join(rest for keyword, rest in final.instructions if keyword == "RUN")
    assert f"--uid {NON_ROOT_UID}" in created
    workdirs = [rest for keyword, rest in final.instructions if keyword == "WORKDIR"]
    assert workdirs[-1] == "/app"
    [entrypoint] = [rest for keyword, rest in final.instructions if keyword == "ENTRYPOINT"]
    assert entrypoint == '["weir"]'  # exec form: signals reach weir (and Envoy, which it execs)
    with (REPO / "pyproject.toml").open("rb") as f:
        assert tomllib.load(f)["project"]["scripts"]["weir"] == "weir.cli:main"


def test_the_manifests_run_subcommands_the_image_has() -> None:
    [subcommands] = [
        action.choices
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    ]
    used = set()
    for target in TARGETS:
        for w in workloads(render(target)):
            for c in containers(w):
                if is_weir(c):
                    assert "command" not in c, "the manifests rely on the ENTRYPOINT"
                    used.add(args_of(w, c)[0])
    assert used == {"controlplane", "extproc", "envoy", "mock-llm"}
    assert used <= set(subcommands)


@pytest.mark.parametrize("module", ["weir.envoy_drain"])
def test_the_hooks_run_modules_of_the_installed_package(module: str) -> None:
    # The Envoy pods' preStop hook: `python -m weir.envoy_drain` with the image's Python.
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
