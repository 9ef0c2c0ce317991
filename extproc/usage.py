"""Token usage of a chat completion: asking a stream for it, and estimating it before
the answer exists."""

from __future__ import annotations

from typing import Any, Final

DEFAULT_OUTPUT_RESERVATION: Final = 4096
"""Tokens reserved for the answer of a request that sets no max_tokens, for a model
whose maximum output the Backend does not give."""


def ask_for_usage(body: dict[str, Any]) -> bool:
    """Make a streamed request ask for the final usage chunk
    (`stream_options.include_usage`). True when Weir added it (the client did not ask,
    so the chunk must not reach it)."""
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return False
    body["stream_options"] = {
        **(options if isinstance(options, dict) else {}),
        "include_usage": True,
    }
    return True


def estimate_tokens(body: bytes) -> int:
    """A prompt's tokens, estimated from the request body sent upstream: a token is
    about four bytes of English; JSON syntax makes this an overestimate, as a
    reservation should be."""
    return len(body) // 4 + 1


def is_usage_chunk(chunk: Any) -> bool:
    """The chunk a stream ends with when asked for usage: usage, and no choices."""
    return isinstance(chunk, dict) and bool(chunk.get("usage")) and chunk.get("choices") == []
