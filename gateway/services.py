"""A chat completion for a gateway client: its request through the one router, metered as the agents' calls are.

Synchronous (the router is): the async views run these in a worker thread. Every call writes the
router's ledger rows with the client's user (so budgets, the local share and reports count it) and
the agent slug "gateway", under the idempotency key `gateway:<completion id>`.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

from accounts.services import KeyHolder, KeyRefused, key_authenticate_cached
from core.formatting import money_json
from gateway.embeddings_format import EmbedParams
from gateway.openai_format import ChatParams, OpenAIError, insufficient_quota, rate_limited, unknown_model
from gateway.rate_limits import Admission, RateLimited, rate_admit, rate_settle
from routing.budget import BudgetStatus, budget_statuses, tightest
from routing.embedding import EmbedResult, EmbedRouteRequest, as_messages, embed_route
from routing.models import AUTO_ALIAS, LedgerEntry
from routing.providers.ollama import tagged
from routing.router import NoProviderAvailable, RouteCancelled, RouteRequest, RouteResult, route
from routing.sources import GATEWAY_AGENT
from routing.table import current_table
from routing.tokens import estimate_prompt_tokens

AGENT = GATEWAY_AGENT  # the ledger's agent slug for calls that came through the gateway (routing.sources)
OWNER = "switchyard"  # who serves an alias, in the models list
EMBEDDINGS_ENDPOINT = "/v1/embeddings"
OLLAMA_EMBED_ENDPOINT = "/api/embed"
AUTO = AUTO_ALIAS  # for embeddings, the router's first embedding model


P = ParamSpec("P")
R = TypeVar("R")


def model_resolve(model: str) -> tuple[str, str]:
    """(capability, concrete model) a requested name routes as: an alias (`auto`, `code`...) goes through
    the full router with its capability and no model; a concrete model to the providers serving it.
    Raises OpenAIError: 404 for a name that is neither (or a model only disabled providers serve), 400
    for an embedding model."""
    table = current_table()
    alias = table.aliases.get(model)
    if alias is not None:
        return alias.capability, ""
    providers = [provider for provider in table.providers if provider.enabled]
    if any(provider.serves(model) for provider in providers):
        return "", model
    if any(provider.embeds(model) for provider in providers):
        raise OpenAIError(
            400,
            f"The model `{model}` is an embedding model: it answers embeddings only (/v1/embeddings, /api/embed).",
            param="model",
            code="model_not_supported",
        )
    raise unknown_model(model)


def model_names(allowed: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(name, who serves it) for /v1/models: the enabled aliases (auto first), then each concrete model
    of an enabled provider, by the providers' priority, each name once (the first provider serving it);
    only the `allowed` ones when the key is limited to some."""
    table = current_table()
    names = dict.fromkeys(table.aliases, OWNER)
    for provider in table.providers:
        if provider.enabled:
            for name in [provider.default_model, *sorted(provider.models)]:
                names.setdefault(name, provider.name)
    return [(name, owner) for name, owner in names.items() if not allowed or name in allowed]


@dataclass(frozen=True)
class Caller:
    """Who made a gateway call and through what: what its ledger rows record besides the call."""

    user_id: int
    team_id: int | None
    api_key_id: int | None  # None for an older DRF token
    endpoint: str  # e.g. /v1/chat/completions
    client: str  # the User-Agent


def caller_of(holder: KeyHolder, *, endpoint: str, client: str) -> Caller:
    return Caller(
        user_id=holder.user.pk,
        team_id=holder.team_id,
        api_key_id=holder.key.pk if holder.key else None,
        endpoint=endpoint,
        client=client,
    )


def route_request(
    params: ChatParams,
    *,
    caller: Caller,
    completion_id: str,
    on_text: Callable[[str], None] | None = None,
    on_attempt: Callable[[str, str], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    fallback_allowed: Callable[[], bool] | None = None,
) -> RouteRequest:
    """The router's request, but for the capability and model: `chat_complete` resolves the name it
    gave (model_resolve), in the worker thread, where the routing table may be read."""
    return RouteRequest(
        messages=params.messages,
        agent=AGENT,
        user_id=caller.user_id,
        team_id=caller.team_id,
        api_key_id=caller.api_key_id,
        endpoint=caller.endpoint,
        client=caller.client,
        max_tokens=params.max_tokens,
        temperature=params.temperature,
        top_p=params.top_p,
        stop=params.stop,
        seed=params.seed,
        stream=params.stream,
        response_format=params.response_format,
        on_text=on_text,
        on_attempt=on_attempt,
        cancelled=cancelled,
        fallback_allowed=fallback_allowed,
        idempotency_key=f"{AGENT}:{completion_id}",
        durable=False,  # the ledger's flush to disk was most of a call's overhead (routing.ledger.attempt_complete)
    )


@functools.cache
def _calls() -> ThreadPoolExecutor:
    """The threads gateway calls run in: a pool of their own, so long streams never take the threads
    (or the one thread for sync code) that the web pages need, and sized for calls that mostly wait."""
    return ThreadPoolExecutor(max_workers=settings.SWITCHYARD_GATEWAY_CONCURRENCY, thread_name_prefix="gateway")


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

    return sync_to_async(closing, thread_sensitive=False, executor=_calls())


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


def rate_limit_check(holder: KeyHolder, params: ChatParams) -> Admission:
    """The request counted against its key's rate limits (gateway.rate_limits); OpenAIError 429 if over."""
    try:
        return rate_admit(holder, prompt_tokens=estimate_prompt_tokens(params.messages), max_tokens=params.max_tokens)
    except RateLimited as refused:
        raise rate_limited(refused.message, kind=refused.kind, headers=refused.headers()) from None


def metered_tokens(rows: list[LedgerEntry]) -> int:
    """The tokens the ledger metered for a request (every attempt's prompt and completion): what it
    used of its key's tokens per minute."""
    return sum(row.prompt_tokens + row.completion_tokens for row in rows)


def chat_complete(params: ChatParams, request: RouteRequest, *, admission: Admission | None = None) -> RouteResult:
    """The routed call; raises OpenAIError (404 unknown model, 400 a request no provider here can honour,
    429 a budget stopped the cloud and no other provider answered, 503 no provider could answer) or
    routing.router.RouteCancelled. The tokens the request held at `admission` are then settled to
    what was metered (nothing, when no answer came)."""
    rows: list[LedgerEntry] = []
    try:
        capability, model = model_resolve(params.model)
        result = route(replace(request, capability=capability, model=model))
        rows = result.attempts
        return result
    except RouteCancelled as cancelled:
        rows = cancelled.attempts
        raise
    except NoProviderAvailable as refused:
        rows = refused.attempts
        raise refusal_error(refused) from None
    finally:
        budgets_spent(rows)
        if admission is not None:
            rate_settle(admission, tokens_used=metered_tokens(rows))


def refusal_error(refused: NoProviderAvailable) -> OpenAIError:
    """What a client is told when no provider answered: 400 when the request asks for what no provider
    here can do (a response format, a length), 429 `insufficient_quota` when a budget stopped the cloud,
    else 503 with what to do."""
    if refused.refused:
        return OpenAIError(400, refused.reason, code="unsupported_request")
    if refused.budget is not None:
        return insufficient_quota(refused.reason, headers=budget_headers_of([refused.budget.status]))
    message = refused.reason + (f" What to do: {' '.join(refused.fix.splitlines())}" if refused.fix else "")
    return OpenAIError(503, message, type_="server_error", code="no_provider_available")


def budget_headers_of(statuses: list[BudgetStatus]) -> dict[str, str]:
    """What is left of the budgets a call counts against: the tightest, its scope, and each's."""
    least = tightest(statuses)
    if least is None:
        return {}
    headers = {
        "x-switchyard-budget-remaining-usd": money_json(least.remaining_usd),
        "x-switchyard-budget-scope": str(least.scope),
    }
    for status in statuses:
        headers[f"x-switchyard-budget-remaining-{status.scope}-usd"] = money_json(status.remaining_usd)
    return headers


# A local call spends no budget: the budgets read for a caller this long ago still hold in this
# process, unless a call of this process went to the cloud since (budgets_spent: any caller's, as a
# team's and a user's budgets are shared by several callers); only another process's cloud calls
# can make the headers that much older. Saves two queries on each gateway answer.
BUDGET_HEADERS_S = 5.0
_budgets_read: dict[tuple[int, int | None, int | None], tuple[float, dict[str, str]]] = {}


def went_to_cloud(rows: list[LedgerEntry]) -> bool:
    """Whether a call made a cloud attempt (so it may have spent budget)."""
    return any(not row.is_local for row in rows)


def budgets_spent(rows: list[LedgerEntry]) -> None:
    """After a call: if it went to the cloud, forget every caller's remembered budget headers."""
    if went_to_cloud(rows):
        _budgets_read.clear()


def budget_headers(caller: Caller, *, fresh: bool = False) -> dict[str, str]:
    """The caller's budgets this month (its team's, its user's, its key's) as response headers; read
    again when `fresh` (after its own cloud call), else as remembered for up to BUDGET_HEADERS_S."""
    scope = (caller.user_id, caller.team_id, caller.api_key_id)
    now = time.monotonic()
    remembered = _budgets_read.get(scope)
    if not fresh and remembered is not None and now - remembered[0] < BUDGET_HEADERS_S:
        return remembered[1]
    headers = budget_headers_of(
        budget_statuses(user_id=caller.user_id, team_id=caller.team_id, api_key_id=caller.api_key_id)
    )
    _budgets_read[scope] = (now, headers)
    return headers


def cost_usd(result: RouteResult | EmbedResult) -> Decimal:
    """What the request cost: every attempt's row, the failed ones included."""
    return sum((entry.cost_usd or Decimal(0) for entry in result.attempts), Decimal(0))


def is_embedding_model(model: str) -> bool:
    """Whether an enabled provider serves this name as an embedding model."""
    return any(provider.enabled and provider.embeds(model) for provider in current_table().providers)


def embedding_model(model: str, *, ollama_names: bool = False) -> str:
    """The embedding model a request names ("" for `auto`: the router's first embedding model); OpenAIError
    404 for a name no enabled provider serves, 400 for a chat model. `ollama_names`: `nomic-embed-text`
    is also `nomic-embed-text:latest`, as on an Ollama host."""
    if model == AUTO:
        return ""
    providers = [provider for provider in current_table().providers if provider.enabled]
    names = [model, tagged(model)] if ollama_names else [model]
    for name in names:
        if any(provider.embeds(name) for provider in providers):
            return name
    if any(provider.serves(name) for provider in providers for name in names):
        raise OpenAIError(
            400,
            f"The model `{model}` does not support embeddings: name an embedding model, or `{AUTO}`.",
            param="model",
            code="model_not_supported",
        )
    raise unknown_model(model)


def embedding_rate_limit_check(holder: KeyHolder, params: EmbedParams) -> Admission:
    """The request counted against its key's rate limits, as `rate_limit_check`: the inputs' estimated
    tokens held, no completion; OpenAIError 429 if over."""
    try:
        return rate_admit(holder, prompt_tokens=estimate_prompt_tokens(as_messages(params.inputs)), max_tokens=0)
    except RateLimited as refused:
        raise rate_limited(refused.message, kind=refused.kind, headers=refused.headers()) from None


@dataclass(frozen=True)
class EmbedAnswer:
    params: EmbedParams
    result: EmbedResult | None  # None: an Ollama request without input (a model load), nothing called
    admission: Admission | None = None  # None: nothing called, so nothing counted
    budget: dict[str, str] = field(default_factory=dict)  # the budget headers after the call (budget_headers)


def embed_answer(holder: KeyHolder, params: EmbedParams, *, endpoint: str, client: str) -> EmbedAnswer:
    """An embedding request of a checked key: the key's model limit, its rate limits, the routed call;
    raises OpenAIError (403, 404, 400 a chat model, 429, 503). On /api/embed (`endpoint`) model names
    are Ollama's (`nomic-embed-text` is `nomic-embed-text:latest`) and no input loads nothing."""
    ollama_names = endpoint == OLLAMA_EMBED_ENDPOINT
    model_allowed_check(params.model, holder)
    if not params.inputs:
        embedding_model(params.model, ollama_names=ollama_names)
        return EmbedAnswer(params, None)
    admission = embedding_rate_limit_check(holder, params)
    caller = caller_of(holder, endpoint=endpoint, client=client)
    request_id = f"embd-{uuid.uuid4().hex}"
    result = embed_create(params, caller=caller, request_id=request_id, admission=admission)
    return EmbedAnswer(params, result, admission, budget_headers(caller, fresh=went_to_cloud(result.attempts)))


def embed_create(
    params: EmbedParams, *, caller: Caller, request_id: str, admission: Admission | None = None
) -> EmbedResult:
    """The routed embedding (routing.embedding: local first, metered as the chat calls are); raises
    OpenAIError (404 unknown model, 400 a chat model, 503 no provider could answer). The tokens held at
    `admission` are then settled to what was metered."""
    rows: list[LedgerEntry] = []
    try:
        request = EmbedRouteRequest(
            inputs=params.inputs,
            agent=AGENT,
            model=embedding_model(params.model, ollama_names=caller.endpoint == OLLAMA_EMBED_ENDPOINT),
            user_id=caller.user_id,
            team_id=caller.team_id,
            api_key_id=caller.api_key_id,
            endpoint=caller.endpoint,
            client=caller.client,
            dimensions=params.dimensions,
            truncate=params.truncate,
            idempotency_key=f"{AGENT}:{request_id}",
        )
        result = embed_route(request)
        rows = result.attempts
        return result
    except NoProviderAvailable as refused:
        rows = refused.attempts
        raise refusal_error(refused) from None
    finally:
        budgets_spent(rows)
        if admission is not None:
            rate_settle(admission, tokens_used=metered_tokens(rows))
