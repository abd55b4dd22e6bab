"""The remaining cloud budget where a user sees it: GET /api/v1/budget/ and the dashboard."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

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
