"""A mock OpenAI-compatible LLM upstream, for the quickstart, tests and benchmarks.

Routes: ``POST /v1/chat/completions`` (streamed or not, tool calls), ``GET /v1/models``,
``GET /v1/models/{id}``, ``GET /mock/stats``, ``POST /mock/reset``, ``GET /healthz``.

The default answer is a fixed ~20-token sentence. Per-request headers:

- ``X-Mock-Behavior``: ``echo`` (answer the last user message verbatim), ``tool_call`` (one
  tool call), ``text_then_tool_call`` (a short sentence, then one tool call),
  ``parallel_tool_calls`` (a call to each function tool offered, or to the first only if
  ``parallel_tool_calls`` is false), ``error-429`` (with ``Retry-After``), ``error-500``,
  ``hang`` (never answer). The tool behaviours are a 400 if no function tool is offered;
- ``X-Mock-TTFT-Ms`` / ``X-Mock-TPOT-Ms``: latency overrides in milliseconds.
- ``X-Mock-Usage: none``: report no usage (no ``usage`` field, no usage chunk), as some
  OpenAI-compatible servers do; ``X-Mock-Cached-Tokens: N``: report N of the prompt
  tokens as cached (``prompt_tokens_details.cached_tokens``).

Every chat response carries ``X-Mock-Received-Model`` and
``X-Mock-Received-Authorization-Present`` (and ``X-Mock-Received-Authorization-SHA256``, a
hash, never the key). Run it with ``weir mock-llm --port 8001``.
"""

from weir.mock_llm.app import create_app
from weir.mock_llm.server import serve
from weir.mock_llm.settings import MockSettings

__all__ = ["MockSettings", "create_app", "serve"]
