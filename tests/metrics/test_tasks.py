import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from metrics.models import DailyRollup, MonthlyReport
from metrics.rollups import SAFETY_WINDOW
from metrics.tasks import monthly_report_send_task, rollup_refresh_task


def last_month() -> dt.date:
    return (timezone.now().date().replace(day=1) - dt.timedelta(days=1)).replace(day=1)


def test_it_schedules_both_tasks_on_beat_with_an_expiry():
    schedule = {entry["task"]: entry for entry in settings.CELERY_BEAT_SCHEDULE.values()}

    assert schedule["metrics.tasks.rollup_refresh_task"]["options"]["expires"] > 0
    monthly = schedule["metrics.tasks.monthly_report_send_task"]
    assert monthly["options"]["expires"] > 0
    assert monthly["schedule"].day_of_month == {1}
    # Late enough on the 1st that the rollups cover the whole month, so the report is final and stored.
    runs_at = dt.timedelta(hours=min(monthly["schedule"].hour), minutes=min(monthly["schedule"].minute))
    assert runs_at >= SAFETY_WINDOW


def test_it_refreshes_the_rollups(add_entry):
    add_entry()

    assert rollup_refresh_task() >= 1
    assert DailyRollup.objects.get().calls == 1


def test_it_emails_last_months_report_to_the_recipients(add_entry, catalog, mailoutbox, settings):
    settings.SWITCHYARD_REPORT_RECIPIENTS = ["boss@example.com", "cfo@example.com"]
    first = last_month()
    add_entry(
        created_at=dt.datetime.combine(first, dt.time(9), tzinfo=dt.UTC),
        provider=catalog.anthropic,
        cost_usd=Decimal("1.25"),
        baseline_cost_usd=Decimal("1.25"),
    )
    add_entry(created_at=dt.datetime.combine(first, dt.time(10), tzinfo=dt.UTC), baseline_cost_usd=Decimal("4.00"))

    assert monthly_report_send_task() is True

    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    assert message.to == ["boss@example.com", "cfo@example.com"]
    assert f"{first:%Y-%m}" in message.subject
    assert "$4.00 saved" in message.subject
    assert "Local share 50.00%" in message.body
    name, content, mimetype = message.attachments[0]
    assert name.endswith(".csv") and mimetype == "text/csv"
    assert "cost_usd" in content
    assert MonthlyReport.objects.filter(month=first).exists()  # the emailed figures are the stored ones


def test_it_sends_nothing_without_recipients(db, mailoutbox, settings):
    settings.SWITCHYARD_REPORT_RECIPIENTS = []

    assert monthly_report_send_task(month="2026-03") is False
    assert mailoutbox == []
