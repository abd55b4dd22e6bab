"""The metrics by source (agents / gateway), team and API key: filters, breakdowns, pages, the report and its API.

One hand-made March ledger, five calls:

    row  source   agent            user   team  key     provider        outcome    cost  baseline  savings
    1    agents   marcus           alice  red   -       ollama (local)  success    0     1.00      1.00
    2    gateway  gateway          bob    blue  ci      anthropic       success    0.40  0.40      0
    3    gateway  gateway          alice  red   laptop  ollama (local)  success    0     0.30      0.30
    4    gateway  gateway          bob    blue  ci      openai          transient  0.05  0.05      -
    5    agents   check_providers  -      -     -       ollama (local)  success    0     0.10      0.10

Whole month: 5 calls, 4 successes, 3 of them local (75.00%), cost 0.45, savings 1.40.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import Membership, Team
from accounts.services import key_create
from metrics import selectors
from metrics.models import MonthlyReport
from metrics.rollups import rollup_refresh
from routing.models import CallOutcome
from routing.sources import GATEWAY_AGENT, Source, source_filter, source_of
from tests.metrics.conftest import utc

MARCH = {"start": "2026-03-01", "end": "2026-03-31"}
RANGE = {"start": utc(2026, 3, 1).date(), "end": utc(2026, 3, 31).date()}
URL = "/api/v1/reports/monthly/2026-03/"


@pytest.fixture
def world(catalog, add_entry) -> SimpleNamespace:
    red, blue = Team.objects.create(name="red"), Team.objects.create(name="blue")
    Membership.objects.create(user=catalog.alice, team=red)
    Membership.objects.create(user=catalog.bob, team=blue)
    laptop = key_create(user=catalog.alice, name="laptop")
    ci = key_create(user=catalog.bob, name="ci")
    gateway = {"agent": GATEWAY_AGENT, "endpoint": "/v1/chat/completions", "client": "OpenAI/Python 1.0"}
    rows = [
        lambda: add_entry(user=catalog.alice, team=red, baseline_cost_usd=Decimal("1.00")),
        lambda: add_entry(
            **gateway,
            provider=catalog.anthropic,
            user=catalog.bob,
            team=blue,
            api_key=ci.key,
            cost_usd=Decimal("0.40"),
            baseline_cost_usd=Decimal("0.40"),
        ),
        lambda: add_entry(
            **gateway, user=catalog.alice, team=red, api_key=laptop.key, baseline_cost_usd=Decimal("0.30")
        ),
        lambda: add_entry(
            **gateway,
            provider=catalog.openai,
            user=catalog.bob,
            team=blue,
            api_key=ci.key,
            outcome=CallOutcome.TRANSIENT,
            cost_usd=Decimal("0.05"),
            baseline_cost_usd=Decimal("0.05"),
        ),
        lambda: add_entry(agent="check_providers", user=None, baseline_cost_usd=Decimal("0.10")),
    ]
    return SimpleNamespace(red=red, blue=blue, laptop=laptop, ci=ci, rows=rows)


def ledger(world, *, rolled_up: int) -> None:
    """Write the five rows, summing the first `rolled_up` into the rollups (the rest are read live)."""
    for index, write in enumerate(world.rows):
        if index == rolled_up:
            rollup_refresh()
        write()
    if rolled_up == len(world.rows):
        rollup_refresh()


def pinned(figures) -> tuple:
    return (figures["calls"], figures["local_share"], figures["cost_usd"], figures["savings_usd"])


# Every read below runs three ways: all rows read live from the ledger, some rolled up, all rolled up.
ROLLED_UP = pytest.mark.parametrize("rolled_up", [0, 3, 5])


# --- The rule.


def test_a_rows_source_is_the_gateway_exactly_when_its_agent_slug_is_the_gateways():
    assert source_of("gateway") == Source.GATEWAY
    assert [source_of(agent) for agent in ("marcus", "check_providers", "")] == [Source.AGENTS] * 3
    assert source_filter("gateway") == ~source_filter("agents")


# --- Selectors.


@ROLLED_UP
def test_the_filters_narrow_the_totals_to_a_source_a_team_a_key_or_all_three(world, rolled_up):
    ledger(world, rolled_up=rolled_up)

    def total(**filters):
        return pinned(selectors.totals(**RANGE, **filters))

    assert total() == (5, Decimal("75.00"), Decimal("0.45"), Decimal("1.40"))
    assert total(source="gateway") == (3, Decimal("50.00"), Decimal("0.45"), Decimal("0.30"))
    assert total(source="agents") == (2, Decimal("100.00"), Decimal("0"), Decimal("1.10"))
    assert total(team_id=world.blue.pk) == (2, Decimal("0.00"), Decimal("0.45"), Decimal("0"))
    assert total(key_id=world.laptop.key.pk) == (1, Decimal("100.00"), Decimal("0"), Decimal("0.30"))
    assert total(source="gateway", team_id=world.red.pk, key_id=world.laptop.key.pk) == (
        1,
        Decimal("100.00"),
        Decimal("0"),
        Decimal("0.30"),
    )
    assert total(source="agents", key_id=world.ci.key.pk) == (0, None, Decimal("0"), Decimal("0"))


@ROLLED_UP
def test_each_breakdown_gives_calls_local_share_cost_and_savings_per_source_team_and_key(world, rolled_up):
    ledger(world, rolled_up=rolled_up)

    def split(by):
        return {row["label"]: pinned(row) for row in selectors.breakdown(**RANGE, by=by)}

    assert split("source") == {
        "Gateway": (3, Decimal("50.00"), Decimal("0.45"), Decimal("0.30")),
        "Agents": (2, Decimal("100.00"), Decimal("0"), Decimal("1.10")),
    }
    assert split("team") == {
        "red": (2, Decimal("100.00"), Decimal("0"), Decimal("1.30")),
        "blue": (2, Decimal("0.00"), Decimal("0.45"), Decimal("0")),
        "(no team)": (1, Decimal("100.00"), Decimal("0"), Decimal("0.10")),
    }
    laptop, ci = world.laptop.key.prefix, world.ci.key.prefix
    assert split("key") == {
        f"{ci}… (ci)": (2, Decimal("0.00"), Decimal("0.45"), Decimal("0")),
        "(no key)": (2, Decimal("100.00"), Decimal("0"), Decimal("1.10")),
        f"{laptop}… (laptop)": (1, Decimal("100.00"), Decimal("0"), Decimal("0.30")),
    }


@ROLLED_UP
@pytest.mark.parametrize("by", ["source", "team", "key"])
def test_a_breakdowns_rows_add_up_to_the_unfiltered_total(world, rolled_up, by):
    ledger(world, rolled_up=rolled_up)
    whole = selectors.range_figures(**RANGE)
    rows = selectors.breakdown(**RANGE, by=by)

    for name in ("calls", "successes", "local_successes", "cost_usd", "baseline_cost_usd", "savings_usd"):
        assert sum(row[name] for row in rows) == whole[name], name


def test_a_breakdown_under_a_filter_adds_up_to_the_filtered_total(world):
    ledger(world, rolled_up=3)
    rows = selectors.breakdown(**RANGE, by="team", source="gateway")

    assert {row["label"]: row["calls"] for row in rows} == {"blue": 2, "red": 1}
    assert selectors.totals(**RANGE, source="gateway")["calls"] == 3


def test_the_filter_choices_name_teams_and_keys_by_name_and_prefix_only(world):
    ledger(world, rolled_up=3)
    choices = selectors.filter_choices()

    assert choices["sources"] == ["agents", "gateway"]
    assert choices["teams"] == [{"id": world.blue.pk, "name": "blue"}, {"id": world.red.pk, "name": "red"}]
    labels = {key["id"]: key["label"] for key in choices["keys"]}
    assert labels == {
        world.laptop.key.pk: f"{world.laptop.key.prefix}… (laptop)",
        world.ci.key.pk: f"{world.ci.key.prefix}… (ci)",
    }


def test_a_selector_refuses_an_unknown_source():
    with pytest.raises(ValueError, match="source must be one of agents, gateway"):
        selectors.totals(**RANGE, source="robots")


# --- History pages.


@pytest.fixture
def staff_client(client, db):
    client.force_login(get_user_model().objects.create_user("carol", "carol@example.com", is_staff=True))
    return client


def table(response, slug: str) -> dict[str, dict[str, str]]:
    """A page table's rows by their first cell, read from the page's CSV export (the same cells)."""
    export = response.client.get(response.request["PATH_INFO"], {**response.wsgi_request.GET.dict(), "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(export.content.decode())))
    return {row["name"]: row for row in rows if row["table"] == slug}


def test_the_cost_page_filters_by_source_and_breaks_down_by_source_team_and_key(world, staff_client):
    ledger(world, rolled_up=3)
    response = staff_client.get("/metrics/", {**MARCH, "granularity": "month", "source": "gateway"})

    assert response.status_code == 200
    page = response.content.decode()
    for slug in ("by-source", "by-team", "by-key"):
        assert f'id="table-{slug}"' in page
    assert world.laptop.secret not in page and world.ci.secret not in page
    by_team = table(response, "by-team")
    assert {name: (row["Calls"], row["Local share"], row["Cost"], row["Savings"]) for name, row in by_team.items()} == {
        "blue": ("2", "0.00", "0.4500000000", "0.0000000000"),
        "red": ("1", "100.00", "0.0000000000", "0.3000000000"),
    }
    assert set(table(response, "by-source")) == {"Gateway"}


def test_the_latency_page_filters_by_team_and_key_and_shows_latency_by_source(world, staff_client):
    ledger(world, rolled_up=0)
    params = {**MARCH, "team": world.blue.pk, "key": world.ci.key.pk}
    response = staff_client.get("/metrics/latency/", params)

    assert response.status_code == 200
    by_source = table(response, "by-source")
    assert {name: (row["Calls"], row["Failures"], row["Error rate"]) for name, row in by_source.items()} == {
        "Gateway": ("2", "1", "50.00")
    }


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"source": "robots"}, "source"),
        ({"team": "red"}, "team"),
        ({"team": "999999"}, "team"),  # no such team in the ledger
        ({"key": "sy_secret"}, "key"),
        ({"key": "-1"}, "key"),
    ],
)
@pytest.mark.parametrize("url", ["/metrics/", "/metrics/latency/"])
def test_a_history_page_answers_a_bad_source_team_or_key_with_a_form_error(world, staff_client, url, params, field):
    ledger(world, rolled_up=5)

    response = staff_client.get(url, {**MARCH, **params})
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert "Some filters are not valid" in response.content.decode()

    as_csv = staff_client.get(url, {**MARCH, **params, "format": "csv"})
    assert as_csv.status_code == 400
    assert field in as_csv.json()["errors"]


# --- The monthly report and its API.


@pytest.fixture
def api(db) -> APIClient:
    boss = get_user_model().objects.create_user("boss", "boss@example.com", is_staff=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=boss).key}")
    return client


def rows_of(data, attribute: str) -> dict[str, tuple]:
    return {r["label"]: (r["calls"], r["local_share"], r["cost_usd"], r["savings_usd"]) for r in data[attribute]}


def test_the_report_breaks_the_month_down_by_source_team_and_key(world, api):
    ledger(world, rolled_up=5)
    data = api.get(URL).json()

    assert (data["calls"], data["local_share"], data["savings_usd"]) == (5, "75.00", "1.4000000000")
    assert rows_of(data, "by_source") == {
        "Gateway": (3, "50.00", "0.4500000000", "0.3000000000"),
        "Agents": (2, "100.00", "0.0000000000", "1.1000000000"),
    }
    assert [r["key"] for r in data["by_team"]] == [world.blue.pk, world.red.pk, None]  # most calls, then by name
    assert {r["label"] for r in data["by_key"]} == {
        f"{world.laptop.key.prefix}… (laptop)",
        f"{world.ci.key.prefix}… (ci)",
        "(no key)",
    }
    assert data["filters"] == {"source": None, "team": None, "key": None}
    assert MonthlyReport.objects.count() == 1  # a finished month, unfiltered: stored at its first reading


def test_a_filtered_report_covers_only_those_calls_and_is_never_stored(world, api):
    ledger(world, rolled_up=3)
    data = api.get(URL, {"source": "gateway", "team": world.blue.pk}).json()

    assert (data["calls"], data["local_share"], data["cost_usd"], data["savings_usd"]) == (
        2,
        "0.00",
        "0.4500000000",
        "0.0000000000",
    )
    assert data["filters"] == {"source": "gateway", "team": world.blue.pk, "key": None}
    assert rows_of(data, "by_key") == {f"{world.ci.key.prefix}… (ci)": (2, "0.00", "0.4500000000", "0.0000000000")}
    assert data["runs_without_calls"] == 0
    assert MonthlyReport.objects.count() == 0
    assert api.get(URL).json()["calls"] == 5  # the unfiltered month is not the filtered one


def test_a_filtered_report_is_built_live_even_when_the_month_is_stored(world, api):
    ledger(world, rolled_up=5)
    api.get(URL)  # stores the month

    data = api.get(URL, {"key": world.laptop.key.pk}).json()
    assert (data["calls"], data["savings_usd"]) == (1, "0.3000000000")
    assert data["previous"]["calls"] == 0


def test_the_filtered_report_csv_has_the_breakdowns_and_a_name_that_says_so(world, api):
    ledger(world, rolled_up=5)
    response = api.get("/api/v1/reports/monthly/2026-03.csv", {"source": "agents"})

    assert response.status_code == 200
    assert 'filename="switchyard-savings-2026-03-agents.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["section"], r["label"], r["calls"]) for r in rows if r["section"] in ("source", "team")] == [
        ("source", "Agents", "2"),
        ("team", "(no team)", "1"),
        ("team", "red", "1"),
    ]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"source": "robots"}, "source"),
        ({"source": ""}, "source"),  # the schema declares a value: left out means all
        ({"team": "red"}, "team"),
        ({"team": "999999"}, "team"),
        ({"key": "1.5"}, "key"),
    ],
)
@pytest.mark.parametrize("url", [URL, "/api/v1/reports/monthly/2026-03.csv"])
def test_the_report_api_answers_a_bad_filter_with_a_400_that_names_it(world, api, url, params, field):
    ledger(world, rolled_up=5)
    response = api.get(url, params)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert field in response.json()["error"]["fields"]


def test_the_report_page_shows_the_filters_and_the_keys_by_prefix_and_name(world, staff_client):
    ledger(world, rolled_up=5)
    response = staff_client.get("/metrics/reports/2026-03/", {"source": "gateway"})

    assert response.status_code == 200
    page = response.content.decode()
    assert "Only these calls: Source: Gateway" in page
    assert f"{world.ci.key.prefix}… (ci)" in page
    assert world.ci.secret not in page
    assert "?source=gateway&amp;format=csv" in page
    assert staff_client.get("/metrics/reports/2026-03/", {"team": "nope"}).status_code == 400


def test_a_report_stored_before_the_breakdowns_existed_says_they_are_not_in_it(world, api, staff_client):
    ledger(world, rolled_up=5)
    api.get(URL)
    stored = MonthlyReport.objects.get()
    for attribute in ("by_source", "by_team", "by_key", "filters"):
        del stored.data[attribute]
    stored.save()

    page = staff_client.get("/metrics/reports/2026-03/").content.decode()
    assert "By source (not in this snapshot: it was stored before this breakdown existed)" in page
    assert api.get(URL).json()["by_source"] == []
