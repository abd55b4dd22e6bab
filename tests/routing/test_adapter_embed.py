"""The adapters' `embed` against the protocol fakes: Ollama's /api/embed, OpenAI's /v1/embeddings, and
Anthropic's refusal; failures are the project's errors, as for a chat."""

from __future__ import annotations

import pytest

from routing.providers import get_adapter
from routing.providers.base import EmbedRequest, PermanentError, Problem, ProviderConfig, TransientError

KEY_ENV = "SWITCHYARD_TEST_OPENAI_KEY"
TEXTS = ("Why is the sky blue?", "Why is the grass green?")


def adapter(server, kind: str, **overrides):
    settings = {"name": kind, "kind": kind, "base_url": server.base_url, "is_local": kind == "ollama", **overrides}
    return get_adapter(ProviderConfig(**settings))


def test_ollama_answers_one_vector_per_input_with_its_count_and_durations(fake_ollama):
    fake_ollama.models = ["nomic-embed-text:latest"]

    embedded = adapter(fake_ollama, "ollama", keep_alive="30m").embed(
        EmbedRequest(model="nomic-embed-text:latest", inputs=TEXTS, dimensions=64, truncate=False)
    )

    assert [len(vector) for vector in embedded.vectors] == [64, 64]
    assert (embedded.model, embedded.prompt_tokens) == ("nomic-embed-text:latest", 10)
    assert embedded.raw_usage["load_duration"] == 1_019_500
    assert fake_ollama.requests[-1].json == {
        "model": "nomic-embed-text:latest",
        "input": list(TEXTS),
        "truncate": False,
        "dimensions": 64,
        "keep_alive": "30m",
    }


def test_an_ollama_host_without_the_model_says_it_is_missing(fake_ollama):
    with pytest.raises(PermanentError) as raised:
        adapter(fake_ollama, "ollama").embed(EmbedRequest(model="nomic-embed-text:latest", inputs=TEXTS))

    assert raised.value.problem == Problem.MODEL_MISSING
    assert raised.value.message == "404 model 'nomic-embed-text:latest' not found"


def test_openai_is_asked_for_floats_with_its_key_and_answers_in_input_order(fake_openai, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test-1234567890")
    fake_openai.api_key = "sk-test-1234567890"

    embedded = adapter(fake_openai, "openai", api_key_env=KEY_ENV).embed(
        EmbedRequest(model="text-embedding-3-small", inputs=TEXTS)
    )

    assert [len(vector) for vector in embedded.vectors] == [1536, 1536]
    assert embedded.vectors[0] != embedded.vectors[1]
    assert embedded.prompt_tokens == 10
    assert fake_openai.requests[-1].json == {
        "model": "text-embedding-3-small",
        "input": list(TEXTS),
        "encoding_format": "float",
    }


@pytest.mark.parametrize(("mode", "error"), [("rate_limited", TransientError), ("unauthorized", PermanentError)])
def test_openai_failures_are_transient_or_permanent_as_for_a_chat(fake_openai, monkeypatch, mode, error):
    monkeypatch.setenv(KEY_ENV, "sk-test-1234567890")
    fake_openai.behave(mode)

    with pytest.raises(error):
        adapter(fake_openai, "openai", api_key_env=KEY_ENV).embed(
            EmbedRequest(model="text-embedding-3-small", inputs=TEXTS)
        )


def test_anthropic_has_no_embeddings_api(fake_anthropic):
    with pytest.raises(PermanentError, match="Anthropic has no embeddings API"):
        adapter(fake_anthropic, "anthropic").embed(EmbedRequest(model="claude-haiku-4-5", inputs=TEXTS))

    assert fake_anthropic.requests == []
