"""Monthly cloud budgets: what the calls made for one user may cost in the cloud per calendar month (UTC).

A user's limit is their `CloudBudget.monthly_usd`, else the routing policy's
`monthly_cloud_budget_usd`. Their spend this month is their cloud ledger rows since the month
began: completed rows at their cost, and rows still holding a reservation at that reservation
(calls in flight, and calls whose outcome is unknown: those may have been billed in full).

Before a cloud call for a user, `attempt_reserve` reserves the call's worst case (the estimated
prompt at the input price, or the cache-write price when that is higher, plus max_tokens at the
output price) on its started ledger row, in one transaction under a lock on the user's
CloudBudget row. Two workers reserving for the same user take turns, and the second sees the
first's reservation; so reservations never pass the limit, and the spend passes it only by what
a call cost beyond its worst case (a prompt its estimate undercounted): at most one call's worth.
Completing the row settles it (`attempt_complete` writes the real cost and clears the reservation).

Local calls are never limited; nor are calls made for no user (check_providers). A team budget
would be one more row kind that the same transaction locks and checks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from core import months
from core.formatting import money
from routing import pricing
from routing.ledger import Attempt, attempt_start
from routing.models import CallOutcome, CloudBudget, LedgerEntry
from routing.selectors import routing_policy
from routing.table import PriceInfo
from routing.tokens import estimate_prompt_tokens

ZERO = Decimal(0)


@dataclass(frozen=True)
class BudgetStatus:
    month: dt.date  # its first day
    limit_usd: Decimal
    spent_usd: Decimal  # completed calls, and calls whose outcome is unknown at their worst case
    reserved_usd: Decimal  # calls in flight, at their worst case

    @property
    def remaining_usd(self) -> Decimal:
        return max(ZERO, self.limit_usd - self.spent_usd - self.reserved_usd)


class BudgetExceeded(Exception):
    """A cloud call that could take its user past this month's budget: it was not made."""

    def __init__(self, status: BudgetStatus, cost_usd: Decimal) -> None:
        super().__init__(
            f"cloud budget: {money(status.remaining_usd)} of {money(status.limit_usd)} left this month, "
            f"this call could cost {money(cost_usd)}"
        )
        self.status = status
        self.cost_usd = cost_usd


def worst_cost(price: PriceInfo | None, *, prompt_tokens: int, max_tokens: int) -> Decimal:
    """The most a call can cost: every prompt token at the dearer of the input and cache-write
    prices, and the longest answer allowed. No price in force: unknown, so nothing is held."""
    if price is None:
        return ZERO
    dearer_write = price.cache_write_per_mtok is not None and price.cache_write_per_mtok > price.input_per_mtok
    return (
        pricing.cost(
            price,
            prompt_tokens=prompt_tokens,
            completion_tokens=max_tokens,
            cache_write_tokens=prompt_tokens if dearer_write else 0,
        )
        or ZERO
    )


def _limit(budget: CloudBudget | None) -> Decimal:
    if budget is not None and budget.monthly_usd is not None:
        return budget.monthly_usd
    return routing_policy().monthly_cloud_budget_usd


def _status(*, user_id: int, budget: CloudBudget | None, now: dt.datetime) -> BudgetStatus:
    start = months.month_start(now)
    rows = LedgerEntry.objects.filter(user_id=user_id, is_local=False, created_at__gte=start)
    in_flight = Q(outcome=CallOutcome.STARTED)
    totals = rows.aggregate(
        spent=Sum(Coalesce("reserved_usd", "cost_usd"), filter=~in_flight),
        reserved=Sum("reserved_usd", filter=in_flight),
    )
    return BudgetStatus(
        month=start.date(),
        limit_usd=_limit(budget),
        spent_usd=totals["spent"] or ZERO,
        reserved_usd=totals["reserved"] or ZERO,
    )


def budget_status(*, user_id: int, now: dt.datetime | None = None) -> BudgetStatus:
    """The user's cloud budget this month: limit, spent, reserved, remaining (a read; writes nothing)."""
    budget = CloudBudget.objects.filter(user_id=user_id).first()
    return _status(user_id=user_id, budget=budget, now=now or timezone.now())


def _locked_budget(user_id: int) -> CloudBudget:
    """The user's budget row, locked until the transaction ends; created (no limit of its own) if missing."""
    budget = CloudBudget.objects.select_for_update().filter(user_id=user_id).first()
    if budget is None:
        CloudBudget.objects.bulk_create([CloudBudget(user_id=user_id)], ignore_conflicts=True)
        budget = CloudBudget.objects.select_for_update().get(user_id=user_id)
    return budget


def attempt_reserve(*, attempt: Attempt, messages: Iterable[Mapping[str, str]], max_tokens: int) -> LedgerEntry:
    """`attempt_start` for a cloud call made for a user: its started row holds the call's worst
    case against the user's budget. Raises BudgetExceeded (and writes nothing) when the worst case
    does not fit in what is left this month."""
    if attempt.user_id is None:
        raise ValueError("only a call made for a user has a budget")
    model = attempt.candidate.provider.models.get(attempt.candidate.model)
    price = model.price_at(attempt.started) if model is not None else None
    messages = list(messages)
    worst = worst_cost(price, prompt_tokens=estimate_prompt_tokens(messages), max_tokens=max_tokens)
    with transaction.atomic():
        budget = _locked_budget(attempt.user_id)
        status = _status(user_id=attempt.user_id, budget=budget, now=attempt.started)
        if worst > status.remaining_usd or (worst == ZERO and status.remaining_usd == ZERO):
            raise BudgetExceeded(status, worst)
        return attempt_start(attempt=attempt, messages=messages, reserved_usd=worst)
