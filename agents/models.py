"""Agents, their runs, and workflows that fan one feature out to several agents."""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from routing.providers.base import REFUSAL_REASONS, TRUNCATED_REASONS
from routing.rules import capability_validator, slug_validator


class QualityCheck(models.TextChoices):
    NONE = "none", "none"
    PYTHON_CODE = "python_code", "code block parses as Python"
    REACT_COMPONENT = "react_component", "a React component is present"
    DOCKERFILE = "dockerfile", "the Dockerfile has a FROM line"


class Agent(models.Model):
    slug = models.SlugField(max_length=64, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=200)
    capability = models.CharField(max_length=64, validators=[capability_validator])
    system_prompt = models.TextField()
    workflow_prompt = models.TextField(
        blank=True, help_text="How a workflow's feature becomes this agent's task; {feature} is replaced."
    )
    temperature = models.FloatField(default=0.2, validators=[MinValueValidator(0), MaxValueValidator(2)])
    max_tokens = models.PositiveIntegerField(default=1024, validators=[MinValueValidator(1)])
    quality_check = models.CharField(max_length=32, choices=QualityCheck.choices, default=QualityCheck.NONE)
    enabled = models.BooleanField(default=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "slug"]

    def __str__(self) -> str:
        return f"{self.name} ({self.role})"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"
    CANCELLED = "cancelled", "cancelled"


FINISHED_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class Workflow(models.Model):
    feature = models.TextField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="workflows"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    cost_usd = models.DecimalField(max_digits=18, decimal_places=10, default=Decimal(0))
    baseline_cost_usd = models.DecimalField(max_digits=18, decimal_places=10, default=Decimal(0))
    # The savings rule (metrics): runs whose answer failed its quality check save nothing.
    savings_usd = models.DecimalField(max_digits=18, decimal_places=10, default=Decimal(0))
    checks_failed = models.PositiveIntegerField(default=0, help_text="Runs that succeeded but failed their check.")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Workflow #{self.pk}: {self.feature[:60]}"

    @property
    def check_failed(self) -> bool:
        """It succeeded, but some run's answer failed its quality check: never a plain green success."""
        return self.status == RunStatus.SUCCEEDED and self.checks_failed > 0

    @property
    def status_label(self) -> str:
        if not self.check_failed:
            return self.status
        return f"{self.status} · {self.checks_failed} check{'s' if self.checks_failed > 1 else ''} failed"

    @property
    def quality_detail(self) -> str:
        return "their savings are not counted" if self.check_failed else ""

    @property
    def wall_time_s(self) -> float | None:
        """From submission until its last run ended."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.created_at).total_seconds()


class AgentRun(models.Model):
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="runs")
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, null=True, blank=True, related_name="runs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="agent_runs"
    )
    # The personal API key the run was submitted with (the REST API): its calls' ledger rows carry
    # it, so the key's cloud budget applies to them and reports by key count them. Empty: the web
    # form, or an older DRF token.
    api_key = models.ForeignKey(
        "accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="agent_runs"
    )
    prompt = models.TextField()
    capability = models.CharField(max_length=64, blank=True, validators=[capability_validator])
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    output = models.TextField(blank=True)
    error = models.TextField(blank=True)
    fix = models.TextField(
        blank=True, help_text="What to do about a failure no provider could serve, one sentence a line."
    )
    provider_name = models.CharField(max_length=64, blank=True)
    model_name = models.CharField(max_length=120, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    cost_usd = models.DecimalField(max_digits=18, decimal_places=10, null=True, blank=True)
    baseline_cost_usd = models.DecimalField(max_digits=18, decimal_places=10, null=True, blank=True)
    finish_reason = models.CharField(
        max_length=40,
        blank=True,
        default="",
        db_default="",
        help_text="The provider's own word for how the answer ended (stop, length...).",
    )
    quality_ok = models.BooleanField(null=True, blank=True)
    quality_detail = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deliveries = models.PositiveSmallIntegerField(default=0, help_text="How many times a worker claimed this run.")
    max_prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    # The lease (see agents.execution): who holds the run, and its last sign of life (enqueued, or
    # the running worker's heartbeat). A running run whose heartbeat stopped may be taken over.
    claim_token = models.CharField(max_length=32, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"Run #{self.pk} {self.agent_id} {self.status_label}"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def truncated(self) -> bool:
        """The answer stopped at the token limit, not because it was done."""
        return self.finish_reason in TRUNCATED_REASONS

    @property
    def refused(self) -> bool:
        return self.finish_reason in REFUSAL_REASONS

    @property
    def savings_usd(self) -> Decimal | None:
        if self.cost_usd is None or self.baseline_cost_usd is None:
            return None
        return self.baseline_cost_usd - self.cost_usd

    @property
    def check_failed(self) -> bool:
        """It succeeded, but its output failed the agent's quality check: its savings do not count
        (metrics.rollups) and it is never shown as a plain success."""
        return self.status == RunStatus.SUCCEEDED and self.quality_ok is False

    @property
    def status_label(self) -> str:
        """The status as pages and the API write it: "succeeded · check failed" for a failed check."""
        return f"{self.status} · check failed" if self.check_failed else self.status


# AgentRun.check_failed as a query, for sums over runs (a workflow's savings).
CHECK_FAILED = models.Q(status=RunStatus.SUCCEEDED, quality_ok=False)


class IdempotencyKey(models.Model):
    """A client's `Idempotency-Key` on a POST that created a run or a workflow (agents.idempotency).

    Inserted in the same transaction as what it created: the unique constraint makes a second
    request with the same key wait for the first to commit, then replay its answer."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    endpoint = models.CharField(max_length=32)
    body_sha256 = models.CharField(max_length=64, help_text="Of the request's canonical JSON body.")
    run = models.ForeignKey(AgentRun, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key", "endpoint"], name="idempotency_key_unique_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.key!r} of user #{self.user_id}"
