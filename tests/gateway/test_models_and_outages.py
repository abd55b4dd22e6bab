"""/v1/models, and a request no provider can take, through the official `openai` package against uvicorn."""

from __future__ import annotations

import openai
import pytest

from routing.models import LedgerEntry
from tests.factories import provider_create
from tests.routing.conftest_router import forget_health

HELLO = [{"role": "user", "content": "hello"}]
CLOSED = "http://127.0.0.1:9"  # nothing listens there


def client(gateway, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=key or gateway.key, max_retries=0, timeout=30)


@pytest.fixture
def providers(empty_gateway):
    names = ["ollama", "spare", "off"]
    forget_health(names)
    provider_create("ollama", kind="ollama", base_url=CLOSED, model="mistral:latest", priority=1)
    provider_create("spare", base_url=CLOSED, model="mistral:latest", priority=2)
    provider_create("off", base_url=CLOSED, model="hidden-model", priority=3, enabled=False)
    yield
    forget_health(names)


def test_the_models_list_is_auto_then_each_enabled_model_once(empty_gateway, providers):
    listed = client(empty_gateway).models.list()

    assert [(model.id, model.owned_by) for model in listed] == [("auto", "switchyard"), ("mistral:latest", "ollama")]


def test_the_models_list_needs_a_key(empty_gateway):
    with pytest.raises(openai.AuthenticationError):
        client(empty_gateway, key="wrong").models.list()


def test_a_request_no_provider_can_take_is_a_503_that_says_why_and_is_metered(empty_gateway, providers):
    with pytest.raises(openai.InternalServerError) as raised:
        client(empty_gateway).chat.completions.create(model="mistral:latest", messages=HELLO, max_tokens=4)

    assert raised.value.status_code == 503
    assert raised.value.code == "no_provider_available"
    assert "ollama" in raised.value.message and "spare" in raised.value.message
    rows = LedgerEntry.objects.order_by("id")
    assert [(row.provider.name, row.agent, row.user_id) for row in rows] == [
        ("ollama", "gateway", empty_gateway.user_id),
        ("spare", "gateway", empty_gateway.user_id),
    ]


def test_a_model_only_a_disabled_provider_serves_is_not_found(empty_gateway, providers):
    with pytest.raises(openai.NotFoundError) as raised:
        client(empty_gateway).chat.completions.create(model="hidden-model", messages=HELLO, max_tokens=4)

    assert raised.value.code == "model_not_found"
    assert not LedgerEntry.objects.exists()
