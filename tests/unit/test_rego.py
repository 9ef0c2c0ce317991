"""weir.rego: compiling modules with the engine's message and line, evaluating rules."""

from __future__ import annotations

import pytest

from weir.rego import RegoCompileError, RegoError, RegoEvalError, compile_module, rule_names

GOOD = """\
package weir.tools

deny contains msg if {
    some t in input.request.tools
    t.function.name == "delete_everything"
    msg := sprintf("tool %q blocked", [t.function.name])
}

patch["max_tokens"] := 100 if input.request.max_tokens > 100

patch.model := "small" if input.request.model == "big"
"""


def test_a_module_compiles_and_its_rules_evaluate() -> None:
    module = compile_module("tools.rego", GOOD, ("deny", "patch"))
    assert module.package == "data.weir.tools"
    assert module.rules == {"deny", "patch"}
    request = {
        "request": {
            "model": "big",
            "max_tokens": 500,
            "tools": [{"function": {"name": "delete_everything"}}],
        }
    }
    deny, patch = module.evaluate_all(("deny", "patch"), request)
    assert deny == {'tool "delete_everything" blocked'}
    # Partial object rules of both spellings (regorus' eval_rule refuses them).
    assert patch == {"max_tokens": 100, "model": "small"}
    assert module.evaluate("deny", {"request": {"tools": []}}) == set()
    assert module.evaluate("patch", {"request": {"max_tokens": 1, "model": "x"}}) == {}


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        ("package x\n\ndeny contains msg if {\n  msg := \n}\n", 4, "expecting `}`"),
        ("package x\n\ndeny contains msg if { msg := foo(1) }\n", 3, "Unknown function: 'foo'"),
        ("package x\n\ndeny contains msg if { msg := y }\n", 3, "Undefined variable: 'y'"),
        ("package x\n\ndeny[msg] { msg := 1 }\n", 3, "`if` keyword is required"),
        ("deny contains 1 if true\n", 1, "expecting `package`"),
        ('package x\n\npatch.model := "a"\npatch.model := "b"\n', 4, "rule conflicts"),
    ],
    ids=["syntax", "unknown-function", "unsafe-variable", "rego-v0", "no-package", "conflict"],
)
def test_compile_errors_carry_the_engines_message_and_line(
    source: str, line: int, message: str
) -> None:
    with pytest.raises(RegoCompileError) as raised:
        compile_module("p.rego", source, ("deny", "patch"))
    assert raised.value.line == line
    assert message in raised.value.message
    assert str(raised.value).startswith(f"line {line}, column ")
    assert "\n" not in str(raised.value)


def test_the_native_backtrace_never_reaches_a_message() -> None:
    error = RegoError.from_engine(
        RuntimeError(
            "\n--> p.rego:3:7\n  |\n3 | x\n  |   ^\nerror: boom\n\n"
            "Stack backtrace:\n   0: <unknown>"
        )
    )
    assert (error.message, error.line, error.column) == ("boom", 3, 7)
    assert "backtrace" not in str(error)


def test_a_runtime_error_is_a_rego_eval_error() -> None:
    module = compile_module(
        "n.rego", "package n\n\ndeny contains n if { n := to_number(input.v) }\n", ("deny",)
    )
    assert module.evaluate("deny", {"v": "1"}) == {1}
    with pytest.raises(RegoEvalError, match="could not parse string as number") as raised:
        module.evaluate("deny", {"v": "one"})
    assert raised.value.line == 3


def test_rule_names_lists_every_rule_of_every_package() -> None:
    module = compile_module(
        "r.rego",
        "package r\n\ndefault allow := false\nallow if true\nf(x) := x\ntest_f if f(1) == 1\n",
    )
    assert rule_names(module.bundle.engine) == {"data.r": frozenset({"allow", "f", "test_f"})}


def test_http_send_and_weirs_own_packages_are_refused_at_compile_time() -> None:
    with pytest.raises(RegoCompileError, match=r"http\.send is not available") as raised:
        compile_module(
            "h.rego", 'package h\n\ndeny contains r if {\n r := http.send({"url": "u"})\n}\n'
        )
    assert raised.value.line == 4
    with pytest.raises(RegoCompileError, match="reserved"):
        compile_module("w.rego", "package weir_internal.x\n\ndeny contains 1 if false\n")


def test_values_the_engine_quotes_in_an_error_are_cut_out() -> None:
    module = compile_module(
        "c.rego", 'package c\n\ndeny contains "x" if contains(input.m, "drop")\n', ("deny",)
    )
    with pytest.raises(RegoEvalError) as raised:
        module.evaluate("deny", {"m": [{"text": "my SSN is 078-05-1120"}]})
    assert "078-05-1120" not in str(raised.value)
    assert "`contains` expects string argument" in str(raised.value)
