"""agents.services: submitting runs and workflows and cancelling them; closing a finished workflow."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from agents import execution, services
from agents.models import AgentRun, RunStatus, Workflow
from core.errors import Conflict


def submit(user, agent="marcus", prompt="Write a FastAPI health endpoint.", **fields) -> AgentRun:
    return services.run_submit(agent=agent, prompt=prompt, user=user, **fields)


def errors_of(excinfo: pytest.ExceptionInfo[ValidationError]) -> dict[str, list[str]]:
    return excinfo.value.message_dict


# -- run_submit -----------------------------------------------------------------------------


def test_it_creates_a_queued_run_and_enqueues_only_its_id_after_commit(
    agents, providers, user, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = submit(user, capability="code_generation", max_tokens=256, max_prompt_tokens=4000)
    assert enqueued == []  # nothing reaches a worker before the row is committed
    for callback in callbacks:
        callback()
    assert enqueued == [run.pk]
    run.refresh_from_db()
    assert (run.status, run.agent.slug, run.created_by, run.capability) == ("queued", "marcus", user, "code_generation")
    assert (run.max_tokens, run.max_prompt_tokens, run.deliveries) == (256, 4000, 0)
    assert run.heartbeat_at is not None


def test_it_accepts_an_agent_object_as_well_as_a_slug(agents, user, enqueued):
    assert submit(user, agent=agents["emily"]).agent == agents["emily"]


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"agent": "nobody"}, "agent", "There is no agent named 'nobody'."),
        ({"agent": ""}, "agent", "Choose an agent."),
        ({"prompt": ""}, "prompt", "The prompt is empty."),
        ({"prompt": "   \n\t"}, "prompt", "The prompt is empty."),
        ({"prompt": "a\x00b"}, "prompt", "The prompt must not contain NUL characters."),
        ({"capability": "Code Gen"}, "capability", "A capability is a lowercase word like code_generation."),
        ({"max_tokens": 0}, "max_tokens", "Must be a whole number from 1 to 1,000,000."),
        ({"max_prompt_tokens": -5}, "max_prompt_tokens", "Must be a whole number from 1 to 1,000,000."),
    ],
)
def test_it_refuses_bad_input_with_a_message_for_the_field_and_creates_nothing(
    agents, user, enqueued, fields, field, message
):
    with pytest.raises(ValidationError) as excinfo:
        submit(user, **fields)
    assert errors_of(excinfo) == {field: [message]}
    assert not AgentRun.objects.exists()


def test_it_refuses_a_disabled_agent(agents, user, enqueued):
    agents["jordan"].enabled = False
    agents["jordan"].save()
    with pytest.raises(ValidationError) as excinfo:
        submit(user, agent="jordan")
    assert errors_of(excinfo) == {"agent": ["Jordan is disabled."]}


def test_it_refuses_a_prompt_over_the_configured_limit(agents, user, enqueued, settings):
    settings.SWITCHYARD_MAX_PROMPT_CHARS = 10
    submit(user, prompt="x" * 10)
    with pytest.raises(ValidationError) as excinfo:
        submit(user, prompt="x" * 11)
    assert errors_of(excinfo) == {"prompt": ["The prompt is too long: 11 characters, the limit is 10."]}
    assert AgentRun.objects.count() == 1


def test_it_leaves_the_run_queued_for_the_sweeper_when_the_broker_is_down(
    agents, user, monkeypatch, django_capture_on_commit_callbacks
):
    def broker_down(*, run_id: int) -> None:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr("agents.queue.run_enqueue", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        run = submit(user)
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED


# -- workflow_submit ------------------------------------------------------------------------


def test_it_fans_a_feature_out_to_every_enabled_agent_by_default(
    agents, user, enqueued, django_capture_on_commit_callbacks
):
    agents["alex"].enabled = False
    agents["alex"].save()
    with django_capture_on_commit_callbacks(execute=True):
        workflow = services.workflow_submit(feature="Password reset by email", user=user)
    runs = list(workflow.runs.order_by("agent__position"))
    assert [run.agent.slug for run in runs] == ["marcus", "emily", "jordan"]
    assert runs[0].prompt.startswith("Write the FastAPI backend for this feature: Password reset by email\n\n")
    assert all(run.status == RunStatus.QUEUED and run.created_by == user for run in runs)
    assert sorted(enqueued) == sorted(run.pk for run in runs)
    assert (workflow.status, workflow.created_by, workflow.finished_at) == ("queued", user, None)


def test_it_runs_only_the_chosen_agents_once_each(agents, user, enqueued):
    workflow = services.workflow_submit(feature="Dark mode", user=user, agents=["emily", "jordan", "emily"])
    assert sorted(workflow.runs.values_list("agent__slug", flat=True)) == ["emily", "jordan"]


def test_it_keeps_braces_in_the_feature_as_they_are(agents, user, enqueued):
    workflow = services.workflow_submit(feature='Return {"ok": true} from /health', user=user, agents=["marcus"])
    prompt = workflow.runs.get().prompt
    assert prompt.startswith('Write the FastAPI backend for this feature: Return {"ok": true} from /health\n')


def test_it_uses_the_feature_itself_for_an_agent_without_a_workflow_prompt(agents, user, enqueued):
    agents["marcus"].workflow_prompt = ""
    agents["marcus"].save()
    workflow = services.workflow_submit(feature="Rate limiting", user=user, agents=["marcus"])
    assert workflow.runs.get().prompt == "Rate limiting"


@pytest.mark.parametrize(
    ("agents_given", "message"),
    [
        ([], "Choose at least one agent."),
        (["marcus", "ghost"], "There is no agent named 'ghost'."),
        ("marcus", "Give a list of agent names."),
    ],
)
def test_it_refuses_a_workflow_without_valid_agents_and_creates_nothing(agents, user, enqueued, agents_given, message):
    with pytest.raises(ValidationError) as excinfo:
        services.workflow_submit(feature="Search", user=user, agents=agents_given)
    assert errors_of(excinfo) == {"agents": [message]}
    assert not Workflow.objects.exists()
    assert not AgentRun.objects.exists()


def test_it_refuses_a_workflow_when_no_agent_is_enabled(agents, user, enqueued):
    for agent in agents.values():
        agent.enabled = False
        agent.save()
    with pytest.raises(ValidationError) as excinfo:
        services.workflow_submit(feature="Search", user=user)
    assert errors_of(excinfo) == {"agents": ["No agent is enabled."]}


def test_it_refuses_an_empty_or_oversized_feature(agents, user, enqueued, settings):
    with pytest.raises(ValidationError) as excinfo:
        services.workflow_submit(feature=" ", user=user)
    assert errors_of(excinfo) == {"feature": ["The feature description is empty."]}
    settings.SWITCHYARD_MAX_PROMPT_CHARS = 50
    with pytest.raises(ValidationError) as excinfo:
        services.workflow_submit(feature="y" * 40, user=user, agents=["marcus"])
    assert "too long" in errors_of(excinfo)["feature"][0]  # the built prompt adds the agent's words
    assert not Workflow.objects.exists()


# -- run_cancel -----------------------------------------------------------------------------


def test_it_cancels_a_queued_run_so_it_never_runs(agents, user, enqueued):
    run = services.run_cancel(run=submit(user), user=user)
    assert run.status == RunStatus.CANCELLED
    assert run.finished_at is not None
    assert run.error == "Cancelled by dana."
    assert execution.run_execute(run_id=run.pk).outcome == "skipped"
    run.refresh_from_db()
    assert (run.status, run.deliveries) == (RunStatus.CANCELLED, 0)


def test_it_cancels_a_running_run(agents, user, enqueued):
    run = submit(user)
    AgentRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, claim_token="t" * 32)
    run.refresh_from_db()
    assert services.run_cancel(run=run, user=user).status == RunStatus.CANCELLED


@pytest.mark.parametrize("status", [RunStatus.SUCCEEDED, RunStatus.FAILED])
def test_it_refuses_to_cancel_a_finished_run_with_a_conflict_naming_its_status(agents, user, enqueued, status):
    run = submit(user)
    AgentRun.objects.filter(pk=run.pk).update(status=status)
    with pytest.raises(Conflict) as excinfo:
        services.run_cancel(run=run, user=user)
    assert (excinfo.value.message, excinfo.value.state) == (
        f"Run #{run.pk} has already finished ({status}).",
        {"status": status},
    )
    run.refresh_from_db()
    assert run.status == status


def test_cancelling_a_cancelled_run_again_changes_nothing(agents, user, staff_user, enqueued):
    run = services.run_cancel(run=submit(user), user=user)
    again = services.run_cancel(run=run, user=staff_user)
    assert (again.status, again.finished_at) == (RunStatus.CANCELLED, run.finished_at)
    assert again.error == "Cancelled by dana."


def test_it_lets_only_the_owner_or_staff_cancel(agents, user, staff_user, django_user_model, enqueued):
    run = submit(user)
    stranger = django_user_model.objects.create_user("sam", password="x-long-password")
    with pytest.raises(PermissionDenied):
        services.run_cancel(run=run, user=stranger)
    assert services.run_cancel(run=run, user=staff_user).error == "Cancelled by olivia."


# -- workflow_cancel ------------------------------------------------------------------------


def test_it_cancels_a_workflows_unfinished_runs_and_keeps_the_finished_ones(agents, user, enqueued):
    workflow = services.workflow_submit(feature="Audit log", user=user, agents=["marcus", "emily", "alex"])
    marcus, emily, alex = workflow.runs.order_by("agent__position")
    finished = timezone.now()
    costs = {"cost_usd": Decimal("0.0010"), "baseline_cost_usd": Decimal("0.0090")}
    AgentRun.objects.filter(pk=marcus.pk).update(status=RunStatus.SUCCEEDED, finished_at=finished, **costs)
    AgentRun.objects.filter(pk=emily.pk).update(status=RunStatus.RUNNING, claim_token="t" * 32)

    workflow = services.workflow_cancel(workflow=workflow, user=user)

    statuses = dict(workflow.runs.values_list("agent__slug", "status"))
    assert statuses == {"marcus": "succeeded", "emily": "cancelled", "alex": "cancelled"}
    cancelled_errors = workflow.runs.filter(status=RunStatus.CANCELLED).values_list("error", flat=True)
    assert set(cancelled_errors) == {"Cancelled by dana."}
    # The workflow ends at once, with the totals of what ran (some cancelled, none failed: succeeded).
    assert workflow.finished_at is not None
    assert (workflow.status, workflow.cost_usd, workflow.baseline_cost_usd) == (
        RunStatus.SUCCEEDED,
        Decimal("0.0010"),
        Decimal("0.0090"),
    )
    assert execution.run_execute(run_id=alex.pk).outcome == "skipped"  # a queued run never runs


def test_a_workflow_with_every_run_cancelled_ends_cancelled(agents, user, enqueued):
    workflow = services.workflow_submit(feature="Audit log", user=user, agents=["marcus", "emily"])
    assert services.workflow_cancel(workflow=workflow, user=user).status == RunStatus.CANCELLED


def test_it_refuses_to_cancel_a_workflow_with_nothing_left_to_cancel(agents, user, enqueued):
    workflow = services.workflow_submit(feature="Audit log", user=user, agents=["marcus"])
    workflow.runs.update(status=RunStatus.SUCCEEDED, finished_at=timezone.now())
    execution.workflow_finish_if_done(workflow_id=workflow.pk)
    with pytest.raises(Conflict) as excinfo:
        services.workflow_cancel(workflow=workflow, user=user)
    assert (excinfo.value.message, excinfo.value.state) == (
        f"Workflow #{workflow.pk} has no run left to cancel (succeeded).",
        {"status": "succeeded"},
    )
    assert workflow.runs.get().status == RunStatus.SUCCEEDED


def test_cancelling_a_cancelled_workflow_again_changes_nothing(agents, user, enqueued):
    workflow = services.workflow_cancel(
        workflow=services.workflow_submit(feature="Audit log", user=user, agents=["marcus"]), user=user
    )
    again = services.workflow_cancel(workflow=workflow, user=user)
    assert (again.status, again.finished_at) == (RunStatus.CANCELLED, workflow.finished_at)


def test_it_lets_only_the_owner_or_staff_cancel_a_workflow(agents, user, staff_user, django_user_model, enqueued):
    workflow = services.workflow_submit(feature="Audit log", user=user, agents=["marcus"])
    stranger = django_user_model.objects.create_user("sam", password="x-long-password")
    with pytest.raises(PermissionDenied):
        services.workflow_cancel(workflow=workflow, user=stranger)
    assert workflow.runs.get().status == RunStatus.QUEUED
    assert services.workflow_cancel(workflow=workflow, user=staff_user).status == RunStatus.CANCELLED


# -- workflow_finish_if_done ----------------------------------------------------------------


def test_it_closes_a_workflow_when_its_last_run_ends_with_totals_and_wall_time(agents, user, enqueued):
    workflow = services.workflow_submit(feature="Audit log", user=user, agents=["marcus", "emily"])
    first, second = workflow.runs.order_by("agent__position")
    finished = timezone.now()
    first_fields = {"cost_usd": Decimal("0.0012"), "baseline_cost_usd": Decimal("0.0100"), "finished_at": finished}
    AgentRun.objects.filter(pk=first.pk).update(status=RunStatus.SUCCEEDED, **first_fields)
    assert execution.workflow_finish_if_done(workflow_id=workflow.pk) is False  # emily is still queued
    second_fields = {"cost_usd": Decimal(0), "baseline_cost_usd": Decimal("0.0050"), "finished_at": finished}
    AgentRun.objects.filter(pk=second.pk).update(status=RunStatus.SUCCEEDED, **second_fields)
    assert execution.workflow_finish_if_done(workflow_id=workflow.pk) is True
    workflow.refresh_from_db()
    assert workflow.status == RunStatus.SUCCEEDED
    assert (workflow.cost_usd, workflow.baseline_cost_usd) == (Decimal("0.0012"), Decimal("0.0150"))
    assert workflow.savings_usd == Decimal("0.0138")
    assert workflow.finished_at == finished
    assert workflow.wall_time_s == (finished - workflow.created_at).total_seconds()
    assert execution.workflow_finish_if_done(workflow_id=workflow.pk) is False  # once only


def test_a_workflow_whose_run_failed_its_check_saves_nothing_by_that_run_and_says_so(agents, user, enqueued):
    from django.template import Context, Template

    workflow = services.workflow_submit(feature="Audit log", user=user, agents=["marcus", "emily"])
    passed, failed_check = workflow.runs.order_by("agent__position")
    AgentRun.objects.filter(pk=passed.pk).update(
        status=RunStatus.SUCCEEDED, quality_ok=True, cost_usd=Decimal(0), baseline_cost_usd=Decimal("0.0100")
    )
    AgentRun.objects.filter(pk=failed_check.pk).update(
        status=RunStatus.SUCCEEDED, quality_ok=False, cost_usd=Decimal(0), baseline_cost_usd=Decimal("0.0050")
    )
    execution.workflow_finish_if_done(workflow_id=workflow.pk)
    workflow.refresh_from_db()

    # The savings rule: the answer that failed its check saves nothing; the baseline stays what it was.
    assert (workflow.baseline_cost_usd, workflow.savings_usd) == (Decimal("0.0150"), Decimal("0.0100"))
    assert (workflow.checks_failed, workflow.status_label) == (1, "succeeded · 1 check failed")
    badge = Template("{% load run_status %}{% status_badge workflow %}").render(Context({"workflow": workflow}))
    assert "succeeded · 1 check failed" in badge and "check-failed" in badge


def test_it_marks_a_workflow_failed_when_a_run_failed_and_cancelled_when_all_were(agents, user, enqueued):
    failed = services.workflow_submit(feature="A", user=user, agents=["marcus", "emily"])
    failed.runs.filter(agent__slug="marcus").update(status=RunStatus.FAILED)
    failed.runs.filter(agent__slug="emily").update(status=RunStatus.SUCCEEDED, cost_usd=Decimal("0.5"))
    execution.workflow_finish_if_done(workflow_id=failed.pk)
    failed.refresh_from_db()
    assert (failed.status, failed.cost_usd, failed.baseline_cost_usd) == ("failed", Decimal("0.5"), Decimal(0))

    cancelled = services.workflow_submit(feature="B", user=user, agents=["marcus", "emily"])
    for run in cancelled.runs.all():
        services.run_cancel(run=run, user=user)  # the last cancel closes the workflow
    cancelled.refresh_from_db()
    assert cancelled.status == RunStatus.CANCELLED
    assert cancelled.finished_at is not None
