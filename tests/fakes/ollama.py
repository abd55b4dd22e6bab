"""A fake Ollama host: POST /api/chat (JSON or NDJSON stream), POST /api/embed, GET /api/tags, GET /api/version.

Bodies follow Ollama's API reference (docs/api.md): a stream is one JSON object per line, the
last one `done: true` with the counts and durations in nanoseconds; errors are `{"error": "..."}`,
also as a line in the middle of a stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from tests.fakes.openai import fake_vector
from tests.fakes.server import Behaviour, FakeProvider, RecordedRequest, Reply, json_line

BUSY = "server busy, please try again.  maximum pending requests exceeded"

ERRORS: dict[str, tuple[int, str]] = {
    "rate_limited": (429, "too many requests, please slow down"),
    "server_error": (500, "llama runner process has terminated: signal: killed"),
    "unavailable": (503, BUSY),
    "busy": (503, BUSY),
    "overloaded": (503, BUSY),
    "unauthorized": (401, "unauthorized"),
    "forbidden": (403, "forbidden"),
    "bad_request": (400, "invalid options: num_predict must be an integer"),
}


def full_name(model: str) -> str:
    return model if ":" in model else f"{model}:latest"


class FakeOllama(FakeProvider):
    kind = "ollama"
    default_models = ("qwen2.5-coder:7b", "mistral:latest")

    def handle(self, request: RecordedRequest, behaviour: Behaviour) -> Reply:
        if request.method == "GET" and request.path == "/api/version":
            return Reply(body={"version": "0.6.5"})
        if request.method == "GET" and request.path == "/api/tags":
            return self._error(behaviour.mode) or Reply(body={"models": [self._tag(name) for name in self.models]})
        if request.method == "POST" and request.path == "/api/chat":
            return self._chat(request, behaviour)
        if request.method == "POST" and request.path == "/api/embed":
            return self._embed(request, behaviour)
        return Reply(status=404, body=b"404 page not found", content_type="text/plain")

    def _chat(self, request: RecordedRequest, behaviour: Behaviour) -> Reply:
        body = request.json or {}
        model = body.get("model") or ""
        if not model:
            return Reply(status=400, body={"error": "model is required"})
        if behaviour.mode == "unknown_model" or full_name(model) not in {full_name(m) for m in self.models}:
            return Reply(status=404, body={"error": f'model "{model}" not found, try pulling it first'})
        error = self._error(behaviour.mode)
        if error:
            return error
        if behaviour.mode == "invalid_json":
            return Reply(body=b'{"model": "' + model.encode() + b'", "message": {', content_type="application/json")
        final = self._final(model, body.get("messages") or [])
        if body.get("stream", True) is False:  # Ollama streams unless told not to
            final["message"]["content"] = self.reply
            if behaviour.mode == "broken_stream":
                return Reply(body=final, break_after=20)
            return Reply(body=final)
        chunks = self.paced(self._stream(model, final, behaviour.mode), behaviour)
        return Reply(
            chunks=chunks,
            content_type="application/x-ndjson",
            break_after=2 if behaviour.mode == "broken_stream" else None,
        )

    def _embed(self, request: RecordedRequest, behaviour: Behaviour) -> Reply:
        # As server/routes.go EmbedHandler: the model first, then the input; vectors normalised.
        body = request.json or {}
        model = body.get("model") or ""
        if behaviour.mode == "unknown_model" or full_name(model) not in {full_name(m) for m in self.models}:
            return Reply(status=404, body={"error": f"model '{model}' not found"})
        error = self._error(behaviour.mode)
        if error:
            return error
        texts = body.get("input")
        texts = ([texts] if texts else []) if isinstance(texts, str) else texts or []
        if not all(isinstance(text, str) for text in texts):
            return Reply(status=400, body={"error": "invalid input type"})
        vectors = [_unit(fake_vector(text, body.get("dimensions") or 768)) for text in texts]
        return Reply(
            body={
                "model": model,
                "embeddings": vectors,
                "total_duration": 14_143_917,
                "load_duration": 1_019_500,
                "prompt_eval_count": sum(len(text.split()) for text in texts),
            }
        )

    def _stream(self, model: str, final: dict, mode: str) -> Iterator[bytes]:
        for index, piece in enumerate(self.pieces()):
            if mode == "stream_error" and index == 2:
                yield json_line({"error": "an error was encountered while running the model: unexpected EOF"})
                return
            yield json_line(
                {
                    "model": model,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": piece},
                    "done": False,
                }
            )
        yield json_line(final)

    def _final(self, model: str, messages: list[dict]) -> dict:
        eval_count = self.completion_tokens()
        return {
            "model": model,
            "created_at": _now(),
            "message": {"role": "assistant", "content": ""},
            "done_reason": "stop",
            "done": True,
            "total_duration": 1_250_000_000,
            "load_duration": 50_000_000,
            "prompt_eval_count": self.prompt_tokens(messages),
            "prompt_eval_duration": 200_000_000,
            "eval_count": eval_count,
            "eval_duration": 1_000_000_000,
        }

    @staticmethod
    def _error(mode: str) -> Reply | None:
        if mode in ERRORS:
            status, message = ERRORS[mode]
            return Reply(status=status, body={"error": message})
        return None

    @staticmethod
    def _tag(name: str) -> dict:
        return {
            "name": full_name(name),
            "model": full_name(name),
            "modified_at": "2025-06-03T10:00:00.000000+00:00",
            "size": 4_109_865_159,
            "digest": "f974a74358d62a017b37c6f424fcdf2744ca02926c4f952513ddf474b2fa5091",
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": "llama",
                "families": ["llama"],
                "parameter_size": "7B",
                "quantization_level": "Q4_K_M",
            },
        }


def _unit(vector: list[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5 or 1.0
    return [x / norm for x in vector]


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
