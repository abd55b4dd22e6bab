import pytest
from django.urls import reverse

from agents.models import AgentRun, Workflow
from tests.factories import agents_create, user_create

pytestmark = pytest.mark.django_db
URL = reverse("agents:workflow_new")


@pytest.fixture
def ana(client):
    user = user_create("ana")
    client.force_login(user)
    return user


@pytest.fixture
def team():
    return agents_create()


def test_it_chooses_all_four_agents_by_default(client, ana, team):
    page = client.get(URL).content.decode()

    for slug in ("marcus", "emily", "alex", "jordan"):
        assert f'value="{slug}"' in page
    assert page.count("checked") == 4


def test_it_submits_a_feature_to_the_chosen_agents(client, ana, team):
    response = client.post(URL, {"feature": "Password reset by email.", "agents": ["marcus", "alex"]})

    workflow = Workflow.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("agents:workflow_detail", args=[workflow.pk])
    assert workflow.created_by == ana
    assert sorted(run.agent.slug for run in workflow.runs.all()) == ["alex", "marcus"]
    assert all("Password reset by email." in run.prompt for run in workflow.runs.all())


def test_it_submits_to_the_whole_team(client, ana, team):
    client.post(URL, {"feature": "Password reset by email.", "agents": list(team)})

    assert AgentRun.objects.filter(workflow=Workflow.objects.get()).count() == 4


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"feature": "Password reset.", "agents": []}, "agents", "Choose at least one agent."),
        ({"feature": "", "agents": ["marcus"]}, "feature", "Describe the feature."),
        ({"feature": "Password reset.", "agents": ["marcus", "ghost"]}, "agents", "ghost is not an enabled agent."),
    ],
)
def test_it_shows_form_errors_for_bad_input(client, ana, team, data, field, message):
    response = client.post(URL, data)

    assert response.status_code == 400
    assert message in response.context["form"].errors[field]
    assert message in response.content.decode()
    assert not Workflow.objects.exists()
    assert not AgentRun.objects.exists()


def test_it_refuses_a_feature_over_the_limit(client, ana, team, settings):
    settings.SWITCHYARD_MAX_PROMPT_CHARS = 20

    response = client.post(URL, {"feature": "y" * 21, "agents": ["marcus"]})

    assert response.status_code == 400
    assert "too long" in response.content.decode()
    assert not Workflow.objects.exists()


def test_it_sends_anonymous_visitors_to_log_in(client, team):
    response = client.post(URL, {"feature": "Password reset.", "agents": ["marcus"]})

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert not Workflow.objects.exists()
