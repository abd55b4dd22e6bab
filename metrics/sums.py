"""Column sums of any range of UTC days, fresh to the moment they are read.

The days the rollups hold (`rollup_coverage`) are summed from the rollups, from the smallest
level that can answer (MonthlyRollup for whole months, DailyModelRollup for provider and model,
DailyPeopleRollup for agent and user, DailyRollup when both are needed). The rest, normally the
ledger rows since the last refresh, is summed live by the SQL the refresh stores
(metrics.rollups.ledger_rollup_sql). Every row is summed from exactly one of the two, so nothing
counts twice and every row committed before the read is in. Reads only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import CharField, Func, Q, QuerySet, Sum
from django.db.models.functions import TruncDate

from metrics.figures import INT_SUMS, MONEY_SUMS
from metrics.models import (
    LATENCY_FIELDS,
    DailyModelRollup,
    DailyPeopleRollup,
    DailyRollup,
    MonthlyRollup,
    RollupDay,
    RollupState,
)
from metrics.rollups import SAFETY_WINDOW, ledger_rollup_sql
from routing.models import LedgerEntry, Provider


@dataclass(frozen=True)
class Coverage:
    """Which UTC days the rollups hold, as of one moment.

    A day before `open_from` and not in `stale` is held whole. A day in `partial` is held up to
    the ledger id it maps to: the rows above it are still to be added. Any other day is read
    whole from the ledger.
    """

    open_from: dt.date
    stale: frozenset[dt.date]
    partial: dict[dt.date, int]

    def held(self, day: dt.date) -> bool:
        """The rollups have this day, whole or up to its `partial` id."""
        return (day < self.open_from and day not in self.stale) or day in self.partial


def rollup_coverage() -> Coverage:
    """What the rollups hold exactly, as of now. Reads only.

    A day before the last refresh's start minus SAFETY_WINDOW holds every row that could still
    commit for it (see metrics.rollups), so the rollups have it whole, unless a row came in
    since with an old `created_at` (a backfill: an id above the watermark), or a late row became
    the first of a run counted on another day: those days are stale until the next refresh.

    A later day (normally only today) is held up to RollupDay.ledger_high when its rollup summed
    every row it has up to that id: rows committed late with a lower id would show as a count
    that no longer matches (rows are never deleted but by a full refresh), and then the day is read
    whole from the ledger. A run's quality check that ends after its calls were summed reaches
    the savings at the next refresh: the rows are in, their split between savings and failed
    checks may lag by that much.
    """
    state = RollupState.objects.filter(pk=1).first()
    if state is None or state.last_started_at is None:
        return Coverage(open_from=dt.date.min, stale=frozenset(), partial={})  # never refreshed
    open_from = (state.last_started_at - SAFETY_WINDOW).astimezone(dt.UTC).date()
    # Raw SQL: these run on every read, and compiling them with the ORM cost more than running them.
    ledger = connection.ops.quote_name(LedgerEntry._meta.db_table)
    day, day_params = connection.ops.datetime_cast_date_sql("l.created_at", (), "UTC")
    high = state.last_ledger_id
    # Days with rows newer than the watermark, and days of runs where such a row came before a
    # rolled-up one (it becomes the run's first, so the run moves to another row). Kept apart:
    # joined into one query, PostgreSQL misjudged its size and spent longer compiling it than running it.
    touched = _days_of(
        f"SELECT DISTINCT {day} FROM {ledger} l WHERE l.id > %s AND l.created_at < %s",  # noqa: S608 - Django's names
        [*day_params, high, _midnight(open_from)],
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT n.run_id FROM {ledger} n WHERE n.id > %s AND n.run_id IS NOT NULL AND EXISTS ("  # noqa: S608
            f"SELECT 1 FROM {ledger} o WHERE o.run_id = n.run_id AND o.id <= %s AND o.created_at > n.created_at)",
            [high, high],
        )
        reordered = [run_id for (run_id,) in cursor.fetchall()]
    if reordered:
        touched |= _ledger_days(LedgerEntry.objects.filter(run_id__in=reordered))
    summed = {row.day: row for row in RollupDay.objects.filter(day__gte=open_from) if row.day not in touched}
    partial = {}
    if summed:
        held = " OR ".join("(l.created_at >= %s AND l.created_at < %s AND l.id <= %s)" for _ in summed)
        held_params = []
        for held_day, row in summed.items():
            held_params += [_midnight(held_day), _midnight(held_day + dt.timedelta(days=1)), row.ledger_high]
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {day}, COUNT(*) FROM {ledger} l WHERE {held} GROUP BY 1",  # noqa: S608 - names from Django
                [*day_params, *held_params],
            )
            found = {_as_date(value): count for value, count in cursor.fetchall()}
        partial = {day: row.ledger_high for day, row in summed.items() if found.get(day, 0) == row.ledger_rows}
    stale = frozenset(day for day in touched if day < open_from)
    return Coverage(open_from=open_from, stale=stale, partial=partial)


def _days_of(sql: str, params: list) -> set[dt.date]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {_as_date(value) for (value,) in cursor.fetchall()}


def _as_date(value: dt.date | str) -> dt.date:
    return dt.date.fromisoformat(value) if isinstance(value, str) else value  # SQLite gives text


_KEY_DIMS = {"provider__name": "provider", "model_name": "model", "agent": "agent", "user_id": "user"}


def range_sums(
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
        sums_add(merged.setdefault(tuple(row[key] for key in keys), {}), row)
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


def live_entries(*, coverage: Coverage, since: dt.date, until: dt.date) -> QuerySet | None:
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
    entries = live_entries(coverage=coverage, since=start, until=end)
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
            row[f"sum_{name}"] = _money(row[f"sum_{name}"])
        if isinstance(row.get("day"), str):  # SQLite hands dates back as text
            row["day"] = dt.date.fromisoformat(row["day"])
    return rows


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


def sums_add(into: dict[str, Any], row: dict[str, Any]) -> None:
    """Add a row's sums into `into` (sums add; figures derived from them would not); keys are copied."""
    for name, value in row.items():
        if not name.startswith("sum_"):
            into[name] = value
        elif value is not None:
            into[name] = value if into.get(name) is None else into[name] + value


def _money(value: Decimal | float | None) -> Decimal:
    """A money sum as the database gave it: SQLite sums decimals as floats, so round them back to
    the ledger's ten places (as Django does for the rollup side)."""
    if value is None:
        return Decimal(0)
    return Decimal(str(value)).quantize(_TEN_PLACES) if isinstance(value, float) else Decimal(value)


_TEN_PLACES = Decimal("1e-10")


def _ledger_days(entries: QuerySet) -> set[dt.date]:
    days = entries.annotate(day=TruncDate("created_at", tzinfo=dt.UTC)).values_list("day", flat=True)
    return set(days.distinct().order_by())


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def _next_month(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
