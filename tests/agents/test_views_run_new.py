import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from agents import services
from agents.models import AgentRun, RunStatus
from tests.factories import agents_create, user_create

pytestmark = pytest.mark.django_db
URL = reverse("agents:run_new")


@pytest.fixture
def ana(client):
    user = user_create("ana")
    client.force_login(user)
    return user


@pytest.fixture
def team():
    return agents_create()


def test_it_offers_the_enabled_agents(client, ana, team):
    team["jordan"].enabled = False
    team["jordan"].save()

    response = client.get(URL)

    assert response.status_code == 200
    choices = [str(value) for value, _ in response.context["form"].fields["agent"].choices if value]
    assert choices == ["marcus", "emily", "alex"]


def test_it_preselects_the_agent_named_in_the_link(client, ana, team):
    page = client.get(URL, {"agent": "alex"}).content.decode()

    assert '<option value="alex" selected>' in page


def test_it_submits_a_run_and_shows_its_page(client, ana, team):
    response = client.post(URL, {"agent": "marcus", "prompt": "Write a FastAPI endpoint that returns the time."})

    run = AgentRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("agents:run_detail", args=[run.pk])
    assert run.agent == team["marcus"]
    assert run.created_by == ana
    assert run.status == RunStatus.QUEUED
    assert run.prompt == "Write a FastAPI endpoint that returns the time."


def test_it_passes_capability_and_max_tokens_on(client, ana, team, providers):
    client.post(URL, {"agent": "alex", "prompt": "Test it.", "capability": "testing", "max_tokens": "256"})

    run = AgentRun.objects.get()
    assert (run.capability, run.max_tokens) == ("testing", 256)


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"agent": "marcus", "prompt": ""}, "prompt", "Write a prompt."),
        ({"agent": "marcus", "prompt": "   \n "}, "prompt", "Write a prompt."),
        ({"agent": "", "prompt": "Do it."}, "agent", "Choose an agent."),
        ({"agent": "nobody", "prompt": "Do it."}, "agent", "That agent does not exist or is disabled."),
        ({"agent": "marcus", "prompt": "Do it.", "max_tokens": "0"}, "max_tokens", "greater than or equal to 1"),
        ({"agent": "marcus", "prompt": "Do it.", "capability": "Code Gen"}, "capability", "lowercase word"),
    ],
)
def test_it_shows_form_errors_for_bad_input(client, ana, team, data, field, message):
    response = client.post(URL, data)

    assert response.status_code == 400
    assert message in " ".join(response.context["form"].errors[field])
    assert message.replace("'", "&#x27;") in response.content.decode()
    assert not AgentRun.objects.exists()


def test_it_refuses_a_disabled_agent(client, ana, team):
    team["emily"].enabled = False
    team["emily"].save()

    response = client.post(URL, {"agent": "emily", "prompt": "Build a button."})

    assert response.status_code == 400
    assert "agent" in response.context["form"].errors
    assert not AgentRun.objects.exists()


def test_it_refuses_a_prompt_over_the_limit(client, ana, team, settings):
    settings.SWITCHYARD_MAX_PROMPT_CHARS = 50

    response = client.post(URL, {"agent": "marcus", "prompt": "x" * 51})

    assert response.status_code == 400
    assert "too long: at most 50 characters (it has 51)" in response.content.decode()
    assert not AgentRun.objects.exists()


def test_it_shows_the_services_own_refusals_on_the_form(client, ana, team, monkeypatch):
    def refuse(**kwargs):
        raise ValidationError({"prompt": "The local model cannot take a prompt this large.", "quota": "Over quota."})

    monkeypatch.setattr(services, "run_submit", refuse)

    response = client.post(URL, {"agent": "marcus", "prompt": "Do it."})

    assert response.status_code == 400
    assert response.context["form"].errors["prompt"] == ["The local model cannot take a prompt this large."]
    assert response.context["form"].non_field_errors() == ["Over quota."]


def test_it_sends_anonymous_visitors_to_log_in(client, team):
    assert client.get(URL).status_code == 302
    response = client.post(URL, {"agent": "marcus", "prompt": "Do it."})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert not AgentRun.objects.exists()


def test_it_keeps_the_prompts_indentation(client, ana, team):
    prompt = "    def broken(:\n        pass\nFix this."

    client.post(URL, {"agent": "marcus", "prompt": prompt})

    assert AgentRun.objects.get().prompt == prompt
