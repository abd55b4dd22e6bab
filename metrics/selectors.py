"""Reading the metrics: cost, latency and volume history, breakdowns, and the monthly report.

Everything here reads the rollups (never the raw ledger), and from the smallest level that can
answer: MonthlyRollup for whole months, DailyModelRollup for provider and model, DailyPeopleRollup
for agent and user, DailyRollup when both are needed. So a page costs about the same with a thousand
ledger rows or a million. Days are UTC dates and ranges include both ends.

Every figure dict (a `history` period, a `breakdown` row, a report) carries these keys:

    calls, successes, failures        int   attempts, and how they ended
    error_rate                        Decimal  failures / calls in percent (2 dp), 0 with no calls
    runs                              int   agent runs, each counted once where its first call was
    prompt_tokens, completion_tokens  int
    cost_usd, baseline_cost_usd       Decimal  known costs summed (10 dp); see unpriced_calls
    savings_usd                       Decimal  baseline minus cost over calls where both are known
    unpriced_calls                    int   calls recorded with no price in force (cost unknown)
    local_calls                       int   calls answered or attempted on a local provider
    local_share                       Decimal  local_calls / calls in percent (2 dp), 0 with no calls
    p50_ms, p95_ms, p99_ms            int | None  latency of successful calls (from the histogram)
    mean_latency_ms                   int | None
    tokens_per_second                 Decimal | None  completion tokens / generation time (1 dp)
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from django.contrib.auth import get_user_model
from django.db.models import CharField, F, Func, Q, QuerySet, Sum
from django.db.models.functions import TruncMonth, TruncWeek

from metrics.models import (
    LATENCY_BOUNDS_MS,
    LATENCY_FIELDS,
    DailyModelRollup,
    DailyPeopleRollup,
    DailyRollup,
    MonthlyRollup,
)

Granularity = Literal["day", "week", "month"]
Dimension = Literal["provider", "model", "agent", "user"]

GRANULARITIES: tuple[str, ...] = ("day", "week", "month")
DIMENSIONS: tuple[str, ...] = ("provider", "model", "agent", "user")

_INT_SUMS = (
    "calls",
    "successes",
    "failures",
    "runs",
    "prompt_tokens",
    "completion_tokens",
    "unpriced_calls",
    "latency_sum_ms",
    "gen_completion_tokens",
    "gen_ms",
)
_MONEY_SUMS = ("cost_usd", "baseline_cost_usd", "savings_usd")
_CENT = Decimal("0.01")
_TENTH = Decimal("0.1")


def history(
    *,
    start: dt.date,
    end: dt.date,
    granularity: Granularity = "day",
    provider: str | None = None,
    model: str | None = None,
    agent: str | None = None,
    user_id: int | None = None,
) -> list[dict[str, Any]]:
    """One dict per period from `start` to `end` (both included), oldest first, gaps filled with zeros.

    Keys: `period` (datetime.date: the day, the Monday of the ISO week, or the 1st of the month;
    the first and last period may be partly outside the range and then count only days inside it)
    plus every figure key listed in the module docstring. Filters: provider name, model name,
    agent slug, user id; None means all.
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}")
    filters = {"provider": provider, "model": model, "agent": agent, "user_id": user_id}
    rows = _daily(start=start, end=end, dims=_dims(filters), **filters)
    if granularity == "day":
        period = F("day")
    elif granularity == "week":
        period = TruncWeek("day")
    else:
        period = TruncMonth("day")
    grouped = rows.annotate(period=period).values("period").annotate(**_sum_expressions()).order_by("period")
    by_period = {_as_date(row["period"]): figures_from_sums(_unpacked(row)) for row in grouped}
    empty = figures_from_sums({})
    return [{"period": p, **by_period.get(p, empty)} for p in _periods(start, end, granularity)]


def breakdown(
    *,
    start: dt.date,
    end: dt.date,
    by: Dimension,
    provider: str | None = None,
    model: str | None = None,
    agent: str | None = None,
    user_id: int | None = None,
) -> list[dict[str, Any]]:
    """The range's figures split by provider, model, agent or user, most calls first.

    Keys of each dict: `key` (provider name, model name, agent slug or user id; "" or None when
    the ledger named no agent or user), `label` (for display: "provider/model" for models,
    the username for users, "(none)" for a missing agent or user), `provider` (the provider name
    for `by="provider"` and `by="model"`, else None), `is_local` (bool for those two, else None),
    plus every figure key in the module docstring.
    """
    if by not in DIMENSIONS:
        raise ValueError(f"by must be one of {', '.join(DIMENSIONS)}")
    filters = {"provider": provider, "model": model, "agent": agent, "user_id": user_id}
    parts = _range_parts(start=start, end=end, dims=_dims(filters) | {by}, **filters)
    return _breakdown_rows(_merged(parts, keys=_BREAKDOWN_KEYS[by]), by=by)


def totals(
    *,
    start: dt.date,
    end: dt.date,
    provider: str | None = None,
    model: str | None = None,
    agent: str | None = None,
    user_id: int | None = None,
) -> dict[str, Any]:
    """The whole range's figures in one dict: every figure key in the module docstring."""
    filters = {"provider": provider, "model": model, "agent": agent, "user_id": user_id}
    merged = _merged(_range_parts(start=start, end=end, dims=_dims(filters), **filters), keys=())
    return figures_from_sums(merged[0] if merged else {})


def filter_choices() -> dict[str, list]:
    """What the filters can offer: values present in the rollups.

    Keys: `providers` (list of provider names), `models` (list of model names), `agents` (list of
    agent slugs, without the empty one), `users` (list of {"id": int, "username": str}); each sorted.
    """
    rows = MonthlyRollup.objects.all()  # the same values as the daily rows, in far fewer rows
    providers = sorted(set(rows.values_list("provider__name", flat=True).distinct()))
    models = sorted(set(rows.values_list("model_name", flat=True).distinct()))
    agents = sorted(a for a in set(rows.values_list("agent", flat=True).distinct()) if a)
    user_ids = set(rows.exclude(user=None).values_list("user_id", flat=True).distinct())
    users = get_user_model().objects.filter(pk__in=user_ids).order_by("username")
    return {
        "providers": providers,
        "models": models,
        "agents": agents,
        "users": [{"id": u.pk, "username": u.get_username()} for u in users],
    }


def monthly_report(*, month: str) -> dict[str, Any]:
    """The savings report for a UTC month "YYYY-MM": the stored snapshot for a finished month,
    else figures computed now. Raises ValueError for a malformed month.

    See `metrics.reports.report_build` for the keys (at least month, runs, calls, local_share,
    target_local_share, prompt_tokens, completion_tokens, cost_usd, baseline_cost_usd,
    savings_usd, by_provider, by_model, by_agent, by_user, previous, change). In this dict money,
    percentages and tokens per second are strings of fixed decimals, ready for JSON.
    """
    from metrics.reports import report_get  # the report module builds on these selectors

    return report_get(month=month)


# Building blocks shared with metrics.reports.


def rollups_filter(
    *,
    start: dt.date,
    end: dt.date,
    provider: str | None = None,
    model: str | None = None,
    agent: str | None = None,
    user_id: int | None = None,
) -> QuerySet:
    """Day-level rollup rows for the range and filters, from the smallest table that can answer
    (see `_daily`).
    Each row has `day`, `is_local` and the figure columns."""
    filters = {"provider": provider, "model": model, "agent": agent, "user_id": user_id}
    return _daily(start=start, end=end, dims=_dims(filters), **filters)


def totals_of(rows: QuerySet) -> dict[str, Any]:
    return figures_from_sums(_unpacked(rows.aggregate(**_sum_expressions())))


_BREAKDOWN_KEYS: dict[str, tuple[str, ...]] = {
    "provider": ("provider__name",),
    "model": ("provider__name", "model_name"),
    "agent": ("agent",),
    "user": ("user_id", "user__username"),
}


def _dims(filters: dict[str, Any]) -> set[str]:
    """The dimensions these filters need a rollup table to have."""
    names = {"provider": "provider", "model": "model", "agent": "agent", "user_id": "user"}
    return {names[key] for key, value in filters.items() if value is not None and value != ""}


def _daily(
    *,
    start: dt.date,
    end: dt.date,
    dims: set[str],
    provider: str | None,
    model: str | None,
    agent: str | None,
    user_id: int | None,
) -> QuerySet:
    """Day-level rows from the smallest table that has every needed dimension: DailyModelRollup
    (a few rows a day) for provider and model, DailyPeopleRollup for agent and user, else DailyRollup."""
    if start > end:
        raise ValueError("start must not be after end")
    if dims <= {"provider", "model"}:
        table = DailyModelRollup
    elif dims <= {"agent", "user"}:
        table = DailyPeopleRollup
    else:
        table = DailyRollup
    rows = table.objects.filter(day__gte=start, day__lte=end)
    return _filtered(rows, provider=provider, model=model, agent=agent, user_id=user_id)


def _range_parts(*, start: dt.date, end: dt.date, dims: set[str], **filters: Any) -> list[QuerySet]:
    """The range as querysets that add up to it: whole months from MonthlyRollup (a few hundred
    rows a month), the ragged days either side from the smallest daily table that will do."""
    if start > end:
        raise ValueError("start must not be after end")
    first_full = start if start.day == 1 else _next_month(start)
    months = []
    while _next_month(first_full) - dt.timedelta(days=1) <= end:
        months.append(first_full)
        first_full = _next_month(first_full)
    if not months or dims <= {"provider", "model"}:
        # DailyModelRollup has fewer rows for a month than MonthlyRollup, which keeps agents and users.
        return [_daily(start=start, end=end, dims=dims, **filters)]
    parts = [_filtered(MonthlyRollup.objects.filter(month__in=months), **filters)]
    for low, high in ((start, months[0] - dt.timedelta(days=1)), (_next_month(months[-1]), end)):
        if low <= high:
            parts.append(_daily(start=low, end=high, dims=dims, **filters))
    return parts


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


def _merged(parts: list[QuerySet], *, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Column sums grouped by `keys`, added up across the parts (sums add; derived figures would not)."""
    merged: dict[tuple, dict[str, Any]] = {}
    for part in parts:
        grouped = (
            part.values(*keys).annotate(**_sum_expressions()).order_by()
            if keys
            else [part.aggregate(**_sum_expressions())]
        )
        for row in map(_unpacked, grouped):
            ident = tuple(row[key] for key in keys)
            if ident not in merged:
                merged[ident] = dict(row)
                continue
            into = merged[ident]
            for name, value in row.items():
                if name.startswith("sum_") and value is not None:
                    into[name] = value if into[name] is None else into[name] + value
    return list(merged.values())


def breakdown_of(rows: QuerySet, *, by: Dimension) -> list[dict[str, Any]]:
    """`breakdown` over rows you already chose (any rollup level with the needed columns)."""
    return _breakdown_rows(_merged([rows], keys=_BREAKDOWN_KEYS[by]), by=by)


def _breakdown_rows(grouped: list[dict[str, Any]], *, by: str) -> list[dict[str, Any]]:
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


def figures_from_sums(sums: dict[str, Any]) -> dict[str, Any]:
    """Turn the raw column sums of some rollup rows into the public figure keys."""
    ints = {name: int(sums.get(f"sum_{name}") or 0) for name in _INT_SUMS}
    money = {name: Decimal(sums.get(f"sum_{name}") or 0) for name in _MONEY_SUMS}
    local_calls = int(sums.get("sum_local_calls") or 0)
    histogram = [int(sums.get(f"sum_{name}") or 0) for name in LATENCY_FIELDS]
    calls, successes = ints["calls"], ints["successes"]
    return {
        "calls": calls,
        "successes": successes,
        "failures": ints["failures"],
        "error_rate": _percent(ints["failures"], calls),
        "runs": ints["runs"],
        "prompt_tokens": ints["prompt_tokens"],
        "completion_tokens": ints["completion_tokens"],
        "cost_usd": money["cost_usd"],
        "baseline_cost_usd": money["baseline_cost_usd"],
        "savings_usd": money["savings_usd"],
        "unpriced_calls": ints["unpriced_calls"],
        "local_calls": local_calls,
        "local_share": _percent(local_calls, calls),
        "p50_ms": percentile_from_histogram(histogram, 0.50),
        "p95_ms": percentile_from_histogram(histogram, 0.95),
        "p99_ms": percentile_from_histogram(histogram, 0.99),
        "mean_latency_ms": round(ints["latency_sum_ms"] / successes) if successes else None,
        "tokens_per_second": (
            (Decimal(ints["gen_completion_tokens"]) * 1000 / ints["gen_ms"]).quantize(_TENTH, ROUND_HALF_UP)
            if ints["gen_ms"]
            else None
        ),
    }


def percentile_from_histogram(counts: list[int], q: float) -> int | None:
    """The q-quantile (0..1) of the latencies counted in `counts`, interpolated inside its bucket."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            low = LATENCY_BOUNDS_MS[index - 1] if index else 0
            if index == len(LATENCY_BOUNDS_MS):
                return low  # the open-ended top bucket: report its floor rather than invent a ceiling
            high = LATENCY_BOUNDS_MS[index]
            return round(low + (high - low) * (rank - seen) / count)
        seen += count
    return None


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


_PACKED = (*_INT_SUMS, *LATENCY_FIELDS)


def _sum_expressions() -> dict[str, Any]:
    # Annotation names must differ from the columns they sum, hence the "sum_" prefix.
    expressions: dict[str, Any] = {f"sum_{name}": Sum(name) for name in _MONEY_SUMS}
    expressions["sum_local_calls"] = Sum("calls", filter=Q(is_local=True))
    expressions["packed"] = _PackedSums(_PACKED)
    return expressions


def _unpacked(row: dict[str, Any]) -> dict[str, Any]:
    """A fetched row with its packed integer sums spread out as sum_<column> keys."""
    packed = row.pop("packed", None)
    if packed:
        row.update({f"sum_{name}": int(value) for name, value in zip(_PACKED, packed.split(","), strict=True)})
    return row


def _percent(part: int, whole: int) -> Decimal:
    if not whole:
        return Decimal("0.00")
    return (Decimal(part) * 100 / whole).quantize(_CENT, ROUND_HALF_UP)


def _next_month(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def _as_date(value: dt.date | dt.datetime) -> dt.date:
    return value.date() if isinstance(value, dt.datetime) else value


def _periods(start: dt.date, end: dt.date, granularity: str) -> list[dt.date]:
    if granularity == "day":
        return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    if granularity == "week":
        first = start - dt.timedelta(days=start.weekday())
        return [first + dt.timedelta(weeks=i) for i in range((end - first).days // 7 + 1)]
    periods, current = [], start.replace(day=1)
    while current <= end:
        periods.append(current)
        current = (current + dt.timedelta(days=32)).replace(day=1)
    return periods
