"""Staff pages: cost, usage, latency and local-share history, and the printable monthly report.

Every page reads `metrics.selectors` (rollups, never the raw ledger). A page is built as cards,
charts and tables of raw values; the same tables give the HTML and the CSV (`?format=csv`),
so the CSV holds exactly the rows and columns shown, with the same rounding.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse

from metrics import figures, reports, selectors
from metrics.forms import DEFAULT_DAYS, HistoryFilterForm, MonthPickerForm, utc_today
from metrics.models import RollupState
from routing.selectors import routing_policy

_CENT = Decimal("0.01")
_SMALL_USD = Decimal("0.0001")
_MISSING = "\N{EN DASH}"  # a figure with no data, e.g. latency with no successful call
MAX_CHART_BARS = 15  # a breakdown chart shows the biggest entries; its table shows them all

# --- Formatting: one raw value, two renderings (page and CSV) that differ only in decoration.


def _plain(kind: str, value: Any) -> str:
    if value is None:
        return ""
    if kind == "usd":
        # Cents for dollars; four places below a dollar, where a local team's costs often are.
        value = Decimal(value)
        return str(value.quantize(_CENT if value == 0 or abs(value) >= 1 else _SMALL_USD, ROUND_HALF_UP))
    if kind == "pct":
        return str(Decimal(value).quantize(_CENT, ROUND_HALF_UP))
    return str(value)


def _display(kind: str, value: Any) -> str:
    plain = _plain(kind, value)
    if value is None:
        return _MISSING
    if kind == "usd":
        amount = Decimal(plain)
        return f"{'-' if amount < 0 else ''}${abs(amount):,}"
    if kind == "pct":
        return f"{plain}%"
    if kind in ("int", "ms"):
        return f"{int(value):,}"
    return plain


@dataclass
class Table:
    slug: str
    title: str
    columns: list[tuple[str, str]]  # (header, kind); kinds: text, int, usd, pct, ms, tps
    rows: list[list[Any]] = field(default_factory=list)

    def display_rows(self) -> list[list[tuple[str, bool]]]:
        """Each cell as (text, is_numeric) for the template."""
        kinds = [kind for _, kind in self.columns]
        return [[(_display(k, v), k != "text") for k, v in zip(kinds, row, strict=True)] for row in self.rows]

    def csv_rows(self) -> list[list[str]]:
        kinds = [kind for _, kind in self.columns]
        return [[_plain(k, v) for k, v in zip(kinds, row, strict=True)] for row in self.rows]


def _chart(
    slug: str, title: str, *, unit: str, labels: list[str], datasets: list[dict[str, Any]], **options: Any
) -> dict[str, Any]:
    """The JSON that static/metrics/charts.js draws. Numbers become floats: they are only drawn."""
    for dataset in datasets:
        dataset["data"] = [None if v is None else float(v) for v in dataset["data"]]
    return {"id": f"chart-{slug}", "title": title, "unit": unit, "labels": labels, "datasets": datasets, **options}


# --- The history pages.

PAGES = (
    ("cost", "Cost & savings"),
    ("usage", "Calls & tokens"),
    ("latency", "Latency & errors"),
    ("local_share", "Local share"),
)
_PERIOD_HEADERS = {"day": "Day", "week": "Week starting", "month": "Month"}


def _period_label(period: dt.date, granularity: str) -> str:
    return f"{period:%Y-%m}" if granularity == "month" else period.isoformat()


def _target_local_share() -> Decimal:
    return routing_policy().target_local_share


def _card(label: str, kind: str, value: Any, note: str = "") -> dict[str, str]:
    return {"label": label, "value": _display(kind, value), "note": note}


def _sum(periods: list[dict[str, Any]], key: str) -> Any:
    return sum((p[key] for p in periods), Decimal(0) if key.endswith("_usd") else 0)


def _cost_page(filters: dict[str, Any], granularity: str) -> dict[str, Any]:
    periods = selectors.history(granularity=granularity, **filters)
    labels = [_period_label(p["period"], granularity) for p in periods]
    table = Table(
        "cost",
        f"Cost per {granularity}",
        [
            (_PERIOD_HEADERS[granularity], "text"),
            ("Calls", "int"),
            ("Cost", "usd"),
            ("Cloud baseline", "usd"),
            ("Savings", "usd"),
            ("Unpriced calls", "int"),
        ],
        [
            [label, p["calls"], p["cost_usd"], p["baseline_cost_usd"], p["savings_usd"], p["unpriced_calls"]]
            for label, p in zip(labels, periods, strict=True)
        ],
    )
    chart = _chart(
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
    unpriced = _sum(periods, "unpriced_calls")
    cards = [
        _card("Cost", "usd", _sum(periods, "cost_usd")),
        _card("Cloud baseline", "usd", _sum(periods, "baseline_cost_usd"), "the same tokens on the baseline model"),
        _card("Savings", "usd", _sum(periods, "savings_usd")),
        _card("Unpriced calls", "int", unpriced, "no price in force: cost unknown" if unpriced else ""),
    ]
    return {"cards": cards, "sections": [{"charts": [chart], "table": table}]}


_USAGE_COLUMNS = [
    ("Calls", "int"),
    ("Failures", "int"),
    ("Error rate", "pct"),
    ("Prompt tokens", "int"),
    ("Completion tokens", "int"),
    ("Cost", "usd"),
    ("Savings", "usd"),
]


def _usage_section(filters: dict[str, Any], by: str) -> dict[str, Any]:
    rows = selectors.breakdown(by=by, **filters)
    table = Table(
        f"by-{by}",
        f"By {by}",
        [(by.capitalize(), "text"), *_USAGE_COLUMNS],
        [
            [
                r["label"],
                r["calls"],
                r["failures"],
                r["error_rate"],
                r["prompt_tokens"],
                r["completion_tokens"],
                r["cost_usd"],
                r["savings_usd"],
            ]
            for r in rows
        ],
    )
    top = rows[:MAX_CHART_BARS]
    labels = [r["label"] for r in top]
    more = f" (top {MAX_CHART_BARS} of {len(rows)})" if len(rows) > MAX_CHART_BARS else ""
    calls = _chart(
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
    tokens = _chart(
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


def _usage_page(filters: dict[str, Any], granularity: str) -> dict[str, Any]:
    sections = [_usage_section(filters, by) for by in ("provider", "model", "agent")]
    totals = sections[0]["table"].rows
    cards = [
        _card("Calls", "int", sum(r[1] for r in totals)),
        _card("Failures", "int", sum(r[2] for r in totals)),
        _card("Prompt tokens", "int", sum(r[4] for r in totals)),
        _card("Completion tokens", "int", sum(r[5] for r in totals)),
    ]
    return {"cards": cards, "sections": sections}


def _latency_page(filters: dict[str, Any], granularity: str) -> dict[str, Any]:
    periods = selectors.history(granularity=granularity, **filters)
    labels = [_period_label(p["period"], granularity) for p in periods]
    table = Table(
        "latency",
        f"Latency and errors per {granularity}",
        [
            (_PERIOD_HEADERS[granularity], "text"),
            ("Calls", "int"),
            ("Failures", "int"),
            ("Error rate", "pct"),
            ("p50 (ms)", "ms"),
            ("p95 (ms)", "ms"),
            ("p99 (ms)", "ms"),
            ("Tokens / s", "tps"),
        ],
        [
            [
                label,
                p["calls"],
                p["failures"],
                p["error_rate"],
                p["p50_ms"],
                p["p95_ms"],
                p["p99_ms"],
                p["tokens_per_second"],
            ]
            for label, p in zip(labels, periods, strict=True)
        ],
    )
    latency = _chart(
        "latency",
        f"Latency of successful calls per {granularity} (ms)",
        unit="ms",
        labels=labels,
        datasets=[
            {"label": "p50", "data": [p["p50_ms"] for p in periods], "color": "p50", "type": "line"},
            {"label": "p95", "data": [p["p95_ms"] for p in periods], "color": "p95", "type": "line"},
            {"label": "p99", "data": [p["p99_ms"] for p in periods], "color": "p99", "type": "line"},
        ],
    )
    speed = _chart(
        "tokens-per-second",
        f"Generation speed per {granularity} (tokens / s)",
        unit="tps",
        labels=labels,
        datasets=[
            {"label": "Tokens / s", "data": [p["tokens_per_second"] for p in periods], "color": "cost", "type": "line"}
        ],
    )
    errors = _chart(
        "error-rate",
        f"Error rate per {granularity} (% of calls)",
        unit="pct",
        labels=labels,
        datasets=[
            {"label": "Error rate", "data": [p["error_rate"] if p["calls"] else None for p in periods], "color": "bad"}
        ],
    )
    totals = selectors.totals(**filters)  # percentiles of the whole range: not a sum of the periods' ones
    cards = [
        _card("p50", "ms", totals["p50_ms"], "ms, successful calls"),
        _card("p95", "ms", totals["p95_ms"], "ms"),
        _card("p99", "ms", totals["p99_ms"], "ms"),
        _card("Tokens / s", "tps", totals["tokens_per_second"]),
        _card("Error rate", "pct", totals["error_rate"], f"{totals['failures']:,} of {totals['calls']:,} calls"),
    ]
    return {"cards": cards, "sections": [{"charts": [latency, speed, errors], "table": table}]}


def _local_share_page(filters: dict[str, Any], granularity: str) -> dict[str, Any]:
    periods = selectors.history(granularity=granularity, **filters)
    labels = [_period_label(p["period"], granularity) for p in periods]
    target = _target_local_share()
    table = Table(
        "local-share",
        f"Local share per {granularity}",
        [
            (_PERIOD_HEADERS[granularity], "text"),
            ("Calls", "int"),
            ("Local calls", "int"),
            ("Cloud calls", "int"),
            ("Local share", "pct"),
            ("Target", "pct"),
        ],
        [
            [label, p["calls"], p["local_calls"], p["calls"] - p["local_calls"], p["local_share"], target]
            for label, p in zip(labels, periods, strict=True)
        ],
    )
    chart = _chart(
        "local-share",
        f"Share of calls answered locally per {granularity} (%)",
        unit="pct",
        labels=labels,
        max=100,
        datasets=[
            {
                "label": "Local share",
                "data": [p["local_share"] if p["calls"] else None for p in periods],
                "color": "savings",
            },
            {
                "label": f"Target ({target}%)",
                "data": [target] * len(periods),
                "color": "target",
                "type": "line",
                "dashed": True,
            },
        ],
    )
    calls, local = _sum(periods, "calls"), _sum(periods, "local_calls")
    share = figures.local_share(local_successes=_sum(periods, "local_successes"), successes=_sum(periods, "successes"))
    verdict = "no successful calls" if share is None else ("on target" if share >= target else "below target")
    cards = [
        {**_card("Local share", "pct", share, verdict), "state": verdict.replace(" ", "-")},
        _card("Target", "pct", target, "set in the routing policy"),
        _card("Local calls", "int", local),
        _card("Cloud calls", "int", calls - local),
    ]
    return {"cards": cards, "sections": [{"charts": [chart], "table": table}]}


_BUILDERS: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
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
    form = HistoryFilterForm(_with_defaults(request.GET), choices=selectors.filter_choices())
    wants_csv = request.GET.get("format") == "csv"
    if not form.is_valid():
        if wants_csv:
            return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
        return render(request, "metrics/history.html", _page_context(request, page, form), status=400)
    filters, granularity = form.selector_filters(), form.cleaned_data["granularity"]
    content = _BUILDERS[page](filters, granularity)
    if wants_csv:
        return _csv_response(
            [s["table"] for s in content["sections"]], f"switchyard-{page}-{filters['start']}-{filters['end']}"
        )
    return render(request, "metrics/history.html", {**_page_context(request, page, form), **content})


def _page_context(request: HttpRequest, page: str, form: HistoryFilterForm) -> dict[str, Any]:
    query = request.GET.copy()
    query["format"] = "csv"
    state = RollupState.objects.filter(pk=1).first()
    return {
        "form": form,
        "page": page,
        "page_title": dict(PAGES)[page],
        "tabs": _tabs(),
        "filter_query": request.GET.urlencode(),
        "csv_url": f"{request.path}?{query.urlencode()}",
        "refreshed_at": state.last_started_at if state else None,
    }


def _csv_response(tables: list[Table], filename: str) -> HttpResponse:
    """One table as is; several tables (all with the same columns after the first) get a leading `table` column."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
    writer = csv.writer(response)
    if len(tables) == 1:
        writer.writerow([header for header, _ in tables[0].columns])
        writer.writerows(tables[0].csv_rows())
        return response
    writer.writerow(["table", "name", *(header for header, _ in tables[0].columns[1:])])
    for table in tables:
        writer.writerows([table.slug, *row] for row in table.csv_rows())
    return response


@staff_member_required
def cost(request: HttpRequest) -> HttpResponse:
    return _history(request, "cost")


@staff_member_required
def usage(request: HttpRequest) -> HttpResponse:
    return _history(request, "usage")


@staff_member_required
def latency(request: HttpRequest) -> HttpResponse:
    return _history(request, "latency")


@staff_member_required
def local_share(request: HttpRequest) -> HttpResponse:
    return _history(request, "local_share")


# --- The monthly report.

_REPORT_FIGURES = (
    # (label, key, kind); change is this month minus the previous one, where the report gives it.
    ("Runs", "runs", "int"),
    ("Calls", "calls", "int"),
    ("Failed calls", "failures", "int"),
    ("Local share", "local_share", "pct"),
    ("Prompt tokens", "prompt_tokens", "int"),
    ("Completion tokens", "completion_tokens", "int"),
    ("Cost", "cost_usd", "usd"),
    ("Cloud baseline", "baseline_cost_usd", "usd"),
    ("Savings", "savings_usd", "usd"),
    ("Latency p50 (ms)", "p50_ms", "ms"),
    ("Latency p95 (ms)", "p95_ms", "ms"),
)
_REPORT_BREAKDOWN_COLUMNS = [
    ("Calls", "int"),
    ("Local share", "pct"),
    ("Prompt tokens", "int"),
    ("Completion tokens", "int"),
    ("Cost", "usd"),
    ("Cloud baseline", "usd"),
    ("Savings", "usd"),
    ("p50 (ms)", "ms"),
    ("p95 (ms)", "ms"),
]
_REPORT_BREAKDOWNS = (("by_provider", "Provider"), ("by_model", "Model"), ("by_agent", "Agent"), ("by_user", "User"))


def _signed(kind: str, value: Any) -> str:
    if value is None:
        return _MISSING
    text = _display(kind, value)
    if kind == "pct":
        text = text.replace("%", " pts")  # a change of a percentage is in points
    return text if text.startswith("-") else f"+{text}"


def _change_of(key: str, data: dict[str, Any], previous: dict[str, Any], change: dict[str, Any]) -> Any:
    """The report's own change where it gives one; for a count it leaves out, the plain difference."""
    if key in change:
        return change[key]
    now, before = data.get(key), previous.get(key)
    return now - before if isinstance(now, int) and isinstance(before, int) else None


def _report_summary(data: dict[str, Any]) -> list[dict[str, str]]:
    previous, change = data["previous"], data["change"]
    rows = []
    for label, key, kind in _REPORT_FIGURES:
        rows.append(
            {
                "label": label,
                "now": _display(kind, data.get(key)),
                "before": _display(kind, previous.get(key)),
                "change": _signed(kind, _change_of(key, data, previous, change)),
            }
        )
    return rows


def _report_tables(data: dict[str, Any]) -> list[Table]:
    tables = []
    for key, title in _REPORT_BREAKDOWNS:
        rows = [
            [
                r["label"],
                r["calls"],
                r["local_share"],
                r["prompt_tokens"],
                r["completion_tokens"],
                r["cost_usd"],
                r["baseline_cost_usd"],
                r["savings_usd"],
                r["p50_ms"],
                r["p95_ms"],
            ]
            for r in data.get(key, [])
        ]
        tables.append(
            Table(key.replace("_", "-"), f"By {title.lower()}", [(title, "text"), *_REPORT_BREAKDOWN_COLUMNS], rows)
        )
    return tables


def _report_chart(data: dict[str, Any]) -> dict[str, Any] | None:
    rows = data.get("by_provider", [])[:MAX_CHART_BARS]
    if not rows:
        return None
    return _chart(
        "report-providers",
        f"Cost and cloud baseline by provider, {data['month']} (USD)",
        unit="usd",
        labels=[r["label"] for r in rows],
        horizontal=True,
        datasets=[
            {"label": "Cost", "data": [Decimal(r["cost_usd"]) for r in rows], "color": "cost"},
            {"label": "Cloud baseline", "data": [Decimal(r["baseline_cost_usd"]) for r in rows], "color": "baseline"},
        ],
    )


def _month_step(month: str, step: int) -> str:
    year, number = (int(part) for part in month.split("-"))
    index = year * 12 + number - 1 + step
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _api_url(month: str) -> str | None:
    try:
        return reverse("api-monthly-report", args=[month])
    except NoReverseMatch:  # the API is optional for this page
        return None


def _report_context(data: dict[str, Any], picker: MonthPickerForm) -> dict[str, Any]:
    target = Decimal(data["target_local_share"])
    share = None if data["local_share"] is None else Decimal(data["local_share"])
    verdict = "no successful calls" if share is None else ("on target" if share >= target else "below target")
    cards = [
        _card(
            "Savings",
            "usd",
            data["savings_usd"],
            f"{_signed('usd', data['change']['savings_usd'])} vs {data['previous']['month']}",
        ),
        _card(
            "Cost",
            "usd",
            data["cost_usd"],
            f"{_signed('usd', data['change']['cost_usd'])} vs {data['previous']['month']}",
        ),
        _card("Cloud baseline", "usd", data["baseline_cost_usd"], "the same tokens on the baseline model"),
        _card("Local share", "pct", share, f"target {target}%: {verdict}"),
    ]
    cards[3]["state"] = verdict.replace(" ", "-")
    api = _api_url(data["month"])
    return {
        "report": data,
        "generated_at": dt.datetime.fromisoformat(data["generated_at"]),
        "picker": picker,
        "cards": cards,
        "summary": _report_summary(data),
        "tables": _report_tables(data),
        "chart": _report_chart(data),
        "previous_month": _month_step(data["month"], -1),
        "next_month": _month_step(data["month"], 1),
        "api_url": api,
        "page": "report",
        "tabs": _tabs(),
    }


@staff_member_required
def report_latest(request: HttpRequest) -> HttpResponse:
    """The month picker's target: ?month=YYYY-MM goes to that report; no month means this month."""
    if "month" not in request.GET:
        return redirect("metrics:report", month=f"{utc_today():%Y-%m}")
    picker = MonthPickerForm(request.GET)
    if picker.is_valid():
        return redirect("metrics:report", month=picker.cleaned_data["month"])
    return render(request, "metrics/report.html", {"picker": picker, "page": "report", "tabs": _tabs()}, status=400)


@staff_member_required
def report(request: HttpRequest, month: str) -> HttpResponse:
    picker = MonthPickerForm({"month": month})
    if not picker.is_valid():
        return render(request, "metrics/report.html", {"picker": picker, "page": "report", "tabs": _tabs()}, status=400)
    try:
        data = reports.report_get(month=month)
    except ValueError as error:
        picker.add_error("month", str(error))
        return render(request, "metrics/report.html", {"picker": picker, "page": "report", "tabs": _tabs()}, status=400)
    return render(request, "metrics/report.html", _report_context(data, picker))


def _tabs() -> list[tuple[str, str, str]]:
    return [(slug, title, reverse(f"metrics:{slug}")) for slug, title in PAGES]
