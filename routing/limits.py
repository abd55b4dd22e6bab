"""What a request may ask for, judged against the routing table before it is accepted, so that
what could only fail later (an unknown capability, an answer longer than any model gives, a
prompt over its own limit) is refused at once, with a message for the field.

The models that could serve a request are each enabled provider's model for its capability
(`ProviderInfo.offers`, `ProviderInfo.model_for`: the same choice the router makes). A
capability "goes to the cloud" when no enabled local provider offers it or a rule escalates it;
users who are not staff may ask only for those of them in the routing policy's
`user_cloud_capabilities`.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError

from routing.table import ModelInfo, ProviderInfo, RoutingTable, current_table


def _serving(table: RoutingTable, capability: str) -> list[tuple[ProviderInfo, ModelInfo | None]]:
    return [
        (provider, provider.models.get(provider.model_for(capability)))
        for provider in table.providers
        if provider.enabled and provider.offers(capability)
    ]


def _offered(table: RoutingTable) -> list[str]:
    names: set[str] = set()
    for provider in table.providers:
        if provider.enabled:
            names |= provider.capabilities.union(*(model.capabilities for model in provider.models.values()))
    return sorted(names)


def _goes_to_cloud(table: RoutingTable, capability: str, serving: list[tuple[ProviderInfo, ModelInfo | None]]) -> bool:
    return not any(provider.is_local for provider, _ in serving) or any(
        capability in rule.escalate_capabilities for rule in table.rules
    )


def _capability_problem(table: RoutingTable, capability: str, serving: list, *, staff: bool) -> str:
    if not serving:
        offered = _offered(table)
        choices = f"choose one of {', '.join(offered)}" if offered else "no provider is enabled"
        return f"No enabled provider offers {capability!r}: {choices}."
    allowed = table.policy.user_cloud_capabilities
    if not staff and capability not in allowed and _goes_to_cloud(table, capability, serving):
        anyone = ", ".join(sorted(allowed)) or "none"
        return f"{capability} is served in the cloud, and only staff may ask for it (anyone may ask for: {anyone})."
    return ""


def request_check(
    *,
    capability: str,
    default_capability: str,
    max_tokens: int | None,
    max_prompt_tokens: int | None,
    prompt_tokens: int,
    staff: bool,
) -> None:
    """Raise a ValidationError keyed by field when the request cannot succeed as asked.

    `capability` is what the caller asked for ("" for none), `default_capability` what the
    request uses then (the agent's); `prompt_tokens` the estimate of the whole prompt.
    """
    table = current_table()
    wanted = capability or default_capability
    serving = _serving(table, wanted)
    errors: dict[str, str] = {}
    if capability:
        problem = _capability_problem(table, capability, serving, staff=staff)
        if problem:
            errors["capability"] = problem
    if max_prompt_tokens is not None and prompt_tokens > max_prompt_tokens:
        errors["max_prompt_tokens"] = (
            f"The prompt is ~{prompt_tokens:,} tokens (the agent's instructions included), over this limit "
            f"of {max_prompt_tokens:,}: the run would be refused. Raise it or leave it empty."
        )
    models = [model for _, model in serving if model is not None]
    if models and "capability" not in errors:
        what = f"a model for {wanted}" if wanted else "any enabled model"
        longest = max(model.output_limit for model in models)
        if max_tokens is not None and max_tokens > longest:
            errors["max_tokens"] = f"Must be at most {longest:,}: the longest answer {what} can give."
        widest = max(model.context_window for model in models)
        if prompt_tokens > widest:
            errors["prompt"] = f"The prompt is ~{prompt_tokens:,} tokens, more than {what} can read ({widest:,})."
    if errors:
        raise ValidationError(errors)
