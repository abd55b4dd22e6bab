"""Executing runs on a worker: claim, lease and heartbeat, the router call, finishing workflows,
and the sweeper that recovers what a lost message or a killed worker left behind.

Exactly once, without trusting the broker to deliver exactly once:

- `run_execute` claims the run with one conditional UPDATE: `queued -> running`, or takes over a
  `running` run whose lease expired (its worker's heartbeat stopped: the worker was killed). The
  claim writes a fresh `claim_token`; while the provider call runs, a heartbeat thread renews
  `heartbeat_at` every lease/3 seconds, so a duplicate delivery during a live run finds the lease
  held and only checks back later (the task retries after the lease would expire).
- The result is checked (`agents.quality`) by the router's `on_answer`, outside any transaction,
  then written by its `on_success`, inside its transaction that completes the successful attempt's
  ledger row, with `WHERE status = running AND claim_token = <ours>`: a
  worker killed before that commit leaves the row `started` (the next claim marks it unknown and
  calls again); after it, both. A run cancelled meanwhile keeps its status; the ledger keeps the
  real call.
- A takeover is fenced by the claim token: before each attempt the router asks `_ResultStore.holds`
  (our token still on the run), and the charge is written only if it still holds. A worker that
  lost its run (its heartbeats failed, another worker took it) makes no further call, stores no
  result and charges nothing; its in-flight call's row stays, as unknown.
- Ledger rows are keyed `run:<id>:claim:<token>:attempt:<n>`: one attempt is never charged twice.
- The call is streamed: `_LiveRun` writes the answer so far to the run as it arrives and tells the
  router when the run stopped being ours (cancelled, or taken over), so that no further call is made
  and a stream in progress is closed.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.db.models import F, Q, QuerySet, Sum
from django.utils import timezone

from accounts.selectors import team_id_of
from agents import quality
from agents.lease import heartbeats
from agents.lease import lease as _lease
from agents.models import CHECK_FAILED, FINISHED_STATUSES, AgentRun, RunStatus, Workflow
from agents.queue import runs_enqueue
from routing.ledger import attempts_mark_unknown
from routing.router import NoProviderAvailable, RouteCancelled, RouteRequest, RouteResult, Superseded, route

logger = logging.getLogger(__name__)

MAX_DELIVERIES = 3  # a run whose worker was lost this many times is failed, not retried forever
SWEEP_BATCH = 500
TIME_LIMIT_MARGIN_S = 30  # the hard limit beyond the soft one; the sweeper waits this much more
LIVE_SYNC_S = 0.5  # how often a streaming run's partial output is written and its cancellation read


@dataclass(frozen=True)
class Execution:
    """What `run_execute` did; `retry_in` asks the task to check back (another worker holds the lease)."""

    outcome: str  # succeeded, failed, discarded, skipped, busy
    retry_in: float | None = None


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


def run_messages(run: AgentRun) -> list[dict[str, str]]:
    """The chat a run sends: its agent's system prompt, then the run's prompt."""
    messages = [{"role": "system", "content": run.agent.system_prompt}] if run.agent.system_prompt else []
    return [*messages, {"role": "user", "content": run.prompt}]


class _ResultStore:
    """The router's `on_success`: stores the answer on the run while our claim still holds; and
    its `still_owned`: whether the claim still holds."""

    def __init__(self, run: AgentRun, token: str) -> None:
        self.run = run
        self.token = token
        self.stored = False
        self.text = ""
        self.quality = quality.QualityResult(None, "")
        self.confirmed = time.monotonic()  # when we last knew the claim held (claimed just now)

    def holds(self) -> bool:
        """Our claim token is still the run's (cancelled or not): no other worker took it over."""
        if self.stored:
            return True  # our result UPDATE matched the token, and locks the row until it commits
        # A takeover needs the lease lapsed since our last heartbeat, which is no older than this:
        # skip the query while that cannot have happened (the first attempt of nearly every run).
        if time.monotonic() - self.confirmed < _lease().total_seconds() / 2:
            return True
        held = AgentRun.objects.filter(pk=self.run.pk, claim_token=self.token).exists()
        if held:
            self.confirmed = time.monotonic()
        return held

    def check(self, result: RouteResult) -> None:
        """The router's `on_answer`: the quality check, before (not inside) the transaction that stores the answer."""
        self.text = result.completion.text.replace("\x00", "")  # PostgreSQL text cannot hold NUL
        self.quality = quality.check_output(self.run.agent.quality_check, self.text)

    def __call__(self, result: RouteResult) -> bool:
        """Store the checked answer; False when the run was cancelled (or taken over) meanwhile."""
        text, check = self.text, self.quality
        entry = result.entry
        self.stored = _finish(
            self.run,
            self.token,
            status=RunStatus.SUCCEEDED,
            output=text,
            provider_name=result.provider,
            model_name=result.model,
            prompt_tokens=entry.prompt_tokens,
            completion_tokens=entry.completion_tokens,
            finish_reason=entry.finish_reason,
            latency_ms=entry.latency_ms,
            cost_usd=entry.cost_usd,
            baseline_cost_usd=entry.baseline_cost_usd,
            quality_ok=check.ok,
            quality_detail=check.detail[:300],
        )
        return self.stored


class _LiveRun:
    """The router's hooks for one claimed run: the answer as it streams, and whether to stop.

    At most once per LIVE_SYNC_S, one fenced UPDATE (or, with no new text, one EXISTS) both writes
    the partial output and finds out whether the run is still ours: no row matched means it was
    cancelled or taken over. So a cancel stops the router within LIVE_SYNC_S for one cheap query per
    run per interval, not one per chunk.
    """

    def __init__(self, run: AgentRun, token: str) -> None:
        self.run_id = run.pk
        self.ours = AgentRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING, claim_token=token)
        self.text = ""
        self.written = ""
        self.synced_at = time.monotonic()
        self.lost = False

    def on_text(self, text: str) -> None:
        self.text = text
        self._sync()

    def cancelled(self) -> bool:
        self._sync()
        return self.lost

    def _sync(self) -> None:
        if self.lost or time.monotonic() - self.synced_at < LIVE_SYNC_S:
            return
        try:
            if self.text != self.written:
                self.lost = not self.ours.update(output=self.text.replace("\x00", ""))
                self.written = self.text
            else:
                self.lost = not self.ours.exists()
        except DatabaseError:  # cannot tell now: carry on; storing the result is fenced anyway
            logger.warning("could not sync the live output of run %s", self.run_id, exc_info=True)
        self.synced_at = time.monotonic()


def _held_elsewhere(run_id: int) -> Execution:
    run = AgentRun.objects.filter(pk=run_id).only("status", "heartbeat_at").first()
    if run is None or run.status != RunStatus.RUNNING:
        return Execution("skipped")  # finished, cancelled or gone: a duplicate delivery, nothing to do
    expires = (run.heartbeat_at or timezone.now()) + _lease()
    return Execution("busy", retry_in=max(1.0, (expires - timezone.now()).total_seconds() + 1))


class DatabaseUnavailable(Exception):
    """The claim could not reach the database: nothing was done, so the message must be tried
    again later rather than acknowledged (the task retries it with a backoff)."""


def run_execute(*, run_id: int) -> Execution:
    """Claim the run, call the router outside any transaction, record the outcome."""
    token = uuid.uuid4().hex
    try:
        if not _claim(run_id, token):
            return _held_elsewhere(run_id)
    except (OperationalError, InterfaceError) as error:
        raise DatabaseUnavailable(f"run {run_id} not claimed: {error}") from error
    run = AgentRun.objects.select_related("agent").get(pk=run_id)
    if run.workflow_id:
        Workflow.objects.filter(pk=run.workflow_id, status=RunStatus.QUEUED).update(status=RunStatus.RUNNING)
    try:
        return _execute_claimed(run, token)
    finally:
        if run.workflow_id:
            workflow_finish_if_done(workflow_id=run.workflow_id)


def _execute_claimed(run: AgentRun, token: str) -> Execution:
    if run.deliveries > 1:
        # Taken over: the calls the lost executor had started may have been billed; now unknown.
        attempts_mark_unknown(run_id=run.pk)
    if run.deliveries > MAX_DELIVERIES:
        lost = run.deliveries - 1
        _finish(run, token, status=RunStatus.FAILED, error=f"The worker running it was lost {lost} times; giving up.")
        return Execution("failed")
    live = _LiveRun(run, token)
    store = _ResultStore(run, token)
    request = RouteRequest(
        messages=run_messages(run),
        capability=run.capability or run.agent.capability,
        agent=run.agent.slug,
        user_id=run.created_by_id,
        team_id=team_id_of(user_id=run.created_by_id),
        api_key_id=run.api_key_id,  # submitted with a personal key: its budget applies, reports count it
        run_id=run.pk,
        max_tokens=run.max_tokens or run.agent.max_tokens,
        temperature=run.agent.temperature,
        max_prompt_tokens=run.max_prompt_tokens,
        stream=True,
        cancelled=live.cancelled,
        on_text=live.on_text,
        idempotency_key=f"run:{run.pk}:claim:{token}",
        still_owned=store.holds,
        answer_start=quality.answer_start(run.agent.quality_check),
    )
    try:
        with heartbeats.hold(run.pk, token):
            route(request, on_success=store, on_answer=store.check)
    except RouteCancelled:
        return Execution("discarded")  # cancelled, or taken over: the run's row already says which
    except NoProviderAvailable as error:
        failed = _finish(run, token, status=RunStatus.FAILED, error=error.reason, fix=error.fix)
        return Execution("failed" if failed else "discarded")
    except Superseded:
        logger.warning("run %s was taken over by another worker; this one stops", run.pk)
        return Execution("discarded")
    except SoftTimeLimitExceeded:
        limit = settings.SWITCHYARD_RUN_TIME_LIMIT
        _finish(run, token, status=RunStatus.FAILED, error=f"Stopped: it ran longer than the time limit of {limit} s.")
        return Execution("failed")
    except Exception as error:
        logger.exception("run %s failed on the worker", run.pk)
        _finish(run, token, status=RunStatus.FAILED, error=f"Internal error on the worker: {type(error).__name__}.")
        return Execution("failed")
    return Execution("succeeded" if store.stored else "discarded")


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
        failed_check = CHECK_FAILED
        counted = runs.exclude(failed_check).aggregate(cost=Sum("cost_usd"), baseline=Sum("baseline_cost_usd"))
        last = runs.order_by("-finished_at").values_list("finished_at", flat=True).first()
        workflow.status = _workflow_status(statuses)
        workflow.cost_usd = totals["cost"] or Decimal(0)
        workflow.baseline_cost_usd = totals["baseline"] or Decimal(0)
        workflow.savings_usd = (counted["baseline"] or Decimal(0)) - (counted["cost"] or Decimal(0))
        workflow.checks_failed = runs.filter(failed_check).count()
        workflow.finished_at = last or timezone.now()
        workflow.save(
            update_fields=["status", "cost_usd", "baseline_cost_usd", "savings_usd", "checks_failed", "finished_at"]
        )
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
    requeue_after = timedelta(seconds=settings.SWITCHYARD_REQUEUE_AFTER_SECONDS)
    stale_queued = AgentRun.objects.filter(status=RunStatus.QUEUED, heartbeat_at__lt=now - requeue_after)
    requeue = _mark_enqueued(stale_queued, now=now, status=RunStatus.QUEUED)
    # A run started this long ago cannot still be running: the hard time limit has killed it.
    overdue = list(
        AgentRun.objects.filter(status=RunStatus.RUNNING, started_at__lt=now - limit).values_list("pk", flat=True)[
            :SWEEP_BATCH
        ]
    )
    # No call outlives the hard time limit: a row still started by then lost its caller.
    attempts_mark_unknown(started_before=now - limit)
    failed = AgentRun.objects.filter(pk__in=overdue, status=RunStatus.RUNNING, started_at__lt=now - limit).update(
        status=RunStatus.FAILED,
        finished_at=now,
        error=f"Still running after the time limit of {settings.SWITCHYARD_RUN_TIME_LIMIT} s: the worker was lost.",
    )
    # Heartbeat stopped (worker killed): hand it to a worker now rather than after the broker's
    # visibility timeout; the claim lets exactly one delivery take it over.
    orphans = AgentRun.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=now - _lease())
    taken_over = _mark_enqueued(orphans, now=None, status=RunStatus.RUNNING)
    runs_enqueue(run_ids=requeue + taken_over)
    finished = 0
    open_workflows = Workflow.objects.filter(finished_at__isnull=True).exclude(
        runs__status__in=(RunStatus.QUEUED, RunStatus.RUNNING)
    )
    for workflow_id in open_workflows.values_list("pk", flat=True)[:SWEEP_BATCH]:
        finished += workflow_finish_if_done(workflow_id=workflow_id)
    return SweepReport(len(requeue), len(taken_over), failed, finished)


def _mark_enqueued(runs: QuerySet[AgentRun], *, now: datetime | None, status: str) -> list[int]:
    ids = list(runs.order_by("heartbeat_at").values_list("pk", flat=True)[:SWEEP_BATCH])
    if now is not None and ids:
        # Restart the clock so the next sweep does not send the same queued run again.
        AgentRun.objects.filter(pk__in=ids, status=status).update(heartbeat_at=now)
    return ids
