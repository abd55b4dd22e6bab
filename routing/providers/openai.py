"""OpenAI's chat completions, and every server that speaks it (llama.cpp, vLLM, LM Studio, Ollama's /v1).

`openai` needs a key (Authorization: Bearer); `openai_compatible` sends one only when the provider
names a variable. Streams are server-sent events; `stream_options.include_usage` asks for a last
chunk with `usage` and no choices, before `data: [DONE]`.
"""

from __future__ import annotations

import json
import time

from routing.providers.base import AnswerFormat, ChatRequest, ChunkHook, Completion, ResponseFormat, TransientError
from routing.providers.http import HTTPAdapter, elapsed_ms, v1_url
from routing.providers.wire import short


class OpenAIAdapter(HTTPAdapter):
    answer_formats = frozenset(AnswerFormat)

    def headers(self) -> tuple[dict[str, str], str]:
        key = self.api_key(required=self.config.kind == "openai" or bool(self.config.api_key_env))
        return ({"Authorization": f"Bearer {key}"} if key else {}), key

    def fetch_models(self) -> list[str]:
        headers, key = self.headers()
        data = self.get_json(v1_url(self.config.base_url, "models"), headers=headers, key=key)
        return [item["id"] for item in data.get("data") or []]

    def send_chat(self, request: ChatRequest, *, on_chunk: ChunkHook | None = None) -> Completion:
        headers, key = self.headers()
        body = self.body(request)
        url = v1_url(self.config.base_url, "chat/completions" if request.prompt is None else "completions")
        started = time.perf_counter()
        if request.stream:
            return self.chat_stream(request, url, body, headers, key, started, on_chunk=on_chunk)
        data = self.post_json(url, body, headers=headers, key=key)
        try:
            choice = data["choices"][0]
            text = (choice["text"] if request.prompt is not None else choice["message"].get("content")) or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise TransientError("the response had no choices") from None
        return self.completion(
            text=text,
            model=data.get("model") or request.model,
            usage=data.get("usage") or {},
            started=started,
            finish_reason=choice.get("finish_reason"),
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
        finish_reason: str | None = None
        model = request.model
        with self.stream_lines(url, body, headers=headers, key=key, sse=True) as lines:
            for line in lines:
                if not line.startswith("data:"):
                    continue  # blank separators, comments, `event:` lines
                payload = line[5:].strip()
                if payload == "[DONE]":
                    if finish_reason is None:  # llama-cpp-python's server cuts an answer so (interrupt_requests)
                        raise TransientError("the stream ended before its final chunk")
                    break
                data = self.parse(payload)
                if data.get("error"):
                    raise TransientError(short(f"stream broke: {_error_text(data['error'])}"))
                model = data.get("model") or model
                usage = data.get("usage") or usage
                text = ""
                for choice in data.get("choices") or []:
                    # /v1/completions streams `text`; chat streams `delta.content`.
                    content = choice.get("text") or (choice.get("delta") or {}).get("content") or ""
                    if content and ttft_ms is None:
                        ttft_ms = elapsed_ms(started)
                    pieces.append(content)
                    text += content
                    finish_reason = choice.get("finish_reason") or finish_reason
                if on_chunk is not None:
                    on_chunk(text)
            else:
                if finish_reason is None:
                    raise TransientError("the stream ended before its final chunk")
        completion = self.completion(
            text="".join(pieces), model=model, usage=usage, started=started, finish_reason=finish_reason
        )
        completion.ttft_ms = ttft_ms
        return completion

    @staticmethod
    def completion(*, text: str, model: str, usage: dict, started: float, finish_reason: str | None) -> Completion:
        # prompt_tokens includes the cached ones; OpenAI reports them apart only as a detail (read only: no writes).
        details = usage.get("prompt_tokens_details") or {}
        return Completion(
            text=text,
            model=model,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            latency_ms=elapsed_ms(started),
            finish_reason=finish_reason,
            raw_usage=usage,
            cache_read_tokens=details.get("cached_tokens"),
        )

    def body(self, request: ChatRequest) -> dict:
        body: dict = {"model": request.model, "stream": request.stream}
        if request.prompt is None:
            body["messages"] = request.messages
        else:
            body["prompt"] = request.prompt
        if request.max_tokens is not None:
            # OpenAI deprecated max_tokens (its reasoning models refuse it); compatible servers know only max_tokens.
            name = "max_completion_tokens" if self.config.kind == "openai" else "max_tokens"
            body[name] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = list(request.stop)
        if request.seed is not None:
            body["seed"] = request.seed
        if request.stream:
            body["stream_options"] = {"include_usage": True}
        if request.response_format is not None:
            body["response_format"] = self.response_format(request.response_format)
        return body

    def response_format(self, wanted: ResponseFormat) -> dict:
        """OpenAI's own shape; for a compatible server, llama.cpp's (its server and llama-cpp-python's):
        `json_object` with the schema beside it, as llama-cpp-python knows no `json_schema` type."""
        if wanted.type == AnswerFormat.JSON_OBJECT:
            return {"type": "json_object"}
        if self.config.kind != "openai":
            return (
                {"type": "json_object"} if wanted.schema is None else {"type": "json_object", "schema": wanted.schema}
            )
        # OpenAI requires a name; a schema from Ollama's `format` comes without one.
        json_schema: dict = {"name": wanted.name or "answer"}
        if wanted.description:
            json_schema["description"] = wanted.description
        if wanted.schema is not None:
            json_schema["schema"] = wanted.schema
        if wanted.strict is not None:
            json_schema["strict"] = wanted.strict
        return {"type": "json_schema", "json_schema": json_schema}

    def error_detail(self, status: int, body: bytes) -> str:
        error = _error_object(body)
        return _error_text(error) if error is not None else short(body.decode("utf-8", "replace"))

    def is_transient(self, status: int, body: bytes) -> bool:
        # A 429 for an exhausted quota or billing limit will not pass by waiting: only someone paying fixes it.
        error = _error_object(body)
        if isinstance(error, dict) and (error.get("code") or error.get("type")) in PERMANENT_CODES:
            return False
        return super().is_transient(status, body)


PERMANENT_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "billing_not_active"})


def _error_object(body: bytes) -> object | None:
    try:
        return json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return None


def _error_text(error: object) -> str:
    """OpenAI: {"message", "type", "code"}; llama.cpp and others sometimes send a plain string."""
    if isinstance(error, dict):
        label = error.get("code") or error.get("type") or ""
        message = str(error.get("message") or "")
        return f"{label}: {message}" if label else message
    return str(error)
