"""A fake Anthropic Messages API: POST /v1/messages, GET /v1/models.

Requests need `x-api-key` and `anthropic-version`; `system` is a top-level field (a "system"
role inside `messages` is refused, as the real API does). Responses carry
`content: [{type: text, text}]`, `usage.input_tokens/output_tokens` and `stop_reason`; streams are
server-sent events (message_start ... message_stop). Errors are
`{"type": "error", "error": {"type", "message"}}`: 429 rate_limit_error, 529 overloaded_error,
401 authentication_error, and so on.
"""

from __future__ import annotations

from collections.abc import Iterator

from tests.fakes.server import Behaviour, FakeProvider, RecordedRequest, Reply, sse


def error_body(type_: str, message: str) -> dict:
    return {"type": "error", "error": {"type": type_, "message": message}, "request_id": "req_fake0001"}


ERRORS: dict[str, tuple[int, dict]] = {
    "rate_limited": (
        429,
        error_body(
            "rate_limit_error",
            "This request would exceed the rate limit for your organization of 50 requests per minute.",
        ),
    ),
    "server_error": (500, error_body("api_error", "Internal server error")),
    "unavailable": (503, error_body("api_error", "Service unavailable")),
    "busy": (529, error_body("overloaded_error", "Overloaded")),
    "overloaded": (529, error_body("overloaded_error", "Overloaded")),
    "forbidden": (
        403,
        error_body("permission_error", "Your API key does not have permission to use the specified resource."),
    ),
    "bad_request": (400, error_body("invalid_request_error", "max_tokens: Field required")),
}


class FakeAnthropic(FakeProvider):
    kind = "anthropic"
    default_models = ("claude-3-5-haiku-latest", "claude-sonnet-4-20250514")

    def handle(self, request: RecordedRequest, behaviour: Behaviour) -> Reply:
        refusal = self._check_headers(request, behaviour.mode)
        if refusal:
            return refusal
        if request.method == "GET" and request.path == "/v1/models":
            return _error(behaviour.mode) or Reply(body=self._model_list())
        if request.method == "POST" and request.path == "/v1/messages":
            return self._messages(request, behaviour)
        return Reply(status=404, body=error_body("not_found_error", "Not found"))

    def _check_headers(self, request: RecordedRequest, mode: str) -> Reply | None:
        key = request.headers.get("x-api-key", "")
        if not key:
            return Reply(status=401, body=error_body("authentication_error", "x-api-key header is required"))
        if mode == "unauthorized" or (self.api_key and key != self.api_key):
            return Reply(status=401, body=error_body("authentication_error", "invalid x-api-key"))
        if not request.headers.get("anthropic-version"):
            return Reply(status=400, body=error_body("invalid_request_error", "anthropic-version: header is required"))
        return None

    def _messages(self, request: RecordedRequest, behaviour: Behaviour) -> Reply:
        body = request.json or {}
        model = body.get("model") or ""
        messages = body.get("messages") or []
        if any(m.get("role") == "system" for m in messages):
            return Reply(
                status=400,
                body=error_body(
                    "invalid_request_error",
                    'messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, '
                    'not "system" as an input message role.',
                ),
            )
        if not body.get("max_tokens"):
            return Reply(status=400, body=error_body("invalid_request_error", "max_tokens: Field required"))
        if behaviour.mode == "unknown_model" or model not in self.models:
            return Reply(status=404, body=error_body("not_found_error", f"model: {model}"))
        error = _error(behaviour.mode)
        if error:
            return error
        if behaviour.mode == "invalid_json":
            return Reply(body=b"upstream connect error or disconnect/reset before headers", content_type="text/plain")
        prompt = self.prompt_tokens(messages) + (len(str(body.get("system", "")).split()) if body.get("system") else 0)
        if not body.get("stream"):
            message = {
                "id": "msg_fake01",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": self.reply}],
                "stop_reason": self.finish_reason or "end_turn",
                "stop_sequence": None,
                "usage": self._usage(prompt),
            }
            return Reply(body=message, break_after=30 if behaviour.mode == "broken_stream" else None)
        return Reply(
            chunks=self.paced(self._stream(model, prompt, behaviour.mode), behaviour),
            content_type="text/event-stream",
            break_after=3 if behaviour.mode == "broken_stream" else None,
        )

    def _stream(self, model: str, prompt: int, mode: str) -> Iterator[bytes]:
        start = {
            "id": "msg_fake01",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**self._usage(prompt), "output_tokens": 1},
        }
        yield sse({"type": "message_start", "message": start}, "message_start")
        yield sse(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            "content_block_start",
        )
        yield sse({"type": "ping"}, "ping")
        for index, piece in enumerate(self.pieces()):
            if mode == "stream_error" and index == 2:
                yield sse(error_body("overloaded_error", "Overloaded"), "error")
                return
            delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
            yield sse(delta, "content_block_delta")
        yield sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        yield sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": self.finish_reason or "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": self._usage(prompt)["output_tokens"]},
            },
            "message_delta",
        )
        yield sse({"type": "message_stop"}, "message_stop")

    def _usage(self, prompt: int) -> dict:
        # The real API always reports the cache counts, zero when the prompt cache was not used.
        counted = {
            "input_tokens": prompt,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": self.completion_tokens(),
        }
        return dict(self.usage) if self.usage is not None else counted

    def _model_list(self) -> dict:
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-05-14T00:00:00Z"} for m in self.models
        ]
        return {"data": data, "has_more": False, "first_id": self.models[0] if self.models else None, "last_id": None}


def _error(mode: str) -> Reply | None:
    if mode in ERRORS:
        status, body = ERRORS[mode]
        return Reply(status=status, body=body)
    return None
