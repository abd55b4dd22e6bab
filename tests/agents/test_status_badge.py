"""A run that succeeded but failed its quality check is never shown as a plain green "succeeded".

Every page that shows a run's status (run list, run page and its live fragment, workflow page,
dashboard) and the API say "succeeded · check failed" with the check's reason; the savings of
such a run are shown as not counted, as the metrics count them (ARCHITECTURE.md, the savings rule).
"""

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from agents.models import RunStatus, Workflow
from tests.factories import agents_create, run_create, user_create

pytestmark = pytest.mark.django_db
REASON = "no Dockerfile FROM line"
AMBER = 'class="status status-succeeded check-failed"'
PLAIN_GREEN = re.compile(r'class="status status-succeeded"')


@pytest.fixture
def ana(client):
    user = user_create("ana")
    client.force_login(user)
    return user


@pytest.fixture
def failed_check(ana):
    team = agents_create()
    workflow = Workflow.objects.create(feature="A health check endpoint", created_by=ana, status=RunStatus.SUCCEEDED)
    return run_create(
        agent=team["jordan"], user=ana, status=RunStatus.SUCCEEDED, workflow=workflow,
        provider_name="ollama-local", model_name="gemma3:270m", cost_usd=Decimal(0),
        baseline_cost_usd=Decimal("0.0031"), quality_ok=False, quality_detail=REASON,
    )  # fmt: skip


def badges(page: str) -> list[str]:
    return re.findall(r'<span class="status [^"]*"[^>]*>[^<]*</span>', page)


def assert_amber_with_reason(page: str) -> None:
    run_badges = [badge for badge in badges(page) if "succeeded" in badge]
    assert run_badges, page
    for badge in run_badges:
        assert AMBER in badge
        assert ">succeeded · check failed</span>" in badge
        assert f'title="Quality check failed: {REASON}"' in badge
    assert f'<span class="check-reason">{REASON}</span>' in page


def test_the_run_list_shows_a_failed_check_in_amber_with_its_reason(client, failed_check):
    page = client.get(reverse("agents:run_list")).content.decode()

    assert_amber_with_reason(page)
    assert not PLAIN_GREEN.search(page)
    assert "not counted" in page  # its savings, as the metrics count them


def test_the_run_page_and_its_live_fragment_show_a_failed_check_in_amber(client, failed_check):
    for url in (
        reverse("agents:run_detail", args=[failed_check.pk]),
        reverse("agents:run_live", args=[failed_check.pk]),
    ):
        page = client.get(url).content.decode()

        assert_amber_with_reason(page)
        assert not PLAIN_GREEN.search(page)
        assert "not counted" in page
        assert "$0.0031" in page  # what it would have saved, said as such


def test_the_workflow_page_shows_its_run_with_a_failed_check_in_amber(client, failed_check):
    page = client.get(reverse("agents:workflow_detail", args=[failed_check.workflow_id])).content.decode()

    run_rows = page[page.index('<table class="runs">') :]
    assert_amber_with_reason(run_rows)
    assert not PLAIN_GREEN.search(run_rows)


def test_the_dashboard_shows_a_recent_run_with_a_failed_check_in_amber(client, failed_check):
    page = client.get(reverse("home")).content.decode()

    recent_runs = page[page.index('<table class="runs">') : page.index("</table>", page.index('<table class="runs">'))]
    assert_amber_with_reason(recent_runs)
    assert not PLAIN_GREEN.search(recent_runs)


def test_a_run_that_passed_its_check_stays_green(client, ana):
    run = run_create(agent=agents_create()["marcus"], user=ana, status=RunStatus.SUCCEEDED, quality_ok=True)

    page = client.get(reverse("agents:run_detail", args=[run.pk])).content.decode()

    assert badges(page) == ['<span class="status status-succeeded">succeeded</span>']


def test_the_api_says_the_check_failed_beside_the_status(client, failed_check):
    for url in (reverse("api-run-detail", args=[failed_check.pk]), reverse("api-run-list")):
        body = client.get(url).json()
        run = body if "id" in body else body["results"][0]

        assert run["status"] == "succeeded"
        assert (run["status_label"], run["check_failed"]) == ("succeeded · check failed", True)
        assert run["quality_detail"] == REASON


def test_the_api_says_a_plain_success_is_one(client, ana):
    run = run_create(agent=agents_create()["marcus"], user=ana, status=RunStatus.SUCCEEDED, quality_ok=True)

    body = client.get(reverse("api-run-detail", args=[run.pk])).json()

    assert (body["status_label"], body["check_failed"]) == ("succeeded", False)


def test_the_admin_shows_a_failed_check_beside_the_status(client, failed_check):
    ana = failed_check.created_by
    ana.is_superuser = ana.is_staff = True
    ana.save()

    changelist = client.get(reverse("admin:agents_agentrun_changelist")).content.decode()
    change = client.get(reverse("admin:agents_agentrun_change", args=[failed_check.pk])).content.decode()

    assert '<td class="field-status_shown">succeeded · check failed</td>' in changelist
    assert f"Run #{failed_check.pk} {failed_check.agent_id} succeeded · check failed" in change
