"""`model: "auto"`: which of an endpoint's models a request goes to.

The client gives hints, in a `weir.routing` object of the request body or in headers
(headers win): a mode (fast, balanced, quality, cost), the highest quality tier it wants
to pay for, the longest it may wait, the task's complexity, and SLOs on the time to
first token and per output token (X-SLO-TTFT-Ms, X-SLO-TPOT-Ms). Each candidate is an
endpoint model, judged by its first target: the quality tier and prices its Backend
gives, and the latency this replica has seen from it lately (exponentially weighted
averages of live traffic, measured from when the request was forwarded; a failure
counts as a long wait). Candidates outside the hints are set aside; if none is left,
the latency hints give way first, then the quality ones, and the reason says so.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Final

from extproc.errors import InvalidRequest
from extproc.routes import Target

AUTO: Final = "auto"
FORCE_HEADER: Final = "x-weir-route-to"  # backend[/model]: needs the routing scope
MODES: Final = ("fast", "balanced", "quality", "cost")
QUALITY_TIERS: Final = ("basic", "standard", "premium", "frontier")  # 1 .. 4
# The least quality tier a task of this complexity needs.
COMPLEXITY: Final = {"low": 1, "medium": 2, "high": 3}
EXPECTED_OUTPUT_TOKENS: Final = 256  # for the latency of a request that sets no max_tokens
EWMA_WEIGHT: Final = 0.2  # of the newest sample
# What a failed answer (5xx, 429, a fallback taken) counts as: a few in a row make the
# model too slow for any SLO and the last choice of "fast"; answers wear it off again.
FAILURE_PENALTY_MS: Final = 30_000.0

HINT_HEADERS: Final = {
    "x-weir-routing-mode": "mode",
    "x-weir-routing-max-quality-tier": "max_quality_tier",
    "x-weir-routing-max-latency-ms": "max_latency_ms",
    "x-weir-routing-complexity": "complexity",
    "x-slo-ttft-ms": "slo_ttft_ms",
    "x-slo-tpot-ms": "slo_tpot_ms",
}


@dataclass(frozen=True, slots=True)
class Hints:
    mode: str = "balanced"
    max_quality: int = 0  # 0: any
    max_latency_ms: float = 0.0  # 0: any
    min_quality: int = 0
    slo_ttft_ms: float = 0.0
    slo_tpot_ms: float = 0.0

    def as_record(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "max_quality_tier": QUALITY_TIERS[self.max_quality - 1] if self.max_quality else None,
            "max_latency_ms": self.max_latency_ms or None,
            "complexity": next((k for k, v in COMPLEXITY.items() if v == self.min_quality), None),
            "slo_ttft_ms": self.slo_ttft_ms or None,
            "slo_tpot_ms": self.slo_tpot_ms or None,
        }


def _number(value: Any, name: str, param: str) -> float:
    if isinstance(value, bytes):
        value = value.decode("latin-1").strip()
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise InvalidRequest(f"{name} must be a positive number of milliseconds.", param=param)
    return number


def _choice(value: Any, allowed: tuple[str, ...] | list[str], name: str, param: str) -> str:
    text = value.decode("latin-1").strip().lower() if isinstance(value, bytes) else value
    if not isinstance(text, str) or text not in allowed:
        raise InvalidRequest(f"{name} must be one of: {', '.join(allowed)}.", param=param)
    return text


def parse_hints(body_hints: Any, headers: dict[str, bytes], default_mode: str) -> Hints:
    """The routing hints of a request: the body's `weir.routing`, then its headers."""
    given: dict[str, tuple[Any, str]] = {}
    if body_hints is not None:
        if not isinstance(body_hints, dict):
            raise InvalidRequest("weir.routing must be an object.", param="weir.routing")
        for key, value in body_hints.items():
            if key not in HINT_HEADERS.values():
                raise InvalidRequest(
                    f"Unknown routing hint weir.routing.{key}; known: "
                    f"{', '.join(HINT_HEADERS.values())}.",
                    param=f"weir.routing.{key}",
                )
            given[key] = (value, f"weir.routing.{key}")
    for header, key in HINT_HEADERS.items():
        if headers.get(header):
            given[key] = (headers[header], header)
    hints: dict[str, Any] = {"mode": default_mode}
    for key, (value, where) in given.items():
        if key == "mode":
            hints["mode"] = _choice(value, MODES, "The routing mode", where)
        elif key == "max_quality_tier":
            tier = _choice(value, QUALITY_TIERS, "The maximum quality tier", where)
            hints["max_quality"] = QUALITY_TIERS.index(tier) + 1
        elif key == "complexity":
            level = _choice(value, list(COMPLEXITY), "The task complexity", where)
            hints["min_quality"] = COMPLEXITY[level]
        elif key == "max_latency_ms":
            hints["max_latency_ms"] = _number(value, "The maximum latency", where)
        elif key == "slo_ttft_ms":
            hints["slo_ttft_ms"] = _number(value, "X-SLO-TTFT-Ms", where)
        else:
            hints["slo_tpot_ms"] = _number(value, "X-SLO-TPOT-Ms", where)
    return Hints(**hints)


@dataclass(slots=True)
class Latency:
    """What a (backend, model) has shown lately: EWMA milliseconds; None: no sample."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    samples: int = 0


@dataclass(slots=True)
class LatencyBoard:
    """Time to first token and per output token of each (backend, model), measured from
    this replica's live traffic."""

    seen: dict[tuple[str, str], Latency] = field(default_factory=dict)

    def of(self, target: Target) -> Latency:
        return self.seen.get((target.backend, target.model)) or Latency()

    def observe(self, target: Target, ttft_ms: float, tpot_ms: float | None = None) -> None:
        latency = self.seen.setdefault((target.backend, target.model), Latency())
        latency.samples += 1
        latency.ttft_ms = _blend(latency.ttft_ms, ttft_ms)
        if tpot_ms is not None:
            latency.tpot_ms = _blend(latency.tpot_ms, tpot_ms)


def _blend(old: float | None, new: float) -> float:
    return new if old is None else old + EWMA_WEIGHT * (new - old)


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    model: str  # the endpoint model chosen
    mode: str
    reason: str
    hints: Hints
    considered: int
    at: float = field(default_factory=time.time)

    def as_record(self) -> dict[str, Any]:
        return {
            "requested": AUTO,
            "chosen": self.model,
            "mode": self.mode,
            "reason": self.reason,
            "hints": self.hints.as_record(),
            "considered": self.considered,
        }

    def header(self) -> bytes:
        return f"{self.model}; mode={self.mode}; reason={self.reason}".encode()


@dataclass(frozen=True, slots=True)
class _Candidate:
    model: str
    target: Target
    latency: Latency
    order: int

    @property
    def price(self) -> float:
        prices = self.target.prices
        return prices.input + prices.output

    def expected_ms(self, output_tokens: int) -> float | None:
        ttft, tpot = self.latency.ttft_ms, self.latency.tpot_ms
        if ttft is None:
            return None
        return ttft + (tpot or 0.0) * output_tokens


def _meets_latency(candidate: _Candidate, hints: Hints, output_tokens: int) -> bool:
    """Unknown latency meets every bound: a candidate gets traffic, so it gets measured."""
    latency = candidate.latency
    if hints.slo_ttft_ms and latency.ttft_ms is not None and latency.ttft_ms > hints.slo_ttft_ms:
        return False
    if hints.slo_tpot_ms and latency.tpot_ms is not None and latency.tpot_ms > hints.slo_tpot_ms:
        return False
    expected = candidate.expected_ms(output_tokens)
    return not (hints.max_latency_ms and expected is not None and expected > hints.max_latency_ms)


def _meets_quality(candidate: _Candidate, hints: Hints) -> bool:
    quality = candidate.target.quality
    if hints.max_quality and quality > hints.max_quality:
        return False
    return not (hints.min_quality and quality < hints.min_quality)


def _fast_key(candidate: _Candidate, output_tokens: int) -> tuple[float, int]:
    expected = candidate.expected_ms(output_tokens)
    return (-1.0 if expected is None else expected, candidate.order)  # unknown: try it


def choose(
    models: dict[str, Target],
    hints: Hints,
    board: LatencyBoard,
    output_tokens: int = EXPECTED_OUTPUT_TOKENS,
) -> RoutingDecision:
    """Pick one of `models` (endpoint model -> its first target, in config order)."""
    candidates = [
        _Candidate(name, target, board.of(target), order)
        for order, (name, target) in enumerate(models.items())
    ]
    eligible = [
        c
        for c in candidates
        if _meets_quality(c, hints) and _meets_latency(c, hints, output_tokens)
    ]
    note = ""
    if not eligible:
        eligible = [c for c in candidates if _meets_quality(c, hints)]
        note = "; no model meets the latency hints, so the fastest that fits the quality ones"
        if not eligible:
            eligible = candidates
            note = "; no model meets the hints, so the fastest of all"
        best = min(eligible, key=lambda c: _fast_key(c, output_tokens))
        return RoutingDecision(
            best.model, hints.mode, f"{hints.mode}{note}", hints, len(candidates)
        )
    mode = hints.mode
    if mode == "cost":
        best = min(eligible, key=lambda c: (c.price, -c.target.quality, c.order))
        why = f"the cheapest of {len(eligible)} that fit"
    elif mode == "quality":
        best = min(eligible, key=lambda c: (-c.target.quality, c.price, c.order))
        why = f"the highest quality tier of {len(eligible)} that fit"
    elif mode == "fast":
        best = min(eligible, key=lambda c: _fast_key(c, output_tokens))
        why = f"the fastest lately of {len(eligible)} that fit"
    else:  # balanced: the best sum of ranks in quality, price and latency
        by_quality = sorted(eligible, key=lambda c: (-c.target.quality, c.order))
        by_price = sorted(eligible, key=lambda c: (c.price, c.order))
        by_speed = sorted(eligible, key=lambda c: _fast_key(c, output_tokens))

        def rank(c: _Candidate) -> tuple[int, int]:
            return (by_quality.index(c) + by_price.index(c) + by_speed.index(c), c.order)

        best = min(eligible, key=rank)
        why = f"the best balance of quality, price and speed of {len(eligible)} that fit"
    return RoutingDecision(best.model, mode, why, hints, len(candidates))
