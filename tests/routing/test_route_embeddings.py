"""embed_route() against the protocol fakes: embedding models only, local first, fallback, budget, ledger rows."""

from decimal import Decimal

import pytest

from routing.embedding import EmbedRouteRequest, embed_route
from routing.models import CallOutcome, LedgerEntry, LLMModel
from routing.providers.base import EmbedRequest, PermanentError, embedding_vectors
from routing.router import NoProviderAvailable, route
from routing.table import current_table
from tests.routing.conftest_router import (  # noqa: F401
    EPOCH,
    add_price,
    ask,
    fresh_routing,
    make_provider,
    make_rule,
    set_policy,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_routing")]

KEY_ENV = "SWITCHYARD_TEST_OPENAI_KEY"
TEXTS = ("the quick brown fox", "jumps over the lazy dog today")


def rows() -> list[LedgerEntry]:
    return list(LedgerEntry.objects.order_by("attempt", "id"))


@pytest.fixture
def cloud(fake_openai, monkeypatch):
    """OpenAI with text-embedding-3-small at $0.02/Mtok, a chat model beside it."""
    monkeypatch.setenv(KEY_ENV, "sk-test-1234567890")
    provider = make_provider(
        "openai",
        kind="openai",
        base_url=fake_openai.base_url,
        model="text-embedding-3-small",
        model_kind="embedding",
        is_local=False,
        priority=3,
        api_key_env=KEY_ENV,
        price=("0.02", "0"),
    )
    LLMModel.objects.create(provider=provider, name="gpt-4o-mini")
    return fake_openai


def local_ollama(fake_ollama, **fields):
    fake_ollama.models = ["mistral:latest", "nomic-embed-text:latest"]
    provider = make_provider("ollama", kind="ollama", base_url=fake_ollama.base_url, model="mistral:latest", **fields)
    embedder = LLMModel.objects.create(provider=provider, name="nomic-embed-text:latest", kind="embedding")
    add_price(embedder, EPOCH, "0", "0")
    return provider


def test_an_embedding_goes_to_the_local_embedding_model_first_and_is_metered(fake_ollama, cloud) -> None:
    local_ollama(fake_ollama)

    result = embed_route(EmbedRouteRequest(inputs=TEXTS, agent="gateway", idempotency_key="gateway:e1"))

    assert (result.provider, result.model, result.is_local) == ("ollama", "nomic-embed-text:latest", True)
    assert [len(vector) for vector in result.embeddings.vectors] == [768, 768]
    assert fake_ollama.requests[-1].path == "/api/embed"
    assert fake_ollama.requests[-1].json == {"model": "nomic-embed-text:latest", "input": list(TEXTS), "truncate": True}
    [entry] = rows()
    assert (entry.outcome, entry.model_name, entry.agent) == (CallOutcome.SUCCESS, "nomic-embed-text:latest", "gateway")
    assert (entry.prompt_tokens, entry.completion_tokens, entry.tokens_estimated) == (10, 0, False)
    assert entry.reason == "embedding, priority 1, local"
    assert entry.cost_usd == Decimal(0)
    # The baseline of an embedding is the cloud's embedding model: 10 tokens at $0.02/Mtok.
    assert entry.baseline_cost_usd == Decimal("0.0000002")
    assert entry.idempotency_key == "gateway:e1:attempt:1"


def test_it_falls_back_to_the_cloud_when_the_local_host_fails(fake_ollama, cloud) -> None:
    local_ollama(fake_ollama)
    fake_ollama.behave("server_error")

    result = embed_route(EmbedRouteRequest(inputs=TEXTS, user_id=None))

    assert (result.provider, result.model, result.is_local) == ("openai", "text-embedding-3-small", False)
    assert cloud.requests[-1].json["encoding_format"] == "float"
    failed, answered = rows()
    assert (failed.provider.name, failed.outcome) == ("ollama", CallOutcome.TRANSIENT)
    assert answered.reason.startswith("fallback: ollama 500")
    assert (answered.prompt_tokens, answered.completion_tokens) == (10, 0)
    assert answered.cost_usd == Decimal("0.0000002") == answered.baseline_cost_usd


def test_a_chat_is_never_sent_to_an_embedding_model(fake_server) -> None:
    only_embeds = fake_server("openai_compatible")
    make_provider("embedder", base_url=only_embeds.base_url, model="text-embedding-3-small", model_kind="embedding")

    with pytest.raises(NoProviderAvailable) as refused:
        route(ask())
    with pytest.raises(NoProviderAvailable):
        route(ask(model="text-embedding-3-small"))

    assert "embedder: serves only embedding models" in refused.value.reason
    assert only_embeds.requests == []


def test_an_embedding_is_never_sent_to_a_chat_model(fake_server) -> None:
    chat = fake_server("openai_compatible")
    make_provider("chat", base_url=chat.base_url, model="gpt-4o-mini")

    with pytest.raises(NoProviderAvailable) as refused:
        embed_route(EmbedRouteRequest(inputs=TEXTS))
    with pytest.raises(NoProviderAvailable):
        embed_route(EmbedRouteRequest(inputs=TEXTS, model="gpt-4o-mini"))

    assert "no enabled provider has an embedding model" in refused.value.reason
    assert chat.requests == []


def test_a_chat_on_a_provider_with_both_kinds_gets_its_chat_model(fake_ollama) -> None:
    local_ollama(fake_ollama)

    result = route(ask())

    assert result.model == "mistral:latest"
    assert current_table().by_name["ollama"].embedding_model() == "nomic-embed-text:latest"


def test_a_cloud_embedding_that_does_not_fit_the_budget_is_not_made(cloud, django_user_model) -> None:
    user = django_user_model.objects.create_user(username="ada")
    set_policy(monthly_cloud_budget_usd=Decimal(0))

    with pytest.raises(NoProviderAvailable) as refused:
        embed_route(EmbedRouteRequest(inputs=TEXTS, user_id=user.pk))

    assert "cloud budget" in refused.value.reason
    assert cloud.requests == []
    assert not LedgerEntry.objects.exists()


def test_a_cloud_embedding_reserves_its_prompt_against_the_budget_and_settles_it(cloud, django_user_model) -> None:
    user = django_user_model.objects.create_user(username="ada")

    embed_route(EmbedRouteRequest(inputs=TEXTS, user_id=user.pk))

    [entry] = rows()
    assert (entry.user_id, entry.reserved_usd, entry.cost_usd) == (user.pk, None, Decimal("0.0000002"))


def test_a_provider_that_does_not_know_the_model_is_a_permanent_failure_and_the_next_is_asked(
    fake_server, cloud
) -> None:
    other = fake_server("openai_compatible")
    make_provider("llama", base_url=other.base_url, model="text-embedding-3-small", model_kind="embedding")
    other.embedding_models = []

    result = embed_route(EmbedRouteRequest(inputs=TEXTS))

    assert result.provider == "openai"
    assert (rows()[0].outcome, rows()[0].error[:3]) == (CallOutcome.PERMANENT, "404")


def test_a_vector_per_token_is_not_an_embedding() -> None:
    request = EmbedRequest(model="gemma", inputs=("hi",))

    with pytest.raises(PermanentError, match="one vector per token"):
        embedding_vectors([[[0.1, 0.2], [0.3, 0.4]]], request)


def test_vectors_of_other_dimensions_than_asked_are_refused() -> None:
    request = EmbedRequest(model="gemma", inputs=("hi",), dimensions=2)

    with pytest.raises(PermanentError, match="does not support dimensions: asked for 2, it gave 3"):
        embedding_vectors([[0.1, 0.2, 0.3]], request)


def test_dimensions_are_asked_of_the_provider(cloud) -> None:
    result = embed_route(EmbedRouteRequest(inputs=TEXTS[:1], dimensions=256))

    assert len(result.embeddings.vectors[0]) == 256
    assert cloud.requests[-1].json["dimensions"] == 256


def test_a_rule_that_keeps_an_agent_local_keeps_its_embeddings_local(fake_ollama, cloud) -> None:
    local_ollama(fake_ollama)
    fake_ollama.behave("server_error")
    make_rule("gateway-stays-local", agent="gateway", allow_cloud=False)

    with pytest.raises(NoProviderAvailable) as refused:
        embed_route(EmbedRouteRequest(inputs=TEXTS, agent="gateway"))

    assert "openai: cloud not allowed by rule gateway-stays-local" in refused.value.reason
    assert cloud.requests == []


def test_a_rule_s_escalation_does_not_send_embeddings_to_the_cloud_first(fake_ollama, cloud) -> None:
    local_ollama(fake_ollama)
    make_rule("large-prompts-to-cloud", escalate_above_tokens=1)

    result = embed_route(EmbedRouteRequest(inputs=TEXTS))

    assert (result.provider, result.entry.reason) == ("ollama", "embedding, priority 1, local")
