from datetime import UTC

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone

from agents import selectors
from core import months
from metrics import selectors as metrics_selectors
from metrics.figures import local_share_on_target
from routing.selectors import demo_models, provider_statuses, routing_policy

RECENT_RUNS = 10
RECENT_WORKFLOWS = 5


@login_required
def home(request: HttpRequest) -> HttpResponse:
    # Runs are private (staff see all); the month's figures are the team's.
    policy = routing_policy()
    now = timezone.now()
    # The same figures as the metrics pages and the monthly report, fresh to this request.
    month = metrics_selectors.totals(start=months.month_start(now).date(), end=now.astimezone(UTC).date())
    context = {
        "policy": policy,
        "month": month,
        "month_start": months.month_start(now),
        "on_target": local_share_on_target(share=month["local_share"], target=policy.target_local_share),
        "runs": selectors.run_visible(user=request.user)[:RECENT_RUNS],
        "workflows": selectors.workflow_visible(user=request.user)[:RECENT_WORKFLOWS],
        "providers": provider_statuses(),
        "demo_models": sorted(demo_models(enabled_only=True)),
    }
    return render(request, "home.html", context)


def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers and the CI smoke test: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
