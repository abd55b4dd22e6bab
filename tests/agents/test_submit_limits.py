"""Submitting refuses what the routing table cannot serve (routing.limits, called by
agents.services): the same refusal from the service, the API (a JSON 400 naming the field) and
the web form (a form error), and no run is created. Before, such runs were accepted (201) and
failed on a worker, or ran up cloud spend."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from agents import services
from agents.models import AgentRun
from routing.models import LLMModel, Provider, RoutingPolicy
from routing.table import bump_version

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("enqueued")]

UNKNOWN = "No enabled provider offers 'telepathy': choose one of code_generation, documentation, reasoning, testing."
CLOUD_ONLY = "reasoning is served in the cloud, and only staff may ask for it (anyone may ask for: none)."
TOO_LONG = "Must be at most 64,000: the longest answer a model for code_generation can give."


@pytest.fixture
def routing(providers) -> dict[str, Provider]:
    """The team's providers, with reasoning offered by Claude only."""
    claude = providers["anthropic"]
    claude.capabilities = [*claude.capabilities, "reasoning"]
    claude.save()
    bump_version()
    return providers


@pytest.fixture
def output_limits(routing) -> None:
    """Each model's longest answer: Claude's is the longest."""
    LLMModel.objects.filter(name="mistral:latest").update(max_output_tokens=4096)
    LLMModel.objects.filter(name="claude-sonnet-4-5").update(max_output_tokens=64000)
    LLMModel.objects.exclude(name__in=["mistral:latest", "claude-sonnet-4-5"]).update(max_output_tokens=16384)
    bump_version()


def submit(user, **fields) -> AgentRun:
    return services.run_submit(agent="marcus", prompt="Write a FastAPI health endpoint.", user=user, **fields)


def refusal(user, **fields) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as refused:
        submit(user, **fields)
    return refused.value.message_dict


def test_it_refuses_a_capability_no_enabled_provider_offers(agents, routing, user):
    assert refusal(user, capability="telepathy") == {"capability": [UNKNOWN]}
    assert not AgentRun.objects.exists()


def test_it_refuses_a_max_tokens_longer_than_any_model_for_the_capability_gives(agents, output_limits, user):
    assert refusal(user, max_tokens=1_000_000) == {"max_tokens": [TOO_LONG]}
    assert submit(user, max_tokens=64000).max_tokens == 64000


def test_it_refuses_a_max_prompt_tokens_below_the_prompt_it_would_send(agents, routing, user):
    # Marcus's instructions alone are a few hundred tokens: a limit of 50 could only fail the run.
    [message] = refusal(user, max_prompt_tokens=50)["max_prompt_tokens"]
    assert message.startswith("The prompt is ~")
    assert message.endswith("over this limit of 50: the run would be refused. Raise it or leave it empty.")
    assert submit(user, max_prompt_tokens=4000).max_prompt_tokens == 4000


def test_a_plain_user_may_not_ask_for_a_capability_only_the_cloud_serves_unless_the_policy_allows_it(
    agents, routing, user, staff_user
):
    assert refusal(user, capability="reasoning") == {"capability": [CLOUD_ONLY]}
    assert submit(staff_user, capability="reasoning").capability == "reasoning"

    policy = RoutingPolicy.get()
    policy.user_cloud_capabilities = ["reasoning"]
    policy.save()
    bump_version()

    assert submit(user, capability="reasoning").capability == "reasoning"


def api_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_the_api_answers_400_naming_the_field(agents, routing, user):
    response = api_for(user).post(
        "/api/v1/runs/", {"agent": "marcus", "prompt": "x", "capability": "reasoning"}, format="json"
    )

    assert (response.status_code, response.json()["error"]["fields"]) == (400, {"capability": [CLOUD_ONLY]})
    assert not AgentRun.objects.exists()


def test_the_api_refuses_20_runs_asking_for_a_million_tokens(agents, output_limits, user):
    client = api_for(user)

    answers = [
        client.post("/api/v1/runs/", {"agent": "marcus", "prompt": "x", "max_tokens": 1_000_000}, format="json")
        for _ in range(20)
    ]

    answered = {(answer.status_code, str(answer.json()["error"]["fields"])) for answer in answers}
    assert answered == {(400, str({"max_tokens": [TOO_LONG]}))}
    assert not AgentRun.objects.exists()


def test_the_web_form_shows_the_refusal_on_its_field(client, agents, routing, user):
    client.force_login(user)

    response = client.post(
        reverse("agents:run_new"), {"agent": "marcus", "prompt": "Do it.", "capability": "telepathy"}
    )

    assert response.status_code == 400
    assert response.context["form"].errors["capability"] == [UNKNOWN]
    assert not AgentRun.objects.exists()


def test_a_workflow_whose_task_no_model_can_read_is_refused(agents, routing, user, settings):
    settings.SWITCHYARD_MAX_PROMPT_CHARS = 10_000_000
    feature = "word " * 200_000  # ~250,000 tokens: more than Claude's 200,000

    with pytest.raises(ValidationError) as refused:
        services.workflow_submit(feature=feature, user=user, agents=["marcus"])

    [message] = refused.value.message_dict["feature"]
    assert message.startswith("Marcus: The prompt is ~")
    assert message.endswith("more than a model for code_generation can read (200,000).")
    assert not AgentRun.objects.exists()
