"""The staff history pages at /metrics/: figures from the rollups, filters, CSV export, static charts."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders

from metrics.rollups import rollup_refresh
from routing.models import CallOutcome
from tests.metrics.conftest import utc

PAGES = ("/metrics/", "/metrics/usage/", "/metrics/latency/", "/metrics/local-share/")
MARCH = {"start": "2026-03-01", "end": "2026-03-31"}


class _Tables(HTMLParser):
    """Collects every <table id=...> as rows of cell texts (header row included)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs).get("id", f"table{len(self.tables)}"), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self._table[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables_of(response) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(response.content.decode())
    return parser.tables


def rows_by_first_cell(table: list[list[str]]) -> dict[str, dict[str, str]]:
    header, *rows = table
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def chart_of(response, chart_id: str) -> dict:
    pattern = rf'<script id="{chart_id}" type="application/json">(.*?)</script>'
    match = re.search(pattern, response.content.decode(), re.S)
    assert match, f"no chart {chart_id}"
    return json.loads(match.group(1))


def plain(text: str) -> str:
    """A shown cell without its currency sign, thousands separators or percent sign."""
    return "" if text == "\N{EN DASH}" else text.replace("$", "").replace(",", "").replace("%", "")


def same_value(shown: str, exported: str) -> bool:
    """Whether a CSV cell (machine format: money to ten places) holds the value a page cell shows."""
    if shown.lstrip("-").startswith("<$"):
        return 0 < abs(Decimal(exported)) < Decimal(shown.lstrip("-<$"))
    if "$" in shown:
        rounded = Decimal(plain(shown))
        return Decimal(exported).quantize(rounded) == rounded
    return plain(shown) == exported


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Test users need no real key stretching; the default hasher costs a second of CPU per user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_client(client, db):
    staff = get_user_model().objects.create_user("carol", "carol@example.com", "pw-carol-123", is_staff=True)
    client.force_login(staff)
    return client


@pytest.fixture
def ledger(catalog, add_entry):
    """Three days of March 2026: local calls by alice for marcus, cloud calls by bob for emily."""
    cloud = catalog.anthropic
    add_entry(created_at=utc(2026, 3, 2, 9), latency_ms=800, run_id=1)
    add_entry(created_at=utc(2026, 3, 2, 10), latency_ms=1200, run_id=1)
    add_entry(
        created_at=utc(2026, 3, 2, 11),
        provider=cloud,
        cost_usd=Decimal("1.25"),
        baseline_cost_usd=Decimal("1.25"),
        prompt_tokens=1000,
        completion_tokens=300,
        latency_ms=2000,
        agent="emily",
        user=catalog.bob,
    )
    add_entry(created_at=utc(2026, 3, 3, 8), baseline_cost_usd=Decimal("0.50"), latency_ms=900)
    add_entry(
        created_at=utc(2026, 3, 3, 9),
        provider=cloud,
        outcome=CallOutcome.TRANSIENT,
        prompt_tokens=0,
        completion_tokens=0,
        latency_ms=30_000,
        agent="emily",
        user=catalog.bob,
    )
    add_entry(
        created_at=utc(2026, 3, 10, 23, 59, 59),
        provider=catalog.openai,
        model_name="gpt-4o",
        cost_usd=Decimal("2.00"),
        baseline_cost_usd=Decimal("3.00"),
        latency_ms=1500,
        agent="emily",
        user=catalog.bob,
    )
    add_entry(created_at=utc(2026, 4, 1), cost_usd=Decimal(0), baseline_cost_usd=Decimal("9.99"))  # outside March
    rollup_refresh()
    return catalog


# --- Who may see the pages.


@pytest.mark.parametrize("url", [*PAGES, "/metrics/?format=csv"])
def test_it_sends_anonymous_visitors_to_the_apps_login_page(client, db, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")  # the app's login, not the admin's


@pytest.mark.parametrize("url", [*PAGES, "/metrics/?format=csv"])
def test_it_tells_signed_in_people_who_are_not_staff_that_they_need_staff_access(client, ledger, url):
    client.force_login(ledger.alice)
    response = client.get(url)
    assert response.status_code == 403
    page = response.content.decode()
    assert "You need staff access to see the metrics" in page
    assert "ask an admin" in page
    assert 'href="/"' in page and 'href="/runs/"' in page  # a way back
    assert "/admin/login/" not in page


def test_it_links_the_metrics_from_the_admin_index(client, db):
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123")
    client.force_login(admin)
    page = client.get("/admin/").content.decode()
    for url in (*PAGES, "/metrics/reports/"):
        assert f'href="{url}"' in page
    assert "Authentication and Authorization" in page  # the usual app list is still there


# --- The figures.


def test_it_shows_cost_baseline_and_savings_per_day(staff_client, ledger):
    response = staff_client.get("/metrics/", MARCH)
    assert response.status_code == 200
    days = rows_by_first_cell(tables_of(response)["table-cost"])
    assert len(days) == 31
    assert days["2026-03-02"] == {
        "Day": "2026-03-02",
        "Calls": "3",
        "Local share": "66.67%",
        "Cost": "$1.25",
        "Cloud baseline": "$1.25",
        "Savings": "$0.00",
        "Unpriced calls": "0",
    }
    assert days["2026-03-03"]["Savings"] == "$0.5000"  # below a dollar: to a hundredth of a cent
    assert days["2026-03-10"]["Cost"] == "$2.00"
    assert days["2026-03-04"]["Calls"] == "0"
    page = response.content.decode()
    assert "$3.25" in page and "$4.75" in page and "$1.50" in page  # the range's cost, baseline, savings


def test_it_adds_days_up_into_weeks_and_months(staff_client, ledger):
    weeks = rows_by_first_cell(tables_of(staff_client.get("/metrics/", {**MARCH, "granularity": "week"}))["table-cost"])
    assert weeks["2026-02-23"]["Calls"] == "0"  # the week of March 1st starts on Monday Feb 23rd
    assert weeks["2026-03-02"]["Calls"] == "5"
    assert weeks["2026-03-09"]["Cost"] == "$2.00"
    spring = {"start": "2026-03-01", "end": "2026-04-30", "granularity": "month"}
    months = tables_of(staff_client.get("/metrics/", spring))
    by_month = rows_by_first_cell(months["table-cost"])
    assert by_month["2026-03"]["Calls"] == "6"
    assert by_month["2026-04"]["Cloud baseline"] == "$9.99"


@pytest.mark.parametrize(
    ("filters", "calls", "cost"),
    [
        ({"provider": "anthropic"}, "2", "$1.25"),
        ({"model": "gpt-4o"}, "1", "$2.00"),
        ({"agent": "marcus"}, "3", "$0.00"),
        ({"agent": "emily", "provider": "openai"}, "1", "$2.00"),
    ],
)
def test_it_narrows_the_figures_to_the_filters(staff_client, ledger, filters, calls, cost):
    response = staff_client.get("/metrics/", {**MARCH, "granularity": "month", **filters})
    march = rows_by_first_cell(tables_of(response)["table-cost"])["2026-03"]
    assert (march["Calls"], march["Cost"]) == (calls, cost)


def test_it_narrows_the_figures_to_one_user(staff_client, ledger):
    response = staff_client.get("/metrics/usage/", {**MARCH, "user": str(ledger.bob.pk)})
    providers = rows_by_first_cell(tables_of(response)["table-by-provider"])
    assert set(providers) == {"anthropic", "openai"}
    assert providers["anthropic"]["Calls"] == "2"


def test_it_shows_calls_and_tokens_by_provider_model_and_agent(staff_client, ledger):
    response = staff_client.get("/metrics/usage/", MARCH)
    tables = tables_of(response)
    providers = rows_by_first_cell(tables["table-by-provider"])
    assert providers["ollama"] == {
        "Provider": "ollama",
        "Calls": "3",
        "Failures": "0",
        "Error rate": "0.00%",
        "Prompt tokens": "300",
        "Completion tokens": "150",
        "Cost": "$0.00",
        "Savings": "$0.5000",
    }
    assert providers["anthropic"]["Error rate"] == "50.00%"
    assert providers["anthropic"]["Prompt tokens"] == "1,000"
    models = set(rows_by_first_cell(tables["table-by-model"]))
    assert models == {"ollama/mistral", "anthropic/claude-sonnet", "openai/gpt-4o"}
    agents = rows_by_first_cell(tables["table-by-agent"])
    assert (agents["marcus"]["Calls"], agents["emily"]["Calls"]) == ("3", "3")
    calls_chart = chart_of(response, "chart-calls-provider")
    assert (calls_chart["labels"], calls_chart["unit"]) == (["ollama", "anthropic", "openai"], "count")  # busiest first
    assert sum(sum(d["data"]) for d in calls_chart["datasets"]) == 6


def test_it_shows_latency_percentiles_speed_and_error_rate_over_time(staff_client, ledger):
    response = staff_client.get("/metrics/latency/", MARCH)
    days = rows_by_first_cell(tables_of(response)["table-latency"])
    assert days["2026-03-03"]["Error rate"] == "50.00%"
    assert days["2026-03-03"]["Failures"] == "1"
    # One successful call on the 10th: every percentile sits in its 1,500 ms bucket [1,250, 1,600).
    assert 1250 <= int(plain(days["2026-03-10"]["p50 (ms)"])) < 1600
    assert days["2026-03-04"]["p95 (ms)"] == "\N{EN DASH}"  # no calls: nothing to report, not zero
    p99 = chart_of(response, "chart-latency")["datasets"][2]
    assert p99["label"] == "p99" and p99["data"][3] is None
    assert chart_of(response, "chart-error-rate")["unit"] == "pct"
    assert chart_of(response, "chart-tokens-per-second")["datasets"][0]["data"][9] > 0


def test_it_compares_the_local_share_with_the_target(staff_client, ledger):
    response = staff_client.get("/metrics/local-share/", MARCH)
    days = rows_by_first_cell(tables_of(response)["table-local-share"])
    assert days["2026-03-02"]["Local share"] == "66.67%"
    assert days["2026-03-02"]["Target"] == "85.00%"
    chart = chart_of(response, "chart-local-share")
    target = chart["datasets"][1]
    assert target["dashed"] and set(target["data"]) == {85.0}
    assert chart["max"] == 100
    assert "below target" in response.content.decode()  # 3 of 6 calls in March were local


def test_it_covers_the_last_30_days_by_default(staff_client, ledger):
    response = staff_client.get("/metrics/")
    assert response.status_code == 200
    assert len(tables_of(response)["table-cost"]) == 1 + 30
    form = response.context["form"]
    assert (form.cleaned_data["end"] - form.cleaned_data["start"]).days == 29


# --- CSV.


@pytest.mark.parametrize("url", PAGES)
def test_it_exports_exactly_what_is_shown_as_csv(staff_client, ledger, url):
    filters = {**MARCH, "granularity": "week", "agent": "emily"}
    shown = tables_of(staff_client.get(url, filters))
    response = staff_client.get(url, {**filters, "format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    header, *exported = list(csv.reader(io.StringIO(response.content.decode())))
    if len(shown) == 1:
        (table,) = shown.values()
        assert header == table[0]
        expected = table[1:]
    else:
        first = next(iter(shown.values()))
        assert header == ["table", "name", *first[0][1:]]
        expected = [[table_id.removeprefix("table-"), *row] for table_id, table in shown.items() for row in table[1:]]
    assert len(exported) == len(expected)
    for got, want in zip(exported, expected, strict=True):
        assert len(got) == len(want)
        assert all(same_value(cell, value) for cell, value in zip(want, got, strict=True)), (want, got)


def test_it_writes_csv_numbers_a_spreadsheet_can_read(staff_client, ledger):
    response = staff_client.get("/metrics/", {**MARCH, "granularity": "month", "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    (row,) = [row for row in rows if row["table"] == "cost"]
    assert Decimal(row["Cost"]) == Decimal("3.25")
    assert Decimal(row["Cloud baseline"]) == Decimal("4.75")
    assert int(row["Calls"]) == 6


# --- Bad input.


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "yesterday"}, "start"),
        ({"end": "2026-02-30"}, "end"),
        ({"start": "2026-03-10", "end": "2026-03-01"}, "end"),
        ({"start": "1900-01-01", "end": "2026-03-01", "granularity": "month"}, "start"),
        ({"start": "2020-01-01", "end": "2026-03-01"}, "granularity"),
        ({"start": "9999-12-01", "end": "9999-12-31", "granularity": "month"}, "end"),
        ({"granularity": "hour"}, "granularity"),
        ({"provider": "no-such-provider"}, "provider"),
        ({"model": "<script>"}, "model"),
        ({"agent": "nobody"}, "agent"),
        ({"user": "abc"}, "user"),
        ({"user": "999999"}, "user"),
        ({"format": "xml"}, "format"),
    ],
)
def test_it_answers_bad_filters_with_a_form_error(staff_client, ledger, params, field):
    response = staff_client.get("/metrics/", params)
    assert response.status_code == 400
    assert field in response.context["form"].errors
    page = response.content.decode()
    assert 'class="errorlist' in page
    assert "<script>" not in page.split("<body>", 1)[1].replace('<script src="', "")  # echoed input stays escaped
    assert "table-" not in page  # no half-drawn figures


@pytest.mark.parametrize("url", PAGES[1:])
def test_it_answers_bad_filters_with_a_form_error_on_every_page(staff_client, ledger, url):
    response = staff_client.get(url, {"start": "2026-03-10", "end": "2026-03-01", "agent": "nobody"})
    assert response.status_code == 400
    assert set(response.context["form"].errors) == {"end", "agent"}
    assert "The end date must not be before the start date." in response.content.decode()


def test_it_answers_a_bad_csv_request_with_a_json_error(staff_client, ledger):
    response = staff_client.get("/metrics/", {"start": "soon", "format": "csv"})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "start" in response.json()["errors"]


# --- Static files.


def test_it_ships_the_charting_library_and_page_scripts_as_local_static_files():
    names = ("vendor/chartjs/chart.umd.min.js", "vendor/chartjs/LICENSE.md", "metrics/charts.js", "metrics/metrics.css")
    for name in names:
        assert finders.find(name), f"static/{name} is missing"
    library = Path(finders.find("vendor/chartjs/chart.umd.min.js")).read_text()
    assert library.startswith("/*!\n * Chart.js v4.")
    mapped = re.search(r"sourceMappingURL=(\S+)", library)
    assert finders.find(f"vendor/chartjs/{mapped.group(1)}")  # collectstatic follows it


@pytest.mark.parametrize("url", PAGES)
def test_it_references_only_local_static_urls_and_no_inline_scripts(staff_client, ledger, url):
    page = staff_client.get(url, MARCH).content.decode()
    sources = re.findall(r'<(?:script|link|img)\b[^>]*?(?:src|href)="([^"]+)"', page)
    assert any(s.endswith("vendor/chartjs/chart.umd.min.js") for s in sources)
    for source in sources:
        assert source.startswith((settings.STATIC_URL, "/" + settings.STATIC_URL, "data:")), source
    for script in re.findall(r"<script\b([^>]*)>(.*?)</script>", page, re.S):
        attributes, body = script
        assert "src=" in attributes or 'type="application/json"' in attributes, f"inline script: {body[:80]}"


# --- In a real browser: the charts draw from local files, with no script error.

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
def browser_user(ledger):
    return get_user_model().objects.create_user("dora", "dora@example.com", "pw-dora-12345", is_staff=True)


@pytest.fixture
def chromium_page(live_server, browser_user):
    """A Chromium page on the live server. Rows are written before Playwright starts: once it runs,
    the test body is in a greenlet where the ORM would open a second connection that nothing closes."""
    if not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop on this thread; the ORM calls here are plain sync code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
            )
            page = browser.new_page(base_url=live_server.url, viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            page.problems = []
            page.on("pageerror", lambda error: page.problems.append(f"script error: {error}"))
            page.on("console", lambda m: m.type == "error" and page.problems.append(f"console: {m.text}"))
            page.on(
                "request",
                lambda r: r.url.startswith((live_server.url, "data:")) or page.problems.append(f"external: {r.url}"),
            )
            yield page
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.mark.browser
def test_it_draws_every_chart_in_a_browser_from_local_files_only(chromium_page):
    page = chromium_page
    page.goto("/login/")
    page.fill("input[name=username]", "dora")
    page.fill("input[name=password]", "pw-dora-12345")
    page.click("main button[type=submit]")
    page.wait_for_url("**/")
    for url, charts in (
        ("/metrics/", 1),
        ("/metrics/usage/", 6),
        ("/metrics/latency/", 3),
        ("/metrics/local-share/", 1),
    ):
        page.goto(f"{url}?start=2026-03-01&end=2026-03-31")
        drawn = page.evaluate("() => window.Chart ? Object.keys(window.Chart.instances).length : -1")
        assert drawn == charts, url
    page.goto("/metrics/reports/2026-03/")
    assert page.evaluate("() => Object.keys(window.Chart.instances).length") == 1
    page.emulate_media(media="print")
    assert page.evaluate("() => getComputedStyle(document.querySelector('.topbar')).display") == "none"
    assert page.problems == []


def test_it_shows_a_day_charged_below_a_hundredth_of_a_cent_as_such_not_as_free(staff_client, ledger, add_entry):
    add_entry(
        created_at=utc(2026, 3, 12),
        provider=ledger.openai,
        cost_usd=Decimal("0.00003"),
        baseline_cost_usd=Decimal("0.00003"),
    )
    rollup_refresh()

    days = rows_by_first_cell(tables_of(staff_client.get("/metrics/", MARCH))["table-cost"])

    assert days["2026-03-12"]["Cost"] == "<$0.0001"  # the run page writes the same charge the same way
    assert days["2026-03-12"]["Savings"] == "$0.00"
    assert days["2026-03-11"]["Cost"] == "$0.00"


def test_it_shows_no_local_share_for_a_day_without_a_successful_call(staff_client, ledger):
    days = rows_by_first_cell(tables_of(staff_client.get("/metrics/local-share/", MARCH))["table-local-share"])

    # March 3rd had a success and a failure; the 4th had no call at all.
    assert days["2026-03-03"]["Error rate"] == "50.00%"
    assert days["2026-03-04"]["Local share"] == "\N{EN DASH}"
