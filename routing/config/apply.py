"""Writing the checked specs: compare with the database, write only what differs, say what changed.

Call `routing_apply` inside the load's transaction, after `routing_validate` found nothing
wrong: the rows written here have passed the models' validation already.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import models as db_models

from routing.config.loading import plain, short
from routing.config.schema import AliasSpec, ModelSpec, PolicySpec, PriceSpec, ProviderSpec, RoutingSpec, RuleSpec
from routing.models import LLMModel, ModelAlias, Price, Provider, RoutingPolicy, RoutingRule, RuleProvider


@dataclass
class Changes:
    made: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def extend(self, other: Changes) -> None:
        self.made.extend(other.made)
        self.warnings.extend(other.warnings)


def assign(obj: db_models.Model, values: dict[str, Any]) -> list[str]:
    """Set the fields that differ; say what changed, e.g. `priority 3 -> 2`."""
    changed = []
    for name, new in values.items():
        old = getattr(obj, name)
        if old != new:
            setattr(obj, name, new)
            changed.append(f"{name} {short(old, 40)} -> {short(new, 40)}")
    return changed


def routing_apply(*, spec: RoutingSpec, prune: bool) -> Changes:
    """Write the spec; call inside transaction.atomic (the caller also writes the agents)."""
    changes = Changes()
    existing = {provider.name: provider for provider in Provider.objects.select_for_update()}
    in_files = {provider_spec.name for provider_spec in spec.providers}
    _make_room(spec, [provider for name, provider in existing.items() if name not in in_files], changes)
    for provider_spec in spec.providers:
        provider = _apply_provider(provider_spec, existing.get(provider_spec.name), changes)
        _apply_models(provider, provider_spec.models, changes)
    for name in sorted(set(existing) - in_files):
        mark_stale(existing[name], f"provider {name}", prune, changes)
    _apply_policy(spec.policy, changes)
    _apply_rules(spec.rules, changes)
    _apply_aliases(spec.aliases, changes)
    return changes


def _make_room(spec: RoutingSpec, left_out: list[Provider], changes: Changes) -> None:
    """Providers the files leave out keep their priorities, except one the files give to another
    provider: those move after every other provider, in their old order (the router tries local
    providers first whatever their priority, so a local demo model keeps its place in practice)."""
    owners = {provider.priority: provider.name for provider in spec.providers}
    last = max([*owners, *(provider.priority for provider in left_out)], default=0)
    for provider in sorted(left_out, key=lambda provider: (provider.priority, provider.name)):
        if provider.priority in owners:
            last += 1
            moved_from, provider.priority = provider.priority, last
            provider.save(update_fields=["priority", "updated_at"])
            changes.made.append(
                f"moved provider {provider.name} (not in the files) from priority {moved_from} to {last}: "
                f"the files give {moved_from} to {owners[moved_from]}"
            )


def mark_stale(obj: db_models.Model, label: str, prune: bool, changes: Changes) -> None:
    """In the database but not in the files: kept (it may have history), disabled with --prune."""
    if prune and obj.enabled:
        obj.enabled = False
        obj.save(update_fields=["enabled"])
        changes.made.append(f"disabled {label} (not in the files)")
    elif not prune:
        state = "kept" if obj.enabled else "kept, disabled"
        changes.warnings.append(f"{label} is in the database but not in the files: {state} (--prune disables it)")


def _apply_provider(spec: ProviderSpec, provider: Provider | None, changes: Changes) -> Provider:
    if provider is None:
        provider = Provider.objects.create(name=spec.name, **spec.fields())
        changes.made.append(f"created provider {spec.name} ({spec.kind}, priority {spec.priority})")
        return provider
    changed = assign(provider, spec.fields())
    if changed:
        provider.save()
        changes.made.append(f"updated provider {spec.name}: {', '.join(changed)}")
    return provider


def _apply_models(provider: Provider, specs: list[ModelSpec], changes: Changes) -> None:
    existing = {model.name: model for model in provider.models.all()}
    for spec in specs:
        label = f"model {provider.name}/{spec.name}"
        model = existing.get(spec.name)
        if model is None:
            model = LLMModel.objects.create(provider=provider, name=spec.name, **spec.fields())
            changes.made.append(f"created {label}")
        else:
            changed = assign(model, spec.fields())
            if changed:
                model.save()
                changes.made.append(f"updated {label}: {', '.join(changed)}")
        _apply_prices(model, spec.prices, label, changes)
    for name in sorted(set(existing) - {spec.name for spec in specs}):
        changes.warnings.append(f"model {provider.name}/{name} is in the database but not in the files: kept")


def _apply_prices(model: LLMModel, specs: list[PriceSpec], label: str, changes: Changes) -> None:
    # Prices are history: rows are added by start date, never deleted; one no call was charged
    # at may be corrected (routing_validate refused to change any other).
    existing = {price.effective_from: price for price in model.prices.all()}
    for spec in specs:
        price = existing.get(spec.effective_from)
        shown = f"${plain(spec.input_per_mtok)} in / ${plain(spec.output_per_mtok)} out"
        if spec.cache_write_per_mtok is not None:
            shown += f" / ${plain(spec.cache_write_per_mtok)} cache write"
        if spec.cache_read_per_mtok is not None:
            shown += f" / ${plain(spec.cache_read_per_mtok)} cache read"
        shown += " per M tokens"
        if price is None:
            Price.objects.create(model=model, effective_from=spec.effective_from, **spec.fields())
            changes.made.append(f"added price for {label} from {spec.effective_from:%Y-%m-%d}: {shown}")
        elif assign(price, spec.fields()):
            price.save()
            changes.made.append(f"corrected price for {label} from {spec.effective_from:%Y-%m-%d}: {shown}")


def _apply_policy(spec: PolicySpec, changes: Changes) -> None:
    RoutingPolicy.get()  # the one row exists from here on, so it can be locked
    policy = RoutingPolicy.objects.select_for_update().get(pk=1)
    baseline = None
    if spec.baseline:
        baseline = LLMModel.objects.get(provider__name=spec.baseline[0], name=spec.baseline[1])
    changed = assign(policy, {**spec.fields(), "baseline_model": baseline})
    if changed:
        policy.save()
        changes.made.append(f"updated the routing policy: {', '.join(changed)}")


def _apply_rules(specs: list[RuleSpec], changes: Changes) -> None:
    existing = {rule.name: rule for rule in RoutingRule.objects.select_for_update()}
    for name in sorted(set(existing) - {spec.name for spec in specs}):
        existing.pop(name).delete()  # rules are configuration: the files say which exist
        changes.made.append(f"deleted rule {name} (not in the files)")
    provider_ids = dict(Provider.objects.values_list("name", "id"))
    for position, spec in enumerate(specs):
        rule = existing.get(spec.name)
        created = rule is None
        rule = rule or RoutingRule(name=spec.name)
        changed = assign(rule, {**spec.fields(), "position": position})
        if created or changed:
            rule.save()
        steps = list(rule.steps.order_by("position").values_list("provider__name", flat=True))
        if steps != spec.providers:
            rule.steps.all().delete()
            RuleProvider.objects.bulk_create(
                RuleProvider(rule=rule, provider_id=provider_ids[name], position=index)
                for index, name in enumerate(spec.providers)
            )
            changed.append(f"providers {steps} -> {spec.providers}")
        if created:
            changes.made.append(f"created rule {spec.name}")
        elif changed:
            changes.made.append(f"updated rule {spec.name}: {', '.join(changed)}")


def _apply_aliases(specs: list[AliasSpec], changes: Changes) -> None:
    # Like rules, aliases are configuration with no history: the files say which exist (`auto`
    # stays answered without a row: routing.table builds it in).
    existing = {alias.name: alias for alias in ModelAlias.objects.select_for_update()}
    for name in sorted(set(existing) - {spec.name for spec in specs}):
        existing.pop(name).delete()
        changes.made.append(f"deleted alias {name} (not in the files)")
    for spec in specs:
        alias = existing.get(spec.name)
        if alias is None:
            ModelAlias.objects.create(name=spec.name, **spec.fields())
            shown = f" ({spec.capability})" if spec.capability else ""
            changes.made.append(f"created alias {spec.name}{shown}")
            continue
        changed = assign(alias, spec.fields())
        if changed:
            alias.save()
            changes.made.append(f"updated alias {spec.name}: {', '.join(changed)}")
