"""The ``text/event-stream`` response of a streamed chat completion."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from weir.mock_llm.completions import Completion

__all__ = ["SSEResponse"]

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class SSEResponse(StreamingResponse):
    """Streams a :class:`Completion` as server-sent events.

    With delays it is a regular :class:`StreamingResponse` (which stops when the client
    disconnects). Without any delay the whole stream is one write, so the response skips
    the disconnect watcher and its task group: they cost more than the answer itself.
    """

    def __init__(self, completion: Completion, headers: Mapping[str, str]) -> None:
        super().__init__(
            completion.stream(),
            headers={**headers, **_SSE_HEADERS},
            media_type="text/event-stream",
        )
        self._instant = completion.ttft_s <= 0 and completion.tpot_s <= 0
        self._completion = completion

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._instant:
            await super().__call__(scope, receive, send)
            return
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send(
            {
                "type": "http.response.body",
                "body": self._completion.whole_stream(),
                "more_body": False,
            }
        )
