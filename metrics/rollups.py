"""Keeping `DailyRollup` in step with the ledger.

How it stays exact: a refresh never adds to a rollup row, it recomputes whole UTC days from the
ledger with one grouped query per batch of days, replacing that day's rows in one transaction.
Running it twice, or at the same time in two workers, gives the same rows. The work is finding
the days that may have changed since the last refresh:

- days of ledger rows with an id above the last watermark (new rows, however old their
  `created_at`: a backfill or a late-committed write lands in its own day);
- every day from (start of the last refresh - SAFETY_WINDOW) to now. An id watermark alone would
  miss a row whose id was taken before the last refresh but committed after it (ids are handed
  out at INSERT, not at COMMIT). Such a row's `created_at` (when its call started) is at most a
  run's time limit before its commit, and its commit came after the last refresh began, so it
  falls inside this window;
- the other days of any agent run seen in those days, because a run is counted once, on the row
  of its first ledger entry, and a late row can become a run's first.

Each recomputed day also rebuilds the coarser levels from the fresh DailyRollup rows, in the same
transaction: DailyModelRollup and DailyPeopleRollup for that day and MonthlyRollup for its month.
Ledger rows changed in place (re-costed) are invisible to the watermark: pass `days=` or `full=True`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BigIntegerField, Case, Count, Exists, F, Max, OuterRef, Q, Sum, Value, When
from django.db.models.functions import Greatest, TruncDate, TruncMonth
from django.utils import timezone

from core.months import month_next
from metrics.models import (
    LATENCY_BOUNDS_MS,
    LATENCY_FIELDS,
    DailyModelRollup,
    DailyPeopleRollup,
    DailyRollup,
    MonthlyRollup,
    RollupState,
)
from routing.models import CallOutcome, LedgerEntry

# Longer than any call can last before its ledger row commits (a run is stopped after
# SWITCHYARD_RUN_TIME_LIMIT, 10 minutes by default), with room for clock skew between workers.
SAFETY_WINDOW = max(dt.timedelta(hours=1), dt.timedelta(seconds=2 * settings.SWITCHYARD_RUN_TIME_LIMIT))
DAYS_PER_BATCH = 31  # bounds one transaction: about a month of ledger rows
_GROUP = ("day", "provider_id", "model_name", "agent", "user_id", "is_local")


@dataclass(frozen=True)
class RefreshResult:
    days: int  # how many days were recomputed
    rows: int  # rollup rows written
    last_ledger_id: int


def rollup_refresh(*, full: bool = False, days: Iterable[dt.date] = ()) -> RefreshResult:
    """Bring the rollups up to date with the ledger.

    `full` recomputes every day from scratch; `days` adds days to recompute whatever the
    watermark says (after ledger rows were corrected in place, e.g. re-costed).
    """
    started_at = timezone.now()
    state, _ = RollupState.objects.get_or_create(pk=1)
    high = LedgerEntry.objects.aggregate(high=Max("id"))["high"] or 0
    if full:
        todo = _ledger_days(LedgerEntry.objects.all())
        todo |= set(DailyRollup.objects.values_list("day", flat=True).distinct())
    else:
        todo = _changed_days(state=state, high=high, now=started_at)
    ordered = sorted(todo | set(days))
    written = 0
    for i in range(0, len(ordered), DAYS_PER_BATCH):
        written += _recompute(ordered[i : i + DAYS_PER_BATCH])
    with transaction.atomic():
        state = RollupState.objects.select_for_update().get(pk=1)
        state.last_ledger_id = max(state.last_ledger_id, high)
        if state.last_started_at is None or started_at > state.last_started_at:
            state.last_started_at = started_at
        state.save()
    return RefreshResult(days=len(ordered), rows=written, last_ledger_id=state.last_ledger_id)


def rollups_fresh_until() -> dt.datetime | None:
    """Every ledger row that started before this moment is in the rollups (None: never refreshed)."""
    state = RollupState.objects.filter(pk=1).first()
    if state is None or state.last_started_at is None:
        return None
    return state.last_started_at - SAFETY_WINDOW


def _changed_days(*, state: RollupState, high: int, now: dt.datetime) -> set[dt.date]:
    days = _ledger_days(LedgerEntry.objects.filter(id__gt=state.last_ledger_id, id__lte=high))
    if state.last_started_at is not None:
        day = (state.last_started_at - SAFETY_WINDOW).astimezone(dt.UTC).date()
        while day <= now.astimezone(dt.UTC).date():
            days.add(day)
            day += dt.timedelta(days=1)
    if days:
        runs = LedgerEntry.objects.filter(_in_days(days), run_id__isnull=False).values("run_id")
        days |= _ledger_days(LedgerEntry.objects.filter(run_id__in=runs))
    return days


def _ledger_days(entries) -> set[dt.date]:
    return set(entries.annotate(day=TruncDate("created_at", tzinfo=dt.UTC)).values_list("day", flat=True).distinct())


def _in_days(days: set[dt.date]) -> Q:
    """created_at within any of these UTC days, as few range conditions as possible."""
    condition = Q(pk__in=[])
    ordered = sorted(days)
    run_start = previous = ordered[0]
    for day in [*ordered[1:], None]:
        if day is not None and day == previous + dt.timedelta(days=1):
            previous = day
            continue
        condition |= Q(created_at__gte=_midnight(run_start), created_at__lt=_midnight(previous + dt.timedelta(days=1)))
        if day is not None:
            run_start = previous = day
    return condition


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def _recompute(days: list[dt.date]) -> int:
    """Replace these days' rollup rows (and their months') with a fresh aggregation of the ledger."""
    months = sorted({day.replace(day=1) for day in days})
    in_months = Q(pk__in=[])
    for month in months:
        in_months |= Q(day__gte=month, day__lt=month_next(month))
    coarser = {name: Sum(name) for name in _AGGREGATES}
    with transaction.atomic():
        # One refresh at a time rewrites rollups, so two workers never interleave a delete and an insert.
        RollupState.objects.select_for_update().get(pk=1)
        DailyRollup.objects.filter(day__in=days).delete()
        written = _insert(DailyRollup, _aggregate_query(set(days)), _GROUP)
        DailyModelRollup.objects.filter(day__in=days).delete()
        model_group = ("day", "provider_id", "model_name", "is_local")
        by_model = DailyRollup.objects.filter(day__in=days).values(*model_group).annotate(**_prefixed(coarser))
        _insert(DailyModelRollup, by_model, model_group)
        DailyPeopleRollup.objects.filter(day__in=days).delete()
        people_group = ("day", "agent", "user_id", "is_local")
        by_people = DailyRollup.objects.filter(day__in=days).values(*people_group).annotate(**_prefixed(coarser))
        _insert(DailyPeopleRollup, by_people, people_group)
        MonthlyRollup.objects.filter(month__in=months).delete()
        month_group = ("month", "provider_id", "model_name", "agent", "user_id", "is_local")
        by_month = (
            DailyRollup.objects.filter(in_months)
            .annotate(month=TruncMonth("day"))
            .values(*month_group)
            .annotate(**_prefixed(coarser))
        )
        _insert(MonthlyRollup, by_month, month_group)
    return written


def _insert(model, aggregate, group: tuple[str, ...]) -> int:
    """INSERT ... SELECT the grouped aggregate straight into the rollup table: no rows through Python."""
    sql, params = aggregate.order_by().query.sql_with_params()
    targets = [*group, *_AGGREGATES]
    sources = [name if name in group else f"r_{name}" for name in targets]
    insert = (
        f"INSERT INTO {model._meta.db_table} ({', '.join(map(connection.ops.quote_name, targets))}) "  # noqa: S608
        f"SELECT {', '.join('agg.' + connection.ops.quote_name(name) for name in sources)} FROM ({sql}) agg"
    )
    with connection.cursor() as cursor:
        cursor.execute(insert, params)
        return cursor.rowcount


def _prefixed(aggregates: dict) -> dict:
    return {f"r_{name}": expression for name, expression in aggregates.items()}


def _aggregate_query(days: set[dt.date]):
    success = Q(outcome=CallOutcome.SUCCESS)
    earlier_in_run = LedgerEntry.objects.filter(run_id=OuterRef("run_id")).filter(
        Q(created_at__lt=OuterRef("created_at")) | Q(created_at=OuterRef("created_at"), id__lt=OuterRef("id"))
    )
    first_of_run = Q(run_id__isnull=False) & ~Q(Exists(earlier_in_run))
    after_first_token = Greatest(F("latency_ms") - F("ttft_ms"), Value(0), output_field=BigIntegerField())
    generation_ms = Case(
        When(ttft_ms__isnull=False, then=after_first_token),
        default=F("latency_ms"),
        output_field=BigIntegerField(),
    )
    aggregates = {
        "r_calls": Count("id"),
        "r_successes": Count("id", filter=success),
        "r_failures": Count("id", filter=~success),
        "r_runs": Count("id", filter=first_of_run),
        "r_prompt_tokens": Sum("prompt_tokens"),
        "r_completion_tokens": Sum("completion_tokens"),
        "r_cost_usd": Sum("cost_usd", default=0),
        "r_baseline_cost_usd": Sum("baseline_cost_usd", default=0),
        # NULL when either side is unknown, and SUM skips NULLs: savings only where both are known.
        "r_savings_usd": Sum(F("baseline_cost_usd") - F("cost_usd"), default=0),
        "r_unpriced_calls": Count("id", filter=Q(cost_usd__isnull=True)),
        "r_latency_sum_ms": Sum("latency_ms", filter=success, default=0),
        "r_gen_completion_tokens": Sum("completion_tokens", filter=success, default=0),
        "r_gen_ms": Sum(generation_ms, filter=success, default=0),
    }
    for index, name in enumerate(LATENCY_FIELDS):
        bucket = Q(latency_ms__gte=LATENCY_BOUNDS_MS[index - 1]) if index else Q()
        if index < len(LATENCY_BOUNDS_MS):
            bucket &= Q(latency_ms__lt=LATENCY_BOUNDS_MS[index])
        aggregates[f"r_{name}"] = Count("id", filter=success & bucket)
    return (
        LedgerEntry.objects.filter(_in_days(days))
        .annotate(day=TruncDate("created_at", tzinfo=dt.UTC))
        .values(*_GROUP)
        .annotate(**aggregates)
        .order_by()
    )


_AGGREGATES = (
    "calls",
    "successes",
    "failures",
    "runs",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "baseline_cost_usd",
    "savings_usd",
    "unpriced_calls",
    "latency_sum_ms",
    "gen_completion_tokens",
    "gen_ms",
    *LATENCY_FIELDS,
)
