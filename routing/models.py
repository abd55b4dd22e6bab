"""Providers, the models they offer, prices, the routing policy and rules, and the call ledger.

`routing` depends on nothing else in Switchyard: a ledger row names its agent by slug and its
run by id, so `agents` can point here and never the other way round.
"""

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from routing.providers.base import ProviderConfig

# validate_capabilities is also named here by migration 0001 (routing.models.validate_capabilities).
from routing.rules import (
    alias_name_check,
    api_key_env_check,
    capability_validator,
    default_model_check,
    price_change_check,
    provider_endpoint_check,
    slug_validator,
    validate_capabilities,
)


class ProviderKind(models.TextChoices):
    OLLAMA = "ollama", "Ollama (native /api/chat)"
    OPENAI = "openai", "OpenAI"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible (llama.cpp, vLLM, LM Studio)"
    ANTHROPIC = "anthropic", "Anthropic"


class Provider(models.Model):
    name = models.CharField(max_length=64, unique=True, validators=[slug_validator])
    kind = models.CharField(max_length=32, choices=ProviderKind.choices)
    base_url = models.URLField(max_length=300)
    api_key_env = models.CharField(
        "API key environment variable",
        max_length=100,
        blank=True,
        validators=[RegexValidator(r"^[A-Z_][A-Z0-9_]*$", "An environment variable name like ANTHROPIC_API_KEY.")],
        help_text="The name of the variable holding the key; the key itself is never stored.",
    )
    is_local = models.BooleanField("local", default=False)
    # Not unique in the database, so operators can swap two priorities in one admin save;
    # the admin and load_routing reject duplicates, and ties would fall back to the name.
    priority = models.PositiveIntegerField(validators=[MinValueValidator(1)], help_text="1 is tried first.")
    enabled = models.BooleanField(default=True)
    capabilities = models.JSONField(default=list, blank=True, validators=[validate_capabilities])
    default_model = models.CharField(max_length=120, help_text="One of this provider's models.")
    connect_timeout_s = models.FloatField("connect timeout (s)", default=5.0, validators=[MinValueValidator(0.1)])
    request_timeout_s = models.FloatField("request timeout (s)", default=120.0, validators=[MinValueValidator(0.1)])
    max_in_flight = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Requests at once across all workers; empty for no limit.",
    )
    slot_wait_s = models.FloatField(
        "slot wait (s)",
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="How long a call waits for one of this provider's slots before trying the next provider; "
        "empty for the routing policy's.",
    )
    keep_alive = models.CharField(
        max_length=20,
        blank=True,
        validators=[RegexValidator(r"^-?\d+(\.\d+)?(ms|s|m|h)?$", "A duration like 30m, 1h, 300 or -1 (forever).")],
        help_text="Ollama only: how long the host keeps the model loaded after a call; empty for the host's default.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "name"]
        permissions = [
            # "change provider" covers priorities, limits and models; where the key goes is a separate right.
            ("change_provider_endpoint", "Can change a provider's base URL and API key variable"),
        ]

    def __str__(self) -> str:
        return self.name

    def adapter_config(self) -> ProviderConfig:
        """What its adapter needs: a plain snapshot, no database access."""
        return ProviderConfig(
            name=self.name,
            kind=self.kind,
            base_url=self.base_url,
            is_local=self.is_local,
            api_key_env=self.api_key_env,
            connect_timeout_s=self.connect_timeout_s,
            request_timeout_s=self.request_timeout_s,
            keep_alive=self.keep_alive or None,
        )

    # The admin's provider form turns this off: its models inline checks the default model against
    # the models being saved in the same request, which this query cannot see yet.
    check_default_model_on_clean = True

    def clean(self) -> None:
        errors = {}
        if self.keep_alive and self.kind != ProviderKind.OLLAMA:
            errors["keep_alive"] = "Only Ollama providers take keep_alive."
        # Checked when set (a new row, or a changed value): a stored row that no longer passes is
        # refused at call time instead, without blocking edits of its priority or limits.
        stored = self.stored_endpoint() or {}
        if self.api_key_env and self.api_key_env != stored.get("api_key_env"):
            try:
                api_key_env_check(name=self.api_key_env)
            except ValidationError as exc:
                errors["api_key_env"] = exc.messages
        if self.base_url and self.base_url != stored.get("base_url"):
            try:
                provider_endpoint_check(base_url=self.base_url)
            except ValidationError as exc:
                errors["base_url"] = exc.messages
        if self.check_default_model_on_clean and self.pk:
            names = set(self.models.values_list("name", flat=True))
            try:
                default_model_check(default_model=self.default_model, model_names=names)
            except ValidationError as exc:
                errors["default_model"] = exc.messages
        if errors:
            raise ValidationError(errors)

    def stored_endpoint(self) -> dict[str, str] | None:
        """The stored base URL and key variable; None for a new row."""
        if self.pk is None:
            return None
        return Provider.objects.filter(pk=self.pk).values("base_url", "api_key_env").first()


class PromptStyle(models.TextChoices):
    CHAT = "chat", "chat (an instruction-tuned model)"
    COMPLETION = "completion", "completion (a base model: the request is written as a document for it to continue)"


class LLMModel(models.Model):
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="models")
    name = models.CharField(max_length=120)
    context_window = models.PositiveIntegerField(default=8192, validators=[MinValueValidator(1)])
    max_output_tokens = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="The most tokens one answer may have (the provider refuses more); empty: the context window.",
    )
    system_prompt = models.BooleanField(
        "takes a system prompt",
        default=True,
        help_text="Off for a model whose chat template has no system role (Gemma): the system prompt is then "
        "put at the start of the first user turn instead of being dropped.",
    )
    capabilities = models.JSONField(default=list, blank=True, validators=[validate_capabilities])
    prompt_style = models.CharField(
        max_length=20,
        choices=PromptStyle.choices,
        default=PromptStyle.CHAT,
        help_text="Completion: a base model (no chat tuning) gets the conversation as one document that opens "
        "the answer, on /v1/completions (OpenAI-compatible servers only).",
    )
    is_demo = models.BooleanField(
        "demo model",
        default=False,
        help_text="A model for trying Switchyard (bin/run --local-model): pages say that its answers show the "
        "routing and the ledger, not good code.",
    )

    class Meta:
        verbose_name = "model"
        ordering = ["provider__priority", "name"]
        constraints = [models.UniqueConstraint(fields=["provider", "name"], name="unique_model_per_provider")]

    def __str__(self) -> str:
        return f"{self.provider.name}/{self.name}"

    @property
    def output_limit(self) -> int:
        return self.max_output_tokens or self.context_window

    def clean(self) -> None:
        if (
            self.prompt_style == PromptStyle.COMPLETION
            and self.provider_id
            and self.provider.kind not in COMPLETION_KINDS
        ):
            raise ValidationError(
                {"prompt_style": "Only OpenAI-compatible providers serve completions (/v1/completions)."}
            )


COMPLETION_KINDS = (ProviderKind.OPENAI_COMPATIBLE,)


class Price(models.Model):
    """USD per million tokens, in force from `effective_from` until the next row for the same model."""

    model = models.ForeignKey(LLMModel, on_delete=models.PROTECT, related_name="prices")
    effective_from = models.DateTimeField()
    input_per_mtok = models.DecimalField(
        "input USD / M tokens", max_digits=12, decimal_places=6, validators=[MinValueValidator(Decimal(0))]
    )
    output_per_mtok = models.DecimalField(
        "output USD / M tokens", max_digits=12, decimal_places=6, validators=[MinValueValidator(Decimal(0))]
    )
    cache_write_per_mtok = models.DecimalField(
        "cache write USD / M tokens",
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Prompt tokens written to the provider's prompt cache; empty: they cost the input price.",
    )
    cache_read_per_mtok = models.DecimalField(
        "cache read USD / M tokens",
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Prompt tokens read from the provider's prompt cache; empty: they cost the input price.",
    )

    class Meta:
        ordering = ["model", "-effective_from"]
        constraints = [models.UniqueConstraint(fields=["model", "effective_from"], name="unique_price_start")]
        get_latest_by = "effective_from"

    def __str__(self) -> str:
        return (
            f"{self.model} from {self.effective_from:%Y-%m-%d}: ${self.input_per_mtok} in / ${self.output_per_mtok} out"
        )

    def clean(self) -> None:
        price_change_check(price=self)

    def is_charged(self) -> bool:
        """Some ledger row was charged at this price (or measured its baseline against it)."""
        return LedgerEntry.objects.filter(Q(price=self) | Q(baseline_price=self)).exists()

    def terms_changed(self) -> bool:
        """This row's model, start or figures differ from what is stored."""
        terms = (
            "model_id",
            "effective_from",
            "input_per_mtok",
            "output_per_mtok",
            "cache_write_per_mtok",
            "cache_read_per_mtok",
        )
        stored = Price.objects.filter(pk=self.pk).values_list(*terms).first()
        return stored != tuple(getattr(self, name) for name in terms)


class RoutingPolicy(models.Model):
    """The team's routing settings: one row."""

    target_local_share = models.DecimalField(
        "target local share (%)",
        max_digits=5,
        decimal_places=2,
        default=Decimal("85"),
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(100))],
    )
    baseline_model = models.ForeignKey(
        LLMModel,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The cloud model that savings are measured against.",
    )
    failures_before_cooldown = models.PositiveIntegerField(default=3, validators=[MinValueValidator(1)])
    cooldown_seconds = models.PositiveIntegerField(default=60)
    slot_wait_seconds = models.FloatField(
        default=30.0,
        validators=[MinValueValidator(0)],
        help_text="How long a call waits for a free slot on a busy provider.",
    )
    monthly_cloud_budget_usd = models.DecimalField(
        "monthly cloud budget per user (USD)",
        max_digits=12,
        decimal_places=2,
        default=Decimal("20"),
        validators=[MinValueValidator(Decimal(0))],
        help_text="What each user's calls may cost in the cloud per calendar month (UTC), unless their own "
        "cloud budget says otherwise. Local calls are never limited.",
    )
    user_cloud_capabilities = models.JSONField(
        "cloud capabilities for everyone",
        default=list,
        blank=True,
        validators=[validate_capabilities],
        help_text="Capabilities that send a request to the cloud (no enabled local provider offers them, or a "
        "rule escalates them) which users who are not staff may ask for. Staff may ask for any.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "routing policy"

    def __str__(self) -> str:
        return f"Routing policy (local target {self.target_local_share}%)"

    def save(self, *args, **kwargs) -> None:
        self.pk = 1  # a singleton
        super().save(*args, **kwargs)

    @classmethod
    def get(cls) -> "RoutingPolicy":
        policy, _ = cls.objects.get_or_create(pk=1)
        return policy


class RoutingRule(models.Model):
    """When a request matches, try these providers in this order (instead of plain priority)."""

    name = models.CharField(max_length=64, unique=True, validators=[slug_validator])
    position = models.PositiveIntegerField(
        default=0, help_text="Rules are checked in this order; the first match wins."
    )
    enabled = models.BooleanField(default=True)
    capability = models.CharField(
        max_length=64, blank=True, validators=[capability_validator], help_text="Empty matches any."
    )
    agent = models.CharField(
        max_length=64, blank=True, validators=[slug_validator], help_text="Agent slug; empty matches any."
    )
    min_prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    max_prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    allow_cloud = models.BooleanField(default=True, help_text="May a request fall back to a cloud provider?")
    escalate_above_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Send to the cloud first when the estimated prompt is larger than this."
    )
    escalate_capabilities = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_capabilities],
        help_text="Capabilities treated as complex: cloud first.",
    )
    providers = models.ManyToManyField(Provider, through="RuleProvider", related_name="rules")

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if (
            self.min_prompt_tokens is not None
            and self.max_prompt_tokens is not None
            and self.min_prompt_tokens > self.max_prompt_tokens
        ):
            raise ValidationError({"max_prompt_tokens": "Must not be below min_prompt_tokens."})


class RuleProvider(models.Model):
    rule = models.ForeignKey(RoutingRule, on_delete=models.CASCADE, related_name="steps")
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position"]
        constraints = [models.UniqueConstraint(fields=["rule", "provider"], name="provider_once_per_rule")]

    def __str__(self) -> str:
        return f"{self.rule.name} #{self.position}: {self.provider.name}"


class ModelAlias(models.Model):
    """A model name a client may give that is no concrete model: the router chooses (local first,
    rules, escalation, fallbacks), as for an agent run of the alias's capability. `auto` is built in
    (routing.table) when no row names it."""

    name = models.CharField(
        max_length=64,
        unique=True,
        validators=[slug_validator],
        help_text="What clients put as the model, e.g. code; not the name of a concrete model.",
    )
    capability = models.CharField(
        max_length=64,
        blank=True,
        validators=[capability_validator],
        help_text="Requests are routed as for this capability (its rules and escalation); empty: any, as auto.",
    )
    description = models.CharField(max_length=200, blank=True, help_text="Shown to operators; clients see the name.")
    enabled = models.BooleanField(default=True, help_text="Off: requests naming it are refused as unknown models.")

    class Meta:
        verbose_name_plural = "model aliases"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    # The loader checks the name against the models in the files and the database together.
    check_model_names_on_clean = True

    def clean(self) -> None:
        if self.check_model_names_on_clean and self.name:
            clashes = LLMModel.objects.filter(name=self.name).select_related("provider")
            try:
                alias_name_check(name=self.name, models=[str(model) for model in clashes])
            except ValidationError as exc:
                raise ValidationError({"name": exc.messages}) from None


AUTO_ALIAS = "auto"  # the alias every install has: routed like an agent run with no capability


class CloudBudget(models.Model):
    """One user's monthly cloud budget; a user with no row (or an empty limit) has the routing
    policy's. The row is also what a cloud attempt locks while it reserves its worst case
    (routing.budget), so it is created on a user's first cloud attempt. A team budget would be a
    second row kind (a team instead of a user) that the same attempt locks and checks too."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="cloud_budget")
    monthly_usd = models.DecimalField(
        "monthly limit (USD)",
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Empty: the routing policy's monthly cloud budget per user.",
    )

    class Meta:
        verbose_name = "cloud budget"
        ordering = ["user__username"]

    def __str__(self) -> str:
        return f"Cloud budget of {self.user}"


class CallOutcome(models.TextChoices):
    SUCCESS = "success", "success"
    TRANSIENT = "transient_error", "transient error"
    PERMANENT = "permanent_error", "permanent error"
    CANCELLED = "cancelled", "cancelled"  # cut by its caller mid-call; not the provider's failure
    # Written before the call, so a call whose caller dies still has its row; completed afterwards.
    STARTED = "started", "started"
    # A started row whose caller is gone (its run was taken over or ran past its time limit): the
    # call may have been made and billed. Priced at the estimated prompt and no completion.
    UNKNOWN = "unknown", "unknown outcome"


# Rows that are not (yet) a finished call: neither a success nor a provider's error.
UNFINISHED_OUTCOMES = (CallOutcome.STARTED, CallOutcome.UNKNOWN)
# Rows where the provider answered with an error (what the error rate counts).
PROVIDER_ERRORS = (CallOutcome.TRANSIENT, CallOutcome.PERMANENT)


class LedgerEntry(models.Model):
    """One attempt at one provider: what it cost, how long it took, and why it was tried."""

    created_at = models.DateTimeField(db_index=True, help_text="When the attempt started (UTC).")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="+")
    model_name = models.CharField(max_length=120)
    is_local = models.BooleanField()
    outcome = models.CharField(max_length=20, choices=CallOutcome.choices)
    error = models.TextField(blank=True)
    problem = models.CharField(
        max_length=20,
        blank=True,
        default="",
        db_default="",  # raw INSERTs that predate it (fill_ledger) leave it empty
        help_text="What the failure stands for, when it has a fix of its own (routing.providers.base.Problem).",
    )
    reason = models.CharField(max_length=300, blank=True, help_text="Why the router chose this attempt.")
    attempt = models.PositiveSmallIntegerField(default=1)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    tokens_estimated = models.BooleanField(
        default=False, help_text="The provider reported no usage (or the outcome is unknown); counts are estimates."
    )
    # Database defaults too: rows inserted by SQL (fill_ledger) name only the older columns.
    cache_write_tokens = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Part of prompt_tokens written to the provider's prompt cache."
    )
    cache_read_tokens = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Part of prompt_tokens read from the provider's prompt cache."
    )
    finish_reason = models.CharField(
        max_length=40,
        blank=True,
        default="",
        db_default="",
        help_text="The provider's finish_reason / stop_reason / done_reason.",
    )
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField("time to first token (ms)", null=True, blank=True)
    price = models.ForeignKey(Price, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    cost_usd = models.DecimalField(
        max_digits=18, decimal_places=10, null=True, blank=True, help_text="Empty when no price was in force."
    )
    baseline_price = models.ForeignKey(Price, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    baseline_cost_usd = models.DecimalField(max_digits=18, decimal_places=10, null=True, blank=True)
    reserved_usd = models.DecimalField(
        max_digits=18,
        decimal_places=10,
        null=True,
        blank=True,
        help_text="A cloud call's worst-case cost, held against its user's budget until the call completes.",
    )
    agent = models.CharField(max_length=64, blank=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    team = models.ForeignKey(
        "accounts.Team",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The user's team.",
    )
    api_key = models.ForeignKey(
        "accounts.ApiKey",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name="API key",
        help_text="The personal key a gateway client sent.",
    )
    endpoint = models.CharField(
        max_length=40,
        blank=True,
        default="",
        db_default="",
        help_text="The gateway endpoint called, e.g. /v1/chat/completions.",
    )
    client = models.CharField(
        max_length=200, blank=True, default="", db_default="", help_text="The gateway client's User-Agent."
    )
    run_id = models.BigIntegerField(null=True, blank=True, db_index=True, help_text="The agent run this call served.")
    idempotency_key = models.CharField(
        max_length=100,
        null=True,
        blank=True,
        unique=True,
        help_text=(
            "One per attempt: run:<id>:claim:<token>:attempt:<n> for a run, route:<uuid>:attempt:<n> or "
            "check:<uuid>:attempt:1 otherwise; empty only on rows written before keys existed (and fill_ledger's)."
        ),
    )

    class Meta:
        verbose_name = "ledger entry"
        verbose_name_plural = "ledger"
        ordering = ["-created_at", "-id"]
        indexes = [
            # The sweeper looks for started rows left behind; they are few, so the index is tiny.
            models.Index(fields=["created_at"], condition=Q(outcome="started"), name="ledger_started"),
            # A user's cloud spend this month (routing.budget), read before every cloud attempt.
            models.Index(fields=["user", "created_at"], condition=Q(is_local=False), name="ledger_user_cloud"),
            models.Index(fields=["team", "created_at"], condition=Q(is_local=False), name="ledger_team_cloud"),
            models.Index(fields=["api_key", "created_at"], condition=Q(is_local=False), name="ledger_key_cloud"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.provider_id}/{self.model_name} {self.outcome}"
