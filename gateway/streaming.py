"""The bridge of a streamed gateway call, shared by both wire formats (OpenAI's SSE in views.py,
Ollama's NDJSON in ollama_views.py).

The router is synchronous and runs in a worker thread (services.in_worker_thread); the response is
an async iterator on the event loop. Each piece the router's on_text hook sees goes to the response
through an asyncio queue (loop.call_soon_threadsafe), so a token leaves as soon as the upstream sent
it; a client that goes away sets `gone`, the router's `cancelled()`, which cuts the upstream call at
its next chunk and meters what was used.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from gateway.openai_format import OpenAIError
from routing.providers.base import CallCancelled
from routing.router import RouteCancelled, RouteResult


class Stream:
    """The router's side of one streamed call (its thread) and the response's side (the event loop).

    The queue carries ("text", the new piece), then ("done", RouteResult) or ("error", OpenAIError |
    RouteCancelled)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
        self.gone = threading.Event()  # the client disconnected
        self.sent = ""  # the answer handed on so far (router thread only)
        self.serving = ("", "")  # (provider, model) of the current attempt, set before its first piece

    def on_attempt(self, provider: str, model: str) -> None:
        self.serving = (provider, model)

    def put(self, kind: str, value: object) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, value))

    def on_text(self, text: str) -> None:
        # The router hands on the current attempt's answer so far. One that does not extend what the
        # client already has is a fallback's new answer: it cannot be spliced in, so the call stops.
        if not text.startswith(self.sent):
            raise CallCancelled("the provider failed after part of the answer was sent", partial=text)
        if len(text) > len(self.sent):
            self.put("text", text[len(self.sent) :])
            self.sent = text

    def nothing_sent(self) -> bool:
        """Whether another provider's answer could still be sent instead (the router's fallback_allowed)."""
        return not self.sent

    def run(self, complete: Callable[[], RouteResult]) -> None:
        """In the worker thread: `complete` is the routed call (gateway.services.chat_complete with its
        request), whose result or refusal ends the queue."""
        try:
            self.put("done", complete())
        except OpenAIError as error:
            if self.sent:  # the client has part of an answer: say so, rather than "no provider could"
                error = OpenAIError(
                    error.status,
                    f"the provider failed after part of the answer was sent: {error.message}",
                    type_="server_error",
                    code="stream_interrupted",
                )
            self.put("error", error)
        except RouteCancelled as error:
            self.put("error", error)
        except Exception as error:  # the response must end even when the router breaks
            self.put("error", OpenAIError(500, f"internal error: {type(error).__name__}", type_="server_error"))
            raise
