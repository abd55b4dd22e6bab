"""POST /v1/embeddings and POST /api/embed through the official `openai` and `ollama` packages, unchanged,
against uvicorn: the real local embedding model first, the (fake) OpenAI cloud when the local host fails."""

from __future__ import annotations

import math
from decimal import Decimal

import httpx
import ollama
import openai
import pytest

from routing.models import CallOutcome, LedgerEntry, LLMModel, Provider
from routing.table import invalidate_routing_cache
from tests.factories import provider_create
from tests.localmodel import EMBED_ALIAS as LOCAL_EMBED
from tests.routing.conftest_router import forget_health

TEXTS = ["Switchyard routes every call.", "The local host answers first."]
CLOSED = "http://127.0.0.1:9"  # nothing listens there
KEY_ENV = "SWITCHYARD_TEST_OPENAI_KEY"


def openai_client(gateway, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=key or gateway.key, max_retries=0, timeout=60)


def ollama_client(gateway, key: str | None = None) -> ollama.Client:
    host = gateway.base_url.removesuffix("/v1")
    return ollama.Client(host=host, headers={"Authorization": f"Bearer {key or gateway.key}"}, timeout=60)


def rows() -> list[LedgerEntry]:
    return list(LedgerEntry.objects.select_related("provider").order_by("id"))


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


@pytest.fixture
def cloud(empty_gateway, fake_openai, monkeypatch):
    """OpenAI (the fake) with text-embedding-3-small at $0.02/Mtok; a local embedding host that is down."""
    monkeypatch.setenv(KEY_ENV, "sk-test-1234567890")
    names = ["local-down", "openai"]
    forget_health(names)
    provider_create("local-down", base_url=CLOSED, model="nomic-embed-text:latest", model_kind="embedding", priority=1)
    provider_create(
        "openai",
        kind="openai",
        base_url=fake_openai.base_url,
        model="text-embedding-3-small",
        model_kind="embedding",
        is_local=False,
        priority=2,
        api_key_env=KEY_ENV,
        price=("0.02", "0"),
    )
    yield fake_openai
    forget_health(names)


# -- the real local model -------------------------------------------------------------------------


def test_the_openai_client_gets_one_vector_per_input_from_the_local_model(gateway):
    answer = openai_client(gateway).embeddings.create(model="auto", input=TEXTS)

    assert [item.index for item in answer.data] == [0, 1]
    first, second = (item.embedding for item in answer.data)
    assert len(first) == len(second) == 640  # Gemma 3 270M's hidden size
    assert first != second
    assert answer.model == LOCAL_EMBED
    assert answer.usage.prompt_tokens == answer.usage.total_tokens > 0
    [entry] = rows()
    assert (entry.provider.name, entry.model_name, entry.is_local, entry.outcome) == (
        "local-gemma",
        LOCAL_EMBED,
        True,
        CallOutcome.SUCCESS,
    )
    assert (entry.agent, entry.user_id, entry.endpoint) == ("gateway", gateway.user_id, "/v1/embeddings")
    assert entry.client.startswith("OpenAI/Python")
    assert (entry.prompt_tokens, entry.completion_tokens, entry.cost_usd) == (
        answer.usage.prompt_tokens,
        0,
        Decimal(0),
    )


def test_base64_and_float_encodings_carry_the_same_vector(gateway):
    client = openai_client(gateway)

    as_base64 = client.embeddings.create(model=LOCAL_EMBED, input=TEXTS[0])  # the client's default
    as_float = client.embeddings.create(model=LOCAL_EMBED, input=TEXTS[0], encoding_format="float")

    assert as_base64.data[0].embedding == pytest.approx(as_float.data[0].embedding, rel=1e-6, abs=1e-6)


def test_the_ollama_client_gets_embeddings_from_the_local_model(gateway):
    answer = ollama_client(gateway).embed(model=LOCAL_EMBED, input=TEXTS)

    assert len(answer.embeddings) == 2
    assert len(answer.embeddings[0]) == 640
    assert answer.model == LOCAL_EMBED
    assert answer.prompt_eval_count > 0
    assert answer.total_duration > 0
    [entry] = rows()
    assert (entry.provider.name, entry.prompt_tokens, entry.completion_tokens) == (
        "local-gemma",
        answer.prompt_eval_count,
        0,
    )
    assert (entry.endpoint, entry.client.split("/")[0]) == ("/api/embed", "ollama-python")


def test_a_chat_naming_the_embedding_model_is_refused_and_the_chat_model_still_answers(gateway):
    client = openai_client(gateway)
    hello = [{"role": "user", "content": "Hi"}]

    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=LOCAL_EMBED, messages=hello, max_tokens=2)
    chat = client.chat.completions.create(model="auto", messages=hello, max_tokens=2)

    assert raised.value.code == "model_not_supported"
    assert chat.model == "gemma3-270m"


# -- the cloud fallback ---------------------------------------------------------------------------


def test_the_cloud_answers_when_the_local_host_is_down_and_both_attempts_are_metered(empty_gateway, cloud):
    answer = openai_client(empty_gateway).embeddings.create(model="auto", input=TEXTS, dimensions=256)

    assert [len(item.embedding) for item in answer.data] == [256, 256]
    assert answer.model == "text-embedding-3-small"
    assert answer.usage.prompt_tokens == 9  # the fake counts words
    assert cloud.requests[-1].json == {
        "model": "text-embedding-3-small",
        "input": TEXTS,
        "encoding_format": "float",
        "dimensions": 256,
    }
    down, answered = rows()
    assert (down.provider.name, down.outcome, down.problem) == ("local-down", CallOutcome.TRANSIENT, "refused")
    assert (answered.provider.name, answered.outcome, answered.is_local) == ("openai", CallOutcome.SUCCESS, False)
    assert (answered.prompt_tokens, answered.completion_tokens) == (9, 0)
    assert answered.cost_usd == Decimal("0.00000018")  # 9 tokens at $0.02 per million
    assert answered.user_id == empty_gateway.user_id


def test_the_cost_is_in_the_response_headers(empty_gateway, cloud):
    raw = openai_client(empty_gateway).embeddings.with_raw_response.create(model="auto", input=TEXTS)

    assert raw.headers["x-switchyard-provider"] == "openai"
    assert raw.headers["x-switchyard-model"] == "text-embedding-3-small"
    assert Decimal(raw.headers["x-switchyard-cost-usd"]) == Decimal("0.00000018")


def test_the_ollama_client_falls_back_to_the_cloud_too(empty_gateway, cloud):
    answer = ollama_client(empty_gateway).embed(model="auto", input="Why is the sky blue?")

    assert answer.model == "text-embedding-3-small"
    assert len(answer.embeddings) == 1 and len(answer.embeddings[0]) == 1536
    assert answer.prompt_eval_count == 5


def test_a_cloud_error_after_the_local_failure_is_a_503_naming_both(empty_gateway, cloud):
    cloud.behave("rate_limited")

    with pytest.raises(openai.InternalServerError) as raised:
        openai_client(empty_gateway).embeddings.create(model="auto", input=TEXTS)

    assert raised.value.status_code == 503
    assert "local-down" in raised.value.message and "openai: 429" in raised.value.message
    assert [row.outcome for row in rows()] == [CallOutcome.TRANSIENT, CallOutcome.TRANSIENT]


# -- refusals, in each format ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": ""}, "input[0]"),
        ({"input": []}, "input"),
        ({"input": [1, 2, 3]}, "input"),  # token arrays
        ({"input": "hi", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "hi", "dimensions": 0}, "dimensions"),
    ],
)
def test_bad_input_is_a_400_naming_the_parameter(empty_gateway, cloud, body, param):
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client(empty_gateway).embeddings.create(model="auto", **body)

    assert raised.value.param == param
    assert not LedgerEntry.objects.exists()


def test_bad_input_is_a_400_in_ollama_s_error_shape(empty_gateway, cloud):
    with pytest.raises(ollama.ResponseError) as raised:
        ollama_client(empty_gateway).embed(model="auto", input=["some text", ""])
    wrong_type = httpx.post(
        f"{empty_gateway.base_url.removesuffix('/v1')}/api/embed",
        json={"model": "auto", "input": [[1, 2, 3]]},
        headers={"Authorization": f"Bearer {empty_gateway.key}"},
    )

    assert (raised.value.status_code, raised.value.error) == (400, "Invalid 'input[1]': expected a non-empty string.")
    assert wrong_type.status_code == 400
    assert "token arrays are not supported" in wrong_type.json()["error"]
    assert not LedgerEntry.objects.exists()


def test_an_ollama_request_without_input_loads_nothing_and_answers_no_embeddings(empty_gateway, cloud):
    answer = ollama_client(empty_gateway).embed(model="auto")

    assert (answer.model, answer.embeddings) == ("auto", [])
    assert cloud.requests == []
    assert not LedgerEntry.objects.exists()


def test_an_unknown_model_is_a_404_in_each_format(empty_gateway, cloud):
    with pytest.raises(openai.NotFoundError) as from_openai:
        openai_client(empty_gateway).embeddings.create(model="no-such-model", input="hi")
    with pytest.raises(ollama.ResponseError) as from_ollama:
        ollama_client(empty_gateway).embed(model="no-such-model", input="hi")

    assert from_openai.value.code == "model_not_found"
    assert (from_ollama.value.status_code, from_ollama.value.error) == (404, "model 'no-such-model' not found")
    assert not LedgerEntry.objects.exists()


def test_a_chat_model_named_for_an_embedding_is_a_400(empty_gateway, cloud):
    LLMModel.objects.create(provider=Provider.objects.get(name="openai"), name="gpt-4o-mini")
    invalidate_routing_cache()

    with pytest.raises(openai.BadRequestError) as raised:
        openai_client(empty_gateway).embeddings.create(model="gpt-4o-mini", input="hi")

    assert (raised.value.code, raised.value.param) == ("model_not_supported", "model")


def test_a_wrong_key_is_a_401_in_each_format(empty_gateway, cloud):
    with pytest.raises(openai.AuthenticationError):
        openai_client(empty_gateway, key="wrong").embeddings.create(model="auto", input="hi")
    with pytest.raises(ollama.ResponseError) as from_ollama:
        ollama_client(empty_gateway, key="wrong").embed(model="auto", input="hi")

    assert from_ollama.value.status_code == 401


def test_embeddings_count_against_the_key_s_rate_limit(empty_gateway, cloud, django_user_model):
    from accounts.services import key_create

    user = django_user_model.objects.get(pk=empty_gateway.user_id)
    created = key_create(user=user, name="one a minute", requests_per_minute=1)
    client = openai_client(empty_gateway, key=created.secret)

    client.embeddings.create(model="auto", input="hi")
    with pytest.raises(openai.RateLimitError) as raised:
        client.embeddings.create(model="auto", input="hi")
    with pytest.raises(ollama.ResponseError) as from_ollama:
        ollama_client(empty_gateway, key=created.secret).embed(model="auto", input="hi")

    assert raised.value.response.headers["retry-after"]
    assert from_ollama.value.status_code == 429


def test_the_remaining_budget_is_in_the_response_headers_in_each_format(empty_gateway, cloud):
    """As a chat's: what is left after this embedding's cloud cost ($0.00000018 each), the user's budget
    being the policy's $20."""
    raw = openai_client(empty_gateway).embeddings.with_raw_response.create(model="auto", input=TEXTS)
    ollama_raw = httpx.post(
        f"{empty_gateway.base_url.removesuffix('/v1')}/api/embed",
        json={"model": "auto", "input": TEXTS},
        headers={"Authorization": f"Bearer {empty_gateway.key}"},
        timeout=60,
    )

    assert raw.headers["x-switchyard-budget-remaining-user-usd"] == f"{Decimal(20) - Decimal('0.00000018'):.10f}"
    assert ollama_raw.headers["x-switchyard-budget-remaining-user-usd"] == f"{Decimal(20) - Decimal('0.00000036'):.10f}"
    assert ollama_raw.headers["x-switchyard-budget-scope"] == "user"
