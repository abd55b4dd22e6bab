"""Reading the metrics: cost, latency and volume history, breakdowns and totals, fresh to the request.

What every figure means is in metrics.figures (`Figures`, `Totals`, `RunCounts`). Days are UTC
dates and ranges include both ends.

Where the numbers come from: the days the rollups hold exactly (`rollup_coverage`: closed days
whose every row is rolled up) are read from the rollups, from the smallest level that can answer
(MonthlyRollup for whole months, DailyModelRollup for provider and model, DailyPeopleRollup for
agent and user, DailyRollup when both are needed). The rest, normally today and any day a late row
touched since the last refresh, is summed live from the ledger by the same SQL the refresh stores
(`ledger_rollup_sql`). Every day comes from exactly one of the two, so nothing counts twice and
every ledger row committed before the request is in. A page costs about the same with a thousand
ledger rows or a million (the live part is about a day of rows). Nothing here writes.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Literal

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import CharField, Func, Q, QuerySet, Sum

from metrics.figures import (
    INT_SUMS,
    MONEY_SUMS,
    BreakdownRow,
    Figures,
    HistoryRow,
    RunCounts,
    Totals,
    figures_from_sums,
)
from metrics.models import LATENCY_FIELDS, DailyModelRollup, DailyPeopleRollup, DailyRollup, MonthlyRollup
from metrics.rollups import Coverage, ledger_rollup_sql, rollup_coverage
from metrics.runs import runs_without_calls_count
from routing.models import LedgerEntry, Provider

__all__ = ["Figures", "RunCounts", "Totals", "breakdown", "filter_choices", "history", "run_counts", "totals"]

Granularity = Literal["day", "week", "month"]
Dimension = Literal["provider", "model", "agent", "user"]

GRANULARITIES: tuple[str, ...] = ("day", "week", "month")
DIMENSIONS: tuple[str, ...] = ("provider", "model", "agent", "user")


def history(
    *,
    start: dt.date,
    end: dt.date,
    granularity: Granularity = "day",
    provider: str | None = None,
    model: str | None = None,
    agent: str | None = None,
    user_id: int | None = None,
) -> list[HistoryRow]:
    """One row per period from `start` to `end` (both included), oldest first, gaps filled with zeros.

    A period is a day, an ISO week (its Monday) or a calendar month (its 1st); the first and last
    may be partly outside the range and then count only days inside it. Filters: provider name,
    model name, agent slug, user id; None means all.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}")
    filters = {"provider": provider, "model": model, "agent": agent, "user_id": user_id}
    by_period: dict[dt.date, dict[str, Any]] = {}
    for row in _sums(start=start, end=end, filters=filters, keys=("day",), whole_months=False):
        _add_into(by_period.setdefault(_period_of(row["day"], granularity), {}), row)
    return [
        {"period": period, **figures_from_sums(by_period.get(period, {}))}
        for period in _periods(start, end, granularity)
    ]


def breakdown(
    *,
    start: dt.date,
    end: dt.date,
    by: Dimension,
    provider: str | None = None,
    model: str | None = None,
    agent: str | None = None,
    user_id: int | None = None,
) -> list[BreakdownRow]:
    """The range's figures split by provider, model, agent or user, most calls first."""
    if by not in DIMENSIONS:
        raise ValueError(f"by must be one of {', '.join(DIMENSIONS)}")
    filters = {"provider": provider, "model": model, "agent": agent, "user_id": user_id}
    rows = _sums(start=start, end=end, filters=filters, keys=_BREAKDOWN_KEYS[by], whole_months=True)
    return _breakdown_rows(rows, by=by)


def totals(
    *,
    start: dt.date,
    end: dt.date,
    provider: str | None = None,
    model: str | None = None,
    agent: str | None = None,
    user_id: int | None = None,
) -> Totals:
    """The whole range's figures in one dict, with every run counted (see metrics.figures.Totals)."""
    filters = {"provider": provider, "model": model, "agent": agent, "user_id": user_id}
    rows = _sums(start=start, end=end, filters=filters, keys=(), whole_months=True)
    figures = figures_from_sums(rows[0] if rows else {})
    without = _runs_without_calls(start=start, end=end, **filters)
    return {**figures, "runs": figures["runs"] + without, "runs_without_calls": without}


def run_counts(
    *,
    start: dt.date,
    end: dt.date,
    provider: str | None = None,
    model: str | None = None,
    agent: str | None = None,
    user_id: int | None = None,
) -> RunCounts:
    """The range's agent runs: all of them, those that made no provider call, and how their checks went."""
    figures = totals(start=start, end=end, provider=provider, model=model, agent=agent, user_id=user_id)
    return {key: figures[key] for key in RunCounts.__annotations__}


def filter_choices() -> dict[str, list]:
    """What the filters can offer: values present in the ledger.

    Keys: `providers` (list of provider names), `models` (list of model names), `agents` (list of
    agent slugs, without the empty one), `users` (list of {"id": int, "username": str}); each sorted.
    """
    # MonthlyRollup has the same values as the daily rows in far fewer rows; the ledger not rolled up yet adds its own.
    rolled = MonthlyRollup.objects.values_list("provider__name", "model_name", "agent", "user_id").distinct()
    live = _live_entries(coverage=rollup_coverage(), since=dt.date.min, until=dt.date.max)
    seen = set(rolled)
    if live is not None:
        seen |= set(live.values_list("provider__name", "model_name", "agent", "user_id").distinct())
    user_ids = {user_id for *_, user_id in seen if user_id is not None}
    users = get_user_model().objects.filter(pk__in=user_ids).order_by("username")
    return {
        "providers": sorted({provider for provider, *_ in seen}),
        "models": sorted({model for _, model, *_ in seen}),
        "agents": sorted({agent for _, _, agent, _ in seen if agent}),
        "users": [{"id": u.pk, "username": u.get_username()} for u in users],
    }


# --- Column sums: rollups for the covered days, the ledger live for the rest.

_BREAKDOWN_KEYS: dict[str, tuple[str, ...]] = {
    "provider": ("provider__name",),
    "model": ("provider__name", "model_name"),
    "agent": ("agent",),
    "user": ("user_id", "user__username"),
}
_KEY_DIMS = {"provider__name": "provider", "model_name": "model", "agent": "agent", "user_id": "user"}


def _sums(
    *, start: dt.date, end: dt.date, filters: dict[str, Any], keys: tuple[str, ...], whole_months: bool
) -> list[dict[str, Any]]:
    """Column sums (`sum_<column>`) of the range grouped by `keys`, one dict per group, each with its keys."""
    if start > end:
        raise ValueError("start must not be after end")
    coverage = rollup_coverage()
    dims = _dims(filters) | {_KEY_DIMS[key] for key in keys if key in _KEY_DIMS}
    parts: list[QuerySet] = []
    for low, high in _covered_spans(start=start, end=end, coverage=coverage):
        parts += _rollup_parts(start=low, end=high, dims=dims, filters=filters, whole_months=whole_months)
    merged: dict[tuple, dict[str, Any]] = {}
    rows = [_unpacked(row) for part in parts for row in _grouped(part, keys)]
    rows += _live_sums(start=start, end=end, coverage=coverage, filters=filters, keys=keys)
    for row in rows:
        _add_into(merged.setdefault(tuple(row[key] for key in keys), {}), row)
    return list(merged.values())


def _covered_spans(*, start: dt.date, end: dt.date, coverage: Coverage) -> list[tuple[dt.date, dt.date]]:
    """The runs of consecutive days in the range that the rollups hold (whole, or up to an id)."""
    spans: list[tuple[dt.date, dt.date]] = []
    low = None
    day = start
    while day <= end:
        if not coverage.held(day):
            if low is not None:
                spans.append((low, day - dt.timedelta(days=1)))
            low = None
        elif low is None:
            low = day
        day += dt.timedelta(days=1)
    if low is not None:
        spans.append((low, end))
    return spans


def _rollup_parts(
    *, start: dt.date, end: dt.date, dims: set[str], filters: dict[str, Any], whole_months: bool
) -> list[QuerySet]:
    """Rollup rows that add up to the range: whole months from MonthlyRollup (a few hundred rows
    a month) when allowed, the ragged days either side from the smallest daily table that will do."""
    first_full = start if start.day == 1 else _next_month(start)
    months = []
    while _next_month(first_full) - dt.timedelta(days=1) <= end:
        months.append(first_full)
        first_full = _next_month(first_full)
    if not whole_months or not months or dims <= {"provider", "model"}:
        # DailyModelRollup has fewer rows for a month than MonthlyRollup, which keeps agents and users.
        return [_daily(start=start, end=end, dims=dims, filters=filters)]
    parts = [_filtered(MonthlyRollup.objects.filter(month__in=months), **filters)]
    for low, high in ((start, months[0] - dt.timedelta(days=1)), (_next_month(months[-1]), end)):
        if low <= high:
            parts.append(_daily(start=low, end=high, dims=dims, filters=filters))
    return parts


def _daily(*, start: dt.date, end: dt.date, dims: set[str], filters: dict[str, Any]) -> QuerySet:
    """Day-level rows from the smallest table that has every needed dimension: DailyModelRollup
    (a few rows a day) for provider and model, DailyPeopleRollup for agent and user, else DailyRollup."""
    if dims <= {"provider", "model"}:
        table = DailyModelRollup
    elif dims <= {"agent", "user"}:
        table = DailyPeopleRollup
    else:
        table = DailyRollup
    return _filtered(table.objects.filter(day__gte=start, day__lte=end), **filters)


def _filtered(
    rows: QuerySet, *, provider: str | None, model: str | None, agent: str | None, user_id: int | None
) -> QuerySet:
    if provider:
        rows = rows.filter(provider__name=provider)
    if model:
        rows = rows.filter(model_name=model)
    if agent:
        rows = rows.filter(agent=agent)
    if user_id is not None:
        rows = rows.filter(user_id=user_id)
    return rows


def _dims(filters: dict[str, Any]) -> set[str]:
    """The dimensions these filters need a rollup table to have."""
    names = {"provider": "provider", "model": "model", "agent": "agent", "user_id": "user"}
    return {names[key] for key, value in filters.items() if value is not None and value != ""}


def _grouped(part: QuerySet, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    if keys:
        return list(part.values(*keys).annotate(**_sum_expressions()).order_by())
    return [part.aggregate(**_sum_expressions())]


def _live_entries(*, coverage: Coverage, since: dt.date, until: dt.date) -> QuerySet | None:
    """The ledger rows of days from `since` to `until` that the rollups do not hold (None: there are none)."""
    live = Q(pk__in=[])
    for day in coverage.stale:
        if since <= day <= until:
            live |= _day(day)
    partial = sorted((day, high) for day, high in coverage.partial.items() if since <= day <= until)
    for day, high in partial:
        live |= _day(day) & Q(id__gt=high)
    if coverage.open_from <= until:
        # The open days not held at all: the stretches between the partial ones.
        low = max(since, coverage.open_from)
        for held_day, _ in partial:
            if low < held_day:
                live |= Q(created_at__gte=_midnight(low), created_at__lt=_midnight(held_day))
            low = max(low, held_day + dt.timedelta(days=1))
        if low <= until:
            stretch = Q(created_at__gte=_midnight(low))
            if until < dt.date.max:
                stretch &= Q(created_at__lt=_midnight(until + dt.timedelta(days=1)))
            live |= stretch
    if live == Q(pk__in=[]):
        return None
    return LedgerEntry.objects.filter(live)


def _day(day: dt.date) -> Q:
    return Q(created_at__gte=_midnight(day), created_at__lt=_midnight(day + dt.timedelta(days=1)))


def _live_sums(
    *, start: dt.date, end: dt.date, coverage: Coverage, filters: dict[str, Any], keys: tuple[str, ...]
) -> list[dict[str, Any]]:
    """The same column sums as `_grouped` gives for rollup rows, summed now from the ledger rows
    the rollups do not hold, through the SQL that the refresh stores (`ledger_rollup_sql`)."""
    entries = _live_entries(coverage=coverage, since=start, until=end)
    if entries is None:
        return []
    entries = _filtered(entries, **filters)
    if not entries.exists():
        return []  # planning the aggregate takes PostgreSQL ~8 ms: not worth it for no rows
    sql, params = ledger_rollup_sql(entries)
    quote = connection.ops.quote_name
    users = get_user_model()
    key_sql = {
        "day": "r.day",
        "provider__name": f"p.{quote('name')}",
        "model_name": "r.model_name",
        "agent": "r.agent",
        "user_id": "r.user_id",
        "user__username": f"u.{quote(users.USERNAME_FIELD)}",
    }
    selected = [f"{key_sql[key]} AS {quote(key)}" for key in keys]
    selected += [f"SUM(r.{name}) AS sum_{name}" for name in MONEY_SUMS]
    selected += [f"SUM(CASE WHEN r.is_local THEN r.{name} ELSE 0 END) AS sum_local_{name}" for name in _LOCAL]
    selected.append(" || ',' || ".join(f"COALESCE(SUM(r.{name}), 0)" for name in _PACKED) + " AS packed")
    joins = ""
    if "provider__name" in keys:
        joins += f" JOIN {quote(Provider._meta.db_table)} p ON p.id = r.provider_id"
    if "user__username" in keys:
        joins += f" LEFT JOIN {quote(users._meta.db_table)} u ON u.id = r.user_id"
    group = f" GROUP BY {', '.join(key_sql[key] for key in keys)}" if keys else ""
    query = f"SELECT {', '.join(selected)} FROM ({sql}) r{joins}{group}"  # noqa: S608 - names from this module
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        names = [column[0] for column in cursor.description]
        rows = [_unpacked(dict(zip(names, values, strict=True))) for values in cursor.fetchall()]
    for row in rows:
        for name in MONEY_SUMS:
            row[f"sum_{name}"] = Decimal(str(row[f"sum_{name}"] or 0))
        if isinstance(row.get("day"), str):  # SQLite hands dates back as text
            row["day"] = dt.date.fromisoformat(row["day"])
    return rows


def _runs_without_calls(
    *, start: dt.date, end: dt.date, provider: str | None, model: str | None, agent: str | None, user_id: int | None
) -> int:
    if provider or model:
        return 0  # such a run reached no provider and no model
    return runs_without_calls_count(start=start, end=end, agent=agent, user_id=user_id)


# --- Breakdown rows.


def _breakdown_rows(grouped: list[dict[str, Any]], *, by: str) -> list[BreakdownRow]:
    result = []
    for row in grouped:
        figures = figures_from_sums(row)
        if by == "provider":
            ident = {"key": row["provider__name"], "label": row["provider__name"], "provider": row["provider__name"]}
        elif by == "model":
            label = f"{row['provider__name']}/{row['model_name']}"
            ident = {"key": row["model_name"], "label": label, "provider": row["provider__name"]}
        elif by == "agent":
            ident = {"key": row["agent"], "label": row["agent"] or "(none)", "provider": None}
        else:
            ident = {"key": row["user_id"], "label": row["user__username"] or "(none)", "provider": None}
        # The ledger flags locality per call; a provider counts as local when all its calls were.
        ident["is_local"] = figures["local_calls"] == figures["calls"] if by in ("provider", "model") else None
        result.append({**ident, **figures})
    result.sort(key=lambda r: (-r["calls"], r["label"]))
    return result


# --- Summing rollup rows.


class _PackedSums(Func):
    """COALESCE(SUM(col), 0) of many integer columns in one expression, returned as "n,n,...".

    Django compiling seventy separate Sum() expressions per query cost more than PostgreSQL
    running it; one fixed template costs nothing to compile. `||` concatenates on PostgreSQL and
    SQLite alike.
    """

    contains_aggregate = True
    output_field = CharField()

    def __init__(self, columns: tuple[str, ...]) -> None:
        super().__init__()
        self.columns = columns

    def as_sql(self, compiler, connection, **extra_context):
        table = connection.ops.quote_name(compiler.query.get_initial_alias())
        parts = [f"COALESCE(SUM({table}.{connection.ops.quote_name(c)}), 0)" for c in self.columns]
        return " || ',' || ".join(parts), []


_PACKED = (*INT_SUMS, *LATENCY_FIELDS)
_LOCAL = ("calls", "successes")  # summed over local rows only: sum_local_calls, sum_local_successes


def _sum_expressions() -> dict[str, Any]:
    # Annotation names must differ from the columns they sum, hence the "sum_" prefix.
    expressions: dict[str, Any] = {f"sum_{name}": Sum(name) for name in MONEY_SUMS}
    expressions.update({f"sum_local_{name}": Sum(name, filter=Q(is_local=True)) for name in _LOCAL})
    expressions["packed"] = _PackedSums(_PACKED)
    return expressions


def _unpacked(row: dict[str, Any]) -> dict[str, Any]:
    """A fetched row with its packed integer sums spread out as sum_<column> keys."""
    packed = row.pop("packed", None)
    if packed:
        row.update({f"sum_{name}": int(value) for name, value in zip(_PACKED, packed.split(","), strict=True)})
    return row


def _add_into(into: dict[str, Any], row: dict[str, Any]) -> None:
    """Add a row's sums into `into` (sums add; figures derived from them would not); keys are copied."""
    for name, value in row.items():
        if not name.startswith("sum_"):
            into[name] = value
        elif value is not None:
            into[name] = value if into.get(name) is None else into[name] + value


# --- Days and periods.


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def _next_month(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def _period_of(day: dt.date, granularity: str) -> dt.date:
    if granularity == "day":
        return day
    if granularity == "week":
        return day - dt.timedelta(days=day.weekday())
    return day.replace(day=1)


def _periods(start: dt.date, end: dt.date, granularity: str) -> list[dt.date]:
    periods, current = [], _period_of(start, granularity)
    while current <= end:
        periods.append(current)
        if granularity == "day":
            current += dt.timedelta(days=1)
        elif granularity == "week":
            current += dt.timedelta(weeks=1)
        else:
            current = _next_month(current)
    return periods
