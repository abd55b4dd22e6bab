"""Ollama's API wire format (ollama/ollama docs/api.md): /api/chat and /api/generate read and
checked into the gateway's request (openai_format.ChatParams, what gateway.services routes), the
streamed NDJSON lines and the one-object answers, /api/tags, /api/show, /api/version and errors,
written as the official `ollama` package parses them (ollama/_types.py: ChatResponse,
GenerateResponse, ListResponse, ShowResponse; any error status -> ResponseError(error, status_code)).

Pure: no database, no router. Only what the router can honour is accepted: the options it maps
(temperature, top_p, seed, stop, num_predict -> max_tokens) are checked; the other options (top_k,
num_ctx, mirostat, ...: the sampling and loading knobs of one Ollama host) are ignored, as Ollama
itself ignores options it does not know; what would change the answer in a way the router cannot
give (tools, images, thinking, raw or templated prompts, a suffix) is refused by name. `format` ("json"
or a JSON schema) becomes the router's response format, as OpenAI's response_format does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Literal

from core.formatting import timestamp
from gateway.openai_format import MAX_STOP_SEQUENCES, ChatParams, OpenAIError, json_loads
from routing.models import LedgerEntry
from routing.providers.base import TRUNCATED_REASONS, AnswerFormat, ResponseFormat

Endpoint = Literal["chat", "generate"]

# The Ollama release whose API (docs/api.md) these endpoints follow. Clients read /api/version to
# tell that an Ollama is there; the newer features they might gate on it are refused by name.
VERSION = "0.32.15"
ROLES = frozenset({"system", "user", "assistant"})
NS_PER_MS = 1_000_000
# num_predict: -1 generates until the model stops, -2 until the context is full; both mean no limit
# of the caller's own here (the router still caps at the model's output limit).
UNLIMITED = (-1, -2)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # modified_at of a listed model: not known here


class OllamaError(Exception):
    """An error answered in Ollama's shape: {"error": "<message>"}."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}  # e.g. a 429's Retry-After

    def body(self) -> dict:
        return {"error": self.message}


def invalid(message: str) -> OllamaError:
    return OllamaError(400, message)


def unknown_model(model: str) -> OllamaError:
    """Ollama's own words for a model it does not have."""
    return OllamaError(404, f"model '{model}' not found")


def refused(error: OpenAIError, *, model: str = "") -> OllamaError:
    """A refusal of the shared gateway services (which speak OpenAI's shape) in Ollama's: same status."""
    if error.code == "model_not_found" and model:
        return unknown_model(model)
    return OllamaError(error.status, error.message, headers=error.headers)  # a 429's Retry-After and x-ratelimit-*


# -- requests --------------------------------------------------------------------------------


def _body(raw: bytes) -> dict:
    if not raw.strip():
        raise invalid("missing request body")
    try:
        body = json_loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid("invalid JSON in the request body: send a JSON object") from None
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    return body


def _model(body: dict) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid("model is required")
    return model.strip()


def _refuse_unsupported(body: dict) -> None:
    """What the router cannot honour, refused by name rather than silently ignored."""
    if body.get("tools"):
        raise invalid("tools are not supported by this gateway")
    if body.get("think"):
        raise invalid("think is not supported by this gateway: its models answer without a separate thinking part")
    if body.get("logprobs"):
        raise invalid("logprobs are not supported by this gateway")


def _format(value: object) -> ResponseFormat | None:
    """Ollama's `format`: "json" (any JSON) or a JSON schema object; "" and null mean plain text."""
    if value is None or value == "":
        return None
    if value == "json":
        return ResponseFormat(AnswerFormat.JSON_OBJECT)
    if isinstance(value, dict):
        return ResponseFormat(AnswerFormat.JSON_SCHEMA, schema=value)
    raise invalid(f'invalid format: expected "json" or a JSON schema object, got {json.dumps(value)}')


def _number(options: dict, name: str, *, low: float, high: float) -> float | None:
    value = options.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise invalid(f"invalid options.{name}: expected a number from {low:g} to {high:g}, got {json.dumps(value)}")
    return float(value)


def _seed(options: dict) -> int | None:
    value = options.get("seed")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"invalid options.seed: expected an integer, got {json.dumps(value)}")
    return value


def _max_tokens(options: dict) -> int | None:
    value = options.get("num_predict")
    if value is None or value in UNLIMITED:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid(f"invalid options.num_predict: expected a positive integer, -1 or -2, got {json.dumps(value)}")
    return value


def _stop(options: dict) -> tuple[str, ...]:
    value = options.get("stop")
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and len(value) <= MAX_STOP_SEQUENCES and all(isinstance(s, str) for s in value):
        return tuple(value)
    raise invalid(f"invalid options.stop: expected a string or up to {MAX_STOP_SEQUENCES} strings")


def _stream(body: dict) -> bool:
    stream = body.get("stream")
    if stream is None:
        return True  # Ollama streams unless told not to
    if not isinstance(stream, bool):
        raise invalid(f"invalid stream: expected true or false, got {json.dumps(stream)}")
    return stream


def _params(body: dict, model: str, messages: list[dict[str, str]]) -> ChatParams:
    _refuse_unsupported(body)
    options = body.get("options")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise invalid("invalid options: expected an object")
    return ChatParams(
        model=model,
        messages=messages,
        max_tokens=_max_tokens(options),
        temperature=_number(options, "temperature", low=0, high=2),
        top_p=_number(options, "top_p", low=0, high=1),
        stop=_stop(options),
        seed=_seed(options),
        stream=_stream(body),
        response_format=_format(body.get("format")),
    )


def _text(value: object, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise invalid(f"invalid {name}: expected a string")
    return value


def _messages(value: object) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid("invalid messages: expected an array of messages")
    messages = []
    for index, message in enumerate(value):
        name = f"messages[{index}]"
        if not isinstance(message, dict):
            raise invalid(f"invalid {name}: expected an object")
        role = message.get("role")
        if role not in ROLES:
            raise invalid(f"invalid {name}.role: expected system, user or assistant, got {json.dumps(role)}")
        if message.get("images"):
            raise invalid(f"invalid {name}: images are not supported by this gateway")
        if message.get("tool_calls"):
            raise invalid(f"invalid {name}: tool calls are not supported by this gateway")
        # A thinking model's earlier `thinking` is not part of the conversation sent on: dropped.
        messages.append({"role": role, "content": _text(message.get("content"), f"{name}.content")})
    return messages


def chat_params(raw: bytes) -> ChatParams:
    """POST /api/chat's body read and checked; raises OllamaError (400) naming what is wrong.
    No messages at all is Ollama's "load the model" request (answered by `loaded`)."""
    body = _body(raw)
    model = _model(body)
    return _params(body, model, _messages(body.get("messages")))


def generate_params(raw: bytes) -> ChatParams:
    """POST /api/generate's body as a conversation: the `system` message, then the `prompt` as the
    user's. No prompt is Ollama's "load the model" request (answered by `loaded`)."""
    body = _body(raw)
    model = _model(body)
    if body.get("raw"):
        raise invalid("raw is not supported by this gateway: it routes to models with different prompt templates")
    for name in ("suffix", "template", "context", "images"):
        if body.get(name):
            raise invalid(f"{name} is not supported by this gateway")
    system = _text(body.get("system"), "system")
    prompt = _text(body.get("prompt"), "prompt")
    messages = [{"role": "system", "content": system}] if system else []
    if prompt:
        messages.append({"role": "user", "content": prompt})
    elif not system:
        messages = []
    return _params(body, model, messages)


def unloads(raw: bytes) -> bool:
    """keep_alive 0 with nothing to answer: Ollama's "unload the model" (nothing to do here)."""
    keep_alive = json.loads(raw).get("keep_alive")
    return keep_alive in (0, "0", "0s", "0m")


def show_model(raw: bytes) -> str:
    """POST /api/show's model (`model`, or `name` as older clients such as Continue send it)."""
    body = _body(raw)
    for name in ("model", "name"):
        value = body.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    raise invalid("model is required")


# -- answers ---------------------------------------------------------------------------------


def created_at(now: dt.datetime) -> str:
    return timestamp(now) or ""


def done_reason(provider_reason: str) -> str:
    """The provider's own word (stop, length, end_turn, max_tokens, ...) as Ollama's: length or stop."""
    return "length" if provider_reason in TRUNCATED_REASONS else "stop"


def _content(endpoint: Endpoint, text: str) -> dict:
    if endpoint == "chat":
        return {"message": {"role": "assistant", "content": text}}
    return {"response": text}


def piece(endpoint: Endpoint, *, model: str, text: str, now: dt.datetime) -> dict:
    """One streamed line before the last: a piece of the answer."""
    return {"model": model, "created_at": created_at(now), **_content(endpoint, text), "done": False}


def metrics(entry: LedgerEntry, *, upstream: dict, total_ns: int) -> dict:
    """The counts and durations (ns) of the last object. Counts from the ledger row (the provider's,
    else the row's estimates); total_duration is the gateway's own wall time for the request. An
    upstream Ollama's own load/prompt/eval durations pass through (`upstream`, its raw usage); for
    other providers the prompt's time is the time to the first token (streamed calls) and the
    answer's the rest of the call."""
    ttft_ns = (entry.ttft_ms or 0) * NS_PER_MS
    call_ns = entry.latency_ms * NS_PER_MS
    return {
        "total_duration": total_ns,
        "load_duration": upstream.get("load_duration", 0),
        "prompt_eval_count": entry.prompt_tokens,
        "prompt_eval_duration": upstream.get("prompt_eval_duration", ttft_ns),
        "eval_count": entry.completion_tokens,
        "eval_duration": upstream.get("eval_duration", max(call_ns - ttft_ns, 0)),
    }


def final(
    endpoint: Endpoint, *, model: str, text: str, entry: LedgerEntry, upstream: dict, total_ns: int, now: dt.datetime
) -> dict:
    """The last object (`done: true`): the whole answer when not streamed, "" after a stream's pieces."""
    return {
        "model": model,
        "created_at": created_at(now),
        **_content(endpoint, text),
        "done": True,
        "done_reason": done_reason(entry.finish_reason),
        **metrics(entry, upstream=upstream, total_ns=total_ns),
    }


def loaded(endpoint: Endpoint, *, model: str, unload: bool, now: dt.datetime) -> dict:
    """The answer to a request with nothing to answer (Ollama loads or unloads the model): no call made."""
    return {
        "model": model,
        "created_at": created_at(now),
        **_content(endpoint, ""),
        "done": True,
        "done_reason": "unload" if unload else "load",
    }


def line(body: dict) -> bytes:
    """One NDJSON line."""
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


DETAILS = {
    "parent_model": "",
    "format": "",
    "family": "",
    "families": [],
    "parameter_size": "",
    "quantization_level": "",
}


def tag(name: str) -> dict:
    """A model of /api/tags. Size, date and file details belong to a model file on an Ollama host,
    which a gateway name (an alias, or a model a cloud provider serves) does not have: empty, the
    digest a stable hash of the name."""
    return {
        "name": name,
        "model": name,
        "modified_at": timestamp(EPOCH),
        "size": 0,
        "digest": hashlib.sha256(name.encode()).hexdigest(),
        "details": DETAILS,
    }


def show(name: str, owner: str, *, embeds: bool = False) -> dict:
    """/api/show for a name the gateway serves: `model_info` is required by the ollama package's
    ShowResponse; no modelfile, template or parameters (they are the serving host's business). An
    embedding model's capability is Ollama's "embedding", so clients offer it for embeddings only."""
    return {
        "modelfile": "",
        "parameters": "",
        "template": "",
        "license": "",
        "details": DETAILS,
        "model_info": {"switchyard.served_by": owner},
        "capabilities": ["embedding" if embeds else "completion"],
        "modified_at": timestamp(EPOCH),
    }
