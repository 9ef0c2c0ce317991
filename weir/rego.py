"""The Rego engine, wrapped: compile a module, evaluate its rules, find its tests.

Weir evaluates Rego in-process with regorus (Microsoft's OPA-compatible engine in Rust,
the `gordon-to-regorus` wheel). The control plane compiles every Policy when it loads
it (to reject a broken one with the engine's message and line), ext_proc compiles it
again when the config arrives (to NACK what its engine cannot run), and
`weir policy test` runs the `test_` rules. All three go through this module.

regorus parses a module when it is added but resolves functions and variables only when
a rule is first evaluated. `compile_module` therefore also evaluates each entry rule
once with an empty input, and compiles them with regorus' RVM compiler (which resolves
every name up front): a module that names an unknown function or an unsafe variable is
rejected at load, not on the first request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Self

import orjson
import regorus

__all__ = [
    "Bundle",
    "CompiledModule",
    "RegoCompileError",
    "RegoError",
    "RegoEvalError",
    "compile_module",
    "module_package",
    "rule_names",
]

# The engine's messages look like "\n--> file.rego:4:7\n  |\n4 | code\n  |   ^\nerror: what".
_LOCATION: Final = re.compile(r"--> (?P<file>[^\n]*?):(?P<line>\d+):(?P<column>\d+)")
_WHAT: Final = re.compile(r"^error: (?P<what>.+)$", re.MULTILINE)
# The RVM compiler is younger than the interpreter and refuses some valid Rego ("not yet
# supported", "internal: ..."): only these verdicts of its are taken as compile errors.
_RVM_NAME_ERRORS: Final = re.compile(
    r"Unknown function|Undefined variable|is unsafe|used before definition"
)
_EMPTY_INPUT: Final = "{}"
_ECHOED_VALUE: Final = re.compile(r"Got `.*?` instead", re.DOTALL)
_LONG_QUOTE: Final = re.compile(r"`[^`]{41,}`")
MAX_MESSAGE_CHARS: Final = 300
RESERVED_PACKAGE: Final = "data.weir_internal"
# Builtins regorus accepts but cannot honour in-process: a policy relying on them would
# silently never decide (http.send evaluates to undefined).
_UNAVAILABLE_BUILTINS: Final = {
    "http.send": "Weir evaluates policies in-process and makes no network calls from them"
}


class RegoError(Exception):
    """A Rego module that does not compile or a rule that fails to evaluate.

    `message` is the engine's own explanation, on one line; `line` and `column` point
    into the module when the engine says where.
    """

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        self.message = message
        self.line = line
        self.column = column
        super().__init__(self.describe())

    def describe(self) -> str:
        if self.line is None:
            return self.message
        return f"line {self.line}, column {self.column}: {self.message}"

    @classmethod
    def from_engine(cls, error: BaseException) -> Self:
        text = str(error)
        # With RUST_BACKTRACE set, regorus appends a native stack trace: never show it.
        text = text.split("Stack backtrace:", 1)[0].strip()
        # Compile errors nest ("error: Compilation error:" then the real one, then a
        # "Caused by:" repeat): take the first "error:" line that says something, and the
        # location printed last before it.
        for what in _WHAT.finditer(text):
            message = what.group("what").strip().removeprefix("Compilation error:").strip()
            if not message:
                continue
            locations = list(_LOCATION.finditer(text, 0, what.start()))
            if not locations:
                return cls(message)
            where = locations[-1]
            return cls(message, int(where.group("line")), int(where.group("column")))
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return cls(lines[-1] if lines else "the Rego engine failed without a message")


class RegoCompileError(RegoError):
    """The module does not parse or does not compile."""


class RegoEvalError(RegoError):
    """A rule raised an error while being evaluated (e.g. a builtin given a bad value).

    The engine quotes the offending value ("Got `[...]` instead"); that value comes from
    a request or an answer (a prompt, tool arguments), so it is cut out: the message goes
    to logs, records and the client."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        message = _ECHOED_VALUE.sub("Got a value of another type instead", message)
        message = _LONG_QUOTE.sub("`...`", message)[:MAX_MESSAGE_CHARS]
        super().__init__(message, line, column)


def _root_name(ref: Mapping[str, Any]) -> str | None:
    """The rule name at the root of a rule head's reference (`patch` of `patch.model`)."""
    node: Any = ref
    while isinstance(node, Mapping):
        if "Var" in node:
            value = node["Var"].get("value")
            return value if isinstance(value, str) else None
        inner = next(iter(node.values()), None)
        node = inner.get("refr") if isinstance(inner, Mapping) else None
    return None


def rule_names(engine: regorus.Engine) -> dict[str, frozenset[str]]:
    """package path ("data.weir.tools") -> the names of the rules it defines."""
    found: dict[str, set[str]] = {}
    packages = list(engine.get_packages())
    for module, package in zip(orjson.loads(engine.get_ast_as_json()), packages, strict=True):
        names = found.setdefault(package, set())
        for rule in module["ast"]["rules"]:
            kind, spec = next(iter(rule.items()))
            head = spec.get("head") if kind == "Spec" else spec
            if not isinstance(head, Mapping):
                continue
            if kind == "Spec":  # {"Compr"|"Set"|"Func": {...}}
                head = next(iter(head.values()), {})
            name = _root_name(head.get("refr", {}))
            if name:
                names.add(name)
    return {package: frozenset(names) for package, names in found.items()}


def _dotted(ref: Any) -> str | None:
    """`http.send` of a call's function reference."""
    if not isinstance(ref, Mapping):
        return None
    if "Var" in ref:
        value = ref["Var"].get("value")
        return value if isinstance(value, str) else None
    if "RefDot" in ref:
        base = _dotted(ref["RefDot"].get("refr"))
        field = ref["RefDot"].get("field")
        if base is not None and isinstance(field, list) and len(field) == 2:
            return f"{base}.{field[1]}"
    return None


def _calls(node: Any) -> Iterable[tuple[str, int, int]]:
    """(function name, line, column) of every call in an AST."""
    if isinstance(node, Mapping):
        call = node.get("Call")
        if isinstance(call, Mapping):
            name = _dotted(call.get("fcn"))
            span = call.get("span") or {}
            if name is not None:
                yield name, int(span.get("line", 0)), int(span.get("col", 0))
        for value in node.values():
            yield from _calls(value)
    elif isinstance(node, list):
        for value in node:
            yield from _calls(value)


def module_package(source: str) -> str | None:
    """The package a module declares ("data.weir.tools"), or None if it does not parse."""
    engine = regorus.Engine()
    try:
        return str(engine.add_policy("module.rego", source))
    except RuntimeError:
        return None


class Bundle:
    """Modules (of distinct packages) in one engine, so that one input document is
    converted once for all of them. Not thread-safe: evaluate from one thread."""

    __slots__ = ("_aliases", "engine")

    def __init__(self, modules: Iterable[tuple[str, str]]) -> None:
        """`modules`: (file name, source) pairs. Raises RegoCompileError."""
        self._aliases: dict[str, str] = {}
        self.engine = regorus.Engine()
        for filename, source in modules:
            try:
                self.engine.add_policy(filename, source)
            except RuntimeError as error:
                raise RegoCompileError.from_engine(error) from None

    def set_input(self, input_document: Mapping[str, Any]) -> None:
        try:
            self.engine.set_input(input_document)
        except RuntimeError as error:  # a value the engine cannot take in
            raise RegoEvalError.from_engine(error) from None

    def value(self, path: str) -> Any:
        """The value of the rule at `path` ("data.pkg.rule") for the input set last;
        None when it is undefined. Raises RegoEvalError."""
        try:
            return self.engine.eval_rule(self._aliases.get(path, path))
        except RuntimeError as error:
            if path in self._aliases or "not a valid rule path" not in str(error):
                raise RegoEvalError.from_engine(error) from None
        # regorus' eval_rule refuses partial object rules (`patch.model := ...`). A query
        # would do, at twice the cost per request; a complete rule equal to the path
        # costs one module, once.
        alias = f"{RESERVED_PACKAGE.removeprefix('data.')}.v{len(self._aliases)}"
        try:
            self.engine.add_policy(f"{alias}.rego", f"package {alias}\n\nvalue := {path}\n")
        except RuntimeError as error:
            raise RegoEvalError.from_engine(error) from None
        self._aliases[path] = f"data.{alias}.value"
        return self.value(path)


@dataclass(frozen=True, slots=True)
class CompiledModule:
    """One compiled module in its own engine."""

    package: str  # "data.weir.tools"
    rules: frozenset[str]
    bundle: Bundle

    def evaluate(self, rule: str, input_document: Mapping[str, Any]) -> Any:
        """The value of `rule` for `input_document`; None when the rule is undefined.
        Raises RegoEvalError."""
        return self.evaluate_all((rule,), input_document)[0]

    def evaluate_all(self, rules: Iterable[str], input_document: Mapping[str, Any]) -> list[Any]:
        """The values of several rules for one input (set once)."""
        self.bundle.set_input(input_document)
        return [self.bundle.value(f"{self.package}.{rule}") for rule in rules]


def compile_module(filename: str, source: str, entry_rules: Iterable[str] = ()) -> CompiledModule:
    """Parse and compile one module; `entry_rules` are the rules Weir will evaluate.
    Raises RegoCompileError with the engine's message and the line."""
    module = CompiledModule("", frozenset(), Bundle(()))
    problem = _compile(module, filename, source, list(entry_rules))
    if problem is not None:
        # regorus engines must be freed on the thread that made them: drop this one now,
        # not whenever the garbage collector reaches the error's traceback.
        del module
        raise problem
    return module


def _compile(
    module: CompiledModule, filename: str, source: str, entry_rules: list[str]
) -> RegoCompileError | None:
    """Fill `module` (its engine); the compile error, if any."""
    engine = module.bundle.engine
    try:
        package = str(engine.add_policy(filename, source))
    except RuntimeError as error:
        return RegoCompileError.from_engine(error)
    if package == RESERVED_PACKAGE or package.startswith(RESERVED_PACKAGE + "."):
        return RegoCompileError(
            f"the package {package.removeprefix('data.')} is reserved for Weir; use another", 1, 1
        )
    for name, line, column in _calls(orjson.loads(engine.get_ast_as_json())):
        if name in _UNAVAILABLE_BUILTINS:
            return RegoCompileError(
                f"{name} is not available: {_UNAVAILABLE_BUILTINS[name]}", line, column
            )
    rules = rule_names(engine).get(package, frozenset())
    entries = [rule for rule in entry_rules if rule in rules]
    paths = [f"{package}.{rule}" for rule in entries]
    if paths:
        try:
            regorus.Program.compile_from_modules(_EMPTY_INPUT, [(filename, source)], paths)
        except RuntimeError as error:
            if _RVM_NAME_ERRORS.search(str(error).split("Stack backtrace:", 1)[0]):
                return RegoCompileError.from_engine(error)
    object.__setattr__(module, "package", package)
    object.__setattr__(module, "rules", rules)
    try:
        module.evaluate_all(entries, {})
    except RegoEvalError as error:
        return RegoCompileError(error.message, error.line, error.column)
    return None
