"""Dumping: the database as YAML that `load_routing` loads back to the same state."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import yaml
from django.conf import settings

from routing.config.checker import Invalid, url
from routing.config.loading import SECTIONS, looks_like_section
from routing.config.schema import LOCAL_COST_FROM
from routing.models import LLMModel, ModelAlias, Price, PromptStyle, Provider, ProviderKind, RoutingRule
from routing.selectors import routing_policy

# The connection details of a local provider live in local_provider.yaml; these stay in llm_routing.yaml.
ROUTING_FIELDS = ("priority", "enabled", "capabilities")


def _moment_out(value: datetime) -> date | datetime:
    value = value.astimezone(UTC)
    return value.date() if value.timetz() == time(0, tzinfo=UTC) else value


def _model_out(model: LLMModel, *, is_local: bool) -> dict:
    prices = sorted(model.prices.all(), key=lambda price: price.effective_from)
    out: dict[str, Any] = {
        "name": model.name,
        "context_window": model.context_window,
        "capabilities": model.capabilities,
    }
    if model.max_output_tokens is not None:
        out["max_output_tokens"] = model.max_output_tokens
    if not model.system_prompt:
        out["system_prompt"] = False
    if model.prompt_style != PromptStyle.CHAT:
        out["prompt_style"] = model.prompt_style
    if model.is_demo:
        out["demo"] = True
    if is_local and len(prices) == 1 and prices[0].effective_from == LOCAL_COST_FROM:
        out["cost"] = {"input_per_mtok": prices[0].input_per_mtok, "output_per_mtok": prices[0].output_per_mtok}
    else:
        out["prices"] = [_price_out(price) for price in prices]
    return out


def _price_out(price: Price) -> dict[str, Any]:
    out: dict[str, Any] = {
        "effective_from": _moment_out(price.effective_from),
        "input_per_mtok": price.input_per_mtok,
        "output_per_mtok": price.output_per_mtok,
    }
    # Cache prices only where set: empty means "the input price", which the key's absence says.
    for name in ("cache_write_per_mtok", "cache_read_per_mtok"):
        if getattr(price, name) is not None:
            out[name] = getattr(price, name)
    return out


def _base_url_out(provider: Provider) -> str:
    # The Ollama host follows OLLAMA_HOST: keep the reference when the database agrees with it,
    # so the exported file loads back the same here and still moves with the variable elsewhere.
    try:
        follows_env = provider.kind == ProviderKind.OLLAMA and provider.base_url == url(settings.OLLAMA_HOST)
    except Invalid:
        follows_env = False
    return f"${{OLLAMA_HOST:-{provider.base_url}}}" if follows_env else provider.base_url


def _provider_out(provider: Provider) -> dict:
    out: dict[str, Any] = {
        "kind": provider.kind,
        "local": provider.is_local,
        "base_url": _base_url_out(provider),
        "api_key_env": provider.api_key_env,  # the variable's name; the key never leaves the environment
        "priority": provider.priority,
        "enabled": provider.enabled,
        "capabilities": provider.capabilities,
        "default_model": provider.default_model,
        "connect_timeout_s": provider.connect_timeout_s,
        "request_timeout_s": provider.request_timeout_s,
        "max_in_flight": provider.max_in_flight,
    }
    if provider.slot_wait_s is not None:
        out["slot_wait_s"] = provider.slot_wait_s
    if provider.kind == ProviderKind.OLLAMA or provider.keep_alive:
        out["keep_alive"] = provider.keep_alive
    out["models"] = [_model_out(model, is_local=provider.is_local) for model in provider.models.order_by("name")]
    return out


def routing_dump(*, extra_sections: Sequence[str] = ()) -> tuple[dict, dict]:
    """(llm_routing.yaml, local_provider.yaml) as data: a local provider's connection details
    go to the second, its priority and capabilities stay with the routing."""
    sections = (*SECTIONS, *extra_sections)
    policy = routing_policy()  # exporting never writes
    baseline = policy.baseline_model
    routing_doc: dict[str, Any] = {
        "cost_optimization": {
            "local_model_target_percentage": policy.target_local_share,
            "baseline_model": f"{baseline.provider.name}/{baseline.name}" if baseline else None,
            "monthly_cloud_budget_usd": policy.monthly_cloud_budget_usd,
            "user_cloud_capabilities": policy.user_cloud_capabilities,
        },
        "routing": {
            "failures_before_cooldown": policy.failures_before_cooldown,
            "cooldown_seconds": policy.cooldown_seconds,
            "slot_wait_seconds": policy.slot_wait_seconds,
        },
    }
    if baseline is None:  # left out, as the loader reads it: null is not a model name
        del routing_doc["cost_optimization"]["baseline_model"]
    local_doc: dict[str, Any] = {}
    for provider in Provider.objects.order_by("priority", "name").prefetch_related("models__prices"):
        out = _provider_out(provider)
        if provider.is_local:
            details = {key: value for key, value in out.items() if key not in ROUTING_FIELDS}
            _put_provider(local_doc, provider.name, details, sections)
            out = {key: out[key] for key in ROUTING_FIELDS}
        _put_provider(routing_doc, provider.name, out, sections)
    routing_doc["rules"] = [_rule_out(rule) for rule in RoutingRule.objects.order_by("position", "name")]
    routing_doc["aliases"] = [_alias_out(alias) for alias in ModelAlias.objects.order_by("name")]
    return routing_doc, local_doc


def _put_provider(document: dict, name: str, out: dict, sections: Sequence[str]) -> None:
    if looks_like_section(name, sections):
        document.setdefault("providers", {})[name] = out
    else:
        document[name] = out


def _rule_out(rule: RoutingRule) -> dict:
    return {
        "name": rule.name,
        "enabled": rule.enabled,
        "capability": rule.capability,
        "agent": rule.agent,
        "min_prompt_tokens": rule.min_prompt_tokens,
        "max_prompt_tokens": rule.max_prompt_tokens,
        "allow_cloud": rule.allow_cloud,
        "escalate_above_tokens": rule.escalate_above_tokens,
        "escalate_capabilities": rule.escalate_capabilities,
        "providers": list(rule.steps.order_by("position").values_list("provider__name", flat=True)),
    }


def _alias_out(alias: ModelAlias) -> dict:
    out: dict[str, Any] = {"name": alias.name}
    if alias.capability:
        out["capability"] = alias.capability
    if alias.description:
        out["description"] = alias.description
    if not alias.enabled:
        out["enabled"] = False
    return out


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)  # indent list items under their key: easier to read


def _represent_decimal(dumper: yaml.SafeDumper, value: Decimal) -> yaml.ScalarNode:
    shown = format(value.normalize(), "f")
    return dumper.represent_scalar("tag:yaml.org,2002:float", shown if "." in shown else f"{shown}.0")


def _represent_text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None  # prompts stay readable as blocks
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_list(dumper: yaml.SafeDumper, value: list) -> yaml.SequenceNode:
    flat = all(isinstance(item, str | int | float | Decimal) for item in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flat or None)


_Dumper.add_representer(Decimal, _represent_decimal)
_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(str, _represent_text)


def yaml_text(document: dict, *, header: str = "") -> str:
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return f"{header}{body}"
