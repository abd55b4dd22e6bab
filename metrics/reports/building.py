"""Building a month's report from the metrics selectors (rollups; the month either side for comparison)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.utils import timezone

from core.months import month_bounds, month_previous
from metrics.models import MonthlyReport
from metrics.reports.formats import report_from_json
from metrics.reports.types import ALL_CALLS, BREAKDOWNS, Figures, MonthFigures, Report, ReportFilters, Row
from metrics.rollups import rollups_fresh_until
from metrics.selectors import Reading, breakdown, totals
from routing.selectors import routing_policy

_CENT = Decimal("0.01")


def report_build(*, month: dt.date, filters: ReportFilters = ALL_CALLS, reading: Reading | None = None) -> Report:
    """Compute the report of the month starting on `month` from the rollups as they stand, over
    the calls `filters` covers (`reading`: the caller's, when it read the metrics already)."""
    start, end = month_bounds(month)
    reading = reading or Reading.take()  # one for every figure: coverage worked out, the ledger read live once
    narrow = filters.selector_kwargs()
    rows = {
        attribute: [_row(row) for row in breakdown(start=start, end=end, by=dimension, reading=reading, **narrow)]
        for attribute, dimension in BREAKDOWNS
    }
    return Report(
        month=month,
        start=start,
        end=end,
        generated_at=timezone.now().astimezone(dt.UTC),
        final=_is_final(end),
        target_local_share=Decimal(routing_policy().target_local_share).quantize(_CENT),
        figures=Figures.of(totals(start=start, end=end, reading=reading, **narrow)),
        previous=_previous(month_previous(month), reading=reading, filters=filters),
        filters=filters,
        **rows,
    )


def _row(row: dict) -> Row:
    return Row(
        key=row["key"], label=row["label"], provider=row["provider"], is_local=row["is_local"], figures=Figures.of(row)
    )


def _previous(month: dt.date, *, reading: Reading, filters: ReportFilters) -> MonthFigures:
    """The month before, from its snapshot when there is one (what its own report said), else
    live; live too when filtered (a snapshot covers every call)."""
    stored = None if filters else MonthlyReport.objects.filter(month=month).first()
    if stored is not None:
        return report_from_json(stored.data, stored=True).as_month_figures()
    start, end = month_bounds(month)
    figures = totals(start=start, end=end, reading=reading, **filters.selector_kwargs())
    return MonthFigures(month=month, figures=Figures.of(figures))


def _is_final(end: dt.date) -> bool:
    fresh_until = rollups_fresh_until()
    month_over = dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
    return fresh_until is not None and fresh_until >= month_over
