"""Monthly cloud budgets: what cloud calls may cost per calendar month (UTC), at three scopes: the
caller's team, the user, and the API key the call came with. One rule at each scope.

Limits: a team's is `accounts.Team.monthly_cloud_budget_usd` and a key's
`accounts.ApiKey.monthly_cloud_budget_usd` (empty: no limit at that scope); a user's is their
`CloudBudget.monthly_usd`, else the routing policy's `monthly_cloud_budget_usd`, so every user has
one. A scope's spend this month is its cloud ledger rows since the month began (the rows carry the
user, team and key): completed rows at their cost, and rows still holding a reservation at that
reservation (calls in flight, and calls whose outcome is unknown: those may have been billed in full).

Before a cloud call for a user, `attempt_reserve` reserves the call's worst case (the estimated
prompt at the input price, or the cache-write price when that is higher, plus max_tokens at the
output price) on its started ledger row, in one transaction under a lock on each limited scope's
row (the Team, the user's CloudBudget, the ApiKey), taken in one fixed order (team, user, key) so
two reservations never wait on each other in a cycle. The worst case is reserved only if it fits
in every scope; otherwise BudgetExceeded names the scope that refused it and nothing is reserved.
Two workers reserving against one scope (two keys of one team) take turns, and the second sees the
first's reservation; so reservations never pass a limit, and the spend passes it only by what a
call cost beyond its worst case (a prompt its estimate undercounted): at most one call's worth.
Completing the row settles it (`attempt_complete` writes the real cost and clears the reservation).

The same transaction notices a scope whose use (spent and reserved, this call included) reaches
the policy's `budget_alert_share` of its limit: it records the month's BudgetAlert for the scope
(under the scope's lock, so once) and sends the email after the commit (routing.budget_alerts).

Local calls are never limited; nor are calls made for no user (check_providers).
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import ApiKey, Membership, Team
from core import months
from core.formatting import money
from routing import pricing
from routing.budget_alerts import budget_alert_send
from routing.ledger import Attempt, attempt_start
from routing.models import BudgetAlert, BudgetScope, CallOutcome, CloudBudget, LedgerEntry
from routing.table import PriceInfo, current_table
from routing.tokens import estimate_prompt_tokens

ZERO = Decimal(0)
# The ledger column that names a scope's rows.
_COLUMN = {BudgetScope.TEAM: "team_id", BudgetScope.USER: "user_id", BudgetScope.KEY: "api_key_id"}


@dataclass(frozen=True)
class Limit:
    """One scope's monthly limit: whose, and how much."""

    scope: BudgetScope
    scope_id: int
    name: str  # the team's name, the username, the key's prefix
    limit_usd: Decimal


@dataclass(frozen=True)
class BudgetStatus:
    month: dt.date  # its first day
    limit_usd: Decimal
    spent_usd: Decimal  # completed calls, and calls whose outcome is unknown at their worst case
    reserved_usd: Decimal  # calls in flight, at their worst case
    scope: BudgetScope = BudgetScope.USER
    scope_id: int = 0
    name: str = ""

    @property
    def used_usd(self) -> Decimal:
        return self.spent_usd + self.reserved_usd

    @property
    def remaining_usd(self) -> Decimal:
        return max(ZERO, self.limit_usd - self.used_usd)

    @property
    def label(self) -> str:
        """ "team platform", "user ana", "API key sy_AbCd1234"."""
        return f"{self.scope.label} {self.name}"

    def fits(self, cost_usd: Decimal) -> bool:
        """Whether a call that could cost this may be made. A call of no known cost still needs
        something left: a spent budget stops every cloud call."""
        remaining = self.remaining_usd
        return cost_usd <= remaining and not (cost_usd == ZERO and remaining == ZERO)

    def past_share(self, share: Decimal) -> bool:
        """At or past the alert share of its limit. A zero limit means "no cloud", not a budget to warn about."""
        return self.limit_usd > ZERO and self.used_usd >= share * self.limit_usd


class BudgetExceeded(Exception):
    """A cloud call that could take one of its budgets past this month's limit: it was not made."""

    def __init__(self, status: BudgetStatus, cost_usd: Decimal) -> None:
        super().__init__(
            f"{status.label}'s cloud budget: {money(status.remaining_usd)} of {money(status.limit_usd)} left "
            f"this month, this call could cost {money(cost_usd)}"
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


def _user_limit(own: Decimal | None) -> Decimal:
    return own if own is not None else current_table().policy.monthly_cloud_budget_usd


def _limits(*, team_id: int | None, user_id: int, api_key_id: int | None, lock: bool) -> list[Limit]:
    """The limited scopes of a call, team, user, key, in that order; an unlimited team or key is left out.

    With `lock`, each scope's row is locked for the rest of the transaction, in that order, one
    query each (an unlimited team or key matches no row, so it is not locked). Without, one query
    reads them all: this is on every gateway response (its budget headers)."""
    if not lock:
        return _read_limits(team_id=team_id, user_id=user_id, api_key_id=api_key_id)
    limits: list[Limit] = []
    if team_id is not None:
        teams = Team.objects.select_for_update(no_key=True).filter(pk=team_id, monthly_cloud_budget_usd__isnull=False)
        for name, limit in teams.values_list("name", "monthly_cloud_budget_usd"):
            limits.append(Limit(BudgetScope.TEAM, team_id, name, limit))
    username, own = _locked_user_budget(user_id)
    limits.append(Limit(BudgetScope.USER, user_id, username, _user_limit(own)))
    if api_key_id is not None:
        keys = ApiKey.objects.select_for_update(no_key=True)
        keys = keys.filter(pk=api_key_id, monthly_cloud_budget_usd__isnull=False)
        for prefix, limit in keys.values_list("prefix", "monthly_cloud_budget_usd"):
            limits.append(Limit(BudgetScope.KEY, api_key_id, prefix, limit))
    return limits


def _read_limits(*, team_id: int | None, user_id: int, api_key_id: int | None) -> list[Limit]:
    teams = Team.objects.filter(pk=team_id)
    keys = ApiKey.objects.filter(pk=api_key_id)
    row = (
        get_user_model()
        .objects.filter(pk=user_id)
        .annotate(
            own=F("cloud_budget__monthly_usd"),
            team_name=Subquery(teams.values("name")),
            team_limit=Subquery(teams.values("monthly_cloud_budget_usd")),
            key_prefix=Subquery(keys.values("prefix")),
            key_limit=Subquery(keys.values("monthly_cloud_budget_usd")),
        )
        .values_list("username", "own", "team_name", "team_limit", "key_prefix", "key_limit")
        .first()
    )
    username, own, team_name, team_limit, key_prefix, key_limit = row or ("", None, None, None, None, None)
    limits: list[Limit] = []
    if team_id is not None and team_limit is not None:
        limits.append(Limit(BudgetScope.TEAM, team_id, team_name, team_limit))
    limits.append(Limit(BudgetScope.USER, user_id, username, _user_limit(own)))
    if api_key_id is not None and key_limit is not None:
        limits.append(Limit(BudgetScope.KEY, api_key_id, key_prefix, key_limit))
    return limits


def _locked_user_budget(user_id: int) -> tuple[str, Decimal | None]:
    """(username, own limit) from the user's CloudBudget row, locked until the transaction ends;
    the row is created (no limit of its own) if missing: it is what reservations for the user lock."""
    budgets = CloudBudget.objects.select_for_update(no_key=True, of=("self",)).filter(user_id=user_id)
    row = budgets.values_list("user__username", "monthly_usd").first()
    if row is None:
        CloudBudget.objects.bulk_create([CloudBudget(user_id=user_id)], ignore_conflicts=True)
        row = budgets.values_list("user__username", "monthly_usd").get()
    return row


def _statuses(limits: Sequence[Limit], *, now: dt.datetime) -> list[BudgetStatus]:
    """Each limited scope's use this month: one query over the cloud rows of all of them."""
    start = months.month_start(now)
    if not limits:
        return []
    whose = [Q(**{_COLUMN[limit.scope]: limit.scope_id}) for limit in limits]
    in_flight = Q(outcome=CallOutcome.STARTED)
    sums = {}
    for index, rows in enumerate(whose):
        sums[f"spent{index}"] = Sum(Coalesce("reserved_usd", "cost_usd"), filter=rows & ~in_flight)
        sums[f"reserved{index}"] = Sum("reserved_usd", filter=rows & in_flight)
    totals = LedgerEntry.objects.filter(
        functools.reduce(operator.or_, whose), is_local=False, created_at__gte=start
    ).aggregate(**sums)
    return [
        BudgetStatus(
            month=start.date(),
            limit_usd=limit.limit_usd,
            spent_usd=totals[f"spent{index}"] or ZERO,
            reserved_usd=totals[f"reserved{index}"] or ZERO,
            scope=limit.scope,
            scope_id=limit.scope_id,
            name=limit.name,
        )
        for index, limit in enumerate(limits)
    ]


def budget_statuses(
    *, user_id: int, team_id: int | None = None, api_key_id: int | None = None, now: dt.datetime | None = None
) -> list[BudgetStatus]:
    """The budgets a call by this user (in this team, with this key) counts against this month, team,
    user, key, the unlimited ones left out; a read, it writes nothing."""
    limits = _limits(team_id=team_id, user_id=user_id, api_key_id=api_key_id, lock=False)
    return _statuses(limits, now=now or timezone.now())


def budget_status(*, user_id: int, now: dt.datetime | None = None) -> BudgetStatus:
    """The user's own cloud budget this month: limit, spent, reserved, remaining (a read; writes nothing)."""
    return budget_statuses(user_id=user_id, now=now)[0]


def budget_overview(*, user_id: int, now: dt.datetime | None = None) -> list[BudgetStatus]:
    """For the user's pages: their team's budget (if limited), their own, and each of their unrevoked
    keys that has a limit, this month."""
    team_id = Membership.objects.filter(user_id=user_id).values_list("team_id", flat=True).first()
    limits = _limits(team_id=team_id, user_id=user_id, api_key_id=None, lock=False)
    keys = ApiKey.objects.filter(user_id=user_id, revoked_at__isnull=True, monthly_cloud_budget_usd__isnull=False)
    limits += [
        Limit(BudgetScope.KEY, key_id, prefix, limit)
        for key_id, prefix, limit in keys.order_by("prefix").values_list("pk", "prefix", "monthly_cloud_budget_usd")
    ]
    return _statuses(limits, now=now or timezone.now())


def tightest(statuses: Iterable[BudgetStatus]) -> BudgetStatus | None:
    """The budget with the least left (the first of equals, in the order team, user, key)."""
    return min(statuses, key=lambda status: status.remaining_usd, default=None)


def alert_share() -> Decimal:
    return current_table().policy.budget_alert_share


def attempt_reserve(*, attempt: Attempt, messages: Iterable[Mapping[str, str]], max_tokens: int) -> LedgerEntry:
    """`attempt_start` for a cloud call made for a user: its started row holds the call's worst
    case against every budget of its team, user and key. Raises BudgetExceeded (and reserves
    nothing) when the worst case does not fit in what one of them has left this month."""
    if attempt.user_id is None:
        raise ValueError("only a call made for a user has a budget")
    model = attempt.candidate.provider.models.get(attempt.candidate.model)
    price = model.price_at(attempt.started) if model is not None else None
    messages = list(messages)
    worst = worst_cost(price, prompt_tokens=estimate_prompt_tokens(messages), max_tokens=max_tokens)
    with transaction.atomic():
        limits = _limits(team_id=attempt.team_id, user_id=attempt.user_id, api_key_id=attempt.api_key_id, lock=True)
        statuses = _statuses(limits, now=attempt.started)
        refusing = tightest(status for status in statuses if not status.fits(worst))
        row = None if refusing else attempt_start(attempt=attempt, messages=messages, reserved_usd=worst)
        held = ZERO if refusing else worst
        after = [replace(status, reserved_usd=status.reserved_usd + held) for status in statuses]
        _alerts_due(after, share=attempt.table.policy.budget_alert_share)
    if refusing is not None:
        raise BudgetExceeded(refusing, worst)
    assert row is not None
    return row


def _alerts_due(statuses: Iterable[BudgetStatus], *, share: Decimal) -> None:
    """Record (once a month per scope) and, after the commit, mail the alert of each budget past the
    alert share. Called under the scopes' locks, so two reservations cannot both record one."""
    for status in statuses:
        if not status.past_share(share):
            continue
        _, created = BudgetAlert.objects.get_or_create(scope=status.scope, scope_id=status.scope_id, month=status.month)
        if created:
            transaction.on_commit(functools.partial(budget_alert_send, status=status, share=share), robust=True)
