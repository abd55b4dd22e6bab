"""Ollama's native API: POST /api/chat (JSON, or an NDJSON stream), GET /api/tags.

Counts and durations come in the last object (`done: true`): prompt_eval_count, eval_count and
the *_duration fields in nanoseconds. An error in the middle of a stream arrives as a line
`{"error": "..."}` with status 200 already sent, so it is checked on every line.

A model the host has not pulled answers 404 after a round trip; `can_serve` asks /api/tags
instead, remembered for `INSTALLED_MODELS_TTL_S`, so the router skips such a host without calling it.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import httpx

from routing.providers.base import (
    AnswerFormat,
    ChatRequest,
    ChunkHook,
    Completion,
    Problem,
    ProviderConfig,
    ProviderError,
    TransientError,
)
from routing.providers.http import HTTPAdapter, elapsed_ms
from routing.providers.wire import short

logger = logging.getLogger(__name__)

INSTALLED_MODELS_TTL_S = 30.0

USAGE_FIELDS = (
    "prompt_eval_count",
    "eval_count",
    "total_duration",
    "load_duration",
    "prompt_eval_duration",
    "eval_duration",
)


class OllamaAdapter(HTTPAdapter):
    answer_formats = frozenset(AnswerFormat)

    def __init__(self, config: ProviderConfig, *, client: httpx.Client | None = None) -> None:
        super().__init__(config, client=client)
        self._installed: tuple[float, frozenset[str] | None] = (0.0, None)  # (expires, tagged names)
        self._installed_lock = threading.Lock()

    def url(self, path: str) -> str:
        return f"{self.config.base_url.rstrip('/')}{path}"

    def can_serve(self, model: str) -> bool | None:
        names = self.installed_models()
        # Unknown (the host did not answer): let the call itself find out, and count the failure.
        return None if names is None else tagged(model) in names

    def installed_models(self) -> frozenset[str] | None:
        """The models pulled on the host, with their tags; None when it could not be asked."""
        now = time.monotonic()
        with self._installed_lock:
            expires, names = self._installed
        if now < expires:
            return names
        try:
            names = frozenset(tagged(name) for name in self.list_models())
        except ProviderError as error:
            logger.info("could not list the models on %s: %s", self.config.name, error.message)
            names = None
        with self._installed_lock:
            self._installed = (now + INSTALLED_MODELS_TTL_S, names)
        return names

    def forget(self) -> None:
        with self._installed_lock:
            self._installed = (0.0, None)

    def fetch_models(self) -> list[str]:
        data = self.get_json(self.url("/api/tags"))
        return [item["name"] for item in data.get("models") or []]

    def send_chat(self, request: ChatRequest, *, on_chunk: ChunkHook | None = None) -> Completion:
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
        return self.chat_stream(request, body, started, on_chunk=on_chunk)

    def chat_stream(
        self, request: ChatRequest, body: dict, started: float, *, on_chunk: ChunkHook | None = None
    ) -> Completion:
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
                if on_chunk is not None:
                    on_chunk(content)
                if data.get("done"):
                    completion = self.completion(request, data, text="".join(pieces), started=started)
                    completion.ttft_ms = ttft_ms
                    return completion
        raise TransientError("the stream ended before its final chunk")

    def body(self, request: ChatRequest) -> dict:
        options: dict[str, float | int | list[str]] = {}
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.top_p is not None:
            options["top_p"] = request.top_p
        if request.stop:
            options["stop"] = list(request.stop)
        if request.seed is not None:
            options["seed"] = request.seed
        body: dict = {"model": request.model, "messages": request.messages, "stream": request.stream}
        if options:
            body["options"] = options
        if self.config.keep_alive:
            body["keep_alive"] = self.config.keep_alive
        if request.response_format is not None:
            # Ollama's `format`: "json" for any JSON, or the JSON Schema itself.
            wanted = request.response_format
            body["format"] = wanted.schema if wanted.type == AnswerFormat.JSON_SCHEMA and wanted.schema else "json"
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

    def problem_for(self, status: int, body: bytes) -> Problem | None:
        # 404 {"error": "model \"mistral\" not found, try pulling it first"}; other 404s are not about a model.
        if status == 404 and "not found" in self.error_detail(status, body) and b"model" in body:
            return Problem.MODEL_MISSING
        return super().problem_for(status, body)

    def error_detail(self, status: int, body: bytes) -> str:
        try:
            return str(json.loads(body)["error"])
        except (ValueError, KeyError, TypeError):
            return short(body.decode("utf-8", "replace"))


def tagged(name: str) -> str:
    """Ollama's full name for a model: `mistral` is `mistral:latest`."""
    return name if ":" in name else f"{name}:latest"
