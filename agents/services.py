"""Agent runs and workflows: submit, cancel, execute on a worker, sweep up what was lost.

Writes live here; reads in `agents.selectors`. Views, the API and Celery tasks call these.

Exactly once, without trusting the broker to deliver exactly once:

- `run_submit` commits the run as `queued`, then (on commit) enqueues its id.
- `run_execute` claims the run with one conditional UPDATE: `queued -> running`, or takes over a
  `running` run whose lease expired (its worker's heartbeat stopped: the worker was killed). The
  claim writes a fresh `claim_token`; while the provider call runs, a heartbeat thread renews
  `heartbeat_at` every lease/3 seconds, so a duplicate delivery during a live run finds the lease
  held and only checks back later (the task retries after the lease would expire).
- The result is written by `on_success`, inside the router's transaction that inserts the
  successful ledger row, with `WHERE status = running AND claim_token = <ours>`: a worker killed
  before that commit leaves neither row nor result (the redelivered run calls again); after it,
  both. A run cancelled (or taken over) meanwhile keeps its status; the ledger keeps the real call.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet, Sum
from django.utils import timezone

from agents import quality
from agents.models import FINISHED_STATUSES, Agent, AgentRun, RunStatus, Workflow
from routing.models import capability_validator
from routing.router import NoProviderAvailable, RouteRequest, RouteResult, route

logger = logging.getLogger(__name__)

MAX_DELIVERIES = 3  # a run whose worker was lost this many times is failed, not retried forever
MAX_TOKENS_LIMIT = 1_000_000
SWEEP_BATCH = 500
TIME_LIMIT_MARGIN_S = 30  # the hard limit beyond the soft one; the sweeper waits this much more


def _lease() -> timedelta:
    return timedelta(seconds=getattr(settings, "SWITCHYARD_RUN_LEASE_SECONDS", 30))


def _requeue_after() -> timedelta:
    return timedelta(seconds=getattr(settings, "SWITCHYARD_REQUEUE_AFTER_SECONDS", 300))


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


def _enqueue(run_ids: list[int]) -> None:
    """Send each run to a worker; a broker that is down leaves them queued for the sweeper."""
    from agents.tasks import run_execute  # the tasks module imports this one

    for run_id in run_ids:
        try:
            run_execute.delay(run_id)
        except Exception:  # the run is committed: the sweeper re-enqueues it later
            logger.exception("could not enqueue run %s; the sweeper will retry", run_id)


def run_submit(
    *,
    agent: Agent | str,
    prompt: str,
    user,
    capability: str = "",
    max_tokens: int | None = None,
    max_prompt_tokens: int | None = None,
    workflow: Workflow | None = None,
) -> AgentRun:
    """Create a queued run and hand it to a worker once the transaction commits."""
    chosen = _agent(agent)
    run = AgentRun(
        agent=chosen,
        workflow=workflow,
        created_by=user if getattr(user, "is_authenticated", False) else None,
        prompt=_check_text(prompt, field="prompt", what="prompt"),
        capability=_check_capability(capability),
        max_tokens=_check_limit(max_tokens, field="max_tokens"),
        max_prompt_tokens=_check_limit(max_prompt_tokens, field="max_prompt_tokens"),
        heartbeat_at=timezone.now(),
    )
    with transaction.atomic():
        run.save(force_insert=True)
        transaction.on_commit(lambda: _enqueue([run.pk]))
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


def workflow_prompt(agent: Agent, feature: str) -> str:
    """The task one agent gets for a feature: its workflow prompt with {feature} filled in."""
    template = agent.workflow_prompt or "{feature}"
    if "{feature}" not in template:
        template = f"{template}\n\n{{feature}}"
    # replace, not format: prompts are full of braces (code, JSON) that are not placeholders.
    return template.replace("{feature}", feature)


def workflow_submit(*, feature: str, user, agents: list[Agent | str] | None = None) -> Workflow:
    """One run per chosen agent (all enabled agents by default), created together."""
    feature = _check_text(feature, field="feature", what="feature description")
    chosen = _workflow_agents(agents)
    prompts = [(agent, workflow_prompt(agent, feature)) for agent in chosen]
    for agent, prompt in prompts:
        _check_text(prompt, field="feature", what=f"task built for {agent.name}")
    owner = user if getattr(user, "is_authenticated", False) else None
    now = timezone.now()
    with transaction.atomic():
        workflow = Workflow.objects.create(feature=feature, created_by=owner)
        runs = AgentRun.objects.bulk_create(
            AgentRun(agent=agent, workflow=workflow, created_by=owner, prompt=prompt, heartbeat_at=now)
            for agent, prompt in prompts
        )
        run_ids = [run.pk for run in runs]
        transaction.on_commit(lambda: _enqueue(run_ids))
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
    """Queued: it never runs. Running: marked cancelled, its late result discarded. Finished: refused."""
    if not _may_cancel(user, run.created_by_id):
        raise PermissionDenied("You can only cancel your own runs.")
    cancelled = _cancel_unfinished(AgentRun.objects.filter(pk=run.pk), user=user)
    run.refresh_from_db()
    if not cancelled:
        raise ValidationError({"status": f"Run #{run.pk} has already finished ({run.get_status_display()})."})
    if run.workflow_id:
        workflow_finish_if_done(workflow_id=run.workflow_id)
    return run


def workflow_cancel(*, workflow: Workflow, user) -> Workflow:
    """Cancel every run of the workflow that has not finished; finished runs keep their results.
    The workflow then ends with the totals of what did run. Refused when nothing is left to cancel."""
    if not _may_cancel(user, workflow.created_by_id):
        raise PermissionDenied("You can only cancel your own workflows.")
    cancelled = _cancel_unfinished(AgentRun.objects.filter(workflow=workflow), user=user)
    if not cancelled:
        workflow.refresh_from_db()
        raise ValidationError(
            {"status": f"Workflow #{workflow.pk} has no run left to cancel ({workflow.get_status_display()})."}
        )
    workflow_finish_if_done(workflow_id=workflow.pk)
    workflow.refresh_from_db()
    return workflow


# -- execute (on a worker) ------------------------------------------------------------------


@dataclass(frozen=True)
class Execution:
    """What `run_execute` did; `retry_in` asks the task to check back (another worker holds the lease)."""

    outcome: str  # succeeded, failed, discarded, skipped, busy
    retry_in: float | None = None


class _Heartbeats:
    """One thread per process renews the lease of every run the process is executing.

    While the provider call blocks, this thread writes `heartbeat_at` every lease/3 seconds. One
    thread for the process rather than one per run keeps a thread start off every run's path; a
    forked pool process starts its own on first use (threads do not survive fork).
    """

    TICK_S = 0.2

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: dict[int, tuple[str, float]] = {}  # run id -> (claim token, last beat, monotonic)
        self.pid: int | None = None

    @contextmanager
    def hold(self, run_id: int, token: str) -> Iterator[None]:
        with self.lock:
            self.held[run_id] = (token, time.monotonic())
            if self.pid != os.getpid():
                self.pid = os.getpid()
                threading.Thread(target=self._run, name="run-heartbeats", daemon=True).start()
        try:
            yield
        finally:
            with self.lock:
                self.held.pop(run_id, None)

    def _run(self) -> None:
        while True:
            time.sleep(self.TICK_S)
            self.beat()

    def beat(self) -> None:
        interval = _lease().total_seconds() / 3
        now = time.monotonic()
        with self.lock:
            due = [(run_id, token) for run_id, (token, last) in self.held.items() if now - last >= interval]
            for run_id, token in due:
                self.held[run_id] = (token, now)
        if not due:
            return
        try:
            ours = Q()
            for run_id, token in due:
                ours |= Q(pk=run_id, claim_token=token)
            AgentRun.objects.filter(ours, status=RunStatus.RUNNING).update(heartbeat_at=timezone.now())
        except Exception:  # a missed beat only shortens the lease; never kill the runs over it
            logger.exception("could not renew the lease of runs %s", [run_id for run_id, _ in due])
        finally:
            connection.close()  # this thread's own connection; opened again at the next beat


heartbeats = _Heartbeats()


def _claim(run_id: int, token: str) -> bool:
    now = timezone.now()
    claimable = Q(status=RunStatus.QUEUED) | Q(status=RunStatus.RUNNING, heartbeat_at__lt=now - _lease())
    return bool(
        AgentRun.objects.filter(claimable, pk=run_id).update(
            status=RunStatus.RUNNING,
            claim_token=token,
            started_at=now,
            heartbeat_at=now,
            deliveries=F("deliveries") + 1,
        )
    )


def _finish(run: AgentRun, token: str, *, status: str, error: str = "", **fields) -> bool:
    """Record the end of our claim; False when the run was cancelled or taken over meanwhile."""
    done = AgentRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING, claim_token=token).update(
        status=status, error=error[:5000], finished_at=timezone.now(), **fields
    )
    return bool(done)


def _messages(run: AgentRun) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": run.agent.system_prompt}] if run.agent.system_prompt else []
    return [*messages, {"role": "user", "content": run.prompt}]


def _store_result(run: AgentRun, token: str, stored: list[bool]):
    def store(result: RouteResult) -> None:
        text = result.completion.text.replace("\x00", "")  # PostgreSQL text cannot hold NUL
        check = quality.check_output(run.agent.quality_check, text)
        entry = result.entry
        stored.append(
            _finish(
                run,
                token,
                status=RunStatus.SUCCEEDED,
                output=text,
                provider_name=result.provider,
                model_name=result.model,
                prompt_tokens=getattr(entry, "prompt_tokens", 0) or 0,
                completion_tokens=getattr(entry, "completion_tokens", 0) or 0,
                latency_ms=getattr(entry, "latency_ms", None),
                cost_usd=getattr(entry, "cost_usd", None),
                baseline_cost_usd=getattr(entry, "baseline_cost_usd", None),
                quality_ok=check.ok,
                quality_detail=check.detail[:300],
            )
        )

    return store


def _held_elsewhere(run_id: int) -> Execution:
    run = AgentRun.objects.filter(pk=run_id).only("status", "heartbeat_at").first()
    if run is None or run.status != RunStatus.RUNNING:
        return Execution("skipped")  # finished, cancelled or gone: a duplicate delivery, nothing to do
    expires = (run.heartbeat_at or timezone.now()) + _lease()
    return Execution("busy", retry_in=max(1.0, (expires - timezone.now()).total_seconds() + 1))


def run_execute(*, run_id: int) -> Execution:
    """Claim the run, call the router outside any transaction, record the outcome."""
    token = uuid.uuid4().hex
    if not _claim(run_id, token):
        return _held_elsewhere(run_id)
    run = AgentRun.objects.select_related("agent").get(pk=run_id)
    if run.workflow_id:
        Workflow.objects.filter(pk=run.workflow_id, status=RunStatus.QUEUED).update(status=RunStatus.RUNNING)
    try:
        return _execute_claimed(run, token)
    finally:
        if run.workflow_id:
            workflow_finish_if_done(workflow_id=run.workflow_id)


def _execute_claimed(run: AgentRun, token: str) -> Execution:
    if run.deliveries > MAX_DELIVERIES:
        lost = run.deliveries - 1
        _finish(run, token, status=RunStatus.FAILED, error=f"The worker running it was lost {lost} times; giving up.")
        return Execution("failed")
    request = RouteRequest(
        messages=_messages(run),
        capability=run.capability or run.agent.capability,
        agent=run.agent.slug,
        user_id=run.created_by_id,
        run_id=run.pk,
        max_tokens=run.max_tokens or run.agent.max_tokens,
        temperature=run.agent.temperature,
        max_prompt_tokens=run.max_prompt_tokens,
    )
    stored: list[bool] = []
    try:
        with heartbeats.hold(run.pk, token):
            route(request, on_success=_store_result(run, token, stored))
    except NoProviderAvailable as error:
        return Execution("failed" if _finish(run, token, status=RunStatus.FAILED, error=error.reason) else "discarded")
    except SoftTimeLimitExceeded:
        limit = settings.SWITCHYARD_RUN_TIME_LIMIT
        _finish(run, token, status=RunStatus.FAILED, error=f"Stopped: it ran longer than the time limit of {limit} s.")
        return Execution("failed")
    except Exception as error:
        logger.exception("run %s failed on the worker", run.pk)
        _finish(run, token, status=RunStatus.FAILED, error=f"Internal error on the worker: {type(error).__name__}.")
        return Execution("failed")
    return Execution("succeeded" if all(stored) else "discarded")


# -- workflows ------------------------------------------------------------------------------


def _workflow_status(statuses: set[str]) -> str:
    if statuses <= {RunStatus.SUCCEEDED}:
        return RunStatus.SUCCEEDED
    if RunStatus.FAILED in statuses:
        return RunStatus.FAILED
    if RunStatus.SUCCEEDED in statuses:
        return RunStatus.SUCCEEDED  # some cancelled, none failed: what was asked for ran
    return RunStatus.CANCELLED


def workflow_finish_if_done(*, workflow_id: int) -> bool:
    """When every run of the workflow has ended, record its status, totals and end time (once)."""
    with transaction.atomic():
        # The row lock serialises the last two runs finishing at once: the second sees the first.
        workflow = Workflow.objects.select_for_update().filter(pk=workflow_id, finished_at__isnull=True).first()
        if workflow is None:
            return False
        runs = AgentRun.objects.filter(workflow_id=workflow_id)
        statuses = set(runs.values_list("status", flat=True).distinct())
        if not statuses or not statuses <= set(FINISHED_STATUSES):
            return False
        totals = runs.aggregate(cost=Sum("cost_usd"), baseline=Sum("baseline_cost_usd"))
        last = runs.order_by("-finished_at").values_list("finished_at", flat=True).first()
        workflow.status = _workflow_status(statuses)
        workflow.cost_usd = totals["cost"] or Decimal(0)
        workflow.baseline_cost_usd = totals["baseline"] or Decimal(0)
        workflow.finished_at = last or timezone.now()
        workflow.save(update_fields=["status", "cost_usd", "baseline_cost_usd", "finished_at"])
    return True


# -- the sweeper ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepReport:
    requeued: int = 0
    taken_over: int = 0
    failed: int = 0
    workflows_finished: int = 0


def runs_sweep(*, now: datetime | None = None) -> SweepReport:
    """Re-enqueue runs whose message was lost, fail runs past the time limit, close workflows.

    Bounded batches; every change is a conditional UPDATE, so two sweepers at once are harmless.
    """
    now = now or timezone.now()
    limit = timedelta(seconds=settings.SWITCHYARD_RUN_TIME_LIMIT + 2 * TIME_LIMIT_MARGIN_S)
    stale_queued = AgentRun.objects.filter(status=RunStatus.QUEUED, heartbeat_at__lt=now - _requeue_after())
    requeue = _mark_enqueued(stale_queued, now=now, status=RunStatus.QUEUED)
    # A run started this long ago cannot still be running: the hard time limit has killed it.
    overdue = list(
        AgentRun.objects.filter(status=RunStatus.RUNNING, started_at__lt=now - limit).values_list("pk", flat=True)[
            :SWEEP_BATCH
        ]
    )
    failed = AgentRun.objects.filter(pk__in=overdue, status=RunStatus.RUNNING, started_at__lt=now - limit).update(
        status=RunStatus.FAILED,
        finished_at=now,
        error=f"Still running after the time limit of {settings.SWITCHYARD_RUN_TIME_LIMIT} s: the worker was lost.",
    )
    # Heartbeat stopped (worker killed): hand it to a worker now rather than after the broker's
    # visibility timeout; the claim lets exactly one delivery take it over.
    orphans = AgentRun.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=now - _lease())
    taken_over = _mark_enqueued(orphans, now=None, status=RunStatus.RUNNING)
    _enqueue(requeue + taken_over)
    finished = 0
    open_workflows = Workflow.objects.filter(finished_at__isnull=True).exclude(
        runs__status__in=(RunStatus.QUEUED, RunStatus.RUNNING)
    )
    for workflow_id in open_workflows.values_list("pk", flat=True)[:SWEEP_BATCH]:
        finished += workflow_finish_if_done(workflow_id=workflow_id)
    return SweepReport(len(requeue), len(taken_over), failed, finished)


def _mark_enqueued(runs, *, now: datetime | None, status: str) -> list[int]:
    ids = list(runs.order_by("heartbeat_at").values_list("pk", flat=True)[:SWEEP_BATCH])
    if now is not None and ids:
        # Restart the clock so the next sweep does not send the same queued run again.
        AgentRun.objects.filter(pk__in=ids, status=status).update(heartbeat_at=now)
    return ids
