"""Running the mock LLM with uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Iterator

import uvicorn

from weir.mock_llm.app import create_app
from weir.mock_llm.settings import MockSettings

__all__ = ["serve"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Server(uvicorn.Server):
    """A uvicorn server that returns normally after a signal-triggered graceful shutdown.

    Plain uvicorn re-raises the signal once it has shut down, which kills the process with
    that signal (or raises ``KeyboardInterrupt`` for Ctrl-C); ``serve`` simply returns.
    It also tells the app when the shutdown begins, so that ``hang`` requests end.
    """

    def __init__(self, config: uvicorn.Config, stopping: asyncio.Event) -> None:
        super().__init__(config)
        self._stopping = stopping

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._stopping.set()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def serve(
    host: str,
    port: int,
    settings: MockSettings,
    *,
    graceful_timeout_s: int = 3,
) -> None:
    """Serve the mock LLM until SIGTERM/SIGINT, then return (blocking).

    uvicorn with uvloop and httptools, no access log, log level ``warning``. On a signal it
    stops accepting connections, lets in-flight answers finish for up to
    ``graceful_timeout_s`` seconds (``hang`` requests get a 503 at once) and returns.
    A second Ctrl-C forces the exit.
    """
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=graceful_timeout_s,
    )
    _Server(config, app.state.mock_stopping).run()
