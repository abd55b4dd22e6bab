import datetime as dt
import random
from decimal import Decimal

import pytest

from metrics.models import LATENCY_BOUNDS_MS
from metrics.rollups import rollup_refresh
from metrics.figures import percentile_from_histogram
from metrics.selectors import breakdown, filter_choices, history, totals
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
    assert day["local_share"] == Decimal("50.00")
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
