import csv
import datetime as dt
import io
import json
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from metrics.models import MonthlyReport
from metrics.rollups import rollup_refresh
from routing.models import LedgerEntry
from tests.metrics.ledger_march import EXPECTED, build_march_ledger, store_report_by_hand


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("savings_report", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def march(catalog, add_entry):
    build_march_ledger(catalog, add_entry)
    rollup_refresh()


def test_it_prints_a_table_with_the_months_figures(march):
    table = run("--month", "2026-03")

    assert "savings report for 2026-03" in table
    assert "Local share 40.00% (target 85.00%)" in table
    assert "$3.60" in table
    assert "$14.10" in table
    assert "$10.50" in table
    assert "anthropic/claude-sonnet" in table


def test_it_prints_json_with_the_exact_figures(march):
    data = json.loads(run("--month", "2026-03", "--format", "json"))

    assert data["calls"] == EXPECTED["calls"]
    assert Decimal(data["savings_usd"]) == EXPECTED["savings_usd"]


def test_it_prints_csv_that_parses_back_to_the_json_figures(march):
    data = json.loads(run("--month", "2026-03", "--format", "json"))
    rows = list(csv.DictReader(io.StringIO(run("--month", "2026-03", "--format", "csv"))))

    month = next(r for r in rows if r["section"] == "month")
    assert int(month["calls"]) == data["calls"]
    assert Decimal(month["cost_usd"]) == Decimal(data["cost_usd"])
    assert month["target_local_share"] == data["target_local_share"]


def test_it_regenerates_a_stored_month_only_when_asked(march, catalog):
    run("--month", "2026-03")
    assert MonthlyReport.objects.count() == 1
    LedgerEntry.objects.filter(provider=catalog.openai).update(cost_usd=Decimal("2.40"))

    stale = json.loads(run("--month", "2026-03", "--format", "json"))
    fresh = json.loads(run("--month", "2026-03", "--format", "json", "--regenerate"))

    assert Decimal(stale["cost_usd"]) == Decimal("3.60")
    assert Decimal(fresh["cost_usd"]) == Decimal("4.60")
    assert Decimal(MonthlyReport.objects.get().data["cost_usd"]) == Decimal("4.60")


def test_it_gives_zeros_for_an_empty_month(catalog):
    data = json.loads(run("--month", "2025-07", "--format", "json"))

    assert data["calls"] == 0
    assert Decimal(data["cost_usd"]) == 0


def test_it_refuses_a_malformed_month(db):
    with pytest.raises(CommandError, match="2026-03"):
        run("--month", "2026-3")


def test_it_prints_no_local_share_without_a_successful_call_and_the_failed_check_apart(catalog):
    store_report_by_hand(
        month=dt.date(2026, 3, 1),
        runs=4,
        checks_passed=1,
        checks_failed=1,
        checks_skipped=1,
        runs_without_calls=1,
        calls=6,
        failures=6,
        local_calls=6,
        local_share=None,
        failed_check_calls=1,
        failed_check_usd=Decimal("0.42"),
    )

    table = run("--month", "2026-03")

    assert "Local share \N{EN DASH} (target 85.00%)" in table
    assert "Savings     $0.00" in table
    assert "Failed check $0.4200 over 1 calls (not in the savings)" in table
    assert "Runs        4: 1 passed the quality check, 1 failed it, 1 skipped it; 1 failed before any call" in table


def test_it_prints_a_charge_below_a_hundredth_of_a_cent_as_such(catalog):
    store_report_by_hand(month=dt.date(2026, 3, 1), calls=1, cost_usd=Decimal("0.00003"))

    assert "Cost        <$0.0001" in run("--month", "2026-03")
