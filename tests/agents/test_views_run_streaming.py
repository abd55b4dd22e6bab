"""The run and workflow pages while a run streams: the answer so far, and each agent's progress."""

import pytest
from django.urls import reverse

from agents.models import RunStatus, Workflow
from tests.factories import agents_create, run_create, user_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def ana(client):
    user = user_create("ana")
    client.force_login(user)
    return user


@pytest.fixture
def team():
    return agents_create()


def test_the_live_run_fragment_shows_the_answer_so_far_while_the_run_streams(client, ana, team):
    run = run_create(agent=team["marcus"], user=ana, status=RunStatus.RUNNING, output="def add(a, b):")

    fragment = client.get(reverse("agents:run_live", args=[run.pk])).content.decode()

    assert 'data-finished="false"' in fragment  # the poller keeps fetching
    assert "the answer so far, 14 characters" in fragment
    assert "def add(a, b):" in fragment


def test_a_cancelled_run_shows_the_answer_up_to_the_cancel(client, ana, team):
    run = run_create(agent=team["marcus"], user=ana, status=RunStatus.CANCELLED, output="def add(a,")

    fragment = client.get(reverse("agents:run_live", args=[run.pk])).content.decode()

    assert "The answer up to the cancel." in fragment
    assert "the answer so far" not in fragment


def test_the_workflow_page_shows_each_running_agents_progress(client, ana, team):
    workflow = Workflow.objects.create(feature="Password reset.", created_by=ana, status=RunStatus.RUNNING)
    run_create(agent=team["marcus"], user=ana, workflow=workflow, status=RunStatus.RUNNING, output="x" * 119 + "<end>")
    run_create(agent=team["emily"], user=ana, workflow=workflow, status=RunStatus.RUNNING)
    run_create(agent=team["alex"], user=ana, workflow=workflow, status=RunStatus.SUCCEEDED, output="done")

    page = client.get(reverse("agents:workflow_live", args=[workflow.pk])).content.decode()

    assert page.count("124 characters so far") == 1
    assert "…" + "x" * 55 + "&lt;end&gt;" in page  # the last 60 characters, escaped
    assert page.count("waiting for the first words") == 1
