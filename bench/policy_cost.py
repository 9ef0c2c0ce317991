"""What Rego policy evaluation costs ext_proc per request, measured in-process.

The policies are compiled as ext_proc compiles them (the config directory loaded and
translated by the control plane's code, then `RouteTable.compile`), and each case times
what ext_proc does per request: build the input document and evaluate every policy of
the stage. Run alone:

    .venv/bin/python bench/policy_cost.py [--runs N] [--config DIR]

`bench/run.py` runs it too and prints its table after the end-to-end one.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script: bench/ is not a package
    sys.path.insert(0, str(REPO_ROOT))

from controlplane.source_files import load_directory  # noqa: E402
from controlplane.translate_runtime import translate  # noqa: E402
from extproc.auth import Principal  # noqa: E402
from extproc.completion_watch import ResponseCheck  # noqa: E402
from extproc.errors import PolicyDenied  # noqa: E402
from extproc.policies import Decision, compile_policies, evaluate  # noqa: E402
from extproc.policy_input import request_document  # noqa: E402
from extproc.routes import RouteTable  # noqa: E402
from extproc.tool_calls import ToolCall  # noqa: E402
from weir.config.v1 import runtime_pb2  # noqa: E402

TARGET_P50_US = 100.0
# A response policy of the kind the README shows: tool calls limited to a path prefix.
TOOL_PATHS = """\
package bench.tool_paths

deny contains msg if {
    some call in input.response.tool_calls
    call.name == "read_file"
    not startswith(call.arguments.path, "/srv/data/")
    msg := sprintf("read_file may only read under /srv/data/, not %q", [call.arguments.path])
}
"""


# Two more request policies, to show what each extra policy of a stage costs.
MORE_REQUEST_POLICIES = {
    "cap-max-tokens": """\
package bench.cap_max_tokens

patch.max_tokens := 512 if input.request.max_tokens > 512
""",
    "no-secrets-in-prompts": """\
package bench.no_secrets

deny contains "prompts may not contain private keys" if {
    some message in input.request.messages
    is_string(message.content)
    contains(message.content, "BEGIN PRIVATE KEY")
}
""",
}


def typical_request() -> dict[str, Any]:
    """About 2 KB: a system prompt, three turns, two tools."""
    text = "Summarise the quarterly report and list the three largest cost increases. " * 5
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a careful financial analyst. " * 6},
            {"role": "user", "content": text},
            {"role": "assistant", "content": "Which report do you mean?"},
            {"role": "user", "content": "The Q3 one in /srv/data/reports."},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": name,
                    "description": f"{name} on the analyst's workspace",
                    "parameters": {
                        "type": "object",
                        "properties": {"path": {"type": "string"}},
                        "required": ["path"],
                    },
                },
            }
            for name in ("read_file", "list_dir")
        ],
        "max_tokens": 800,
        "temperature": 0.2,
    }


@dataclass(frozen=True)
class Case:
    label: str
    p50_us: float
    p99_us: float


def _time(work: Callable[[], object], runs: int) -> tuple[float, float]:
    for _ in range(min(500, runs)):
        work()
    samples = []
    gc.disable()
    try:
        for _ in range(runs):
            started = time.perf_counter_ns()
            work()
            samples.append(time.perf_counter_ns() - started)
    finally:
        gc.enable()
    samples.sort()
    return samples[len(samples) // 2] / 1000, samples[int(len(samples) * 0.99)] / 1000


def measure(config_dir: Path, runs: int) -> list[Case]:
    environ = {"WEIR_MOCK_LLM_URL": "http://127.0.0.1:9/v1"}
    runtime = translate(load_directory(config_dir, environ), environ)
    table = RouteTable.compile(runtime)
    endpoint = table.endpoint("demo", "chat")
    if endpoint is None or not endpoint.policies.request:
        return []  # nothing to measure: the config has no request policy on demo/chat
    principal = Principal("key_0123456789abcdef", "demo", frozenset({"inference"}), 0, False)
    body = typical_request()
    request_policies = endpoint.policies.request

    def request_stage() -> object:
        document = request_document(body, principal, endpoint, {}, "req-1", "session-1")
        return evaluate(request_policies, document, [])

    response_policies = compile_policies(
        [
            runtime_pb2.Policy(
                name="tool-paths",
                stage=runtime_pb2.Policy.STAGE_RESPONSE,
                module=TOOL_PATHS,
                package="data.bench.tool_paths",
                endpoints=["demo-chat"],
            )
        ]
    )["demo-chat"].response
    document = request_document(body, principal, endpoint, {}, "req-1", "session-1")
    call = ToolCall(0, 0, id="call_1", name="read_file")
    call.add_arguments('{"path": "/srv/data/reports/q3.pdf"}')
    decisions: list[Decision] = []
    check = ResponseCheck(response_policies, document, "mock", "mock-gpt-mini", decisions)

    def tool_call_check() -> object:
        decisions.clear()
        check.run([], [call], None, complete=False)
        return decisions

    three = compile_policies(
        [
            *(p for p in runtime.policies if p.stage == runtime_pb2.Policy.STAGE_REQUEST),
            *(
                runtime_pb2.Policy(
                    name=name,
                    stage=runtime_pb2.Policy.STAGE_REQUEST,
                    module=module,
                    endpoints=["demo-chat"],
                )
                for name, module in MORE_REQUEST_POLICIES.items()
            ),
        ]
    )["demo-chat"].request

    def three_policies() -> object:
        document = request_document(body, principal, endpoint, {}, "req-1", "session-1")
        try:
            return evaluate(three, document, [])
        except PolicyDenied as denied:  # not expected with this request
            raise SystemExit(f"bench policy denied the request: {denied}") from None

    names = ", ".join(p.name for p in request_policies)
    return [
        Case(f"request stage ({names}), 2 KB request, 2 tools", *_time(request_stage, runs)),
        Case(
            f"request stage, {len(three.policies)} policies, same request",
            *_time(three_policies, runs),
        ),
        Case(
            "response stage (a tool-path allow-list), one tool call", *_time(tool_call_check, runs)
        ),
    ]


def render(cases: Sequence[Case], runs: int) -> str:
    if not cases:
        return "Policy evaluation: not measured (the config has no request policy on demo/chat)"
    width = max(len(c.label) for c in cases)
    lines = [
        f"Policy evaluation in ext_proc, in-process ({runs} runs per case; input document "
        f"built and every policy of the stage evaluated; target p50 < {TARGET_P50_US:.0f} us):",
        f"  {'case':<{width}}  {'p50 us':>8}  {'p99 us':>8}",
    ]
    for case in cases:
        lines.append(f"  {case.label:<{width}}  {case.p50_us:>8.1f}  {case.p99_us:>8.1f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5000, help="timed runs per case (5000)")
    parser.add_argument("--config", default=str(REPO_ROOT / "examples" / "quickstart"))
    args = parser.parse_args(argv)
    cases = measure(Path(args.config), args.runs)
    print(render(cases, args.runs))
    return 0 if cases and cases[0].p50_us < TARGET_P50_US else 1


if __name__ == "__main__":
    sys.exit(main())
