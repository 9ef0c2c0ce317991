"""Per-request behaviour selected by the ``X-Mock-Behavior`` header, and latency overrides.

The tool behaviours (:data:`TOOL_BEHAVIORS`) call tools whatever the prompt says, and are a
400 if no function tool is offered: ``tool_call`` makes one call, ``text_then_tool_call``
says a short sentence and then makes one call, ``parallel_tool_calls`` calls each function
offered, in order (only the first if the request sets ``parallel_tool_calls: false``).
"""

from __future__ import annotations

import math
from enum import StrEnum

from starlette.datastructures import Headers

from weir.mock_llm.errors import APIError

__all__ = [
    "BEHAVIOR_HEADER",
    "TOOL_BEHAVIORS",
    "TPOT_HEADER",
    "TTFT_HEADER",
    "Behavior",
    "latency_override_ms",
    "parse_behavior",
    "parse_usage_options",
]

BEHAVIOR_HEADER = "X-Mock-Behavior"
TTFT_HEADER = "X-Mock-TTFT-Ms"
TPOT_HEADER = "X-Mock-TPOT-Ms"
USAGE_HEADER = "X-Mock-Usage"  # "none": report no usage (as some providers do not)
CACHED_TOKENS_HEADER = "X-Mock-Cached-Tokens"  # prompt tokens "served from a cache"


class Behavior(StrEnum):
    DEFAULT = "default"
    ECHO = "echo"
    TOOL_CALL = "tool_call"
    TEXT_THEN_TOOL_CALL = "text_then_tool_call"
    PARALLEL_TOOL_CALLS = "parallel_tool_calls"
    ERROR_429 = "error-429"
    ERROR_500 = "error-500"
    HANG = "hang"


_BY_NAME = {b.value: b for b in Behavior}
TOOL_BEHAVIORS = frozenset(
    {Behavior.TOOL_CALL, Behavior.TEXT_THEN_TOOL_CALL, Behavior.PARALLEL_TOOL_CALLS}
)


def parse_behavior(headers: Headers, default: str = "default") -> Behavior:
    """The behaviour asked for (case-insensitive), else the server's `default` (a
    Behavior value); 400 if unknown."""
    raw = headers.get(BEHAVIOR_HEADER)
    value = (raw or "").strip().lower()
    if not value:
        return _BY_NAME[default]
    behavior = _BY_NAME.get(value)
    if behavior is None:
        supported = ", ".join(f"'{b.value}'" for b in Behavior if b is not Behavior.DEFAULT)
        raise APIError(
            400,
            f"Invalid value for header '{BEHAVIOR_HEADER}': '{raw}'. "
            f"Supported values are: {supported}.",
            code="invalid_mock_behavior",
        )
    return behavior


def latency_override_ms(headers: Headers, name: str, default: float) -> float:
    """A latency header (milliseconds, a non-negative float), or ``default`` if absent."""
    raw = headers.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise APIError(
            400,
            f"Invalid value for header '{name}': '{raw}'. Expected a non-negative number of "
            "milliseconds.",
            code="invalid_mock_latency",
        )
    return value


def parse_usage_options(headers: Headers) -> tuple[bool, int]:
    """(whether to report usage, cached prompt tokens to report) from the usage headers."""
    raw = (headers.get(USAGE_HEADER) or "").strip().lower()
    if raw not in ("", "report", "none"):
        raise APIError(
            400,
            f"Invalid value for header '{USAGE_HEADER}': '{raw}'. Supported values are: "
            "'report', 'none'.",
            code="invalid_mock_usage",
        )
    cached_raw = (headers.get(CACHED_TOKENS_HEADER) or "0").strip()
    if not cached_raw.isdigit():
        raise APIError(
            400,
            f"Invalid value for header '{CACHED_TOKENS_HEADER}': '{cached_raw}'. Expected a "
            "non-negative integer.",
            code="invalid_mock_usage",
        )
    return raw != "none", int(cached_raw)
