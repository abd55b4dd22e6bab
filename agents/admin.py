"""The admin for agents (editable) and for runs and workflows (read-only history)."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from agents.models import Agent, AgentRun, Workflow
from core.admin_dates import DateHierarchyBounds
from core.formatting import money, when
from routing.admin import ReadOnlyAdmin
from routing.models import LedgerEntry

LEDGER_ROWS_SHOWN = 50


class AgentForm(forms.ModelForm):
    class Meta:
        model = Agent
        fields = (
            "name",
            "slug",
            "role",
            "capability",
            "enabled",
            "position",
            "system_prompt",
            "workflow_prompt",
            "temperature",
            "max_tokens",
            "quality_check",
        )

    def clean_workflow_prompt(self) -> str:
        text = self.cleaned_data.get("workflow_prompt", "")
        if text and "{feature}" not in text:
            raise ValidationError("Include {feature} where the workflow's feature goes, or leave this empty.")
        return text


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    form = AgentForm
    list_display = ("name", "slug", "role", "capability", "quality_check", "enabled", "position")
    list_editable = ("enabled", "position")
    list_filter = ("enabled", "capability", "quality_check")
    search_fields = ("slug", "name", "role")
    prepopulated_fields = {"slug": ("name",)}
    fieldsets = (
        (None, {"fields": ("name", "slug", "role", "capability", "enabled", "position")}),
        ("Prompts", {"fields": ("system_prompt", "workflow_prompt")}),
        ("Generation", {"fields": ("temperature", "max_tokens", "quality_check")}),
    )


@admin.register(AgentRun)
class AgentRunAdmin(DateHierarchyBounds, ReadOnlyAdmin):
    list_display = (
        "id",
        "agent",
        "status_shown",
        "created_by",
        "provider_name",
        "model_name",
        "prompt_tokens",
        "completion_tokens",
        "latency_ms",
        "cost_usd",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "agent", "provider_name", "quality_ok", "created_at")

    @admin.display(description="status", ordering="status")
    def status_shown(self, run: AgentRun) -> str:
        return run.status_label

    search_fields = ("prompt", "error", "created_by__username", "agent__slug", "id__exact")
    list_select_related = ("agent", "created_by", "workflow")
    date_hierarchy = "created_at"
    show_full_result_count = False
    readonly_fields = ("ledger_rows",)
    fieldsets = (
        (None, {"fields": ("agent", "workflow", "created_by", "api_key", "status", "deliveries")}),
        ("Request", {"fields": ("prompt", "capability", "max_tokens")}),
        ("Result", {"fields": ("output", "error", "quality_ok", "quality_detail")}),
        (
            "Cost and speed",
            {
                "fields": (
                    "provider_name",
                    "model_name",
                    "prompt_tokens",
                    "completion_tokens",
                    "latency_ms",
                    "cost_usd",
                    "baseline_cost_usd",
                )
            },
        ),
        ("Times", {"fields": ("created_at", "started_at", "finished_at")}),
        ("Ledger", {"fields": ("ledger_rows",)}),
    )

    @admin.display(description="calls to providers")
    def ledger_rows(self, obj: AgentRun) -> str:
        # The ledger names its run by id (routing knows nothing of agents), so join here.
        entries = list(
            LedgerEntry.objects.filter(run_id=obj.pk)
            .select_related("provider")
            .order_by("created_at", "id")[:LEDGER_ROWS_SHOWN]
        )
        if not entries:
            return "No calls recorded."
        rows = format_html_join(
            "",
            "<tr><td><a href='{}'>{}</a></td><td>{}</td><td>{}/{}</td><td>{}</td><td>{} + {}</td><td>{} ms</td>"
            "<td>{}</td><td>{}</td></tr>",
            (
                (
                    reverse("admin:routing_ledgerentry_change", args=[entry.pk]),
                    entry.attempt,
                    when(entry.created_at),
                    entry.provider.name,
                    entry.model_name,
                    entry.get_outcome_display(),
                    entry.prompt_tokens,
                    entry.completion_tokens,
                    entry.latency_ms,
                    money(entry.cost_usd),
                    entry.error[:200],
                )
                for entry in entries
            ),
        )
        all_url = reverse("admin:routing_ledgerentry_changelist") + "?" + urlencode({"run_id": obj.pk})
        return format_html(
            "<table><thead><tr><th>attempt</th><th>at (UTC)</th><th>provider/model</th><th>outcome</th>"
            "<th>tokens in + out</th><th>latency</th><th>cost</th><th>error</th></tr></thead>"
            "<tbody>{}</tbody></table><p><a href='{}'>All ledger rows for this run</a></p>",
            rows,
            all_url,
        )


class WorkflowRunInline(admin.TabularInline):
    model = AgentRun
    fields = ("agent", "status", "provider_name", "model_name", "cost_usd", "finished_at")
    readonly_fields = fields
    show_change_link = True
    extra = 0

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Workflow)
class WorkflowAdmin(DateHierarchyBounds, ReadOnlyAdmin):
    list_display = (
        "id",
        "short_feature",
        "status",
        "created_by",
        "created_at",
        "finished_at",
        "cost_usd",
        "baseline_cost_usd",
    )
    list_filter = ("status", "created_at")
    search_fields = ("feature", "created_by__username", "id__exact")
    list_select_related = ("created_by",)
    date_hierarchy = "created_at"
    inlines = [WorkflowRunInline]

    @admin.display(description="feature")
    def short_feature(self, obj: Workflow) -> str:
        return obj.feature if len(obj.feature) <= 80 else obj.feature[:79] + "…"
