"""Checking one provider for real: list its models, one short generation (an embedding for a provider
whose default model embeds), its speed and saving.

`provider_check` is what `manage.py check_providers` runs for every enabled provider and what the
dashboard's "Test" button runs for one. The verdict uses the status words and fix sentences of the
dashboard, the API and the admin (`routing.selectors.provider_state`). The test generation is
metered like any other call: it leaves a ledger row (agent `check_providers`), so it is a service.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from django.utils import timezone

from core.formatting import duration_ms, money_json
from routing.ledger import Attempt, attempt_complete, attempt_start
from routing.models import CallOutcome, LedgerEntry
from routing.plan import Candidate
from routing.providers import get_adapter
from routing.providers.base import ChatRequest, Completion, EmbedRequest, ProviderError, api_key_present
from routing.providers.http import HTTPAdapter
from routing.selectors import LastCall, ProviderState, Readiness, provider_state
from routing.table import ProviderInfo, RoutingTable

AGENT = "check_providers"
PROMPT = [{"role": "user", "content": "Reply with one short sentence: are you ready to help?"}]
MAX_TOKENS = 16


@dataclass
class ProviderCheck:
    provider: str
    kind: str
    local: bool
    priority: int
    status: ProviderState = ProviderState.UP
    error: str = ""  # the status's detail: what failed, or the variable that is not set
    fix: str = ""  # what is wrong and what to do, as one sentence (routing.readiness)
    models: list[str] = field(default_factory=list)
    model: str = ""
    latency_ms: int | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_per_s: float | None = None
    cost_usd: str | None = None
    baseline_cost_usd: str | None = None
    saving_pct: float | None = None  # of what the baseline model would have cost for the same tokens

    def verdict(self, readiness: Readiness) -> None:
        self.status, self.error, self.fix = readiness

    @property
    def summary(self) -> str:
        """The result in one line, for the dashboard's Test button."""
        if self.status != ProviderState.UP:
            return f"{self.provider}: {self.status}: {self.fix or self.error}"
        speed = "" if self.tokens_per_s is None else f"{self.tokens_per_s:g} tokens/s, "
        return (
            f"{self.provider}: up, {speed}{self.completion_tokens} tokens in {duration_ms(self.latency_ms)}"
            f" from {self.model}"
        )


def provider_check(
    table: RoutingTable, provider: ProviderInfo, *, max_tokens: int = MAX_TOKENS, user_id: int | None = None
) -> ProviderCheck:
    """Check one provider for real; `user_id` names who asked (the ledger row's user), if a person did."""
    check = ProviderCheck(
        provider.name, provider.kind, provider.is_local, provider.priority, model=provider.default_model
    )
    readiness = _verdict(provider, last_call=None)
    if readiness.status in (ProviderState.NO_KEY, ProviderState.DISABLED):
        check.verdict(readiness)
        return check
    try:
        adapter = get_adapter(provider.config)
        check.models = sorted(adapter.list_models())
    except ProviderError as error:
        check.verdict(_verdict(provider, last_call=_failed_now(error)))
        return check
    attempt = Attempt(
        table=table,
        candidate=Candidate(provider, provider.default_model, AGENT),
        number=1,
        reason=AGENT,
        started=timezone.now(),
        agent=AGENT,
        user_id=user_id,
        key=f"check:{uuid.uuid4().hex}",  # a test call is tied to no run: a key of its own
    )
    started_row = attempt_start(attempt=attempt, messages=PROMPT)  # in the ledger even if we die during it
    started = time.perf_counter()
    try:
        completion = _generate(adapter, provider, max_tokens=max_tokens)
    except ProviderError as error:
        entry = attempt.failure_entry(error, latency_ms=round((time.perf_counter() - started) * 1000))
    else:
        entry = attempt.success_entry(completion, messages=PROMPT)
    entry.pk = started_row.pk
    attempt_complete(entry=entry)
    check.verdict(_verdict(provider, last_call=LastCall(entry.created_at, entry.outcome, entry.error, entry.problem)))
    if check.status == ProviderState.UP:
        _fill_generation(check, entry)
    return check


def _generate(adapter: HTTPAdapter, provider: ProviderInfo, *, max_tokens: int) -> Completion:
    """The check's call: a short chat, or the prompt embedded when the default model is an embedding
    model (it answers nothing else), counted as a call with no completion tokens (routing.embedding)."""
    if not provider.embeds(provider.default_model):
        return adapter.chat(
            ChatRequest(model=provider.default_model, messages=PROMPT, max_tokens=max_tokens, temperature=0)
        )
    embedded = adapter.embed(EmbedRequest(model=provider.default_model, inputs=(PROMPT[0]["content"],)))
    return Completion(
        text="",
        model=embedded.model,
        prompt_tokens=embedded.prompt_tokens,
        completion_tokens=0,
        latency_ms=embedded.latency_ms,
        raw_usage=embedded.raw_usage,
    )


def _verdict(provider: ProviderInfo, *, last_call: LastCall | None) -> Readiness:
    # The check calls the provider itself, so a cool-down (the router skipping it for now) does not
    # decide its verdict: the answer it gets now does.
    return provider_state(
        config=provider.config,
        model=provider.default_model,
        enabled=provider.enabled,
        key_set=api_key_present(provider.api_key_env),
        cooldown_s=None,
        failures=None,
        last_call=last_call,
    )


def _failed_now(error: ProviderError) -> LastCall:
    outcome = CallOutcome.TRANSIENT if error.transient else CallOutcome.PERMANENT
    return LastCall(timezone.now(), outcome, error.message, error.problem or "")


def _fill_generation(check: ProviderCheck, entry: LedgerEntry) -> None:
    check.latency_ms = entry.latency_ms
    check.prompt_tokens, check.completion_tokens = entry.prompt_tokens, entry.completion_tokens
    if entry.latency_ms > 0:
        check.tokens_per_s = round(entry.completion_tokens / (entry.latency_ms / 1000), 1)
    cost, baseline = entry.cost_usd, entry.baseline_cost_usd
    check.cost_usd = money_json(cost)
    check.baseline_cost_usd = money_json(baseline)
    if cost is not None and baseline:
        check.saving_pct = float(((baseline - cost) / baseline * 100).quantize(Decimal("0.1")))
