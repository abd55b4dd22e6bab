import bisect
import datetime as dt
import random
from collections import defaultdict
from decimal import Decimal

import pytest
from django.utils import timezone

from agents.models import Agent, AgentRun, RunStatus
from metrics.models import (
    LATENCY_BOUNDS_MS,
    LATENCY_FIELDS,
    DailyModelRollup,
    DailyPeopleRollup,
    DailyRollup,
    MonthlyRollup,
    RollupState,
)
from metrics.rollups import SAFETY_WINDOW, rollup_refresh
from routing.models import CallOutcome, LedgerEntry
from tests.metrics.conftest import utc

FIGURES = (
    "calls",
    "successes",
    "failures",
    "runs",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "baseline_cost_usd",
    "savings_usd",
    "failed_check_calls",
    "failed_check_usd",
    "checks_passed",
    "checks_failed",
    "checks_skipped",
    "unpriced_calls",
    "latency_sum_ms",
    "gen_completion_tokens",
    "gen_ms",
)


def run_checks() -> dict[int, str | None]:
    """How each agent run's quality check went: passed, failed, skipped (succeeded, no check) or None."""
    checks = {}
    for run in AgentRun.objects.all():
        if run.quality_ok is not None:
            checks[run.pk] = "passed" if run.quality_ok else "failed"
        else:
            checks[run.pk] = "skipped" if run.status == RunStatus.SUCCEEDED else None
    return checks


def direct_aggregation() -> dict[tuple, dict]:
    """What the rollups must say, computed in Python from every ledger row."""
    entries = list(LedgerEntry.objects.order_by("created_at", "id"))
    checks = run_checks()
    first_of_run = {}
    for entry in entries:
        if entry.run_id is not None:
            first_of_run.setdefault(entry.run_id, entry.pk)
    groups: dict[tuple, dict] = defaultdict(lambda: defaultdict(int))
    for e in entries:
        key = (e.created_at.astimezone(dt.UTC).date(), e.provider_id, e.model_name, e.agent, e.user_id, e.is_local)
        g = groups[key]
        ok = e.outcome == CallOutcome.SUCCESS
        g["calls"] += 1
        g["successes"] += ok
        g["failures"] += not ok
        first = first_of_run.get(e.run_id) == e.pk
        check = checks.get(e.run_id)
        g["runs"] += first
        g[f"checks_{check}"] += first and check is not None
        g["prompt_tokens"] += e.prompt_tokens
        g["completion_tokens"] += e.completion_tokens
        g["cost_usd"] += e.cost_usd or 0
        g["baseline_cost_usd"] += e.baseline_cost_usd or 0
        saved = e.baseline_cost_usd - e.cost_usd if e.cost_usd is not None and e.baseline_cost_usd is not None else 0
        if ok and check == "failed":
            g["failed_check_calls"] += 1
            g["failed_check_usd"] += saved
        elif ok:
            g["savings_usd"] += saved
        g["unpriced_calls"] += e.cost_usd is None
        if ok:
            g["latency_sum_ms"] += e.latency_ms
            g["gen_completion_tokens"] += e.completion_tokens
            g["gen_ms"] += max(e.latency_ms - e.ttft_ms, 0) if e.ttft_ms is not None else e.latency_ms
            g[LATENCY_FIELDS[bisect.bisect_right(LATENCY_BOUNDS_MS, e.latency_ms)]] += 1
    return {key: {name: g[name] for name in (*FIGURES, *LATENCY_FIELDS)} for key, g in groups.items()}


def coarser(daily: dict[tuple, dict], level: str) -> dict[tuple, dict]:
    """Direct figures re-keyed for a coarser rollup level."""
    result: dict[tuple, dict] = defaultdict(lambda: defaultdict(int))
    for (day, provider, model, agent, user, local), figures in daily.items():
        if level == "model":
            key = (day, provider, model, local)
        elif level == "people":
            key = (day, agent, user, local)
        else:
            key = (day.replace(day=1), provider, model, agent, user, local)
        for name, value in figures.items():
            result[key][name] += value
    return {key: dict(figures) for key, figures in result.items()}


def rollup_contents() -> dict[tuple, dict]:
    """Every rollup row of every level, checked to agree with the daily level; returns the daily level."""
    levels = {
        "day": (DailyRollup, lambda r: (r.day, r.provider_id, r.model_name, r.agent, r.user_id, r.is_local)),
        "model": (DailyModelRollup, lambda r: (r.day, r.provider_id, r.model_name, r.is_local)),
        "people": (DailyPeopleRollup, lambda r: (r.day, r.agent, r.user_id, r.is_local)),
        "month": (MonthlyRollup, lambda r: (r.month, r.provider_id, r.model_name, r.agent, r.user_id, r.is_local)),
    }
    contents = {}
    for level, (model, key_of) in levels.items():
        result = {}
        for r in model.objects.all():
            key = key_of(r)
            assert key not in result, f"two {level} rollup rows for {key}"
            result[key] = {name: getattr(r, name) for name in (*FIGURES, *LATENCY_FIELDS)}
        contents[level] = result
    assert contents["model"] == coarser(contents["day"], "model")
    assert contents["people"] == coarser(contents["day"], "people")
    assert contents["month"] == coarser(contents["day"], "month")
    return contents["day"]


RUN_ENDINGS = (
    (RunStatus.SUCCEEDED, True),
    (RunStatus.SUCCEEDED, False),
    (RunStatus.SUCCEEDED, None),
    (RunStatus.FAILED, None),
    (RunStatus.RUNNING, None),
)


def random_ledger(rng: random.Random, catalog, count: int, *, start: dt.datetime, days: int) -> None:
    providers = [catalog.ollama, catalog.anthropic, catalog.openai]
    rows = []
    for _ in range(count):
        near_midnight = [dt.timedelta(0), dt.timedelta(microseconds=-1), dt.timedelta(seconds=rng.randrange(86400))]
        provider = rng.choice(providers)
        priced = rng.random() > 0.1
        rows.append(
            LedgerEntry(
                # Whole days plus the instants either side of midnight, where off-by-one errors live.
                created_at=start + dt.timedelta(days=rng.randrange(days)) + rng.choice(near_midnight),
                provider=provider,
                model_name=provider.default_model if rng.random() > 0.2 else "other-model",
                is_local=provider.is_local,
                outcome=rng.choice([CallOutcome.SUCCESS] * 4 + [CallOutcome.TRANSIENT, CallOutcome.PERMANENT]),
                prompt_tokens=rng.randrange(5000),
                completion_tokens=rng.randrange(2000),
                latency_ms=rng.choice([0, 9, 10, 11, rng.randrange(200_000), 1_000_000, 2_500_000]),
                ttft_ms=rng.choice([None, rng.randrange(3000)]),
                cost_usd=Decimal(rng.randrange(10**8)) / 10**10 if priced else None,
                baseline_cost_usd=Decimal(rng.randrange(10**8)) / 10**10 if rng.random() > 0.1 else None,
                agent=rng.choice(["marcus", "emily", ""]),
                user=rng.choice([catalog.alice, catalog.bob, None]),
                run_id=rng.choice([None, 1 + rng.randrange(40)]),
            )
        )
    LedgerEntry.objects.bulk_create(rows)
    agent, _ = Agent.objects.get_or_create(slug="marcus", defaults={"name": "Marcus", "capability": "code"})
    for run_id in set(range(1, 41)) - set(AgentRun.objects.values_list("pk", flat=True)):
        # Runs whose check passed, failed or was not run, runs that failed, and (38-40) no run at all.
        if run_id <= 37:
            status, quality_ok = rng.choice(RUN_ENDINGS)
            AgentRun.objects.create(id=run_id, agent=agent, prompt="p", status=status, quality_ok=quality_ok)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_it_matches_a_direct_aggregation_of_random_ledger_rows(catalog, seed):
    random_ledger(random.Random(seed), catalog, 600, start=utc(2026, 2, 26), days=5)

    rollup_refresh()

    assert rollup_contents() == direct_aggregation()


def test_it_gives_the_same_rows_when_run_twice(catalog):
    random_ledger(random.Random(4), catalog, 200, start=utc(2026, 3, 1), days=3)
    rollup_refresh()
    first = rollup_contents()

    rollup_refresh()
    rollup_refresh(full=True)

    assert rollup_contents() == first == direct_aggregation()


def test_it_stays_exact_when_rows_arrive_between_refreshes(catalog):
    rng = random.Random(5)
    for _ in range(4):
        random_ledger(rng, catalog, 100, start=utc(2026, 3, 1), days=4)
        rollup_refresh()
        assert rollup_contents() == direct_aggregation()


def test_it_picks_up_a_backfilled_row_for_an_old_day(catalog, add_entry):
    add_entry(created_at=utc(2026, 3, 10, 12))
    rollup_refresh()

    add_entry(created_at=utc(2025, 1, 1, 0, 0), prompt_tokens=7)
    rollup_refresh()

    assert DailyRollup.objects.get(day=dt.date(2025, 1, 1)).prompt_tokens == 7
    assert rollup_contents() == direct_aggregation()


def test_it_picks_up_a_row_committed_after_a_refresh_with_an_id_below_the_watermark(catalog, add_entry):
    now = timezone.now()
    add_entry(id=5000, created_at=now - dt.timedelta(minutes=1))
    rollup_refresh()
    assert RollupState.objects.get().last_ledger_id == 5000

    # Its id was handed out before the refresh, its call started 10 minutes ago, it committed just now.
    add_entry(id=10, created_at=now - dt.timedelta(minutes=10), prompt_tokens=1)
    rollup_refresh()

    assert rollup_contents() == direct_aggregation()


def test_it_leaves_a_late_row_older_than_the_safety_window_to_a_full_refresh(catalog, add_entry):
    add_entry(id=5000, created_at=utc(2026, 3, 10, 12))
    rollup_refresh()
    old = timezone.now() - SAFETY_WINDOW - dt.timedelta(days=3)
    add_entry(id=10, created_at=old)

    rollup_refresh()
    assert not DailyRollup.objects.filter(day=old.date()).exists()

    rollup_refresh(full=True)
    assert rollup_contents() == direct_aggregation()


def test_it_counts_a_run_once_on_its_first_call_even_when_an_earlier_call_arrives_later(catalog, add_entry):
    add_entry(created_at=utc(2026, 3, 11, 0, 5), run_id=7)
    rollup_refresh()
    assert DailyRollup.objects.get(day=dt.date(2026, 3, 11)).runs == 1

    add_entry(created_at=utc(2026, 3, 10, 23, 59), run_id=7, provider=catalog.anthropic)
    rollup_refresh()

    assert DailyRollup.objects.get(day=dt.date(2026, 3, 11)).runs == 0
    assert DailyRollup.objects.get(day=dt.date(2026, 3, 10)).runs == 1


def test_it_removes_rollups_of_a_day_whose_ledger_rows_were_deleted_on_a_full_refresh(catalog, add_entry):
    entry = add_entry(created_at=utc(2026, 3, 10, 12))
    rollup_refresh()
    entry.delete()

    rollup_refresh(full=True)

    assert not DailyRollup.objects.exists()
    assert not DailyModelRollup.objects.exists()
    assert not DailyPeopleRollup.objects.exists()
    assert not MonthlyRollup.objects.exists()
