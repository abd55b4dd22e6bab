"""The admin for providers, models, prices, the routing policy and rules, and the (read-only) ledger.

Every save or delete of routing configuration drops the router's cached table once the
transaction commits, so a reorder here decides the very next call.
"""

from __future__ import annotations

from django.contrib import admin
from django.db import models, transaction
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse

from core.admin_dates import DateHierarchyBounds
from core.formatting import money
from routing.budget import budget_status
from routing.forms import (
    LLMModelForm,
    ModelAliasForm,
    ModelInlineFormSet,
    PriceForm,
    ProviderForm,
    ProviderPriorityFormSet,
    RoutingPolicyForm,
    RoutingRuleForm,
    RuleProviderInlineFormSet,
)
from routing.models import (
    CloudBudget,
    LedgerEntry,
    LLMModel,
    ModelAlias,
    Price,
    Provider,
    RoutingPolicy,
    RoutingRule,
    RuleProvider,
)
from routing.providers.base import api_key_present
from routing.rules import api_key_env_allowed
from routing.selectors import provider_status

admin.site.site_header = "Switchyard admin"
admin.site.site_title = "Switchyard admin"


def _invalidate_routing_cache() -> None:
    # Imported when called: the admin must load even while the router (adapters, httpx) cannot.
    from routing import table

    table.invalidate_routing_cache()


def invalidate_after_commit() -> None:
    # After commit, not before: a router reloading in between would cache the old table again.
    transaction.on_commit(_invalidate_routing_cache)


class InvalidatesRoutingCache(admin.ModelAdmin):
    """Saves and deletes (change form, changelist, bulk delete, inlines) refresh the router."""

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        invalidate_after_commit()

    def delete_model(self, request, obj) -> None:
        super().delete_model(request, obj)
        invalidate_after_commit()

    def delete_queryset(self, request, queryset) -> None:
        super().delete_queryset(request, queryset)
        invalidate_after_commit()

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        invalidate_after_commit()


class ReadOnlyAdmin(admin.ModelAdmin):
    """History is written by the system only: operators may look, never add, change or delete."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class LLMModelInline(admin.TabularInline):
    model = LLMModel
    form = LLMModelForm
    formset = ModelInlineFormSet
    fields = (
        "name",
        "context_window",
        "max_output_tokens",
        "system_prompt",
        "prompt_style",
        "capabilities",
        "is_demo",
    )
    extra = 0


@admin.register(Provider)
class ProviderAdmin(InvalidatesRoutingCache):
    form = ProviderForm
    formfield_overrides = {models.URLField: {"assume_scheme": "http"}}  # as ProviderForm.base_url
    inlines = [LLMModelInline]
    list_display = (
        "name",
        "priority",
        "enabled",
        "kind",
        "locality",
        "default_model",
        "max_in_flight",
        "api_key_set",
        "status",
    )
    list_display_links = ("name",)
    list_editable = ("priority", "enabled")
    list_filter = ("kind", "is_local", "enabled")
    search_fields = ("name", "base_url", "default_model")
    ordering = ("priority", "name")
    readonly_fields = ("api_key_set", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "kind", "base_url", "is_local", "priority", "enabled")}),
        ("Credentials", {"fields": ("api_key_env", "api_key_set")}),
        ("Models and capabilities", {"fields": ("default_model", "capabilities")}),
        (
            "Limits",
            {"fields": ("connect_timeout_s", "request_timeout_s", "max_in_flight", "slot_wait_s", "keep_alive")},
        ),
        (None, {"fields": ("updated_at",)}),
    )

    @admin.display(description="local / cloud", ordering="is_local")
    def locality(self, obj: Provider) -> str:
        return "local" if obj.is_local else "cloud"

    @admin.display(description="status")
    def status(self, obj: Provider) -> str:
        # The words of the dashboard and the API (routing.selectors), read-only.
        current = provider_status(provider=obj)
        said = current.fix or current.detail
        return f"{current.status}: {said}" if said else str(current.status)

    @admin.display(description="API key set", boolean=True)
    def api_key_set(self, obj: Provider) -> bool | None:
        # Whether this process sees the variable, and nothing more: the value never reaches a page.
        # A variable not allowed for keys is never read, not even to say whether it is set.
        if not obj.api_key_env or not api_key_env_allowed(obj.api_key_env):
            return None
        return api_key_present(obj.api_key_env)

    # Where the key is sent and which variable it is read from: a right of its own, not "change provider".
    ENDPOINT_FIELDS = ("base_url", "api_key_env")
    ENDPOINT_PERMISSION = "routing.change_provider_endpoint"

    def get_readonly_fields(self, request: HttpRequest, obj: Provider | None = None):
        readonly = super().get_readonly_fields(request, obj)
        if request.user.has_perm(self.ENDPOINT_PERMISSION):
            return readonly
        return (*readonly, *self.ENDPOINT_FIELDS)  # not in the form: a crafted POST cannot set them

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A new provider sets both its URL and its key variable.
        return super().has_add_permission(request) and request.user.has_perm(self.ENDPOINT_PERMISSION)

    def get_changelist_formset(self, request, **kwargs):
        return super().get_changelist_formset(request, formset=ProviderPriorityFormSet, **kwargs)


PRICE_TERMS = (
    "model",
    "effective_from",
    "input_per_mtok",
    "output_per_mtok",
    "cache_write_per_mtok",
    "cache_read_per_mtok",
)


class PriceInline(admin.TabularInline):
    model = Price
    form = PriceForm
    fields = PRICE_TERMS[1:]
    extra = 0


@admin.register(LLMModel)
class LLMModelAdmin(InvalidatesRoutingCache):
    form = LLMModelForm
    inlines = [PriceInline]
    list_display = ("name", "provider", "context_window", "max_output_tokens", "capability_list")
    list_filter = ("provider", "provider__is_local")
    search_fields = ("name", "provider__name")
    list_select_related = ("provider",)

    @admin.display(description="capabilities")
    def capability_list(self, obj: LLMModel) -> str:
        return ", ".join(obj.capabilities)


@admin.register(Price)
class PriceAdmin(DateHierarchyBounds, InvalidatesRoutingCache):
    form = PriceForm
    list_display = PRICE_TERMS
    list_filter = ("model__provider", "model__provider__is_local")
    search_fields = ("model__name", "model__provider__name")
    list_select_related = ("model__provider",)
    date_hierarchy = "effective_from"

    def get_readonly_fields(self, request: HttpRequest, obj: Price | None = None):
        if obj is not None and obj.is_charged():
            return PRICE_TERMS
        return ()

    def has_delete_permission(self, request: HttpRequest, obj: Price | None = None) -> bool:
        if obj is not None and obj.is_charged():
            return False
        return super().has_delete_permission(request, obj)


@admin.register(RoutingPolicy)
class RoutingPolicyAdmin(InvalidatesRoutingCache):
    """One row: the list page leads straight to it; it can be changed, never added twice or deleted."""

    form = RoutingPolicyForm
    list_display = ("__str__", "baseline_model", "failures_before_cooldown", "cooldown_seconds", "updated_at")
    readonly_fields = ("updated_at",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not RoutingPolicy.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context=None):
        policy = RoutingPolicy.objects.first()
        if policy is not None and self.has_view_or_change_permission(request, policy):
            return HttpResponseRedirect(reverse("admin:routing_routingpolicy_change", args=[policy.pk]))
        return super().changelist_view(request, extra_context)


class RuleProviderInline(admin.TabularInline):
    model = RuleProvider
    formset = RuleProviderInlineFormSet
    fields = ("position", "provider")
    ordering = ("position",)
    extra = 0
    verbose_name = "provider, in the order tried"
    verbose_name_plural = "providers, in the order tried"


@admin.register(RoutingRule)
class RoutingRuleAdmin(InvalidatesRoutingCache):
    form = RoutingRuleForm
    inlines = [RuleProviderInline]
    list_display = (
        "name",
        "position",
        "enabled",
        "capability",
        "agent",
        "prompt_tokens",
        "allow_cloud",
        "provider_order",
    )
    list_editable = ("position", "enabled")
    list_filter = ("enabled", "allow_cloud", "capability")
    search_fields = ("name", "capability", "agent")
    fieldsets = (
        (None, {"fields": ("name", "position", "enabled")}),
        ("When it matches", {"fields": ("capability", "agent", "min_prompt_tokens", "max_prompt_tokens")}),
        ("Cloud", {"fields": ("allow_cloud", "escalate_above_tokens", "escalate_capabilities")}),
    )

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).prefetch_related("steps__provider")

    @admin.display(description="prompt tokens")
    def prompt_tokens(self, obj: RoutingRule) -> str:
        if obj.min_prompt_tokens is None and obj.max_prompt_tokens is None:
            return "any"
        low = obj.min_prompt_tokens if obj.min_prompt_tokens is not None else 0
        high = obj.max_prompt_tokens if obj.max_prompt_tokens is not None else "∞"
        return f"{low} to {high}"

    @admin.display(description="providers")
    def provider_order(self, obj: RoutingRule) -> str:
        return " → ".join(step.provider.name for step in obj.steps.all()) or "by priority"


@admin.register(ModelAlias)
class ModelAliasAdmin(InvalidatesRoutingCache):
    """Model names that go through the full router (gateway clients name them like models)."""

    form = ModelAliasForm
    list_display = ("name", "capability", "enabled", "description")
    list_editable = ("enabled",)
    list_filter = ("enabled",)
    search_fields = ("name", "capability", "description")


@admin.register(LedgerEntry)
class LedgerEntryAdmin(DateHierarchyBounds, ReadOnlyAdmin):
    list_display = (
        "created_at",
        "provider",
        "model_name",
        "is_local",
        "outcome",
        "attempt",
        "prompt_tokens",
        "completion_tokens",
        "tokens_estimated",
        "latency_ms",
        "ttft_ms",
        "cost_usd",
        "baseline_cost_usd",
        "agent",
        "user",
        "team",
        "api_key",
        "endpoint",
        "run_id",
    )
    list_filter = ("outcome", "is_local", "tokens_estimated", "provider", "agent", "endpoint", "team")
    search_fields = ("model_name", "agent", "reason", "error", "idempotency_key", "run_id__exact", "client")
    date_hierarchy = "created_at"
    list_select_related = ("provider", "user", "team", "api_key")
    show_full_result_count = False  # the ledger grows without bound; skip the second COUNT(*)


@admin.register(CloudBudget)
class CloudBudgetAdmin(admin.ModelAdmin):
    """Each user's monthly cloud limit; a user with no row, or an empty limit, has the routing policy's."""

    list_display = ("user", "limit", "this_month")
    fields = ("user", "monthly_usd")
    raw_id_fields = ("user",)
    search_fields = ("user__username", "user__email")
    list_select_related = ("user",)

    @admin.display(description="monthly limit")
    def limit(self, obj: CloudBudget) -> str:
        return money(obj.monthly_usd) if obj.monthly_usd is not None else "the policy's default"

    @admin.display(description="this month")
    def this_month(self, obj: CloudBudget) -> str:
        status = budget_status(user_id=obj.user_id)
        used = status.spent_usd + status.reserved_usd
        return f"{money(used)} of {money(status.limit_usd)} used, {money(status.remaining_usd)} left"
