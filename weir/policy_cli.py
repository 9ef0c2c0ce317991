"""`weir policy test DIR`: run the `test_` rules of Weir's Rego policies, like `opa test`.

Every `*.rego` file under DIR and the module of every Policy resource in the `*.yaml` /
`*.yml` files under DIR are loaded into one engine, so a test file that declares a
policy's package sees its rules (`deny`, `patch`, helpers). Each rule whose name starts
with `test_` passes when it evaluates to true. Exit status: 0 all passed, 1 a test failed
or errored (or none was found), 2 a module or a file could not be read.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

import regorus
import yaml

from weir.rego import RegoCompileError, RegoError, RegoEvalError, rule_names

TEST_PREFIX: Final = "test_"
_CONFIG_SUFFIXES: Final = (".yaml", ".yml")


class LoadFailed(Exception):
    """A file under DIR could not be read or one of its modules does not compile."""


@dataclass(frozen=True, slots=True)
class Module:
    label: str  # where it came from: a file, or "file (Policy name)"
    source: str


def find_modules(directory: Path) -> list[Module]:
    """The Rego modules under `directory`: `.rego` files and Policy resources' `rego`."""
    if not directory.is_dir():
        raise LoadFailed(f"{directory}: not a directory")
    modules: list[Module] = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        if any(part.startswith(".") for part in path.relative_to(directory).parts):
            continue
        if path.suffix == ".rego":
            modules.append(Module(str(path), _read(path)))
        elif path.suffix in _CONFIG_SUFFIXES:
            modules.extend(_policy_modules(path))
    return modules


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise LoadFailed(f"{path}: cannot be read: {error}") from None


def _policy_modules(path: Path) -> list[Module]:
    try:
        documents = list(yaml.safe_load_all(_read(path)))
    except yaml.YAMLError as error:
        raise LoadFailed(f"{path}: not valid YAML: {error}") from None
    modules = []
    for document in documents:
        if not isinstance(document, dict) or document.get("kind") != "Policy":
            continue
        spec: Any = document.get("spec")
        metadata: Any = document.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        source = spec.get("rego") if isinstance(spec, dict) else None
        if isinstance(source, str):
            modules.append(Module(f"{path} (Policy {name or '?'})", source))
    return modules


@dataclass(frozen=True, slots=True)
class Result:
    rule: str  # data.<package>.<test rule>
    outcome: str  # "PASS", "FAIL" or "ERROR"
    seconds: float
    detail: str = ""


def load_engine(modules: list[Module]) -> regorus.Engine:
    engine = regorus.Engine()
    for index, module in enumerate(modules):
        try:
            engine.add_policy(f"module{index}.rego", module.source)
        except RuntimeError as error:
            raise LoadFailed(f"{module.label}: {RegoCompileError.from_engine(error)}") from None
    return engine


def run_tests(engine: regorus.Engine, pattern: re.Pattern[str] | None = None) -> list[Result]:
    results = []
    for package, names in sorted(rule_names(engine).items()):
        for name in sorted(n for n in names if n.startswith(TEST_PREFIX)):
            rule = f"{package}.{name}"
            if pattern is not None and not pattern.search(rule):
                continue
            started = time.perf_counter()
            try:
                value = engine.eval_rule(rule)
            except RuntimeError as error:
                detail = RegoEvalError.from_engine(error).describe()
                results.append(Result(rule, "ERROR", time.perf_counter() - started, detail))
                continue
            outcome = "PASS" if value is True else "FAIL"
            results.append(Result(rule, outcome, time.perf_counter() - started))
    return results


def report(results: list[Result], out: TextIO, verbose: bool) -> int:
    failed = [r for r in results if r.outcome != "PASS"]
    for result in results:
        if verbose or result.outcome != "PASS":
            line = f"{result.outcome}: {result.rule} ({result.seconds * 1000:.2f} ms)"
            if result.detail:
                line += f"\n  {result.detail}"
            out.write(line + "\n")
    if not results:
        out.write("no test_ rules found\n")
        return 1
    out.write("-" * 80 + "\n")
    passed = len(results) - len(failed)
    if passed:
        out.write(f"PASS: {passed}/{len(results)}\n")
    for outcome in ("FAIL", "ERROR"):
        count = sum(1 for r in failed if r.outcome == outcome)
        if count:
            out.write(f"{outcome}: {count}/{len(results)}\n")
    return 1 if failed else 0


def _cmd_test(args: argparse.Namespace) -> int:
    try:
        pattern = re.compile(args.run) if args.run else None
    except re.error as error:
        print(
            f"weir policy test: --run is not a valid regular expression: {error}", file=sys.stderr
        )
        return 2
    try:
        engine = load_engine(find_modules(Path(args.directory)))
    except (LoadFailed, RegoError) as error:
        print(f"weir policy test: {error}", file=sys.stderr)
        return 2
    return report(run_tests(engine, pattern), sys.stdout, args.verbose)


def add_parser(sub: Any) -> None:
    policy = sub.add_parser("policy", help="Rego policies")
    actions = policy.add_subparsers(dest="policy_command", required=True)
    test = actions.add_parser(
        "test",
        help="run the test_ rules of the policies under a directory, like `opa test`",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    test.add_argument("directory", help="a directory of .rego files and Policy YAML files")
    test.add_argument("-v", "--verbose", action="store_true", help="also list passing tests")
    test.add_argument("-r", "--run", help="run only the tests whose rule path matches")
    test.set_defaults(func=_cmd_test)
