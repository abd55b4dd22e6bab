"""The validation rules that model validation, the admin's forms and `load_routing` share.

Each rule is written once, with one message, so an operator reads the same sentence whether
the admin or the loader refused a change. Nothing here imports the models at run time (they
import these validators); a rule that needs the database asks the row it is given.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping
from typing import Protocol

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator

# Providers, rules and agents are named with these: safe in URLs, YAML keys and log lines.
SLUG_RE = r"^[a-z0-9][a-z0-9_.:-]*$"
slug_validator = RegexValidator(SLUG_RE, "Use lowercase letters, digits and _ . : - only.")

CAPABILITY_MESSAGE = "A capability is a lowercase word like code_generation."
capability_validator = RegexValidator(r"^[a-z][a-z0-9_]*$", CAPABILITY_MESSAGE)


def validate_capabilities(value: object) -> None:
    """A list of capability names, none twice (providers', models' and rules' JSON lists)."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError("Capabilities must be a list of names.", code="not_a_list")
    for item in value:
        try:
            capability_validator(item)
        except ValidationError:
            # The item is named: a list is edited as one line of text, and one word of it is wrong.
            # (Not code "invalid": a JSONField would put its own "Value must be valid JSON." in its place.)
            raise ValidationError(f"{item!r}: {CAPABILITY_MESSAGE}", code="invalid_capability") from None
    repeated = sorted({item for item in value if value.count(item) > 1})
    if repeated:
        raise ValidationError(f"Listed more than once: {', '.join(repeated)}.", code="repeated")


def provider_priority_check(*, priorities: Mapping[str, int]) -> None:
    """Each provider its own priority (1 is tried first), counting every provider, enabled or not.

    The database allows a tie, so that the admin can swap two priorities row by row; a tie left
    standing would be broken by name, which nobody chose. One error per clash; its `params`
    name the priority and the providers, for callers that mark each one.
    """
    holders: dict[int, list[str]] = defaultdict(list)
    for name, priority in priorities.items():
        holders[priority].append(name)
    clashes = [
        ValidationError(
            "Priority %(priority)s is given to more than one provider: %(names)s.",
            code="duplicate_priority",
            params={"priority": priority, "names": ", ".join(sorted(names)), "providers": sorted(names)},
        )
        for priority, names in sorted(holders.items())
        if len(names) > 1
    ]
    if clashes:
        raise ValidationError(clashes)


def default_model_check(*, default_model: str, model_names: Collection[str]) -> None:
    """A provider's default model is one of its models: calls that name no model go there."""
    if default_model and default_model not in model_names:
        offered = ", ".join(sorted(model_names)) or "none yet"
        raise ValidationError(
            f"The default model {default_model!r} must be one of this provider's models ({offered}): "
            "add it, or choose another default model.",
            code="default_model_missing",
        )


PRICE_IN_USE_MESSAGE = (
    "Calls were already charged at this price, so it cannot change: "
    "add a new price with a later 'effective from' instead."
)


class PriceTerms(Protocol):
    """What the price rule asks of a price (routing.models.Price, which imports this module)."""

    pk: int | None

    def terms_changed(self) -> bool: ...

    def is_charged(self) -> bool: ...


def price_change_check(*, price: PriceTerms) -> None:
    """A price some call was charged at cannot change: that would rewrite what was billed."""
    if price.pk is not None and price.terms_changed() and price.is_charged():
        raise ValidationError(PRICE_IN_USE_MESSAGE, code="price_in_use")


def rule_provider_check(*, allow_cloud: bool, provider_name: str, provider_is_local: bool) -> None:
    """A rule that allows no cloud keeps its requests local, so it cannot list a cloud provider."""
    if not allow_cloud and not provider_is_local:
        raise ValidationError(
            f"{provider_name} is a cloud provider, but this rule allows no cloud: remove the provider or allow cloud.",
            code="cloud_provider_in_local_rule",
        )
