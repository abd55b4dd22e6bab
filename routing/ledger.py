"""Ledger rows: one `LedgerEntry` per attempt at a provider, priced when it is built.

`Attempt` holds what every row of one attempt shares (who asked, which provider and model, why
it was tried, when it started, its idempotency key); `started_entry`, `success_entry` and
`failure_entry` build the row, unsaved, with its cost and baseline cost fixed from the prices in
force when the attempt started.

Every call is in the ledger, even one whose caller dies during it: `attempt_start` inserts the
row as `started` (estimated prompt, no completion, priced so) in its own short write before the
call, and `attempt_complete` turns it into the success or the failure afterwards. A started row
whose caller is gone becomes `unknown` (`attempts_mark_unknown`): the call may have been billed,
so it keeps its estimated cost rather than vanishing. The router and `check_providers` both
record their calls this way.

Idempotency keys: `<request key>:attempt:<n>`, unique. A run's request key is
`run:<id>:claim:<claim token>` (agents.execution), so a redelivered run (a new claim) gets new
rows while the same attempt written twice stays one row; other callers get `route:<uuid>` or
`check:<uuid>`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.db.models import Field

from routing import pricing
from routing.models import UNFINISHED_OUTCOMES, CallOutcome, LedgerEntry
from routing.plan import Candidate
from routing.providers.base import Completion, ProviderError
from routing.table import RoutingTable
from routing.tokens import estimate_prompt_tokens, estimate_text_tokens

REASON_MAX = LedgerEntry._meta.get_field("reason").max_length
ENDPOINT_MAX = LedgerEntry._meta.get_field("endpoint").max_length
CLIENT_MAX = LedgerEntry._meta.get_field("client").max_length


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
    team_id: int | None = None
    api_key_id: int | None = None
    endpoint: str = ""
    client: str = ""
    run_id: int | None = None
    key: str = ""  # the request's idempotency key; empty for no key

    @property
    def idempotency_key(self) -> str | None:
        return f"{self.key}:attempt:{self.number}" if self.key else None

    def started_entry(self, *, messages: Iterable[Mapping[str, str]]) -> LedgerEntry:
        """The row written before the call: what it costs if only the prompt was billed, flagged as estimated."""
        return self._entry(
            outcome=CallOutcome.STARTED,
            latency_ms=0,
            prompt_tokens=estimate_prompt_tokens(messages),
            estimated=True,
            # No baseline: an attempt whose outcome is unknown books no savings.
            with_baseline=False,
        )

    def success_entry(self, completion: Completion, *, messages: Iterable[Mapping[str, str]]) -> LedgerEntry:
        """The row for a completion: the provider's own counts, or offline estimates flagged as such."""
        prompt_tokens, completion_tokens = completion.prompt_tokens, completion.completion_tokens
        return self._entry(
            outcome=CallOutcome.SUCCESS,
            latency_ms=completion.latency_ms,
            prompt_tokens=estimate_prompt_tokens(messages) if prompt_tokens is None else prompt_tokens,
            completion_tokens=estimate_text_tokens(completion.text) if completion_tokens is None else completion_tokens,
            cache_write_tokens=completion.cache_write_tokens or 0,
            cache_read_tokens=completion.cache_read_tokens or 0,
            estimated=prompt_tokens is None or completion_tokens is None,
            ttft_ms=completion.ttft_ms,
            finish_reason=completion.finish_reason or "",
        )

    def failure_entry(self, error: ProviderError, *, latency_ms: int) -> LedgerEntry:
        return self._entry(
            outcome=CallOutcome.TRANSIENT if error.transient else CallOutcome.PERMANENT,
            latency_ms=latency_ms,
            error=error.message,
            problem=error.problem or "",
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

    def discarded(self, entry: LedgerEntry) -> LedgerEntry:
        """A success whose answer its caller no longer wanted (cancelled as it arrived): the real usage
        and cost stay, the outcome says cancelled and there is no baseline, so it saved nothing."""
        entry.outcome = CallOutcome.CANCELLED
        entry.error = "the answer arrived after the caller cancelled"
        entry.baseline_price_id, entry.baseline_cost_usd = None, None
        return entry

    def _entry(
        self,
        *,
        outcome: str,
        latency_ms: int,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cache_write_tokens: int = 0,
        cache_read_tokens: int = 0,
        estimated: bool = False,
        ttft_ms: int | None = None,
        error: str = "",
        problem: str = "",
        finish_reason: str = "",
        with_baseline: bool = True,
    ) -> LedgerEntry:
        provider = self.candidate.provider
        model = provider.models.get(self.candidate.model)
        # The prices in force when the call started: a later price change never rewrites this row.
        price = model.price_at(self.started) if model else None
        baseline_model = self.table.baseline_for(model)  # an embedding's is a cloud embedding model
        baseline = baseline_model.price_at(self.started) if baseline_model and with_baseline else None
        tokens = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "cache_write_tokens": cache_write_tokens,
            "cache_read_tokens": cache_read_tokens,
        }
        return LedgerEntry(
            created_at=self.started,
            provider_id=provider.id,
            model_name=self.candidate.model,
            is_local=provider.is_local,
            outcome=outcome,
            error=error,
            problem=problem,
            reason=shorten(self.reason, REASON_MAX),
            attempt=self.number,
            **tokens,
            tokens_estimated=estimated,
            latency_ms=max(0, latency_ms),
            ttft_ms=ttft_ms,
            finish_reason=finish_reason[:40],
            price_id=price.id if price else None,
            cost_usd=pricing.cost(price, **tokens),
            baseline_price_id=baseline.id if baseline else None,
            # What the same tokens would have cost on the baseline model, its cache prices included.
            baseline_cost_usd=pricing.cost(baseline, **tokens),
            agent=self.agent,
            user_id=self.user_id,
            team_id=self.team_id,
            api_key_id=self.api_key_id,
            endpoint=self.endpoint[:ENDPOINT_MAX],
            client=self.client[:CLIENT_MAX],
            run_id=self.run_id,
            idempotency_key=self.idempotency_key,
        )


# What completing an attempt writes over its started row; the rest (who, what, when, why) stays.
COMPLETED_FIELDS = (
    "outcome",
    "error",
    "problem",
    "prompt_tokens",
    "completion_tokens",
    "cache_write_tokens",
    "cache_read_tokens",
    "tokens_estimated",
    "latency_ms",
    "ttft_ms",
    "finish_reason",
    "cost_usd",
    "baseline_price_id",
    "baseline_cost_usd",
    "reserved_usd",  # a completed call holds no reservation: its cost is known (routing.budget)
)
_COMPLETED = [LedgerEntry._meta.get_field(name) for name in COMPLETED_FIELDS]


def attempt_start(
    *,
    attempt: Attempt,
    messages: Iterable[Mapping[str, str]],
    reserved_usd: Decimal | None = None,
    durable: bool = True,
) -> LedgerEntry:
    """Insert the attempt's `started` row, before the call, as one short write of its own.

    Call it outside any transaction: the row must be committed before the call starts, or a
    caller killed during the call leaves nothing. Writing the same attempt again (same key)
    returns the row already there instead of inserting a second one. `reserved_usd`: the call's
    worst-case cost, held against its user's cloud budget until the row is completed.
    `durable=False`: committed without waiting for the disk (see attempt_complete).
    """
    entry = attempt.started_entry(messages=messages)
    entry.reserved_usd = reserved_usd
    if entry.idempotency_key is None:
        entry.save(force_insert=True)
        return entry
    entry.pk = _insert_once(entry, durable=durable)
    return entry


def _insert_once(entry: LedgerEntry, *, durable: bool) -> int:
    sql, fields = _insert_sql()
    if not durable and _may_commit_lazily():
        sql += _LAZY_COMMIT
    params = [field.get_db_prep_save(getattr(entry, field.attname), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


@functools.cache
def _insert_sql() -> tuple[str, list[Field]]:
    # One statement in autocommit, on every run's path: bulk_create(update_conflicts=True) would
    # wrap the same INSERT in BEGIN ... COMMIT, three round trips instead of one. On a conflict the
    # no-op update makes RETURNING give the id of the row already there.
    fields = [field for field in LedgerEntry._meta.concrete_fields if not field.primary_key]
    quote = connection.ops.quote_name
    key = quote("idempotency_key")
    sql = (
        f"INSERT INTO {quote(LedgerEntry._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(fields))}) "
        f"ON CONFLICT ({key}) DO UPDATE SET {key} = EXCLUDED.{key} RETURNING {quote('id')}"
    )
    return sql, fields


def attempt_complete(*, entry: LedgerEntry, durable: bool = True) -> bool:
    """Write the finished attempt (`entry`, built by success_entry or failure_entry with the started
    row's pk) over its started or unknown row: one UPDATE. False when it was completed already.

    `durable=False`, outside any transaction: the write commits without waiting for PostgreSQL to
    flush it to disk (synchronous_commit off for it alone; the flush took 0.2-3.6 ms a write on the
    shared 2-core test machine). It is visible at once and survives the caller's death; only a
    crash of the database server itself (or its machine) within ~0.6 s (3 x wal_writer_delay) can
    lose it. The gateway writes both of a call's rows so (RouteRequest.durable); the agents' runs
    and cloud reservations (routing.budget) wait for the disk.
    """
    params = [field.get_db_prep_save(getattr(entry, field.attname), connection) for field in _COMPLETED]
    sql = _complete_sql()
    if not durable and _may_commit_lazily():
        sql += _LAZY_COMMIT
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, entry.pk, *UNFINISHED_OUTCOMES])
        return cursor.rowcount == 1


# One statement in autocommit is its own transaction: SET LOCAL after it, in the same message,
# still holds when that transaction commits, and the statement's own result comes first.
_LAZY_COMMIT = "; SET LOCAL synchronous_commit TO OFF"


def _may_commit_lazily() -> bool:
    # PostgreSQL with client-side binding (Django's default: the simple query protocol, which takes
    # two statements in one message), outside a transaction (whose every write SET LOCAL would reach).
    return (
        connection.vendor == "postgresql"
        and not connection.settings_dict["OPTIONS"].get("server_side_binding")
        and connection.get_autocommit()
        and not connection.in_atomic_block
    )


@functools.cache
def _complete_sql() -> str:
    # Plain SQL for the same reason as the insert: it is on every run's path, and the queryset
    # UPDATE cost more Python than the rest of the attempt's bookkeeping together.
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in _COMPLETED)
    return (
        f"UPDATE {quote(LedgerEntry._meta.db_table)} SET {assignments} "  # noqa: S608
        f"WHERE {quote('id')} = %s AND {quote('outcome')} IN (%s, %s)"
    )


def attempts_mark_unknown(*, run_id: int | None = None, started_before: datetime | None = None) -> int:
    """Started rows whose caller is gone become `unknown`: those of a run just taken over (its old
    executor lost the run), or any started before `started_before` (no call lasts that long).
    They keep the started row's estimated prompt cost. Returns how many rows changed."""
    if run_id is None and started_before is None:
        raise ValueError("name the run or the time before which attempts started")
    rows = LedgerEntry.objects.filter(outcome=CallOutcome.STARTED)
    if run_id is not None:
        rows = rows.filter(run_id=run_id)
    if started_before is not None:
        rows = rows.filter(created_at__lt=started_before)
    return rows.update(outcome=CallOutcome.UNKNOWN)
