from datetime import UTC, datetime

import pytest
from django.urls import reverse

from agents.models import RunStatus
from agents.views import RUNS_PER_PAGE
from tests.factories import agents_create, run_create, user_create

pytestmark = pytest.mark.django_db
URL = reverse("agents:run_list")


@pytest.fixture
def team():
    return agents_create()


@pytest.fixture
def ana(client):
    user = user_create("ana")
    client.force_login(user)
    return user


def run_ids(response) -> list[int]:
    return [run.pk for run in response.context["page"].object_list]


def test_it_lists_my_runs_newest_first(client, ana, team):
    older = run_create(agent=team["marcus"], user=ana, created_at=datetime(2026, 11, 1, tzinfo=UTC))
    newer = run_create(agent=team["emily"], user=ana, created_at=datetime(2026, 11, 2, tzinfo=UTC))

    response = client.get(URL)

    assert response.status_code == 200
    assert run_ids(response) == [newer.pk, older.pk]


def test_it_hides_other_users_runs(client, ana, team):
    mine = run_create(agent=team["marcus"], user=ana)
    run_create(agent=team["marcus"], user=user_create("bo"))

    assert run_ids(client.get(URL)) == [mine.pk]


def test_it_shows_staff_everyones_runs_and_filters_by_user(client, team):
    ana, bo = user_create("ana"), user_create("bo")
    anas, bos = run_create(agent=team["marcus"], user=ana), run_create(agent=team["marcus"], user=bo)
    client.force_login(user_create("boss", staff=True))

    assert set(run_ids(client.get(URL))) == {anas.pk, bos.pk}
    assert run_ids(client.get(URL, {"user": "bo"})) == [bos.pk]


def test_it_ignores_a_user_filter_from_non_staff(client, ana, team):
    mine = run_create(agent=team["marcus"], user=ana)
    run_create(agent=team["marcus"], user=user_create("bo"))

    response = client.get(URL, {"user": "bo"})

    assert run_ids(response) == [mine.pk]
    assert "user" not in response.context["form"].fields


def test_it_filters_by_agent_and_status(client, ana, team):
    wanted = run_create(agent=team["jordan"], user=ana, status=RunStatus.FAILED)
    run_create(agent=team["jordan"], user=ana, status=RunStatus.SUCCEEDED)
    run_create(agent=team["alex"], user=ana, status=RunStatus.FAILED)

    assert run_ids(client.get(URL, {"agent": "jordan", "status": "failed"})) == [wanted.pk]


def test_it_filters_by_date_inclusive_in_utc(client, ana, team):
    run_create(agent=team["marcus"], user=ana, created_at=datetime(2026, 11, 9, 23, 59, tzinfo=UTC))
    first = run_create(agent=team["marcus"], user=ana, created_at=datetime(2026, 11, 10, 0, 0, tzinfo=UTC))
    last = run_create(agent=team["marcus"], user=ana, created_at=datetime(2026, 11, 12, 23, 59, tzinfo=UTC))
    run_create(agent=team["marcus"], user=ana, created_at=datetime(2026, 11, 13, 0, 0, tzinfo=UTC))

    response = client.get(URL, {"since": "2026-11-10", "until": "2026-11-12"})

    assert run_ids(response) == [last.pk, first.pk]


def test_it_reports_a_bad_filter_instead_of_ignoring_it(client, ana, team):
    run_create(agent=team["marcus"], user=ana)

    for query in (
        {"status": "exploded"},
        {"agent": "nobody"},
        {"since": "yesterday"},
        {"since": "2026-11-12", "until": "2026-11-10"},
    ):
        response = client.get(URL, query)
        assert response.status_code == 400, query
        assert response.context["form"].errors, query
        assert run_ids(response) == []


def test_it_paginates_and_keeps_the_filters_in_page_links(client, ana, team):
    runs = [run_create(agent=team["marcus"], user=ana) for _ in range(RUNS_PER_PAGE + 3)]
    run_create(agent=team["emily"], user=ana)

    first = client.get(URL, {"agent": "marcus"})
    second = client.get(URL, {"agent": "marcus", "page": 2})

    assert len(run_ids(first)) == RUNS_PER_PAGE
    assert "?agent=marcus&amp;page=2" in first.content.decode()
    assert sorted(run_ids(first) + run_ids(second)) == sorted(run.pk for run in runs)
    assert "?agent=marcus&amp;page=1" in second.content.decode()


def test_it_shows_the_last_page_for_a_page_number_past_the_end(client, ana, team):
    only = run_create(agent=team["marcus"], user=ana)

    assert run_ids(client.get(URL, {"page": 99})) == [only.pk]
    assert run_ids(client.get(URL, {"page": "x"})) == [only.pk]


def test_it_has_a_cancel_button_for_queued_and_running_runs(client, ana, team):
    queued = run_create(agent=team["marcus"], user=ana, status=RunStatus.QUEUED)
    running = run_create(agent=team["marcus"], user=ana, status=RunStatus.RUNNING)
    done = run_create(agent=team["marcus"], user=ana, status=RunStatus.SUCCEEDED)

    page = client.get(URL).content.decode()

    assert reverse("agents:run_cancel", args=[queued.pk]) in page
    assert reverse("agents:run_cancel", args=[running.pk]) in page
    assert reverse("agents:run_cancel", args=[done.pk]) not in page


def test_it_sends_anonymous_visitors_to_log_in(client):
    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
