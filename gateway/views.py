"""The OpenAI-compatible endpoint, served async (ASGI) so that a long stream holds no worker thread
of the web app while it waits for tokens.

The router is synchronous: each call runs it in a thread of its own (services.in_worker_thread:
sync_to_async with thread_sensitive=False, so gateway calls do not queue behind each other or the
web UI on Django's one thread for sync code). A streamed call hands each piece the router's on_text hook sees to the
response through gateway.streaming.Stream (shared with the Ollama endpoints), so a token leaves as soon as the
upstream sent it; a client that goes away sets the router's `cancelled()`, which cuts the upstream
call at its next chunk and meters what was used.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from functools import partial

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from accounts.services import KeyHolder
from core.formatting import money_json
from gateway import embeddings_format as embed_wire
from gateway import openai_format as wire
from gateway.rate_limits import Admission
from gateway.services import (
    EMBEDDINGS_ENDPOINT,
    Caller,
    EmbedAnswer,
    budget_headers,
    caller_of,
    chat_complete,
    cost_usd,
    embed_answer,
    in_worker_thread,
    key_check,
    model_allowed_check,
    model_names,
    rate_limit_check,
    route_request,
    went_to_cloud,
)
from gateway.streaming import Stream
from routing.embedding import EmbedResult
from routing.router import RouteResult

CHAT_ENDPOINT = "/v1/chat/completions"


def error_response(error: wire.OpenAIError) -> JsonResponse:
    response = JsonResponse(error.body(), status=error.status, headers=error.headers)
    if error.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def bearer_key(request: HttpRequest) -> str:
    """The key of the `Authorization: Bearer <key>` (or `Token <key>`) header: the REST API's keys."""
    words = request.headers.get("Authorization", "").split()
    if len(words) != 2 or words[0].lower() not in ("bearer", "token"):
        raise wire.bad_key(given=bool(words))
    return words[1]


async def _key_holder(request: HttpRequest) -> KeyHolder:
    """Who sent the key (accounts.services, through gateway.services.key_check)."""
    return await in_worker_thread(key_check)(bearer_key(request))


def switchyard_headers(result: RouteResult | EmbedResult) -> dict[str, str]:
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


@require_GET
async def model(request: HttpRequest, model: str) -> HttpResponse:
    """One name of the models list (the client's models.retrieve); 404 for a name it does not hold."""
    try:
        holder = await _key_holder(request)
    except wire.OpenAIError as error:
        return error_response(error)
    owner = dict(await in_worker_thread(model_names)(holder.allowed_models)).get(model)
    if owner is None:
        return error_response(wire.unknown_model(model))
    return JsonResponse(wire.model_entry(model, owner))


@csrf_exempt
@require_POST
async def chat_completions(request: HttpRequest) -> HttpResponse:
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    try:
        caller, params, admission, result, budget = await in_worker_thread(_answer)(
            bearer_key(request), request.body, completion_id, client=request.headers.get("User-Agent", "")
        )
    except wire.OpenAIError as error:
        return error_response(error)
    if result is None:
        return await _streamed(params, caller=caller, completion_id=completion_id, admission=admission, budget=budget)
    body = wire.completion_body(
        completion_id=completion_id, model=result.model, text=result.completion.text, entry=result.entry
    )
    return JsonResponse(body, headers={**switchyard_headers(result), **admission.headers(), **budget})


def _answer(
    key: str, body: bytes, completion_id: str, *, client: str
) -> tuple[Caller, wire.ChatParams, Admission, RouteResult | None, dict[str, str]]:
    """The caller, the request, its rate limit admission, (unless it is streamed) the routed answer,
    and the budget headers: the key check and the call in one worker thread, one hop from the event
    loop and one pooled database connection. The key is checked before the body, so a wrong key is a
    401 before any 400."""
    holder = key_check(key)
    params = wire.chat_params(body)
    model_allowed_check(params.model, holder)
    admission = rate_limit_check(holder, params)
    caller = caller_of(holder, endpoint=CHAT_ENDPOINT, client=client)
    if params.stream:  # what was left as the stream starts: its cost is known only at its end
        return caller, params, admission, None, budget_headers(caller)
    routed = route_request(params, caller=caller, completion_id=completion_id)
    result = chat_complete(params, routed, admission=admission)
    return caller, params, admission, result, budget_headers(caller, fresh=went_to_cloud(result.attempts))


def _as_error(error: object) -> wire.OpenAIError:
    if isinstance(error, wire.OpenAIError):
        return error
    return wire.OpenAIError(503, f"the call was stopped: {error}", type_="server_error", code="stream_interrupted")


async def _streamed(
    params: wire.ChatParams, *, caller: Caller, completion_id: str, admission: Admission, budget: dict[str, str]
) -> HttpResponse:
    stream = Stream(asyncio.get_running_loop())
    routed = route_request(
        params,
        caller=caller,
        completion_id=completion_id,
        on_text=stream.on_text,
        on_attempt=stream.on_attempt,
        cancelled=stream.gone.is_set,
        fallback_allowed=stream.nothing_sent,
    )
    worker = asyncio.ensure_future(
        in_worker_thread(stream.run)(partial(chat_complete, params, routed, admission=admission))
    )
    # The status and headers wait for the first piece of the answer: until then a failure is an
    # ordinary error response the client raises as its own exception.
    try:
        kind, value = await stream.queue.get()
    except asyncio.CancelledError:  # the client went away before it: the upstream call stops too
        stream.gone.set()
        raise
    if kind == "error":
        await worker
        return error_response(_as_error(value))  # no rate limit headers: the hold is settled meanwhile
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
    # The rate limits as of the admission: the tokens held are settled after the last chunk.
    headers = {
        "Cache-Control": "no-cache",
        "x-switchyard-provider": provider,
        "x-switchyard-model": model,
        **admission.headers(),
        **budget,
    }
    return StreamingHttpResponse(events(), content_type="text/event-stream", headers=headers)


def _final(result: object, *, completion_id: str, created: int, params: wire.ChatParams) -> bytes:
    assert isinstance(result, RouteResult)
    finish = wire.finish_reason(result.entry.finish_reason)
    out = wire.chunk(completion_id=completion_id, created=created, model=result.model, delta={}, finish=finish)
    if params.include_usage:
        usage = wire.usage(result.entry)
        out += wire.chunk(completion_id=completion_id, created=created, model=result.model, delta={}, usage_=usage)
    return out


@csrf_exempt
@require_POST
async def embeddings(request: HttpRequest) -> HttpResponse:
    """POST /v1/embeddings: OpenAI's embeddings, routed local first (routing.embedding)."""
    try:
        answer = await in_worker_thread(_embedding)(
            bearer_key(request), request.body, client=request.headers.get("User-Agent", "")
        )
    except wire.OpenAIError as error:
        return error_response(error)
    result, admission = answer.result, answer.admission
    assert result is not None and admission is not None  # openai_params refuses an empty input
    headers = {**switchyard_headers(result), **admission.headers(), **answer.budget}
    return JsonResponse(embed_wire.openai_body(result, answer.params), headers=headers)


def _embedding(key: str, body: bytes, *, client: str) -> EmbedAnswer:
    """The key check, the request and the routed embedding in one worker thread (as `_answer`)."""
    holder = key_check(key)
    params = embed_wire.openai_params(body)
    return embed_answer(holder, params, endpoint=EMBEDDINGS_ENDPOINT, client=client)
