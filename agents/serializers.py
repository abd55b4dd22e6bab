"""API input and output shapes. Input serializers only check shape; `agents.services` decides the rest."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents.models import Agent, AgentRun, RunStatus, Workflow
from agents.services import MAX_TOKENS_LIMIT
from core.fields import MAX_ID, AsciiIntegerField, MoneyField, TextField, TimestampField
from core.serializers import ClosedInput
from routing.models import LedgerEntry

# -- input ----------------------------------------------------------------------------------


class RunCreateInput(ClosedInput):
    agent = TextField(max_length=64, help_text="The agent's slug, e.g. marcus.")
    prompt = TextField(trim_whitespace=False, help_text="Up to SWITCHYARD_MAX_PROMPT_CHARS characters.")
    capability = TextField(max_length=64, required=False, allow_blank=True, default="")
    max_tokens = AsciiIntegerField(min_value=1, max_value=MAX_TOKENS_LIMIT, required=False, allow_null=True)
    max_prompt_tokens = AsciiIntegerField(min_value=1, max_value=MAX_TOKENS_LIMIT, required=False, allow_null=True)


# A list's `ordering` and the unique, unchanging order it stands for (cursor pagination needs one:
# ties on created_at are broken by id).
LIST_ORDERINGS: dict[str, tuple[str, ...]] = {
    "-created_at": ("-created_at", "-id"),
    "created_at": ("created_at", "id"),
    "-id": ("-id",),
    "id": ("id",),
}
MAX_PAGE_SIZE = 500


class ListFilterInput(serializers.Serializer):
    """What every list takes besides `cursor` (the `next` and `previous` links carry it)."""

    status = serializers.ChoiceField(choices=RunStatus.choices, required=False)
    since = serializers.DateTimeField(required=False, help_text="ISO 8601; created at or after it.")
    # Patterns, not just strings: the schema then says what a name can be (a NUL, say, is refused).
    user = serializers.RegexField(
        r"^[A-Za-z0-9_.@+-]+$",  # ASCII, as the schema's pattern reads (an ECMA \w): they must agree
        max_length=150,
        required=False,
        help_text="A username: staff see anyone's runs, others only their own (another name finds nothing).",
    )
    ordering = serializers.ChoiceField(choices=list(LIST_ORDERINGS), required=False, default="-created_at")
    page_size = AsciiIntegerField(min_value=1, max_value=MAX_PAGE_SIZE, required=False)


class RunFilterInput(ListFilterInput):
    agent = serializers.RegexField(r"^[-a-zA-Z0-9_]+$", max_length=64, required=False, help_text="An agent's slug.")
    workflow = AsciiIntegerField(min_value=1, max_value=MAX_ID, required=False, help_text="A workflow's id.")


class WorkflowCreateInput(ClosedInput):
    feature = TextField(trim_whitespace=False)
    agents = serializers.ListField(
        child=TextField(max_length=64),
        required=False,
        max_length=100,
        help_text="Agent slugs; all enabled agents when left out.",
    )


# -- output ---------------------------------------------------------------------------------


class AttemptOutput(serializers.ModelSerializer):
    provider = serializers.CharField(source="provider.name")
    model = serializers.CharField(source="model_name")
    cost_usd = MoneyField(allow_null=True)
    baseline_cost_usd = MoneyField(allow_null=True)
    created_at = TimestampField(read_only=True)

    class Meta:
        model = LedgerEntry
        fields = [
            "attempt",
            "provider",
            "model",
            "is_local",
            "outcome",
            "reason",
            "error",
            "latency_ms",
            "ttft_ms",
            "prompt_tokens",
            "completion_tokens",
            "tokens_estimated",
            "cache_write_tokens",
            "cache_read_tokens",
            "finish_reason",
            "cost_usd",
            "baseline_cost_usd",
            "created_at",
        ]


class RunSummaryOutput(serializers.Serializer):
    # Declared field by field rather than a ModelSerializer: building fields from the model on
    # every response cost about as much as the rest of the serialisation.
    id = serializers.IntegerField()
    url = serializers.SerializerMethodField()
    page_url = serializers.SerializerMethodField()
    agent = serializers.CharField(source="agent.slug")
    status = serializers.ChoiceField(choices=RunStatus.choices)
    status_label = serializers.CharField(
        help_text='The status as pages show it: "succeeded · check failed" when the output failed its quality check.'
    )
    check_failed = serializers.BooleanField(
        help_text="The run succeeded but its output failed the agent's quality check (its savings do not count)."
    )
    user = serializers.CharField(source="created_by.username", default=None, allow_null=True)
    workflow = serializers.IntegerField(source="workflow_id", allow_null=True)
    provider = serializers.CharField(source="provider_name")
    model = serializers.CharField(source="model_name")
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    latency_ms = serializers.IntegerField(allow_null=True)
    finish_reason = serializers.CharField(help_text="The provider's own word for how the answer ended.")
    truncated = serializers.BooleanField(help_text="The answer stopped at the token limit.")
    refused = serializers.BooleanField(help_text="The model refused to answer.")
    cost_usd = MoneyField(allow_null=True)
    baseline_cost_usd = MoneyField(allow_null=True)
    savings_usd = MoneyField(allow_null=True)
    quality_ok = serializers.BooleanField(allow_null=True)
    quality_detail = serializers.CharField()
    error = serializers.CharField()
    fix = serializers.CharField(
        help_text="When no provider could serve the run: what to do, one sentence a line (the dashboard's words)."
    )
    created_at = TimestampField()
    started_at = TimestampField(allow_null=True)
    finished_at = TimestampField(allow_null=True)

    def get_url(self, run: AgentRun) -> str:
        return self._absolute(reverse("api-run-detail", args=[run.pk]))

    def get_page_url(self, run: AgentRun) -> str:
        return self._absolute(reverse("agents:run_detail", args=[run.pk]))

    def _absolute(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class RunOutput(RunSummaryOutput):
    api_key = serializers.CharField(
        source="api_key.prefix",
        default=None,
        allow_null=True,
        help_text="The prefix of the personal API key it was submitted with (its budget applies); null for the "
        "web form or an older DRF token.",
    )
    prompt = serializers.CharField()
    capability = serializers.CharField()
    max_tokens = serializers.IntegerField(allow_null=True)
    max_prompt_tokens = serializers.IntegerField(allow_null=True)
    output = serializers.CharField()
    attempts = serializers.SerializerMethodField()

    @extend_schema_field(AttemptOutput(many=True))
    def get_attempts(self, run: AgentRun) -> list[dict]:
        from agents.selectors import run_attempts

        if self.context.get("new"):
            return []
        return AttemptOutput(run_attempts(run=run), many=True).data


class WorkflowSummaryOutput(serializers.ModelSerializer):
    """A workflow in a list: its totals, not its runs (`GET /api/v1/runs/?workflow=<id>` has those)."""

    url = serializers.SerializerMethodField()
    user = serializers.CharField(source="created_by.username", default=None, allow_null=True)
    cost_usd = MoneyField()
    baseline_cost_usd = MoneyField()
    savings_usd = MoneyField(help_text="Baseline minus cost over the runs that did not fail their quality check.")
    created_at = TimestampField(read_only=True)
    finished_at = TimestampField(read_only=True, allow_null=True)
    wall_time_s = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = Workflow
        fields = [
            "id",
            "url",
            "feature",
            "status",
            "user",
            "created_at",
            "finished_at",
            "wall_time_s",
            "cost_usd",
            "baseline_cost_usd",
            "savings_usd",
            "checks_failed",
        ]

    def get_url(self, workflow: Workflow) -> str:
        path = reverse("api-workflow-detail", args=[workflow.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class WorkflowOutput(WorkflowSummaryOutput):
    runs = serializers.SerializerMethodField()

    class Meta(WorkflowSummaryOutput.Meta):
        fields = [*WorkflowSummaryOutput.Meta.fields, "runs"]

    @extend_schema_field(RunSummaryOutput(many=True))
    def get_runs(self, workflow: Workflow) -> list[dict]:
        from agents.selectors import workflow_runs

        return RunSummaryOutput(workflow_runs(workflow=workflow), many=True, context=self.context).data


class AgentOutput(serializers.ModelSerializer):
    class Meta:
        model = Agent
        fields = ["slug", "name", "role", "capability", "quality_check", "temperature", "max_tokens", "enabled"]
