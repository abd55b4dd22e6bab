"""Staff manage anyone's API keys: the secret is never shown, except once (in a message) for a key
made here; revoking keeps the row."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from accounts.models import ApiKey, Membership, Team
from accounts.services import MAX_MODEL_NAME, key_create, key_revoke, models_clean
from core.formatting import money


def cloud_budget(limit: Decimal | None) -> str:
    return "no limit" if limit is None else money(limit)


LIMITS = ["requests_per_minute", "tokens_per_minute"]  # empty: the server's default; 0: not limited


class ApiKeyForm(forms.ModelForm):
    def clean_allowed_models(self) -> list[str]:
        """A list of names (accounts.services.models_clean), as the page and the API take: the JSON
        field takes any JSON, and a string would limit the key to its letters, a number break it."""
        given = self.cleaned_data["allowed_models"]
        if given is None:  # the field left empty: every model
            return []
        if not isinstance(given, list):
            raise ValidationError(
                f'Each model is a name of 1 to {MAX_MODEL_NAME} characters, in a list: ["gemma", "auto"].'
            )
        try:
            return models_clean(given)
        except ValidationError as refused:
            raise ValidationError(refused.messages) from None


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = [
        "prefix",
        "name",
        "user",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
        *LIMITS,
        "cloud_budget",
    ]
    list_filter = ["revoked_at"]
    search_fields = ["prefix", "name", "user__username"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None):
        if obj is None:
            return ["user", "name", "expires_at", "allowed_models", *LIMITS, "monthly_cloud_budget_usd"]
        return [
            "user",
            "name",
            "prefix",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
            "allowed_models",
            *LIMITS,
            "monthly_cloud_budget_usd",
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None):
        if obj is None:
            return []
        return ["user", "prefix", "created_at", "last_used_at", "revoked_at"]

    def save_model(self, request: HttpRequest, obj: ApiKey, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        created = key_create(
            user=obj.user,
            name=obj.name,
            expires_at=obj.expires_at,
            allowed_models=obj.allowed_models or [],
            monthly_cloud_budget_usd=obj.monthly_cloud_budget_usd,
            requests_per_minute=obj.requests_per_minute,
            tokens_per_minute=obj.tokens_per_minute,
            limits_checked=False,  # staff set any limit, above the server's default too
        )
        obj.pk = created.key.pk  # the admin's redirect and log entry name the row made by the service
        obj.prefix = created.key.prefix
        messages.warning(request, f"The new key, shown this once: {created.secret}")

    @admin.display(description="monthly cloud budget")
    def cloud_budget(self, key: ApiKey) -> str:
        return cloud_budget(key.monthly_cloud_budget_usd)

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset) -> None:
        revoked = sum(key_revoke(key=key) for key in queryset)
        messages.success(request, f"{revoked} key(s) revoked.")


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    raw_id_fields = ["user"]
    readonly_fields = ["joined_at"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    """Teams and their members (a user is in one team at most: moving them is editing their row)."""

    list_display = ["name", "member_count", "cloud_budget", "requests_per_minute", "tokens_per_minute", "created_at"]
    search_fields = ["name", "memberships__user__username"]
    inlines = [MembershipInline]

    @admin.display(description="monthly cloud budget")
    def cloud_budget(self, team: Team) -> str:
        return cloud_budget(team.monthly_cloud_budget_usd)

    @admin.display(description="members")
    def member_count(self, team: Team) -> int:
        return team.memberships.count()
