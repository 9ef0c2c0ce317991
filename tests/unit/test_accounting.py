"""Usage and cost: the provider's usage read defensively, estimates marked, prices per
1M tokens with cached prompt tokens at their own price."""

from __future__ import annotations

from typing import Any

import pytest

from extproc.accounting import (
    Metered,
    Prices,
    completion_tokens_of,
    estimated,
    format_cost,
    metadata,
    reported,
    usage_headers,
)

PRICES = Prices(input=2.5, cached_input=1.25, output=10.0)


def test_cost_prices_cached_prompt_tokens_apart() -> None:
    assert Metered(1000, 200, 400).cost(PRICES) == pytest.approx(0.004)
    assert Metered(1000, 200).cost(PRICES) == pytest.approx(0.0045)
    assert Metered(1000, 200, 5000).cost(PRICES) == pytest.approx(0.00325)  # capped
    assert Metered(1000, 200).cost(Prices()) == 0


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}, Metered(3, 4)),
        (
            {
                "prompt_tokens": 3,
                "completion_tokens": 4,
                "prompt_tokens_details": {"cached_tokens": 2},
            },
            Metered(3, 4, 2),
        ),
        (
            {"prompt_tokens": 3, "completion_tokens": 4, "prompt_tokens_details": None},
            Metered(3, 4),
        ),
        (None, None),
        ({}, None),
        ({"prompt_tokens": "3", "completion_tokens": 4}, None),
        ({"prompt_tokens": -1, "completion_tokens": 4}, None),
        ({"prompt_tokens": True, "completion_tokens": 4}, None),
        ([1, 2], None),
    ],
)
def test_reported_usage_is_read_defensively(usage: Any, expected: Metered | None) -> None:
    assert reported(usage) == expected


def test_estimates_are_marked_and_count_what_was_generated() -> None:
    guess = estimated(b"x" * 400, 7)
    assert guess == Metered(101, 7, 0, estimated=True)
    choices = [
        {"message": {"content": "abcdefgh", "refusal": None}},
        {"message": {"tool_calls": [{"function": {"name": "f", "arguments": '{"a":1}'}}]}},
        {"message": "not a message"},
    ]
    assert completion_tokens_of(choices) == 4  # 8 + 7 characters


def test_cost_is_written_without_float_noise() -> None:
    assert format_cost(0.004) == "0.004"
    assert format_cost(0.1 + 0.2) == "0.3"
    assert format_cost(0) == "0"
    assert format_cost(1.5e-9) == "0.0000000015"


def test_headers_and_metadata() -> None:
    headers = dict(usage_headers(Metered(10, 5, estimated=True), 0.00002))
    assert headers["x-weir-usage-total-tokens"] == b"15"
    assert headers["x-weir-usage-estimated"] == b"true"
    assert headers["x-weir-cost-usd"] == b"0.00002"
    meta = metadata("r1", "b", "m", "trial", 12.345, Metered(10, 5), 0.00002)
    assert meta["service_tier"] == "trial" and meta["latency_ms"] == 12.3
    assert meta["cost_usd"] == 0.00002 and meta["usage"]["estimated"] is False
