"""Reading a month's report. Never writes: storing a finished month is `services.report_snapshot_store`."""

from __future__ import annotations

from core.months import month_parse
from metrics.models import MonthlyReport
from metrics.reports.building import report_build
from metrics.reports.formats import report_from_json
from metrics.reports.types import Report


def report_get(*, month: str) -> Report:
    """The month ("YYYY-MM") as stored, else its figures as they stand now. ValueError for a malformed month."""
    first = month_parse(month)
    stored = MonthlyReport.objects.filter(month=first).first()
    if stored is not None:
        return report_from_json(stored.data, stored=True)
    return report_build(month=first)
