"""OpenAI's chat completions, and every server that speaks it (llama.cpp, vLLM, LM Studio, Ollama's /v1).

`openai` needs a key (Authorization: Bearer); `openai_compatible` sends one only when the provider
names a variable. Streams are server-sent events; `stream_options.include_usage` asks for a last
chunk with `usage` and no choices, before `data: [DONE]`.
"""

from __future__ import annotations

import json
import time

import httpx

from routing.providers.base import ChatRequest, Completion, TransientError
from routing.providers.http import HTTPAdapter, elapsed_ms, short, v1_url


class OpenAIAdapter(HTTPAdapter):
    def headers(self) -> tuple[dict[str, str], str]:
        key = self.api_key(required=self.config.kind == "openai" or bool(self.config.api_key_env))
        return ({"Authorization": f"Bearer {key}"} if key else {}), key

    def fetch_models(self) -> list[str]:
        headers, key = self.headers()
        data = self.get_json(v1_url(self.config.base_url, "models"), headers=headers, key=key)
        return [item["id"] for item in data.get("data") or []]

    def send_chat(self, request: ChatRequest) -> Completion:
        headers, key = self.headers()
        body = self.body(request)
        url = v1_url(self.config.base_url, "chat/completions")
        started = time.perf_counter()
        if request.stream:
            return self.chat_stream(request, url, body, headers, key, started)
        data = self.post_json(url, body, headers=headers, key=key)
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise TransientError("the response had no choices") from None
        usage = data.get("usage") or {}
        return Completion(
            text=text,
            model=data.get("model") or request.model,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            latency_ms=elapsed_ms(started),
            finish_reason=choice.get("finish_reason"),
            raw_usage=usage,
        )

    def chat_stream(
        self, request: ChatRequest, url: str, body: dict, headers: dict[str, str], key: str, started: float
    ) -> Completion:
        pieces: list[str] = []
        ttft_ms: int | None = None
        usage: dict = {}
        finish_reason: str | None = None
        model = request.model
        with self.stream_lines(url, body, headers=headers, key=key) as lines:
            for line in lines:
                if not line.startswith("data:"):
                    continue  # blank separators, comments, `event:` lines
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                data = self.parse(payload)
                if data.get("error"):
                    raise TransientError(short(f"stream broke: {_error_text(data['error'])}"))
                model = data.get("model") or model
                usage = data.get("usage") or usage
                for choice in data.get("choices") or []:
                    content = (choice.get("delta") or {}).get("content") or ""
                    if content and ttft_ms is None:
                        ttft_ms = elapsed_ms(started)
                    pieces.append(content)
                    finish_reason = choice.get("finish_reason") or finish_reason
            else:
                if finish_reason is None:
                    raise TransientError("the stream ended before its final chunk")
        return Completion(
            text="".join(pieces),
            model=model,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            latency_ms=elapsed_ms(started),
            ttft_ms=ttft_ms,
            finish_reason=finish_reason,
            raw_usage=usage,
        )

    def body(self, request: ChatRequest) -> dict:
        body: dict = {"model": request.model, "messages": request.messages, "stream": request.stream}
        if request.max_tokens is not None:
            # OpenAI deprecated max_tokens (its reasoning models refuse it); compatible servers know only max_tokens.
            name = "max_completion_tokens" if self.config.kind == "openai" else "max_tokens"
            body[name] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def error_detail(self, response: httpx.Response) -> str:
        try:
            return _error_text(json.loads(response.content)["error"])
        except (ValueError, KeyError, TypeError):
            return short(response.text)


def _error_text(error: object) -> str:
    """OpenAI: {"message", "type", "code"}; llama.cpp and others sometimes send a plain string."""
    if isinstance(error, dict):
        label = error.get("code") or error.get("type") or ""
        message = str(error.get("message") or "")
        return f"{label}: {message}" if label else message
    return str(error)
