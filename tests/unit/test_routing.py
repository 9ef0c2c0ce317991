"""`model: "auto"`: hints from the body and headers, and the choice per mode, within the
quality bounds and the latency each candidate has shown."""

from __future__ import annotations

import pytest

from extproc.accounting import Prices
from extproc.errors import InvalidRequest
from extproc.routes import Target
from extproc.routing import FAILURE_PENALTY_MS, Hints, LatencyBoard, choose, parse_hints


def target(backend: str, quality: int, price: float) -> Target:
    return Target(
        backend=backend,
        cluster=f"backend-{backend}",
        model=f"{backend}-model",
        path_prefix="/v1",
        authority="x",
        authorization=b"",
        max_output_tokens=0,
        prices=Prices(input=price, output=price),
        quality=quality,
    )


MODELS = {
    "mini": target("cheap", 1, 0.1),
    "std": target("middle", 2, 1.0),
    "big": target("premium", 4, 10.0),
}


def test_each_mode_picks_its_own_best() -> None:
    board = LatencyBoard()
    assert choose(MODELS, Hints(mode="cost"), board).model == "mini"
    assert choose(MODELS, Hints(mode="quality"), board).model == "big"
    board.observe(MODELS["mini"], 900.0, 40.0)
    board.observe(MODELS["std"], 100.0, 5.0)
    board.observe(MODELS["big"], 400.0, 20.0)
    assert choose(MODELS, Hints(mode="fast"), board).model == "std"
    decision = choose(MODELS, Hints(mode="balanced"), board)
    assert decision.model == "std"  # ranks: quality 2nd, price 2nd, speed 1st
    assert "balance" in decision.reason and decision.considered == 3


def test_quality_bounds_and_complexity() -> None:
    board = LatencyBoard()
    assert choose(MODELS, Hints(mode="quality", max_quality=2), board).model == "std"
    assert choose(MODELS, Hints(mode="cost", min_quality=3), board).model == "big"


def test_slos_set_aside_what_was_slow_lately_and_unknown_latency_is_tried() -> None:
    board = LatencyBoard()
    board.observe(MODELS["big"], 2000.0, 50.0)
    hints = Hints(mode="quality", slo_ttft_ms=500)
    assert choose(MODELS, hints, board).model == "std"  # not measured yet: allowed
    board.observe(MODELS["std"], 800.0, 10.0)
    board.observe(MODELS["mini"], 100.0, 10.0)
    assert choose(MODELS, hints, board).model == "mini"
    tight = Hints(mode="quality", slo_tpot_ms=5)
    decision = choose(MODELS, tight, board)
    assert decision.model == "mini" and "no model meets the latency hints" in decision.reason
    budget = Hints(mode="quality", max_latency_ms=1500)  # ttft + tpot x 256 tokens
    assert choose(MODELS, budget, board, 50).model == "std"  # 800 + 500; big: 2000 + ...


def test_latency_is_an_exponentially_weighted_average() -> None:
    board = LatencyBoard()
    board.observe(MODELS["std"], 100.0)
    board.observe(MODELS["std"], 200.0)
    latency = board.of(MODELS["std"])
    assert latency.ttft_ms == pytest.approx(120.0) and latency.tpot_ms is None
    assert latency.samples == 2


def test_hints_come_from_the_body_and_headers_win() -> None:
    hints = parse_hints(
        {"mode": "cost", "max_quality_tier": "premium", "complexity": "medium"},
        {"x-weir-routing-mode": b"Quality", "x-slo-ttft-ms": b"250"},
        "balanced",
    )
    assert hints == Hints(mode="quality", max_quality=3, min_quality=2, slo_ttft_ms=250.0)
    assert parse_hints(None, {}, "fast") == Hints(mode="fast")


@pytest.mark.parametrize(
    ("body", "headers", "param"),
    [
        ({"mode": "cheap"}, {}, "weir.routing.mode"),
        ({"speed": 1}, {}, "weir.routing.speed"),
        ("fast", {}, "weir.routing"),
        (None, {"x-slo-ttft-ms": b"-5"}, "x-slo-ttft-ms"),
        (None, {"x-weir-routing-max-quality-tier": b"gold"}, "x-weir-routing-max-quality-tier"),
        ({"max_latency_ms": "soon"}, {}, "weir.routing.max_latency_ms"),
    ],
)
def test_bad_hints_are_400s_naming_the_hint(
    body: object, headers: dict[str, bytes], param: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_hints(body, headers, "balanced")
    assert raised.value.param == param


def test_a_model_that_keeps_failing_is_not_taken_for_fast() -> None:
    """Failures count as long waits (the processor observes FAILURE_PENALTY_MS): an
    unmeasured model is tried first, but not once it has failed."""
    board = LatencyBoard()
    board.observe(MODELS["std"], 300.0, 10.0)
    board.observe(MODELS["big"], 400.0, 10.0)
    assert choose(MODELS, Hints(mode="fast"), board).model == "mini"  # unknown: tried
    board.observe(MODELS["mini"], FAILURE_PENALTY_MS)
    assert choose(MODELS, Hints(mode="fast"), board).model == "std"
    assert choose(MODELS, Hints(mode="cost", slo_ttft_ms=1000), board).model == "std"
