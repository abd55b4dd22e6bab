"""response_format (and Ollama's `format`) through the official `openai` and `ollama` packages against
uvicorn: JSON answers from the real local model (llama.cpp constrains its output with a grammar), passed
on to a cloud provider that can be asked for it, and a clear 400 when no provider for the request can."""

from __future__ import annotations

import json

import ollama
import openai
import pytest

from routing.models import LedgerEntry
from tests.gateway.conftest import LOCAL
from tests.gateway.test_ollama_client import client as ollama_client
from tests.routing.conftest_router import forget_health, make_provider

KEY_ENV = "SWITCHYARD_TEST_CLOUD_KEY"
# A schema whose every answer is short: the grammar leaves the model nothing to ramble in.
WETNESS = {
    "type": "object",
    "properties": {"wet": {"type": "boolean"}},
    "required": ["wet"],
    "additionalProperties": False,
}
SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "wetness", "schema": WETNESS, "strict": True}}


def client(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0, timeout=120)


def row(completion_id: str) -> LedgerEntry:
    return LedgerEntry.objects.select_related("provider").get(idempotency_key=f"gateway:{completion_id}:attempt:1")


# --- the real local model --------------------------------------------------------------------


@pytest.mark.local_model
def test_a_json_object_answer_from_the_local_model_parses_as_json(gateway):
    # The base model continues "{}" with nothing more: a whole object, inside the token limit.
    completion = client(gateway).chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "{}"}],
        response_format={"type": "json_object"},
        max_tokens=40,
        temperature=0,
    )

    assert completion.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(completion.choices[0].message.content), dict)
    assert row(completion.id).provider.name == LOCAL


@pytest.mark.local_model
def test_a_json_schema_answer_from_the_local_model_matches_the_schema(gateway):
    completion = client(gateway).chat.completions.create(
        model="gemma3-270m",
        messages=[{"role": "user", "content": "Is water wet? Answer in JSON."}],
        response_format=SCHEMA_FORMAT,
        max_tokens=40,
        temperature=0,
    )

    answer = json.loads(completion.choices[0].message.content)
    assert list(answer) == ["wet"] and isinstance(answer["wet"], bool)


@pytest.mark.local_model
def test_a_streamed_json_schema_answer_parses_once_joined(gateway):
    stream = client(gateway).chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "Is water wet? Answer in JSON."}],
        response_format=SCHEMA_FORMAT,
        max_tokens=40,
        temperature=0,
        stream=True,
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    assert list(json.loads(text)) == ["wet"]


@pytest.mark.local_model
def test_the_ollama_packages_format_json_gets_json_from_the_local_model(gateway):
    answer = ollama_client(gateway).generate(
        model="auto", prompt="{}", format="json", options={"temperature": 0, "num_predict": 40}
    )

    assert answer.done_reason == "stop"
    assert isinstance(json.loads(answer.response), dict)


@pytest.mark.local_model
def test_the_ollama_packages_format_schema_gets_an_answer_matching_it(gateway):
    answer = ollama_client(gateway).chat(
        model="auto",
        messages=[{"role": "user", "content": "Is water wet? Answer in JSON."}],
        format=WETNESS,
        options={"temperature": 0, "num_predict": 40},
        stream=False,
    )

    assert list(json.loads(answer.message.content)) == ["wet"]


# --- cloud providers (fakes) -----------------------------------------------------------------


@pytest.fixture
def claude_then_gpt(empty_gateway, fake_anthropic, fake_openai, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-0123456789abcdef")
    common = {"is_local": False, "api_key_env": KEY_ENV}
    make_provider("claude", kind="anthropic", base_url=fake_anthropic.base_url, model="claude-haiku-4-5", **common)
    make_provider("gpt", kind="openai", base_url=fake_openai.base_url, model="gpt-4o-mini", priority=2, **common)
    yield fake_anthropic, fake_openai
    forget_health(["claude", "gpt"])


def test_a_json_schema_request_skips_anthropic_and_reaches_openai_as_openai_spells_it(empty_gateway, claude_then_gpt):
    anthropic, fake_openai = claude_then_gpt
    fake_openai.reply = '{"wet": true}'

    raw = client(empty_gateway).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Is water wet?"}], response_format=SCHEMA_FORMAT
    )

    assert raw.headers["x-switchyard-provider"] == "gpt"
    assert json.loads(raw.parse().choices[0].message.content) == {"wet": True}
    assert anthropic.requests == []
    assert fake_openai.requests[-1].json["response_format"] == SCHEMA_FORMAT


def test_a_json_request_no_provider_for_it_can_answer_is_a_400_that_says_why(empty_gateway, claude_then_gpt):
    with pytest.raises(openai.BadRequestError) as refused:
        client(empty_gateway).chat.completions.create(
            model="claude-haiku-4-5",
            messages=[{"role": "user", "content": "Is water wet?"}],
            response_format={"type": "json_object"},
        )

    assert refused.value.code == "unsupported_request"
    assert refused.value.body["message"] == (
        "no provider that could take this request can answer in json_object: claude takes no response_format"
    )
    assert not LedgerEntry.objects.exists()


@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        ({"type": "xml"}, "response_format.type"),
        ({"type": "json_schema"}, "response_format.json_schema"),
        ({"type": "json_schema", "json_schema": {"name": "has spaces"}}, "response_format.json_schema.name"),
        ({"type": "json_schema", "json_schema": {"name": "w", "schema": "{}"}}, "response_format.json_schema.schema"),
    ],
)
def test_a_malformed_response_format_is_a_400_naming_the_parameter(
    empty_gateway, claude_then_gpt, response_format, param
):
    with pytest.raises(openai.BadRequestError) as refused:
        client(empty_gateway).chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "hi"}], response_format=response_format
        )

    assert refused.value.param == param


def test_an_ollama_format_no_provider_for_it_can_answer_is_a_400_in_ollamas_shape(empty_gateway, claude_then_gpt):
    with pytest.raises(ollama.ResponseError) as refused:
        ollama_client(empty_gateway).chat(
            model="claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}], format="json", stream=False
        )

    assert refused.value.status_code == 400
    assert refused.value.error.startswith("no provider that could take this request can answer in json_object")


def test_a_text_response_format_is_plain_text(empty_gateway, claude_then_gpt):
    anthropic, _ = claude_then_gpt

    completion = client(empty_gateway).chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "hi"}], response_format={"type": "text"}
    )

    assert row(completion.id).provider.name == "claude"
    assert "response_format" not in anthropic.requests[-1].json
