"""The history pages and the monthly report filtered and broken down by source, team and API key,
on the ledger in DATABASE_URL, against reading the ledger directly for a filtered view.

    DATABASE_URL=postgres://... .venv/bin/python manage.py fill_ledger --rows 1000000 --months 3
    DATABASE_URL=postgres://... .venv/bin/python bench/bench_metrics_sources.py --prepare [--runs 15]

fill_ledger writes agent runs only, with no team and no key. `--prepare` makes the ledger look
like one with the gateway in use: its twelve synthetic users in three teams, two API keys each,
and `--gateway-share` of the calls (those of runs whose id is a multiple of 5: 20%) turned into
gateway calls (agent "gateway", no run, one of the user's two keys); every row gets its user's
team. It then sums every day again (`rollup_refresh(full=True)`) and prints how many rollup rows
each level has before and after: what the new grain (team, key) costs.

Then each page is requested through Django's test client as staff (3 warm-ups, --runs timed,
median and p95), unfiltered and filtered; and the same filtered figures are read straight from
the ledger through `ledger_rollup_sql` (what a filtered view would cost without the rollups).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402

from accounts.models import ApiKey, Membership, Team  # noqa: E402
from accounts.services import key_create  # noqa: E402
from metrics.models import DailyPeopleRollup, DailyRollup, MonthlyRollup  # noqa: E402
from metrics.rollups import ledger_rollup_sql, rollup_refresh  # noqa: E402
from routing.models import LedgerEntry  # noqa: E402

TEAMS = ("bench-red", "bench-blue", "bench-green")


def rollup_counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in (DailyRollup, DailyPeopleRollup, MonthlyRollup)}


def prepare() -> None:
    users = list(get_user_model().objects.filter(username__startswith="synthetic").order_by("username"))
    if not users:
        sys.exit("No synthetic users: run fill_ledger first.")
    print("rollup rows before:", rollup_counts())
    teams = [Team.objects.get_or_create(name=name)[0] for name in TEAMS]
    for index, user in enumerate(users):
        Membership.objects.update_or_create(user=user, defaults={"team": teams[index % len(teams)]})
        while ApiKey.objects.filter(user=user).count() < 2:
            key_create(user=user, name=f"bench-{ApiKey.objects.filter(user=user).count() + 1}")
    began = time.monotonic()
    ledger = connection.ops.quote_name(LedgerEntry._meta.db_table)
    membership = connection.ops.quote_name(Membership._meta.db_table)
    keys = connection.ops.quote_name(ApiKey._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {ledger} l SET team_id = m.team_id FROM {membership} m WHERE m.user_id = l.user_id"  # noqa: S608
        )
        # A gateway call: no run; the user's first or second key, by the row's id.
        cursor.execute(
            f"UPDATE {ledger} l SET agent = 'gateway', run_id = NULL, endpoint = '/v1/chat/completions', "  # noqa: S608
            f"api_key_id = CASE WHEN l.id % 2 = 0 THEN (SELECT MIN(k.id) FROM {keys} k WHERE k.user_id = l.user_id) "
            f"ELSE (SELECT MAX(k.id) FROM {keys} k WHERE k.user_id = l.user_id) END WHERE l.run_id % 5 = 0"
        )
    print(f"teams, keys and gateway rows written in {time.monotonic() - began:.1f} s")
    began = time.monotonic()
    rollup_refresh(full=True)
    print(f"full rollup refresh: {time.monotonic() - began:.1f} s")
    print("rollup rows after: ", rollup_counts())


def timed(call: Callable[[], object], runs: int) -> tuple[float, float]:
    for _ in range(3):
        call()
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)]


def page(client: Client, url: str, params: dict[str, str]) -> Callable[[], object]:
    def get() -> object:
        response = client.get(url, params)
        assert response.status_code == 200, (url, params, response.status_code, response.content[:300])
        return response

    return get


def ledger_direct(start: dt.date, end: dt.date, **filters: object) -> Callable[[], object]:
    """The filtered range's figures summed from the ledger itself, no rollups."""
    entries = LedgerEntry.objects.filter(
        created_at__gte=dt.datetime.combine(start, dt.time.min, tzinfo=dt.UTC),
        created_at__lt=dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC),
        **filters,
    )

    def read() -> object:
        sql, params = ledger_rollup_sql(entries)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT SUM(calls), SUM(cost_usd), SUM(savings_usd) FROM ({sql}) r", params)  # noqa: S608
            return cursor.fetchone()

    return read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--prepare", action="store_true", help="Teams, keys and gateway rows first (see above).")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        sys.exit("Set DATABASE_URL to the PostgreSQL database that fill_ledger filled.")
    if args.prepare:
        prepare()
    staff, _ = get_user_model().objects.get_or_create(username="bench-metrics", defaults={"is_staff": True})
    client = Client(HTTP_HOST="localhost")
    client.force_login(staff)
    today = dt.datetime.now(dt.UTC).date()
    start = today - dt.timedelta(days=89)
    last_90 = {"start": start.isoformat(), "end": today.isoformat()}
    team = Team.objects.get(name=TEAMS[0])
    key = ApiKey.objects.filter(name="bench-1").order_by("id").first()
    month = f"{today:%Y-%m}"
    cases = {
        "cost page, 90 days": page(client, "/metrics/", last_90),
        "cost page, 90 days, source=gateway": page(client, "/metrics/", {**last_90, "source": "gateway"}),
        "cost page, 90 days, team": page(client, "/metrics/", {**last_90, "team": str(team.pk)}),
        "cost page, 90 days, key": page(client, "/metrics/", {**last_90, "key": str(key.pk)}),
        "latency page, 90 days": page(client, "/metrics/latency/", last_90),
        "latency page, 90 days, team + source": page(
            client, "/metrics/latency/", {**last_90, "team": str(team.pk), "source": "agents"}
        ),
        "report API, this month": page(client, f"/api/v1/reports/monthly/{month}/", {}),
        "report API, this month, source=gateway": page(
            client, f"/api/v1/reports/monthly/{month}/", {"source": "gateway"}
        ),
        "report API, this month, team + key": page(
            client, f"/api/v1/reports/monthly/{month}/", {"team": str(team.pk), "key": str(key.pk)}
        ),
        "ledger directly, 90 days, one team": ledger_direct(start, today, team_id=team.pk),
        "ledger directly, 90 days, one key": ledger_direct(start, today, api_key_id=key.pk),
        "ledger directly, 90 days, gateway": ledger_direct(start, today, agent="gateway"),
    }
    print(f"ledger rows: {LedgerEntry.objects.count():,}; runs: {args.runs}")
    print(f"{'case':<48} {'p50 ms':>8} {'p95 ms':>8}")
    for name, call in cases.items():
        p50, p95 = timed(call, args.runs)
        print(f"{name:<48} {p50:>8.1f} {p95:>8.1f}")


if __name__ == "__main__":
    main()
