"""The pages say plainly when an answer came from the demo model (bin/run --local-model)."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from agents.models import RunStatus, Workflow
from tests.agents.views_helpers import make_provider, make_run, make_team, make_user

pytestmark = pytest.mark.django_db
NOTICE = "it shows the routing and the ledger, not good code."


@pytest.fixture
def ana(client):
    user = make_user("ana")
    client.force_login(user)
    return user


@pytest.fixture
def team():
    return make_team()


@pytest.fixture
def demo():
    call_command("register_local_model", "--base-url", "http://127.0.0.1:8080", stdout=StringIO())


def answered(ana, team, provider: str, model: str, workflow: Workflow | None = None):
    return make_run(
        agent=team["marcus"],
        user=ana,
        workflow=workflow,
        status=RunStatus.SUCCEEDED,
        provider_name=provider,
        model_name=model,
        output="```python\nimport os\n",
    )


def test_a_run_answered_by_the_demo_model_says_so(client, ana, team, demo):
    run = answered(ana, team, "local-gemma", "gemma3-270m")

    page = client.get(reverse("agents:run_detail", args=[run.pk])).content.decode()
    live = client.get(reverse("agents:run_live", args=[run.pk])).content.decode()

    expected = f"Answered by the demo model (gemma3-270m: Gemma 3 270M, a small base model): {NOTICE}"
    assert expected in page
    assert expected in live


def test_a_run_answered_by_another_model_does_not(client, ana, team, demo):
    make_provider("ollama")
    run = answered(ana, team, "ollama", "gemma3:270m")

    page = client.get(reverse("agents:run_detail", args=[run.pk])).content.decode()

    assert NOTICE not in page


def test_a_workflow_with_a_run_answered_by_the_demo_model_says_so(client, ana, team, demo):
    workflow = Workflow.objects.create(feature="invoices", created_by=ana, status=RunStatus.SUCCEEDED)
    answered(ana, team, "local-gemma", "gemma3-270m", workflow=workflow)

    page = client.get(reverse("agents:workflow_detail", args=[workflow.pk])).content.decode()

    assert NOTICE in page


def test_the_dashboard_says_so_while_the_demo_model_takes_runs(client, ana, demo):
    page = client.get(reverse("home")).content.decode()

    assert "The demo model (local-gemma · gemma3-270m: Gemma 3 270M, a small base model)" in page
    assert NOTICE.replace("it shows", "answers every run your Ollama host does not take: it shows") in page


def test_the_dashboard_says_nothing_without_a_demo_model(client, ana):
    make_provider("ollama")
    assert "demo model" not in client.get(reverse("home")).content.decode()
