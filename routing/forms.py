"""Admin forms for routing: they only validate; saving and cache invalidation live in routing/admin.py."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from routing.models import LLMModel, ModelAlias, Price, PromptStyle, Provider, RoutingPolicy, RoutingRule
from routing.rules import (
    alias_name_check,
    default_model_check,
    provider_priority_check,
    rule_provider_check,
    validate_capabilities,
)


class CapabilitiesField(forms.CharField):
    """A JSON list of capability names, edited as `code_generation, testing`."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", "Comma-separated lowercase words, e.g. code_generation, testing.")
        kwargs.setdefault("widget", forms.TextInput(attrs={"size": 50}))
        super().__init__(**kwargs)

    def prepare_value(self, value: object) -> object:
        if isinstance(value, list | tuple):
            return ", ".join(str(item) for item in value)
        return value

    def to_python(self, value: object) -> list[str]:
        if isinstance(value, list):
            return value
        text = super().to_python(value) or ""
        return [item.strip() for item in text.split(",") if item.strip()]

    def validate(self, value: list[str]) -> None:
        super().validate(value)
        validate_capabilities(value)

    def has_changed(self, initial: object, data: object) -> bool:
        return list(initial or []) != self.to_python(data)


def _http_by_default(field: models.Field, **kwargs) -> forms.Field | None:
    if isinstance(field, models.URLField):
        kwargs.setdefault("assume_scheme", "http")
    return field.formfield(**kwargs)


class ProviderForm(forms.ModelForm):
    capabilities = CapabilitiesField()
    # Hosts on a LAN are usually plain http; an explicit scheme always wins.
    base_url = forms.URLField(max_length=300, assume_scheme="http")

    class Meta:
        model = Provider
        # The admin builds this form without base_url for users who may not change it (a read-only
        # field); the model's field it then falls back to takes the same scheme.
        formfield_callback = _http_by_default
        fields = (
            "name",
            "kind",
            "base_url",
            "is_local",
            "priority",
            "enabled",
            "api_key_env",
            "default_model",
            "capabilities",
            "connect_timeout_s",
            "request_timeout_s",
            "max_in_flight",
            "slot_wait_s",
            "keep_alive",
        )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.instance.check_default_model_on_clean = False  # ModelInlineFormSet checks it, new rows included

    def clean_priority(self) -> int | None:
        priority = self.cleaned_data.get("priority")
        if priority is None:
            return priority
        holders = Provider.objects.filter(priority=priority).exclude(pk=self.instance.pk).values_list("name", flat=True)
        name = self.cleaned_data.get("name") or self.instance.name
        provider_priority_check(priorities={**dict.fromkeys(holders, priority), name: priority})
        return priority


class ProviderPriorityFormSet(forms.BaseModelFormSet):
    """The providers changelist: priorities are checked across the whole table, after the edit,
    counting both the rows on the page and every provider not on it."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        submitted = {form.instance.pk: form for form in self.forms if form.cleaned_data}
        priorities = dict(Provider.objects.exclude(pk__in=list(submitted)).values_list("name", "priority"))
        priorities.update({form.instance.name: form.cleaned_data["priority"] for form in submitted.values()})
        try:
            provider_priority_check(priorities=priorities)
        except ValidationError as exc:
            for clash in exc.error_list:
                names = clash.params["providers"]
                for form in submitted.values():
                    if form.instance.name in names:
                        others = ", ".join(name for name in names if name != form.instance.name)
                        form.add_error("priority", f"Also given to {others}.")
            raise


class ModelInlineFormSet(forms.BaseInlineFormSet):
    """A provider's models: its default model must stay among them."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        kept = {
            form.cleaned_data.get("name")
            for form in self.forms
            if form.cleaned_data and not self._should_delete_form(form)
        }
        default_model_check(default_model=self.instance.default_model, model_names=kept)


class LLMModelForm(forms.ModelForm):
    capabilities = CapabilitiesField()

    class Meta:
        model = LLMModel
        fields = (
            "provider",
            "name",
            "context_window",
            "max_output_tokens",
            "system_prompt",
            "prompt_style",
            "capabilities",
            "is_demo",
        )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Left out of a post (a script, a form saved before the field existed): the model is a chat model.
        self.fields["prompt_style"].required = False

    def clean_prompt_style(self) -> str:
        return self.cleaned_data.get("prompt_style") or PromptStyle.CHAT

    def clean(self) -> dict:
        cleaned = super().clean()
        name = cleaned.get("name")
        if name and ModelAlias.objects.filter(name=name).exists():
            # In the provider's models inline the provider is the instance's (a new one: not saved yet).
            provider = cleaned.get("provider") or getattr(self.instance, "provider", None)
            label = f"{provider.name}/{name}" if provider else name
            try:
                alias_name_check(name=name, models=[label])
            except ValidationError as exc:
                self.add_error("name", exc.messages)
        return cleaned


class ModelAliasForm(forms.ModelForm):
    class Meta:
        model = ModelAlias
        fields = ("name", "capability", "description", "enabled")


class PriceForm(forms.ModelForm):
    class Meta:
        model = Price
        fields = (
            "model",
            "effective_from",
            "input_per_mtok",
            "output_per_mtok",
            "cache_write_per_mtok",
            "cache_read_per_mtok",
        )

    def clean_effective_from(self):
        value = self.cleaned_data.get("effective_from")
        if value is not None and timezone.is_naive(value):
            raise ValidationError("Give a time zone (times are stored in UTC).", code="naive")
        return value


class RoutingPolicyForm(forms.ModelForm):
    user_cloud_capabilities = CapabilitiesField(
        label="Cloud capabilities for everyone",
        help_text=RoutingPolicy._meta.get_field("user_cloud_capabilities").help_text,
    )

    class Meta:
        model = RoutingPolicy
        fields = (
            "target_local_share",
            "baseline_model",
            "failures_before_cooldown",
            "cooldown_seconds",
            "slot_wait_seconds",
            "monthly_cloud_budget_usd",
            "user_cloud_capabilities",
        )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        baseline = self.fields["baseline_model"]
        baseline.queryset = LLMModel.objects.filter(provider__is_local=False).select_related("provider")


class RoutingRuleForm(forms.ModelForm):
    escalate_capabilities = CapabilitiesField(help_text="Comma-separated capabilities treated as complex: cloud first.")

    class Meta:
        model = RoutingRule
        fields = (
            "name",
            "position",
            "enabled",
            "capability",
            "agent",
            "min_prompt_tokens",
            "max_prompt_tokens",
            "allow_cloud",
            "escalate_above_tokens",
            "escalate_capabilities",
        )


class RuleProviderInlineFormSet(forms.BaseInlineFormSet):
    """A rule's providers: tried in position order, so two may not share a position; and no
    cloud provider in a rule that allows no cloud (`self.instance` holds the rule as posted)."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        positions: dict[int, str] = {}
        for form in self.forms:
            if not form.cleaned_data or self._should_delete_form(form):
                continue
            position, provider = form.cleaned_data.get("position"), form.cleaned_data.get("provider")
            if provider is not None:
                rule_provider_check(
                    allow_cloud=self.instance.allow_cloud,
                    provider_name=provider.name,
                    provider_is_local=provider.is_local,
                )
            if position in positions:
                raise ValidationError(
                    f"{provider} and {positions[position]} share position {position}: give each its own.",
                    code="duplicate_position",
                )
            positions[position] = str(provider)
