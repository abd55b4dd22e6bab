"""Attempts whose outcome is unknown (a worker lost mid-call) or that their caller cancelled: counted
apart from provider errors, and the monthly report says how many there were."""

from __future__ import annotations

import io
import json
from decimal import Decimal

from django.core.management import call_command
from django.utils import timezone

from metrics.rollups import rollup_refresh
from metrics.selectors import totals
from routing.models import CallOutcome
from tests.metrics.conftest import utc


def test_the_report_counts_unknown_and_cancelled_attempts_apart_from_provider_errors(catalog, add_entry):
    day = utc(2026, 3, 10, 12)
    add_entry(created_at=day)  # a success
    add_entry(created_at=day, outcome=CallOutcome.TRANSIENT, baseline_cost_usd=None)
    add_entry(created_at=day, outcome=CallOutcome.UNKNOWN, completion_tokens=0, baseline_cost_usd=None)
    add_entry(created_at=day, outcome=CallOutcome.STARTED, completion_tokens=0, baseline_cost_usd=None)
    add_entry(created_at=day, outcome=CallOutcome.CANCELLED, baseline_cost_usd=None, cost_usd=Decimal("0.01"))
    rollup_refresh()

    figures = totals(start=day.date().replace(day=1), end=day.date())
    assert (figures["calls"], figures["successes"], figures["failures"]) == (5, 1, 1)
    assert (figures["unknown_calls"], figures["cancelled_calls"]) == (2, 1)
    assert figures["error_rate"] == Decimal("20.00")  # provider errors only
    assert figures["cost_usd"] == Decimal("0.01")  # a cancelled call's tokens were billed

    out = io.StringIO()
    call_command("savings_report", month="2026-03", format="json", stdout=out)
    report = json.loads(out.getvalue())
    assert (report["unknown_calls"], report["cancelled_calls"], report["failures"]) == (2, 1, 1)
    table = io.StringIO()
    call_command("savings_report", month="2026-03", format="table", stdout=table)
    assert "2 calls have an unknown outcome" in table.getvalue()


def test_a_call_in_flight_at_the_refresh_counts_as_a_success_once_it_completes(catalog, add_entry):
    now = timezone.now()
    today = now.date()
    add_entry(created_at=now)
    in_flight = add_entry(created_at=now, outcome=CallOutcome.STARTED, completion_tokens=0, baseline_cost_usd=None)
    rollup_refresh()
    assert (totals(start=today, end=today)["successes"], totals(start=today, end=today)["unknown_calls"]) == (1, 1)

    # Completed under the same id, after the refresh: no new row for a watermark to see.
    in_flight.outcome, in_flight.completion_tokens = CallOutcome.SUCCESS, 50
    in_flight.baseline_cost_usd = Decimal("0.02")
    in_flight.save()

    figures = totals(start=today, end=today)
    assert (figures["successes"], figures["unknown_calls"], figures["completion_tokens"]) == (2, 0, 100)
    assert figures["savings_usd"] == Decimal("0.02")
