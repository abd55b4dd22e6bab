"""Model aliases through the official `openai` package against uvicorn: a client names `code` (or `auto`)
and the full router chooses, with the capability's rules; /v1/models (and Ollama's /api/tags) list the
aliases first.

Two OpenAI-compatible fakes stand for two local hosts: which one answered shows which rule decided."""

from __future__ import annotations

import openai
import pytest

from accounts.services import key_create
from routing.models import LedgerEntry, LLMModel, ModelAlias, Provider
from routing.table import invalidate_routing_cache
from tests.factories import provider_create
from tests.gateway.test_ollama_client import client as ollama_client
from tests.routing.conftest_router import forget_health, make_rule

HELLO = [{"role": "user", "content": "hello"}]


def client(gateway, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=key or gateway.key, max_retries=0, timeout=30)


def row(completion_id: str) -> LedgerEntry:
    return LedgerEntry.objects.select_related("provider").get(idempotency_key=f"gateway:{completion_id}:attempt:1")


@pytest.fixture
def hosts(empty_gateway, fake_server):
    """`near` (priority 1) and `far` (priority 2), each serving its own model; the aliases code and tests."""
    near, far = fake_server("openai_compatible"), fake_server("openai_compatible")
    near.models, far.models = ["near-model"], ["far-model"]
    forget_health(["near", "far"])
    provider_create("near", base_url=near.base_url, model="near-model", priority=1)
    provider_create("far", base_url=far.base_url, model="far-model", priority=2)
    ModelAlias.objects.create(name="code", capability="code_generation", description="Writing code.")
    ModelAlias.objects.create(name="tests", capability="testing")
    invalidate_routing_cache()
    yield near, far
    forget_health(["near", "far"])


def test_the_models_list_gives_the_aliases_first_then_the_concrete_models(empty_gateway, hosts):
    listed = client(empty_gateway).models.list()

    assert [(model.id, model.owned_by) for model in listed] == [
        ("auto", "switchyard"),
        ("code", "switchyard"),
        ("tests", "switchyard"),
        ("near-model", "near"),
        ("far-model", "far"),
    ]


def test_the_ollama_tags_list_the_aliases_too(empty_gateway, hosts):
    listed = ollama_client(empty_gateway).list()

    assert [model.model for model in listed.models] == ["auto", "code", "tests", "near-model", "far-model"]


def test_an_alias_is_routed_with_its_capability_rule(empty_gateway, hosts):
    make_rule("code-on-far", capability="code_generation", providers=[Provider.objects.get(name="far")])

    coded = client(empty_gateway).chat.completions.create(model="code", messages=HELLO, max_tokens=4)
    plain = client(empty_gateway).chat.completions.create(model="auto", messages=HELLO, max_tokens=4)

    assert (row(coded.id).provider.name, row(coded.id).reason) == ("far", "rule code-on-far, local")
    assert coded.model == "far-model"
    assert (row(plain.id).provider.name, row(plain.id).reason) == ("near", "priority 1, local")


def test_an_alias_whose_capability_a_rule_escalates_goes_to_the_cloud_first(
    empty_gateway, hosts, fake_openai, monkeypatch
):
    monkeypatch.setenv("SWITCHYARD_TEST_CLOUD_KEY", "sk-test-0123456789abcdef")
    forget_health(["cloud"])
    provider_create(
        "cloud",
        kind="openai",
        base_url=fake_openai.base_url,
        is_local=False,
        priority=3,
        model="gpt-4o-mini",
        api_key_env="SWITCHYARD_TEST_CLOUD_KEY",
    )
    make_rule("tests-are-hard", escalate_capabilities=["testing"])

    tested = client(empty_gateway).chat.completions.create(model="tests", messages=HELLO, max_tokens=4)
    coded = client(empty_gateway).chat.completions.create(model="code", messages=HELLO, max_tokens=4)

    assert row(tested.id).provider.name == "cloud"
    assert row(tested.id).reason == "escalated: testing is marked complex (rule tests-are-hard); priority 3, cloud"
    assert row(coded.id).provider.name == "near"
    forget_health(["cloud"])


def test_an_alias_gets_the_model_its_capability_is_listed_on(empty_gateway, hosts):
    near, _ = hosts
    near.models = ["near-model", "near-tester"]
    LLMModel.objects.create(provider=Provider.objects.get(name="near"), name="near-tester", capabilities=["testing"])
    Provider.objects.filter(name="near").update(capabilities=["code_generation"])
    invalidate_routing_cache()

    answer = client(empty_gateway).chat.completions.create(model="tests", messages=HELLO, max_tokens=4)

    assert (row(answer.id).provider.name, answer.model) == ("near", "near-tester")
    assert near.requests[-1].json["model"] == "near-tester"


def test_a_disabled_alias_is_an_unknown_model(empty_gateway, hosts):
    ModelAlias.objects.filter(name="code").update(enabled=False)
    invalidate_routing_cache()

    with pytest.raises(openai.NotFoundError) as raised:
        client(empty_gateway).chat.completions.create(model="code", messages=HELLO, max_tokens=4)

    assert raised.value.code == "model_not_found"
    assert "code" not in [model.id for model in client(empty_gateway).models.list()]


def test_a_key_limited_to_an_alias_may_use_it_and_lists_only_it(empty_gateway, hosts, django_user_model):
    user = django_user_model.objects.get(pk=empty_gateway.user_id)
    secret = key_create(user=user, name="editor", allowed_models=["code"]).secret

    answer = client(empty_gateway, key=secret).chat.completions.create(model="code", messages=HELLO, max_tokens=4)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client(empty_gateway, key=secret).chat.completions.create(model="auto", messages=HELLO, max_tokens=4)

    assert row(answer.id).user_id == empty_gateway.user_id
    assert refused.value.code == "model_not_allowed"
    assert [model.id for model in client(empty_gateway, key=secret).models.list()] == ["code"]
