from datetime import UTC

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from rest_framework.authtoken.models import Token

from agents import selectors
from core import months
from metrics import selectors as metrics_selectors
from metrics.figures import local_share_on_target
from project.tokens import token_create, token_revoke
from routing.budget import budget_status
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
        "budget": budget_status(user_id=request.user.pk, now=now),
        "demo_models": sorted(demo_models(enabled_only=True)),
    }
    return render(request, "home.html", context)


@never_cache  # the new key is on the page once: no cache keeps a copy
@login_required
@require_http_methods(["GET", "POST"])
def api_token(request: HttpRequest) -> HttpResponse:
    """The user's own API token: create (the key is shown on this one response), replace or revoke it."""
    new_key = ""
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "create":
            new_key = token_create(user=request.user).key
        elif action == "revoke":
            if token_revoke(user=request.user):
                messages.success(request, "Your API token is revoked: requests that send it are refused.")
            return redirect("api_token")
        else:
            messages.error(request, "Choose create or revoke.")
            return redirect("api_token")
    token = Token.objects.filter(user=request.user).first()
    return render(request, "account/api_token.html", {"token": token, "new_key": new_key})


def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers and the CI smoke test: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
