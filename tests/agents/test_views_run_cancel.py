import pytest
from django.urls import reverse

from agents.models import AgentRun, RunStatus
from tests.factories import agents_create, run_create, user_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def ana(client):
    user = user_create("ana")
    client.force_login(user)
    return user


@pytest.fixture
def marcus():
    return agents_create()["marcus"]


def cancel(client, run: AgentRun, **data):
    return client.post(reverse("agents:run_cancel", args=[run.pk]), data, follow=True)


@pytest.mark.parametrize("status", [RunStatus.QUEUED, RunStatus.RUNNING])
def test_it_cancels_a_run_from_its_button(client, ana, marcus, status):
    run = run_create(agent=marcus, user=ana, status=status)

    response = cancel(client, run)

    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert response.redirect_chain == [(reverse("agents:run_detail", args=[run.pk]), 302)]
    assert "is cancelled" in response.content.decode()
    assert "Cancel run" not in response.content.decode()


def test_it_goes_back_to_the_page_the_button_was_on(client, ana, marcus):
    run = run_create(agent=marcus, user=ana)

    response = cancel(client, run, next="/runs/?status=queued")

    assert response.redirect_chain == [("/runs/?status=queued", 302)]


def test_it_never_redirects_to_another_site(client, ana, marcus):
    run = run_create(agent=marcus, user=ana)

    response = cancel(client, run, next="https://evil.example/")

    assert response.redirect_chain == [(reverse("agents:run_detail", args=[run.pk]), 302)]


@pytest.mark.parametrize("status", [RunStatus.SUCCEEDED, RunStatus.FAILED])
def test_it_explains_why_a_finished_run_cannot_be_cancelled(client, ana, marcus, status):
    run = run_create(agent=marcus, user=ana, status=status, output="kept")

    response = cancel(client, run)

    run.refresh_from_db()
    assert response.status_code == 200
    assert run.status == status
    assert run.output == "kept"
    assert 'class="error"' in response.content.decode()  # the service's reason, shown as a message


def test_it_says_a_cancelled_run_is_cancelled_when_its_button_is_pressed_again(client, ana, marcus):
    run = run_create(agent=marcus, user=ana)
    cancel(client, run)

    response = cancel(client, run)

    assert "is cancelled" in response.content.decode()
    assert 'class="error"' not in response.content.decode()


def test_it_answers_404_for_another_users_run(client, ana, marcus):
    run = run_create(agent=marcus, user=user_create("bo"))

    response = client.post(reverse("agents:run_cancel", args=[run.pk]))

    run.refresh_from_db()
    assert response.status_code == 404
    assert run.status == RunStatus.QUEUED


def test_it_lets_staff_cancel_anyones_run(client, marcus):
    run = run_create(agent=marcus, user=user_create("bo"))
    client.force_login(user_create("boss", staff=True))

    cancel(client, run)

    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED


def test_it_only_cancels_on_post(client, ana, marcus):
    run = run_create(agent=marcus, user=ana)

    assert client.get(reverse("agents:run_cancel", args=[run.pk])).status_code == 405
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED


def test_it_needs_a_csrf_token(ana, marcus):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(ana)
    run = run_create(agent=marcus, user=ana)

    assert browser.post(reverse("agents:run_cancel", args=[run.pk])).status_code == 403
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED


def test_it_sends_anonymous_visitors_to_log_in(client, marcus):
    run = run_create(agent=marcus, user=user_create("bo"))

    response = client.post(reverse("agents:run_cancel", args=[run.pk]))

    run.refresh_from_db()
    assert response.status_code == 302
    assert run.status == RunStatus.QUEUED
