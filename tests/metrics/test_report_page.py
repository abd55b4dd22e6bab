"""The printable monthly savings report at /metrics/reports/YYYY-MM/ (staff only)."""

from __future__ import annotations

import datetime as dt
import html
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders

from metrics.forms import utc_today
from metrics.rollups import rollup_refresh
from tests.metrics.conftest import utc
from tests.metrics.ledger_march import build_march_ledger, store_report_by_hand
from tests.metrics.test_history_pages import chart_of, rows_by_first_cell, tables_of

MARCH_URL = "/metrics/reports/2026-03/"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_client(client, db):
    staff = get_user_model().objects.create_user("carol", "carol@example.com", "pw-carol-123", is_staff=True)
    client.force_login(staff)
    return client


@pytest.fixture
def march(catalog, add_entry):
    """The hand-built March 2026 ledger (known costs: $3.60 cost, $14.10 baseline, $10.50 saved)."""
    build_march_ledger(catalog, add_entry)
    rollup_refresh()
    return catalog


def test_it_sends_anonymous_visitors_to_the_apps_login_page(client, db):
    for url in (MARCH_URL, "/metrics/reports/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/login/?next=")  # the app's login, not the admin's


def test_it_tells_signed_in_people_who_are_not_staff_that_they_need_staff_access(client, march):
    client.force_login(march.alice)
    for url in (MARCH_URL, "/metrics/reports/"):
        response = client.get(url)
        assert response.status_code == 403
        assert "You need staff access to see the metrics" in response.content.decode()
        assert b"14.10" not in response.content


def test_it_shows_the_months_cost_baseline_savings_and_local_share(staff_client, march):
    response = staff_client.get(MARCH_URL)
    assert response.status_code == 200
    summary = rows_by_first_cell(tables_of(response)["table-summary"])
    month = {label: row["2026-03"] for label, row in summary.items()}
    assert month["Cost"] == "$3.60"
    assert month["Cloud baseline"] == "$14.10"
    assert month["Savings"] == "$10.50"
    assert month["Runs"] == "3"
    assert month["Calls"] == "6"
    assert month["Local share"] == "40.00%"
    assert month["Target local share"] == "85.00%"
    assert month["Prompt tokens"] == "2,000,000"
    assert month["Completion tokens"] == "740,000"
    assert month["Latency p50 (ms)"] != "\N{EN DASH}"
    assert "below target" in response.content.decode()


def test_it_compares_the_month_with_the_previous_one(staff_client, march, add_entry):
    add_entry(created_at=utc(2026, 2, 10), cost_usd=Decimal("1.00"), baseline_cost_usd=Decimal("2.00"))
    rollup_refresh()
    summary = rows_by_first_cell(tables_of(staff_client.get(MARCH_URL))["table-summary"])
    assert summary["Calls"]["2026-02"] == "2"  # the hand-built ledger's Feb 28th call, and this one
    assert summary["Calls"]["Change"] == "+4"
    assert summary["Cost"]["2026-02"] == "$1.00"
    assert summary["Cost"]["Change"] == "+$2.60"
    assert summary["Local share"]["2026-02"] == "100.00%"
    assert summary["Local share"]["Change"] == "-60.00 pts"


def test_it_breaks_the_month_down_by_provider_model_agent_and_user(staff_client, march):
    response = staff_client.get(MARCH_URL)
    tables = tables_of(response)
    providers = rows_by_first_cell(tables["table-by-provider"])
    assert set(providers) == {"ollama", "anthropic", "openai"}
    assert providers["openai"]["Cost"] == "$1.40"
    assert providers["openai"]["Cloud baseline"] == "$0.6000"
    assert providers["ollama"]["Local share"] == "100.00%"
    assert "openai/gpt-4o" in rows_by_first_cell(tables["table-by-model"])
    assert set(rows_by_first_cell(tables["table-by-agent"])) == {"marcus", "emily"}
    assert set(rows_by_first_cell(tables["table-by-user"])) == {"alice", "bob"}
    chart = chart_of(response, "chart-report-providers")
    assert chart["unit"] == "usd" and set(chart["labels"]) == set(providers)


def test_it_shows_zeros_for_an_empty_month(staff_client, catalog):
    response = staff_client.get("/metrics/reports/2025-07/")
    assert response.status_code == 200
    summary = rows_by_first_cell(tables_of(response)["table-summary"])
    assert summary["Calls"]["2025-07"] == "0"
    assert summary["Savings"]["2025-07"] == "$0.00"
    assert summary["Latency p95 (ms)"]["2025-07"] == "\N{EN DASH}"
    assert "No calls match" in response.content.decode()


def test_it_says_whether_the_month_is_final(staff_client, march):
    assert "Final:" in staff_client.get(MARCH_URL).content.decode()
    this_month = f"{utc_today():%Y-%m}"
    assert "not final yet" in staff_client.get(f"/metrics/reports/{this_month}/").content.decode()


def test_the_month_picker_opens_the_chosen_month(staff_client, db):
    response = staff_client.get("/metrics/reports/", {"month": "2026-02"})
    assert response.status_code == 302
    assert response["Location"] == "/metrics/reports/2026-02/"


def test_it_opens_this_month_without_a_month(staff_client, db):
    response = staff_client.get("/metrics/reports/")
    assert response["Location"] == f"/metrics/reports/{utc_today():%Y-%m}/"


@pytest.mark.parametrize(
    "url", ["/metrics/reports/?month=March", "/metrics/reports/?month=", "/metrics/reports/2026-13/"]
)
def test_it_answers_a_bad_month_with_a_form_error(staff_client, db, url):
    response = staff_client.get(url)
    assert response.status_code == 400
    assert "YYYY-MM" in response.content.decode()
    assert "table-summary" not in response.content.decode()


@pytest.mark.parametrize(
    "url", ["/metrics/reports/0001-01/", "/metrics/reports/9999-12/", "/metrics/reports/?month=9999-12"]
)
def test_it_refuses_months_outside_2000_to_2100_rather_than_fail(staff_client, db, url):
    response = staff_client.get(url)
    assert response.status_code == 400
    assert "Month must lie between 2000-01 and 2100-12 (YYYY-MM, like 2026-03)" in response.content.decode()


def test_it_refuses_a_far_month_in_the_same_words_as_the_api(staff_client, db):
    page = staff_client.get("/metrics/reports/9999-12/").content.decode()
    api = staff_client.get("/api/v1/reports/monthly/9999-12/").json()["error"]["fields"]["month"][0]

    assert html.escape(api) in page


def test_it_links_previous_and_next_months_and_the_json_and_csv(staff_client, march):
    page = staff_client.get(MARCH_URL).content.decode()
    assert 'href="/metrics/reports/2026-02/"' in page
    assert 'href="/metrics/reports/2026-04/"' in page
    assert 'href="/api/v1/reports/monthly/2026-03/?format=csv"' in page


def test_it_prints_without_navigation(staff_client, march):
    page = staff_client.get(MARCH_URL).content.decode()
    assert re.search(r'<link rel="stylesheet" href="/static/metrics/metrics\.css">', page)
    assert 'class="metrics-tabs no-print"' in page
    assert re.search(r'<form[^>]*class="no-print"', page)  # the month picker
    css = Path(finders.find("metrics/metrics.css")).read_text()
    print_rules = css.split("@media print", 1)[1]
    assert re.search(r"\.topbar, \.no-print[^{]*\{ display: none !important; \}", print_rules)
    assert 'src="/static/metrics/report.js"' in page and "data-print" in page


# Six of six local calls failed, one run failed its quality check and one failed before any call.
ALL_LOCAL_CALLS_FAILED = {
    "runs": 4,
    "checks_passed": 1,
    "checks_failed": 1,
    "checks_skipped": 1,
    "runs_without_calls": 1,
    "calls": 6,
    "failures": 6,
    "error_rate": Decimal("100.00"),
    "local_calls": 6,
    "local_share": None,
    "failed_check_calls": 1,
    "failed_check_usd": Decimal("0.42"),
}


def test_it_shows_no_local_share_without_a_successful_call_never_100_or_0_percent(staff_client, catalog):
    store_report_by_hand(month=dt.date(2026, 3, 1), **ALL_LOCAL_CALLS_FAILED)

    response = staff_client.get(MARCH_URL)

    summary = rows_by_first_cell(tables_of(response)["table-summary"])
    assert summary["Local share"]["2026-03"] == "\N{EN DASH}"
    assert summary["Error rate"]["2026-03"] == "100.00%"
    page = response.content.decode()
    assert "no successful calls" in page
    assert "on target" not in page and "below target" not in page


def test_it_shows_the_failed_check_apart_and_how_runs_ended(staff_client, catalog):
    store_report_by_hand(month=dt.date(2026, 3, 1), **ALL_LOCAL_CALLS_FAILED)

    summary = rows_by_first_cell(tables_of(staff_client.get(MARCH_URL))["table-summary"])

    month = {label: row["2026-03"] for label, row in summary.items()}
    assert month["Savings"] == "$0.00"
    assert month["Failed check"] == "$0.4200"
    assert (month["Runs"], month["Runs that passed the check"], month["Runs that failed the check"]) == ("4", "1", "1")
    assert (month["Runs with no check"], month["Runs that failed before any call"]) == ("1", "1")


def test_it_shows_a_charge_below_a_hundredth_of_a_cent_as_such_not_as_free(staff_client, march, add_entry):
    add_entry(
        created_at=utc(2026, 3, 12),
        provider=march.openai,
        cost_usd=Decimal("0.00003"),
        baseline_cost_usd=Decimal("0.00004"),
        agent="jordan",
    )
    rollup_refresh(full=True)

    agents = rows_by_first_cell(tables_of(staff_client.get(MARCH_URL))["table-by-agent"])

    assert agents["jordan"]["Cost"] == "<$0.0001"
    assert agents["jordan"]["Savings"] == "<$0.0001"
