"""Usage and cost of one answer, for its headers, its `weir` object and its record.

Usage is the provider's (the `usage` of a completion, or of a stream's final chunk).
When the provider reports none, it is estimated and marked so: the prompt at a token
per four bytes of the request sent upstream, the answer at a token per four characters
generated (per streamed chunk, for a stream). Cost prices it with the Backend's table in
USD per 1M tokens: cached prompt tokens at the cached-input price, the rest of the
prompt at the input price, the completion at the output price.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from extproc.usage import estimate_tokens

PER_TOKENS: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per 1M tokens."""

    input: float = 0.0
    cached_input: float = 0.0
    output: float = 0.0


UNPRICED: Final = Prices()  # a model without a price table: cost 0


@dataclass(frozen=True, slots=True)
class Metered:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # of the prompt tokens
    estimated: bool = False  # the provider reported none: Weir's estimate

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def cost(self, prices: Prices) -> float:
        cached = min(self.cached_tokens, self.prompt_tokens)
        return (
            (self.prompt_tokens - cached) * prices.input
            + cached * prices.cached_input
            + self.completion_tokens * prices.output
        ) / PER_TOKENS


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def reported(usage: Any) -> Metered | None:
    """The provider's usage object as Metered; None when it is missing or malformed."""
    if not isinstance(usage, dict):
        return None
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    details = usage.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else None
    return Metered(prompt, completion, min(cached or 0, prompt))


def estimated(request: bytes, completion_tokens: int) -> Metered:
    """Usage the provider did not report: the prompt from the size of the request sent
    upstream, the completion as estimated by the caller."""
    return Metered(estimate_tokens(request), completion_tokens, 0, estimated=True)


def completion_tokens_of(choices: list[dict[str, Any]]) -> int:
    """An estimate of what a non-streamed completion generated: a token per four
    characters of its messages' text and tool-call arguments."""
    chars = 0
    for choice in choices:
        message = choice.get("message")
        if not isinstance(message, dict):
            continue
        for field in ("content", "refusal"):
            text = message.get(field)
            if isinstance(text, str):
                chars += len(text)
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            function = call.get("function") if isinstance(call, dict) else None
            arguments = function.get("arguments") if isinstance(function, dict) else None
            if isinstance(arguments, str):
                chars += len(arguments)
    return (chars + 3) // 4


def format_cost(cost: float) -> str:
    """USD with ten decimals, trailing zeros dropped: 0.000123, 0."""
    text = f"{cost:.10f}".rstrip("0").rstrip(".")
    return text or "0"


def usage_headers(metered: Metered, cost: float) -> list[tuple[str, bytes]]:
    """X-Weir-Usage-* and X-Weir-Cost-USD of a non-streamed answer."""
    headers = [
        ("x-weir-usage-prompt-tokens", str(metered.prompt_tokens).encode()),
        ("x-weir-usage-completion-tokens", str(metered.completion_tokens).encode()),
        ("x-weir-usage-total-tokens", str(metered.total_tokens).encode()),
        ("x-weir-usage-cached-tokens", str(metered.cached_tokens).encode()),
        ("x-weir-cost-usd", format_cost(cost).encode()),
    ]
    if metered.estimated:
        headers.append(("x-weir-usage-estimated", b"true"))
    return headers


def metadata(
    request_id: str,
    backend: str,
    model: str,
    tier: str | None,
    latency_ms: float,
    metered: Metered,
    cost: float,
) -> dict[str, Any]:
    """The `weir` object added to a non-streamed answer."""
    return {
        "request_id": request_id,
        "backend": backend,
        "model": model,
        "service_tier": tier,
        "latency_ms": round(latency_ms, 1),
        "usage": {
            "prompt_tokens": metered.prompt_tokens,
            "completion_tokens": metered.completion_tokens,
            "total_tokens": metered.total_tokens,
            "cached_tokens": metered.cached_tokens,
            "estimated": metered.estimated,
        },
        "cost_usd": float(format_cost(cost)),
    }
