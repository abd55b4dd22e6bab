"""Real generations from the local model (llama.cpp server + Gemma 3 270M) through the openai_compatible adapter."""

from __future__ import annotations

import pytest

from routing.providers import get_adapter
from routing.providers.base import ChatRequest, PermanentError, ProviderConfig

pytestmark = pytest.mark.local_model

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant. Answer in one short sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]


@pytest.fixture
def adapter(local_model_server):
    config = ProviderConfig(
        name="local-gemma", kind="openai_compatible", base_url=local_model_server.base_url, is_local=True
    )
    return get_adapter(config)


def test_it_generates_text_with_the_token_counts_the_server_reports(adapter, local_model_server):
    completion = adapter.chat(
        ChatRequest(model=local_model_server.model, messages=MESSAGES, max_tokens=16, temperature=0)
    )

    assert completion.text.strip()
    assert completion.prompt_tokens > 10  # the system and user turns through Gemma's chat template
    assert completion.completion_tokens == 16
    assert completion.raw_usage["total_tokens"] == completion.prompt_tokens + completion.completion_tokens
    assert completion.finish_reason == "length"  # greedy, the small model does not stop within 16 tokens
    assert completion.latency_ms > 0 and completion.ttft_ms is None


def test_it_streams_a_generation_and_measures_the_time_to_first_token(adapter, local_model_server):
    request = ChatRequest(model=local_model_server.model, messages=MESSAGES, max_tokens=16, temperature=0, stream=True)

    completion = adapter.chat(request)

    assert completion.text.strip()
    assert 0 < completion.ttft_ms <= completion.latency_ms
    assert completion.finish_reason == "length"
    assert completion.completion_tokens is None  # llama-cpp-python's server sends no usage in a stream


def test_it_lists_the_model_the_server_answers_to(adapter, local_model_server):
    assert local_model_server.model in adapter.list_models()


def test_it_reports_a_context_overflow_as_permanent(adapter, local_model_server):
    too_long = [{"role": "user", "content": "word " * 5000}]  # far beyond n_ctx 2048

    with pytest.raises(PermanentError) as error:
        adapter.chat(ChatRequest(model=local_model_server.model, messages=too_long, max_tokens=8))

    assert error.value.status_code == 400
