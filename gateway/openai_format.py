"""OpenAI's chat completions wire format: the request read and checked, the answer, stream chunks
and errors written as the official `openai` package expects them (its types under
src/openai/types/chat/: ChatCompletion, ChatCompletionChunk, CompletionUsage; its errors by status:
400 BadRequestError, 401 AuthenticationError, 404 NotFoundError, 429 RateLimitError, 5xx
InternalServerError).

Pure: no database, no router. Only what the router can honour is accepted; a parameter that would
change the answer in a way it cannot give (tools, n > 1) is refused by name rather than ignored. A JSON
response format is passed on to the providers that can be asked for one (routing.plan skips the others).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field

from routing.models import LedgerEntry
from routing.providers.base import REFUSAL_REASONS, TRUNCATED_REASONS, AnswerFormat, ResponseFormat

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_STOP_SEQUENCES = 4
SCHEMA_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")  # OpenAI's rule for json_schema.name
# \ud800-\udfff escaped, or UTF-8-encoded (json.loads decodes bytes with "surrogatepass"): half of a
# pair, or a lone one
SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
# Accepted and ignored: they change nothing in the answer (or only OpenAI's own bookkeeping).
IGNORED = frozenset(
    {"user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key", "parallel_tool_calls"}
)
REFUSED = {
    "tools": "tools are not supported by this gateway",
    "functions": "functions are not supported by this gateway",
    "tool_choice": "tools are not supported by this gateway",
    "function_call": "functions are not supported by this gateway",
    "audio": "audio output is not supported by this gateway",
    "logprobs": "logprobs are not supported by this gateway",
    "top_logprobs": "logprobs are not supported by this gateway",
    "prediction": "predicted outputs are not supported by this gateway",
}


class OpenAIError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code=None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.headers = headers or {}  # sent with the error (a 429's Retry-After and x-ratelimit-*)

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid(message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, param=param, code=code)


def unknown_model(model: str) -> OpenAIError:
    return OpenAIError(
        404, f"The model `{model}` does not exist or you do not have access to it.", code="model_not_found"
    )


def insufficient_quota(message: str, *, headers: dict[str, str]) -> OpenAIError:
    """OpenAI's 429 for a spent quota (type and code `insufficient_quota`): the client raises
    RateLimitError. `x-should-retry: false` tells the official clients not to retry it: it would
    be refused again until the month ends or the budget is raised."""
    headers = {"x-should-retry": "false", **headers}
    return OpenAIError(429, message, type_="insufficient_quota", code="insufficient_quota", headers=headers)


def rate_limited(message: str, *, kind: str, headers: dict[str, str]) -> OpenAIError:
    """OpenAI's 429 for a rate limit: type "requests" or "tokens", code "rate_limit_exceeded"."""
    return OpenAIError(429, message, type_=kind, code="rate_limit_exceeded", headers=headers)


def bad_key(*, given: bool) -> OpenAIError:
    if not given:
        return OpenAIError(
            401, "You didn't provide an API key. Send it as `Authorization: Bearer <key>`.", code="missing_api_key"
        )
    return OpenAIError(401, "Incorrect API key provided.", code="invalid_api_key")


@dataclass(frozen=True)
class ChatParams:
    model: str
    messages: list[dict[str, str]]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    stream: bool = False
    include_usage: bool = False
    response_format: ResponseFormat | None = None  # None: plain text
    extra: dict = field(default_factory=dict)


def _number(body: dict, name: str, *, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise invalid(f"Invalid '{name}': expected a number from {low:g} to {high:g}, got {json.dumps(value)}.", name)
    return float(value)


def _integer(body: dict, name: str, *, low: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise invalid(f"Invalid '{name}': expected an integer of at least {low}, got {json.dumps(value)}.", name)
    return value


def _content(content: object, param: str) -> str:
    """A message's text: a string, or a list of text parts (what the client sends for multi-part content)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise invalid(f"Invalid '{param}[{index}]': only text parts are supported.", f"{param}[{index}]")
            texts.append(part["text"])
        return "".join(texts)
    raise invalid(f"Invalid '{param}': expected a string or a list of text parts.", param)


def _messages(value: object) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise invalid("Invalid 'messages': expected a non-empty array of messages.", "messages")
    messages = []
    for index, message in enumerate(value):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise invalid(f"Invalid '{param}': expected an object.", param)
        role = message.get("role")
        if role not in ROLES:
            raise invalid(
                f"Invalid '{param}.role': expected one of {', '.join(ROLES)}, got {json.dumps(role)}.", f"{param}.role"
            )
        if message.get("tool_calls") or message.get("function_call"):
            raise invalid(f"Invalid '{param}': tool calls are not supported by this gateway.", param)
        content = message.get("content")
        if content is None and role == "assistant":
            content = ""
        messages.append({"role": ROLES[role], "content": _content(content, f"{param}.content")})
    return messages


def _stop(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and len(value) <= MAX_STOP_SEQUENCES and all(isinstance(s, str) for s in value):
        return tuple(value)
    raise invalid(f"Invalid 'stop': expected a string or up to {MAX_STOP_SEQUENCES} strings.", "stop")


def _response_format(value: object) -> ResponseFormat | None:
    """OpenAI's response_format: {"type": "text"} (the default: None), {"type": "json_object"}, or
    {"type": "json_schema", "json_schema": {"name", "description"?, "schema"?, "strict"?}}."""
    if value is None:
        return None
    types = ", ".join(["text", *AnswerFormat])
    if not isinstance(value, dict) or value.get("type") not in ("text", *AnswerFormat):
        given = json.dumps(value.get("type") if isinstance(value, dict) else value)
        raise invalid(f"Invalid 'response_format.type': expected one of {types}, got {given}.", "response_format.type")
    if value["type"] == "text":
        return None
    if value["type"] == AnswerFormat.JSON_OBJECT:
        return ResponseFormat(AnswerFormat.JSON_OBJECT)
    spec = value.get("json_schema")
    param = "response_format.json_schema"
    if not isinstance(spec, dict):
        raise invalid(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")
    name, schema, strict, description = (spec.get(key) for key in ("name", "schema", "strict", "description"))
    if not isinstance(name, str) or not SCHEMA_NAME.fullmatch(name):
        raise invalid(f"Invalid '{param}.name': 1 to 64 letters, digits, _ or -.", f"{param}.name")
    if schema is not None and not isinstance(schema, dict):
        raise invalid(f"Invalid '{param}.schema': expected a JSON Schema object.", f"{param}.schema")
    if strict is not None and not isinstance(strict, bool):
        raise invalid(f"Invalid '{param}.strict': expected a boolean.", f"{param}.strict")
    if description is not None and not isinstance(description, str):
        raise invalid(f"Invalid '{param}.description': expected a string.", f"{param}.description")
    return ResponseFormat(
        AnswerFormat.JSON_SCHEMA, schema=schema, name=name, description=description or "", strict=strict
    )


def json_loads(raw: bytes) -> object:
    """json.loads, raising ValueError too for what it reads but no upstream could be sent: a lone
    surrogate (`"\\ud800"` alone is no character: encoding it for the provider fails, a 503 the
    clients would retry in vain) and nesting too deep to read (RecursionError, else a 500)."""
    try:
        body = json.loads(raw)
    except RecursionError:
        raise ValueError("the JSON is nested too deep") from None
    if SURROGATE.search(raw):  # rare: only then are the strings checked (a pair is one character)
        try:
            json.dumps(body, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise ValueError("a string holds a lone surrogate") from None
    return body


def chat_params(raw: bytes) -> ChatParams:
    """The request body read and checked; raises OpenAIError (400) naming the parameter at fault."""
    try:
        body = json_loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid("We could not parse the JSON body of your request: send a JSON object.") from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid("You must provide a model parameter.", "model")
    if "messages" not in body:
        raise invalid("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
    messages = _messages(body["messages"])
    for name, why in REFUSED.items():
        if body.get(name) and body[name] != "none":  # tool_choice / function_call "none": no tool, a plain chat
            raise invalid(f"Unsupported parameter '{name}': {why}.", name, "unsupported_parameter")
    n = _integer(body, "n", low=1)
    if n is not None and n != 1:
        raise invalid("Invalid 'n': this gateway returns one choice (n = 1).", "n", "unsupported_value")
    response_format = _response_format(body.get("response_format"))
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("Invalid 'stream': expected a boolean.", "stream")
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise invalid("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options")
        if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
            raise invalid("Invalid 'stream_options': expected {\"include_usage\": true|false}.", "stream_options")
    # max_completion_tokens replaces max_tokens in OpenAI's API; either may come, the newer one wins.
    max_tokens = _integer(body, "max_completion_tokens", low=1)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", low=1)
    else:
        _integer(body, "max_tokens", low=1)
    return ChatParams(
        model=model.strip(),
        messages=messages,
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", low=0, high=2),
        top_p=_number(body, "top_p", low=0, high=1),
        stop=_stop(body.get("stop")),
        seed=_integer(body, "seed", low=-(2**63)),
        stream=bool(stream),
        include_usage=bool((options or {}).get("include_usage")),
        response_format=response_format,
    )


def finish_reason(provider_reason: str) -> str:
    """The provider's own word (stop, length, end_turn, max_tokens, done...) as one of OpenAI's."""
    if provider_reason in TRUNCATED_REASONS:
        return "length"
    if provider_reason in REFUSAL_REASONS:
        return "content_filter"
    return "stop"


def usage(entry: LedgerEntry) -> dict:
    """CompletionUsage, from the ledger row (the provider's counts, else the row's estimates)."""
    return {
        "prompt_tokens": entry.prompt_tokens,
        "completion_tokens": entry.completion_tokens,
        "total_tokens": entry.prompt_tokens + entry.completion_tokens,
    }


def completion_body(*, completion_id: str, model: str, text: str, entry: LedgerEntry) -> dict:
    """A ChatCompletion."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(entry.finish_reason),
            }
        ],
        "usage": usage(entry),
        "system_fingerprint": None,
    }


def model_entry(name: str, owner: str) -> dict:
    """A Model of the models list (`created` is not known here: 0)."""
    return {"id": name, "object": "model", "created": 0, "owned_by": owner}


def chunk(
    *, completion_id: str, created: int, model: str, delta: dict, finish: str | None = None, usage_: dict | None = None
) -> bytes:
    """One server-sent event carrying a ChatCompletionChunk; `usage_` makes it the final usage chunk (no choices)."""
    body: dict = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
    if usage_ is not None:
        body["choices"], body["usage"] = [], usage_
    else:
        body["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    return event(body)


def event(body: dict) -> bytes:
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"
