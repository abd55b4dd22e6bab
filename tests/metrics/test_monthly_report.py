import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from metrics.models import MonthlyReport
from metrics.reports.formats import report_json
from metrics.reports.selectors import report_get
from metrics.reports.services import report_get_or_store, report_regenerate
from metrics.rollups import rollup_refresh
from routing.models import LedgerEntry, RoutingPolicy
from tests.metrics.ledger_march import EXPECTED, build_march_ledger


def cents(value: str) -> Decimal:
    return Decimal(value).quantize(Decimal("0.01"))


def monthly_report(*, month: str) -> dict:
    """The report as the API and the command give it (JSON), storing a finished month as they do."""
    return report_json(report_get_or_store(month=month))


@pytest.fixture
def march(catalog, add_entry):
    build_march_ledger(catalog, add_entry)
    rollup_refresh()


def test_it_gives_cost_baseline_and_savings_to_the_cent(march):
    report = monthly_report(month="2026-03")

    for key in ("cost_usd", "baseline_cost_usd", "savings_usd"):
        assert cents(report[key]) == EXPECTED[key], key
        assert Decimal(report[key]) == EXPECTED[key], key  # and exactly: no float on the way


def test_it_counts_runs_calls_tokens_and_the_local_share_against_the_target(march):
    report = monthly_report(month="2026-03")

    for key in ("month", "runs", "calls", "successes", "failures", "local_calls", "target_local_share"):
        assert report[key] == EXPECTED[key], key
    assert report["prompt_tokens"] == EXPECTED["prompt_tokens"]
    assert report["completion_tokens"] == EXPECTED["completion_tokens"]


def test_it_gives_the_local_share_of_successful_calls(march):
    assert monthly_report(month="2026-03")["local_share"] == "40.00"


def test_it_honours_a_price_change_in_the_middle_of_the_month_call_by_call(march):
    report = monthly_report(month="2026-03")

    by_provider = {row["key"]: row for row in report["by_provider"]}
    # 2.10 at the old price plus 0.10 at the new one; at either price alone it would be 2.40 or 0.80.
    assert Decimal(by_provider["anthropic"]["cost_usd"]) == Decimal("2.20")
    assert Decimal(by_provider["openai"]["baseline_cost_usd"]) == Decimal("0.60")
    assert Decimal(by_provider["ollama"]["baseline_cost_usd"]) == Decimal("11.30")


def test_it_puts_a_call_in_the_last_millisecond_of_the_month_in_that_month(march):
    march_report = monthly_report(month="2026-03")
    april_report = monthly_report(month="2026-04")

    assert march_report["calls"] == 6
    assert april_report["calls"] == 1
    assert april_report["prompt_tokens"] == 5000


def test_it_breaks_the_month_down_by_provider_model_agent_and_user(march):
    report = monthly_report(month="2026-03")

    assert [(r["key"], r["calls"], r["is_local"]) for r in report["by_provider"]] == [
        ("ollama", 3, True),
        ("anthropic", 2, False),
        ("openai", 1, False),
    ]
    assert {r["label"]: r["calls"] for r in report["by_model"]} == {
        "ollama/mistral": 3,
        "anthropic/claude-sonnet": 2,
        "openai/gpt-4o": 1,
    }
    assert {r["key"]: r["calls"] for r in report["by_agent"]} == {"marcus": 4, "emily": 2}
    assert {r["label"]: r["calls"] for r in report["by_user"]} == {"alice": 5, "bob": 1}
    assert sum(Decimal(r["savings_usd"]) for r in report["by_agent"]) == EXPECTED["savings_usd"]


def test_it_reports_latency_percentiles_of_successful_calls(march):
    report = monthly_report(month="2026-03")

    # Successful calls took 900, 1100, 1500, 2000 and 3000 ms; the failed 30 s attempt is left out.
    assert 1250 <= report["p50_ms"] <= 1600
    assert 2500 <= report["p95_ms"] <= 3150


def test_it_compares_the_month_with_the_previous_one(march):
    report = monthly_report(month="2026-03")

    assert report["previous"]["month"] == "2026-02"
    assert report["previous"]["calls"] == 1
    assert report["change"]["calls"] == 5
    assert Decimal(report["change"]["baseline_cost_usd"]) == Decimal("14.10") - Decimal("0.018")


def test_it_gives_zeros_for_an_empty_month(catalog):
    report = monthly_report(month="2025-07")

    assert report["calls"] == report["runs"] == report["prompt_tokens"] == 0
    assert Decimal(report["cost_usd"]) == Decimal(report["savings_usd"]) == 0
    assert report["local_share"] is None
    assert report["p50_ms"] is None
    assert report["by_provider"] == report["by_agent"] == []
    assert report["change"]["calls"] == 0


def test_it_gives_no_local_share_for_an_empty_month(catalog):
    assert monthly_report(month="2025-07")["local_share"] is None


def test_it_rejects_a_malformed_month(db):
    for month in ("2026-13", "2026-00", "26-03", "2026-3", "march", ""):
        with pytest.raises(ValueError, match="2026-03"):
            monthly_report(month=month)


def test_it_stores_a_finished_month_and_the_snapshot_survives_a_price_change(march, catalog):
    first = monthly_report(month="2026-03")
    assert first["final"] is True
    assert MonthlyReport.objects.filter(month=dt.date(2026, 3, 1)).exists()

    # Prices are corrected and the ledger re-costed afterwards, and the local target raised.
    LedgerEntry.objects.filter(provider=catalog.anthropic).update(cost_usd=Decimal(99))
    policy = RoutingPolicy.get()
    policy.target_local_share = Decimal(95)
    policy.save()
    rollup_refresh(full=True)

    again = monthly_report(month="2026-03")
    assert again == first

    regenerated = report_json(report_regenerate(month="2026-03"))
    assert Decimal(regenerated["cost_usd"]) == Decimal("199.40")
    assert regenerated["target_local_share"] == "95.00"
    assert monthly_report(month="2026-03") == regenerated


def test_it_does_not_freeze_a_month_before_the_rollups_cover_its_end(catalog, add_entry):
    build_march_ledger(catalog, add_entry)  # no refresh yet

    report = monthly_report(month="2026-03")

    assert report["final"] is False
    assert not MonthlyReport.objects.exists()


def test_it_does_not_store_the_current_month(march):
    now = timezone.now()
    report = monthly_report(month=f"{now:%Y-%m}")

    assert report["final"] is False
    assert not MonthlyReport.objects.filter(month=now.date().replace(day=1)).exists()


def test_reading_a_finished_month_stores_nothing_until_the_service_is_called(march):
    report = report_get(month="2026-03")

    assert report.final is True and report.stored is False
    assert not MonthlyReport.objects.exists()
    stored = report_get_or_store(month="2026-03")
    assert stored.stored is True
    assert MonthlyReport.objects.get().data == report_json(stored)


def test_a_stored_report_reads_back_with_the_same_decimals(march):
    built = report_get(month="2026-03")

    stored = report_get_or_store(month="2026-03")

    assert stored.figures == built.figures
    assert stored.by_provider == built.by_provider
    assert stored.figures.cost_usd == EXPECTED["cost_usd"]
    assert isinstance(stored.figures.savings_usd, Decimal)


def test_it_reads_a_snapshot_stored_before_the_report_was_typed(catalog):
    # As the old report module stored it: money to six places, "+00:00", no run-check figures.
    figures = {"runs": 2, "calls": 3, "local_calls": 1, "local_share": "33.33", "cost_usd": "1.250000"}
    MonthlyReport.objects.create(
        month=dt.date(2025, 1, 1),
        generated_at=timezone.now(),
        data={
            "month": "2025-01",
            "start": "2025-01-01",
            "end": "2025-01-31",
            "generated_at": "2025-02-01T02:00:00.123456+00:00",
            "final": True,
            "target_local_share": "85.00",
            **figures,
            "by_provider": [{"key": "ollama", "label": "ollama", "provider": "ollama", "is_local": True, **figures}],
            "previous": {"month": "2024-12", "calls": 0, "local_share": "0.00", "cost_usd": "0.000000"},
            "change": {"calls": 3},
        },
    )

    report = monthly_report(month="2025-01")

    assert (report["runs"], report["calls"], report["local_share"]) == (2, 3, "33.33")
    assert report["cost_usd"] == "1.2500000000"
    assert report["generated_at"] == "2025-02-01T02:00:00.123456Z"
    assert report["by_provider"][0]["cost_usd"] == "1.2500000000"
    assert report["change"]["cost_usd"] == "1.2500000000"
