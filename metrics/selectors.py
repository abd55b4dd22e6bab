"""Reading the metrics: cost, latency and volume history, breakdowns and totals, fresh to the request.

What every figure means is in metrics.figures (`Figures`, `Totals`, `RunCounts`); where the sums
come from (rollups for the days they hold, the ledger live for the rest, so every row committed
before the request is in) is in metrics.sums. Days are UTC dates and ranges include both ends.
A page costs about the same with a thousand ledger rows or a million. Nothing here writes.

Each selector takes an optional `reading` (`Reading.take()`): a page or report that calls several
passes one, so the coverage is worked out and the ledger read live once, not once per call.
Without it a call takes its own.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from django.contrib.auth import get_user_model

from metrics.figures import (
    BreakdownRow,
    Figures,
    HistoryRow,
    RunCounts,
    Totals,
    figures_from_sums,
)
from metrics.models import MonthlyRollup, RollupState
from metrics.runs import runs_without_calls_count
from metrics.sums import Reading, range_sums, sums_add
from routing.sources import Source, source_of

__all__ = [
    "Figures",
    "Reading",
    "RunCounts",
    "Totals",
    "breakdown",
    "filter_choices",
    "history",
    "key_label",
    "range_figures",
    "run_counts",
    "totals",
]

Granularity = Literal["day", "week", "month"]
Dimension = Literal["provider", "model", "agent", "user", "source", "team", "key"]

GRANULARITIES: tuple[str, ...] = ("day", "week", "month")
DIMENSIONS: tuple[str, ...] = ("provider", "model", "agent", "user", "source", "team", "key")
SOURCES: tuple[str, ...] = tuple(Source.values)


def history(
    *,
    start: dt.date,
    end: dt.date,
    granularity: Granularity = "day",
    provider: str | None = None,
    model: str | None = None,
    agent: str | None = None,
    user_id: int | None = None,
    source: str | None = None,
    team_id: int | None = None,
    key_id: int | None = None,
    reading: Reading | None = None,
) -> list[HistoryRow]:
    """One row per period from `start` to `end` (both included), oldest first, gaps filled with zeros.

    A period is a day, an ISO week (its Monday) or a calendar month (its 1st); the first and last
    may be partly outside the range and then count only days inside it. Filters: provider name,
    model name, agent slug, user id, source ("agents" or "gateway", routing.sources), team id,
    API key id; None means all.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}")
    filters = _filters(provider, model, agent, user_id, source, team_id, key_id)
    by_period: dict[dt.date, dict[str, Any]] = {}
    reading = reading or Reading.take()
    for row in range_sums(start=start, end=end, filters=filters, keys=("day",), whole_months=False, reading=reading):
        period = _period_of(row["day"], granularity)
        if period in by_period:
            sums_add(by_period[period], row)
        else:
            by_period[period] = row  # range_sums hands out dicts of their own
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
    source: str | None = None,
    team_id: int | None = None,
    key_id: int | None = None,
    reading: Reading | None = None,
) -> list[BreakdownRow]:
    """The range's figures split by provider, model, agent, user, source, team or API key, most calls first.

    The rows add up to the range's figures: a call with no team or no key is in a "(none)" row."""
    if by not in DIMENSIONS:
        raise ValueError(f"by must be one of {', '.join(DIMENSIONS)}")
    filters = _filters(provider, model, agent, user_id, source, team_id, key_id)
    keys = _BREAKDOWN_KEYS[by]
    rows = range_sums(
        start=start, end=end, filters=filters, keys=keys, whole_months=True, reading=reading or Reading.take()
    )
    if by == "source":
        rows = _by_source(rows)
    return _breakdown_rows(rows, by=by)


def totals(
    *,
    start: dt.date,
    end: dt.date,
    provider: str | None = None,
    model: str | None = None,
    agent: str | None = None,
    user_id: int | None = None,
    source: str | None = None,
    team_id: int | None = None,
    key_id: int | None = None,
    reading: Reading | None = None,
) -> Totals:
    """The whole range's figures in one dict, with every run counted (see metrics.figures.Totals)."""
    filters = _filters(provider, model, agent, user_id, source, team_id, key_id)
    reading = reading or Reading.take()
    figures = range_figures(start=start, end=end, reading=reading, **filters)
    without = _runs_without_calls(start=start, end=end, state=reading.state, **filters)
    return {**figures, "runs": figures["runs"] + without, "runs_without_calls": without}


def range_figures(
    *,
    start: dt.date,
    end: dt.date,
    provider: str | None = None,
    model: str | None = None,
    agent: str | None = None,
    user_id: int | None = None,
    source: str | None = None,
    team_id: int | None = None,
    key_id: int | None = None,
    reading: Reading | None = None,
) -> Figures:
    """The whole range's figures as the ledger has them: `totals` without the runs that made no
    call (counting those is a query of its own, which a page showing no run count can spare)."""
    filters = _filters(provider, model, agent, user_id, source, team_id, key_id)
    rows = range_sums(
        start=start, end=end, filters=filters, keys=(), whole_months=True, reading=reading or Reading.take()
    )
    return figures_from_sums(rows[0] if rows else {})


def run_counts(
    *,
    start: dt.date,
    end: dt.date,
    provider: str | None = None,
    model: str | None = None,
    agent: str | None = None,
    user_id: int | None = None,
    source: str | None = None,
    team_id: int | None = None,
    key_id: int | None = None,
    reading: Reading | None = None,
) -> RunCounts:
    """The range's agent runs: all of them, those that made no provider call, and how their checks went."""
    filters = _filters(provider, model, agent, user_id, source, team_id, key_id)
    figures = totals(start=start, end=end, reading=reading, **filters)
    return {key: figures[key] for key in RunCounts.__annotations__}


def filter_choices(*, reading: Reading | None = None) -> dict[str, list]:
    """What the filters can offer: values present in the ledger.

    Keys: `providers` (list of provider names), `models` (list of model names), `agents` (list of
    agent slugs, without the empty one), `users` (list of {"id": int, "username": str}), `sources`
    (every source, present or not), `teams` (list of {"id": int, "name": str}), `keys` (list of
    {"id": int, "label": str}: the key's prefix and name, never more); each sorted.
    """
    # MonthlyRollup has the same values as the daily rows in far fewer rows; the ledger not rolled up yet adds its own.
    columns = ("provider__name", "model_name", "agent", "user_id", "team_id", "team__name", *_KEY_LABEL)
    rolled = MonthlyRollup.objects.values_list(*columns).distinct()
    live = (reading or Reading.take()).live_rows(start=dt.date.min, end=dt.date.max)
    seen = set(rolled) | {tuple(row[column] for column in columns) for row in live}
    user_ids = {row[3] for row in seen if row[3] is not None}
    users = get_user_model().objects.filter(pk__in=user_ids).order_by("username")
    teams = {row[4]: row[5] for row in seen if row[4] is not None}
    keys = {row[6]: key_label(prefix=row[7], name=row[8]) for row in seen if row[6] is not None}
    return {
        "providers": sorted({row[0] for row in seen}),
        "models": sorted({row[1] for row in seen}),
        "agents": sorted({row[2] for row in seen if row[2]}),
        "users": [{"id": u.pk, "username": u.get_username()} for u in users],
        "sources": list(SOURCES),
        "teams": [{"id": pk, "name": name} for pk, name in sorted(teams.items(), key=lambda item: (item[1], item[0]))],
        "keys": [{"id": pk, "label": label} for pk, label in sorted(keys.items(), key=lambda item: (item[1], item[0]))],
    }


def key_label(*, prefix: str | None, name: str | None) -> str:
    """An API key as pages and reports show it: its visible prefix and its name, never the secret."""
    if prefix is None:
        return "(no key)"
    return f"{prefix}… ({name})" if name else f"{prefix}…"


_KEY_LABEL = ("api_key_id", "api_key__prefix", "api_key__name")


def _filters(
    provider: str | None,
    model: str | None,
    agent: str | None,
    user_id: int | None,
    source: str | None,
    team_id: int | None,
    key_id: int | None,
) -> dict[str, Any]:
    if source is not None and source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}")
    return {
        "provider": provider,
        "model": model,
        "agent": agent,
        "user_id": user_id,
        "source": source,
        "team_id": team_id,
        "key_id": key_id,
    }


def _runs_without_calls(
    *,
    start: dt.date,
    end: dt.date,
    state: RollupState | None,
    provider: str | None,
    model: str | None,
    agent: str | None,
    user_id: int | None,
    source: str | None,
    team_id: int | None,
    key_id: int | None,
) -> int:
    if provider or model:
        return 0  # such a run reached no provider and no model
    if source == Source.GATEWAY or key_id is not None:
        return 0  # the gateway makes no runs, and a run is made with no API key of its own
    return runs_without_calls_count(start=start, end=end, state=state, agent=agent, user_id=user_id, team_id=team_id)


_BREAKDOWN_KEYS: dict[str, tuple[str, ...]] = {
    "provider": ("provider__name",),
    "model": ("provider__name", "model_name"),
    "agent": ("agent",),
    "user": ("user_id", "user__username"),
    "source": ("agent",),  # then added up by source (routing.sources)
    "team": ("team_id", "team__name"),
    "key": _KEY_LABEL,
}

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
        elif by == "user":
            ident = {"key": row["user_id"], "label": row["user__username"] or "(none)", "provider": None}
        elif by == "source":
            ident = {"key": row["source"], "label": Source(row["source"]).label, "provider": None}
        elif by == "team":
            ident = {"key": row["team_id"], "label": row["team__name"] or "(no team)", "provider": None}
        else:
            label = key_label(prefix=row["api_key__prefix"], name=row["api_key__name"])
            ident = {"key": row["api_key_id"], "label": label, "provider": None}
        # The ledger flags locality per call; a provider counts as local when all its calls were.
        ident["is_local"] = figures["local_calls"] == figures["calls"] if by in ("provider", "model") else None
        result.append({**ident, **figures})
    result.sort(key=lambda r: (-r["calls"], r["label"]))
    return result


def _by_source(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows grouped by agent slug, added up by their source: the one rule, `routing.sources.source_of`."""
    merged: dict[str, dict[str, Any]] = {}
    for row in rows:
        source = source_of(row.pop("agent"))
        if source in merged:
            sums_add(merged[source], row)
        else:
            merged[source] = {**row, "source": source.value}
    return list(merged.values())


# --- Days and periods.


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
