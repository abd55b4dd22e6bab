"""Reading a month's report. Never writes: storing a finished month is `services.report_snapshot_store`."""

from __future__ import annotations

from core.months import month_parse
from metrics.models import MonthlyReport
from metrics.reports.building import report_build
from metrics.reports.formats import report_from_json
from metrics.reports.types import ALL_CALLS, Report, ReportFilters
from metrics.selectors import Reading


def report_get(*, month: str, filters: ReportFilters = ALL_CALLS, reading: Reading | None = None) -> Report:
    """The month ("YYYY-MM") as stored, else its figures as they stand now. ValueError for a malformed month.

    A filtered report is always built now: the stored snapshot covers every call."""
    first = month_parse(month)
    stored = None if filters else MonthlyReport.objects.filter(month=first).first()
    if stored is not None:
        return report_from_json(stored.data, stored=True)
    return report_build(month=first, filters=filters, reading=reading)
