"""Anthropic's Messages API: POST /v1/messages, GET /v1/models.

Every request carries `x-api-key` and `anthropic-version`; the system prompt is a top-level field,
not a message; `max_tokens` is required. Streams are server-sent events: message_start (input
tokens), content_block_delta (text), message_delta (output tokens, stop reason), message_stop, and
possibly an `error` event after status 200 (overloaded_error, for one).
"""

from __future__ import annotations

import json
import time

from routing.providers.base import ChatRequest, ChunkHook, Completion, TransientError
from routing.providers.http import HTTPAdapter, elapsed_ms, v1_url
from routing.providers.wire import short

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # the API requires a limit; this one fits every current model


class AnthropicAdapter(HTTPAdapter):
    def headers(self) -> tuple[dict[str, str], str]:
        key = self.api_key(required=True)
        return {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}, key

    def fetch_models(self) -> list[str]:
        headers, key = self.headers()
        data = self.get_json(v1_url(self.config.base_url, "models?limit=1000"), headers=headers, key=key)
        return [item["id"] for item in data.get("data") or []]

    def send_chat(self, request: ChatRequest, *, on_chunk: ChunkHook | None = None) -> Completion:
        headers, key = self.headers()
        body = self.body(request)
        url = v1_url(self.config.base_url, "messages")
        started = time.perf_counter()
        if request.stream:
            return self.chat_stream(request, url, body, headers, key, started, on_chunk=on_chunk)
        data = self.post_json(url, body, headers=headers, key=key)
        if not isinstance(data, dict) or not isinstance(data.get("content"), list):
            raise TransientError("the response had no content")
        return completion(
            text="".join(block.get("text", "") for block in data["content"] if block.get("type") == "text"),
            model=data.get("model") or request.model,
            usage=data.get("usage") or {},
            started=started,
            stop_reason=data.get("stop_reason"),
        )

    def chat_stream(
        self,
        request: ChatRequest,
        url: str,
        body: dict,
        headers: dict[str, str],
        key: str,
        started: float,
        *,
        on_chunk: ChunkHook | None = None,
    ) -> Completion:
        pieces: list[str] = []
        ttft_ms: int | None = None
        usage: dict = {}
        stop_reason: str | None = None
        model = request.model
        with self.stream_lines(url, body, headers=headers, key=key, sse=True) as lines:
            for line in lines:
                if not line.startswith("data:"):
                    continue  # `event:` names repeat the data's own "type"
                data = self.parse(line[5:].strip())
                kind = data.get("type")
                if kind == "error":
                    raise TransientError(short(f"stream broke: {_error_text(data)}"))
                text = ""
                if kind == "message_start":
                    message = data.get("message") or {}
                    model = message.get("model") or model
                    usage.update(message.get("usage") or {})
                elif kind == "content_block_delta":
                    text = (data.get("delta") or {}).get("text") or ""
                    if text and ttft_ms is None:
                        ttft_ms = elapsed_ms(started)
                    pieces.append(text)
                elif kind == "message_delta":
                    usage.update(data.get("usage") or {})
                    stop_reason = (data.get("delta") or {}).get("stop_reason") or stop_reason
                elif kind == "message_stop":
                    break
                if on_chunk is not None:
                    on_chunk(text)
            else:
                raise TransientError("the stream ended before message_stop")
        result = completion(text="".join(pieces), model=model, usage=usage, started=started, stop_reason=stop_reason)
        result.ttft_ms = ttft_ms
        return result

    @staticmethod
    def body(request: ChatRequest) -> dict:
        system = "\n\n".join(m["content"] for m in request.messages if m.get("role") == "system")
        body: dict = {
            "model": request.model,
            "messages": [m for m in request.messages if m.get("role") != "system"],
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "stream": request.stream,
        }
        if system:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        return body

    def error_detail(self, status: int, body: bytes) -> str:
        try:
            return _error_text(json.loads(body))
        except (ValueError, KeyError, TypeError, AttributeError):
            return short(body.decode("utf-8", "replace"))


def completion(*, text: str, model: str, usage: dict, started: float, stop_reason: str | None) -> Completion:
    """Anthropic counts cache writes and reads apart from `input_tokens`; our prompt_tokens is all input."""
    uncached, output = usage.get("input_tokens"), usage.get("output_tokens")
    written = usage.get("cache_creation_input_tokens")
    read = usage.get("cache_read_input_tokens")
    prompt = None if uncached is None else uncached + (written or 0) + (read or 0)
    return Completion(
        text=text,
        model=model,
        prompt_tokens=prompt,
        completion_tokens=output,
        latency_ms=elapsed_ms(started),
        finish_reason=stop_reason,
        raw_usage=usage,
        cache_write_tokens=written,
        cache_read_tokens=read,
    )


def _error_text(body: dict) -> str:
    error = body.get("error") or {}
    return f"{error.get('type', 'error')}: {error.get('message', '')}".strip()
