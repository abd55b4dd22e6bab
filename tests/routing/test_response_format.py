"""A structured answer (response_format): each adapter asks for it in its protocol's words (checked on
the body the fake received), and the plan skips a provider that cannot be asked for it."""

from __future__ import annotations

import pytest

from routing.models import LedgerEntry
from routing.plan import plan_route
from routing.providers import get_adapter
from routing.providers.base import AnswerFormat, ChatRequest, PermanentError, ProviderConfig, ResponseFormat
from routing.router import NoProviderAvailable, route
from routing.table import current_table
from tests.routing.conftest_router import ask, fresh_routing, make_provider

__all__ = ["fresh_routing"]  # a fixture, used below

KEY_ENV = "SWITCHYARD_TEST_CLOUD_KEY"
MESSAGES = [{"role": "user", "content": "Is water wet? Answer in JSON."}]
SCHEMA = {"type": "object", "properties": {"wet": {"type": "boolean"}}, "required": ["wet"]}
JSON_OBJECT = ResponseFormat(AnswerFormat.JSON_OBJECT)
JSON_SCHEMA = ResponseFormat(AnswerFormat.JSON_SCHEMA, schema=SCHEMA, name="wetness", strict=True)


@pytest.fixture(autouse=True)
def cloud_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test-0123456789abcdef")


def sent(server, kind: str, response_format: ResponseFormat, *, model: str, stream: bool = False) -> dict:
    """The body the fake received for one call with this response format."""
    config = ProviderConfig(name=kind, kind=kind, base_url=server.base_url, is_local=False, api_key_env=KEY_ENV)
    request = ChatRequest(model=model, messages=MESSAGES, response_format=response_format, stream=stream)
    get_adapter(config).chat(request)
    return server.requests[-1].json


# --- the adapters ----------------------------------------------------------------------------


def test_openai_gets_its_own_json_schema_response_format(fake_openai):
    body = sent(fake_openai, "openai", JSON_SCHEMA, model="gpt-4o-mini")

    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "wetness", "schema": SCHEMA, "strict": True},
    }


def test_a_schema_given_without_a_name_reaches_openai_named_as_it_requires(fake_openai):
    unnamed = ResponseFormat(AnswerFormat.JSON_SCHEMA, schema=SCHEMA)

    assert sent(fake_openai, "openai", unnamed, model="gpt-4o-mini")["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": SCHEMA},
    }


def test_openai_gets_json_object_when_any_json_is_asked_for(fake_openai):
    assert sent(fake_openai, "openai", JSON_OBJECT, model="gpt-4o-mini")["response_format"] == {"type": "json_object"}


def test_a_compatible_server_gets_llama_cpps_json_object_with_the_schema_beside_it(fake_openai):
    streamed = sent(fake_openai, "openai_compatible", JSON_SCHEMA, model="gpt-4o-mini", stream=True)
    plain = sent(fake_openai, "openai_compatible", JSON_OBJECT, model="gpt-4o-mini")

    assert streamed["response_format"] == {"type": "json_object", "schema": SCHEMA}
    assert plain["response_format"] == {"type": "json_object"}


def test_ollama_gets_format_json_or_the_schema_itself(fake_ollama):
    assert sent(fake_ollama, "ollama", JSON_OBJECT, model="mistral:latest")["format"] == "json"
    assert sent(fake_ollama, "ollama", JSON_SCHEMA, model="mistral:latest", stream=True)["format"] == SCHEMA


def test_text_adds_nothing_to_the_body(fake_openai, fake_ollama):
    config = ProviderConfig(name="o", kind="openai", base_url=fake_openai.base_url, is_local=False, api_key_env=KEY_ENV)
    get_adapter(config).chat(ChatRequest(model="gpt-4o-mini", messages=MESSAGES))
    config = ProviderConfig(name="l", kind="ollama", base_url=fake_ollama.base_url, is_local=True)
    get_adapter(config).chat(ChatRequest(model="mistral:latest", messages=MESSAGES))

    assert "response_format" not in fake_openai.requests[-1].json
    assert "format" not in fake_ollama.requests[-1].json


def test_anthropic_is_never_sent_a_request_it_cannot_answer_in_json(fake_anthropic):
    config = ProviderConfig(name="a", kind="anthropic", base_url=fake_anthropic.base_url, is_local=False)
    request = ChatRequest(model="claude-haiku-4-5", messages=MESSAGES, response_format=JSON_OBJECT)

    with pytest.raises(PermanentError, match="cannot answer in json_object: Anthropic takes no response_format"):
        get_adapter(config).chat(request)
    assert fake_anthropic.requests == []


# --- the plan and the router -----------------------------------------------------------------


@pytest.fixture
def claude_then_gpt(db, fresh_routing, fake_anthropic, fake_openai):
    make_provider(
        "claude",
        kind="anthropic",
        base_url=fake_anthropic.base_url,
        is_local=False,
        priority=1,
        model="claude-haiku-4-5",
        api_key_env=KEY_ENV,
    )
    make_provider(
        "gpt",
        kind="openai",
        base_url=fake_openai.base_url,
        is_local=False,
        priority=2,
        model="gpt-4o-mini",
        api_key_env=KEY_ENV,
    )
    return fake_anthropic, fake_openai


def test_the_plan_skips_a_provider_that_cannot_answer_in_json_and_says_why(claude_then_gpt):
    plan = plan_route(current_table(), prompt_tokens=10, response_format=JSON_SCHEMA)

    assert [candidate.provider.name for candidate in plan.candidates] == ["gpt"]
    assert plan.skipped == ("claude: cannot answer in json_schema: Anthropic takes no response_format",)
    assert plan.refused == ""


def test_the_router_falls_through_to_a_provider_that_can_answer_in_json(claude_then_gpt):
    anthropic, openai = claude_then_gpt
    openai.reply = '{"wet": true}'

    result = route(ask("Is water wet?", response_format=JSON_SCHEMA))

    assert (result.provider, result.completion.text) == ("gpt", '{"wet": true}')
    assert anthropic.requests == []
    assert openai.requests[-1].json["response_format"]["type"] == "json_schema"
    [row] = LedgerEntry.objects.all()
    assert row.provider.name == "gpt"


def test_a_request_only_providers_without_json_could_take_is_refused_as_the_request(claude_then_gpt):
    with pytest.raises(NoProviderAvailable) as refused:
        route(ask("Is water wet?", model="claude-haiku-4-5", response_format=JSON_OBJECT))

    assert refused.value.refused is True
    assert refused.value.reason == (
        "no provider that could take this request can answer in json_object: claude takes no response_format"
    )
    assert not LedgerEntry.objects.exists()


def test_a_json_capable_provider_that_is_only_down_leaves_an_outage_not_a_refusal(claude_then_gpt, monkeypatch):
    monkeypatch.delenv(KEY_ENV)

    with pytest.raises(NoProviderAvailable) as failed:
        route(ask("Is water wet?", response_format=JSON_OBJECT))

    assert failed.value.refused is False
    assert "gpt: no key (SWITCHYARD_TEST_CLOUD_KEY not set)" in failed.value.reason
