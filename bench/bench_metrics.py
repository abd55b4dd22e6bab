"""Metrics at scale: server time of the monthly report and the history reads, 10k vs 1M ledger rows.

Usage (a database of its own: this script empties the ledger and the rollups):

    createdb -h 127.0.0.1 -U postgres sw_bench
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/sw_bench .venv/bin/python bench/bench_metrics.py

For each size it empties the ledger, fills it with `fill_ledger` (3 months up to now), refreshes
the rollups, then times each read: the median and the fastest of --repeat runs after one warm-up, in-process
(selectors called directly; views through Django's test client, so URL routing, auth,
serialisation and template rendering count, the network does not). Finally it prints each
figure at both sizes and the ratio, of the medians and of the fastest runs. Only the ratios are
comparable across machines; on a busy one the fastest runs are the steadier figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.urls import NoReverseMatch, reverse  # noqa: E402

from core.months import month_previous  # noqa: E402
from metrics import selectors  # noqa: E402
from metrics.reports.building import report_build  # noqa: E402

TABLES = (
    "routing_ledgerentry",
    "metrics_dailyrollup",
    "metrics_dailymodelrollup",
    "metrics_dailypeoplerollup",
    "metrics_monthlyrollup",
    "metrics_monthlyreport",
    "metrics_rollupstate",
    "metrics_rollupday",
    "agents_agentrun",  # fill_ledger makes an AgentRun of every synthetic run
)
# The history pages, if the pages issue has put them in place (timed only when they answer 200).
PAGES = ("metrics:cost", "metrics:usage", "metrics:latency", "metrics:local_share")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000", help="Ledger sizes, comma-separated.")
    parser.add_argument("--months", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    if connection.vendor != "postgresql" or "bench" not in connection.settings_dict["NAME"]:
        sys.exit("Point DATABASE_URL at a PostgreSQL database whose name contains 'bench': this empties the ledger.")
    call_command("migrate", verbosity=0)
    setup_test_environment()  # lets the test client through ALLOWED_HOSTS
    sizes = [int(size) for size in args.sizes.split(",")]
    results: dict[int, dict[str, tuple[float, float]]] = {}
    for size in sizes:
        print(f"--- {size:,} ledger rows", flush=True)
        results[size] = measure(size=size, months=args.months, repeat=args.repeat)
    print_table(results, sizes)


def measure(*, size: int, months: int, repeat: int) -> dict[str, tuple[float, float]]:
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY")
    out = io.StringIO()
    began = time.perf_counter()
    call_command("fill_ledger", rows=size, months=months, seed=0.42, stdout=out)
    print(out.getvalue().strip(), f"(total {time.perf_counter() - began:.1f} s)", flush=True)
    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"VACUUM ANALYZE {table}")  # what autovacuum would have done by now

    today = dt.datetime.now(dt.UTC).date()
    start = today - dt.timedelta(days=30 * months)
    last_month = month_previous(today)
    span = {"start": start, "end": today}
    client = _staff_client()
    reads: dict[str, Callable[[], object]] = {
        "report: build last month": lambda: report_build(month=last_month),
        "report API JSON, this month (computed)": _get(client, f"/api/v1/reports/monthly/{today:%Y-%m}/"),
        "report API CSV, this month (computed)": _get(client, f"/api/v1/reports/monthly/{today:%Y-%m}/?format=csv"),
        "report API JSON, last month (snapshot)": _get(client, f"/api/v1/reports/monthly/{last_month:%Y-%m}/"),
        "history by day": lambda: selectors.history(**span, granularity="day"),
        "history by week": lambda: selectors.history(**span, granularity="week"),
        "history by month": lambda: selectors.history(**span, granularity="month"),
        "history by day, one provider": lambda: selectors.history(**span, provider="ollama"),
        "history by day, one agent": lambda: selectors.history(**span, agent="marcus"),
        "history by day, one user": lambda: selectors.history(**span, user_id=_any_user_id()),
        "history by day, agent + model": lambda: selectors.history(**span, agent="emily", model="gpt-4o"),
        "breakdown by provider": lambda: selectors.breakdown(**span, by="provider"),
        "breakdown by model": lambda: selectors.breakdown(**span, by="model"),
        "breakdown by agent": lambda: selectors.breakdown(**span, by="agent"),
        "breakdown by user": lambda: selectors.breakdown(**span, by="user"),
        "totals": lambda: selectors.totals(**span),
        "totals, this month (the dashboard's)": lambda: selectors.totals(start=today.replace(day=1), end=today),
        "run_counts, this month": lambda: selectors.run_counts(start=today.replace(day=1), end=today),
        "dashboard page": _get(client, "/"),
        "filter_choices": selectors.filter_choices,
    }
    for name in PAGES:
        try:
            url = reverse(name)
        except NoReverseMatch:
            continue
        if client.get(url).status_code == 200:
            reads[f"page {url}"] = _get(client, url)
    return {name: _timed_ms(read, repeat) for name, read in reads.items()}


def print_table(results: dict[int, dict[str, tuple[float, float]]], sizes: list[int]) -> None:
    small, large = sizes[0], sizes[-1]
    print()
    print("server time in ms, median (fastest)")
    print(f"{'':<42} {f'{small:,} rows':>16} {f'{large:,} rows':>16} {'ratio':>13}")
    for name in results[large]:
        (a_median, a_min), (b_median, b_min) = results[small][name], results[large][name]
        ratio = f"{b_median / a_median:.2f} ({b_min / a_min:.2f})"
        print(f"{name:<42} {a_median:>7.1f} ({a_min:>6.1f}) {b_median:>7.1f} ({b_min:>6.1f}) {ratio:>13}")


def _timed_ms(read: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median and fastest of `repeat` runs. On a shared machine the fastest is the steadier figure:
    other work only ever adds time."""
    read()  # warm-up: connection, caches, the first snapshot
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        read()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times), min(times)


def _get(client: Client, url: str) -> Callable[[], object]:
    def read() -> object:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        return response

    return read


def _staff_client() -> Client:
    user, _ = get_user_model().objects.get_or_create(
        username="bench-staff", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    return client


def _any_user_id() -> int:
    return get_user_model().objects.filter(username="synthetic05").values_list("pk", flat=True).get()


if __name__ == "__main__":
    main()
