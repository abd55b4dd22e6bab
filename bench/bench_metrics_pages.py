"""Server time of the staff metrics pages (history and monthly report) and the dashboard on the
ledger in DATABASE_URL.

    DATABASE_URL=postgres://... .venv/bin/python manage.py fill_ledger --rows 1000000 --months 3
    DATABASE_URL=postgres://... .venv/bin/python bench/bench_metrics_pages.py [--runs 20]

Each page is requested in-process through Django's test client as a signed-in staff user, so
the time is the whole server side (middleware, session, selectors' queries, template, charts'
JSON) without a network. For each page: 3 warm-up requests, then --runs timed ones; it prints
the median and p95. The baseline, measured in the same run, is the same page over a range with
no data (same queries, same template, nothing to sum; for the report an empty future month), so
the ratio shows what the ledger's size adds. The report page is timed for the current month, which
is never a stored snapshot: the figures are computed on every request, from the rollups and the
ledger rows not rolled up yet. The dashboard (this month's figures, the recent runs, the
providers) has no range to empty: its baseline is the same page for a user who sees no runs, on
the same ledger, so its ratio is near 1 and its p95 is the figure to read.

Right after fill_ledger every row is rolled up. `--live N` first copies the N newest ledger rows
as calls made in the last minutes and not rolled up yet (what the pages see between two refreshes
of the beat: at ~11,000 calls a day, five minutes are ~40 rows), and deletes them afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from metrics.models import DailyRollup, RollupState  # noqa: E402
from routing.models import LedgerEntry  # noqa: E402

EMPTY = {"start": "2001-01-01", "end": "2001-03-31"}  # 90 days with no ledger rows


def timed(client: Client, url: str, params: dict[str, str], runs: int) -> tuple[float, float, int]:
    for _ in range(3):
        response = client.get(url, params)
        assert response.status_code == 200, (url, params, response.status_code)
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        client.get(url, params)
        samples.append((time.perf_counter() - began) * 1000)
    with CaptureQueriesContext(connection) as queries:
        client.get(url, params)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1], len(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--live", type=int, default=0, help="Add this many calls made since the last refresh.")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("Set DATABASE_URL to the PostgreSQL database that fill_ledger filled.")
    staff, _ = get_user_model().objects.get_or_create(username="bench-metrics", defaults={"is_staff": True})
    client = Client(HTTP_HOST="localhost")
    client.force_login(staff)
    today = dt.datetime.now(dt.UTC).date()
    last_90 = {"start": (today - dt.timedelta(days=89)).isoformat(), "end": today.isoformat()}
    year_ago = today - dt.timedelta(days=364)
    last_year = {"start": year_ago.isoformat(), "end": today.isoformat(), "granularity": "month"}
    cases = [
        ("cost, 90 days by day", "/metrics/", last_90),
        ("cost, a year by month", "/metrics/", last_year),
        ("calls & tokens, 90 days", "/metrics/usage/", last_90),
        ("latency & errors, 90 days by day", "/metrics/latency/", last_90),
        ("local share, 90 days by day", "/metrics/local-share/", last_90),
        ("cost CSV, 90 days by day", "/metrics/", {**last_90, "format": "csv"}),
        ("calls & tokens, 90 days, one agent", "/metrics/usage/", {**last_90, "agent": "marcus"}),
    ]
    added = _calls_since_the_refresh(args.live)
    try:
        _measure(client, cases, today, args.runs)
    finally:
        LedgerEntry.objects.filter(pk__in=added).delete()


def _calls_since_the_refresh(count: int) -> list[int]:
    """Copies of the newest ledger rows, made in the last five minutes (ids above the watermark)."""
    now = dt.datetime.now(dt.UTC)
    added = []
    for index, entry in enumerate(LedgerEntry.objects.order_by("-id")[:count]):
        entry.pk = None
        entry.created_at = now - dt.timedelta(seconds=300 * index / max(count, 1))
        entry.idempotency_key = None
        entry.save()
        added.append(entry.pk)
    return added


def _measure(client: Client, cases: list, today: dt.date, runs: int) -> None:
    print(f"ledger rows: {LedgerEntry.objects.count():,}; rollup rows: {DailyRollup.objects.count():,}")
    print(f"{'page':<38} {'p50 ms':>8} {'p95 ms':>8} {'queries':>8} {'empty p50':>10} {'ratio':>6}")
    for label, url, params in cases:
        p50, p95, queries = timed(client, url, params, runs)
        base, _, _ = timed(client, url, {**params, **EMPTY}, runs)
        print(f"{label:<38} {p50:>8.1f} {p95:>8.1f} {queries:>8} {base:>10.1f} {p50 / base:>6.2f}")
    month = f"/metrics/reports/{today:%Y-%m}/"
    p50, p95, queries = timed(client, month, {}, runs)
    base, _, _ = timed(client, "/metrics/reports/2099-01/", {}, runs)  # empty, and never final
    print(f"{'monthly report, this month':<38} {p50:>8.1f} {p95:>8.1f} {queries:>8} {base:>10.1f} {p50 / base:>6.2f}")
    p50, p95, queries = timed(client, "/", {}, runs)
    unstaffed, _ = get_user_model().objects.get_or_create(username="bench-dashboard")
    client.force_login(unstaffed)
    base, _, _ = timed(client, "/", {}, runs)
    print(f"{'dashboard, this month':<38} {p50:>8.1f} {p95:>8.1f} {queries:>8} {base:>10.1f} {p50 / base:>6.2f}")
    live = LedgerEntry.objects.filter(id__gt=RollupState.objects.get().last_ledger_id).count()
    print(f"ledger rows not rolled up yet (read live): {live:,}")


if __name__ == "__main__":
    main()
