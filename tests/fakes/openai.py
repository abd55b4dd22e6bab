"""A fake OpenAI (or OpenAI-compatible: llama.cpp, vLLM, LM Studio) server.

POST /v1/embeddings (`embedding_models`: float lists, or base64 little-endian float32 when asked;
`dimensions` shortens them; usage with prompt_tokens and total_tokens).
POST /v1/chat/completions with `usage`; with `stream: true` server-sent events `data: {chunk}`,
and with `stream_options.include_usage` a last chunk carrying `usage` and empty `choices`,
then `data: [DONE]`. GET /v1/models. Error bodies are OpenAI's:
`{"error": {"message", "type", "param", "code"}}`. With `api_key` set, requests need
`Authorization: Bearer <key>`.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
from collections.abc import Iterator

from tests.fakes.server import Behaviour, FakeProvider, RecordedRequest, Reply, sse


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
ERRORS: dict[str, tuple[int, dict]] = {
    "rate_limited": (
        429,
        error_body(
            "Rate limit reached for gpt-4o-mini in organization org-fake on requests per min (RPM): "
            "Limit 3, Used 3, Requested 1. Please try again in 20s.",
            "requests",
            "rate_limit_exceeded",
        ),
    ),
    "server_error": (500, error_body(SERVER_ERROR, "server_error")),
    "unavailable": (503, error_body("The engine is currently overloaded, please try again later.", "server_error")),
    "busy": (503, error_body("The engine is currently overloaded, please try again later.", "server_error")),
    "overloaded": (503, error_body("The engine is currently overloaded, please try again later.", "server_error")),
    "forbidden": (
        403,
        error_body("Project does not have access to this model.", "invalid_request_error", "model_not_found"),
    ),
    "bad_request": (
        400,
        error_body(
            "This model's maximum context length is 128000 tokens. However, your messages resulted in "
            "130412 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
        ),
    ),
}
NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if "
    "you're accessing the API from your browser and are prompted for a username and password. You can obtain "
    "an API key from https://platform.openai.com/account/api-keys."
)


def masked(key: str) -> str:
    return f"{key[:3]}*****{key[-4:]}" if len(key) > 8 else "*****"


EMBEDDING_DIMENSIONS = 1536  # text-embedding-3-small's


def fake_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic unit-free vector for a text (the same text, the same vector)."""
    seed = hashlib.sha256(text.encode()).digest()
    return [round((seed[i % len(seed)] - 128) / 128, 6) for i in range(dimensions)]


class FakeOpenAI(FakeProvider):
    kind = "openai"
    default_models = ("gpt-4o-mini", "gpt-4o")

    def __init__(self) -> None:
        super().__init__()
        self.embedding_models: list[str] = ["text-embedding-3-small"]

    def handle(self, request: RecordedRequest, behaviour: Behaviour) -> Reply:
        auth_error = self._auth_error(request, behaviour.mode)
        if auth_error:
            return auth_error
        if request.method == "GET" and request.path == "/v1/models":
            return self._error(behaviour.mode) or Reply(
                body={
                    "object": "list",
                    "data": [
                        {"id": m, "object": "model", "created": 1715367049, "owned_by": "system"} for m in self.models
                    ],
                }
            )
        if request.method == "POST" and request.path == "/v1/chat/completions":
            return self._chat(request, behaviour)
        if request.method == "POST" and request.path == "/v1/embeddings":
            return self._embeddings(request, behaviour)
        return Reply(
            status=404,
            body=error_body(f"Invalid URL ({request.method} {request.path})", "invalid_request_error"),
        )

    def _auth_error(self, request: RecordedRequest, mode: str) -> Reply | None:
        header = request.headers.get("authorization", "")
        given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        if mode == "unauthorized" or (self.api_key and given != self.api_key):
            if not given:
                return Reply(status=401, body=error_body(NO_KEY, "invalid_request_error"))
            message = (
                f"Incorrect API key provided: {masked(given)}. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
            )
            return Reply(status=401, body=error_body(message, "invalid_request_error", "invalid_api_key"))
        return None

    def _chat(self, request: RecordedRequest, behaviour: Behaviour) -> Reply:
        body = request.json or {}
        model = body.get("model") or ""
        if behaviour.mode == "unknown_model" or model not in self.models:
            message = f"The model `{model}` does not exist or you do not have access to it."
            return Reply(status=404, body=error_body(message, "invalid_request_error", "model_not_found"))
        error = self._error(behaviour.mode)
        if error:
            return error
        if behaviour.mode == "invalid_json":
            return Reply(body=b"<html><body>502 Bad Gateway</body></html>", content_type="application/json")
        usage = self._usage(body.get("messages") or [])
        if not body.get("stream"):
            completion = {
                "id": "chatcmpl-fake123",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": self.reply, "refusal": None},
                        "logprobs": None,
                        "finish_reason": self.finish_reason or "stop",
                    }
                ],
                "usage": usage,
                "system_fingerprint": "fp_fake",
            }
            return Reply(body=completion, break_after=30 if behaviour.mode == "broken_stream" else None)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = self._stream(model, usage if include_usage else None, behaviour.mode)
        return Reply(
            chunks=self.paced(chunks, behaviour),
            content_type="text/event-stream",
            break_after=2 if behaviour.mode == "broken_stream" else None,
        )

    def _embeddings(self, request: RecordedRequest, behaviour: Behaviour) -> Reply:
        body = request.json or {}
        model = body.get("model") or ""
        if behaviour.mode == "unknown_model" or model not in self.embedding_models:
            message = f"The model `{model}` does not exist or you do not have access to it."
            return Reply(status=404, body=error_body(message, "invalid_request_error", "model_not_found"))
        error = self._error(behaviour.mode)
        if error:
            return error
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            message = (
                "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
            )
            return Reply(status=400, body=error_body(message, "invalid_request_error"))
        dimensions = body.get("dimensions") or EMBEDDING_DIMENSIONS
        data = []
        for index, text in enumerate(texts):
            vector = fake_vector(text, dimensions)
            if body.get("encoding_format") == "base64":
                vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(len(text.split()) for text in texts)
        return Reply(
            body={
                "object": "list",
                "data": data,
                "model": model,
                "usage": self.usage or {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    def _stream(self, model: str, usage: dict | None, mode: str) -> Iterator[bytes]:
        base = {
            "id": "chatcmpl-fake123",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        extra = {"usage": None} if usage else {}
        first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
        yield sse({**base, "choices": [first], **extra})
        for index, piece in enumerate(self.pieces()):
            if mode == "stream_error" and index == 2:
                yield sse(error_body(SERVER_ERROR, "server_error"))
                return
            if mode == "interrupted" and index == 2:  # llama-cpp-python's server, when another request arrives
                yield sse("[DONE]")
                return
            choice = {"index": 0, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}
            yield sse({**base, "choices": [choice], **extra})
        last = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": self.finish_reason or "stop"}
        yield sse({**base, "choices": [last], **extra})
        if usage:
            yield sse({**base, "choices": [], "usage": usage})
        yield sse("[DONE]")

    def _usage(self, messages: list[dict]) -> dict:
        if self.usage is not None:
            return dict(self.usage)
        prompt, completion = self.prompt_tokens(messages), self.completion_tokens()
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    @staticmethod
    def _error(mode: str) -> Reply | None:
        if mode in ERRORS:
            status, body = ERRORS[mode]
            return Reply(status=status, body=body)
        return None
