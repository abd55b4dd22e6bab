"""One `Reading` per page or report: the coverage worked out once, the ledger read live once, and
every figure still fresh (every row committed before the reading was taken) and exact."""

import datetime as dt
import random

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from metrics.coverage import Coverage, live_entries
from metrics.rollups import rollup_refresh
from metrics.selectors import Reading, breakdown, filter_choices, history, run_counts, totals
from routing.models import CallOutcome
from tests.factories import user_create


@pytest.fixture
def staff_client(client, db):
    client.force_login(user_create("staff", staff=True))
    return client


def coverage_reads(queries: CaptureQueriesContext) -> int:
    """How many times the coverage was worked out: each time reads the days the rollups summed."""
    return sum('"metrics_rollupday"' in query["sql"] for query in queries.captured_queries)


def live_reads(queries: CaptureQueriesContext) -> int:
    """How many times ledger rows were summed live, by the rollup SQL (metrics.rollups.ledger_rollup_sql)."""
    return sum(") agg GROUP BY" in query["sql"] for query in queries.captured_queries)


def test_every_call_with_one_reading_counts_the_rows_committed_before_it_once(catalog, add_entry):
    now = timezone.now()
    today = now.astimezone(dt.UTC).date()
    closed = today - dt.timedelta(days=40)
    add_entry(created_at=now, prompt_tokens=1)
    add_entry(created_at=now - dt.timedelta(days=40), prompt_tokens=2)
    rollup_refresh()
    # Since the refresh: a call today, a call of bob's on another provider with no agent, a backfill.
    add_entry(created_at=now, prompt_tokens=10, agent="jordan")
    add_entry(created_at=now, prompt_tokens=20, provider=catalog.anthropic, user=catalog.bob, agent="")
    add_entry(created_at=now - dt.timedelta(days=40), prompt_tokens=40, outcome=CallOutcome.TRANSIENT)

    reading = Reading.take()
    # A call over days the rollups hold whole comes first: it must not leave the others short.
    assert totals(start=closed - dt.timedelta(days=5), end=closed - dt.timedelta(days=1), reading=reading)["calls"] == 0
    assert totals(start=today, end=today, reading=reading)["prompt_tokens"] == 31
    assert totals(start=closed, end=closed, reading=reading)["prompt_tokens"] == 42
    assert totals(start=closed, end=today, user_id=catalog.alice.pk, reading=reading)["prompt_tokens"] == 53
    assert totals(start=closed, end=today, provider="anthropic", reading=reading)["prompt_tokens"] == 20
    assert totals(start=closed, end=today, agent="jordan", reading=reading)["prompt_tokens"] == 10
    by_day = {row["period"]: row["prompt_tokens"] for row in history(start=closed, end=today, reading=reading)}
    assert (by_day[closed], by_day[today], sum(by_day.values())) == (42, 31, 73)
    # Read after the days of the same range: added up from them.
    assert totals(start=closed, end=today, reading=reading)["prompt_tokens"] == 73

    def by(dimension: str, figure: str) -> dict:
        rows = breakdown(start=closed, end=today, by=dimension, reading=reading)
        return {row["label"]: row[figure] for row in rows}

    assert by("provider", "prompt_tokens") == {"ollama": 53, "anthropic": 20}
    assert by("model", "calls") == {"ollama/mistral": 4, "anthropic/claude-sonnet": 1}
    assert by("agent", "prompt_tokens") == {"marcus": 43, "jordan": 10, "(none)": 20}
    assert by("user", "failures") == {"alice": 1, "bob": 0}
    assert run_counts(start=closed, end=today, reading=reading)["runs_without_calls"] == 0
    assert filter_choices(reading=reading)["agents"] == ["jordan", "marcus"]


@pytest.mark.parametrize("url", ["/metrics/usage/", "/metrics/latency/", "/metrics/local-share/", "/metrics/"])
def test_a_history_page_reads_coverage_and_ledger_once_and_shows_the_newest_call(catalog, add_entry, staff_client, url):
    rollup_refresh()
    add_entry(created_at=timezone.now(), agent="jordan")  # since the refresh: read live
    today = timezone.now().astimezone(dt.UTC).date().isoformat()

    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(url, {"start": today, "end": today, "format": "csv"})

    assert response.status_code == 200
    assert (coverage_reads(queries), live_reads(queries)) == (1, 1)
    assert ",1," in response.content.decode()  # the one call, in the first data row


def test_the_monthly_report_reads_coverage_and_ledger_once_for_both_months(catalog, add_entry, staff_client):
    rollup_refresh()
    add_entry(created_at=timezone.now(), agent="jordan")
    month = f"{timezone.now().astimezone(dt.UTC):%Y-%m}"

    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(f"/api/v1/reports/monthly/{month}/")

    assert (coverage_reads(queries), live_reads(queries)) == (1, 1)
    assert response.json()["calls"] == 1


def test_a_coverage_says_a_range_reads_the_ledger_exactly_when_it_has_ledger_rows_to_read():
    rng = random.Random(8)
    base = dt.date(2026, 3, 1)
    for _ in range(300):
        days = [base + dt.timedelta(days=rng.randrange(20)) for _ in range(4)]
        coverage = Coverage(
            open_from=base + dt.timedelta(days=rng.randrange(25)),
            stale=frozenset(day for day in days[:2] if rng.random() < 0.5),
            partial={day: 7 for day in days[2:] if rng.random() < 0.5},
        )
        since = base + dt.timedelta(days=rng.randrange(-2, 24))
        until = since + dt.timedelta(days=rng.randrange(0, 10))

        expected = live_entries(coverage=coverage, since=since, until=until) is not None
        assert coverage.reads_ledger(since=since, until=until) == expected, (coverage, since, until)
