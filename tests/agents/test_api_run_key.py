"""A run submitted through the REST API with a personal API key is the key's: its calls' ledger rows
carry the key, so the key's monthly cloud budget applies to them as to its gateway calls, and the
reports by key count them. The web form's session and older DRF tokens submit runs with no key.

Runs execute in this process (agents.execution.run_execute). The cloud is the Anthropic fake at
$3 / $15 per million tokens (tests/routing/test_budget.py `cloud`, its key variable set by the
fixture only); the local provider, where there is one, the OpenAI fake.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import ApiKey
from accounts.services import NewKey, key_create
from agents import execution
from agents.models import AgentRun, RunStatus
from routing.budget import budget_statuses
from routing.models import BudgetScope, LedgerEntry
from tests.routing import test_budget
from tests.routing.conftest_router import fresh_routing, make_provider, make_rule, set_policy

__all__ = ["fresh_routing"]

cloud = test_budget.cloud  # the fixture: the one cloud provider, "claude", serving reasoning and code_generation
ASK = {"agent": "marcus", "prompt": "A /health endpoint, please.", "capability": "reasoning", "max_tokens": 1000}
# The fake answers with 9 prompt tokens and 1,000 answer tokens: at $3 / $15 per million.
REAL = Decimal(9 * 3 + 1000 * 15) / Decimal(1_000_000)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("enqueued", "fresh_routing")]


@pytest.fixture(autouse=True)
def reasoning_for_everyone(db) -> None:
    """As shipped: anyone may ask for reasoning, which only the cloud serves."""
    set_policy(user_cloud_capabilities=["reasoning"])


@pytest.fixture
def key(user) -> NewKey:
    return key_create(user=user, name="ci", monthly_cloud_budget_usd=Decimal("5"))


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def submitted(client: APIClient, path: str = "/api/v1/runs/", body: dict = ASK) -> dict:
    response = client.post(path, body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def executed(run_id: int) -> AgentRun:
    execution.run_execute(run_id=run_id)
    return AgentRun.objects.get(pk=run_id)


def test_a_run_submitted_with_a_key_is_recorded_with_it_and_its_calls_count_against_the_key(
    cloud, agents, user, key
) -> None:
    client = bearer(key.secret)
    body = submitted(client)
    run = executed(body["id"])

    assert (run.api_key_id, run.status, run.provider_name) == (key.key.pk, RunStatus.SUCCEEDED, "claude")
    rows = LedgerEntry.objects.filter(run_id=run.pk)
    assert [(row.outcome, row.user_id, row.api_key_id) for row in rows] == [("success", user.pk, key.key.pk)]
    key_budget = budget_statuses(user_id=user.pk, api_key_id=key.key.pk)[-1]
    assert (key_budget.scope, key_budget.spent_usd) == (BudgetScope.KEY, REAL)
    assert body["api_key"] == key.key.prefix
    assert client.get(body["url"]).json()["api_key"] == key.key.prefix


def test_a_run_with_a_key_whose_budget_is_spent_is_refused_the_cloud_and_fails_naming_the_key(
    cloud, agents, user, key
) -> None:
    ApiKey.objects.filter(pk=key.key.pk).update(monthly_cloud_budget_usd=Decimal("0.01"))

    run = executed(submitted(bearer(key.secret))["id"])

    assert run.status == RunStatus.FAILED
    # Its worst case: Marcus's instructions and the prompt (274 tokens estimated) at $3, 1,000 answer tokens at $15.
    assert run.error == (
        f"no provider could take the request: claude: API key {key.key.prefix}'s cloud budget: $0.0100 of $0.0100 "
        "left this month, this call could cost $0.0158"
    )
    assert cloud.requests == []  # the cloud call was never made
    assert not LedgerEntry.objects.filter(run_id=run.pk, is_local=False).exclude(outcome="skipped").exists()


def test_a_run_with_a_key_whose_budget_is_spent_goes_to_a_local_provider_that_can_serve_it(
    cloud, fake_openai, agents, user, key
) -> None:
    ApiKey.objects.filter(pk=key.key.pk).update(monthly_cloud_budget_usd=Decimal("0"))
    make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini", priority=1)
    make_rule("think-in-the-cloud", escalate_capabilities=["reasoning"])  # cloud first

    run = executed(submitted(bearer(key.secret))["id"])

    assert (run.status, run.provider_name) == (RunStatus.SUCCEEDED, "local")
    assert cloud.requests == []
    assert set(LedgerEntry.objects.filter(run_id=run.pk).values_list("api_key_id", flat=True)) == {key.key.pk}


def test_what_a_keys_spent_budget_refuses_its_users_drf_token_may_still_spend(cloud, agents, user, key) -> None:
    ApiKey.objects.filter(pk=key.key.pk).update(monthly_cloud_budget_usd=Decimal("0"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")

    run = executed(submitted(client)["id"])

    assert (run.api_key_id, run.status, run.provider_name) == (None, RunStatus.SUCCEEDED, "claude")
    assert list(LedgerEntry.objects.filter(run_id=run.pk).values_list("api_key_id", flat=True)) == [None]


@pytest.mark.parametrize("how", ["drf token", "session"])
def test_a_run_submitted_with_a_drf_token_or_the_session_has_no_key(cloud, agents, user, key, how) -> None:
    client = APIClient()
    if how == "session":
        client.force_login(user)
    else:
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")

    body = submitted(client)

    assert body["api_key"] is None
    assert AgentRun.objects.get(pk=body["id"]).api_key_id is None


def test_every_run_of_a_workflow_submitted_with_a_key_is_recorded_with_it(cloud, agents, user, key) -> None:
    body = submitted(bearer(key.secret), "/api/v1/workflows/", {"feature": "A health endpoint.", "agents": ["marcus"]})

    assert list(AgentRun.objects.filter(workflow_id=body["id"]).values_list("api_key_id", flat=True)) == [key.key.pk]
