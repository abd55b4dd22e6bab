"""The agents admin: agents are edited with validation; runs and workflows are history, shown read-only."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib import admin as django_admin
from django.test import Client, RequestFactory
from django.urls import reverse

from accounts.services import key_create
from agents.models import Agent, AgentRun, RunStatus, Workflow
from tests.factories import attempt_create, run_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(client: Client, staff_user) -> Client:
    client.force_login(staff_user)
    return client


def agent_data(**fields: str) -> dict[str, str]:
    data = {
        "name": "Riley",
        "slug": "riley",
        "role": "Data engineer",
        "capability": "code_generation",
        "enabled": "on",
        "position": "4",
        "system_prompt": "You are Riley, a data engineer. You write SQL migrations.",
        "workflow_prompt": "Write the SQL for this feature: {feature}",
        "temperature": "0.2",
        "max_tokens": "1024",
        "quality_check": "none",
    }
    data.update(fields)
    return data


@pytest.fixture
def run(agents, providers, staff_user) -> AgentRun:
    workflow = Workflow.objects.create(feature="A login page with rate limiting", created_by=staff_user)
    run = run_create(
        agent=agents["marcus"],
        user=staff_user,
        workflow=workflow,
        prompt="Write a FastAPI endpoint for /login",
        status=RunStatus.SUCCEEDED,
        provider_name="ollama",
        model_name="mistral:latest",
        output="@app.post('/login')",
        cost_usd=Decimal(0),
    )
    attempt_create(
        run=run,
        provider=providers["anthropic"],
        created_at=datetime(2025, 6, 3, 10, 0, 0, tzinfo=UTC),
        outcome="transient_error",
        error="529 overloaded_error",
        cost=None,
        baseline=None,
    )
    attempt_create(
        run=run,
        provider=providers["ollama"],
        created_at=datetime(2025, 6, 3, 10, 0, 1, tzinfo=UTC),
        attempt=2,
        prompt_tokens=120,
        completion_tokens=480,
        baseline=None,
    )
    return run


def test_it_lists_the_agents(admin: Client, agents) -> None:
    response = admin.get(reverse("admin:agents_agent_changelist"))

    assert [agent.slug for agent in response.context["cl"].result_list] == ["marcus", "emily", "alex", "jordan"]


def test_it_adds_an_agent(admin: Client, agents) -> None:
    response = admin.post(reverse("admin:agents_agent_add"), agent_data())

    assert response.status_code == 302
    assert Agent.objects.get(slug="riley").role == "Data engineer"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"slug": "Riley"}, "Use lowercase letters, digits and _ . : - only."),
        ({"slug": "marcus"}, "Agent with this Slug already exists."),
        ({"capability": "Code Gen"}, "A capability is a lowercase word like code_generation."),
        ({"temperature": "2.5"}, "Ensure this value is less than or equal to 2."),
        ({"max_tokens": "0"}, "Ensure this value is greater than or equal to 1."),
        ({"system_prompt": "   "}, "This field is required."),
        ({"workflow_prompt": "Write the SQL."}, "Include {feature} where the workflow&#x27;s feature goes"),
        ({"quality_check": "vibes"}, "Select a valid choice."),
    ],
)
def test_it_refuses_an_invalid_agent(admin: Client, agents, fields: dict, message: str) -> None:
    response = admin.post(reverse("admin:agents_agent_add"), agent_data(**fields))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Agent.objects.filter(name="Riley").exists()


def test_it_shows_a_runs_ledger_rows(admin: Client, run: AgentRun) -> None:
    response = admin.get(reverse("admin:agents_agentrun_change", args=[run.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    assert "anthropic/claude-sonnet-4-5" in html
    assert "529 overloaded_error" in html
    assert "ollama/mistral:latest" in html
    assert reverse("admin:routing_ledgerentry_changelist") + f"?run_id={run.pk}" in html


def test_it_shows_the_api_key_a_run_was_submitted_with(admin: Client, run: AgentRun, staff_user) -> None:
    key = key_create(user=staff_user, name="ci").key
    AgentRun.objects.filter(pk=run.pk).update(api_key=key)

    response = admin.get(reverse("admin:agents_agentrun_change", args=[run.pk]))

    assert f"{key.prefix}… (ci)" in response.content.decode()


@pytest.mark.parametrize("model", ["agentrun", "workflow"])
def test_it_shows_history_without_add_change_or_delete(admin: Client, run: AgentRun, model: str) -> None:
    obj = run if model == "agentrun" else run.workflow
    listing = admin.get(reverse(f"admin:agents_{model}_changelist"))
    page = admin.get(reverse(f"admin:agents_{model}_change", args=[obj.pk]))

    assert listing.status_code == 200
    assert reverse(f"admin:agents_{model}_add") not in listing.content.decode()
    assert "delete_selected" not in listing.content.decode()
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()


@pytest.mark.parametrize("model", ["agentrun", "workflow"])
def test_it_refuses_to_add_change_or_delete_history(admin: Client, run: AgentRun, model: str) -> None:
    obj = run if model == "agentrun" else run.workflow

    assert admin.get(reverse(f"admin:agents_{model}_add")).status_code == 403
    assert admin.post(reverse(f"admin:agents_{model}_add"), {"prompt": "x"}).status_code == 403
    assert admin.post(reverse(f"admin:agents_{model}_change", args=[obj.pk]), {"status": "failed"}).status_code == 403
    assert admin.post(reverse(f"admin:agents_{model}_delete", args=[obj.pk]), {"post": "yes"}).status_code == 403
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED


def test_it_filters_and_searches_runs(admin: Client, run: AgentRun) -> None:
    url = reverse("admin:agents_agentrun_changelist")

    succeeded = admin.get(url, {"status__exact": "succeeded"})
    failed = admin.get(url, {"status__exact": "failed"})
    searched = admin.get(url, {"q": "FastAPI"})
    by_id = admin.get(url, {"q": str(run.pk)})

    assert list(succeeded.context["cl"].result_list) == [run]
    assert list(failed.context["cl"].result_list) == []
    assert list(searched.context["cl"].result_list) == [run]
    assert run in by_id.context["cl"].result_list


def test_it_keeps_an_agent_with_runs_from_being_deleted(admin: Client, run: AgentRun) -> None:
    response = admin.post(reverse("admin:agents_agent_delete", args=[run.agent_id]), {"post": "yes"})

    assert response.status_code == 200  # the page that lists what protects it
    assert Agent.objects.filter(pk=run.agent_id).exists()


def test_it_offers_every_editable_agent_field(staff_user) -> None:
    request = RequestFactory().get("/admin/")
    request.user = staff_user
    form = django_admin.site._registry[Agent].get_form(request)

    editable = {f.name for f in Agent._meta.concrete_fields if f.editable and not f.primary_key}

    assert editable <= set(form.base_fields)
