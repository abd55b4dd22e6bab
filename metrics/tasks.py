"""Celery tasks for the metrics: thin wrappers that beat runs (schedule in project/settings.py)."""

import datetime as dt

from celery import shared_task
from django.utils import timezone

from core.months import month_label, month_previous
from metrics import rollups
from metrics.reports.services import report_send


@shared_task(soft_time_limit=600, time_limit=660)
def rollup_refresh_task() -> int:
    """Every few minutes: bring the rollups up to date. Returns how many days were recomputed."""
    return rollups.rollup_refresh().days


@shared_task(soft_time_limit=600, time_limit=660)
def monthly_report_send_task(month: str | None = None) -> bool:
    """On the 1st of each month (UTC): store and email last month's savings report.

    Beat runs it at 02:00, once the rollups' safety window has passed the month's end, so the
    figures are final and the snapshot is stored before the email goes out."""
    if month is None:
        today = timezone.now().astimezone(dt.UTC).date()
        month = month_label(month_previous(today))
    return report_send(month=month)
