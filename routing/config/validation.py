"""The models' own validation, run on what the files describe, reported at file, line and key.

Field validators and `clean()` (names, capabilities, limits, a charged price that cannot
change) and the rules in `routing.rules` are written once; the admin runs them through its
forms, the loader here. Nothing is written: this runs inside the load's transaction, just
before `routing_apply`, and any problem rolls the whole load back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models as db_models

from routing.config.checker import Checker
from routing.config.loading import ConfigPath
from routing.config.schema import ModelSpec, RoutingSpec
from routing.models import LLMModel, ModelAlias, Price, Provider, RoutingPolicy, RoutingRule
from routing.rules import alias_name_check, default_model_check, provider_priority_check, rule_provider_check

# Where the policy's fields are written: it spans two sections.
_POLICY_KEYS = {
    "target_local_share": ("cost_optimization", "local_model_target_percentage"),
    "baseline_model": ("cost_optimization", "baseline_model"),
    "monthly_cloud_budget_usd": ("cost_optimization", "monthly_cloud_budget_usd"),
    "user_cloud_capabilities": ("cost_optimization", "user_cloud_capabilities"),
    "failures_before_cooldown": ("routing", "failures_before_cooldown"),
    "cooldown_seconds": ("routing", "cooldown_seconds"),
    "slot_wait_seconds": ("routing", "slot_wait_seconds"),
}


def model_check(
    obj: db_models.Model,
    *,
    checker: Checker,
    path: ConfigPath,
    keys: Mapping[str, ConfigPath] | None = None,
    exclude: Sequence[str] = (),
) -> None:
    """Run `obj.full_clean()`; each message goes to the key of its field (`keys` maps the
    fields the files spell differently, relative to `path`). Uniqueness is the schema's: the
    files name each row once, and rows are matched to the database by those names."""
    try:
        obj.full_clean(exclude=list(exclude), validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            where = () if name == NON_FIELD_ERRORS else (keys or {}).get(name, (name,))
            for message in messages:
                checker.error((*path, *where), message)


def routing_validate(*, spec: RoutingSpec, checker: Checker) -> None:
    """Every row the files describe, checked as the admin would check it; problems go to `checker`."""
    stored_prices = {
        (price.model.provider.name, price.model.name, price.effective_from): price
        for price in Price.objects.select_related("model__provider")
    }
    for provider in spec.providers:
        row = Provider(name=provider.name, **provider.fields())
        model_check(row, checker=checker, path=provider.path, keys={"name": (), "is_local": ("local",)})
        if provider.models:  # a provider listed without models keeps the ones in the database
            names = [model.name for model in provider.models]
            try:
                default_model_check(default_model=provider.default_model, model_names=names)
            except ValidationError as exc:
                checker.error((*provider.path, "default_model"), exc.messages[0])
        for model in provider.models:
            row = LLMModel(name=model.name, **model.fields())
            model_check(row, checker=checker, path=model.path, exclude=["provider"])
            _validate_prices(provider.name, model, stored_prices, checker)
    policy = RoutingPolicy(**spec.policy.fields())
    model_check(policy, checker=checker, path=(), keys=_POLICY_KEYS, exclude=["baseline_model"])
    _validate_priorities(spec, checker)
    is_local = {provider.name: provider.is_local for provider in spec.providers}
    for position, rule in enumerate(spec.rules):
        model_check(RoutingRule(name=rule.name, position=position, **rule.fields()), checker=checker, path=rule.path)
        for index, name in enumerate(rule.providers):
            try:
                rule_provider_check(allow_cloud=rule.allow_cloud, provider_name=name, provider_is_local=is_local[name])
            except ValidationError as exc:
                checker.error((*rule.path, "providers", index), exc.messages[0])
    _validate_aliases(spec, checker)


def _validate_aliases(spec: RoutingSpec, checker: Checker) -> None:
    # An alias's name against every model there will be: the files' and those the database keeps.
    models: dict[str, set[str]] = {}
    for provider, name in LLMModel.objects.values_list("provider__name", "name"):
        models.setdefault(name, set()).add(f"{provider}/{name}")
    for provider in spec.providers:
        for model in provider.models:
            models.setdefault(model.name, set()).add(f"{provider.name}/{model.name}")
    for alias in spec.aliases:
        row = ModelAlias(name=alias.name, **alias.fields())
        row.check_model_names_on_clean = False  # checked here, against the files' models too
        model_check(row, checker=checker, path=alias.path)
        try:
            alias_name_check(name=alias.name, models=models.get(alias.name, ()))
        except ValidationError as exc:
            checker.error((*alias.path, "name"), exc.messages[0])


def _validate_priorities(spec: RoutingSpec, checker: Checker) -> None:
    # A clash among the files' providers is the files' to fix. A provider the files leave out (the
    # demo model register_local_model added, one added in the admin) keeps its priority unless the
    # files give it to another provider: then applying moves it after them (routing.config.apply).
    in_files = {provider.name: provider for provider in spec.providers}
    try:
        provider_priority_check(priorities={name: provider.priority for name, provider in in_files.items()})
    except ValidationError as exc:
        for clash in exc.error_list:
            for name in clash.params["providers"]:
                checker.error((*in_files[name].path, "priority"), clash.messages[0])


def _validate_prices(provider: str, model: ModelSpec, stored: dict, checker: Checker) -> None:
    for spec in model.prices:
        # A stored row is checked with the file's figures in it: its clean() refuses to change
        # a price that calls were charged at, in the admin's words.
        price = stored.get((provider, model.name, spec.effective_from)) or Price(effective_from=spec.effective_from)
        for name, value in spec.fields().items():
            setattr(price, name, value)
        model_check(price, checker=checker, path=spec.path, exclude=["model"])
