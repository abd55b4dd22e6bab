"""API key shapes for the REST API. The secret appears only in the answer to a create."""

from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers

from accounts.models import ApiKey
from accounts.services import MAX_MODEL_NAME, MAX_MODELS
from core.fields import MoneyField, TextField, TimestampField
from core.serializers import ClosedInput


class KeyCreateInput(ClosedInput):
    name = TextField(max_length=100, help_text="To tell the key from your others.")
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, default=None, help_text="ISO 8601, in the future; omitted: never expires."
    )
    allowed_models = serializers.ListField(
        child=TextField(max_length=MAX_MODEL_NAME),
        max_length=MAX_MODELS,
        required=False,
        default=list,
        help_text="Model names the gateway (/v1/) serves with this key; empty: every model.",
    )
    monthly_cloud_budget_usd = serializers.DecimalField(
        max_digits=10,
        decimal_places=2,
        min_value=Decimal(0),
        required=False,
        allow_null=True,
        default=None,
        help_text="What this key's calls may cost in the cloud per calendar month (UTC); omitted or null: no "
        "limit of its own (yours and your team's still apply).",
    )
    requests_per_minute = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=1,
        help_text="Gateway requests per minute with this key, at most the server's default; omitted: that default.",
    )
    tokens_per_minute = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        min_value=1,
        help_text="Gateway tokens per minute (prompt and completion) with this key, at most the server's default; "
        "omitted: that default.",
    )


class KeyOutput(serializers.ModelSerializer):
    created_at = TimestampField()
    expires_at = TimestampField(allow_null=True)
    last_used_at = TimestampField(allow_null=True, help_text="Updated at most once a minute.")
    allowed_models = serializers.ListField(child=serializers.CharField())
    monthly_cloud_budget_usd = MoneyField(allow_null=True, help_text="Null: no limit of its own.")

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "created_at",
            "expires_at",
            "last_used_at",
            "allowed_models",
            "monthly_cloud_budget_usd",
            "requests_per_minute",
            "tokens_per_minute",
        ]


class KeyCreatedOutput(KeyOutput):
    key = serializers.CharField(help_text="The whole key: shown in this answer only, never again.")

    class Meta(KeyOutput.Meta):
        fields = [*KeyOutput.Meta.fields, "key"]
