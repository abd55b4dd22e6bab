"""Agent runs and workflows: submitting and cancelling.

Writes live here; reads in `agents.selectors`; executing on a worker in `agents.execution`.
Views and the API call these. A run is committed as `queued`, then (on commit) its id goes to a
worker through `agents.queue`; if the broker is down, the sweeper sends it later.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import ApiKey
from agents.execution import run_messages, workflow_finish_if_done
from agents.models import Agent, AgentRun, RunStatus, Workflow
from agents.queue import runs_enqueue
from core.errors import Conflict
from routing.limits import request_check
from routing.models import capability_validator
from routing.tokens import estimate_prompt_tokens

MAX_TOKENS_LIMIT = 1_000_000


# -- submit ---------------------------------------------------------------------------------


def _agent(value: Agent | str) -> Agent:
    """The enabled agent named by slug (or given), or a ValidationError keyed `agent`."""
    if isinstance(value, Agent):
        agent = value
    else:
        slug = str(value or "").strip()
        if not slug:
            raise ValidationError({"agent": "Choose an agent."})
        agent = Agent.objects.filter(slug=slug).first()
        if agent is None:
            raise ValidationError({"agent": f"There is no agent named {slug!r}."})
    if not agent.enabled:
        raise ValidationError({"agent": f"{agent.name} is disabled."})
    return agent


def _check_text(text: object, *, field: str, what: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValidationError({field: f"The {what} is empty."})
    limit = settings.SWITCHYARD_MAX_PROMPT_CHARS
    if len(text) > limit:
        raise ValidationError({field: f"The {what} is too long: {len(text):,} characters, the limit is {limit:,}."})
    if "\x00" in text:
        raise ValidationError({field: f"The {what} must not contain NUL characters."})
    return text


def _check_limit(value: int | None, *, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS_LIMIT:
        raise ValidationError({field: f"Must be a whole number from 1 to {MAX_TOKENS_LIMIT:,}."})
    return value


def _check_capability(value: str) -> str:
    value = (value or "").strip()
    if value:
        try:
            capability_validator(value)
        except ValidationError as error:
            raise ValidationError({"capability": error.messages}) from None
    return value


def run_submit(
    *,
    agent: Agent | str,
    prompt: str,
    user,
    capability: str = "",
    max_tokens: int | None = None,
    max_prompt_tokens: int | None = None,
    workflow: Workflow | None = None,
    api_key: ApiKey | None = None,
) -> AgentRun:
    """Create a queued run and hand it to a worker once the transaction commits.

    Refused (ValidationError keyed by field) when the routing table cannot serve it as asked
    (`routing.limits.request_check`): an unknown capability, one only the cloud serves that this
    user may not ask for, a max_tokens no model gives, a prompt over its own max_prompt_tokens.

    `api_key`: the personal key it came with (the REST API); its calls then count against the key."""
    chosen = _agent(agent)
    run = AgentRun(
        agent=chosen,
        workflow=workflow,
        created_by=user if getattr(user, "is_authenticated", False) else None,
        api_key=api_key,
        prompt=_check_text(prompt, field="prompt", what="prompt"),
        capability=_check_capability(capability),
        max_tokens=_check_limit(max_tokens, field="max_tokens"),
        max_prompt_tokens=_check_limit(max_prompt_tokens, field="max_prompt_tokens"),
        heartbeat_at=timezone.now(),
    )
    # What the routing table cannot serve is refused now rather than failing on a worker.
    request_check(
        capability=run.capability,
        default_capability=chosen.capability,
        max_tokens=run.max_tokens,
        max_prompt_tokens=run.max_prompt_tokens,
        prompt_tokens=estimate_prompt_tokens(run_messages(run)),
        staff=getattr(user, "is_staff", False),
    )
    with transaction.atomic():
        run.save(force_insert=True)
        transaction.on_commit(lambda: runs_enqueue(run_ids=[run.pk]))
    return run


def _workflow_agents(agents: Iterable[Agent | str] | None) -> list[Agent]:
    if agents is None:
        chosen = list(Agent.objects.filter(enabled=True))
        if not chosen:
            raise ValidationError({"agents": "No agent is enabled."})
        return chosen
    if isinstance(agents, str):
        raise ValidationError({"agents": "Give a list of agent names."})
    chosen, seen, problems = [], set(), []
    for value in agents:
        try:
            agent = _agent(value)
        except ValidationError as error:
            problems.extend(error.message_dict["agent"])
            continue
        if agent.pk not in seen:
            seen.add(agent.pk)
            chosen.append(agent)
    if problems:
        raise ValidationError({"agents": problems})
    if not chosen:
        raise ValidationError({"agents": "Choose at least one agent."})
    return chosen


def workflow_prompt(*, agent: Agent, feature: str) -> str:
    """The task one agent gets for a feature: its workflow prompt with {feature} filled in."""
    template = agent.workflow_prompt or "{feature}"
    if "{feature}" not in template:
        template = f"{template}\n\n{{feature}}"
    # replace, not format: prompts are full of braces (code, JSON) that are not placeholders.
    return template.replace("{feature}", feature)


def workflow_submit(
    *, feature: str, user, agents: list[Agent | str] | None = None, api_key: ApiKey | None = None
) -> Workflow:
    """One run per chosen agent (all enabled agents by default), created together; each with the
    personal key it came with (`run_submit`)."""
    feature = _check_text(feature, field="feature", what="feature description")
    chosen = _workflow_agents(agents)
    prompts = [(agent, workflow_prompt(agent=agent, feature=feature)) for agent in chosen]
    for agent, prompt in prompts:
        _check_text(prompt, field="feature", what=f"task built for {agent.name}")
        messages = run_messages(AgentRun(agent=agent, prompt=prompt))
        try:
            request_check(
                capability="",
                default_capability=agent.capability,
                max_tokens=None,
                max_prompt_tokens=None,
                prompt_tokens=estimate_prompt_tokens(messages),
                staff=getattr(user, "is_staff", False),
            )
        except ValidationError as error:
            raise ValidationError({"feature": [f"{agent.name}: {message}" for message in error.messages]}) from None
    owner = user if getattr(user, "is_authenticated", False) else None
    now = timezone.now()
    with transaction.atomic():
        workflow = Workflow.objects.create(feature=feature, created_by=owner)
        runs = AgentRun.objects.bulk_create(
            AgentRun(agent=agent, workflow=workflow, created_by=owner, api_key=api_key, prompt=prompt, heartbeat_at=now)
            for agent, prompt in prompts
        )
        run_ids = [run.pk for run in runs]
        transaction.on_commit(lambda: runs_enqueue(run_ids=run_ids))
    return workflow


# -- cancel ---------------------------------------------------------------------------------


def _may_cancel(user, owner_id: int | None) -> bool:
    return getattr(user, "is_staff", False) or (owner_id is not None and owner_id == user.pk)


def _cancel_unfinished(runs: QuerySet[AgentRun], *, user) -> int:
    """Queued runs never run; running ones are marked cancelled and their late results discarded
    (a worker stores a result only while the run is still `running` under its claim)."""
    who = getattr(user, "username", "") or "someone"
    return runs.filter(status__in=(RunStatus.QUEUED, RunStatus.RUNNING)).update(
        status=RunStatus.CANCELLED, finished_at=timezone.now(), error=f"Cancelled by {who}."
    )


def run_cancel(*, run: AgentRun, user) -> AgentRun:
    """Queued: it never runs. Running: marked cancelled, its late result discarded. Already
    cancelled: nothing to do (a repeated cancel is not an error). Succeeded or failed: a Conflict."""
    if not _may_cancel(user, run.created_by_id):
        raise PermissionDenied("You can only cancel your own runs.")
    cancelled = _cancel_unfinished(AgentRun.objects.filter(pk=run.pk), user=user)
    run.refresh_from_db()
    if not cancelled and run.status != RunStatus.CANCELLED:
        raise Conflict(
            f"Run #{run.pk} has already finished ({run.get_status_display()}).", state={"status": run.status}
        )
    if run.workflow_id:
        workflow_finish_if_done(workflow_id=run.workflow_id)
    return run


def workflow_cancel(*, workflow: Workflow, user) -> Workflow:
    """Cancel every run of the workflow that has not finished; finished runs keep their results.
    The workflow then ends with the totals of what did run. Nothing left to cancel is fine when
    some run was cancelled (a repeated cancel), a Conflict when every run finished by itself."""
    if not _may_cancel(user, workflow.created_by_id):
        raise PermissionDenied("You can only cancel your own workflows.")
    runs = AgentRun.objects.filter(workflow=workflow)
    cancelled = _cancel_unfinished(runs, user=user)
    if not cancelled and not runs.filter(status=RunStatus.CANCELLED).exists():
        workflow.refresh_from_db()
        raise Conflict(
            f"Workflow #{workflow.pk} has no run left to cancel ({workflow.get_status_display()}).",
            state={"status": workflow.status},
        )
    workflow_finish_if_done(workflow_id=workflow.pk)
    workflow.refresh_from_db()
    return workflow
