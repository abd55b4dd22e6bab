"""Column sums of any range of UTC days, fresh to the moment they are read.

The days the rollups hold (metrics.coverage) are summed from the rollups, from the smallest
level that can answer (MonthlyRollup for whole months, DailyModelRollup for provider and model,
DailyPeopleRollup for agent, user, team and key, DailyRollup when both are needed). The rest, normally the
ledger rows since the last refresh, is summed live by the SQL the refresh stores
(metrics.rollups.ledger_rollup_sql). Every row is summed from exactly one of the two, so nothing
counts twice and every row committed before the read is in. Reads only.

A `Reading` does the work every call would repeat once for a whole page or report: it works
out the coverage when it is taken and sums the live rows at most once, at the rollups' own grain
(day, provider, model, agent, user, team, key), so each call picks its range, filters and groups from them.
It also keeps the sums it has read: sums add, so the range's totals are the sum of its days or
of its providers, and the breakdown by provider is the one by model added up (`_READ_AS`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import CharField, Func, Q, QuerySet, Sum

from metrics.coverage import Coverage, live_entries, rollup_coverage
from metrics.figures import INT_SUMS, MONEY_SUMS
from metrics.models import (
    LATENCY_FIELDS,
    DailyModelRollup,
    DailyPeopleRollup,
    DailyRollup,
    MonthlyRollup,
    RollupState,
)
from metrics.rollups import ledger_rollup_sql
from routing.models import LedgerEntry, Provider
from routing.sources import source_filter, source_of


@dataclass
class Reading:
    """One read of the metrics, for a page, a report or a single selector call.

    Taking it reads the rollup state and works out the coverage (a few small queries); the ledger
    rows the rollups do not hold are summed on the first call that needs them and kept. Every call
    made with the same Reading splits rows between rollups and ledger at the same line, so figures
    of one page add up with each other, and each includes every row committed before it was taken.
    """

    state: RollupState | None
    coverage: Coverage
    _live: list[dict[str, Any]] | None = field(default=None, repr=False)
    _read: dict[tuple, list[dict[str, Any]]] = field(default_factory=dict, repr=False)  # see range_sums

    @classmethod
    def take(cls) -> Reading:
        state = RollupState.objects.filter(pk=1).first()
        return cls(state=state, coverage=rollup_coverage(state=state))

    def live_rows(self, *, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
        """The live sums (see `_live_sums`) of the days from `start` to `end`."""
        if not self.coverage.reads_ledger(since=start, until=end):
            return []  # every day of the range is held: no need to read the ledger at all
        if self._live is None:
            self._live = _live_sums(coverage=self.coverage)
        return [row for row in self._live if start <= row["day"] <= end]


_KEY_DIMS = {
    "provider__name": "provider",
    "model_name": "model",
    "agent": "agent",
    "user_id": "user",
    "team_id": "team",
    "api_key_id": "key",
}


def range_sums(
    *,
    start: dt.date,
    end: dt.date,
    filters: dict[str, Any],
    keys: tuple[str, ...],
    whole_months: bool,
    reading: Reading,
) -> list[dict[str, Any]]:
    """Column sums (`sum_<column>`) of the range grouped by `keys`, one dict per group, each with its keys."""
    if start > end:
        raise ValueError("start must not be after end")
    scope = (start, end, tuple(sorted(filters.items())))
    for (read_scope, read_keys), rows in reading._read.items():
        if read_scope == scope and set(keys) <= set(read_keys):
            return _regrouped(rows, keys=keys, read_keys=read_keys)  # each of those rows is in one of these groups
    read_keys = _READ_AS.get(keys, keys)
    rows = _range_read(
        start=start, end=end, filters=filters, keys=read_keys, whole_months=whole_months, reading=reading
    )
    reading._read[(scope, read_keys)] = rows
    return _regrouped(rows, keys=keys, read_keys=read_keys)


# Keys read at a finer grain than asked, at no extra cost (the same rollup table answers both),
# so that the other breakdowns come from the same rows: the report and the pages show several.
_PEOPLE = (
    *("agent", "user_id", "user__username", "team_id", "team__name"),
    *("api_key_id", "api_key__prefix", "api_key__name"),
)
_READ_AS = {
    ("provider__name",): ("provider__name", "model_name"),
    **dict.fromkeys(
        [
            ("agent",),
            ("user_id", "user__username"),
            ("team_id", "team__name"),
            ("api_key_id", "api_key__prefix", "api_key__name"),
        ],
        _PEOPLE,
    ),
}


def _regrouped(
    rows: list[dict[str, Any]], *, keys: tuple[str, ...], read_keys: tuple[str, ...]
) -> list[dict[str, Any]]:
    """The rows (grouped by `read_keys`) added up by `keys`, a subset: new dicts, the caller's to change."""
    if keys == read_keys:
        return [dict(row) for row in rows]
    dropped = [key for key in read_keys if key not in keys]
    merged: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        group = tuple(row[key] for key in keys)
        if group in merged:
            sums_add(merged[group], row)
        else:
            merged[group] = first = dict(row)
            for key in dropped:
                del first[key]
    return list(merged.values())


def _range_read(
    *,
    start: dt.date,
    end: dt.date,
    filters: dict[str, Any],
    keys: tuple[str, ...],
    whole_months: bool,
    reading: Reading,
) -> list[dict[str, Any]]:
    coverage = reading.coverage
    dims = _dims(filters) | {_KEY_DIMS[key] for key in keys if key in _KEY_DIMS}
    parts: list[QuerySet] = []
    for low, high in _covered_spans(start=start, end=end, coverage=coverage):
        parts += _rollup_parts(start=low, end=high, dims=dims, filters=filters, whole_months=whole_months)
    merged: dict[tuple, dict[str, Any]] = {}
    rows = [_unpacked(row) for part in parts for row in _grouped(part, keys)]
    rows += [
        {**{key: row[key] for key in keys}, **{name: row[name] for name in _SUM_NAMES}}
        for row in reading.live_rows(start=start, end=end)
        if _passes(row, **filters)
    ]
    for row in rows:
        group = tuple(row[key] for key in keys)
        if group in merged:
            sums_add(merged[group], row)
        else:
            merged[group] = row  # a dict of its own, fresh from the database
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
    (a few rows a day) for provider and model, DailyPeopleRollup for agent, user, team and key,
    else DailyRollup."""
    if dims <= {"provider", "model"}:
        table = DailyModelRollup
    elif dims <= {"agent", "user", "team", "key"}:
        table = DailyPeopleRollup
    else:
        table = DailyRollup
    return _filtered(table.objects.filter(day__gte=start, day__lte=end), **filters)


def _filtered(
    rows: QuerySet,
    *,
    provider: str | None,
    model: str | None,
    agent: str | None,
    user_id: int | None,
    source: str | None,
    team_id: int | None,
    key_id: int | None,
) -> QuerySet:
    if source:
        rows = rows.filter(source_filter(source))
    if team_id is not None:
        rows = rows.filter(team_id=team_id)
    if key_id is not None:
        rows = rows.filter(api_key_id=key_id)
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
    names = {
        "provider": "provider",
        "model": "model",
        "agent": "agent",
        "user_id": "user",
        "source": "agent",  # read from the agent slug (routing.sources)
        "team_id": "team",
        "key_id": "key",
    }
    return {names[key] for key, value in filters.items() if value is not None and value != ""}


def _grouped(part: QuerySet, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    if keys:
        return list(part.values(*keys).annotate(**_sum_expressions()).order_by())
    return [part.aggregate(**_sum_expressions())]


def _passes(
    row: dict[str, Any],
    *,
    provider: str | None,
    model: str | None,
    agent: str | None,
    user_id: int | None,
    source: str | None,
    team_id: int | None,
    key_id: int | None,
) -> bool:
    """Whether a live row passes the filters, as `_filtered` filters rollup rows."""
    return (
        (not source or source_of(row["agent"]) == source)
        and (team_id is None or row["team_id"] == team_id)
        and (key_id is None or row["api_key_id"] == key_id)
        and (not provider or row["provider__name"] == provider)
        and (not model or row["model_name"] == model)
        and (not agent or row["agent"] == agent)
        and (user_id is None or row["user_id"] == user_id)
    )


def _live_sums(*, coverage: Coverage) -> list[dict[str, Any]]:
    """The same column sums as `_grouped` gives for rollup rows, summed now from every ledger row
    the rollups do not hold, through the SQL that the refresh stores (`ledger_rollup_sql`), one
    row per day, provider, model, agent, user, team and key (`_LIVE_KEYS`, local and cloud added together)."""
    entries = live_entries(coverage=coverage, since=dt.date.min, until=dt.date.max)
    if entries is None or not entries.exists():
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
        "team_id": "r.team_id",
        "team__name": f"t.{quote('name')}",
        "api_key_id": "r.api_key_id",
        "api_key__prefix": f"k.{quote('prefix')}",
        "api_key__name": f"k.{quote('name')}",
    }
    keys = _LIVE_KEYS
    selected = [f"{key_sql[key]} AS {quote(key)}" for key in keys]
    selected += [f"SUM(r.{name}) AS sum_{name}" for name in MONEY_SUMS]
    selected += [f"SUM(CASE WHEN r.is_local THEN r.{name} ELSE 0 END) AS sum_local_{name}" for name in _LOCAL]
    selected.append(" || ',' || ".join(f"CAST(COALESCE(SUM(r.{name}), 0) AS TEXT)" for name in _PACKED) + " AS packed")
    joins = f" JOIN {quote(Provider._meta.db_table)} p ON p.id = r.provider_id"
    joins += f" LEFT JOIN {quote(users._meta.db_table)} u ON u.id = r.user_id"
    joins += f" LEFT JOIN {quote(_related_table('team'))} t ON t.id = r.team_id"
    joins += f" LEFT JOIN {quote(_related_table('api_key'))} k ON k.id = r.api_key_id"
    group = f" GROUP BY {', '.join(key_sql[key] for key in keys)}"
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


_LIVE_KEYS = ("day", "provider__name", "model_name", *_PEOPLE)


def _related_table(field: str) -> str:
    """The table of the ledger's foreign key `field` (accounts' Team and ApiKey, named through the
    ledger rather than imported: metrics reads accounts only as the ledger records it)."""
    return LedgerEntry._meta.get_field(field).related_model._meta.db_table


class _PackedSums(Func):
    """COALESCE(SUM(col), 0) of many integer columns in one expression, returned as "n,n,...".

    Django compiling seventy separate Sum() expressions per query cost more than PostgreSQL
    running it; one fixed template costs nothing to compile. `||` concatenates on PostgreSQL and
    SQLite alike. Each sum is cast to text first: PostgreSQL's `bigint || text` is a SQL function
    (anytextcat) that the planner inlines one by one, which took it ~5 ms per query; `text || text`
    is built in.
    """

    contains_aggregate = True
    output_field = CharField()

    def __init__(self, columns: tuple[str, ...]) -> None:
        super().__init__()
        self.columns = columns

    def as_sql(self, compiler, connection, **extra_context):
        table = connection.ops.quote_name(compiler.query.get_initial_alias())
        parts = [f"CAST(COALESCE(SUM({table}.{connection.ops.quote_name(c)}), 0) AS TEXT)" for c in self.columns]
        return " || ',' || ".join(parts), []


_PACKED = (*INT_SUMS, *LATENCY_FIELDS)
_LOCAL = ("calls", "successes")  # summed over local rows only: sum_local_calls, sum_local_successes
_PACKED_NAMES = tuple(f"sum_{name}" for name in _PACKED)
_NULLABLE_NAMES = (*(f"sum_{name}" for name in MONEY_SUMS), *(f"sum_local_{name}" for name in _LOCAL))
_ZEROS = {**{f"sum_{name}": Decimal(0) for name in MONEY_SUMS}, **{f"sum_local_{name}": 0 for name in _LOCAL}}
_SUM_NAMES = (*_NULLABLE_NAMES, *_PACKED_NAMES)


def _sum_expressions() -> dict[str, Any]:
    # Annotation names must differ from the columns they sum, hence the "sum_" prefix.
    expressions: dict[str, Any] = {f"sum_{name}": Sum(name) for name in MONEY_SUMS}
    expressions.update({f"sum_local_{name}": Sum(name, filter=Q(is_local=True)) for name in _LOCAL})
    expressions["packed"] = _PackedSums(_PACKED)
    return expressions


def _unpacked(row: dict[str, Any]) -> dict[str, Any]:
    """A fetched row with its packed integer sums spread out as sum_<column> keys, and a sum of no
    rows (NULL: no local call in the group, or no row at all) as zero, so every sum adds."""
    packed = row.pop("packed", None)
    if packed:
        row.update(zip(_PACKED_NAMES, map(int, packed.split(",")), strict=True))
    else:
        row.update(dict.fromkeys(_PACKED_NAMES, 0))
    for name in _NULLABLE_NAMES:
        if row[name] is None:
            row[name] = _ZEROS[name]
    return row


def sums_add(into: dict[str, Any], row: dict[str, Any]) -> None:
    """Add a row's sums into `into`, a row with the same sums (sums add; figures derived from them would not)."""
    # Pages add up hundreds of rows of ~40 sums each: this is the bulk of their Python time.
    into.update({name: into[name] + row[name] for name in _SUM_NAMES})


def _money(value: Decimal | float | None) -> Decimal:
    """A money sum as the database gave it: SQLite sums decimals as floats, so round them back to
    the ledger's ten places (as Django does for the rollup side)."""
    if value is None:
        return Decimal(0)
    return Decimal(str(value)).quantize(_TEN_PLACES) if isinstance(value, float) else Decimal(value)


_TEN_PLACES = Decimal("1e-10")


def _next_month(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
