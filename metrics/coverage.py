"""Which UTC days the rollups hold exactly, and which ledger rows they do not hold yet.

Every metrics read sums the held days from the rollups and the rest live from the ledger
(metrics.sums): this module draws the line between the two, so every row is summed from exactly
one of them. Reads only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import connection
from django.db.models import Q, QuerySet
from django.db.models.functions import TruncDate

from metrics.models import RollupDay, RollupState
from metrics.rollups import SAFETY_WINDOW
from routing.models import UNFINISHED_OUTCOMES, LedgerEntry


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

    def reads_ledger(self, *, since: dt.date, until: dt.date) -> bool:
        """Some rows of these days are to be read from the ledger (`live_entries` gives them)."""
        if any(since <= day <= until for day in (*self.stale, *self.partial)):
            return True
        return max(since, self.open_from) <= until  # open days, none of them partial


def rollup_coverage(*, state: RollupState | None) -> Coverage:
    """What the rollups hold exactly, as of now, given the RollupState row just read (None: there
    is none yet). Reads only.

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
    if state is None or state.last_started_at is None:
        return Coverage(open_from=dt.date.min, stale=frozenset(), partial={})  # never refreshed
    open_from = (state.last_started_at - SAFETY_WINDOW).astimezone(dt.UTC).date()
    # Raw SQL: these run on every read, and compiling them with the ORM cost more than running them.
    ledger = connection.ops.quote_name(LedgerEntry._meta.db_table)
    day, day_params = connection.ops.datetime_cast_date_sql("l.created_at", (), "UTC")
    high = state.last_ledger_id
    # Days with rows newer than the watermark, and days of runs where such a row came before a
    # rolled-up one (it becomes the run's first, so the run moves to another row), and what the
    # open days' rollups were summed from: three reads in one round trip. Kept apart as UNION ALL
    # arms: joined into one query, PostgreSQL misjudged its size and spent longer compiling it
    # than running it.
    days = connection.ops.quote_name(RollupDay._meta.db_table)
    # The first arm names the columns' types: PostgreSQL matches the arms' types pairwise.
    sql = (
        "SELECT 'touched', t.day, CAST(NULL AS BIGINT), CAST(NULL AS BIGINT), CAST(NULL AS BIGINT) "  # noqa: S608
        f"FROM (SELECT DISTINCT {day} AS day FROM {ledger} l WHERE l.id > %s AND l.created_at < %s) t "
        "UNION ALL SELECT 'reordered', NULL, r.run_id, NULL, NULL FROM (SELECT DISTINCT n.run_id "
        f"FROM {ledger} n WHERE n.id > %s AND n.run_id IS NOT NULL AND EXISTS (SELECT 1 FROM {ledger} o "
        "WHERE o.run_id = n.run_id AND o.id <= %s AND o.created_at > n.created_at)) r "
        f"UNION ALL SELECT 'summed', d.day, d.unfinished_rows, d.ledger_high, d.ledger_rows FROM {days} d "
        "WHERE d.day >= %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*day_params, high, _midnight(open_from), high, high, open_from])
        found = cursor.fetchall()
    touched = {_as_date(value) for kind, value, *_ in found if kind == "touched"}
    reordered = [run_id for kind, _, run_id, *_ in found if kind == "reordered"]
    if reordered:
        touched |= _ledger_days(LedgerEntry.objects.filter(run_id__in=reordered))
    summed = {
        _as_date(value): (ledger_high, ledger_rows, unfinished_rows)
        for kind, value, unfinished_rows, ledger_high, ledger_rows in found
        if kind == "summed" and _as_date(value) not in touched
    }
    partial = {}
    if summed:
        held = " OR ".join("(l.created_at >= %s AND l.created_at < %s AND l.id <= %s)" for _ in summed)
        held_params = []
        for held_day, (ledger_high, _, _) in summed.items():
            held_params += [_midnight(held_day), _midnight(held_day + dt.timedelta(days=1)), ledger_high]
        # A row finished since (a call in flight when summed, completed under the same id) shows as
        # fewer unfinished rows: the day is then read whole from the ledger.
        unfinished = "SUM(CASE WHEN l.outcome IN (%s, %s) THEN 1 ELSE 0 END)"
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {day}, COUNT(*), {unfinished} FROM {ledger} l WHERE {held} GROUP BY 1",  # noqa: S608
                [*day_params, *UNFINISHED_OUTCOMES, *held_params],
            )
            counted = {_as_date(value): (count, open_rows) for value, count, open_rows in cursor.fetchall()}
        partial = {
            held_day: top
            for held_day, (top, rows, open_rows) in summed.items()
            if counted.get(held_day, (0, 0)) == (rows, open_rows)
        }
    stale = frozenset(day for day in touched if day < open_from)
    return Coverage(open_from=open_from, stale=stale, partial=partial)


def _as_date(value: dt.date | str) -> dt.date:
    return dt.date.fromisoformat(value) if isinstance(value, str) else value  # SQLite gives text


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


def _ledger_days(entries: QuerySet) -> set[dt.date]:
    days = entries.annotate(day=TruncDate("created_at", tzinfo=dt.UTC)).values_list("day", flat=True)
    return set(days.distinct().order_by())


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)
