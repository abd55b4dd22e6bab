import csv
import datetime as dt
import io
import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from agents.models import Agent, AgentRun, RunStatus, Workflow
from metrics.rollups import rollup_refresh
from tests.metrics.conftest import utc
from tests.metrics.ledger_march import EXPECTED, build_march_ledger, store_report_by_hand

URL = "/api/v1/reports/monthly/{}/"


@pytest.fixture
def march(catalog, add_entry):
    build_march_ledger(catalog, add_entry)
    rollup_refresh()


@pytest.fixture
def staff_client(db) -> APIClient:
    user = get_user_model().objects.create_user("boss", "boss@example.com", is_staff=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_it_gives_the_month_as_json_with_the_documented_keys(march, staff_client):
    response = staff_client.get(URL.format("2026-03"))

    assert response.status_code == 200
    data = response.json()
    for key in (
        "month",
        "runs",
        "calls",
        "local_share",
        "target_local_share",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "baseline_cost_usd",
        "savings_usd",
        "by_provider",
        "by_agent",
    ):
        assert key in data, key
    assert data["runs"] == EXPECTED["runs"]
    assert Decimal(data["savings_usd"]) == EXPECTED["savings_usd"]


def test_it_gives_csv_that_parses_back_to_the_json_figures(march, staff_client):
    data = staff_client.get(URL.format("2026-03")).json()

    response = staff_client.get(URL.format("2026-03"), {"format": "csv"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    month = next(r for r in rows if r["section"] == "month")
    for key in ("runs", "calls", "local_calls", "prompt_tokens", "completion_tokens", "p50_ms", "p95_ms"):
        assert int(month[key]) == data[key], key
    for key in ("cost_usd", "baseline_cost_usd", "savings_usd", "local_share", "target_local_share"):
        assert Decimal(month[key]) == Decimal(data[key]), key
    providers = {r["key"]: r for r in rows if r["section"] == "provider"}
    for row in data["by_provider"]:
        assert int(providers[row["key"]]["calls"]) == row["calls"]
        assert Decimal(providers[row["key"]]["savings_usd"]) == Decimal(row["savings_usd"])
    agents = {r["key"]: r for r in rows if r["section"] == "agent"}
    assert {key: int(r["calls"]) for key, r in agents.items()} == {r["key"]: r["calls"] for r in data["by_agent"]}


def test_it_answers_a_staff_session_too(march, client):
    client.force_login(get_user_model().objects.create_user("boss", "boss@example.com", is_staff=True))

    assert client.get(URL.format("2026-03")).status_code == 200


def test_it_refuses_anyone_who_is_not_staff(march, catalog):
    anonymous = APIClient()
    assert anonymous.get(URL.format("2026-03")).status_code == 401

    member = APIClient()
    member.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=catalog.alice).key}")
    response = member.get(URL.format("2026-03"))
    assert response.status_code == 403
    assert "cost_usd" not in response.content.decode()


@pytest.mark.parametrize("month", ["2026-13", "2026-3", "march", "2026-03-01", "0001-01", "9999-12"])
def test_it_answers_a_bad_month_with_a_400_json_error(staff_client, month):
    for params in ({}, {"format": "csv"}):
        response = staff_client.get(URL.format(month), params)

        assert (response.status_code, response["Content-Type"]) == (400, "application/json")
        assert "2026-03" in response.json()["error"]["fields"]["month"][0]


def test_it_gives_zeros_for_an_empty_month(staff_client):
    data = staff_client.get(URL.format("2025-07")).json()

    assert data["calls"] == 0
    assert Decimal(data["cost_usd"]) == 0
    assert data["by_provider"] == []


MONEY_FOR_MACHINES = re.compile(r"^-?\d+\.\d{10}$")
INSTANT_FOR_MACHINES = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def test_it_writes_money_and_timestamps_the_way_the_runs_and_workflows_api_does(march, staff_client, catalog):
    agent = Agent.objects.create(
        slug="marcus", name="Marcus", role="backend engineer", capability="code_generation", system_prompt="You code."
    )
    workflow = Workflow.objects.create(feature="Invoices", created_by=catalog.alice, finished_at=utc(2026, 3, 2))
    run = AgentRun.objects.create(
        agent=agent,
        created_by=catalog.alice,
        workflow=workflow,
        prompt="An endpoint",
        status=RunStatus.SUCCEEDED,
        cost_usd=Decimal("0.0012"),
        baseline_cost_usd=Decimal("0.0100"),
        finished_at=utc(2026, 3, 2),
    )

    report = staff_client.get(URL.format("2026-03")).json()
    run_json = staff_client.get(f"/api/v1/runs/{run.pk}/").json()
    workflow_json = staff_client.get(f"/api/v1/workflows/{workflow.pk}/").json()

    money = [report["cost_usd"], report["by_provider"][0]["savings_usd"], report["change"]["cost_usd"]]
    money += [run_json["cost_usd"], run_json["savings_usd"], workflow_json["savings_usd"]]
    assert all(MONEY_FOR_MACHINES.match(value) for value in money), money
    assert run_json["cost_usd"] == "0.0012000000"
    assert report["cost_usd"] == "3.6000000000"
    instants = [report["generated_at"], run_json["created_at"], run_json["finished_at"], workflow_json["finished_at"]]
    assert all(INSTANT_FOR_MACHINES.match(value) for value in instants), instants
    assert workflow_json["finished_at"] == "2026-03-02T00:00:00.000000Z"


def test_it_gives_no_local_share_without_a_successful_call_in_json_and_csv(staff_client, catalog):
    store_report_by_hand(month=dt.date(2026, 3, 1), calls=6, failures=6, local_calls=6, local_share=None)

    data = staff_client.get(URL.format("2026-03")).json()
    rows = list(
        csv.DictReader(io.StringIO(staff_client.get(URL.format("2026-03"), {"format": "csv"}).content.decode()))
    )

    assert data["local_share"] is None
    assert next(r for r in rows if r["section"] == "month")["local_share"] == ""
