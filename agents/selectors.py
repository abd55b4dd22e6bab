"""Reads for runs and workflows, with the one visibility rule: users see their own, staff see all."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from agents.models import Agent, AgentRun, Workflow
from routing.models import LedgerEntry


def _can_see_all(user) -> bool:
    return bool(getattr(user, "is_staff", False))


def run_visible(*, user) -> QuerySet[AgentRun]:
    runs = AgentRun.objects.select_related("agent", "created_by", "workflow")
    if _can_see_all(user):
        return runs
    if not getattr(user, "is_authenticated", False):
        return runs.none()
    return runs.filter(created_by=user)


def run_list(
    *,
    user,
    agent: Agent | str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    user_filter=None,
    workflow: int | None = None,
) -> QuerySet[AgentRun]:
    """Runs the user may see, newest first; `user_filter` (a user or username) narrows staff views."""
    runs = _filtered(run_visible(user=user), status=status, since=since, user_filter=user_filter)
    if agent:
        runs = runs.filter(agent__slug=agent.slug if isinstance(agent, Agent) else agent)
    if workflow is not None:
        runs = runs.filter(workflow_id=workflow)
    return runs


def _filtered(items: QuerySet, *, status: str | None, since: datetime | None, user_filter) -> QuerySet:
    if status:
        items = items.filter(status=status)
    if since is not None:
        items = items.filter(created_at__gte=since)
    if user_filter:
        if isinstance(user_filter, str):
            items = items.filter(created_by__username=user_filter)
        else:
            items = items.filter(created_by=user_filter)
    return items


def run_get(*, user, pk: int) -> AgentRun | None:
    return run_visible(user=user).select_related("api_key").filter(pk=pk).first()


def run_attempts(*, run: AgentRun) -> QuerySet[LedgerEntry]:
    """The run's ledger rows (one per attempt at a provider), in the order they were made."""
    return LedgerEntry.objects.filter(run_id=run.pk).select_related("provider").order_by("created_at", "id")


def workflow_visible(*, user) -> QuerySet[Workflow]:
    workflows = Workflow.objects.select_related("created_by")
    if _can_see_all(user):
        return workflows
    if not getattr(user, "is_authenticated", False):
        return workflows.none()
    return workflows.filter(created_by=user)


def workflow_list(
    *, user, status: str | None = None, since: datetime | None = None, user_filter=None
) -> QuerySet[Workflow]:
    """Workflows the user may see, newest first; `user_filter` (a user or username) as for runs."""
    return _filtered(workflow_visible(user=user), status=status, since=since, user_filter=user_filter)


def workflow_get(*, user, pk: int) -> Workflow | None:
    return workflow_visible(user=user).filter(pk=pk).first()


def workflow_runs(*, workflow: Workflow) -> QuerySet[AgentRun]:
    return workflow.runs.select_related("agent").order_by("agent__position", "agent__slug", "id")
