"""Ledger rows: one `LedgerEntry` per attempt at a provider, priced when it is built.

`Attempt` holds what every row of one attempt shares (who asked, which provider and model, why
it was tried, when it started); `success_entry` and `failure_entry` build the row, unsaved, with
its cost and baseline cost fixed from the prices in force when the attempt started. The router
saves them; `check_providers` records its test generations with the same builder.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from routing import pricing
from routing.models import CallOutcome, LedgerEntry
from routing.plan import Candidate
from routing.providers.base import Completion, ProviderError
from routing.table import RoutingTable
from routing.tokens import estimate_prompt_tokens, estimate_text_tokens

REASON_MAX = LedgerEntry._meta.get_field("reason").max_length


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Attempt:
    """What every ledger row of one attempt shares."""

    table: RoutingTable
    candidate: Candidate
    number: int  # 1 for the first provider tried for this request
    reason: str
    started: datetime
    agent: str = ""
    user_id: int | None = None
    run_id: int | None = None

    def success_entry(self, completion: Completion, *, messages: Iterable[Mapping[str, str]]) -> LedgerEntry:
        """The row for a completion: the provider's own counts, or offline estimates flagged as such."""
        prompt_tokens, completion_tokens = completion.prompt_tokens, completion.completion_tokens
        return self._entry(
            outcome=CallOutcome.SUCCESS,
            latency_ms=completion.latency_ms,
            prompt_tokens=estimate_prompt_tokens(messages) if prompt_tokens is None else prompt_tokens,
            completion_tokens=estimate_text_tokens(completion.text) if completion_tokens is None else completion_tokens,
            estimated=prompt_tokens is None or completion_tokens is None,
            ttft_ms=completion.ttft_ms,
        )

    def failure_entry(self, error: ProviderError, *, latency_ms: int) -> LedgerEntry:
        return self._entry(
            outcome=CallOutcome.TRANSIENT if error.transient else CallOutcome.PERMANENT,
            latency_ms=latency_ms,
            error=error.message,
        )

    def cancelled_entry(self, *, partial: str, messages: Iterable[Mapping[str, str]], latency_ms: int) -> LedgerEntry:
        """The row for a call its caller cut mid-stream: the tokens until then, estimated (the usage
        never came), and no baseline: a cancelled call saved nothing."""
        entry = self._entry(
            outcome=CallOutcome.CANCELLED,
            latency_ms=latency_ms,
            prompt_tokens=estimate_prompt_tokens(messages),
            completion_tokens=estimate_text_tokens(partial) if partial else 0,
            estimated=True,
            error=f"cancelled by the caller mid-stream ({len(partial)} characters received)",
        )
        entry.baseline_price_id, entry.baseline_cost_usd = None, None
        return entry

    def _entry(
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
        # The prices in force when the call started: a later price change never rewrites this row.
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
            reason=shorten(self.reason, REASON_MAX),
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
            agent=self.agent,
            user_id=self.user_id,
            run_id=self.run_id,
        )
