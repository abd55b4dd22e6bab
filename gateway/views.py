"""The OpenAI-compatible endpoint, served async (ASGI) so that a long stream holds no worker thread
of the web app while it waits for tokens.

The router is synchronous: each call runs it in a thread of its own (services.in_worker_thread:
sync_to_async with thread_sensitive=False, so gateway calls do not queue behind each other or the
web UI on Django's one thread for sync code). A streamed call hands each piece the router's on_text hook sees to the
response through an asyncio queue (loop.call_soon_threadsafe), so a token leaves as soon as the
upstream sent it; a client that goes away sets the router's `cancelled()`, which cuts the upstream
call at its next chunk and meters what was used.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from accounts.services import KeyHolder
from core.formatting import money_json
from gateway import embeddings_format as embed_wire
from gateway import openai_format as wire
from gateway.services import (
    Caller,
    caller_of,
    chat_complete,
    cost_usd,
    embed_create,
    embedding_model,
    in_worker_thread,
    key_check,
    model_allowed_check,
    model_names,
    route_request,
)
from routing.embedding import EmbedResult
from routing.providers.base import CallCancelled
from routing.router import RouteCancelled, RouteResult

CHAT_ENDPOINT = "/v1/chat/completions"
EMBEDDINGS_ENDPOINT = "/v1/embeddings"
OLLAMA_EMBED_ENDPOINT = "/api/embed"


def error_response(error: wire.OpenAIError) -> JsonResponse:
    response = JsonResponse(error.body(), status=error.status)
    if error.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def _bearer_key(request: HttpRequest) -> str:
    """The key of the `Authorization: Bearer <key>` (or `Token <key>`) header: the REST API's keys."""
    words = request.headers.get("Authorization", "").split()
    if len(words) != 2 or words[0].lower() not in ("bearer", "token"):
        raise wire.bad_key(given=bool(words))
    return words[1]


async def _key_holder(request: HttpRequest) -> KeyHolder:
    """Who sent the key (accounts.services, through gateway.services.key_check)."""
    return await in_worker_thread(key_check)(_bearer_key(request))


def _headers(result: RouteResult) -> dict[str, str]:
    return {
        "x-switchyard-provider": result.provider,
        "x-switchyard-model": result.model,
        "x-switchyard-cost-usd": money_json(cost_usd(result)) or "0",
    }


@require_GET
async def models(request: HttpRequest) -> HttpResponse:
    """The model names a request may give: `auto`, then every concrete model an enabled provider serves."""
    try:
        holder = await _key_holder(request)
    except wire.OpenAIError as error:
        return error_response(error)
    served = await in_worker_thread(model_names)(holder.allowed_models)
    return JsonResponse({"object": "list", "data": [wire.model_entry(name, owner) for name, owner in served]})


@csrf_exempt
@require_POST
async def chat_completions(request: HttpRequest) -> HttpResponse:
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    try:
        caller, params, result = await in_worker_thread(_answer)(
            _bearer_key(request), request.body, completion_id, client=request.headers.get("User-Agent", "")
        )
    except wire.OpenAIError as error:
        return error_response(error)
    if result is None:
        return await _streamed(params, caller=caller, completion_id=completion_id)
    body = wire.completion_body(
        completion_id=completion_id, model=result.model, text=result.completion.text, entry=result.entry
    )
    return JsonResponse(body, headers=_headers(result))


def _answer(
    key: str, body: bytes, completion_id: str, *, client: str
) -> tuple[Caller, wire.ChatParams, RouteResult | None]:
    """The caller, the request, and (unless it is streamed) the routed answer: the key check and
    the call in one worker thread, one hop from the event loop and one pooled database connection.
    The key is checked before the body, so a wrong key is a 401 before any 400."""
    holder = key_check(key)
    params = wire.chat_params(body)
    model_allowed_check(params.model, holder)
    caller = caller_of(holder, endpoint=CHAT_ENDPOINT, client=client)
    if params.stream:
        return caller, params, None
    return caller, params, chat_complete(params, route_request(params, caller=caller, completion_id=completion_id))


class _Stream:
    """The router's side of one streamed call (its thread) and the response's side (the event loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
        self.gone = threading.Event()  # the client disconnected
        self.sent = ""  # the answer handed on so far (router thread only)
        self.serving = ("", "")  # (provider, model) of the current attempt, set before its first piece

    def on_attempt(self, provider: str, model: str) -> None:
        self.serving = (provider, model)

    def put(self, kind: str, value: object) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, value))

    def on_text(self, text: str) -> None:
        # The router hands on the current attempt's answer so far. One that does not extend what the
        # client already has is a fallback's new answer: it cannot be spliced in, so the call stops.
        if not text.startswith(self.sent):
            raise CallCancelled("the provider failed after part of the answer was sent", partial=text)
        if len(text) > len(self.sent):
            self.put("text", text[len(self.sent) :])
            self.sent = text

    def nothing_sent(self) -> bool:
        """Whether another provider's answer could still be sent instead (the router's fallback_allowed)."""
        return not self.sent

    def run(self, params: wire.ChatParams, routed) -> None:
        try:
            self.put("done", chat_complete(params, routed))
        except wire.OpenAIError as error:
            if self.sent:  # the client has part of an answer: say so, rather than "no provider could"
                error = wire.OpenAIError(
                    error.status,
                    f"the provider failed after part of the answer was sent: {error.message}",
                    type_="server_error",
                    code="stream_interrupted",
                )
            self.put("error", error)
        except RouteCancelled as error:
            self.put("error", error)
        except Exception as error:  # the response must end even when the router breaks
            self.put("error", wire.OpenAIError(500, f"internal error: {type(error).__name__}", type_="server_error"))
            raise


def _as_error(error: object) -> wire.OpenAIError:
    if isinstance(error, wire.OpenAIError):
        return error
    return wire.OpenAIError(503, f"the call was stopped: {error}", type_="server_error", code="stream_interrupted")


async def _streamed(params: wire.ChatParams, *, caller: Caller, completion_id: str) -> HttpResponse:
    stream = _Stream(asyncio.get_running_loop())
    routed = route_request(
        params,
        caller=caller,
        completion_id=completion_id,
        on_text=stream.on_text,
        on_attempt=stream.on_attempt,
        cancelled=stream.gone.is_set,
        fallback_allowed=stream.nothing_sent,
    )
    worker = asyncio.ensure_future(in_worker_thread(stream.run)(params, routed))
    # The status and headers wait for the first piece of the answer: until then a failure is an
    # ordinary error response the client raises as its own exception.
    kind, value = await stream.queue.get()
    if kind == "error":
        await worker
        return error_response(_as_error(value))
    created = int(time.time())
    provider, model = stream.serving  # the attempt whose answer is arriving

    async def events() -> AsyncIterator[bytes]:
        nonlocal kind, value
        try:
            yield wire.chunk(completion_id=completion_id, created=created, model=model, delta={"role": "assistant"})
            while True:
                if kind == "text":
                    yield wire.chunk(
                        completion_id=completion_id, created=created, model=model, delta={"content": value}
                    )
                elif kind == "done":
                    yield _final(value, completion_id=completion_id, created=created, params=params)
                    break
                else:
                    yield wire.event(_as_error(value).body())
                    break
                kind, value = await stream.queue.get()
            yield wire.DONE
        finally:
            stream.gone.set()  # a client that went away: the router cuts the upstream call at its next chunk
        await worker

    # The cost is known only when the answer is complete: it is in the ledger, not in these headers.
    headers = {"Cache-Control": "no-cache", "x-switchyard-provider": provider, "x-switchyard-model": model}
    return StreamingHttpResponse(events(), content_type="text/event-stream", headers=headers)


def _final(result: object, *, completion_id: str, created: int, params: wire.ChatParams) -> bytes:
    assert isinstance(result, RouteResult)
    finish = wire.finish_reason(result.entry.finish_reason)
    out = wire.chunk(completion_id=completion_id, created=created, model=result.model, delta={}, finish=finish)
    if params.include_usage:
        usage = wire.usage(result.entry)
        out += wire.chunk(completion_id=completion_id, created=created, model=result.model, delta={}, usage_=usage)
    return out


def _embed_headers(result: EmbedResult) -> dict[str, str]:
    return {
        "x-switchyard-provider": result.provider,
        "x-switchyard-model": result.model,
        "x-switchyard-cost-usd": money_json(cost_usd(result)) or "0",
    }


def _embed(key: str, body: bytes, *, ollama: bool, client: str) -> tuple[EmbedResult | None, embed_wire.EmbedParams]:
    """The key check, the request and the routed embedding in one worker thread (as `_answer`); no
    call for an Ollama request without input (a model load), only the model's check."""
    holder = key_check(key)
    params = embed_wire.ollama_params(body) if ollama else embed_wire.openai_params(body)
    model_allowed_check(params.model, holder)
    if not params.inputs:
        embedding_model(params.model, ollama_names=ollama)
        return None, params
    caller = caller_of(holder, endpoint=OLLAMA_EMBED_ENDPOINT if ollama else EMBEDDINGS_ENDPOINT, client=client)
    result = embed_create(params, caller=caller, request_id=f"embd-{uuid.uuid4().hex}", ollama_names=ollama)
    return result, params


@csrf_exempt
@require_POST
async def embeddings(request: HttpRequest) -> HttpResponse:
    """POST /v1/embeddings: OpenAI's embeddings, routed local first (routing.embedding)."""
    try:
        result, params = await in_worker_thread(_embed)(
            _bearer_key(request), request.body, ollama=False, client=request.headers.get("User-Agent", "")
        )
    except wire.OpenAIError as error:
        return error_response(error)
    assert result is not None  # openai_params refuses an empty input
    return JsonResponse(embed_wire.openai_body(result, params), headers=_embed_headers(result))


@csrf_exempt
@require_POST
async def ollama_embed(request: HttpRequest) -> HttpResponse:
    """POST /api/embed: Ollama's embeddings, the same routed call; errors as Ollama writes them."""
    started = time.perf_counter_ns()
    try:
        result, params = await in_worker_thread(_embed)(
            _bearer_key(request), request.body, ollama=True, client=request.headers.get("User-Agent", "")
        )
    except wire.OpenAIError as error:
        return JsonResponse(embed_wire.ollama_error(error), status=error.status)
    if result is None:
        return JsonResponse(embed_wire.ollama_empty_body(params.model))
    body = embed_wire.ollama_body(result, total_ns=time.perf_counter_ns() - started)
    return JsonResponse(body, headers=_embed_headers(result))
