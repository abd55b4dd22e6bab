import ast
import csv
import datetime as dt
import io
import json
import random
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import metrics.coverage
import metrics.figures
import metrics.rollups
import metrics.runs
import metrics.selectors
import metrics.sums
from agents.models import RunStatus
from metrics.figures import local_share, percentile_from_histogram
from metrics.models import LATENCY_BOUNDS_MS, RollupState
from metrics.rollups import rollup_refresh
from metrics.selectors import breakdown, filter_choices, history, run_counts, totals
from routing.models import CallOutcome, LedgerEntry
from tests.agents.views_helpers import make_run, make_team
from tests.metrics.conftest import utc

D = dt.date


@pytest.fixture
def ledger(catalog, add_entry):
    add_entry(created_at=utc(2026, 3, 2, 9), cost_usd=Decimal(0), baseline_cost_usd=Decimal("1.50"))
    add_entry(
        created_at=utc(2026, 3, 2, 10),
        provider=catalog.anthropic,
        cost_usd=Decimal("2.00"),
        baseline_cost_usd=Decimal("2.00"),
        agent="emily",
        user=catalog.bob,
        outcome="transient_error",
    )
    add_entry(
        created_at=utc(2026, 3, 9, 23, 59, 59),
        cost_usd=None,
        baseline_cost_usd=Decimal("0.25"),
        latency_ms=2000,
        ttft_ms=1000,
        completion_tokens=500,
    )
    add_entry(
        created_at=utc(2026, 4, 1),
        provider=catalog.openai,
        cost_usd=Decimal("0.75"),
        baseline_cost_usd=Decimal("0.50"),
        user=None,
        agent="",
    )
    rollup_refresh()


def test_it_gives_one_row_per_day_with_gaps_filled(ledger):
    rows = history(start=D(2026, 3, 1), end=D(2026, 3, 3), granularity="day")

    assert [r["period"] for r in rows] == [D(2026, 3, 1), D(2026, 3, 2), D(2026, 3, 3)]
    assert [r["calls"] for r in rows] == [0, 2, 0]
    day = rows[1]
    assert day["failures"] == 1
    assert day["error_rate"] == Decimal("50.00")
    assert day["local_share"] == Decimal("100.00")  # the one successful call was local
    assert day["cost_usd"] == Decimal("2.00")
    assert day["savings_usd"] == Decimal("1.50")


def test_it_groups_by_monday_weeks_and_calendar_months(ledger):
    weeks = history(start=D(2026, 3, 1), end=D(2026, 3, 15), granularity="week")
    months = history(start=D(2026, 3, 1), end=D(2026, 4, 30), granularity="month")

    assert [(r["period"], r["calls"]) for r in weeks] == [(D(2026, 2, 23), 0), (D(2026, 3, 2), 2), (D(2026, 3, 9), 1)]
    assert [(r["period"], r["calls"]) for r in months] == [(D(2026, 3, 1), 3), (D(2026, 4, 1), 1)]


def test_it_keeps_unpriced_calls_out_of_cost_and_savings_and_counts_them(ledger):
    week = history(start=D(2026, 3, 9), end=D(2026, 3, 15), granularity="week")[0]

    assert week["unpriced_calls"] == 1
    assert week["cost_usd"] == 0
    assert week["baseline_cost_usd"] == Decimal("0.25")
    assert week["savings_usd"] == 0


def test_it_gives_tokens_per_second_from_generation_time(ledger):
    week = history(start=D(2026, 3, 9), end=D(2026, 3, 15), granularity="week")[0]

    assert week["tokens_per_second"] == Decimal("500.0")  # 500 tokens in 2000 ms less 1000 ms to the first token


def test_it_filters_by_provider_model_agent_and_user(ledger, catalog):
    def calls(**filters):
        return sum(r["calls"] for r in history(start=D(2026, 3, 1), end=D(2026, 4, 30), **filters))

    assert calls(provider="anthropic") == 1
    assert calls(model="mistral") == 2
    assert calls(agent="emily") == 1
    assert calls(user_id=catalog.bob.pk) == 1
    assert calls(provider="ollama", agent="emily") == 0


def test_it_breaks_a_range_down_by_each_dimension(ledger, catalog):
    span = {"start": D(2026, 3, 1), "end": D(2026, 4, 30)}

    by_provider = breakdown(**span, by="provider")
    assert [(r["key"], r["calls"], r["is_local"]) for r in by_provider] == [
        ("ollama", 2, True),
        ("anthropic", 1, False),
        ("openai", 1, False),
    ]
    assert {r["label"] for r in breakdown(**span, by="model")} == {
        "ollama/mistral",
        "anthropic/claude-sonnet",
        "openai/gpt-4o",
    }
    assert {r["label"]: r["calls"] for r in breakdown(**span, by="agent")} == {"marcus": 2, "emily": 1, "(none)": 1}
    users = {r["key"]: r for r in breakdown(**span, by="user")}
    assert users[catalog.alice.pk]["label"] == "alice"
    assert users[None]["label"] == "(none)"


def test_it_offers_the_filter_values_present(ledger, catalog):
    choices = filter_choices()

    assert choices["providers"] == ["anthropic", "ollama", "openai"]
    assert choices["models"] == ["claude-sonnet", "gpt-4o", "mistral"]
    assert choices["agents"] == ["emily", "marcus"]
    assert choices["users"] == [
        {"id": catalog.alice.pk, "username": "alice"},
        {"id": catalog.bob.pk, "username": "bob"},
    ]


def test_it_refuses_an_unknown_granularity_or_dimension_or_a_backwards_range(db):
    with pytest.raises(ValueError):
        history(start=D(2026, 3, 1), end=D(2026, 3, 2), granularity="hour")
    with pytest.raises(ValueError):
        breakdown(start=D(2026, 3, 1), end=D(2026, 3, 2), by="colour")
    with pytest.raises(ValueError):
        history(start=D(2026, 3, 2), end=D(2026, 3, 1))


def test_it_reads_percentiles_from_the_histogram_within_a_bucket_of_the_truth():
    rng = random.Random(7)
    latencies = sorted(int(rng.lognormvariate(7.5, 1.0)) for _ in range(5000))
    counts = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    for value in latencies:
        counts[sum(1 for bound in LATENCY_BOUNDS_MS if value >= bound)] += 1

    for q in (0.5, 0.95, 0.99):
        truth = latencies[int(q * len(latencies)) - 1]
        assert abs(percentile_from_histogram(counts, q) - truth) <= 0.26 * truth, q
    assert percentile_from_histogram([0] * len(counts), 0.5) is None


@pytest.mark.parametrize(
    ("start", "end"),
    [(D(2026, 2, 20), D(2026, 4, 10)), (D(2026, 3, 1), D(2026, 3, 31)), (D(2026, 3, 5), D(2026, 3, 6))],
)
def test_it_adds_whole_months_and_ragged_days_up_to_the_same_figures_as_day_by_day(catalog, add_entry, start, end):
    rng = random.Random(11)
    for _ in range(120):
        add_entry(
            created_at=utc(2026, 2, 15) + dt.timedelta(hours=rng.randrange(24 * 60)),
            agent=rng.choice(["marcus", "emily"]),
            user=rng.choice([catalog.alice, catalog.bob]),
            prompt_tokens=rng.randrange(1000),
            baseline_cost_usd=Decimal(rng.randrange(1000)) / 100,
        )
    rollup_refresh()
    days = history(start=start, end=end, granularity="day")

    whole = totals(start=start, end=end)
    assert whole["calls"] == sum(d["calls"] for d in days)
    assert whole["prompt_tokens"] == sum(d["prompt_tokens"] for d in days)
    assert whole["savings_usd"] == sum(d["savings_usd"] for d in days)
    for row in breakdown(start=start, end=end, by="agent"):
        per_agent = history(start=start, end=end, granularity="day", agent=row["key"])
        assert row["calls"] == sum(d["calls"] for d in per_agent)
    for row in breakdown(start=start, end=end, by="user", agent="emily"):
        per_user = history(start=start, end=end, granularity="day", agent="emily", user_id=row["key"])
        assert row["baseline_cost_usd"] == sum(d["baseline_cost_usd"] for d in per_user)


# --- One definition per figure, the same on every surface.


@pytest.fixture
def staff_client(client, db):
    client.force_login(get_user_model().objects.create_user("carol", is_staff=True))
    return client


def surfaces(client, key: str) -> dict[str, object]:
    """One figure of this UTC month as each surface gives it: selectors, dashboard, report (API and
    command, as JSON) and the history page's CSV for today."""
    today = timezone.now().astimezone(dt.UTC).date()
    month = f"{today:%Y-%m}"
    command = io.StringIO()
    call_command("savings_report", month=month, format="json", stdout=command)
    page = client.get("/metrics/local-share/", {"start": today, "end": today, "format": "csv"})
    header, row = list(csv.reader(io.StringIO(page.content.decode())))[:2]
    return {
        "totals": totals(start=today.replace(day=1), end=today)[key],
        "history": history(start=today, end=today)[0][key],
        "dashboard": client.get("/").context["month"][key],
        "report api": client.get(f"/api/v1/reports/monthly/{month}/").json()[key],
        "report command": json.loads(command.getvalue())[key],
        "history page": dict(zip(header, row, strict=True)).get("Local share") if key == "local_share" else None,
    }


def test_the_local_share_is_local_successes_over_successes_on_every_surface(catalog, add_entry, staff_client):
    now = timezone.now()
    for _ in range(6):
        add_entry(created_at=now, outcome=CallOutcome.TRANSIENT)  # failed local attempts: nobody's success
    add_entry(created_at=now)  # the one local success
    add_entry(created_at=now, provider=catalog.anthropic)
    add_entry(created_at=now, provider=catalog.openai)
    rollup_refresh()

    assert local_share(local_successes=1, successes=3) == Decimal("33.33")
    assert surfaces(staff_client, "local_share") == {
        "totals": Decimal("33.33"),
        "history": Decimal("33.33"),
        "dashboard": Decimal("33.33"),
        "report api": "33.33",
        "report command": "33.33",
        "history page": "33.33",
    }
    assert "33.33%" in staff_client.get("/").content.decode()


def test_with_no_successful_call_there_is_no_local_share_on_any_surface(catalog, add_entry, staff_client):
    now = timezone.now()
    for _ in range(6):
        add_entry(created_at=now, outcome=CallOutcome.TRANSIENT)
    rollup_refresh()

    assert local_share(local_successes=0, successes=0) is None
    assert surfaces(staff_client, "local_share") == {
        "totals": None,
        "history": None,
        "dashboard": None,
        "report api": None,
        "report command": None,
        "history page": "",
    }
    dashboard = staff_client.get("/")
    assert dashboard.context["on_target"] is None
    shown = re.search(r'Local share</div>\s*<div class="figure[^"]*">([^<]*)<', dashboard.content.decode())
    assert shown[1] == "\N{EN DASH}"  # core.formatting.MISSING: no share, not 0% or 100%
    report = staff_client.get(f"/metrics/reports/{timezone.now():%Y-%m}/").content.decode()
    assert "on target" not in report and "no successful calls" in report


@pytest.fixture
def runs_of_the_month(catalog, add_entry):
    """Four runs this month: check passed, check failed, no check (succeeded), failed before any call."""
    team = make_team()
    now = timezone.now()

    def run(**fields):
        return make_run(agent=team["marcus"], user=catalog.alice, **fields)

    passed = run(status=RunStatus.SUCCEEDED, quality_ok=True)
    add_entry(created_at=now, run_id=passed.pk, outcome=CallOutcome.TRANSIENT, baseline_cost_usd=Decimal("0.40"))
    add_entry(created_at=now, run_id=passed.pk, baseline_cost_usd=Decimal("1.00"))
    failed_check = run(status=RunStatus.SUCCEEDED, quality_ok=False)
    add_entry(created_at=now, run_id=failed_check.pk, baseline_cost_usd=Decimal("2.00"))
    unchecked = run(status=RunStatus.SUCCEEDED, quality_ok=None)
    add_entry(
        created_at=now,
        run_id=unchecked.pk,
        provider=catalog.openai,
        cost_usd=Decimal("0.20"),
        baseline_cost_usd=Decimal("0.50"),
    )
    run(status=RunStatus.FAILED, error="No provider can serve this request.")
    rollup_refresh()


def test_savings_leave_out_failed_attempts_and_answers_that_failed_their_check(runs_of_the_month, staff_client):
    # 1.00 (passed) + 0.30 (no check); not the failed attempt's 0.40, not the failed check's 2.00.
    assert surfaces(staff_client, "savings_usd") == {
        "totals": Decimal("1.30"),
        "history": Decimal("1.30"),
        "dashboard": Decimal("1.30"),
        "report api": "1.3000000000",
        "report command": "1.3000000000",
        "history page": None,
    }
    month = staff_client.get("/").context["month"]
    assert (month["failed_check_calls"], month["failed_check_usd"]) == (1, Decimal("2.00"))
    assert "$1.30" in staff_client.get("/").content.decode()


def test_the_run_count_includes_runs_that_failed_before_any_call(runs_of_the_month, staff_client):
    today = timezone.now().astimezone(dt.UTC).date()

    assert run_counts(start=today.replace(day=1), end=today) == {
        "runs": 4,
        "runs_without_calls": 1,
        "checks_passed": 1,
        "checks_failed": 1,
        "checks_skipped": 1,
    }
    assert surfaces(staff_client, "runs")["report api"] == 4
    assert run_counts(start=today.replace(day=1), end=today, agent="emily")["runs"] == 0


# --- Freshness: every row committed before the request, whether the rollups have it yet or not.


@pytest.mark.parametrize("refreshed_before", [False, True], ids=["new install", "after a refresh"])
def test_every_surface_includes_rows_committed_just_now(catalog, add_entry, staff_client, refreshed_before):
    if refreshed_before:
        rollup_refresh()
    add_entry(created_at=timezone.now(), baseline_cost_usd=Decimal("0.25"))

    assert surfaces(staff_client, "calls") == {
        "totals": 1,
        "history": 1,
        "dashboard": 1,
        "report api": 1,
        "report command": 1,
        "history page": None,
    }


def ledger_totals(start: dt.date, end: dt.date) -> tuple[int, int, Decimal]:
    """Calls, prompt tokens and savings of the range, summed in Python from every ledger row."""
    entries = [e for e in LedgerEntry.objects.all() if start <= e.created_at.astimezone(dt.UTC).date() <= end]
    savings = sum((e.baseline_cost_usd - e.cost_usd for e in entries if e.outcome == "success"), Decimal(0))
    return len(entries), sum(e.prompt_tokens for e in entries), savings


def test_it_counts_every_row_once_whether_rolled_up_yet_or_not(catalog, add_entry):
    now = timezone.now()
    start, end = (now - dt.timedelta(days=70)).date(), now.date()
    rng = random.Random(3)

    def add_rows(count: int) -> None:
        for _ in range(count):
            # Mostly recent rows, some backfilled into long-closed days (ids above the watermark).
            ago = rng.choice([dt.timedelta(0), dt.timedelta(hours=2), dt.timedelta(days=rng.randrange(1, 60))])
            add_entry(
                created_at=now - ago,
                prompt_tokens=rng.randrange(1000),
                baseline_cost_usd=Decimal(rng.randrange(100)) / 100,
                run_id=rng.choice([None, rng.randrange(5)]),
                outcome=rng.choice([CallOutcome.SUCCESS, CallOutcome.TRANSIENT]),
            )

    def read() -> tuple[int, int, Decimal]:
        figures = totals(start=start, end=end)
        return figures["calls"], figures["prompt_tokens"], figures["savings_usd"]

    for _ in range(3):
        add_rows(15)
        assert read() == ledger_totals(start, end)
        rollup_refresh()
        assert read() == ledger_totals(start, end)
    assert sum(row["calls"] for row in history(start=start, end=end)) == ledger_totals(start, end)[0]


def test_a_row_backfilled_into_a_closed_day_counts_at_once_and_once_after_the_refresh(catalog, add_entry):
    closed = timezone.now() - dt.timedelta(days=40)
    add_entry(created_at=closed, prompt_tokens=1)
    rollup_refresh()

    add_entry(created_at=closed, prompt_tokens=10)
    day = closed.astimezone(dt.UTC).date()

    assert totals(start=day, end=day)["prompt_tokens"] == 11
    assert history(start=day, end=day)[0]["prompt_tokens"] == 11
    rollup_refresh()
    assert totals(start=day, end=day)["prompt_tokens"] == 11


def test_the_filters_offer_a_value_seen_only_since_the_last_refresh(catalog, add_entry):
    rollup_refresh()
    add_entry(created_at=timezone.now(), agent="jordan")

    assert "jordan" in filter_choices()["agents"]


def test_selectors_never_write(catalog, add_entry):
    add_entry(created_at=timezone.now())
    today = timezone.now().astimezone(dt.UTC).date()
    with CaptureQueriesContext(connection) as queries:
        totals(start=today.replace(day=1), end=today)
        history(start=today.replace(day=1), end=today, granularity="week")
        breakdown(start=today.replace(day=1), end=today, by="model")
        filter_choices()

    assert not [q["sql"] for q in queries if not q["sql"].lstrip().upper().startswith("SELECT")]
    assert not RollupState.objects.exists()


def test_a_row_committed_late_with_an_id_below_the_watermark_counts_at_once(catalog, add_entry):
    now = timezone.now()
    add_entry(id=5000, created_at=now, prompt_tokens=1)
    rollup_refresh()

    # Its id was handed out before the refresh, it committed after: no id above the watermark shows it.
    add_entry(id=10, created_at=now, prompt_tokens=10)
    today = now.astimezone(dt.UTC).date()

    assert totals(start=today, end=today)["prompt_tokens"] == 11
    rollup_refresh()
    assert totals(start=today, end=today)["prompt_tokens"] == 11


def test_a_run_counts_once_when_its_earlier_call_commits_after_the_refresh(catalog, add_entry):
    now = timezone.now()
    add_entry(created_at=now, run_id=7)
    add_entry(created_at=now - dt.timedelta(days=20), run_id=8)
    rollup_refresh()

    add_entry(created_at=now - dt.timedelta(seconds=30), run_id=7, outcome=CallOutcome.TRANSIENT)
    add_entry(created_at=now - dt.timedelta(days=21), run_id=8, outcome=CallOutcome.TRANSIENT)
    start, end = (now - dt.timedelta(days=25)).date(), now.date()

    assert totals(start=start, end=end)["runs"] == 2
    assert sum(row["runs"] for row in history(start=start, end=end)) == 2


def test_a_run_that_fails_before_any_call_counts_at_once_and_once_after_the_refresh(catalog):
    team = make_team()
    rollup_refresh()
    make_run(agent=team["marcus"], user=catalog.alice, status=RunStatus.FAILED)
    make_run(agent=team["emily"], user=catalog.bob, status=RunStatus.QUEUED)  # no call yet, but not ended
    today = timezone.now().astimezone(dt.UTC).date()

    assert run_counts(start=today, end=today)["runs_without_calls"] == 1
    rollup_refresh()
    assert run_counts(start=today, end=today)["runs_without_calls"] == 1
    assert run_counts(start=today, end=today, agent="marcus", user_id=catalog.alice.pk)["runs_without_calls"] == 1
    assert run_counts(start=today, end=today, agent="emily")["runs_without_calls"] == 0


def test_a_cancelled_run_whose_call_lands_after_the_refresh_counts_once(catalog, add_entry):
    run = make_run(agent=make_team()["marcus"], user=catalog.alice, status=RunStatus.CANCELLED)
    rollup_refresh()
    today = timezone.now().astimezone(dt.UTC).date()
    assert run_counts(start=today, end=today) == {
        "runs": 1,
        "runs_without_calls": 1,
        "checks_passed": 0,
        "checks_failed": 0,
        "checks_skipped": 0,
    }

    add_entry(created_at=timezone.now(), run_id=run.pk)  # the call that was in flight when it was cancelled

    after = run_counts(start=today, end=today)
    assert (after["runs"], after["runs_without_calls"]) == (1, 0)
    rollup_refresh()
    assert run_counts(start=today, end=today)["runs_without_calls"] == 0


def test_the_figures_never_import_the_report_module():
    # The report builds on the selectors: an import back, even inside a function, makes a cycle.
    for module in (metrics.selectors, metrics.sums, metrics.coverage, metrics.figures, metrics.rollups, metrics.runs):
        tree = ast.parse(Path(module.__file__).read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert "metrics.reports" not in imported, module.__name__
        assert not any(name.startswith("metrics.views") for name in imported if name), module.__name__
