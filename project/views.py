from datetime import UTC, datetime

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone

from agents import selectors
from metrics import selectors as metrics_selectors
from metrics.figures import local_share_on_target
from routing import health
from routing.models import CallOutcome, LedgerEntry, Provider
from routing.selectors import routing_policy

RECENT_RUNS = 10
RECENT_WORKFLOWS = 5


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def providers_with_health() -> list[Provider]:
    """Each provider with its last call and whether the router is cooling it down now."""
    last = LedgerEntry.objects.filter(provider=OuterRef("pk")).order_by("-created_at", "-id")
    providers = list(
        Provider.objects.annotate(
            last_outcome=Subquery(last.values("outcome")[:1]), last_call_at=Subquery(last.values("created_at")[:1])
        )
    )
    cooling = health.cooldowns(provider.name for provider in providers)
    now = timezone.now().timestamp()
    for provider in providers:
        cooldown = cooling.get(provider.name)
        provider.cooldown_s = round(cooldown.remaining(now)) if cooldown else None
        provider.health = _health_label(provider)
    return providers


def _health_label(provider: Provider) -> str:
    if not provider.enabled:
        return "disabled"
    if provider.cooldown_s is not None:
        return "cooling down"
    if provider.last_outcome is None:
        return "no calls yet"
    return "ok" if provider.last_outcome == CallOutcome.SUCCESS else "last call failed"


@login_required
def home(request: HttpRequest) -> HttpResponse:
    # Runs are private (staff see all); the month's figures are the team's.
    policy = routing_policy()
    now = timezone.now()
    # The same figures as the metrics pages and the monthly report, fresh to this request.
    month = metrics_selectors.totals(start=month_start(now).date(), end=now.astimezone(UTC).date())
    context = {
        "policy": policy,
        "month": month,
        "month_start": month_start(now),
        "on_target": local_share_on_target(share=month["local_share"], target=policy.target_local_share),
        "runs": selectors.run_visible(user=request.user)[:RECENT_RUNS],
        "workflows": selectors.workflow_visible(user=request.user)[:RECENT_WORKFLOWS],
        "providers": providers_with_health(),
    }
    return render(request, "home.html", context)


def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers and the CI smoke test: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
