from datetime import datetime
from decimal import Decimal

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.db.models import Count, DecimalField, ExpressionWrapper, F, Q, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone

from agents import selectors
from core import months
from routing.models import CallOutcome, LedgerEntry
from routing.selectors import provider_statuses, routing_policy

RECENT_RUNS = 10
RECENT_WORKFLOWS = 5
MONEY = DecimalField(max_digits=18, decimal_places=10)


def month_start(now: datetime) -> datetime:
    return months.month_start(now)


def ledger_month_summary(*, now: datetime) -> dict:
    """This UTC month's calls, local share, cost and savings, straight from the ledger.

    Local share counts successful calls: a failed local attempt that fell back to the cloud
    did not keep the work local. Savings only count rows priced on both sides.
    """
    entries = LedgerEntry.objects.filter(created_at__gte=month_start(now))
    priced = Q(cost_usd__isnull=False, baseline_cost_usd__isnull=False)
    succeeded = Q(outcome=CallOutcome.SUCCESS)
    totals = entries.aggregate(
        calls=Count("id", filter=succeeded),
        local_calls=Count("id", filter=succeeded & Q(is_local=True)),
        failed_calls=Count("id", filter=Q(outcome__in=(CallOutcome.TRANSIENT, CallOutcome.PERMANENT))),
        unknown_calls=Count("id", filter=Q(outcome=CallOutcome.UNKNOWN)),
        unpriced_calls=Count("id", filter=succeeded & Q(cost_usd__isnull=True)),
        cost=Sum("cost_usd"),
        baseline=Sum("baseline_cost_usd", filter=priced),
        savings=Sum(ExpressionWrapper(F("baseline_cost_usd") - F("cost_usd"), output_field=MONEY), filter=priced),
    )
    calls = totals["calls"]
    totals["local_share"] = (Decimal(totals["local_calls"]) * 100 / calls).quantize(Decimal("0.1")) if calls else None
    for key in ("cost", "baseline", "savings"):
        totals[key] = totals[key] or Decimal(0)
    return totals


@login_required
def home(request: HttpRequest) -> HttpResponse:
    # Runs are private (staff see all); the month's figures are the team's.
    policy = routing_policy()
    month = ledger_month_summary(now=timezone.now())
    context = {
        "policy": policy,
        "month": month,
        "month_start": month_start(timezone.now()),
        "on_target": month["local_share"] is not None and month["local_share"] >= policy.target_local_share,
        "runs": selectors.run_visible(user=request.user)[:RECENT_RUNS],
        "workflows": selectors.workflow_visible(user=request.user)[:RECENT_WORKFLOWS],
        "providers": provider_statuses(),
    }
    return render(request, "home.html", context)


def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers and the CI smoke test: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
