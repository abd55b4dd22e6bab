"""The router: one call in, a completion from the best provider available out, a ledger row per attempt.

Interface (the agents app and the tests rely on it):

    route(request: RouteRequest, *, on_success=None) -> RouteResult

- candidates (`plan_route`, a pure function over the cached routing table: no query, no I/O):
  first matching enabled rule, else providers by priority; filtered by enabled, capability,
  cloud allowed, API key present, context window and health (cool-down); local first, unless
  the rule escalates the request (estimated prompt above `escalate_above_tokens`, or a
  capability in `escalate_capabilities`), which puts cloud first. An Ollama candidate whose model
  is not installed on the host (per /api/tags, cached briefly) is skipped when its turn comes.
- each attempt writes one LedgerEntry (success or failure), outside any long transaction; the
  provider call itself is never made inside a transaction.
- `on_success(result)` is called inside the same database transaction that inserts the
  successful attempt's ledger row, so a caller can store the output atomically with the charge
  (a worker killed before that commit leaves neither; after it, both).
- raises NoProviderAvailable(reason, attempts) when every candidate failed or none fits.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from routing import health, pricing
from routing.models import CallOutcome, LedgerEntry, ProviderKind
from routing.providers import get_adapter
from routing.providers.base import ChatRequest, Completion, ProviderError
from routing.table import ProviderInfo, RoutingTable, RuleInfo, bump_version, current_table
from routing.tokens import estimate_prompt_tokens, estimate_text_tokens

logger = logging.getLogger(__name__)

INSTALLED_MODELS_TTL_S = 30.0
REASON_MAX = 300  # LedgerEntry.reason


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


@dataclass
class RouteResult:
    completion: Completion
    provider: str
    model: str
    is_local: bool
    reason: str
    attempts: list = field(default_factory=list)  # the LedgerEntry rows written, in order
    entry: object | None = None  # the successful LedgerEntry


class NoProviderAvailable(Exception):
    def __init__(self, reason: str, attempts: list | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts or []


@dataclass(frozen=True)
class Candidate:
    provider: ProviderInfo
    model: str
    reason: str  # why it is in the list, where it is


@dataclass(frozen=True)
class Plan:
    prompt_tokens: int
    candidates: tuple[Candidate, ...] = ()
    skipped: tuple[str, ...] = ()  # "<provider>: <why not>", for the failure message
    rule: RuleInfo | None = None
    refused: str = ""  # set when the request itself cannot be routed


def _escalation(rule: RuleInfo | None, *, capability: str, prompt_tokens: int) -> str:
    if rule is None:
        return ""
    if rule.escalate_above_tokens is not None and prompt_tokens > rule.escalate_above_tokens:
        return f"escalated: ~{prompt_tokens:,} prompt tokens > {rule.escalate_above_tokens:,}"
    if capability and capability in rule.escalate_capabilities:
        return f"escalated: {capability} is marked complex"
    return ""


def _why_not(
    provider: ProviderInfo,
    model: str,
    *,
    capability: str,
    prompt_tokens: int,
    rule: RuleInfo | None,
    cooling: Mapping[str, health.Cooldown],
    has_key: Callable[[str], bool],
    now: float,
) -> str:
    """Why this provider cannot take the request, or "" when it can."""
    if not provider.enabled:
        return "disabled"
    if rule is not None and not rule.allow_cloud and not provider.is_local:
        return f"cloud not allowed by rule {rule.name}"
    if not provider.offers(capability):
        return f"does not offer {capability}"
    if provider.api_key_env and not has_key(provider.api_key_env):
        return f"no key ({provider.api_key_env} not set)"
    info = provider.models.get(model)
    if info is not None and prompt_tokens > info.context_window:
        return f"~{prompt_tokens:,} prompt tokens exceed {model}'s context of {info.context_window:,}"
    cooldown = cooling.get(provider.name)
    if cooldown is not None and cooldown.remaining(now) > 0:
        return f"cooling down for {cooldown.remaining(now):.0f} s more after {cooldown.failures} transient failures"
    return ""


def plan_route(
    table: RoutingTable,
    *,
    capability: str = "",
    agent: str = "",
    prompt_tokens: int,
    max_prompt_tokens: int | None = None,
    cooling: Mapping[str, health.Cooldown] | None = None,
    has_key: Callable[[str], bool] = lambda name: bool(os.environ.get(name)),
    now: float | None = None,
) -> Plan:
    """The ordered candidates for one request: pure, over the in-memory table."""
    if max_prompt_tokens is not None and prompt_tokens > max_prompt_tokens:
        return Plan(
            prompt_tokens,
            refused=f"prompt is ~{prompt_tokens:,} tokens, over this request's limit of {max_prompt_tokens:,}",
        )
    rule = next(
        (r for r in table.rules if r.matches(capability=capability, agent=agent, prompt_tokens=prompt_tokens)), None
    )
    providers = (
        [table.by_name[name] for name in rule.provider_names] if rule and rule.provider_names else table.providers
    )
    escalated = _escalation(rule, capability=capability, prompt_tokens=prompt_tokens)
    # Stable sort: the rule's (or priority) order within each group; local first unless escalated.
    ordered = sorted(providers, key=lambda p: p.is_local if escalated else not p.is_local)
    candidates, skipped = [], []
    clock = time.time() if now is None else now
    for provider in ordered:
        model = provider.model_for(capability)
        why_not = _why_not(
            provider,
            model,
            capability=capability,
            prompt_tokens=prompt_tokens,
            rule=rule,
            cooling=cooling or {},
            has_key=has_key,
            now=clock,
        )
        if why_not:
            skipped.append(f"{provider.name}: {why_not}")
            continue
        where = "local" if provider.is_local else "cloud"
        # A rule is named where it decided something: its own provider order, or an escalation.
        if rule and rule.provider_names:
            reason = f"rule {rule.name}, {where}"
        else:
            reason = f"priority {provider.priority}, {where}"
        if escalated and not provider.is_local:
            reason = f"{escalated} (rule {rule.name}); {reason}"
        candidates.append(Candidate(provider, model, reason))
    return Plan(prompt_tokens, tuple(candidates), tuple(skipped), rule)


class _InstalledModels:
    """What each Ollama host has pulled (GET /api/tags), remembered briefly per process."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[float, frozenset[str] | None]] = {}
        self.lock = threading.Lock()

    def has(self, provider: ProviderInfo, model: str) -> bool:
        now = time.monotonic()
        with self.lock:
            expires, names = self.seen.get(provider.name, (0.0, None))
        if now >= expires:
            names = self._fetch(provider)
            with self.lock:
                self.seen[provider.name] = (now + INSTALLED_MODELS_TTL_S, names)
        # Unknown (the host did not answer): let the call itself find out, and count the failure.
        return names is None or _ollama_name(model) in names

    @staticmethod
    def _fetch(provider: ProviderInfo) -> frozenset[str] | None:
        try:
            return frozenset(_ollama_name(name) for name in get_adapter(provider.config).list_models())
        except ProviderError as error:
            logger.info("could not list the models on %s: %s", provider.name, error.message)
            return None

    def forget(self) -> None:
        with self.lock:
            self.seen.clear()


def _ollama_name(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


installed_models = _InstalledModels()


def _short(text: str, limit: int = REASON_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Attempt:
    """Everything one attempt's ledger row needs (check_providers records its test calls with it too)."""

    table: RoutingTable
    request: RouteRequest
    candidate: Candidate
    number: int
    reason: str
    started: datetime

    def entry(
        self,
        *,
        outcome: str,
        latency_ms: int,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        estimated: bool = False,
        ttft_ms: int | None = None,
        error: str = "",
    ) -> LedgerEntry:
        provider = self.candidate.provider
        model = provider.models.get(self.candidate.model)
        price = model.price_at(self.started) if model else None
        baseline_model = self.table.baseline()
        baseline = baseline_model.price_at(self.started) if baseline_model else None
        return LedgerEntry(
            created_at=self.started,
            provider_id=provider.id,
            model_name=self.candidate.model,
            is_local=provider.is_local,
            outcome=outcome,
            error=error,
            reason=_short(self.reason),
            attempt=self.number,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            tokens_estimated=estimated,
            latency_ms=max(0, latency_ms),
            ttft_ms=ttft_ms,
            price_id=price.id if price else None,
            cost_usd=pricing.cost(price, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
            baseline_price_id=baseline.id if baseline else None,
            baseline_cost_usd=pricing.cost(baseline, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
            agent=self.request.agent,
            user_id=self.request.user_id,
            run_id=self.request.run_id,
        )

    def success_entry(self, completion: Completion) -> LedgerEntry:
        """The row for a completion: the provider's own counts, or offline estimates flagged as such."""
        prompt_tokens, completion_tokens = completion.prompt_tokens, completion.completion_tokens
        return self.entry(
            outcome=CallOutcome.SUCCESS,
            latency_ms=completion.latency_ms,
            prompt_tokens=estimate_prompt_tokens(self.request.messages) if prompt_tokens is None else prompt_tokens,
            completion_tokens=estimate_text_tokens(completion.text) if completion_tokens is None else completion_tokens,
            estimated=prompt_tokens is None or completion_tokens is None,
            ttft_ms=completion.ttft_ms,
        )

    def failure_entry(self, error: ProviderError, latency_ms: int) -> LedgerEntry:
        return self.entry(
            outcome=CallOutcome.TRANSIENT if error.transient else CallOutcome.PERMANENT,
            latency_ms=latency_ms,
            error=error.message,
        )


def _chat_request(request: RouteRequest, model: str) -> ChatRequest:
    return ChatRequest(
        model=model,
        messages=request.messages,
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        stream=request.stream,
    )


def _call(
    candidate: Candidate, request: RouteRequest, *, wait_s: float
) -> tuple[Completion | ProviderError, datetime, int]:
    """One provider call inside one of its slots: the completion or the error, when it started, its wall time in ms."""
    provider = candidate.provider
    hold_s = provider.config.connect_timeout_s + provider.config.request_timeout_s
    with health.slot(provider.name, limit=provider.max_in_flight, hold_s=hold_s, wait_s=wait_s):
        started_at, started = timezone.now(), time.perf_counter()
        try:
            outcome: Completion | ProviderError = get_adapter(provider.config).chat(
                _chat_request(request, candidate.model)
            )
        except ProviderError as error:
            outcome = error
        return outcome, started_at, round((time.perf_counter() - started) * 1000)


def _succeed(
    attempt: Attempt, completion: Completion, attempts: list, on_success: Callable[[RouteResult], None] | None
) -> RouteResult:
    entry = attempt.success_entry(completion)
    provider = attempt.candidate.provider
    result = RouteResult(
        completion=completion,
        provider=provider.name,
        model=attempt.candidate.model,
        is_local=provider.is_local,
        reason=entry.reason,
        attempts=[*attempts, entry],
        entry=entry,
    )
    with transaction.atomic():
        entry.save(force_insert=True)
        if on_success is not None:
            on_success(result)
    return result


def _fail(attempt: Attempt, error: ProviderError, latency_ms: int, policy_table: RoutingTable) -> LedgerEntry:
    entry = attempt.failure_entry(error, latency_ms)
    entry.save(force_insert=True)
    if error.transient:
        policy = policy_table.policy
        health.record_transient_failure(
            attempt.candidate.provider.name,
            failures_before_cooldown=policy.failures_before_cooldown,
            cooldown_seconds=policy.cooldown_seconds,
        )
    return entry


def _refuse_inside_a_transaction() -> None:
    # A provider call takes seconds to minutes: inside a transaction it would hold row locks and a
    # connection that long. (A test case's own wrapping transaction is not the caller's.)
    if any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks):
        raise RuntimeError("route() calls providers and must not be called inside a transaction")


def route(request: RouteRequest, *, on_success: Callable[[RouteResult], None] | None = None) -> RouteResult:
    _refuse_inside_a_transaction()
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
    attempts: list[LedgerEntry] = []
    fallback = ""  # what went wrong with the previous candidate
    for candidate in plan.candidates:
        provider = candidate.provider
        if provider.kind == ProviderKind.OLLAMA and not installed_models.has(provider, candidate.model):
            fallback = f"{provider.name} has no {candidate.model} installed"
            notes.append(f"{provider.name}: {candidate.model} not installed")
            continue
        try:
            outcome, started_at, latency_ms = _call(candidate, request, wait_s=table.policy.slot_wait_seconds)
        except health.NoFreeSlot as busy:
            fallback = str(busy)
            notes.append(f"{provider.name}: {busy}")
            continue
        attempt = Attempt(
            table=table,
            request=request,
            candidate=candidate,
            number=len(attempts) + 1,
            reason=f"fallback: {fallback}; {candidate.reason}" if fallback else candidate.reason,
            started=started_at,
        )
        if isinstance(outcome, Completion):
            health.record_success(provider.name)
            return _succeed(attempt, outcome, attempts, on_success)
        attempts.append(_fail(attempt, outcome, latency_ms, table))
        kind = "transient" if outcome.transient else "permanent"
        fallback = f"{provider.name} {outcome.message}"
        notes.append(f"{provider.name}: {outcome.message} ({kind})")
    if not plan.candidates and not notes:
        notes.append("no providers are configured")
    raise NoProviderAvailable(_short("no provider could take the request: " + "; ".join(notes), 2000), attempts)


def invalidate_routing_cache() -> None:
    """Call after any change to providers, models, prices, rules or the policy (admin, load_routing):
    every process drops its cached routing table before its next decision (within ~1 s)."""
    bump_version()
    installed_models.forget()
    # Bump again once the change is committed: a worker that reloaded in between saw the old rows.
    transaction.on_commit(bump_version)
