"""The history pages: cost, usage, latency and local share over a date range, as page or CSV.

Every page reads `metrics.selectors`. A page is cards, charts and tables; a table is a list of
column specs over the selector's rows, so the CSV (`?format=csv`) holds exactly the rows and
columns shown, each value in its machine format.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import render

from core.formatting import count, percent
from core.months import month_label
from core.tables import Column, Table, csv_write, key
from metrics import selectors
from metrics.forms import DEFAULT_DAYS, HistoryFilterForm, utc_today
from metrics.views.common import MAX_CHART_BARS, PAGES, card, chart, share_verdict, staff_page, tabs
from routing.selectors import routing_policy

_PERIOD_HEADERS = {"day": "Day", "week": "Week starting", "month": "Month"}


def _period_column(granularity: str) -> Column:
    label = month_label if granularity == "month" else dt.date.isoformat
    return Column(_PERIOD_HEADERS[granularity], lambda row: label(row["period"]))


def _labels(periods: list[dict[str, Any]], granularity: str) -> list[str]:
    column = _period_column(granularity)
    return [column.value(p) for p in periods]


COST_COLUMNS = [
    key("calls", "Calls", "count"),
    key("local_share", "Local share", "percent"),
    key("cost_usd", "Cost", "money"),
    key("baseline_cost_usd", "Cloud baseline", "money"),
    key("savings_usd", "Savings", "money"),
    key("unpriced_calls", "Unpriced calls", "count"),
]
USAGE_COLUMNS = [
    key("calls", "Calls", "count"),
    key("failures", "Failures", "count"),
    key("error_rate", "Error rate", "percent"),
    key("prompt_tokens", "Prompt tokens", "count"),
    key("completion_tokens", "Completion tokens", "count"),
    key("cost_usd", "Cost", "money"),
    key("savings_usd", "Savings", "money"),
]
LATENCY_COLUMNS = [
    key("calls", "Calls", "count"),
    key("failures", "Failures", "count"),
    key("error_rate", "Error rate", "percent"),
    key("p50_ms", "p50 (ms)", "ms"),
    key("p95_ms", "p95 (ms)", "ms"),
    key("p99_ms", "p99 (ms)", "ms"),
    key("tokens_per_second", "Tokens / s", "rate"),
]


def _local_share_columns(target: Any) -> list[Column]:
    return [
        key("calls", "Calls", "count"),
        key("successes", "Successful calls", "count"),
        key("local_successes", "Local successes", "count"),
        key("local_share", "Local share", "percent"),
        key("error_rate", "Error rate", "percent"),
        Column("Target", lambda row: target, "percent"),
    ]


def _sum(periods: list[dict[str, Any]], name: str) -> Any:
    return sum(p[name] for p in periods)


# Who made the calls: each breakdown's rows add up to the range (a call with no team or key is in a
# row of its own), each figure from metrics.figures through the selectors.
SPLITS = (("source", "Source"), ("team", "Team"), ("key", "API key"))


def _split_tables(
    filters: dict[str, Any], columns: list[Column], reading: selectors.Reading, *, splits=SPLITS
) -> list[dict[str, Any]]:
    sections = []
    for by, header in splits:
        rows = selectors.breakdown(by=by, reading=reading, **filters)
        sections.append(
            {"charts": [], "table": Table(f"by-{by}", f"By {header.lower()}", [key("label", header), *columns], rows)}
        )
    return sections


def _cost_page(filters: dict[str, Any], granularity: str, reading: selectors.Reading) -> dict[str, Any]:
    periods = selectors.history(granularity=granularity, reading=reading, **filters)
    labels = _labels(periods, granularity)
    table = Table("cost", f"Cost per {granularity}", [_period_column(granularity), *COST_COLUMNS], periods)
    cost_chart = chart(
        "cost",
        f"Cost, cloud baseline and savings per {granularity} (USD)",
        unit="usd",
        labels=labels,
        datasets=[
            {"label": "Cost", "data": [p["cost_usd"] for p in periods], "color": "cost"},
            {"label": "Cloud baseline", "data": [p["baseline_cost_usd"] for p in periods], "color": "baseline"},
            {"label": "Savings", "data": [p["savings_usd"] for p in periods], "color": "savings", "type": "line"},
        ],
    )
    # Sums add up across periods, so the cards need no second query.
    totals = {name: _sum(periods, name) for name in ("cost_usd", "baseline_cost_usd", "savings_usd", "unpriced_calls")}
    unpriced = totals["unpriced_calls"]
    cards = [
        card("Cost", "money", totals["cost_usd"]),
        card("Cloud baseline", "money", totals["baseline_cost_usd"], "the same tokens on the baseline model"),
        card("Savings", "money", totals["savings_usd"]),
        card("Unpriced calls", "count", unpriced, "no price in force: cost unknown" if unpriced else ""),
    ]
    sections = [{"charts": [cost_chart], "table": table}, *_split_tables(filters, COST_COLUMNS, reading)]
    return {"cards": cards, "sections": sections}


def _usage_section(filters: dict[str, Any], by: str, reading: selectors.Reading) -> dict[str, Any]:
    rows = selectors.breakdown(by=by, reading=reading, **filters)
    table = Table(f"by-{by}", f"By {by}", [key("label", by.capitalize()), *USAGE_COLUMNS], rows)
    top = rows[:MAX_CHART_BARS]
    labels = [r["label"] for r in top]
    more = f" (top {MAX_CHART_BARS} of {len(rows)})" if len(rows) > MAX_CHART_BARS else ""
    calls = chart(
        f"calls-{by}",
        f"Calls by {by}{more}",
        unit="count",
        labels=labels,
        horizontal=True,
        stacked=True,
        datasets=[
            {"label": "Succeeded", "data": [r["successes"] for r in top], "color": "ok"},
            {"label": "Failed", "data": [r["failures"] for r in top], "color": "bad"},
        ],
    )
    tokens = chart(
        f"tokens-{by}",
        f"Tokens by {by}{more}",
        unit="tokens",
        labels=labels,
        horizontal=True,
        stacked=True,
        datasets=[
            {"label": "Prompt", "data": [r["prompt_tokens"] for r in top], "color": "prompt"},
            {"label": "Completion", "data": [r["completion_tokens"] for r in top], "color": "completion"},
        ],
    )
    return {"charts": [calls, tokens], "table": table}


def _usage_page(filters: dict[str, Any], granularity: str, reading: selectors.Reading) -> dict[str, Any]:
    sections = [_usage_section(filters, by, reading) for by in ("provider", "model", "agent")]
    providers = sections[0]["table"].rows  # every call has a provider: these rows add up to the range
    cards = [
        card(label, "count", sum(r[name] for r in providers))
        for label, name in (
            ("Calls", "calls"),
            ("Failures", "failures"),
            ("Prompt tokens", "prompt_tokens"),
            ("Completion tokens", "completion_tokens"),
        )
    ]
    return {"cards": cards, "sections": sections}


def _latency_page(filters: dict[str, Any], granularity: str, reading: selectors.Reading) -> dict[str, Any]:
    periods = selectors.history(granularity=granularity, reading=reading, **filters)
    labels = _labels(periods, granularity)
    table = Table(
        "latency", f"Latency and errors per {granularity}", [_period_column(granularity), *LATENCY_COLUMNS], periods
    )
    latency = chart(
        "latency",
        f"Latency of successful calls per {granularity} (ms)",
        unit="ms",
        labels=labels,
        datasets=[
            {"label": name, "data": [p[f"{name}_ms"] for p in periods], "color": name, "type": "line"}
            for name in ("p50", "p95", "p99")
        ],
    )
    speed = chart(
        "tokens-per-second",
        f"Generation speed per {granularity} (tokens / s)",
        unit="tps",
        labels=labels,
        datasets=[
            {"label": "Tokens / s", "data": [p["tokens_per_second"] for p in periods], "color": "cost", "type": "line"}
        ],
    )
    errors = chart(
        "error-rate",
        f"Error rate per {granularity} (% of calls)",
        unit="pct",
        labels=labels,
        datasets=[
            {"label": "Error rate", "data": [p["error_rate"] if p["calls"] else None for p in periods], "color": "bad"}
        ],
    )
    # Percentiles of the whole range: not a sum of the periods' ones.
    totals = selectors.range_figures(reading=reading, **filters)
    cards = [
        card("p50", "ms", totals["p50_ms"], "ms, successful calls"),
        card("p95", "ms", totals["p95_ms"], "ms"),
        card("p99", "ms", totals["p99_ms"], "ms"),
        card("Tokens / s", "rate", totals["tokens_per_second"]),
        card(
            "Error rate",
            "percent",
            totals["error_rate"],
            f"{count(totals['failures'])} of {count(totals['calls'])} calls",
        ),
    ]
    sections = [
        {"charts": [latency, speed, errors], "table": table},
        *_split_tables(filters, LATENCY_COLUMNS, reading, splits=SPLITS[:1]),
    ]
    return {"cards": cards, "sections": sections}


def _local_share_page(filters: dict[str, Any], granularity: str, reading: selectors.Reading) -> dict[str, Any]:
    periods = selectors.history(granularity=granularity, reading=reading, **filters)
    labels = _labels(periods, granularity)
    target = routing_policy().target_local_share
    table = Table(
        "local-share",
        f"Local share per {granularity}",
        [_period_column(granularity), *_local_share_columns(target)],
        periods,
    )
    share_chart = chart(
        "local-share",
        f"Share of successful calls answered locally per {granularity} (%)",
        unit="pct",
        labels=labels,
        max=100,
        datasets=[
            {"label": "Local share", "data": [p["local_share"] for p in periods], "color": "savings"},
            {
                "label": f"Target ({percent(target)})",
                "data": [target] * len(periods),
                "color": "target",
                "type": "line",
                "dashed": True,
            },
        ],
    )
    totals = selectors.range_figures(
        reading=reading, **filters
    )  # the one definition of the share: never recomputed here
    verdict, state = share_verdict(totals["local_share"], target)
    cards = [
        card("Local share", "percent", totals["local_share"], verdict, state),
        card("Target", "percent", target, "set in the routing policy"),
        card("Error rate", "percent", totals["error_rate"], f"{count(totals['failures'])} failed calls"),
        card("Local successes", "count", totals["local_successes"], f"of {count(totals['successes'])}"),
    ]
    return {"cards": cards, "sections": [{"charts": [share_chart], "table": table}]}


_BUILDERS: dict[str, Callable[[dict[str, Any], str, selectors.Reading], dict[str, Any]]] = {
    "cost": _cost_page,
    "usage": _usage_page,
    "latency": _latency_page,
    "local_share": _local_share_page,
}


def _with_defaults(query: QueryDict) -> QueryDict:
    """The GET data with the default range filled in, so the form shows what the page covers."""
    data = query.copy()
    end = utc_today()
    data.setdefault("end", end.isoformat())
    data.setdefault("start", (end - dt.timedelta(days=DEFAULT_DAYS - 1)).isoformat())
    data.setdefault("granularity", "day")
    return data


def _history(request: HttpRequest, page: str) -> HttpResponse:
    # One reading for the whole page: the coverage worked out and the ledger read live once.
    reading = selectors.Reading.take()
    form = HistoryFilterForm(_with_defaults(request.GET), choices=selectors.filter_choices(reading=reading))
    wants_csv = request.GET.get("format") == "csv"
    if not form.is_valid():
        if wants_csv:
            return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
        return render(request, "metrics/history.html", _page_context(request, page, form, reading), status=400)
    filters, granularity = form.selector_filters(), form.cleaned_data["granularity"]
    content = _BUILDERS[page](filters, granularity, reading)
    if wants_csv:
        return _csv_response(
            [s["table"] for s in content["sections"]], f"switchyard-{page}-{filters['start']}-{filters['end']}"
        )
    return render(request, "metrics/history.html", {**_page_context(request, page, form, reading), **content})


def _page_context(
    request: HttpRequest, page: str, form: HistoryFilterForm, reading: selectors.Reading
) -> dict[str, Any]:
    query = request.GET.copy()
    query["format"] = "csv"
    state = reading.state
    return {
        "form": form,
        "page": page,
        "page_title": dict(PAGES)[page],
        "tabs": tabs(),
        "filter_query": request.GET.urlencode(),
        "csv_url": f"{request.path}?{query.urlencode()}",
        "refreshed_at": state.last_started_at if state else None,
    }


def _csv_response(tables: list[Table], filename: str) -> HttpResponse:
    """One table as is; several (the same columns after the first) get leading `table` and `name` columns."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
    if len(tables) == 1:
        csv_write(out=response, columns=tables[0].columns, rows=tables[0].rows)
        return response
    for index, table in enumerate(tables):
        first, *rest = table.columns
        columns = [Column("table", lambda row, slug=table.slug: slug), Column("name", first.value, first.kind), *rest]
        csv_write(out=response, columns=columns, rows=table.rows, header=index == 0)
    return response


@staff_page
def cost(request: HttpRequest) -> HttpResponse:
    return _history(request, "cost")


@staff_page
def usage(request: HttpRequest) -> HttpResponse:
    return _history(request, "usage")


@staff_page
def latency(request: HttpRequest) -> HttpResponse:
    return _history(request, "latency")


@staff_page
def local_share(request: HttpRequest) -> HttpResponse:
    return _history(request, "local_share")
