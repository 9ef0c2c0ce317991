"""Configuration of the mock LLM."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MockSettings"]


@dataclass(frozen=True)
class MockSettings:
    """Settings of a mock LLM server.

    ``ttft_ms`` is the delay before the first token of a streamed answer (before the whole
    answer when not streamed, which then also waits ``n_tokens * tpot_ms``); ``tpot_ms`` is
    the delay between two streamed tokens. Both can be overridden per request with the
    ``X-Mock-TTFT-Ms`` and ``X-Mock-TPOT-Ms`` headers.
    """

    ttft_ms: float = 0.0
    tpot_ms: float = 0.0
    model_ids: tuple[str, ...] = ("mock-gpt", "mock-gpt-mini")
    retry_after_s: int = 1
    # What a request without X-Mock-Behavior gets: e.g. "error-500" for a provider that is
    # down, to test fallbacks ("default": the usual answer).
    behavior: str = "default"

    def __post_init__(self) -> None:
        if self.ttft_ms < 0 or self.tpot_ms < 0:
            raise ValueError("ttft_ms and tpot_ms must be >= 0")
        if self.retry_after_s < 0:
            raise ValueError("retry_after_s must be >= 0")
        if isinstance(self.model_ids, str) or not all(
            isinstance(m, str) and m for m in self.model_ids
        ):
            raise ValueError("model_ids must be a tuple of non-empty strings")
