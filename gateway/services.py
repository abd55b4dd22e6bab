"""A chat completion for a gateway client: its request through the one router, metered as the agents' calls are.

Synchronous (the router is): the async views run these in a worker thread. Every call writes the
router's ledger rows with the client's user (so budgets, the local share and reports count it) and
the agent slug "gateway", under the idempotency key `gateway:<completion id>`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections

from accounts.services import KeyHolder, KeyRefused, key_authenticate_cached
from gateway.openai_format import ChatParams, OpenAIError, unknown_model
from routing.router import NoProviderAvailable, RouteRequest, RouteResult, route
from routing.table import current_table

AGENT = "gateway"  # the ledger's agent slug for calls that came through the gateway
AUTO = "auto"  # the model name that lets the router choose (local first, rules, fallbacks)


P = ParamSpec("P")
R = TypeVar("R")


def model_check(model: str) -> None:
    """Raise OpenAIError (404) unless the model is `auto` or one an enabled provider serves."""
    if model == AUTO:
        return
    if not any(provider.enabled and provider.serves(model) for provider in current_table().providers):
        raise unknown_model(model)


def model_names(allowed: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(name, who serves it) for /v1/models: `auto` (the router), then each concrete model of an
    enabled provider, by the providers' priority, each name once (the first provider serving it);
    only the `allowed` ones when the key is limited to some."""
    names = {AUTO: "switchyard"}
    for provider in current_table().providers:
        if provider.enabled:
            for name in [provider.default_model, *sorted(provider.models)]:
                names.setdefault(name, provider.name)
    return [(name, owner) for name, owner in names.items() if not allowed or name in allowed]


def route_request(
    params: ChatParams,
    *,
    user_id: int,
    completion_id: str,
    on_text: Callable[[str], None] | None = None,
    on_attempt: Callable[[str, str], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> RouteRequest:
    return RouteRequest(
        messages=params.messages,
        agent=AGENT,
        model="" if params.model == AUTO else params.model,
        user_id=user_id,
        max_tokens=params.max_tokens,
        temperature=params.temperature,
        top_p=params.top_p,
        stop=params.stop,
        seed=params.seed,
        stream=params.stream,
        on_text=on_text,
        on_attempt=on_attempt,
        cancelled=cancelled,
        idempotency_key=f"{AGENT}:{completion_id}",
        durable=False,  # the ledger's flush to disk was most of a call's overhead (routing.ledger.attempt_complete)
    )


def in_worker_thread(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`function` for an async view: run in a thread of its own, its database connections closed after.

    Not on Django's one thread for sync code (thread_sensitive), where a call would wait for every
    other request's sync work; and the connection closed at once, where Django would keep it for
    CONN_MAX_AGE in a thread that is about to end (a connection left open per request)."""

    def closing(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        finally:
            connections.close_all()

    return sync_to_async(closing, thread_sensitive=False)


def key_check(key: str) -> KeyHolder:
    """The holder of the client's key (the REST API's rule, remembered for a few seconds:
    accounts.services); OpenAIError 401 if refused."""
    try:
        return key_authenticate_cached(key)
    except KeyRefused as refused:
        raise OpenAIError(401, str(refused), code="invalid_api_key") from None


def model_allowed_check(model: str, holder: KeyHolder) -> None:
    """Raise OpenAIError (403) when the key is limited to models and this is not one of them."""
    allowed = holder.allowed_models
    if allowed and model not in allowed:
        raise OpenAIError(
            403,
            f"This API key may not use the model `{model}`; it may use: {', '.join(allowed)}.",
            param="model",
            code="model_not_allowed",
        )


def chat_complete(params: ChatParams, request: RouteRequest) -> RouteResult:
    """The routed call; raises OpenAIError (404 unknown model, 503 no provider could answer) or
    routing.router.RouteCancelled."""
    try:
        model_check(params.model)
        return route(request)
    except NoProviderAvailable as refused:
        message = refused.reason + (f" What to do: {' '.join(refused.fix.splitlines())}" if refused.fix else "")
        raise OpenAIError(503, message, type_="server_error", code="no_provider_available") from None


def cost_usd(result: RouteResult) -> Decimal:
    """What the request cost: every attempt's row, the failed ones included."""
    return sum((entry.cost_usd or Decimal(0) for entry in result.attempts), Decimal(0))
