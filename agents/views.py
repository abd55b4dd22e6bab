"""The task pages: submit, watch live, list and cancel runs and workflows.

Views stay thin: forms check input, `agents.services` does the work, and every lookup goes
through `agents.selectors`, so nobody sees another user's work (staff see all): another
user's run or workflow is a 404, not a 403, so ids do not reveal what exists.
"""

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from agents import selectors, services
from agents.forms import RunFilterForm, RunSubmitForm, WorkflowSubmitForm, add_service_errors
from agents.models import FINISHED_STATUSES, AgentRun, RunStatus, Workflow
from core.errors import Conflict
from routing.selectors import demo_models

RUNS_PER_PAGE = 25
CANCELLABLE = (RunStatus.QUEUED, RunStatus.RUNNING)


def _render_form(request: HttpRequest, template: str, form) -> HttpResponse:
    # A form with errors answers 400 so a script can tell a refusal from a page.
    return render(request, template, {"form": form}, status=400 if form.is_bound else 200)


@login_required
def run_new(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _render_form(request, "agents/run_new.html", RunSubmitForm(initial={"agent": request.GET.get("agent")}))
    form = RunSubmitForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            run = services.run_submit(
                agent=data["agent"],
                prompt=data["prompt"],
                user=request.user,
                capability=data["capability"],
                max_tokens=data["max_tokens"],
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            return redirect("agents:run_detail", pk=run.pk)
    return _render_form(request, "agents/run_new.html", form)


@login_required
def workflow_new(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _render_form(request, "agents/workflow_new.html", WorkflowSubmitForm())
    form = WorkflowSubmitForm(request.POST)
    if form.is_valid():
        try:
            workflow = services.workflow_submit(
                feature=form.cleaned_data["feature"], user=request.user, agents=list(form.cleaned_data["agents"])
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            return redirect("agents:workflow_detail", pk=workflow.pk)
    return _render_form(request, "agents/workflow_new.html", form)


def _demo_model(runs: Iterable[AgentRun]) -> str:
    """The demo model that answered one of these runs, if one did (the pages then say what it is)."""
    demos = demo_models()
    return next((run.model_name for run in runs if (run.provider_name, run.model_name) in demos), "")


def _run_context(run: AgentRun) -> dict:
    return {
        "run": run,
        "attempts": selectors.run_attempts(run=run),
        "can_cancel": run.status in CANCELLABLE,
        "demo_model": _demo_model([run]) if run.provider_name else "",
    }


@login_required
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(selectors.run_visible(user=request.user), pk=pk)
    return render(request, "agents/run_detail.html", _run_context(run))


@never_cache
@login_required
def run_live(request: HttpRequest, pk: int) -> HttpResponse:
    """The changing part of the run page, fetched by static/agents/live.js every second."""
    run = get_object_or_404(selectors.run_visible(user=request.user), pk=pk)
    return render(request, "agents/_run_live.html", _run_context(run))


@require_POST
@login_required
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(selectors.run_visible(user=request.user), pk=pk)
    try:
        run = services.run_cancel(run=run, user=request.user)
    except Conflict as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Run #{run.pk} is {run.get_status_display()}.")
    return redirect(_safe_next(request, reverse("agents:run_detail", args=[run.pk])))


def _safe_next(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next", "")
    allowed = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return target if target and allowed else default


@login_required
def run_list(request: HttpRequest) -> HttpResponse:
    form = RunFilterForm(request.GET or None, can_filter_users=request.user.is_staff)
    if not form.is_bound:
        runs = selectors.run_list(user=request.user)
    elif form.is_valid():
        runs = _filtered_runs(request.user, form.cleaned_data)
    else:
        runs = AgentRun.objects.none()  # a bad filter shows its error, not a misleadingly unfiltered list
    page = Paginator(runs, RUNS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "query": query.urlencode()}
    return render(request, "agents/run_list.html", context, status=400 if form.errors else 200)


def _filtered_runs(user, filters: dict):
    """Dates are whole UTC days, both ends included."""
    since, until = filters.get("since"), filters.get("until")
    runs = selectors.run_list(
        user=user,
        agent=filters.get("agent"),
        status=filters.get("status") or None,
        since=datetime.combine(since, time.min, tzinfo=UTC) if since else None,
        user_filter=filters.get("user"),
    )
    if until and until < date.max:  # the day after 9999-12-31 does not exist: no upper bound then
        runs = runs.filter(created_at__lt=datetime.combine(until + timedelta(days=1), time.min, tzinfo=UTC))
    return runs


def _workflow_context(workflow: Workflow) -> dict:
    runs = selectors.workflow_runs(workflow=workflow)
    return {
        "demo_model": _demo_model(runs),
        "workflow": workflow,
        "runs": runs,
        "finished": workflow.status in FINISHED_STATUSES,
        "can_cancel": any(run.status in CANCELLABLE for run in runs),
    }


@login_required
def workflow_detail(request: HttpRequest, pk: int) -> HttpResponse:
    workflow = get_object_or_404(selectors.workflow_visible(user=request.user), pk=pk)
    return render(request, "agents/workflow_detail.html", _workflow_context(workflow))


@never_cache
@login_required
def workflow_live(request: HttpRequest, pk: int) -> HttpResponse:
    workflow = get_object_or_404(selectors.workflow_visible(user=request.user), pk=pk)
    return render(request, "agents/_workflow_live.html", _workflow_context(workflow))


@require_POST
@login_required
def workflow_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    workflow = get_object_or_404(selectors.workflow_visible(user=request.user), pk=pk)
    try:
        workflow = services.workflow_cancel(workflow=workflow, user=request.user)
    except Conflict as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Workflow #{workflow.pk}: its unfinished runs are cancelled.")
    return redirect("agents:workflow_detail", pk=workflow.pk)
