"""The remaining cloud budgets where a user sees them: GET /api/v1/budget/, the dashboard and the
API keys page (their own, their team's and their keys'), with a banner past the alert share."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import Membership, Team
from accounts.services import key_create
from routing.models import CloudBudget, LedgerEntry
from tests.factories import user_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def ana(providers):
    """Ana, with a $5 budget: $1.25 spent this month, a call in flight holding $0.50, and a local call."""
    user = user_create("ana")
    CloudBudget.objects.create(user=user, monthly_usd=Decimal("5"))
    now = timezone.now()
    common = {"created_at": now, "user": user, "model_name": "m"}
    LedgerEntry.objects.create(
        provider=providers["anthropic"], is_local=False, outcome="success", cost_usd=Decimal("1.25"), **common
    )
    LedgerEntry.objects.create(
        provider=providers["openai"],
        is_local=False,
        outcome="started",
        cost_usd=Decimal("0.01"),
        reserved_usd=Decimal("0.5"),
        **common,
    )
    LedgerEntry.objects.create(
        provider=providers["ollama"], is_local=True, outcome="success", cost_usd=Decimal("9"), **common
    )
    return user


def test_the_api_gives_the_callers_budget_this_month(ana):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=ana).key}")

    response = client.get("/api/v1/budget/")

    assert response.status_code == 200
    assert response.json() == {
        "month": f"{timezone.now():%Y-%m}",
        "limit_usd": "5.0000000000",
        "spent_usd": "1.2500000000",
        "reserved_usd": "0.5000000000",
        "remaining_usd": "3.2500000000",
        "budgets": [
            {
                "scope": "user",
                "name": "ana",
                "limit_usd": "5.0000000000",
                "spent_usd": "1.2500000000",
                "reserved_usd": "0.5000000000",
                "remaining_usd": "3.2500000000",
                "alert": False,
            }
        ],
    }


def test_another_user_sees_their_own_default_budget(ana, providers):
    bob = user_create("bob")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=bob).key}")

    body = client.get("/api/v1/budget/").json()

    assert (body["limit_usd"], body["spent_usd"], body["remaining_usd"]) == (
        "20.0000000000",
        "0.0000000000",
        "20.0000000000",
    )


def test_it_needs_a_login():
    assert APIClient().get("/api/v1/budget/").status_code == 401


def test_the_dashboard_shows_what_is_left(client, ana):
    client.force_login(ana)

    page = client.get("/").content.decode()

    assert (
        "Your cloud budget: <strong>$3.25</strong> of $5.00 left this month ($0.5000 held by calls in flight)." in page
    )


def test_the_admin_lists_each_budget_with_this_months_use(client, ana, staff_user):
    client.force_login(staff_user)

    page = client.get("/admin/routing/cloudbudget/").content.decode()

    assert "$1.75 of $5.00 used, $3.25 left" in page


@pytest.fixture
def in_platform(ana, providers):
    """Ana in team platform ($2.00 a month, of which her $1.75 counts: 87.5%, past the 80% alert share),
    with a $1.00 key that has spent $0.10 and a key of no limit of its own."""
    team = Team.objects.create(name="platform", monthly_cloud_budget_usd=Decimal("2"))
    Membership.objects.create(user=ana, team=team)
    LedgerEntry.objects.filter(user=ana).update(team=team)
    limited = key_create(user=ana, name="ci").key
    limited.monthly_cloud_budget_usd = Decimal("1")
    limited.save()
    key_create(user=ana, name="laptop")
    LedgerEntry.objects.create(
        created_at=timezone.now(),
        provider=providers["anthropic"],
        model_name="m",
        is_local=False,
        outcome="success",
        cost_usd=Decimal("0.10"),
        user=ana,
        team=team,
        api_key=limited,
    )
    return limited


def test_the_api_lists_the_team_budget_and_each_limited_key_with_its_own(client, ana, in_platform):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=ana).key}")

    budgets = client.get("/api/v1/budget/").json()["budgets"]

    assert [(b["scope"], b["name"], b["spent_usd"], b["remaining_usd"], b["alert"]) for b in budgets] == [
        ("team", "platform", "1.3500000000", "0.1500000000", True),
        ("user", "ana", "1.3500000000", "3.1500000000", False),
        ("key", in_platform.prefix, "0.1000000000", "0.9000000000", False),
    ]


def test_the_dashboard_and_the_keys_page_show_each_budget_and_a_banner_past_the_alert_share(client, ana, in_platform):
    client.force_login(ana)

    for url in ("/", "/account/keys/"):
        page = client.get(url).content.decode()

        assert "Your team platform&#x27;s cloud budget: <strong>$0.1500</strong> of $2.00 left this month" in page
        assert "Your cloud budget: <strong>$3.15</strong> of $5.00 left this month" in page
        assert f"Your API key {in_platform.prefix}&#x27;s cloud budget: <strong>$0.9000</strong> of $1.00 left" in page
        assert page.count('class="alert note budget-alert"') == 1
        assert (
            "Your team platform&#x27;s cloud budget is 92.50% used this month: $1.85 of $2.00, $0.1500 left. "
            "At the limit Switchyard makes no more cloud calls for it until the month ends; local calls go on."
        ) in page


def test_the_keys_page_shows_each_keys_monthly_limit(client, ana, in_platform):
    client.force_login(ana)

    page = client.get("/account/keys/").content.decode()

    assert "<td>$1.00 a month</td>" in page
    assert "<td>none of its own</td>" in page
