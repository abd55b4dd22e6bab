"""Rows the page tests need, made directly in the database (the services have their own tests)."""

from datetime import datetime
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.utils import timezone

from agents.models import Agent, AgentRun, QualityCheck, RunStatus, Workflow
from routing.models import CallOutcome, LedgerEntry, Provider

TEAM = (
    ("marcus", "Marcus", "backend engineer", QualityCheck.PYTHON_CODE),
    ("emily", "Emily", "frontend engineer", QualityCheck.REACT_COMPONENT),
    ("alex", "Alex", "QA engineer", QualityCheck.PYTHON_CODE),
    ("jordan", "Jordan", "DevOps engineer", QualityCheck.DOCKERFILE),
)


def make_user(username: str = "ana", *, staff: bool = False, password: str | None = None):
    """A user; without a password (tests log in with force_login) to skip the slow hashing."""
    user = get_user_model()(username=username, is_staff=staff)
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    user.save()
    return user


def make_team() -> dict[str, Agent]:
    agents = {}
    for position, (slug, name, role, check) in enumerate(TEAM):
        agents[slug], _ = Agent.objects.get_or_create(
            slug=slug,
            defaults={
                "name": name,
                "role": role,
                "capability": "code_generation",
                "system_prompt": f"You are {name}, a {role}.",
                "workflow_prompt": f"As the {role}, do your part of: {{feature}}",
                "quality_check": check,
                "position": position,
            },
        )
    return agents


def make_provider(name: str = "ollama-local", *, is_local: bool = True, priority: int = 1, **fields) -> Provider:
    return Provider.objects.create(
        name=name,
        kind="ollama" if is_local else "openai",
        base_url="http://127.0.0.1:11434" if is_local else "https://api.openai.com",
        is_local=is_local,
        priority=priority,
        default_model="gemma3:270m" if is_local else "gpt-4o-mini",
        **fields,
    )


def make_run(
    *, agent: Agent, user, status: str = RunStatus.QUEUED, workflow: Workflow | None = None, **fields
) -> AgentRun:
    fields.setdefault("prompt", "Write a function that adds two numbers.")
    run = AgentRun.objects.create(agent=agent, created_by=user, status=status, workflow=workflow, **fields)
    if "created_at" in fields:  # auto_now_add ignores the value given to create()
        AgentRun.objects.filter(pk=run.pk).update(created_at=fields["created_at"])
        run.refresh_from_db()
    return run


def make_attempt(
    *,
    run: AgentRun,
    provider: Provider,
    outcome: str = CallOutcome.SUCCESS,
    cost: str | None = "0",
    baseline: str | None = "0.0021",
    created_at: datetime | None = None,
    **fields,
) -> LedgerEntry:
    return LedgerEntry.objects.create(
        created_at=created_at or timezone.now(),
        provider=provider,
        model_name=provider.default_model,
        is_local=provider.is_local,
        outcome=outcome,
        cost_usd=None if cost is None else Decimal(cost),
        baseline_cost_usd=None if baseline is None else Decimal(baseline),
        agent=run.agent.slug,
        user=run.created_by,
        run_id=run.pk,
        **fields,
    )
