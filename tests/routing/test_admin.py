"""The routing admin, driven through the Django test client as an operator would."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from io import StringIO

import pytest
import yaml
from django.contrib import admin as django_admin
from django.core.management import call_command
from django.test import Client, RequestFactory
from django.urls import reverse

from routing import table as routing_table
from routing.plan import plan_route
from routing.table import RoutingTable, _TableHolder, current_table
from tests.routing.conftest_router import fresh_routing

__all__ = ["fresh_routing"]  # a fixture, used below
from routing.models import LedgerEntry, LLMModel, Price, Provider, RoutingPolicy, RoutingRule, RuleProvider

pytestmark = pytest.mark.django_db

FAKE_KEY = "sk-ant-api03-NEVER-ON-A-PAGE-4f1c9e"
PROVIDERS_URL = "/admin/routing/provider/"  # the providers list, where operators reorder


@pytest.fixture
def admin(client: Client, staff_user) -> Client:
    client.force_login(staff_user)
    return client


@pytest.fixture
def invalidations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(routing_table, "invalidate_routing_cache", lambda: calls.append("invalidated"))
    return calls


@pytest.fixture
def post(admin: Client, django_capture_on_commit_callbacks) -> Callable:
    """POST as the operator and run what waits for the commit (the cache invalidation), as production does."""

    def _post(url: str, data: dict):
        with django_capture_on_commit_callbacks(execute=True):
            return admin.post(url, data)

    return _post


def listed_names(admin: Client) -> list[str]:
    response = admin.get(PROVIDERS_URL)
    assert response.status_code == 200
    return [provider.name for provider in response.context["cl"].result_list]


def changelist_data(rows: list[Provider], **priorities: int) -> dict[str, str]:
    """What the providers list posts when an operator edits priorities and presses Save."""
    data = {
        "form-TOTAL_FORMS": str(len(rows)),
        "form-INITIAL_FORMS": str(len(rows)),
        "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000",
        "_save": "Save",
    }
    for index, provider in enumerate(rows):
        data[f"form-{index}-id"] = str(provider.pk)
        data[f"form-{index}-priority"] = str(priorities.get(provider.name, provider.priority))
        if provider.enabled:
            data[f"form-{index}-enabled"] = "on"
    return data


def provider_data(provider: Provider | None = None, *, models: list[dict] | None = None, **fields) -> dict[str, str]:
    """The provider change form, as posted: the provider's own fields and its models inline."""
    values = {
        "name": "lan-ollama",
        "kind": "ollama",
        "base_url": "http://10.0.0.5:11434",
        "is_local": True,
        "priority": 9,
        "enabled": True,
        "api_key_env": "",
        "default_model": "mistral:latest",
        "capabilities": "code_generation, testing",
        "connect_timeout_s": 5,
        "request_timeout_s": 120,
        "max_in_flight": "",
        "keep_alive": "",
    }
    if provider is not None:
        values.update(
            {
                name: getattr(provider, name)
                for name in values
                if name not in ("capabilities", "max_in_flight", "api_key_env", "keep_alive")
            }
        )
        values["capabilities"] = ", ".join(provider.capabilities)
        values["max_in_flight"] = provider.max_in_flight or ""
        values["api_key_env"] = provider.api_key_env
        values["keep_alive"] = provider.keep_alive
    values.update(fields)
    data = {name: str(value) for name, value in values.items() if value is not False}
    data = {name: ("on" if value == "True" else value) for name, value in data.items()}
    existing = list(provider.models.all()) if provider is not None else []
    rows = [{"id": m.pk, "name": m.name, "context_window": m.context_window, "capabilities": ""} for m in existing]
    if models is None and provider is None:
        models = [{"name": "mistral:latest", "context_window": 32768, "capabilities": "code_generation"}]
    rows += models or []
    data.update(
        {
            "models-TOTAL_FORMS": str(len(rows)),
            "models-INITIAL_FORMS": str(len(existing)),
            "models-MIN_NUM_FORMS": "0",
            "models-MAX_NUM_FORMS": "1000",
        }
    )
    for index, row in enumerate(rows):
        for name, value in row.items():
            data[f"models-{index}-{name}"] = "on" if value is True else str(value)
        if provider is not None:
            data[f"models-{index}-provider"] = str(provider.pk)
    return data


# The providers list


def test_it_lists_providers_by_priority(admin: Client, providers) -> None:
    Provider.objects.filter(name="ollama").update(priority=5)

    assert listed_names(admin) == ["anthropic", "openai", "ollama"]


def test_it_shows_kind_locality_default_model_capacity_and_whether_the_key_is_set(
    admin: Client, providers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    response = admin.get(PROVIDERS_URL)

    html = response.content.decode()
    for text in ("Ollama (native /api/chat)", "local", "cloud", "mistral:latest", "claude-sonnet-4-5", "API key set"):
        assert text in html
    admin_view = response.context["cl"].model_admin
    assert admin_view.api_key_set(providers["anthropic"]) is True
    assert admin_view.api_key_set(providers["openai"]) is False
    assert admin_view.api_key_set(providers["ollama"]) is None  # needs no key


def test_it_never_shows_an_api_key_on_any_admin_page(admin: Client, providers, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY + "-openai")
    llm = LLMModel.objects.get(name="claude-sonnet-4-5")
    urls = [
        reverse("admin:index"),
        PROVIDERS_URL,
        reverse("admin:routing_provider_add"),
        *[reverse("admin:routing_provider_change", args=[p.pk]) for p in providers.values()],
        reverse("admin:routing_llmmodel_changelist"),
        reverse("admin:routing_llmmodel_change", args=[llm.pk]),
        reverse("admin:routing_price_changelist"),
        reverse("admin:routing_routingpolicy_add"),
        reverse("admin:routing_routingrule_add"),
        reverse("admin:routing_ledgerentry_changelist"),
    ]

    for url in urls:
        response = admin.get(url)
        assert response.status_code == 200, url
        assert FAKE_KEY not in response.content.decode(), url


def test_it_swaps_two_priorities_in_one_save(post: Callable, admin: Client, providers, invalidations) -> None:
    rows = list(providers.values())

    response = post(PROVIDERS_URL, changelist_data(rows, anthropic=3, openai=2))

    assert response.status_code == 302
    assert dict(Provider.objects.values_list("name", "priority")) == {"ollama": 1, "anthropic": 3, "openai": 2}
    assert listed_names(admin) == ["ollama", "openai", "anthropic"]
    assert invalidations  # the next routing decision reads the new order


def test_it_refuses_two_providers_with_one_priority_in_the_list(post: Callable, providers, invalidations) -> None:
    rows = list(providers.values())

    response = post(PROVIDERS_URL, changelist_data(rows, anthropic=3))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Priority 3 is given to more than one provider: anthropic, openai." in html
    assert dict(Provider.objects.values_list("name", "priority")) == {"ollama": 1, "anthropic": 2, "openai": 3}
    assert not invalidations


def test_it_counts_providers_not_posted_when_checking_priorities(post: Callable, providers) -> None:
    # A filtered or paged list posts only some rows; the others still hold their priorities.
    response = post(PROVIDERS_URL, changelist_data([providers["openai"]], openai=1))

    assert response.status_code == 200
    assert "Priority 1 is given to more than one provider: ollama, openai." in response.content.decode()
    assert Provider.objects.get(name="openai").priority == 3


def test_it_refuses_a_priority_below_one_in_the_list(post: Callable, providers) -> None:
    response = post(PROVIDERS_URL, changelist_data(list(providers.values()), ollama=0))

    assert response.status_code == 200
    assert "Ensure this value is greater than or equal to 1." in response.content.decode()
    assert Provider.objects.get(name="ollama").priority == 1


def test_it_toggles_enabled_in_the_list(post: Callable, providers, invalidations) -> None:
    data = changelist_data(list(providers.values()))
    del data["form-2-enabled"]

    response = post(PROVIDERS_URL, data)

    assert response.status_code == 302
    assert Provider.objects.get(name="openai").enabled is False
    assert invalidations


def test_it_shows_a_reorder_in_export_routing(post: Callable, providers) -> None:
    post(PROVIDERS_URL, changelist_data(list(providers.values()), anthropic=3, openai=2))
    out = StringIO()

    call_command("export_routing", stdout=out)

    exported = yaml.safe_load(out.getvalue())
    assert {name: exported[name]["priority"] for name in providers} == {"ollama": 1, "anthropic": 3, "openai": 2}


def names(table: RoutingTable) -> list[str]:
    return [candidate.provider.name for candidate in plan_route(table, prompt_tokens=50).candidates]


def test_it_sends_the_next_routing_decision_down_the_new_order(
    post: Callable, providers, fresh_routing, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    other_worker = _TableHolder()  # another process's copy, told of changes only through the shared cache
    assert names(current_table()) == names(other_worker.get()) == ["ollama", "anthropic", "openai"]

    post(PROVIDERS_URL, changelist_data(list(providers.values()), anthropic=3, openai=2))

    assert names(current_table()) == ["ollama", "openai", "anthropic"]
    assert names(other_worker.get()) == ["ollama", "openai", "anthropic"]


def test_it_stops_routing_to_a_provider_disabled_in_the_list(post: Callable, providers, fresh_routing) -> None:
    data = changelist_data(list(providers.values()))
    del data["form-0-enabled"]
    assert names(current_table()) == ["ollama"]  # no cloud keys in this test

    post(PROVIDERS_URL, data)

    assert names(current_table()) == []


# The provider form


def test_it_adds_a_provider_with_its_models_and_comma_separated_capabilities(
    post: Callable, staff_user, invalidations
) -> None:
    response = post(reverse("admin:routing_provider_add"), provider_data())

    assert response.status_code == 302, response.context["errors"] if response.context else ""
    provider = Provider.objects.get(name="lan-ollama")
    assert provider.capabilities == ["code_generation", "testing"]
    assert list(provider.models.values_list("name", "capabilities")) == [("mistral:latest", ["code_generation"])]
    assert invalidations


def test_it_shows_capabilities_as_text_not_json(admin: Client, providers) -> None:
    response = admin.get(reverse("admin:routing_provider_change", args=[providers["ollama"].pk]))

    assert 'value="code_generation, testing, documentation"' in response.content.decode()


@pytest.mark.parametrize(
    ("capabilities", "message"),
    [
        ("Code Generation", "A capability is a lowercase word like code_generation."),
        ("testing, testing", "Listed more than once: testing."),
        ('["testing"]', "A capability is a lowercase word like code_generation."),
    ],
)
def test_it_rejects_badly_written_capabilities(post: Callable, staff_user, capabilities: str, message: str) -> None:
    response = post(reverse("admin:routing_provider_add"), provider_data(capabilities=capabilities))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Provider.objects.filter(name="lan-ollama").exists()


def test_it_refuses_a_priority_another_provider_has_on_the_form(post: Callable, providers) -> None:
    response = post(reverse("admin:routing_provider_add"), provider_data(priority=2))

    assert response.status_code == 200
    assert "Priority 2 is given to more than one provider: anthropic, lan-ollama." in response.content.decode()
    assert not Provider.objects.filter(name="lan-ollama").exists()


def test_it_requires_the_default_model_among_the_providers_models(post: Callable, staff_user) -> None:
    models = [{"name": "llama3.2:3b", "context_window": 8192, "capabilities": ""}]

    response = post(reverse("admin:routing_provider_add"), provider_data(models=models))

    assert response.status_code == 200
    assert "The default model &#x27;mistral:latest&#x27; must be one of this provider&#x27;s models" in (
        response.content.decode()
    )
    assert not Provider.objects.filter(name="lan-ollama").exists()


def test_it_takes_a_new_model_and_makes_it_the_default_in_one_save(post: Callable, providers) -> None:
    ollama = providers["ollama"]
    models = [{"name": "llama3.2:3b", "context_window": 8192, "capabilities": ""}]

    response = post(
        reverse("admin:routing_provider_change", args=[ollama.pk]),
        provider_data(ollama, models=models, default_model="llama3.2:3b"),
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    ollama.refresh_from_db()
    assert ollama.default_model == "llama3.2:3b"
    assert ollama.models.filter(name="llama3.2:3b").exists()


def test_it_refuses_to_delete_the_default_model_inline(post: Callable, providers) -> None:
    ollama = providers["ollama"]
    Price.objects.filter(model__provider=ollama).delete()  # so only the default-model check stands in the way
    data = provider_data(ollama)
    data["models-0-DELETE"] = "on"

    response = post(reverse("admin:routing_provider_change", args=[ollama.pk]), data)

    assert response.status_code == 200
    assert "The default model &#x27;mistral:latest&#x27; must be one of" in response.content.decode()
    assert ollama.models.filter(name="mistral:latest").exists()


def test_it_does_not_delete_a_provider_the_ledger_refers_to(post: Callable, providers) -> None:
    ollama = providers["ollama"]
    LedgerEntry.objects.create(
        created_at="2025-06-03T10:00:00Z",
        provider=ollama,
        model_name="mistral:latest",
        is_local=True,
        outcome="success",
    )

    response = post(reverse("admin:routing_provider_delete", args=[ollama.pk]), {"post": "yes"})

    assert response.status_code == 200  # the page that names what still refers to it
    assert Provider.objects.filter(pk=ollama.pk).exists()


def test_it_invalidates_the_routing_cache_when_a_provider_is_deleted(post: Callable, providers, invalidations) -> None:
    Price.objects.filter(model__provider=providers["openai"]).delete()

    response = post(reverse("admin:routing_provider_delete", args=[providers["openai"].pk]), {"post": "yes"})

    assert response.status_code == 302
    assert not Provider.objects.filter(name="openai").exists()
    assert invalidations


# Models and prices


def price_data(model: LLMModel, **fields: str) -> dict[str, str]:
    data = {
        "model": str(model.pk),
        "effective_from_0": "2026-01-01",
        "effective_from_1": "00:00:00",
        "input_per_mtok": "3.00",
        "output_per_mtok": "15.00",
    }
    data.update(fields)
    return data


def test_it_adds_a_price_and_refreshes_routing(post: Callable, providers, invalidations) -> None:
    llm = LLMModel.objects.get(name="claude-sonnet-4-5")

    response = post(reverse("admin:routing_price_add"), price_data(llm, input_per_mtok="2.5"))

    assert response.status_code == 302
    price = llm.prices.latest()
    assert price.input_per_mtok == Decimal("2.5")
    assert price.effective_from.isoformat() == "2026-01-01T00:00:00+00:00"
    assert invalidations


def test_it_adds_a_price_with_cache_write_and_read_prices_or_leaves_them_empty(post: Callable, providers) -> None:
    llm = LLMModel.objects.get(name="claude-sonnet-4-5")

    post(reverse("admin:routing_price_add"), price_data(llm, cache_write_per_mtok="3.75", cache_read_per_mtok="0.30"))
    post(reverse("admin:routing_price_add"), price_data(llm, effective_from_0="2026-02-01"))

    cached, plain = llm.prices.order_by("effective_from")[1:]
    assert (cached.cache_write_per_mtok, cached.cache_read_per_mtok) == (Decimal("3.75"), Decimal("0.30"))
    assert (plain.cache_write_per_mtok, plain.cache_read_per_mtok) == (None, None)


def test_the_models_price_inline_offers_the_cache_prices(admin: Client, providers) -> None:
    llm = LLMModel.objects.get(name="claude-sonnet-4-5")

    page = admin.get(reverse("admin:routing_llmmodel_change", args=[llm.pk])).content.decode()

    assert 'name="prices-0-cache_write_per_mtok"' in page and 'name="prices-0-cache_read_per_mtok"' in page
    assert "empty: they cost the input price" in page


def test_it_refuses_a_negative_price(post: Callable, providers) -> None:
    llm = LLMModel.objects.get(name="claude-sonnet-4-5")

    response = post(reverse("admin:routing_price_add"), price_data(llm, output_per_mtok="-1"))

    assert response.status_code == 200
    assert "Ensure this value is greater than or equal to 0." in response.content.decode()
    assert llm.prices.count() == 1


def test_it_refuses_two_prices_for_a_model_from_the_same_moment(post: Callable, providers) -> None:
    llm = LLMModel.objects.get(name="claude-sonnet-4-5")

    response = post(
        reverse("admin:routing_price_add"), price_data(llm, effective_from_0="2025-01-01", effective_from_1="00:00:00")
    )

    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert llm.prices.count() == 1


def test_it_keeps_a_price_that_was_charged_from_changing(admin: Client, post: Callable, providers) -> None:
    price = Price.objects.get(model__name="claude-sonnet-4-5")
    LedgerEntry.objects.create(
        created_at="2025-06-03T10:00:00Z",
        provider=providers["anthropic"],
        model_name="claude-sonnet-4-5",
        is_local=False,
        outcome="success",
        price=price,
        cost_usd=Decimal("0.0105"),
    )
    url = reverse("admin:routing_price_change", args=[price.pk])

    post(url, price_data(price.model, input_per_mtok="1"))
    deleted = post(reverse("admin:routing_price_delete", args=[price.pk]), {"post": "yes"})

    price.refresh_from_db()
    assert price.input_per_mtok == Decimal("3")
    assert deleted.status_code == 403
    assert 'name="input_per_mtok"' not in admin.get(url).content.decode()


def test_it_edits_a_models_context_window_and_capabilities(post: Callable, providers, invalidations) -> None:
    llm = LLMModel.objects.get(name="gpt-4o")
    data = {
        "provider": str(llm.provider_id),
        "name": "gpt-4o",
        "context_window": "64000",
        "capabilities": "code_generation, vision",
        "prices-TOTAL_FORMS": "0",
        "prices-INITIAL_FORMS": "0",
        "prices-MIN_NUM_FORMS": "0",
        "prices-MAX_NUM_FORMS": "1000",
    }

    response = post(reverse("admin:routing_llmmodel_change", args=[llm.pk]), data)

    # The model's existing price is not in this post: an inline form left out is simply not edited.
    assert response.status_code == 302
    llm.refresh_from_db()
    assert (llm.context_window, llm.capabilities) == (64000, ["code_generation", "vision"])
    assert invalidations


# The routing policy


def policy_data(**fields: str) -> dict[str, str]:
    data = {
        "target_local_share": "85",
        "baseline_model": "",
        "failures_before_cooldown": "3",
        "cooldown_seconds": "60",
        "slot_wait_seconds": "30",
        "monthly_cloud_budget_usd": "20",
        "budget_alert_share": "0.75",
        "user_cloud_capabilities": "reasoning",
    }
    data.update(fields)
    return data


def test_it_keeps_the_routing_policy_a_single_row(admin: Client, post: Callable, providers) -> None:
    policy = RoutingPolicy.get()

    assert admin.get(reverse("admin:routing_routingpolicy_changelist")).url == reverse(
        "admin:routing_routingpolicy_change", args=[policy.pk]
    )
    assert admin.get(reverse("admin:routing_routingpolicy_add")).status_code == 403
    assert post(reverse("admin:routing_routingpolicy_delete", args=[policy.pk]), {"post": "yes"}).status_code == 403
    assert RoutingPolicy.objects.count() == 1


def test_it_changes_the_policy_and_refreshes_routing(post: Callable, providers, invalidations) -> None:
    policy = RoutingPolicy.get()
    claude = LLMModel.objects.get(name="claude-sonnet-4-5")

    response = post(
        reverse("admin:routing_routingpolicy_change", args=[policy.pk]),
        policy_data(target_local_share="90", baseline_model=str(claude.pk)),
    )

    assert response.status_code == 302
    policy.refresh_from_db()
    assert (policy.target_local_share, policy.baseline_model) == (Decimal("90"), claude)
    assert (policy.monthly_cloud_budget_usd, policy.user_cloud_capabilities) == (Decimal("20"), ["reasoning"])
    assert policy.budget_alert_share == Decimal("0.75")
    assert invalidations


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("target_local_share", "101", "Ensure this value is less than or equal to 100."),
        ("target_local_share", "-1", "Ensure this value is greater than or equal to 0."),
        ("baseline_model", "local", "Select a valid choice."),
    ],
)
def test_it_refuses_a_bad_policy(post: Callable, providers, field: str, value: str, message: str) -> None:
    policy = RoutingPolicy.get()
    if value == "local":  # savings are measured against a cloud model, never the local one
        value = str(LLMModel.objects.get(name="mistral:latest").pk)

    response = post(reverse("admin:routing_routingpolicy_change", args=[policy.pk]), policy_data(**{field: value}))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert RoutingPolicy.objects.get().target_local_share == Decimal("85")


# Routing rules


def rule_data(steps: list[tuple[int, Provider]], **fields: str) -> dict[str, str]:
    data = {
        "name": "big-prompts",
        "position": "1",
        "enabled": "on",
        "capability": "code_generation",
        "agent": "",
        "min_prompt_tokens": "",
        "max_prompt_tokens": "",
        "allow_cloud": "on",
        "escalate_above_tokens": "",
        "escalate_capabilities": "",
        "steps-TOTAL_FORMS": str(len(steps)),
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "0",
        "steps-MAX_NUM_FORMS": "1000",
    }
    for index, (position, provider) in enumerate(steps):
        data[f"steps-{index}-position"] = str(position)
        data[f"steps-{index}-provider"] = str(provider.pk)
    data.update(fields)
    return data


def test_it_adds_a_rule_with_its_providers_in_order(post: Callable, providers, invalidations) -> None:
    steps = [(0, providers["anthropic"]), (1, providers["ollama"])]

    response = post(
        reverse("admin:routing_routingrule_add"),
        rule_data(steps, min_prompt_tokens="4000", escalate_capabilities="architecture, security_review"),
    )

    assert response.status_code == 302
    rule = RoutingRule.objects.get(name="big-prompts")
    assert [step.provider.name for step in rule.steps.all()] == ["anthropic", "ollama"]
    assert rule.escalate_capabilities == ["architecture", "security_review"]
    assert invalidations


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"min_prompt_tokens": "5000", "max_prompt_tokens": "100"}, "Must not be below min_prompt_tokens."),
        ({"capability": "Code Generation"}, "A capability is a lowercase word like code_generation."),
        ({"escalate_capabilities": "ok, Not OK"}, "A capability is a lowercase word like code_generation."),
    ],
)
def test_it_refuses_a_badly_formed_rule(post: Callable, providers, fields: dict, message: str) -> None:
    response = post(reverse("admin:routing_routingrule_add"), rule_data([(0, providers["ollama"])], **fields))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not RoutingRule.objects.exists()


def test_it_refuses_a_provider_twice_in_one_rule(post: Callable, providers) -> None:
    steps = [(0, providers["ollama"]), (1, providers["ollama"])]

    response = post(reverse("admin:routing_routingrule_add"), rule_data(steps))

    assert response.status_code == 200
    assert "Please correct the duplicate data for provider" in response.content.decode()
    assert not RoutingRule.objects.exists()
    assert not RuleProvider.objects.exists()


def test_it_refuses_two_providers_at_one_position_in_a_rule(post: Callable, providers) -> None:
    steps = [(0, providers["ollama"]), (0, providers["openai"])]

    response = post(reverse("admin:routing_routingrule_add"), rule_data(steps))

    assert response.status_code == 200
    assert "share position 0" in response.content.decode()
    assert not RoutingRule.objects.exists()


# The ledger: read-only


@pytest.fixture
def entry(providers) -> LedgerEntry:
    return LedgerEntry.objects.create(
        created_at="2025-06-03T10:00:00Z",
        provider=providers["ollama"],
        model_name="mistral:latest",
        is_local=True,
        outcome="success",
        prompt_tokens=120,
        completion_tokens=480,
        latency_ms=10300,
        cost_usd=Decimal(0),
        agent="marcus",
        run_id=41,
    )


def test_it_shows_the_ledger_without_add_change_or_delete(admin: Client, entry: LedgerEntry) -> None:
    listing = admin.get(reverse("admin:routing_ledgerentry_changelist"))
    page = admin.get(reverse("admin:routing_ledgerentry_change", args=[entry.pk]))

    assert listing.status_code == 200
    assert reverse("admin:routing_ledgerentry_add") not in listing.content.decode()
    assert "delete_selected" not in listing.content.decode()
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()


def test_it_refuses_to_add_change_or_delete_a_ledger_row(post: Callable, admin: Client, entry: LedgerEntry) -> None:
    change_url = reverse("admin:routing_ledgerentry_change", args=[entry.pk])

    assert admin.get(reverse("admin:routing_ledgerentry_add")).status_code == 403
    assert post(reverse("admin:routing_ledgerentry_add"), {"model_name": "x"}).status_code == 403
    assert post(change_url, {"model_name": "tampered"}).status_code == 403
    assert post(reverse("admin:routing_ledgerentry_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    entry.refresh_from_db()
    assert entry.model_name == "mistral:latest"


def test_it_filters_and_searches_the_ledger(admin: Client, entry: LedgerEntry) -> None:
    url = reverse("admin:routing_ledgerentry_changelist")

    by_run = admin.get(url, {"run_id": "41"})
    other_run = admin.get(url, {"run_id": "42"})
    searched = admin.get(url, {"q": "marcus"})
    by_day = admin.get(url, {"created_at__year": "2025", "created_at__month": "6", "created_at__day": "3"})
    nonsense = admin.get(url, {"q": "not-a-number", "run_id": "x"})

    assert list(by_run.context["cl"].result_list) == [entry]
    assert list(other_run.context["cl"].result_list) == []
    assert list(searched.context["cl"].result_list) == [entry]
    assert list(by_day.context["cl"].result_list) == [entry]
    assert (nonsense.status_code, nonsense["Location"]) == (302, "/admin/routing/ledgerentry/?e=1")


def test_it_filters_the_ledger_by_source_through_the_one_rule(admin: Client, entry: LedgerEntry) -> None:
    gateway = LedgerEntry.objects.create(
        created_at="2025-06-03T11:00:00Z",
        provider=entry.provider,
        model_name="mistral:latest",
        is_local=True,
        outcome="success",
        agent="gateway",
        endpoint="/v1/chat/completions",
    )
    url = reverse("admin:routing_ledgerentry_changelist")

    assert list(admin.get(url, {"source": "gateway"}).context["cl"].result_list) == [gateway]
    assert list(admin.get(url, {"source": "agents"}).context["cl"].result_list) == [entry]
    robots = admin.get(url, {"source": "robots"})
    assert list(robots.context["cl"].result_list) == [gateway, entry]  # an unknown source filters nothing out


# Every field reaches the admin


@pytest.mark.parametrize("model", [Provider, LLMModel, Price, RoutingPolicy, RoutingRule])
def test_it_offers_every_editable_field(staff_user, model) -> None:
    request = RequestFactory().get("/admin/")
    request.user = staff_user
    form = django_admin.site._registry[model].get_form(request)

    editable = {f.name for f in model._meta.concrete_fields if f.editable and not f.primary_key}

    assert editable <= set(form.base_fields)


def test_it_answers_every_routing_page_without_an_error(admin: Client, providers, entry: LedgerEntry) -> None:
    rule = RoutingRule.objects.create(name="tests-local", capability="testing")
    RuleProvider.objects.create(rule=rule, provider=providers["ollama"], position=0)
    # (object, its list page, its add page): the one policy row's list leads to it; the ledger is never added to.
    objects = [
        (providers["ollama"], 200, 200),
        (LLMModel.objects.first(), 200, 200),
        (Price.objects.first(), 200, 200),
        (RoutingPolicy.get(), 302, 403),
        (rule, 200, 200),
        (entry, 200, 403),
    ]

    for obj, changelist, add in objects:
        info = (obj._meta.app_label, obj._meta.model_name)
        assert admin.get(reverse("admin:{}_{}_changelist".format(*info))).status_code == changelist
        assert admin.get(reverse("admin:{}_{}_add".format(*info))).status_code == add
        assert admin.get(reverse("admin:{}_{}_change".format(*info), args=[obj.pk])).status_code == 200
        assert admin.get(reverse("admin:{}_{}_history".format(*info), args=[obj.pk])).status_code == 200


def test_it_adds_an_embedding_model_inline_and_lists_models_with_their_kind(
    admin: Client, post: Callable, providers
) -> None:
    ollama = providers["ollama"]
    embedder = {"name": "nomic-embed-text:latest", "context_window": 2048, "capabilities": "", "kind": "embedding"}

    post(reverse("admin:routing_provider_change", args=[ollama.pk]), provider_data(ollama, models=[embedder]))
    page = admin.get(reverse("admin:routing_llmmodel_changelist")).content.decode()

    assert ollama.models.get(name="nomic-embed-text:latest").kind == "embedding"
    assert ollama.models.get(name="mistral:latest").kind == "generation"  # a post without the field: a chat model
    assert "embedding (/v1/embeddings and /api/embed only)" in page


def test_it_refuses_an_embedding_model_on_anthropic(post: Callable, providers) -> None:
    anthropic = providers["anthropic"]
    embedder = {"name": "claude-embed", "context_window": 2048, "capabilities": "", "kind": "embedding"}

    response = post(
        reverse("admin:routing_provider_change", args=[anthropic.pk]), provider_data(anthropic, models=[embedder])
    )

    assert response.status_code == 200
    assert "has no embeddings API" in response.content.decode()
    assert not anthropic.models.filter(name="claude-embed").exists()
