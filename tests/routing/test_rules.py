"""routing/rules.py: each shared rule refuses in one sentence, whichever way the change arrives.

The sentences are written out here, not imported: a test that read them from the code would
agree with any wording, including two different ones.
"""

from collections.abc import Callable
from decimal import Decimal
from html import unescape
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from agents.forms import RunSubmitForm
from routing.forms import LLMModelForm
from routing.models import LedgerEntry, LLMModel, Price, Provider, RoutingRule, RuleProvider
from tests.routing.configs import LOCAL, ROUTING, load, snapshot, write_configs

pytestmark = pytest.mark.django_db

CAPABILITY = "A capability is a lowercase word like code_generation."
PRICE_IN_USE = (
    "Calls were already charged at this price, so it cannot change: "
    "add a new price with a later 'effective from' instead."
)
CLOUD_IN_LOCAL_RULE = "{} is a cloud provider, but this rule allows no cloud: remove the provider or allow cloud."


@pytest.fixture(autouse=True)
def _no_ollama_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_HOST", raising=False)


@pytest.fixture
def admin(client: Client, staff_user) -> Client:
    client.force_login(staff_user)
    return client


def load_refused(directory: Path, *, routing: str = ROUTING) -> str:
    """Load edited files that must be refused: the command's message."""
    with pytest.raises(CommandError) as raised:
        load(*write_configs(directory, routing=routing, local=LOCAL))
    return str(raised.value)


def model_errors(obj) -> str:
    with pytest.raises(ValidationError) as raised:
        obj.full_clean()
    return " ".join(raised.value.messages)


# Rule 7: capability names


def _provider_model(providers: dict) -> str:
    provider = providers["ollama"]
    provider.capabilities = ["Code Generation"]
    return model_errors(provider)


def _rule_model(providers: dict) -> str:
    return model_errors(RoutingRule(name="tests", capability="Code Generation"))


def _admin_model_form(providers: dict) -> str:
    data = {"provider": providers["ollama"].pk, "name": "m2", "context_window": 8, "capabilities": "Code Generation"}
    return " ".join(LLMModelForm(data=data).errors["capabilities"])


def _run_form(providers: dict) -> str:
    return " ".join(RunSubmitForm(data={"prompt": "Do it.", "capability": "Code Generation"}).errors["capability"])


def _loader_provider(tmp_path: Path) -> str:
    return load_refused(tmp_path, routing=ROUTING.replace("[code_generation, testing]", "[Code Generation]"))


def _loader_agent(tmp_path: Path) -> str:
    routing = ROUTING.replace("    capability: code_generation\n", "    capability: Code Generation\n")
    return load_refused(tmp_path, routing=routing)


@pytest.mark.parametrize("surface", [_provider_model, _rule_model, _admin_model_form, _run_form])
def test_a_badly_written_capability_is_refused_in_one_sentence_by_models_and_forms(providers, surface: Callable):
    assert CAPABILITY in surface(providers)


@pytest.mark.parametrize(
    ("surface", "where"),
    [
        (_loader_provider, "llm_routing.yaml:10: claude.capabilities: 'Code Generation': "),
        (_loader_agent, "llm_routing.yaml:24: agents.marcus.capability: "),
    ],
)
def test_a_badly_written_capability_is_refused_in_the_same_sentence_by_the_loader(
    tmp_path: Path, surface: Callable, where: str
):
    assert where + CAPABILITY in surface(tmp_path)


# Rule 4: a price that has charged calls cannot change


def _charge(price: Price) -> None:
    LedgerEntry.objects.create(
        created_at="2025-10-01T10:00:00Z",
        provider=price.model.provider,
        model_name=price.model.name,
        is_local=price.model.provider.is_local,
        outcome="success",
        price=price,
        cost_usd=Decimal("0.0105"),
    )


def test_the_model_refuses_to_change_a_charged_price(providers):
    price = Price.objects.get(model__name="claude-sonnet-4-5")
    _charge(price)
    price.input_per_mtok = Decimal(1)

    assert model_errors(price) == PRICE_IN_USE


def test_the_model_still_lets_a_price_no_call_was_charged_at_be_corrected(providers):
    price = Price.objects.get(model__name="claude-sonnet-4-5")
    price.input_per_mtok = Decimal(1)

    price.full_clean()


def test_the_admin_refuses_to_change_a_charged_price_among_a_models_prices(admin: Client, providers):
    price = Price.objects.get(model__name="claude-sonnet-4-5")
    _charge(price)
    data = {
        "provider": str(price.model.provider_id),
        "name": price.model.name,
        "context_window": str(price.model.context_window),
        "capabilities": ", ".join(price.model.capabilities),
        "prices-TOTAL_FORMS": "1",
        "prices-INITIAL_FORMS": "1",
        "prices-MIN_NUM_FORMS": "0",
        "prices-MAX_NUM_FORMS": "1000",
        "prices-0-id": str(price.pk),
        "prices-0-model": str(price.model_id),
        "prices-0-effective_from_0": "2025-01-01",
        "prices-0-effective_from_1": "00:00:00",
        "prices-0-input_per_mtok": "1",
        "prices-0-output_per_mtok": "15",
    }

    response = admin.post(reverse("admin:routing_llmmodel_change", args=[price.model_id]), data)

    assert response.status_code == 200
    assert PRICE_IN_USE in unescape(response.content.decode())
    price.refresh_from_db()
    assert price.input_per_mtok == Decimal(3)


def test_the_loader_refuses_to_change_a_charged_price_in_the_admins_words(tmp_path: Path):
    load(*write_configs(tmp_path / "good"))
    _charge(Price.objects.get(model__name="sonnet"))
    before = snapshot()

    message = load_refused(tmp_path / "bad", routing=ROUTING.replace("input_per_mtok: 3,", "input_per_mtok: 2,"))

    assert f"llm_routing.yaml:15: claude.models[0].prices[0]: {PRICE_IN_USE}" in message
    assert snapshot() == before


def test_the_loader_still_corrects_a_price_no_call_was_charged_at(tmp_path: Path):
    load(*write_configs(tmp_path / "good"))

    out, _ = load(
        *write_configs(tmp_path / "edited", routing=ROUTING.replace("input_per_mtok: 3,", "input_per_mtok: 2,"))
    )

    assert "corrected price for model claude/sonnet from 2025-09-29" in out
    assert Price.objects.get(model__name="sonnet").input_per_mtok == Decimal(2)


# Rule 5: a rule that allows no cloud cannot list a cloud provider


def _rule_form(steps: list[Provider], *, allow_cloud: bool, existing: RoutingRule | None = None) -> dict[str, str]:
    data = {
        "name": "private",
        "position": "1",
        "enabled": "on",
        "capability": "",
        "agent": "",
        "min_prompt_tokens": "",
        "max_prompt_tokens": "",
        "escalate_above_tokens": "",
        "escalate_capabilities": "",
        "steps-TOTAL_FORMS": str(len(steps)),
        "steps-INITIAL_FORMS": "0" if existing is None else str(existing.steps.count()),
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "1000",
    }
    if allow_cloud:
        data["allow_cloud"] = "on"
    stored = list(existing.steps.order_by("position")) if existing is not None else []
    for index, provider in enumerate(steps):
        data[f"steps-{index}-position"] = str(index)
        data[f"steps-{index}-provider"] = str(provider.pk)
        if index < len(stored):
            data[f"steps-{index}-id"] = str(stored[index].pk)
            data[f"steps-{index}-rule"] = str(existing.pk)
    return data


def test_the_admin_refuses_a_cloud_provider_in_a_rule_that_allows_no_cloud(admin: Client, providers):
    steps = [providers["ollama"], providers["anthropic"]]

    response = admin.post(reverse("admin:routing_routingrule_add"), _rule_form(steps, allow_cloud=False))

    assert response.status_code == 200
    assert CLOUD_IN_LOCAL_RULE.format("anthropic") in response.content.decode()
    assert not RoutingRule.objects.exists()


def test_the_admin_refuses_to_stop_allowing_cloud_while_the_rule_lists_a_cloud_provider(admin: Client, providers):
    rule = RoutingRule.objects.create(name="private", position=1)
    RuleProvider.objects.create(rule=rule, provider=providers["openai"], position=0)

    response = admin.post(
        reverse("admin:routing_routingrule_change", args=[rule.pk]),
        _rule_form([providers["openai"]], allow_cloud=False, existing=rule),
    )

    assert response.status_code == 200
    assert CLOUD_IN_LOCAL_RULE.format("openai") in response.content.decode()
    assert RoutingRule.objects.get().allow_cloud


def test_the_admin_takes_a_rule_that_allows_no_cloud_with_local_providers_only(admin: Client, providers):
    response = admin.post(
        reverse("admin:routing_routingrule_add"), _rule_form([providers["ollama"]], allow_cloud=False)
    )

    assert response.status_code == 302
    assert RoutingRule.objects.get().allow_cloud is False


def test_the_loader_refuses_a_cloud_provider_in_a_rule_that_allows_no_cloud_in_the_admins_words(tmp_path: Path):
    routing = ROUTING.replace("    escalate_above_tokens: 4000\n", "    allow_cloud: false\n")

    message = load_refused(tmp_path, routing=routing)

    assert f"llm_routing.yaml:19: rules[0].providers[0]: {CLOUD_IN_LOCAL_RULE.format('claude')}" in message
    assert not LLMModel.objects.exists()


# Found written twice, in different words: the default model, and keep_alive (the admin took it anywhere)

DEFAULT_MODEL = (
    "The default model 'mistral' must be one of this provider's models ({}): add it, or choose another default model."
)
KEEP_ALIVE = "Only Ollama providers take keep_alive."


def _provider_form(**fields: str) -> dict[str, str]:
    data = {
        "name": "lan-ollama",
        "kind": "ollama",
        "base_url": "http://10.0.0.5:11434",
        "is_local": "on",
        "priority": "9",
        "enabled": "on",
        "api_key_env": "",
        "default_model": "mistral",
        "capabilities": "code_generation",
        "connect_timeout_s": "5",
        "request_timeout_s": "120",
        "max_in_flight": "",
        "keep_alive": "",
        "models-TOTAL_FORMS": "1",
        "models-INITIAL_FORMS": "0",
        "models-MIN_NUM_FORMS": "0",
        "models-MAX_NUM_FORMS": "1000",
        "models-0-name": "mistral:latest",
        "models-0-context_window": "4096",
        "models-0-capabilities": "",
    }
    data.update(fields)
    return data


def test_the_admin_and_the_loader_ask_for_the_default_model_among_the_models_in_one_sentence(
    admin: Client, tmp_path: Path
):
    local = LOCAL.replace("  default_model: mistral:latest\n", "  default_model: mistral\n")

    response = admin.post(reverse("admin:routing_provider_add"), _provider_form())
    with pytest.raises(CommandError) as raised:
        load(*write_configs(tmp_path, local=local))

    sentence = DEFAULT_MODEL.format("mistral:latest")
    assert sentence in unescape(response.content.decode())
    assert f"local_provider.yaml:5: ollama.default_model: {sentence}" in str(raised.value)
    assert not Provider.objects.exists()


def test_the_admin_and_the_loader_refuse_keep_alive_on_a_cloud_provider_in_one_sentence(admin: Client, tmp_path: Path):
    form = _provider_form(kind="anthropic", base_url="https://api.anthropic.com", default_model="mistral:latest")
    response = admin.post(reverse("admin:routing_provider_add"), {**form, "keep_alive": "5m"})

    message = load_refused(
        tmp_path, routing=ROUTING.replace("  kind: anthropic\n", "  kind: anthropic\n  keep_alive: 5m\n")
    )

    assert KEEP_ALIVE in response.content.decode()
    assert f"llm_routing.yaml:9: claude.keep_alive: {KEEP_ALIVE}" in message
    assert not Provider.objects.exists()


# Priorities: the admin counted every provider, the loader only those in the files

PRIORITY_CLASH = "Priority 7 is given to more than one provider: claude, spare."


def test_the_loader_moves_a_provider_left_out_of_the_files_whose_priority_the_files_give_away(tmp_path: Path):
    load(*write_configs(tmp_path / "good"))
    Provider.objects.create(
        name="spare", kind="openai_compatible", base_url="http://gpu.local:8080", priority=7, default_model="m"
    )

    out, _ = load(*write_configs(tmp_path / "moved", routing=ROUTING.replace("  priority: 2\n", "  priority: 7\n")))

    assert Provider.objects.get(name="claude").priority == 7
    assert Provider.objects.get(name="spare").priority == 8  # after every other provider
    assert "moved provider spare (not in the files) from priority 7 to 8: the files give 7 to claude" in out


def test_the_loader_refuses_a_priority_two_of_the_files_providers_share(tmp_path: Path):
    load(*write_configs(tmp_path / "good"))
    before = snapshot()

    message = load_refused(tmp_path / "bad", routing=ROUTING.replace("  priority: 2\n", "  priority: 1\n"))

    assert "claude.priority: Priority 1 is given to more than one provider" in message
    assert snapshot() == before


def test_the_admin_refuses_the_same_clash_in_the_same_sentence(admin: Client, providers):
    Provider.objects.filter(name="openai").update(name="spare", priority=7)
    form = _provider_form(
        name="claude",
        kind="anthropic",
        base_url="https://api.anthropic.com",
        priority="7",
        default_model="mistral:latest",
    )

    response = admin.post(reverse("admin:routing_provider_add"), form)

    assert PRIORITY_CLASH in response.content.decode()
    assert not Provider.objects.filter(name="claude").exists()
