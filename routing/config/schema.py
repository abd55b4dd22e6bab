"""The shape of the routing sections: which keys, of which types, referring to what.

`routing_check` turns the merged files into typed specs, each remembering its key path, so
the model validation that follows (`routing.config.validation`) can report at the right line.
Here: unknown and missing keys, types, defaults by provider kind, and references between
sections (a rule's providers, the baseline model).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings

from routing.config.checker import (
    Checker,
    Field,
    Invalid,
    boolean,
    capability_list,
    choice,
    decimal_number,
    empty_list,
    float_number,
    moment,
    text,
    url,
    whole_number,
)
from routing.config.loading import Config, ConfigPath, kind_of, plain
from routing.models import PromptStyle, ProviderKind

# A `cost:` shortcut stores one price row from this date: "what local inference costs" has no start.
LOCAL_COST_FROM = datetime(2000, 1, 1, tzinfo=UTC)
KIND_DEFAULTS = {
    ProviderKind.OLLAMA: {"api_key_env": "", "local": True},  # base_url: settings.OLLAMA_HOST
    ProviderKind.ANTHROPIC: {
        "base_url": "https://api.anthropic.com",
        "api_key_env": "ANTHROPIC_API_KEY",
        "local": False,
    },
    ProviderKind.OPENAI: {"base_url": "https://api.openai.com", "api_key_env": "OPENAI_API_KEY", "local": False},
    ProviderKind.OPENAI_COMPATIBLE: {"api_key_env": "", "local": False},
}


@dataclass
class PriceSpec:
    path: ConfigPath
    effective_from: datetime
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cache_write_per_mtok: Decimal | None = None  # empty: cache writes cost the input price
    cache_read_per_mtok: Decimal | None = None  # empty: cache reads cost the input price

    def fields(self) -> dict[str, Any]:
        return {
            "input_per_mtok": self.input_per_mtok,
            "output_per_mtok": self.output_per_mtok,
            "cache_write_per_mtok": self.cache_write_per_mtok,
            "cache_read_per_mtok": self.cache_read_per_mtok,
        }


@dataclass
class ModelSpec:
    path: ConfigPath
    name: str
    context_window: int
    system_prompt: bool
    capabilities: list[str]
    prices: list[PriceSpec]
    max_output_tokens: int | None = None
    prompt_style: str = "chat"
    demo: bool = False

    def fields(self) -> dict[str, Any]:
        return {
            "context_window": self.context_window,
            "max_output_tokens": self.max_output_tokens,
            "system_prompt": self.system_prompt,
            "capabilities": self.capabilities,
            "prompt_style": self.prompt_style,
            "is_demo": self.demo,
        }


@dataclass
class ProviderSpec:
    path: ConfigPath
    name: str
    kind: str
    base_url: str
    api_key_env: str
    is_local: bool
    priority: int
    enabled: bool
    capabilities: list[str]
    default_model: str
    connect_timeout_s: float
    request_timeout_s: float
    max_in_flight: int | None
    slot_wait_s: float | None
    keep_alive: str
    models: list[ModelSpec]

    def fields(self) -> dict[str, Any]:
        """The Provider row's values, its name aside."""
        return {key: value for key, value in self.__dict__.items() if key not in ("path", "name", "models")}


@dataclass
class PolicySpec:
    target_local_share: Decimal
    baseline: tuple[str, str] | None
    failures_before_cooldown: int
    cooldown_seconds: int
    slot_wait_seconds: float
    monthly_cloud_budget_usd: Decimal
    user_cloud_capabilities: list[str]

    def fields(self) -> dict[str, Any]:
        """The RoutingPolicy row's values, the baseline model aside (it is a reference)."""
        return {key: value for key, value in self.__dict__.items() if key != "baseline"}


@dataclass
class RuleSpec:
    path: ConfigPath
    name: str
    enabled: bool
    capability: str
    agent: str
    min_prompt_tokens: int | None
    max_prompt_tokens: int | None
    allow_cloud: bool
    escalate_above_tokens: int | None
    escalate_capabilities: list[str]
    providers: list[str]

    def fields(self) -> dict[str, Any]:
        """The RoutingRule row's values, its name and providers aside."""
        return {key: value for key, value in self.__dict__.items() if key not in ("path", "name", "providers")}


@dataclass
class AliasSpec:
    path: ConfigPath
    name: str
    capability: str
    description: str
    enabled: bool

    def fields(self) -> dict[str, Any]:
        """The ModelAlias row's values, its name aside."""
        return {key: value for key, value in self.__dict__.items() if key not in ("path", "name")}


@dataclass
class RoutingSpec:
    providers: list[ProviderSpec]
    policy: PolicySpec
    rules: list[RuleSpec]
    aliases: list[AliasSpec]


def _kind_default(key: str) -> Callable[[dict], Any]:
    def default(values: dict) -> Any:
        kind = values.get("kind")
        if kind is None:
            return None  # the missing or wrong kind is reported already
        if key == "base_url" and kind == ProviderKind.OLLAMA:
            try:
                return url(settings.OLLAMA_HOST)
            except Invalid:  # the environment's value is not shown: it may be anything
                raise Invalid("is not given, and OLLAMA_HOST (its default) is not an http(s) URL") from None
        if key not in KIND_DEFAULTS[kind]:
            raise Invalid(f"is required for a {kind} provider")
        return KIND_DEFAULTS[kind][key]

    return default


def _keep_alive(value: Any) -> str:
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        value = plain(value)  # `keep_alive: 300` means 300 seconds, as Ollama reads it
    return text(env=True, blank=True)(value)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float_number(value)


PROVIDER_FIELDS = {
    "kind": Field(choice(ProviderKind.values)),
    "base_url": Field(url, _kind_default("base_url")),
    "api_key_env": Field(text(env=True, blank=True), _kind_default("api_key_env")),
    "local": Field(boolean, _kind_default("local")),
    "priority": Field(whole_number()),
    "enabled": Field(boolean, True),
    "capabilities": Field(capability_list, empty_list),
    "default_model": Field(text(env=True), None),
    "connect_timeout_s": Field(float_number, 5.0),
    "request_timeout_s": Field(float_number, 120.0),
    "max_in_flight": Field(whole_number(optional=True), None),
    "slot_wait_s": Field(_optional_float, None),
    "keep_alive": Field(_keep_alive, ""),
    "models": Field(lambda value: value),  # checked item by item below
}
MODEL_FIELDS = {
    "name": Field(text()),
    "context_window": Field(whole_number(), 8192),
    "max_output_tokens": Field(whole_number(optional=True), None),
    "system_prompt": Field(boolean, True),
    "capabilities": Field(capability_list, empty_list),
    "prompt_style": Field(choice(PromptStyle.values), PromptStyle.CHAT),
    "demo": Field(boolean, False),
    "prices": Field(lambda value: value, None),
    "cost": Field(lambda value: value, None),
}
PRICE_FIELDS = {
    "effective_from": Field(moment),
    "input_per_mtok": Field(decimal_number),
    "output_per_mtok": Field(decimal_number),
    "cache_write_per_mtok": Field(decimal_number, None),
    "cache_read_per_mtok": Field(decimal_number, None),
}
COST_FIELDS = {
    "input_per_mtok": Field(decimal_number, Decimal(0)),
    "output_per_mtok": Field(decimal_number, Decimal(0)),
}
POLICY_FIELDS = {
    "local_model_target_percentage": Field(decimal_number, Decimal(85)),
    "baseline_model": Field(text(pattern=r"[^/]+/.+", hint="must be provider/model"), None),
    "monthly_cloud_budget_usd": Field(decimal_number, Decimal(20)),
    "user_cloud_capabilities": Field(capability_list, empty_list),
}
LIMIT_FIELDS = {
    "failures_before_cooldown": Field(whole_number(), 3),
    "cooldown_seconds": Field(whole_number(), 60),
    "slot_wait_seconds": Field(float_number, 30.0),
}
_TOKENS = whole_number(optional=True)
RULE_FIELDS = {
    "name": Field(text()),
    "enabled": Field(boolean, True),
    "capability": Field(text(blank=True), ""),
    "agent": Field(text(blank=True), ""),
    "min_prompt_tokens": Field(_TOKENS, None),
    "max_prompt_tokens": Field(_TOKENS, None),
    "allow_cloud": Field(boolean, True),
    "escalate_above_tokens": Field(_TOKENS, None),
    "escalate_capabilities": Field(capability_list, empty_list),
    "providers": Field(lambda value: value, empty_list),
}
ALIAS_FIELDS = {
    "name": Field(text()),
    "capability": Field(text(blank=True), ""),
    "description": Field(text(blank=True), ""),
    "enabled": Field(boolean, True),
}


def routing_check(*, config: Config, checker: Checker) -> RoutingSpec:
    """Every routing section, checked; problems go to `checker` (the caller raises)."""
    providers = _check_providers(config, checker)
    policy = _check_policy(config, checker, providers)
    rules = _check_rules(config, checker, providers)
    aliases = _check_aliases(config, checker, providers)
    return RoutingSpec(providers=providers, policy=policy, rules=rules, aliases=aliases)


def _check_providers(config: Config, checker: Checker) -> list[ProviderSpec]:
    section = checker.mapping(("providers",), config.section("providers"), "provider names") or {}
    result = []
    for name, raw in section.items():
        spec = _check_provider(checker, ("providers", name), name, raw)
        if spec is not None:
            result.append(spec)
    return result


def _check_provider(checker: Checker, path: ConfigPath, name: str, raw: Any) -> ProviderSpec | None:
    name = checker.value(path, name, text())
    raw = checker.mapping(path, raw, "the provider's settings")
    if name is None or raw is None:
        return None
    if "kind" not in raw and name in ProviderKind.values:
        raw = {**raw, "kind": name}  # `ollama:` alone means an Ollama provider
    values = checker.fields(path, raw, PROVIDER_FIELDS)
    models = _check_models(checker, path, raw.get("models"), is_local=bool(values["local"]))
    if not models and "models" in raw:
        checker.error((*path, "models"), "a provider needs at least one model")
    values["default_model"] = _default_model(values["default_model"], models)
    values["is_local"] = values.pop("local")
    values["models"] = models
    return ProviderSpec(path=path, name=name, **values)


def _default_model(default: str | None, models: list[ModelSpec]) -> str:
    """Unset, it is the first model; whether a set one is among them is `routing_validate`'s."""
    if default is None:
        return models[0].name if models else ""
    return default


def _check_models(checker: Checker, provider_path: ConfigPath, raw: Any, *, is_local: bool) -> list[ModelSpec]:
    path = (*provider_path, "models")
    result, seen = [], set()
    for model_path, item in checker.items(path, raw, "models"):
        values = checker.fields(model_path, item, MODEL_FIELDS)
        if values["name"] in seen:
            checker.error((*model_path, "name"), f"model {values['name']!r} is listed twice")
        seen.add(values["name"])
        values["prices"] = _check_prices(checker, model_path, item, is_local=is_local)
        del values["cost"]
        result.append(ModelSpec(path=model_path, **values))
    return result


def _check_prices(checker: Checker, model_path: ConfigPath, item: dict, *, is_local: bool) -> list[PriceSpec]:
    if "cost" in item and "prices" in item:
        checker.error((*model_path, "cost"), "give either cost (one figure) or prices (with dates), not both")
        return []
    if "cost" in item or ("prices" not in item and is_local):
        # Local inference costs what the team says, zero by default: stored as a real price row
        # so that a missing price can always mean "unknown", never "free".
        path = (*model_path, "cost")
        cost = checker.mapping(path, item.get("cost"), "input_per_mtok and output_per_mtok")
        values = checker.fields(path, cost or {}, COST_FIELDS)
        return [PriceSpec(path=path, effective_from=LOCAL_COST_FROM, **values)]
    prices, starts = [], set()
    for price_path, raw in checker.items((*model_path, "prices"), item.get("prices"), "prices"):
        price = PriceSpec(path=price_path, **checker.fields(price_path, raw, PRICE_FIELDS))
        if price.effective_from is not None and price.effective_from in starts:
            checker.error(
                (*price_path, "effective_from"), f"a price from {price.effective_from:%Y-%m-%d} is listed twice"
            )
        starts.add(price.effective_from)
        prices.append(price)
    if not prices:
        checker.warn(model_path, "no price: calls to this model will be recorded without a cost")
    return prices


def _check_policy(config: Config, checker: Checker, providers: list[ProviderSpec]) -> PolicySpec:
    cost = checker.mapping(("cost_optimization",), config.section("cost_optimization"), "its settings") or {}
    limits = checker.mapping(("routing",), config.section("routing"), "its settings") or {}
    values = checker.fields(("cost_optimization",), cost, POLICY_FIELDS)
    limit_values = checker.fields(("routing",), limits, LIMIT_FIELDS)
    baseline = None
    if values["baseline_model"]:
        provider_name, model_name = values["baseline_model"].split("/", 1)
        provider = next((p for p in providers if p.name == provider_name), None)
        known = [f"{p.name}/{m.name}" for p in providers for m in p.models if not p.is_local]
        if provider is None or model_name not in [m.name for m in provider.models]:
            close = difflib.get_close_matches(values["baseline_model"], known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; cloud models: {', '.join(known) or 'none'}"
            checker.error(("cost_optimization", "baseline_model"), f"no model {values['baseline_model']!r}{hint}")
        elif provider.is_local:
            checker.error(
                ("cost_optimization", "baseline_model"), "must be a cloud model: savings are measured against it"
            )
        else:
            baseline = (provider_name, model_name)
    return PolicySpec(
        target_local_share=values["local_model_target_percentage"],
        baseline=baseline,
        monthly_cloud_budget_usd=values["monthly_cloud_budget_usd"],
        user_cloud_capabilities=values["user_cloud_capabilities"],
        **limit_values,
    )


def _check_rules(config: Config, checker: Checker, providers: list[ProviderSpec]) -> list[RuleSpec]:
    by_name = {provider.name: provider for provider in providers}
    result, seen = [], set()
    for path, raw in checker.items(("rules",), config.section("rules"), "rules"):
        values = checker.fields(path, raw, RULE_FIELDS)
        if values["name"] in seen:
            checker.error((*path, "name"), f"a rule named {values['name']!r} is listed twice")
        seen.add(values["name"])
        values["providers"] = _check_rule_providers(checker, path, values["providers"], by_name)
        result.append(RuleSpec(path=path, **values))
    return result


def _check_rule_providers(checker: Checker, path: ConfigPath, raw: Any, by_name: dict) -> list[str]:
    if not isinstance(raw, list):
        checker.error((*path, "providers"), f"must be a list of provider names, got {kind_of(raw)}")
        return []
    names = []
    for index, name in enumerate(raw):
        step = (*path, "providers", index)
        if not isinstance(name, str) or name not in by_name:
            close = difflib.get_close_matches(str(name), list(by_name), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; providers: {', '.join(by_name) or 'none'}"
            checker.error(step, f"no provider named {name!r}{hint}")
        elif name in names:
            checker.error(step, f"{name} is listed twice")
        else:
            names.append(name)
    return names


def _check_aliases(config: Config, checker: Checker, providers: list[ProviderSpec]) -> list[AliasSpec]:
    offered = {item for provider in providers for item in provider.capabilities or ()}
    offered |= {item for provider in providers for model in provider.models for item in model.capabilities or ()}
    result, seen = [], set()
    for path, raw in checker.items(("aliases",), config.section("aliases"), "aliases"):
        values = checker.fields(path, raw, ALIAS_FIELDS)
        if values["name"] in seen:
            checker.error((*path, "name"), f"an alias named {values['name']!r} is listed twice")
        seen.add(values["name"])
        if values["capability"] and values["capability"] not in offered:
            checker.warn(
                (*path, "capability"), f"no provider or model lists {values['capability']}: requests will find none"
            )
        result.append(AliasSpec(path=path, **values))
    return result
