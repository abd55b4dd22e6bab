"""The router: one call in, a completion from the best provider available out, a ledger row per attempt.

Interface (the agents app and the tests rely on it):

    route(request: RouteRequest, *, on_success=None) -> RouteResult

- candidates come from `routing.plan.plan_route` (pure, over the cached routing table); before
  each attempt the provider's adapter may say it cannot serve the model (Ollama: not installed on
  the host), and the candidate is skipped without a call.
- each attempt takes one of the provider's slots and writes one LedgerEntry (`routing.ledger`),
  success or failure. The provider call itself is never made inside a transaction.
- `on_success(result)` is called inside the same database transaction that inserts the
  successful attempt's ledger row, so a caller can store the output atomically with the charge
  (a worker killed before that commit leaves neither; after it, both).
- raises NoProviderAvailable(reason, attempts) when every candidate failed or none fits.
- `request.cancelled()`, when given, is asked before each attempt, while waiting for a slot and per
  streamed chunk; once it says yes no further call is made, a stream in progress is closed (which
  stops the upstream's generation) and its attempt is recorded as cancelled; route() raises
  RouteCancelled. `request.on_text(text)` gets the current attempt's answer so far, per chunk.

route() must be called outside any database transaction: a provider call takes seconds to
minutes, and inside a transaction it would hold its row locks and connection that long. It does
not check: Django has no public way to tell a caller's transaction from a test's wrapping one,
and its one caller (agents.services, executing a claimed run) holds none.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from routing import health
from routing.ledger import Attempt, shorten
from routing.models import LedgerEntry
from routing.plan import Candidate, plan_route
from routing.providers import get_adapter
from routing.providers.base import CallCancelled, ChatRequest, ChunkHook, Completion, ProviderError
from routing.providers.http import HTTPAdapter
from routing.table import RoutingTable, current_table
from routing.tokens import estimate_prompt_tokens

FAILURE_MESSAGE_MAX = 2000


@dataclass(frozen=True)
class RouteRequest:
    messages: list[dict[str, str]]
    capability: str = ""
    agent: str = ""
    user_id: int | None = None
    run_id: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    max_prompt_tokens: int | None = None  # refuse (permanent) when the estimated prompt is larger
    stream: bool = False
    # A caller watching the call (both run on the calling thread, so they must be cheap).
    cancelled: Callable[[], bool] | None = None  # True once the answer is no longer wanted
    on_text: Callable[[str], None] | None = None  # the current attempt's streamed answer so far


@dataclass(frozen=True)
class RouteResult:
    completion: Completion
    provider: str
    model: str
    is_local: bool
    reason: str
    entry: LedgerEntry  # the successful attempt's row
    attempts: list[LedgerEntry]  # every row written for this request, in order; the last is `entry`


class NoProviderAvailable(Exception):
    def __init__(self, reason: str, attempts: list[LedgerEntry] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts or []


class RouteCancelled(Exception):
    """The caller cancelled the request (`RouteRequest.cancelled`); `attempts` holds the rows written."""

    def __init__(self, reason: str, attempts: list[LedgerEntry] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts or []


@dataclass(frozen=True)
class _Called:
    """One provider call's outcome: the completion or the error, when it started, its wall time."""

    outcome: Completion | ProviderError | CallCancelled
    started: datetime
    latency_ms: int


def _call(candidate: Candidate, request: RouteRequest, *, adapter: HTTPAdapter, wait_s: float) -> _Called:
    """One provider call inside one of its slots; raises health.NoFreeSlot when none freed in time."""
    provider = candidate.provider
    hold_s = provider.config.connect_timeout_s + provider.config.request_timeout_s
    chat = ChatRequest(
        model=candidate.model,
        messages=request.messages,
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        stream=request.stream,
    )
    with health.slot(
        provider.name, limit=provider.max_in_flight, hold_s=hold_s, wait_s=wait_s, cancelled=request.cancelled
    ):
        started_at, started = timezone.now(), time.perf_counter()
        try:
            outcome: Completion | ProviderError | CallCancelled = adapter.chat(chat, on_chunk=_chunk_hook(request))
        except (ProviderError, CallCancelled) as error:
            outcome = error
        return _Called(outcome, started_at, round((time.perf_counter() - started) * 1000))


def _record_success(
    attempt: Attempt,
    completion: Completion,
    *,
    request: RouteRequest,
    failed: list[LedgerEntry],
    on_success: Callable[[RouteResult], None] | None,
) -> RouteResult:
    health.record_success(attempt.candidate.provider.name)
    entry = attempt.success_entry(completion, messages=request.messages)
    provider = attempt.candidate.provider
    result = RouteResult(
        completion=completion,
        provider=provider.name,
        model=attempt.candidate.model,
        is_local=provider.is_local,
        reason=entry.reason,
        entry=entry,
        attempts=[*failed, entry],
    )
    with transaction.atomic():
        entry.save(force_insert=True)
        if on_success is not None:
            on_success(result)
    return result


def _chunk_hook(request: RouteRequest) -> ChunkHook | None:
    """The adapter's per-chunk hook for one attempt: passes the answer so far on, cuts the call on a cancel."""
    if request.cancelled is None and request.on_text is None:
        return None
    pieces: list[str] = []

    def on_chunk(piece: str) -> None:
        if piece:
            pieces.append(piece)
            if request.on_text is not None:
                request.on_text("".join(pieces))
        if request.cancelled is not None and request.cancelled():
            raise CallCancelled("cancelled during the call", partial="".join(pieces))

    return on_chunk


def _stop_if_cancelled(request: RouteRequest, attempts: list[LedgerEntry]) -> None:
    if request.cancelled is not None and request.cancelled():
        raise RouteCancelled("cancelled before the next attempt", attempts)


def _record_cancelled(attempt: Attempt, cut: CallCancelled, *, request: RouteRequest, latency_ms: int) -> LedgerEntry:
    # Not a provider failure: no cool-down is counted. The tokens generated before the cut are billed
    # by a cloud provider, so the row keeps an estimate of them (the usage report never came).
    entry = attempt.cancelled_entry(partial=cut.partial, messages=request.messages, latency_ms=latency_ms)
    entry.save(force_insert=True)
    return entry


def _record_failure(attempt: Attempt, error: ProviderError, *, latency_ms: int, table: RoutingTable) -> LedgerEntry:
    entry = attempt.failure_entry(error, latency_ms=latency_ms)
    entry.save(force_insert=True)
    if error.transient:
        health.record_transient_failure(
            attempt.candidate.provider.name,
            failures_before_cooldown=table.policy.failures_before_cooldown,
            cooldown_seconds=table.policy.cooldown_seconds,
            retry_after=error.retry_after,
        )
    return entry


def route(request: RouteRequest, *, on_success: Callable[[RouteResult], None] | None = None) -> RouteResult:
    table = current_table()
    plan = plan_route(
        table,
        capability=request.capability,
        agent=request.agent,
        prompt_tokens=estimate_prompt_tokens(request.messages),
        max_prompt_tokens=request.max_prompt_tokens,
        cooling=health.cooldowns(provider.name for provider in table.providers if provider.enabled),
    )
    if plan.refused:
        raise NoProviderAvailable(plan.refused)
    notes = list(plan.skipped)
    failed: list[LedgerEntry] = []
    fallback = ""  # what went wrong with the previous candidate
    for candidate in plan.candidates:
        _stop_if_cancelled(request, failed)
        provider = candidate.provider
        adapter = get_adapter(provider.config)
        if adapter.can_serve(candidate.model) is False:
            fallback = f"{provider.name} has no {candidate.model} installed"
            notes.append(f"{provider.name}: {candidate.model} not installed")
            continue
        try:
            called = _call(candidate, request, adapter=adapter, wait_s=table.policy.slot_wait_seconds)
        except health.NoFreeSlot as busy:
            fallback = str(busy)
            notes.append(f"{provider.name}: {busy}")
            continue
        except CallCancelled as cut:
            raise RouteCancelled(str(cut), failed) from None
        attempt = Attempt(
            table=table,
            candidate=candidate,
            number=len(failed) + 1,
            reason=f"fallback: {fallback}; {candidate.reason}" if fallback else candidate.reason,
            started=called.started,
            agent=request.agent,
            user_id=request.user_id,
            run_id=request.run_id,
        )
        if isinstance(called.outcome, Completion):
            return _record_success(attempt, called.outcome, request=request, failed=failed, on_success=on_success)
        if isinstance(called.outcome, CallCancelled):
            failed.append(_record_cancelled(attempt, called.outcome, request=request, latency_ms=called.latency_ms))
            raise RouteCancelled(str(called.outcome), failed)
        error = called.outcome
        failed.append(_record_failure(attempt, error, latency_ms=called.latency_ms, table=table))
        fallback = f"{provider.name} {error.message}"
        notes.append(f"{provider.name}: {error.message} ({'transient' if error.transient else 'permanent'})")
    if not plan.candidates and not notes:
        notes.append("no providers are configured")
    reason = shorten("no provider could take the request: " + "; ".join(notes), FAILURE_MESSAGE_MAX)
    raise NoProviderAvailable(reason, failed)
