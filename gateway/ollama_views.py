"""The Ollama-compatible endpoints (/api/chat, /api/generate, /api/embed, /api/tags, /api/show, /api/version),
so that tools written for an Ollama host (Open WebUI, Continue, the `ollama` package) can point at
Switchyard unchanged.

The same path as the OpenAI-compatible views (views.py): the key check, the key's model limit and
the routed call through gateway.services (one router, one ledger, agent "gateway"), in one worker
thread for an answer in one object; a stream through gateway.streaming.Stream, sent as NDJSON lines
(`stream` is true unless the request says false, as in Ollama). Only the wire format differs
(ollama_format), errors included: {"error": "..."} with the status.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe

from accounts.services import KeyHolder
from gateway import embeddings_format as embed_wire
from gateway import ollama_format as wire
from gateway.openai_format import ChatParams, OpenAIError
from gateway.rate_limits import Admission
from gateway.services import (
    OLLAMA_EMBED_ENDPOINT,
    Caller,
    EmbedAnswer,
    budget_headers,
    caller_of,
    chat_complete,
    embed_answer,
    in_worker_thread,
    is_embedding_model,
    key_check,
    model_allowed_check,
    model_names,
    rate_limit_check,
    route_request,
    went_to_cloud,
)
from gateway.streaming import Stream
from gateway.views import bearer_key, switchyard_headers
from routing.router import RouteResult


def error_response(error: wire.OllamaError) -> JsonResponse:
    response = JsonResponse(error.body(), status=error.status, headers=error.headers)
    if error.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key(request: HttpRequest) -> str:
    try:
        return bearer_key(request)
    except OpenAIError as error:
        raise wire.refused(error) from None


def _body(request: HttpRequest) -> bytes:
    try:
        return request.body
    except RequestDataTooBig:
        raise wire.OllamaError(413, "the request body is too large") from None


@require_safe  # GET and HEAD, as Ollama answers both
async def version(request: HttpRequest) -> HttpResponse:
    """No key needed: it tells a client that an Ollama-compatible server is here, nothing more (no
    model, no call, no cost), as Ollama's own does; health checks and connection tests ask it first."""
    return JsonResponse({"version": wire.VERSION})


@require_safe  # GET and HEAD, as Ollama answers both
async def tags(request: HttpRequest) -> HttpResponse:
    """The model names a request may give (gateway.services.model_names), as Ollama lists its models."""
    try:
        names = await in_worker_thread(_names)(_key(request))
    except wire.OllamaError as error:
        return error_response(error)
    return JsonResponse({"models": [wire.tag(name) for name, _owner in names]})


@require_safe
async def running(request: HttpRequest) -> HttpResponse:
    """GET /api/ps, Ollama's models loaded in memory: none here, as the gateway loads no model (the
    hosts behind it do). Open WebUI asks it for its status panel."""
    try:
        await in_worker_thread(_holder)(_key(request))
    except wire.OllamaError as error:
        return error_response(error)
    return JsonResponse({"models": []})


def _holder(key: str) -> KeyHolder:
    """Who sent the key (gateway.services.key_check); OllamaError 401 if refused."""
    try:
        return key_check(key)
    except OpenAIError as error:
        raise wire.refused(error) from None


def _names(key: str) -> list[tuple[str, str]]:
    return model_names(_holder(key).allowed_models)


@csrf_exempt
@require_POST
async def show(request: HttpRequest) -> HttpResponse:
    try:
        name, owner, embeds = await in_worker_thread(_shown)(_key(request), _body(request))
    except wire.OllamaError as error:
        return error_response(error)
    return JsonResponse(wire.show(name, owner, embeds=embeds))


def _shown(key: str, body: bytes) -> tuple[str, str, bool]:
    holder = _holder(key)
    name = wire.show_model(body)
    try:
        model_allowed_check(name, holder)
    except OpenAIError as error:
        raise wire.refused(error, model=name) from None
    return name, _served_by(name), is_embedding_model(name)


def _served_by(name: str) -> str:
    """Who serves a name (a listed one: gateway.services.model_names); OllamaError 404 for others."""
    owner = dict(model_names()).get(name)
    if owner is None:
        raise wire.unknown_model(name)
    return owner


@csrf_exempt
@require_POST
async def chat(request: HttpRequest) -> HttpResponse:
    return await _routed(request, "chat")


@csrf_exempt
@require_POST
async def generate(request: HttpRequest) -> HttpResponse:
    return await _routed(request, "generate")


@dataclass(frozen=True)
class _Answer:
    caller: Caller
    params: ChatParams
    result: RouteResult | None  # None: streamed (the call is still to make), or nothing to answer
    unload: bool = False  # nothing to answer, and keep_alive 0
    admission: Admission | None = None  # the key's rate limits (None: nothing to answer, so not counted)
    budget: dict[str, str] = field(default_factory=dict)  # the budget headers (gateway.services.budget_headers)

    def headers(self) -> dict[str, str]:
        return {**(self.admission.headers() if self.admission else {}), **self.budget}


async def _routed(request: HttpRequest, endpoint: wire.Endpoint) -> HttpResponse:
    started = time.perf_counter_ns()
    call_id = f"ollama-{endpoint}-{uuid.uuid4().hex}"  # names the call's ledger rows: gateway:<call_id>
    try:
        answer = await in_worker_thread(_answer)(
            _key(request), _body(request), endpoint, call_id, client=request.headers.get("User-Agent", "")
        )
    except wire.OllamaError as error:
        return error_response(error)
    params = answer.params
    if not params.messages:
        return JsonResponse(wire.loaded(endpoint, model=params.model, unload=answer.unload, now=_now()))
    if answer.result is None:
        return await _streamed(endpoint, answer, call_id=call_id, started=started)
    result = answer.result
    body = wire.final(
        endpoint,
        model=result.model,
        text=result.completion.text,
        entry=result.entry,
        upstream=result.completion.raw_usage,
        total_ns=time.perf_counter_ns() - started,
        now=_now(),
    )
    return JsonResponse(body, headers={**switchyard_headers(result), **answer.headers()})


def _answer(key: str, body: bytes, endpoint: wire.Endpoint, call_id: str, *, client: str) -> _Answer:
    """The key's user, the request, and (unless it is streamed or has nothing to answer) the routed
    answer: the key check and the call in one worker thread, as views._answer. The key is checked
    before the body, so a wrong key is a 401 before any 400."""
    holder = _holder(key)
    params = wire.chat_params(body) if endpoint == "chat" else wire.generate_params(body)
    caller = caller_of(holder, endpoint=f"/api/{endpoint}", client=client)
    try:
        model_allowed_check(params.model, holder)
        if not params.messages:  # Ollama's "load the model": nothing to call, but the name must exist
            _served_by(params.model)
            return _Answer(caller, params, None, unload=wire.unloads(body))
        admission = rate_limit_check(holder, params)
        if params.stream:  # what was left as the stream starts, as on /v1/
            return _Answer(caller, params, None, admission=admission, budget=budget_headers(caller))
        routed = route_request(params, caller=caller, completion_id=call_id)
        result = chat_complete(params, routed, admission=admission)
        budget = budget_headers(caller, fresh=went_to_cloud(result.attempts))
        return _Answer(caller, params, result, admission=admission, budget=budget)
    except OpenAIError as error:
        raise wire.refused(error, model=params.model) from None


def _as_error(error: object, model: str) -> wire.OllamaError:
    if isinstance(error, OpenAIError):
        return wire.refused(error, model=model)
    return wire.OllamaError(503, f"the call was stopped: {error}")


async def _streamed(endpoint: wire.Endpoint, answer: _Answer, *, call_id: str, started: int) -> HttpResponse:
    params = answer.params
    stream = Stream(asyncio.get_running_loop())
    routed = route_request(
        params,
        caller=answer.caller,
        completion_id=call_id,
        on_text=stream.on_text,
        on_attempt=stream.on_attempt,
        cancelled=stream.gone.is_set,
        fallback_allowed=stream.nothing_sent,
    )
    worker = asyncio.ensure_future(
        in_worker_thread(stream.run)(partial(chat_complete, params, routed, admission=answer.admission))
    )
    # The status and headers wait for the first piece of the answer: until then a failure is an
    # ordinary error response (the ollama package raises ResponseError with its status).
    try:
        kind, value = await stream.queue.get()
    except asyncio.CancelledError:  # the client went away before it: the upstream call stops too
        stream.gone.set()
        raise
    if kind == "error":
        await worker
        return error_response(_as_error(value, params.model))
    provider, model = stream.serving  # the attempt whose answer is arriving

    async def lines() -> AsyncIterator[bytes]:
        nonlocal kind, value
        try:
            while True:
                if kind == "text":
                    yield wire.line(wire.piece(endpoint, model=model, text=str(value), now=_now()))
                elif kind == "done":
                    assert isinstance(value, RouteResult)
                    yield wire.line(
                        wire.final(
                            endpoint,
                            model=value.model,
                            text="",
                            entry=value.entry,
                            upstream=value.completion.raw_usage,
                            total_ns=time.perf_counter_ns() - started,
                            now=_now(),
                        )
                    )
                    break
                else:  # after the first piece the status is sent: Ollama's error line ends the stream
                    yield wire.line(_as_error(value, params.model).body())
                    break
                kind, value = await stream.queue.get()
        finally:
            stream.gone.set()  # a client that went away: the router cuts the upstream call at its next chunk
        await worker

    # The cost is known only when the answer is complete: it is in the ledger, not in these headers.
    headers = {
        "Cache-Control": "no-cache",
        "x-switchyard-provider": provider,
        "x-switchyard-model": model,
        **answer.headers(),  # the rate limits as of the admission
    }
    return StreamingHttpResponse(lines(), content_type="application/x-ndjson", headers=headers)


@csrf_exempt
@require_POST
async def embed(request: HttpRequest) -> HttpResponse:
    """POST /api/embed: the embeddings of views.embeddings (routing.embedding) in Ollama's format."""
    started = time.perf_counter_ns()
    try:
        answer = await in_worker_thread(_embedding)(
            _key(request), _body(request), client=request.headers.get("User-Agent", "")
        )
    except wire.OllamaError as error:
        return error_response(error)
    if answer.result is None or answer.admission is None:  # no input: Ollama's "load the model"
        return JsonResponse(embed_wire.ollama_empty_body(answer.params.model))
    body = embed_wire.ollama_body(answer.result, total_ns=time.perf_counter_ns() - started)
    headers = {**switchyard_headers(answer.result), **answer.admission.headers(), **answer.budget}
    return JsonResponse(body, headers=headers)


def _embedding(key: str, body: bytes, *, client: str) -> EmbedAnswer:
    """As `_answer`: the key checked before the body, the routed call, refusals in Ollama's shape."""
    holder = _holder(key)
    try:
        params = embed_wire.ollama_params(body)
    except OpenAIError as error:
        raise wire.refused(error) from None
    try:
        return embed_answer(holder, params, endpoint=OLLAMA_EMBED_ENDPOINT, client=client)
    except OpenAIError as error:
        raise wire.refused(error, model=params.model) from None
