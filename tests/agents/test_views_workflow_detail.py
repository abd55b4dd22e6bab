from datetime import timedelta
from decimal import Decimal

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


def make_workflow(user, **fields) -> Workflow:
    return Workflow.objects.create(feature="A page where users reset their password.", created_by=user, **fields)


def test_it_shows_the_runs_live_while_they_work(client, ana, team):
    workflow = make_workflow(ana, status=RunStatus.RUNNING)
    runs = [run_create(agent=agent, user=ana, workflow=workflow, status=RunStatus.RUNNING) for agent in team.values()]

    page = client.get(reverse("agents:workflow_detail", args=[workflow.pk])).content.decode()

    live_url = reverse("agents:workflow_live", args=[workflow.pk])
    assert f'data-live-url="{live_url}" data-finished="false"' in page
    for run in runs:
        assert reverse("agents:run_detail", args=[run.pk]) in page
        assert reverse("agents:run_cancel", args=[run.pk]) in page
    assert "Total cost" not in page


def test_it_shows_totals_when_done(client, ana, team):
    workflow = make_workflow(
        ana,
        status=RunStatus.SUCCEEDED,
        cost_usd=Decimal("0.0100"),
        baseline_cost_usd=Decimal("0.0350"),
        savings_usd=Decimal("0.0250"),
    )
    Workflow.objects.filter(pk=workflow.pk).update(finished_at=workflow.created_at + timedelta(seconds=42.5))
    run_create(agent=team["marcus"], user=ana, workflow=workflow, status=RunStatus.SUCCEEDED)

    fragment = client.get(reverse("agents:workflow_live", args=[workflow.pk])).content.decode()

    assert 'data-finished="true"' in fragment
    assert "$0.0100" in fragment
    assert "$0.0350" in fragment
    assert "$0.0250" in fragment  # saved
    assert "42.5 s" in fragment


def test_it_sends_cancel_buttons_back_to_the_workflow_page(client, ana, team):
    workflow = make_workflow(ana, status=RunStatus.RUNNING)
    run_create(agent=team["marcus"], user=ana, workflow=workflow, status=RunStatus.QUEUED)

    fragment = client.get(reverse("agents:workflow_live", args=[workflow.pk])).content.decode()

    assert f'name="next" value="{reverse("agents:workflow_detail", args=[workflow.pk])}"' in fragment


def test_it_offers_to_cancel_the_workflow_while_a_run_is_unfinished(client, ana, team):
    workflow = make_workflow(ana, status=RunStatus.RUNNING)
    run_create(agent=team["marcus"], user=ana, workflow=workflow, status=RunStatus.SUCCEEDED)
    queued = run_create(agent=team["emily"], user=ana, workflow=workflow, status=RunStatus.QUEUED)
    cancel_url = reverse("agents:workflow_cancel", args=[workflow.pk])
    assert cancel_url in client.get(reverse("agents:workflow_live", args=[workflow.pk])).content.decode()

    response = client.post(cancel_url, follow=True)

    assert response.redirect_chain == [(reverse("agents:workflow_detail", args=[workflow.pk]), 302)]
    assert f"Workflow #{workflow.pk}: its unfinished runs are cancelled." in response.content.decode()
    queued.refresh_from_db()
    workflow.refresh_from_db()
    assert (queued.status, workflow.status) == (RunStatus.CANCELLED, RunStatus.SUCCEEDED)
    assert workflow.finished_at is not None
    assert cancel_url not in client.get(reverse("agents:workflow_live", args=[workflow.pk])).content.decode()


def test_it_says_so_when_the_workflow_has_nothing_left_to_cancel(client, ana, team):
    workflow = make_workflow(ana, status=RunStatus.SUCCEEDED)
    run_create(agent=team["marcus"], user=ana, workflow=workflow, status=RunStatus.SUCCEEDED)

    response = client.post(reverse("agents:workflow_cancel", args=[workflow.pk]), follow=True)

    assert f"Workflow #{workflow.pk} has no run left to cancel" in response.content.decode()


def test_it_answers_404_when_cancelling_another_users_workflow(client, ana, team):
    other = user_create("bo")
    workflow = make_workflow(other, status=RunStatus.RUNNING)
    run = run_create(agent=team["marcus"], user=other, workflow=workflow, status=RunStatus.QUEUED)

    assert client.post(reverse("agents:workflow_cancel", args=[workflow.pk])).status_code == 404
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED


def test_it_escapes_the_feature(client, ana):
    workflow = make_workflow(ana)
    Workflow.objects.filter(pk=workflow.pk).update(feature="<script>alert(1)</script>")

    page = client.get(reverse("agents:workflow_detail", args=[workflow.pk])).content.decode()

    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_it_answers_404_for_another_users_workflow(client, ana):
    workflow = make_workflow(user_create("bo"))

    assert client.get(reverse("agents:workflow_detail", args=[workflow.pk])).status_code == 404
    assert client.get(reverse("agents:workflow_live", args=[workflow.pk])).status_code == 404


def test_it_lets_staff_see_anyones_workflow(client):
    workflow = make_workflow(user_create("bo"))
    client.force_login(user_create("boss", staff=True))

    assert client.get(reverse("agents:workflow_detail", args=[workflow.pk])).status_code == 200


def test_it_sends_anonymous_visitors_to_log_in(client):
    workflow = make_workflow(user_create("bo"))

    for name in ("agents:workflow_detail", "agents:workflow_live"):
        response = client.get(reverse(name, args=[workflow.pk]))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
