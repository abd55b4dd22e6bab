"""Odd input to the API and the pages is a 4xx (or a correct answer), never a 500: ids written
with other digits than ASCII ones, dates at the ends of the calendar, JSON nested 100,000 deep,
months with a trailing newline or Arabic-Indic digits."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token

from agents.models import AgentRun, Workflow
from tests.factories import agents_create, run_create, user_create

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
DEEP_ARRAY = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a":' * 100_000 + "1" + "}" * 100_000


@pytest.fixture
def dana(db, monkeypatch):
    monkeypatch.setattr("agents.queue.run_enqueue", lambda *, run_id: None)
    return user_create("dana", staff=True)


@pytest.fixture
def api(dana) -> Client:
    return Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=dana).key}")


@pytest.fixture
def browser(dana) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(dana)
    return client


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/runs/%C2%B2/"),
        ("post", "/api/v1/runs/%C2%B2/cancel/"),
        ("get", "/api/v1/workflows/%C2%B2/"),
        ("post", "/api/v1/workflows/%C2%B2/cancel/"),
        ("get", "/api/v1/runs/%EF%BC%91/"),  # a fullwidth 1
    ],
)
def test_an_id_in_other_digits_is_a_json_404(api, method, path):
    response = getattr(api, method)(path)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_an_id_in_arabic_indic_digits_does_not_name_a_real_run_or_workflow(api, dana):
    run = run_create(agent=agents_create()["marcus"], user=dana)
    workflow = Workflow.objects.create(feature="x", created_by=dana)

    for path in (f"/api/v1/runs/{run.pk}/", f"/api/v1/workflows/{workflow.pk}/"):
        assert api.get(path).status_code == 200
        response = api.get(path.translate(ARABIC_INDIC))
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert api.post(f"/api/v1/runs/{run.pk}/cancel/".translate(ARABIC_INDIC)).status_code == 404
    run.refresh_from_db()
    assert run.status == "queued"


@pytest.mark.parametrize("path", ["/api/v1/runs/", "/api/v1/workflows/"])
@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT], ids=["array", "object"])
def test_json_nested_100000_deep_is_a_400_that_says_so(api, path, body):
    response = api.generic("POST", path, body, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "parse_error",
        "message": "JSON parse error - the document is nested too deeply.",
    }
    assert not AgentRun.objects.exists()


@pytest.mark.parametrize(
    ("query", "listed"),
    [
        ("until=9999-12-31", True),
        ("since=0001-01-01&until=9999-12-31", True),
        ("since=0001-01-01", True),
        ("until=0001-01-01", False),
        ("since=9999-12-31", False),
    ],
)
def test_the_runs_page_takes_dates_at_the_ends_of_the_calendar(browser, dana, query, listed):
    run = run_create(agent=agents_create()["marcus"], user=dana)

    response = browser.get(f"/runs/?{query}")

    assert response.status_code == 200
    assert (f'href="/runs/{run.pk}/"' in response.content.decode()) is listed


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("since=9999-12-31T23:59:59Z", 200),
        ("since=0001-01-01T00:00:00Z", 200),
        ("since=0001-01-01T00:00:00%2B01:00", 400),  # before the first instant a datetime can hold
    ],
)
def test_the_runs_api_takes_instants_at_the_ends_of_the_calendar(api, query, status):
    assert api.get(f"/api/v1/runs/?{query}").status_code == status


@pytest.mark.parametrize("month", ["2026-11%0A", "%D9%A2%D9%A0%D9%A2%D9%A6-11", "2026-%EF%BC%91%EF%BC%91"])
def test_the_report_api_refuses_a_month_that_is_not_plain_yyyy_mm(api, month):
    response = api.get(f"/api/v1/reports/monthly/{month}/")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_the_report_page_reads_a_month_with_a_trailing_newline_from_the_picker(browser):
    response = browser.get("/metrics/reports/?month=2026-11%0A")

    assert (response.status_code, response["Location"]) == (302, "/metrics/reports/2026-11/")


def test_the_report_page_refuses_a_month_in_arabic_indic_digits(browser):
    picked = browser.get("/metrics/reports/?month=%D9%A2%D9%A0%D9%A2%D9%A6-11")
    typed = browser.get("/metrics/reports/%D9%A2%D9%A0%D9%A2%D9%A6-11/")

    assert picked.status_code == 400
    assert "Month must look like 2026-03 (YYYY-MM)" in picked.content.decode()
    assert typed.status_code == 404


@pytest.mark.parametrize("query", ["start=0001-01-01", "end=9999-12-31", "start=9999-12-31&end=9999-12-31"])
def test_the_history_pages_refuse_dates_outside_their_range(browser, query):
    assert browser.get(f"/metrics/?{query}").status_code == 400


@pytest.mark.parametrize(
    "path",
    [
        "/admin/agents/agentrun/?created_at__year=9999",
        "/admin/agents/agentrun/?created_at__year=9999&created_at__month=12&created_at__day=31",
        "/admin/agents/workflow/?created_at__year=9999&created_at__month=12",
        "/admin/routing/price/?effective_from__year=9999",
        "/admin/routing/ledgerentry/?created_at__year=9999&created_at__month=12",
    ],
)
def test_the_admins_date_drill_down_at_year_9999_is_the_usual_bad_lookup_redirect(admin_client, path):
    response = admin_client.get(path)

    assert (response.status_code, response["Location"]) == (302, path.split("?")[0] + "?e=1")


@pytest.mark.parametrize(
    "path",
    [
        "/admin/agents/agentrun/?status__exact=%00",
        "/admin/agents/agentrun/?provider_name=%00",
        "/admin/agents/agent/?capability=%00",
        "/admin/routing/provider/?kind__exact=%00",
        "/admin/routing/ledgerentry/?outcome__exact=%00",
        "/admin/axes/accesslog/?path_info=%00",
        "/runs/?agent=%00",
        "/metrics/?provider=%00",
    ],
)
def test_a_nul_in_a_pages_query_is_a_400_not_a_500(admin_client, path):
    # The admin's list filters on text fields sent it to PostgreSQL, which cannot hold NUL in text.
    assert admin_client.get(path).status_code == 400


def test_a_nul_in_an_api_query_is_still_the_apis_own_field_error(api):
    response = api.get("/api/v1/runs/?agent=%00")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["agent"]


def test_integers_in_queries_and_bodies_in_other_digits_are_refused_not_read(api, dana):
    # DRF's IntegerField reads text with int(), which takes Arabic-Indic digits: ?workflow=%D9%A1 listed
    # workflow 1's runs and "max_tokens": "٣٠" submitted a run capped at 30 tokens.
    agents_create()
    workflow = Workflow.objects.create(feature="x", created_by=dana)
    one = str(workflow.pk).translate(ARABIC_INDIC)

    for query in (f"workflow={one}", "page_size=٣"):
        response = api.get(f"/api/v1/runs/?{query}")
        assert response.status_code == 400
        assert list(response.json()["error"]["fields"]) == [query.split("=")[0]]
    for field in ("max_tokens", "max_prompt_tokens"):
        response = api.post(
            "/api/v1/runs/", {"agent": "marcus", "prompt": "x", field: "٣٠٠"}, content_type="application/json"
        )
        assert response.status_code == 400
        assert list(response.json()["error"]["fields"]) == [field]
    assert not AgentRun.objects.exists()


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/runs/", {"agent": "marcus", "prompt": 42}, "prompt"),
        ("/api/v1/runs/", {"agent": 7, "prompt": "x"}, "agent"),
        ("/api/v1/workflows/", {"feature": 42}, "feature"),
        ("/api/v1/workflows/", {"feature": "x", "agents": [1]}, "agents.0"),
        ("/api/v1/keys/", {"name": 42}, "name"),
        ("/api/v1/keys/", {"name": "laptop", "allowed_models": [3]}, "allowed_models.0"),
    ],
)
def test_a_number_where_the_schema_says_text_is_refused_not_turned_into_text(api, path, body, field):
    agents_create()

    response = api.post(path, body, content_type="application/json")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]
    assert not AgentRun.objects.exists() and not Workflow.objects.exists()


def test_a_user_filter_outside_the_schemas_pattern_is_refused(api):
    response = api.get("/api/v1/workflows/?user=%C3%B5Q%C3%A6l")  # õQæl: \w in Python, not in the schema

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["user"]
