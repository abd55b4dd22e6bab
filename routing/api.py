"""The providers API, included at /api/v1/providers/ by agents/api_urls.py: every provider in
priority order with its status and fix sentence (routing.selectors, the same words as the dashboard
and the admin; local hosts are probed for free on each request).
The API key itself is never shown, only the name of its variable and whether it is set.

And /api/v1/budget/: the caller's cloud budgets this month, their own and their team's and keys' (routing.budget)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core import months
from core.fields import MoneyField
from routing.budget import alert_share, budget_overview
from routing.models import BudgetScope, Provider, ProviderKind
from routing.providers.wire import without_credentials
from routing.selectors import ProviderState, ProviderStatus, provider_statuses


class ProviderHealthOutput(serializers.Serializer):
    status = serializers.ChoiceField(choices=[state.value for state in ProviderState])
    detail = serializers.CharField()
    fix = serializers.CharField(help_text="What is wrong and what to do, as one sentence; empty when nothing is.")
    cooldown_remaining_s = serializers.FloatField(allow_null=True)
    failures = serializers.IntegerField(allow_null=True)


class ProviderOutput(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=ProviderKind.choices)
    priority = serializers.IntegerField()
    local = serializers.BooleanField()
    where = serializers.ChoiceField(choices=["local", "cloud"])
    enabled = serializers.BooleanField()
    base_url = serializers.CharField()
    default_model = serializers.CharField()
    models = serializers.ListField(child=serializers.CharField())
    capabilities = serializers.ListField(child=serializers.CharField())
    api_key_env = serializers.CharField(help_text="The variable's name only; the key is never shown.")
    api_key_set = serializers.BooleanField()
    max_in_flight = serializers.IntegerField(allow_null=True)
    health = ProviderHealthOutput()


def _provider_row(provider: Provider, status: ProviderStatus) -> dict:
    return {
        "name": provider.name,
        "kind": provider.kind,
        "priority": provider.priority,
        "local": provider.is_local,
        "where": "local" if provider.is_local else "cloud",
        "enabled": provider.enabled,
        "base_url": without_credentials(provider.base_url),
        "default_model": provider.default_model,
        "models": [model.name for model in provider.models.all()],
        "capabilities": provider.capabilities,
        "api_key_env": provider.api_key_env,
        "api_key_set": status.key_set,
        "max_in_flight": provider.max_in_flight,
        "health": {
            "status": status.status,
            "detail": status.detail,
            "fix": status.fix,
            "cooldown_remaining_s": status.cooldown_s,
            "failures": status.failures,
        },
    }


class ProviderList(APIView):
    @extend_schema(responses={200: ProviderOutput(many=True)}, summary="Providers in priority order, with status")
    def get(self, request: Request) -> Response:
        providers = list(Provider.objects.prefetch_related("models").order_by("priority", "name"))
        statuses = provider_statuses(providers=providers)
        rows = [_provider_row(provider, status) for provider, status in zip(providers, statuses, strict=True)]
        return Response(ProviderOutput(rows, many=True).data)


class ScopeBudgetOutput(serializers.Serializer):
    scope = serializers.ChoiceField(choices=BudgetScope.values, help_text="team, user or key")
    name = serializers.CharField(help_text="The team's name, the username or the key's prefix.")
    limit_usd = MoneyField()
    spent_usd = MoneyField()
    reserved_usd = MoneyField()
    remaining_usd = MoneyField()
    alert = serializers.BooleanField(help_text="Its use has reached the routing policy's alert share.")


class BudgetOutput(serializers.Serializer):
    month = serializers.CharField(help_text="YYYY-MM, a calendar month in UTC")
    limit_usd = MoneyField(help_text="Your own budget's limit (the routing policy's, unless you have one of your own).")
    spent_usd = MoneyField(help_text="Completed cloud calls (and calls whose outcome is unknown, at their worst case).")
    reserved_usd = MoneyField(help_text="Cloud calls in flight, at their worst case.")
    remaining_usd = MoneyField(help_text="What a cloud call may still cost this month; local calls are not limited.")
    budgets = ScopeBudgetOutput(
        many=True,
        help_text="Every budget your calls count against: your team's and your keys' (those with a limit) "
        "and your own. A cloud call must fit in each that applies to it.",
    )


class Budget(APIView):
    @extend_schema(responses={200: BudgetOutput}, summary="Your cloud budgets this month (team, yours, your keys')")
    def get(self, request: Request) -> Response:
        budgets = budget_overview(user_id=request.user.pk)
        own = next(status for status in budgets if status.scope == BudgetScope.USER)
        share = alert_share()
        scopes = [
            {
                "scope": status.scope,
                "name": status.name,
                "limit_usd": status.limit_usd,
                "spent_usd": status.spent_usd,
                "reserved_usd": status.reserved_usd,
                "remaining_usd": status.remaining_usd,
                "alert": status.past_share(share),
            }
            for status in budgets
        ]
        return Response(
            BudgetOutput(
                {
                    "month": months.month_label(own.month),
                    "limit_usd": own.limit_usd,
                    "spent_usd": own.spent_usd,
                    "reserved_usd": own.reserved_usd,
                    "remaining_usd": own.remaining_usd,
                    "budgets": scopes,
                }
            ).data
        )
