"""The printable monthly savings report at /metrics/reports/YYYY-MM/.

It shows the typed `Report` (Decimals) directly: figures become text only through core.formatting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse

from core.formatting import Kind, count, count_signed, money_signed, percent, percent_points, shown
from core.months import month_label, month_next, month_previous
from core.tables import Table, attr
from metrics.forms import MonthPickerForm, SourceTeamKeyForm, utc_today
from metrics.reports.services import report_get_or_store
from metrics.reports.types import BREAKDOWNS, Report, ReportFilters
from metrics.selectors import Reading, filter_choices
from metrics.views.common import MAX_CHART_BARS, card, chart, share_verdict, staff_page, tabs


@dataclass(frozen=True)
class Figure:
    """A line of the summary table: this month, the month before and the change."""

    label: str
    name: str  # a Figures field
    kind: Kind


SUMMARY = (
    Figure("Runs", "runs", "count"),
    Figure("Runs that passed the check", "checks_passed", "count"),
    Figure("Runs that failed the check", "checks_failed", "count"),
    Figure("Runs with no check", "checks_skipped", "count"),
    Figure("Runs that failed before any call", "runs_without_calls", "count"),
    Figure("Calls", "calls", "count"),
    Figure("Failed calls", "failures", "count"),
    Figure("Calls with unknown outcome", "unknown_calls", "count"),
    Figure("Cancelled calls", "cancelled_calls", "count"),
    Figure("Error rate", "error_rate", "percent"),
    Figure("Local share", "local_share", "percent"),
    Figure("Prompt tokens", "prompt_tokens", "count"),
    Figure("Completion tokens", "completion_tokens", "count"),
    Figure("Cost", "cost_usd", "money"),
    Figure("Cloud baseline", "baseline_cost_usd", "money"),
    Figure("Savings", "savings_usd", "money"),
    Figure("Failed check", "failed_check_usd", "money"),
    Figure("Latency p50 (ms)", "p50_ms", "ms"),
    Figure("Latency p95 (ms)", "p95_ms", "ms"),
)
BREAKDOWN_COLUMNS = [
    attr("figures.calls", "Calls", "count"),
    attr("figures.local_share", "Local share", "percent"),
    attr("figures.prompt_tokens", "Prompt tokens", "count"),
    attr("figures.completion_tokens", "Completion tokens", "count"),
    attr("figures.cost_usd", "Cost", "money"),
    attr("figures.baseline_cost_usd", "Cloud baseline", "money"),
    attr("figures.savings_usd", "Savings", "money"),
    attr("figures.p50_ms", "p50 (ms)", "ms"),
    attr("figures.p95_ms", "p95 (ms)", "ms"),
]
_SIGNED = {"count": count_signed, "ms": count_signed, "money": money_signed, "percent": percent_points}


def _change(kind: Kind, now: Any, before: Any) -> str:
    return _SIGNED[kind](None if now is None or before is None else now - before)


def _summary(report: Report) -> list[dict[str, str]]:
    now, before = report.figures, report.previous.figures
    return [
        {
            "label": line.label,
            "now": shown(line.kind, getattr(now, line.name)),
            "before": shown(line.kind, getattr(before, line.name)),
            "change": _change(line.kind, getattr(now, line.name), getattr(before, line.name)),
        }
        for line in SUMMARY
    ]


_HEADERS = {"key": "API key"}
_PREDATES = " (not in this snapshot: it was stored before this breakdown existed)"


def _tables(report: Report) -> list[Table]:
    tables = []
    for attribute, dimension in BREAKDOWNS:
        header = _HEADERS.get(dimension, dimension.capitalize())
        title = f"By {_HEADERS.get(dimension, dimension)}" + (_PREDATES if attribute in report.predates else "")
        columns = [attr("label", header), *BREAKDOWN_COLUMNS]
        tables.append(Table(attribute.replace("_", "-"), title, columns, getattr(report, attribute)))
    return tables


def _chart(report: Report) -> dict[str, Any] | None:
    rows = report.by_provider[:MAX_CHART_BARS]
    if not rows:
        return None
    return chart(
        "report-providers",
        f"Cost and cloud baseline by provider, {month_label(report.month)} (USD)",
        unit="usd",
        labels=[r.label for r in rows],
        horizontal=True,
        datasets=[
            {"label": "Cost", "data": [r.figures.cost_usd for r in rows], "color": "cost"},
            {"label": "Cloud baseline", "data": [r.figures.baseline_cost_usd for r in rows], "color": "baseline"},
        ],
    )


def _cards(report: Report) -> list[dict[str, str]]:
    f, change, previous = report.figures, report.change(), month_label(report.previous.month)
    verdict, state = share_verdict(f.local_share, report.target_local_share)
    return [
        card("Savings", "money", f.savings_usd, f"{money_signed(change['savings_usd'])} vs {previous}"),
        card("Cost", "money", f.cost_usd, f"{money_signed(change['cost_usd'])} vs {previous}"),
        card("Cloud baseline", "money", f.baseline_cost_usd, "the same tokens on the baseline model"),
        card(
            "Failed check",
            "money",
            f.failed_check_usd,
            f"{count(f.failed_check_calls)} calls of runs that failed their check: not in the savings",
        ),
        card("Local share", "percent", f.local_share, f"target {percent(report.target_local_share)}: {verdict}", state),
        card(
            "Runs",
            "count",
            f.runs,
            f"{count(f.checks_passed)} passed the check, {count(f.checks_failed)} failed it, "
            f"{count(f.checks_skipped)} skipped it; {count(f.runs_without_calls)} failed before any call",
        ),
    ]


def _api_url(month: str) -> str | None:
    try:
        return reverse("api-monthly-report", args=[month])
    except NoReverseMatch:  # the API is optional for this page
        return None


def _covering(form: SourceTeamKeyForm) -> list[str]:
    """The filters in force, in words, from the form's own choices (a key by its prefix and name)."""
    return [
        f"{form.fields[name].label or name.capitalize()}: {dict(form.fields[name].choices)[form.data[name]]}"
        for name in ("source", "team", "key")
        if form.data.get(name)
    ]


def _context(report: Report, picker: MonthPickerForm, filters: SourceTeamKeyForm, query: str) -> dict[str, Any]:
    month = month_label(report.month)
    api_url = _api_url(month)
    return {
        "report": report,
        "month": month,
        "previous_month": month_label(month_previous(report.month)),
        "next_month": month_label(month_next(report.month)),
        "target": percent(report.target_local_share),
        "unpriced_calls": report.figures.unpriced_calls,
        "unknown_calls": report.figures.unknown_calls,
        "picker": picker,
        "cards": _cards(report),
        "summary": _summary(report),
        "tables": _tables(report),
        "chart": _chart(report),
        "api_url": api_url and (f"{api_url}?{query}" if query else api_url),
        "csv_url": api_url and f"{api_url}?{query + '&' if query else ''}format=csv",
        "filters": filters,
        "covering": _covering(filters),
        "query": f"?{query}" if query else "",
        "page": "report",
        "tabs": tabs(),
    }


def _picker_page(
    request: HttpRequest, picker: MonthPickerForm, filters: SourceTeamKeyForm | None = None
) -> HttpResponse:
    context = {"picker": picker, "filters": filters, "page": "report", "tabs": tabs()}
    return render(request, "metrics/report.html", context, status=400)


@staff_page
def report_latest(request: HttpRequest) -> HttpResponse:
    """The month picker's target: ?month=YYYY-MM goes to that report; no month means this month."""
    if "month" not in request.GET:
        return redirect("metrics:report", month=month_label(utc_today()))
    picker = MonthPickerForm(request.GET)
    if picker.is_valid():
        return redirect("metrics:report", month=picker.cleaned_data["month"])
    return _picker_page(request, picker)


@staff_page
def report(request: HttpRequest, month: str) -> HttpResponse:
    picker = MonthPickerForm({"month": month})
    if not picker.is_valid():
        return _picker_page(request, picker)
    reading = Reading.take()  # one for the choices and the report
    filters = SourceTeamKeyForm(request.GET, choices=filter_choices(reading=reading))
    if not filters.is_valid():
        return _picker_page(request, picker, filters)
    # A service, not a selector: the first reading of a finished month stores its snapshot (never a filtered one).
    report = report_get_or_store(month=month, filters=ReportFilters(**filters.source_team_key()), reading=reading)
    query = urlencode({name: filters.data[name] for name in ("source", "team", "key") if filters.data.get(name)})
    return render(request, "metrics/report.html", _context(report, picker, filters, query))
