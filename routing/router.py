"""The router: one call in, a completion from the best provider available out, a ledger row per attempt.

Interface (the agents app and the tests rely on it):

    route(request: RouteRequest, *, on_success=None, on_answer=None) -> RouteResult

- candidates come from `routing.plan.plan_route` (pure, over the cached routing table); before
  each attempt the provider's adapter may say it cannot serve the model (Ollama: not installed on
  the host), and the candidate is skipped without a call.
- each attempt takes one of the provider's slots and has one LedgerEntry (`routing.ledger`):
  inserted as `started` just before the call, in its own short write, then completed as the
  success or the failure. The provider call itself is never made inside a transaction.
- `request.still_owned()`, when given, is asked before each call: once the caller has lost the
  request (its run was taken over by another worker) no further call is made (raises Superseded).
- `on_success(result)` is called inside the same database transaction that completes the
  successful attempt's ledger row, so a caller can store the output atomically with the charge
  (a worker killed before that commit leaves the row started, later unknown; after it, both).
  The charge is written only if `still_owned()`, asked after `on_success` in that transaction,
  still says yes: the new owner of a taken-over run is the one that charges it. `on_success`
  returning False means the caller discarded the answer (it cancelled while the answer arrived):
  the row is completed as cancelled, with the real usage and no baseline, so it books no savings.
- a cloud attempt made for a user (`request.user_id`) reserves its worst case against the monthly
  cloud budgets of its team, user and key together with its started row (`routing.budget.attempt_reserve`); one that
  does not fit is not made and is skipped with the budget's reason, like a provider with no free
  slot, so a local candidate after it still gets the request. max_tokens is capped at the chosen
  model's output limit.
- with neither `on_success` nor `still_owned` (the gateway), the successful attempt's row is
  completed by one UPDATE of its own; `request.durable=False` (the gateway) writes a call's rows
  without waiting for the database's disk, except a cloud call's reservation.
- `on_answer(result)`, when given, is called with the successful result just before that
  transaction, outside it: work on the answer that takes time (the agents' quality check) goes
  there, so the transaction holds its row locks only for the writes.
- raises NoProviderAvailable(reason, attempts) when every candidate failed or none fits; its
  `budget` is the BudgetExceeded of a cloud candidate a budget refused, if any (the gateway's 429).
- `request.cancelled()`, when given, is asked before each attempt, while waiting for a slot and per
  streamed chunk; once it says yes no further call is made, a stream in progress is closed (which
  stops the upstream's generation) and its attempt is recorded as cancelled; route() raises
  RouteCancelled. `request.on_text(text)` gets the current attempt's answer so far, per chunk;
  `request.on_attempt(provider, model)` is told which provider and model each call goes to, just before it.

route() must be called outside any database transaction: a provider call takes seconds to
minutes, and inside a transaction it would hold its row locks and connection that long. It does
not check: Django has no public way to tell a caller's transaction from a test's wrapping one,
and its one caller (agents.services, executing a claimed run) holds none.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

from django.db import transaction
from django.utils import timezone

from routing import health
from routing.budget import BudgetExceeded, attempt_reserve
from routing.ledger import Attempt, attempt_complete, attempt_start, shorten
from routing.models import LedgerEntry, PromptStyle
from routing.plan import Plan, plan_route
from routing.providers import get_adapter
from routing.providers.base import (
    CallCancelled,
    ChatRequest,
    ChunkHook,
    Completion,
    Problem,
    ProviderError,
    ResponseFormat,
    completion_prompt,
    fold_system_prompt,
)
from routing.providers.http import HTTPAdapter
from routing.readiness import fix_sentence
from routing.table import ModelInfo, RoutingTable, current_table
from routing.tokens import estimate_prompt_tokens

FAILURE_MESSAGE_MAX = 2000


@dataclass(frozen=True)
class RouteRequest:
    messages: list[dict[str, str]]
    capability: str = ""
    agent: str = ""
    model: str = ""  # a concrete model: only the providers serving it are tried (routing.plan)
    user_id: int | None = None
    team_id: int | None = None  # the user's team (accounts.Membership)
    api_key_id: int | None = None  # the personal key a gateway client sent
    endpoint: str = ""  # the gateway endpoint, e.g. /v1/chat/completions
    client: str = ""  # the gateway client's User-Agent
    run_id: int | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    max_prompt_tokens: int | None = None  # refuse (permanent) when the estimated prompt is larger
    stream: bool = False
    # A caller watching the call (both run on the calling thread, so they must be cheap).
    cancelled: Callable[[], bool] | None = None  # True once the answer is no longer wanted
    on_text: Callable[[str], None] | None = None  # the current attempt's streamed answer so far
    on_attempt: Callable[[str, str], None] | None = None  # (provider, model) just before each call
    # False once the caller could not use another provider's answer (part of a stream already went
    # out to its client): a failure then ends the request instead of falling back.
    fallback_allowed: Callable[[], bool] | None = None
    idempotency_key: str = ""  # names the request's ledger rows (agents: run:<id>:claim:<token>); a uuid if empty
    still_owned: Callable[[], bool] | None = None  # False once the caller lost the request (a run taken over)
    # How an answer begins (e.g. "```python\n"): a base model (prompt_style completion) gets the request as a
    # document that has started the answer, and the answer then begins with it. Chat models never see it.
    answer_start: str = ""
    # A structured answer (JSON, or JSON matching a schema); providers whose protocol cannot be asked for
    # it are skipped (routing.plan). None: plain text.
    response_format: ResponseFormat | None = None
    # False: the ledger rows of calls made without a budget reservation commit without waiting for
    # the database's disk (routing.ledger.attempt_complete says what that risks). The gateway's.
    durable: bool = True


@dataclass(frozen=True)
class RouteResult:
    completion: Completion
    provider: str
    model: str
    is_local: bool
    reason: str
    entry: LedgerEntry  # the successful attempt's row
    attempts: list[LedgerEntry]  # every row written for this request, in order; the last is `entry`


class Superseded(Exception):
    """The caller no longer owns the request (`still_owned()` said no): no further call was made."""


class NoProviderAvailable(Exception):
    def __init__(
        self,
        reason: str,
        attempts: list[LedgerEntry] | None = None,
        *,
        fix: str = "",
        refused: bool = False,
        budget: BudgetExceeded | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        # What to do, one sentence a line, in the words of the dashboard's provider panel (routing.readiness).
        self.fix = fix
        self.attempts = attempts or []
        # The request asks for what no provider here can do (routing.plan's `refused`): the caller's to
        # change, not an outage to wait out.
        self.refused = refused
        # A cloud candidate a budget refused (the first): the request might have been served within budget.
        self.budget = budget


class RouteCancelled(Exception):
    """The caller cancelled the request (`RouteRequest.cancelled`); `attempts` holds the rows written."""

    def __init__(self, reason: str, attempts: list[LedgerEntry] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts or []


@dataclass(frozen=True)
class _Called:
    """One provider call: its attempt (started when the call did), its started ledger row, the
    completion or the error, and its wall time."""

    attempt: Attempt
    started: LedgerEntry
    outcome: Completion | ProviderError | CallCancelled
    latency_ms: int


def _call(attempt: Attempt, request: RouteRequest, *, adapter: HTTPAdapter, wait_s: float) -> _Called:
    """One provider call inside one of its slots, its started row written just before it.

    Raises health.NoFreeSlot when no slot freed in time, Superseded when the caller lost the request,
    BudgetExceeded when a cloud call could take its user past this month's budget.
    """
    candidate = attempt.candidate
    provider = candidate.provider
    hold_s = provider.config.connect_timeout_s + provider.config.request_timeout_s
    model = provider.models.get(candidate.model)
    # /v1/completions takes no response_format: a base model asked for JSON gets the chat endpoint, where
    # the server's grammar makes the answer JSON whatever the model would have written.
    as_document = model is not None and model.prompt_style == PromptStyle.COMPLETION and request.response_format is None
    answer_start = request.answer_start if as_document else ""
    chat = ChatRequest(
        model=candidate.model,
        messages=request.messages if model is None or model.system_prompt else fold_system_prompt(request.messages),
        max_tokens=_max_tokens(request.max_tokens, model),
        temperature=request.temperature,
        top_p=request.top_p,
        stop=request.stop,
        seed=request.seed,
        stream=request.stream,
        prompt=completion_prompt(request.messages, answer_start=answer_start) if as_document else None,
        response_format=request.response_format,
    )
    with health.slot(
        provider.name, limit=provider.max_in_flight, hold_s=hold_s, wait_s=wait_s, cancelled=request.cancelled
    ):
        # Asked after the wait for a slot, which may have been long: right before the call.
        if request.still_owned is not None and not request.still_owned():
            raise Superseded(f"the request was taken over before attempt {attempt.number}")
        if request.on_attempt is not None:
            request.on_attempt(provider.name, candidate.model)
        attempt = replace(attempt, started=timezone.now())  # the call starts now, after any wait
        if provider.is_local or attempt.user_id is None:
            started_row = attempt_start(attempt=attempt, messages=request.messages, durable=request.durable)
        else:  # a cloud call for a user: held against their budget (raises BudgetExceeded)
            longest = chat.max_tokens or (model.output_limit if model is not None else 0)
            started_row = attempt_reserve(attempt=attempt, messages=request.messages, max_tokens=longest)
        started = time.perf_counter()
        try:
            outcome: Completion | ProviderError | CallCancelled = adapter.chat(
                chat, on_chunk=_chunk_hook(request, answer_start=answer_start)
            )
        except (ProviderError, CallCancelled) as error:
            outcome = error
        if isinstance(outcome, Completion) and answer_start:
            outcome.text = answer_start + outcome.text
        return _Called(attempt, started_row, outcome, round((time.perf_counter() - started) * 1000))


def _max_tokens(asked: int | None, model: ModelInfo | None) -> int | None:
    """What the call asks for: the request's max_tokens, capped at the model's output limit (its
    max_output_tokens, else its context window: a provider refuses more); nothing asked, the cap."""
    if model is None:
        return asked
    if asked is None:
        return model.max_output_tokens
    return min(asked, model.output_limit)


def _record_success(
    called: _Called,
    completion: Completion,
    *,
    request: RouteRequest,
    failed: list[LedgerEntry],
    on_success: Callable[[RouteResult], bool | None] | None,
    on_answer: Callable[[RouteResult], None] | None,
) -> RouteResult:
    attempt = called.attempt
    health.record_success(attempt.candidate.provider.name)
    entry = attempt.success_entry(completion, messages=request.messages)
    entry.pk = called.started.pk
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
    if on_answer is not None:
        on_answer(result)
    if on_success is None and request.still_owned is None:
        # Nothing to keep in step with the charge (the gateway): one UPDATE in autocommit, not three round trips.
        attempt_complete(entry=entry, durable=request.durable)
        return result
    with transaction.atomic():
        kept = on_success(result) if on_success is not None else None
        # A caller that lost the request meanwhile is not charged: its row stays started, and the
        # new owner marks it unknown when it takes over.
        if request.still_owned is None or request.still_owned():
            attempt_complete(entry=entry if kept is not False else attempt.discarded(entry))
    return result


def _chunk_hook(request: RouteRequest, *, answer_start: str = "") -> ChunkHook | None:
    """The adapter's per-chunk hook for one attempt: passes the answer so far on, cuts the call on a cancel."""
    if request.cancelled is None and request.on_text is None:
        return None
    pieces: list[str] = [answer_start] if answer_start else []

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


def _record_cancelled(called: _Called, cut: CallCancelled, *, request: RouteRequest) -> LedgerEntry:
    # Not a provider failure: no cool-down is counted. The tokens generated before the cut are billed
    # by a cloud provider, so the row keeps an estimate of them (the usage report never came).
    entry = called.attempt.cancelled_entry(partial=cut.partial, messages=request.messages, latency_ms=called.latency_ms)
    entry.pk = called.started.pk
    # A caller that lost the request (taken over, not cancelled) writes nothing more: the row stays
    # started and the new owner marks it unknown, as for a call cut any other way.
    if request.still_owned is None or request.still_owned():
        attempt_complete(entry=entry)
    return entry


def _record_failure(called: _Called, error: ProviderError, *, table: RoutingTable, fix: str) -> LedgerEntry:
    attempt = called.attempt
    entry = attempt.failure_entry(error, latency_ms=called.latency_ms)
    entry.pk = called.started.pk
    attempt_complete(entry=entry)
    if error.transient:
        health.record_transient_failure(
            attempt.candidate.provider.name,
            failures_before_cooldown=table.policy.failures_before_cooldown,
            cooldown_seconds=table.policy.cooldown_seconds,
            retry_after=error.retry_after,
            fix=fix,  # a run that finds the provider cooling down still says what to do about it
        )
    return entry


def _local_skips(plan: Plan, table: RoutingTable) -> str:
    """Why the plan left out local providers ("ollama: cooling down ..."), for a cloud attempt's reason."""
    # Plan.skipped reads "<provider>: <why not>"; provider names are slugs, so the first ": " splits them.
    notes = [note for note in plan.skipped if table.by_name[note.partition(": ")[0]].is_local]
    return f"; local skipped: {'; '.join(notes)}" if notes else ""


def route(
    request: RouteRequest,
    *,
    on_success: Callable[[RouteResult], bool | None] | None = None,
    on_answer: Callable[[RouteResult], None] | None = None,
) -> RouteResult:
    table = current_table()
    cooling = health.cooldowns(provider.name for provider in table.providers if provider.enabled)
    plan = plan_route(
        table,
        capability=request.capability,
        agent=request.agent,
        model=request.model,
        prompt_tokens=estimate_prompt_tokens(request.messages),
        max_prompt_tokens=request.max_prompt_tokens,
        response_format=request.response_format,
        cooling=cooling,
    )
    if plan.refused:
        raise NoProviderAvailable(plan.refused, refused=True)
    notes = list(plan.skipped)
    local_skips = _local_skips(plan, table)
    key = request.idempotency_key or f"route:{uuid.uuid4().hex}"
    failed: list[LedgerEntry] = []
    fixes: list[str] = []
    fallback = ""  # what went wrong with the previous candidate
    over_budget: BudgetExceeded | None = None
    for candidate in plan.candidates:
        _stop_if_cancelled(request, failed)
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
            run_id=request.run_id,
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
        except CallCancelled as cut:
            raise RouteCancelled(str(cut), failed) from None
        if isinstance(called.outcome, Completion):
            return _record_success(
                called, called.outcome, request=request, failed=failed, on_success=on_success, on_answer=on_answer
            )
        if isinstance(called.outcome, CallCancelled):
            failed.append(_record_cancelled(called, called.outcome, request=request))
            raise RouteCancelled(str(called.outcome), failed)
        error = called.outcome
        fix = fix_sentence(provider.config, candidate.model, error.problem, error.message)
        failed.append(_record_failure(called, error, table=table, fix=fix))
        fallback = f"{provider.name} {error.message}"
        notes.append(f"{provider.name}: {error.message} ({'transient' if error.transient else 'permanent'})")
        fixes.append(fix)
        if request.fallback_allowed is not None and not request.fallback_allowed():
            break
    if not plan.candidates and not notes:
        notes.append("no providers are configured")
    reason = shorten("no provider could take the request: " + "; ".join(notes), FAILURE_MESSAGE_MAX)
    fixes += [cooling[provider.name].fix for provider in plan.cooling if provider.name in cooling]
    fixes += [fix_sentence(provider.config, provider.default_model, Problem.NO_KEY) for provider in plan.no_key]
    fix = "\n".join(dict.fromkeys(fix for fix in fixes if fix))
    raise NoProviderAvailable(reason, failed, fix=fix, budget=over_budget)
