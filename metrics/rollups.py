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

Savings and the quality-check counts also read the row's run (`AgentRun.quality_ok` and status),
which is written when the run ends, just after its last call: within a run's time limit of that
call's `created_at`, like a late commit, so the safety window covers it as well.

`ledger_rollup_sql` is the one definition of how ledger rows become rollup columns; metrics.sums
runs the same SQL live over the rows not rolled up yet, and metrics.coverage says which.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    BigIntegerField,
    Case,
    CharField,
    Count,
    Exists,
    F,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Greatest, TruncDate, TruncMonth
from django.utils import timezone

from agents.models import AgentRun, RunStatus
from core.months import month_next
from metrics.models import (
    LATENCY_BOUNDS_MS,
    LATENCY_FIELDS,
    DailyModelRollup,
    DailyPeopleRollup,
    DailyRollup,
    MonthlyRollup,
    RollupDay,
    RollupState,
)
from metrics.runs import run_rollup_refresh
from routing.models import PROVIDER_ERRORS, UNFINISHED_OUTCOMES, CallOutcome, LedgerEntry

# Longer than any call can last before its ledger row commits (a run is stopped after
# SWITCHYARD_RUN_TIME_LIMIT, 10 minutes by default), with room for clock skew between workers.
SAFETY_WINDOW = max(dt.timedelta(hours=1), dt.timedelta(seconds=2 * settings.SWITCHYARD_RUN_TIME_LIMIT))
DAYS_PER_BATCH = 31  # bounds one transaction: about a month of ledger rows
_GROUP = ("day", "provider_id", "model_name", "agent", "user_id", "team_id", "api_key_id", "is_local")


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
        written += _recompute(ordered[i : i + DAYS_PER_BATCH], high=high, started_at=started_at)
    with transaction.atomic():
        state = RollupState.objects.select_for_update().get(pk=1)
        run_rollup_refresh(state=state, high=high, ledger_days=ordered, full=full)
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
    days = entries.annotate(day=TruncDate("created_at", tzinfo=dt.UTC)).values_list("day", flat=True)
    return set(days.distinct().order_by())


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


def _recompute(days: list[dt.date], *, high: int, started_at: dt.datetime) -> int:
    """Replace these days' rollup rows (and their months') with a fresh aggregation of their ledger
    rows up to id `high`; RollupDay records what each day was summed from."""
    coarser = {f"r_{name}": Sum(name) for name in ROLLUP_COLUMNS}
    with transaction.atomic():
        # One refresh at a time rewrites rollups, so two workers never interleave a delete and an insert.
        RollupState.objects.select_for_update().get(pk=1)
        # A refresh that began later may have summed a day already: never replace it with an older view.
        newer = RollupDay.objects.filter(day__in=days, refresh_started_at__gt=started_at)
        newer = set(newer.values_list("day", flat=True))
        days = [day for day in days if day not in newer]
        if not days:
            return 0
        months = sorted({day.replace(day=1) for day in days})
        in_months = Q(pk__in=[])
        for month in months:
            in_months |= Q(day__gte=month, day__lt=month_next(month))
        DailyRollup.objects.filter(day__in=days).delete()
        sql, params = _rollup_sql(LedgerEntry.objects.filter(_in_days(set(days)), id__lte=high))
        written = _insert(DailyRollup, sql, params, (*_GROUP, *ROLLUP_COLUMNS))
        # The calls the statement above summed: exactly the rows it saw, whatever commits meanwhile.
        summed = DailyRollup.objects.filter(day__in=days).values("day").annotate(Sum("calls"), Sum("unknown_calls"))
        rows = {row["day"]: (row["calls__sum"], row["unknown_calls__sum"]) for row in summed}
        RollupDay.objects.filter(day__in=days).delete()
        RollupDay.objects.bulk_create(
            RollupDay(
                day=day,
                ledger_high=high,
                ledger_rows=rows.get(day, (0, 0))[0],
                unfinished_rows=rows.get(day, (0, 0))[1],
                refresh_started_at=started_at,
            )
            for day in days
        )
        DailyModelRollup.objects.filter(day__in=days).delete()
        model_group = ("day", "provider_id", "model_name", "is_local")
        by_model = DailyRollup.objects.filter(day__in=days).values(*model_group).annotate(**coarser)
        _insert_grouped(DailyModelRollup, by_model, model_group)
        DailyPeopleRollup.objects.filter(day__in=days).delete()
        people_group = ("day", "agent", "user_id", "team_id", "api_key_id", "is_local")
        by_people = DailyRollup.objects.filter(day__in=days).values(*people_group).annotate(**coarser)
        _insert_grouped(DailyPeopleRollup, by_people, people_group)
        MonthlyRollup.objects.filter(month__in=months).delete()
        month_group = ("month", "provider_id", "model_name", "agent", "user_id", "team_id", "api_key_id", "is_local")
        by_month = (
            DailyRollup.objects.filter(in_months)
            .annotate(month=TruncMonth("day"))
            .values(*month_group)
            .annotate(**coarser)
        )
        _insert_grouped(MonthlyRollup, by_month, month_group)
    return written


def _insert(model, sql: str, params: list, columns: tuple[str, ...]) -> int:
    """INSERT ... SELECT rows straight into a rollup table: no rows through Python."""
    quoted = ", ".join(map(connection.ops.quote_name, columns))
    insert = f"INSERT INTO {model._meta.db_table} ({quoted}) SELECT {quoted} FROM ({sql}) agg"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(insert, params)
        return cursor.rowcount


def _insert_grouped(model, aggregate: QuerySet, group: tuple[str, ...]) -> int:
    """Insert a finer level's rows summed by `group` (annotated as r_<column>: Django refuses
    annotations named like the model's own fields)."""
    sql, params = aggregate.order_by().query.sql_with_params()
    renamed = ", ".join(
        f"agg.{connection.ops.quote_name(name if name in group else f'r_{name}')} AS {connection.ops.quote_name(name)}"
        for name in (*group, *ROLLUP_COLUMNS)
    )
    select = f"SELECT {renamed} FROM ({sql}) agg"  # noqa: S608 - column names from this module
    return _insert(model, select, list(params), (*group, *ROLLUP_COLUMNS))


def ledger_rollup_sql(entries: QuerySet) -> tuple[str, list]:
    """SQL (and its parameters) summing these ledger rows into DailyRollup's shape: one row per
    UTC day, provider, model, agent, user, team, API key and local/cloud, with every rollup column.

    The one definition of how ledger rows become figures: `rollup_refresh` stores its rows, and
    metrics.selectors reads the same SQL live for the part of the ledger not rolled up yet.
    Compiling the aggregate costs ~10 ms of Python, more than running it over a few hundred rows,
    so it is compiled once, around a placeholder for which rows, and `entries` fills it in.
    """
    template, params, at = _rollup_template()
    ids_sql, ids_params = entries.order_by().values("id").query.sql_with_params()
    return template.replace(_ROWS_CHOSEN, ids_sql, 1), [*params[:at], *ids_params, *params[at:]]


_ROWS_CHOSEN = "SELECT NULL AS ledger_rows_chosen_by_the_caller"


@functools.cache
def _rollup_template() -> tuple[str, tuple, int]:
    """The rollup SQL over the rows whose ids _ROWS_CHOSEN selects, and where its parameters go."""
    sql, params = _rollup_sql(LedgerEntry.objects.filter(pk__in=RawSQL(_ROWS_CHOSEN, [])))  # noqa: S611 - a constant
    return sql, tuple(params), sql[: sql.index(_ROWS_CHOSEN)].count("%s")


def _rollup_sql(entries: QuerySet) -> tuple[str, list]:
    inner_sql, params = _ledger_groups(entries).query.sql_with_params()
    failed = "agg.run_check = 'failed'"

    def case(condition: str, column: str) -> str:
        return f"SUM(CASE WHEN {condition} THEN agg.{column} ELSE 0 END)"

    columns = {name: f"SUM(agg.r_{name})" for name in _AGGREGATES}
    # A successful call whose run failed its quality check saved nothing: its baseline minus cost
    # is shown apart, never in the savings.
    columns["savings_usd"] = case("COALESCE(agg.run_check, '') <> 'failed'", "r_savings_usd")
    columns["failed_check_calls"] = case(failed, "r_successes")
    columns["failed_check_usd"] = case(failed, "r_savings_usd")
    columns["checks_passed"] = case("agg.run_check = 'passed'", "r_runs")
    columns["checks_failed"] = case(failed, "r_runs")
    columns["checks_skipped"] = case("agg.run_check = 'skipped'", "r_runs")
    group = ", ".join(f"agg.{connection.ops.quote_name(name)}" for name in _GROUP)
    select = ", ".join(f"{expression} AS {connection.ops.quote_name(name)}" for name, expression in columns.items())
    sql = f"SELECT {group}, {select} FROM ({inner_sql}) agg GROUP BY {group}"  # noqa: S608
    return sql, list(params)


def _ledger_groups(entries: QuerySet) -> QuerySet:
    """The ledger rows grouped by _GROUP and by how their run's quality check went."""
    success = Q(outcome=CallOutcome.SUCCESS)
    earlier_in_run = LedgerEntry.objects.filter(run_id=OuterRef("run_id")).filter(
        Q(created_at__lt=OuterRef("created_at")) | Q(created_at=OuterRef("created_at"), id__lt=OuterRef("id"))
    )
    first_of_run = Q(run_id__isnull=False) & ~Q(Exists(earlier_in_run))
    # One lookup of the run per ledger row, grouped on (not repeated in every aggregate's filter).
    run_check = Subquery(
        AgentRun.objects.filter(pk=OuterRef("run_id"))
        .annotate(
            check=Case(
                When(quality_ok=True, then=Value("passed")),
                When(quality_ok=False, then=Value("failed")),
                When(status=RunStatus.SUCCEEDED, then=Value("skipped")),
                default=Value(None),
                output_field=CharField(),
            )
        )
        .values("check")[:1],
        output_field=CharField(),
    )
    after_first_token = Greatest(F("latency_ms") - F("ttft_ms"), Value(0), output_field=BigIntegerField())
    generation_ms = Case(
        When(ttft_ms__isnull=False, then=after_first_token),
        default=F("latency_ms"),
        output_field=BigIntegerField(),
    )
    aggregates = {
        "r_calls": Count("id"),
        "r_successes": Count("id", filter=success),
        "r_failures": Count("id", filter=Q(outcome__in=PROVIDER_ERRORS)),
        # In flight or lost with its worker: both read as unknown, so a row going from started to
        # unknown changes no figure; only its completion does.
        "r_unknown_calls": Count("id", filter=Q(outcome__in=UNFINISHED_OUTCOMES)),
        "r_cancelled_calls": Count("id", filter=Q(outcome=CallOutcome.CANCELLED)),
        "r_runs": Count("id", filter=first_of_run),
        "r_prompt_tokens": Sum("prompt_tokens", default=0),
        "r_completion_tokens": Sum("completion_tokens", default=0),
        "r_cost_usd": Sum("cost_usd", default=0),
        "r_baseline_cost_usd": Sum("baseline_cost_usd", default=0),
        # Successful calls only; NULL when either side is unknown, and SUM skips NULLs.
        "r_savings_usd": Sum(F("baseline_cost_usd") - F("cost_usd"), filter=success, default=0),
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
        entries.annotate(day=TruncDate("created_at", tzinfo=dt.UTC), run_check=run_check)
        .values(*_GROUP, "run_check")
        .annotate(**aggregates)
        .order_by()
    )


# The rollup columns summed straight from the ledger; the quality-check split is worked out from
# them in ledger_rollup_sql.
_AGGREGATES = (
    "calls",
    "successes",
    "failures",
    "unknown_calls",
    "cancelled_calls",
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
_CHECK_COLUMNS = ("failed_check_calls", "failed_check_usd", "checks_passed", "checks_failed", "checks_skipped")
ROLLUP_COLUMNS: tuple[str, ...] = (*_AGGREGATES, *_CHECK_COLUMNS)
