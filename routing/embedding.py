"""Embeddings through the router: local first, with the same slots, cool-downs, fallbacks, cloud budget
and ledger as a chat.

    embed_route(request: EmbedRouteRequest) -> EmbedResult

- candidates come from `routing.plan.plan_embedding` (only embedding models; a chat is never sent to
  one, `routing.plan.plan_route`); an Ollama host without the model is skipped without a call.
- each attempt takes one of the provider's slots (the shared host's in-flight cap counts embeddings
  and chats together) and has one ledger row, started just before the call, completed after it: the
  provider's prompt tokens, no completion tokens, the cost at the model's input price, and the
  baseline of an embedding (`RoutingTable.baseline_for`: the cloud's embedding model, not the
  policy's chat model). A cloud attempt for a user reserves its prompt's cost against the user's
  monthly budget with its started row, or is skipped.
- a transient failure counts towards the provider's cool-down; every failure falls back to the next
  candidate; raises routing.router.NoProviderAvailable when none answered.

Not streamed and not cancellable: an embedding is one short exchange. Call outside any transaction.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace

from django.utils import timezone

from routing import health
from routing.budget import BudgetExceeded, attempt_reserve
from routing.ledger import Attempt, attempt_complete, attempt_start, shorten
from routing.models import LedgerEntry
from routing.plan import plan_embedding
from routing.providers import get_adapter
from routing.providers.base import Completion, Embeddings, EmbedRequest, Problem, ProviderError
from routing.providers.http import HTTPAdapter
from routing.readiness import fix_sentence

# The chat router's bookkeeping for one call, shared so a failure is recorded (and cools down) one way.
from routing.router import FAILURE_MESSAGE_MAX, NoProviderAvailable, _Called, _local_skips, _record_failure
from routing.table import current_table
from routing.tokens import estimate_text_tokens


@dataclass(frozen=True)
class EmbedRouteRequest:
    inputs: tuple[str, ...]
    agent: str = ""
    model: str = ""  # a concrete embedding model; empty: the router's first
    user_id: int | None = None
    team_id: int | None = None  # as routing.router.RouteRequest: who asked, and through what
    api_key_id: int | None = None
    endpoint: str = ""
    client: str = ""
    dimensions: int | None = None
    truncate: bool = True
    idempotency_key: str = ""  # names the request's ledger rows; a uuid if empty


@dataclass(frozen=True)
class EmbedResult:
    embeddings: Embeddings
    provider: str
    model: str
    is_local: bool
    entry: LedgerEntry  # the successful attempt's row
    attempts: list[LedgerEntry]  # every row written for this request, in order; the last is `entry`


def as_messages(inputs: tuple[str, ...]) -> list[dict[str, str]]:
    """The inputs as the ledger's estimates read a prompt (one message per input: a few tokens over)."""
    return [{"role": "user", "content": text} for text in inputs]


@dataclass(frozen=True)
class _Embedded:
    """One embedding call: its attempt (started when the call did), its started row, the vectors or the error."""

    attempt: Attempt
    started: LedgerEntry
    outcome: Embeddings | ProviderError
    latency_ms: int


def _call(attempt: Attempt, request: EmbedRouteRequest, *, adapter: HTTPAdapter, wait_s: float) -> _Embedded:
    """One embedding call inside one of the provider's slots, its started row written just before it.

    Raises health.NoFreeSlot when no slot freed in time, BudgetExceeded when a cloud call could take
    its user past this month's budget."""
    provider = attempt.candidate.provider
    hold_s = provider.config.connect_timeout_s + provider.config.request_timeout_s
    messages = as_messages(request.inputs)
    call = EmbedRequest(
        model=attempt.candidate.model,
        inputs=request.inputs,
        dimensions=request.dimensions,
        truncate=request.truncate,
    )
    with health.slot(provider.name, limit=provider.max_in_flight, hold_s=hold_s, wait_s=wait_s):
        attempt = replace(attempt, started=timezone.now())
        if provider.is_local or attempt.user_id is None:
            started_row = attempt_start(attempt=attempt, messages=messages)
        else:  # its worst case is the prompt: an embedding has no output tokens
            started_row = attempt_reserve(attempt=attempt, messages=messages, max_tokens=0)
        started = time.perf_counter()
        try:
            outcome: Embeddings | ProviderError = adapter.embed(call)
        except ProviderError as error:
            outcome = error
        return _Embedded(attempt, started_row, outcome, round((time.perf_counter() - started) * 1000))


def _record_success(
    called: _Embedded, embeddings: Embeddings, *, request: EmbedRouteRequest, failed: list[LedgerEntry]
) -> EmbedResult:
    attempt = called.attempt
    health.record_success(attempt.candidate.provider.name)
    # The ledger prices a call from its counts: an embedding's are its prompt and no completion.
    counts = Completion(
        text="",
        model=embeddings.model,
        prompt_tokens=embeddings.prompt_tokens,
        completion_tokens=0,
        latency_ms=embeddings.latency_ms,
        raw_usage=embeddings.raw_usage,
    )
    entry = attempt.success_entry(counts, messages=as_messages(request.inputs))
    entry.pk = called.started.pk
    attempt_complete(entry=entry)
    provider = attempt.candidate.provider
    return EmbedResult(
        embeddings=embeddings,
        provider=provider.name,
        model=attempt.candidate.model,
        is_local=provider.is_local,
        entry=entry,
        attempts=[*failed, entry],
    )


def embed_route(request: EmbedRouteRequest) -> EmbedResult:
    if not request.inputs:
        raise ValueError("an embedding request has at least one input")
    table = current_table()
    cooling = health.cooldowns(provider.name for provider in table.providers if provider.enabled)
    plan = plan_embedding(
        table,
        agent=request.agent,
        model=request.model,
        prompt_tokens=max(estimate_text_tokens(text) for text in request.inputs),
        cooling=cooling,
    )
    if plan.refused:  # the input is longer than every embedding model's context
        raise NoProviderAvailable(plan.refused, refused=True)
    notes = list(plan.skipped)
    local_skips = _local_skips(plan, table)
    key = request.idempotency_key or f"embed:{uuid.uuid4().hex}"
    failed: list[LedgerEntry] = []
    fixes: list[str] = []
    fallback = ""  # what went wrong with the previous candidate
    over_budget: BudgetExceeded | None = None
    for candidate in plan.candidates:
        provider = candidate.provider
        adapter = get_adapter(provider.config)
        if adapter.can_serve(candidate.model) is False:
            fallback = f"{provider.name} has no {candidate.model} installed"
            notes.append(f"{provider.name}: {candidate.model} not installed")
            fixes.append(fix_sentence(provider.config, candidate.model, Problem.MODEL_MISSING))
            continue
        reason = f"fallback: {fallback}; {candidate.reason}" if fallback else candidate.reason
        attempt = Attempt(
            table=table,
            candidate=candidate,
            number=len(failed) + 1,
            reason=reason if provider.is_local else reason + local_skips,
            started=timezone.now(),  # replaced when the call starts
            agent=request.agent,
            user_id=request.user_id,
            team_id=request.team_id,
            api_key_id=request.api_key_id,
            endpoint=request.endpoint,
            client=request.client,
            key=key,
        )
        try:
            wait_s = table.policy.slot_wait_seconds if provider.slot_wait_s is None else provider.slot_wait_s
            called = _call(attempt, request, adapter=adapter, wait_s=wait_s)
        except (health.NoFreeSlot, BudgetExceeded) as refused:
            if isinstance(refused, BudgetExceeded) and over_budget is None:
                over_budget = refused
            fallback = str(refused)
            notes.append(f"{provider.name}: {refused}")
            continue
        if isinstance(called.outcome, Embeddings):
            return _record_success(called, called.outcome, request=request, failed=failed)
        error = called.outcome
        fix = fix_sentence(provider.config, candidate.model, error.problem, error.message)
        failed.append(
            _record_failure(
                _Called(called.attempt, called.started, error, called.latency_ms), error, table=table, fix=fix
            )
        )
        fallback = f"{provider.name} {error.message}"
        notes.append(f"{provider.name}: {error.message} ({'transient' if error.transient else 'permanent'})")
        fixes.append(fix)
    if not plan.candidates and not notes:
        notes.append("no enabled provider has an embedding model")
    reason = shorten("no provider could take the embedding request: " + "; ".join(notes), FAILURE_MESSAGE_MAX)
    fixes += [cooling[provider.name].fix for provider in plan.cooling if provider.name in cooling]
    fixes += [fix_sentence(provider.config, provider.default_model, Problem.NO_KEY) for provider in plan.no_key]
    fix = "\n".join(dict.fromkeys(fix for fix in fixes if fix))
    raise NoProviderAvailable(reason, failed, fix=fix, budget=over_budget)
