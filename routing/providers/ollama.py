"""Ollama's native API: POST /api/chat (JSON, or an NDJSON stream), GET /api/tags.

Counts and durations come in the last object (`done: true`): prompt_eval_count, eval_count and
the *_duration fields in nanoseconds. An error in the middle of a stream arrives as a line
`{"error": "..."}` with status 200 already sent, so it is checked on every line.
"""

from __future__ import annotations

import json
import time

from routing.providers.base import ChatRequest, Completion, TransientError
from routing.providers.http import HTTPAdapter, elapsed_ms, short

USAGE_FIELDS = (
    "prompt_eval_count",
    "eval_count",
    "total_duration",
    "load_duration",
    "prompt_eval_duration",
    "eval_duration",
)


class OllamaAdapter(HTTPAdapter):
    def url(self, path: str) -> str:
        return f"{self.config.base_url.rstrip('/')}{path}"

    def fetch_models(self) -> list[str]:
        data = self.get_json(self.url("/api/tags"))
        return [item["name"] for item in data.get("models") or []]

    def send_chat(self, request: ChatRequest) -> Completion:
        body = self.body(request)
        started = time.perf_counter()
        if not request.stream:
            data = self.post_json(self.url("/api/chat"), body)
            if isinstance(data, dict) and data.get("error"):
                # Ollama can answer 200 with an error object (a model that failed to load): keep its words.
                raise TransientError(short(str(data["error"])))
            if not isinstance(data, dict) or "message" not in data:
                raise TransientError("the response had no message")
            return self.completion(request, data, text=data["message"].get("content") or "", started=started)
        return self.chat_stream(request, body, started)

    def chat_stream(self, request: ChatRequest, body: dict, started: float) -> Completion:
        pieces: list[str] = []
        ttft_ms: int | None = None
        with self.stream_lines(self.url("/api/chat"), body) as lines:
            for line in lines:
                if not line.strip():
                    continue
                data = self.parse(line)
                if "error" in data:
                    raise TransientError(short(f"stream broke: {data['error']}"))
                content = (data.get("message") or {}).get("content") or ""
                if content and ttft_ms is None:
                    ttft_ms = elapsed_ms(started)
                pieces.append(content)
                if data.get("done"):
                    completion = self.completion(request, data, text="".join(pieces), started=started)
                    completion.ttft_ms = ttft_ms
                    return completion
        raise TransientError("the stream ended before its final chunk")

    def body(self, request: ChatRequest) -> dict:
        options: dict[str, float | int] = {}
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if request.temperature is not None:
            options["temperature"] = request.temperature
        body: dict = {"model": request.model, "messages": request.messages, "stream": request.stream}
        if options:
            body["options"] = options
        if self.config.keep_alive:
            body["keep_alive"] = self.config.keep_alive
        return body

    @staticmethod
    def completion(request: ChatRequest, data: dict, *, text: str, started: float) -> Completion:
        return Completion(
            text=text,
            model=data.get("model") or request.model,
            prompt_tokens=data.get("prompt_eval_count"),
            completion_tokens=data.get("eval_count"),
            latency_ms=elapsed_ms(started),
            finish_reason=data.get("done_reason"),
            raw_usage={name: data[name] for name in USAGE_FIELDS if name in data},
        )

    def error_detail(self, status: int, body: bytes) -> str:
        try:
            return str(json.loads(body)["error"])
        except (ValueError, KeyError, TypeError):
            return short(body.decode("utf-8", "replace"))
