"""Agent runs that ended before any provider call: the runs the ledger cannot show.

Such a run has no ledger row, so the ledger's rollups cannot count it. `RunRollup` counts them
per UTC day the run was created, agent and user, for the runs with an id below
`RollupState.runs_below`: every one of those had ended when it was counted (a run that has ended
stays ended). A read adds the runs from `runs_below` on live (those created or still going at the
last refresh: few), and takes back a counted run that has had a call recorded since (a call in
flight when its run was cancelled lands after the cancel). A call recorded late with an id under
the ledger watermark is taken into account by the next refresh only.
"""

from __future__ import annotations

import datetime as dt

from django.db import connection
from django.db.models import Count, Exists, F, Func, Max, Min, OuterRef, Q, QuerySet
from django.db.models.functions import TruncDate

from agents.models import AgentRun, RunStatus
from metrics.models import RollupState, RunRollup
from routing.models import LedgerEntry

ENDED = (RunStatus.FAILED, RunStatus.CANCELLED)


def runs_without_calls_count(
    *,
    start: dt.date,
    end: dt.date,
    state: RollupState | None,
    agent: str | None = None,
    user_id: int | None = None,
    team_id: int | None = None,
) -> int:
    """Runs created from `start` to `end` (UTC days, both included) that ended before any provider
    call, given the RollupState row as the caller read it (None: there is none yet).

    Such a run has no ledger row to record a team: `team_id` counts the runs of the team's
    members as they are now (accounts.Membership), where a run's calls count for the team its
    author was in when they were made."""
    below, watermark = (state.runs_below, state.last_ledger_id) if state else (0, 0)
    rolled = RunRollup.objects.filter(day__gte=start, day__lte=end)
    runs = AgentRun.objects.filter(
        status__in=ENDED, created_at__gte=_midnight(start), created_at__lt=_midnight(end + dt.timedelta(days=1))
    )
    if agent:
        rolled, runs = rolled.filter(agent=agent), runs.filter(agent__slug=agent)
    if user_id is not None:
        rolled, runs = rolled.filter(user_id=user_id), runs.filter(created_by_id=user_id)
    if team_id is not None:
        rolled = rolled.filter(user__membership__team_id=team_id)
        runs = runs.filter(created_by__membership__team_id=team_id)
    live = runs.filter(id__gte=below).filter(~Exists(_calls_of_run()))
    called_since = LedgerEntry.objects.filter(id__gt=watermark, run_id__isnull=False).values("run_id")
    taken_back = runs.filter(id__lt=below, pk__in=called_since).filter(
        ~Exists(_calls_of_run().filter(id__lte=watermark))
    )
    # The three in one query: as three, their round trips cost more than the work (each is a short index scan).
    counted, added, taken = _scalars(
        rolled.order_by().values(n=Func(F("runs_without_calls"), function="SUM")),
        live.order_by().values(n=Func(F("id"), function="COUNT")),
        taken_back.order_by().values(n=Func(F("id"), function="COUNT")),
    )
    return (counted or 0) + added - taken


def _scalars(*queries: QuerySet) -> tuple:
    """The single values these one-column, one-row queries give, read in one round trip."""
    compiled = [query.query.sql_with_params() for query in queries]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT " + ", ".join(f"({sql})" for sql, _ in compiled),
            [param for _, params in compiled for param in params],
        )
        return cursor.fetchone()


def run_rollup_refresh(*, state: RollupState, high: int, ledger_days: list[dt.date], full: bool) -> None:
    """Bring RunRollup up to date, inside the caller's transaction (with `state` locked): it and
    the ledger watermark `high` must change together for reads to add up."""
    below = AgentRun.objects.filter(status__in=(RunStatus.QUEUED, RunStatus.RUNNING)).aggregate(low=Min("id"))["low"]
    if below is None:
        below = (AgentRun.objects.aggregate(top=Max("id"))["top"] or 0) + 1
    if full:
        changed = AgentRun.objects.all()
    else:
        called = LedgerEntry.objects.filter(
            Q(id__gt=state.last_ledger_id, id__lte=high) | _created_in(set(ledger_days))
        )
        changed = AgentRun.objects.filter(
            Q(id__gte=state.runs_below, id__lt=below) | Q(pk__in=called.filter(run_id__isnull=False).values("run_id"))
        )
    days = set(_created_days(changed))
    if full:
        days |= set(RunRollup.objects.values_list("day", flat=True).distinct())
    if days:
        RunRollup.objects.filter(day__in=days).delete()
        ended = AgentRun.objects.filter(_created_in(days), id__lt=below, status__in=ENDED).filter(
            ~Exists(_calls_of_run().filter(id__lte=high))
        )
        counts = (
            ended.annotate(day=TruncDate("created_at", tzinfo=dt.UTC))
            .values("day", "agent__slug", "created_by_id")
            .annotate(n=Count("id"))
            .order_by()
        )
        RunRollup.objects.bulk_create(
            RunRollup(day=c["day"], agent=c["agent__slug"], user_id=c["created_by_id"], runs_without_calls=c["n"])
            for c in counts
        )
    state.runs_below = max(state.runs_below, below)


def _calls_of_run():
    return LedgerEntry.objects.filter(run_id=OuterRef("pk"))


def _created_days(runs) -> list[dt.date]:
    days = runs.annotate(day=TruncDate("created_at", tzinfo=dt.UTC)).values_list("day", flat=True)
    return list(days.distinct().order_by())


def _created_in(days: set[dt.date]) -> Q:
    """created_at within any of these UTC days."""
    condition = Q(pk__in=[])
    for day in days:
        condition |= Q(created_at__gte=_midnight(day), created_at__lt=_midnight(day + dt.timedelta(days=1)))
    return condition


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)
