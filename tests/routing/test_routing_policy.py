"""The routing policy has one accessor, `routing.selectors.routing_policy()`, and it never writes:
a page, an API or a routing decision on a fresh install leaves the policy table empty."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from routing.models import RoutingPolicy
from routing.selectors import routing_policy
from routing.table import load_table

pytestmark = pytest.mark.django_db
THIS_MONTH = timezone.now().strftime("%Y-%m")


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/api/v1/providers/",
        "/metrics/",
        "/metrics/usage/",
        "/metrics/latency/",
        "/metrics/local-share/",
        "/metrics/reports/",
        f"/metrics/reports/{THIS_MONTH}/",
        f"/api/v1/reports/monthly/{THIS_MONTH}/",
        "/admin/routing/provider/",
    ],
)
def test_a_get_on_an_empty_database_stores_no_routing_policy(client: Client, staff_user, path: str) -> None:
    client.force_login(staff_user)

    response = client.get(path, follow=True)

    assert response.status_code == 200
    assert not RoutingPolicy.objects.exists()


def test_loading_the_routing_table_stores_no_routing_policy() -> None:
    load_table(None)

    assert not RoutingPolicy.objects.exists()


def test_before_anyone_saved_one_the_policy_reads_as_the_defaults() -> None:
    policy = routing_policy()

    assert (policy.pk, policy.target_local_share, policy.baseline_model) == (None, Decimal("85"), None)
