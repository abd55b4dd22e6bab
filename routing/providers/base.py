"""The one interface every provider adapter speaks, and the errors it may raise.

An adapter turns a `ChatRequest` into a `Completion` over one HTTP protocol. It never lets an
httpx exception escape: every failure becomes a `TransientError` (worth trying elsewhere or
later: timeouts, refused connections, 429, 5xx, Ollama's 503 "server busy", a broken stream)
or a `PermanentError` (this request will not succeed here: 400, 401/403, 404 unknown model).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from routing.rules import api_key_env_allowed


class Problem(StrEnum):
    """What stands between a provider and a working call, when the adapter can tell: each has its
    own fix sentence (routing.readiness)."""

    NO_KEY = "no_key"  # its API key variable is not set
    KEY_REJECTED = "key_rejected"  # 401/403
    REFUSED = "refused"  # nothing listens at the address
    UNREACHABLE = "unreachable"  # the name did not resolve, no route, or no answer to connect
    TIMEOUT = "timeout"  # connected, but the answer did not come in time
    MODEL_MISSING = "model_missing"  # an Ollama host without the model pulled


class ProviderError(Exception):
    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        problem: Problem | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after  # seconds the provider asked us to wait (Retry-After), if it said
        self.problem = problem


class TransientError(ProviderError):
    transient = True


class PermanentError(ProviderError):
    transient = False


# Called by a streamed call with each piece of text as it arrives ("" for an event without text);
# it may raise CallCancelled to cut the call.
ChunkHook = Callable[[str], None]


class CallCancelled(Exception):
    """The caller withdrew the request mid-call (its hook raised this): not the provider's failure.

    Raised by the caller's per-chunk hook inside an adapter's stream loop, or while waiting for a
    slot; leaving the stream closes the response, and with it the upstream's generation.
    """

    def __init__(self, message: str = "cancelled", *, partial: str = "") -> None:
        super().__init__(message)
        self.partial = partial  # the text received before the cut


@dataclass(frozen=True)
class ProviderConfig:
    """What an adapter needs to know about a provider: a plain snapshot, no database access."""

    name: str
    kind: str
    base_url: str
    is_local: bool
    api_key_env: str = ""
    connect_timeout_s: float = 5.0
    request_timeout_s: float = 120.0
    keep_alive: str | None = None  # Ollama only


# How a message names the other end: "Ollama at http://localhost:11434 refused the connection".
KIND_NAMES = {
    "ollama": "Ollama",
    "openai": "OpenAI",
    "openai_compatible": "the OpenAI-compatible server",
    "anthropic": "Anthropic",
}


def kind_name(kind: str) -> str:
    return KIND_NAMES.get(kind, kind)


def api_key_present(api_key_env: str) -> bool:
    """Whether the variable a provider names holds a key right now (keys are read at call time, never stored).

    A variable the operator did not allow for keys is never read: its provider has no key."""
    return bool(api_key_env and api_key_env_allowed(api_key_env) and os.environ.get(api_key_env))


class AnswerFormat(StrEnum):
    JSON_OBJECT = "json_object"  # any JSON object
    JSON_SCHEMA = "json_schema"  # JSON that matches a schema


@dataclass(frozen=True)
class ResponseFormat:
    """A structured answer the caller asked for (OpenAI's response_format, Ollama's format). Each
    adapter writes it in its protocol's words; a protocol without it (`HTTPAdapter.answer_formats`
    empty) is skipped by the plan. Plain text is no format at all (None)."""

    type: AnswerFormat
    schema: dict | None = None  # JSON_SCHEMA: the JSON Schema the answer must match
    name: str = ""  # JSON_SCHEMA: OpenAI's json_schema.name
    description: str = ""
    strict: bool | None = None  # OpenAI's json_schema.strict, passed on where the protocol has it


def unanswerable_format(kind: str, answer_formats: frozenset[AnswerFormat], wanted: ResponseFormat | None) -> str:
    """Why a protocol that can be asked for `answer_formats` cannot give this answer ("" when it can)."""
    if wanted is None or wanted.type in answer_formats:
        return ""
    return f"cannot answer in {wanted.type}: {kind_name(kind)} takes no response_format"


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: list[dict[str, str]]  # [{"role": "system"|"user"|"assistant", "content": "..."}]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()  # sequences that end the answer
    seed: int | None = None  # not every provider honours it (Anthropic has none)
    stream: bool = False
    # For a base model (LLMModel.prompt_style completion): the conversation as one document to continue,
    # sent to /v1/completions instead of `messages`. See completion_prompt.
    prompt: str | None = None
    response_format: ResponseFormat | None = None  # None: plain text


@dataclass
class Completion:
    text: str
    model: str
    prompt_tokens: int | None  # None when the provider reported no usage
    completion_tokens: int | None
    latency_ms: int
    ttft_ms: int | None = None  # only when streaming
    finish_reason: str | None = None  # the provider's own word: stop, length, end_turn, max_tokens, refusal...
    raw_usage: dict = field(default_factory=dict)
    # Parts of prompt_tokens that the provider's prompt cache wrote or read (priced apart); None when not reported.
    cache_write_tokens: int | None = None
    cache_read_tokens: int | None = None

    @property
    def truncated(self) -> bool:
        """The answer stopped at the token limit, not because it was done."""
        return self.finish_reason in TRUNCATED_REASONS

    @property
    def refused(self) -> bool:
        return self.finish_reason in REFUSAL_REASONS


# finish_reason (OpenAI, llama.cpp), stop_reason (Anthropic), done_reason (Ollama)
TRUNCATED_REASONS = frozenset({"length", "max_tokens", "model_context_window_exceeded"})
REFUSAL_REASONS = frozenset({"refusal", "content_filter"})


def fold_system_prompt(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The conversation for a model whose chat template has no system role (Gemma's drops system
    messages): the system prompt goes at the start of the first user turn, as Gemma's own template
    does, so the instructions still reach the model."""
    system = "\n\n".join(m["content"] for m in messages if m.get("role") == "system" and m.get("content"))
    rest = [m for m in messages if m.get("role") != "system"]
    if not system:
        return rest
    for index, message in enumerate(rest):
        if message.get("role") == "user":
            folded = {**message, "content": f"{system}\n\n{message.get('content') or ''}"}
            return [*rest[:index], folded, *rest[index + 1 :]]
    return [{"role": "user", "content": system}, *rest]


def completion_prompt(messages: list[dict[str, str]], *, answer_start: str = "") -> str:
    """The conversation as one document for a base model to continue: the turns' text, one paragraph
    each, then the start of the answer (e.g. an open ```python fence).

    A base model given chat turns mostly repeats the prompt (it was never tuned to answer one); given
    a document that has started the answer, it writes code (BENCHMARKS.md, "The demo model").
    """
    text = "\n\n".join(m["content"].strip() for m in messages if (m.get("content") or "").strip())
    return f"{text}\n\n{answer_start}"
