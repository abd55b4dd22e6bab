"""Writing reports: storing a finished month's snapshot, regenerating it on purpose, emailing it."""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.utils import timezone

from core.formatting import money
from core.months import month_bounds, month_label, month_parse
from metrics.models import MonthlyReport
from metrics.reports.building import report_build
from metrics.reports.formats import report_csv, report_from_json, report_json, report_table
from metrics.reports.selectors import report_get
from metrics.reports.types import ALL_CALLS, Report, ReportFilters
from metrics.rollups import rollup_refresh
from metrics.selectors import Reading

logger = logging.getLogger(__name__)


def report_snapshot_store(*, report: Report, replace: bool = False) -> Report:
    """Keep a finished month's report as it is now, whatever happens to prices later; returns what is stored.

    A report that is not final, already stored, or filtered (it covers some calls only) comes back
    unchanged. Two first readers of a just-finished month may race: without `replace` the first
    snapshot wins."""
    if not report.final or report.filters or (report.stored and not replace):
        return report
    data = report_json(report)
    with transaction.atomic():
        if replace:
            stored, _ = MonthlyReport.objects.update_or_create(
                month=report.month, defaults={"generated_at": timezone.now(), "data": data}
            )
        else:
            stored, _ = MonthlyReport.objects.get_or_create(
                month=report.month, defaults={"generated_at": timezone.now(), "data": data}
            )
    return report_from_json(stored.data, stored=True)


def report_get_or_store(*, month: str, filters: ReportFilters = ALL_CALLS, reading: Reading | None = None) -> Report:
    """The month's report, storing it first when it is finished and not stored yet (the pages,
    the API and the command call this, so a finished month freezes at its first reading).
    A filtered one is built now and never stored."""
    return report_snapshot_store(report=report_get(month=month, filters=filters, reading=reading))


def report_regenerate(*, month: str) -> Report:
    """Rebuild a month's report from the current ledger on purpose, replacing any snapshot."""
    first = month_parse(month)
    start, end = month_bounds(first)
    # Recompute the whole month: regenerating is for ledger rows corrected in place, which no watermark sees.
    rollup_refresh(days=(start + dt.timedelta(days=i) for i in range((end - start).days + 1)))
    return report_snapshot_store(report=report_build(month=first), replace=True)


def report_send(*, month: str) -> bool:
    """Email a month's report to SWITCHYARD_REPORT_RECIPIENTS (table in the body, CSV attached)."""
    recipients = list(settings.SWITCHYARD_REPORT_RECIPIENTS)
    if not recipients:
        logger.info("No SWITCHYARD_REPORT_RECIPIENTS: the %s savings report was not emailed.", month)
        return False
    rollup_refresh()
    report = report_get_or_store(month=month)
    label = month_label(report.month)
    message = EmailMessage(
        subject=f"Switchyard savings report {label}: {money(report.figures.savings_usd)} saved",
        body=report_table(report),
        to=recipients,
    )
    message.attach(f"switchyard-savings-{label}.csv", report_csv(report), "text/csv")
    message.send()
    return True
