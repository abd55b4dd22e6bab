"""The OpenAI adapter (kinds openai and openai_compatible) against a fake speaking /v1/chat/completions."""

from __future__ import annotations

import pytest

from routing.providers import get_adapter
from routing.providers.base import ChatRequest, PermanentError, ProviderConfig, TransientError

KEY = "sk-test-0123456789abcdef"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Write a Dockerfile"}]


def adapter(server, **overrides):
    settings = {
        "name": "openai",
        "kind": "openai",
        "base_url": server.base_url,
        "is_local": False,
        "api_key_env": "OPENAI_API_KEY",
        **overrides,
    }
    return get_adapter(ProviderConfig(**settings))


def ask(server, *, stream=False, model="gpt-4o-mini", **overrides):
    request = ChatRequest(model=model, messages=MESSAGES, stream=stream, max_tokens=50, temperature=0.1)
    return adapter(server, **overrides).chat(request)


@pytest.fixture(autouse=True)
def openai_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


def test_it_returns_the_text_and_the_usage_the_server_reports(fake_openai):
    fake_openai.api_key = KEY

    completion = ask(fake_openai)

    assert completion.text == fake_openai.reply
    assert (completion.prompt_tokens, completion.completion_tokens) == (13, 8)
    assert completion.finish_reason == "stop"
    assert completion.model == "gpt-4o-mini"


def test_it_sends_the_key_from_the_environment_at_call_time(fake_openai, monkeypatch):
    ask(fake_openai)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-rotated-key-99999")
    ask(fake_openai)

    headers = [request.headers["authorization"] for request in fake_openai.requests]
    assert headers == [f"Bearer {KEY}", "Bearer sk-rotated-key-99999"]


def test_it_asks_openai_for_max_completion_tokens_and_compatible_servers_for_max_tokens(fake_openai):
    ask(fake_openai)
    ask(fake_openai, name="llama", kind="openai_compatible", api_key_env="")

    openai_body, compatible_body = (request.json for request in fake_openai.requests)
    assert openai_body["max_completion_tokens"] == 50 and "max_tokens" not in openai_body
    assert compatible_body["max_tokens"] == 50 and "max_completion_tokens" not in compatible_body
    assert openai_body["temperature"] == 0.1 and openai_body["messages"] == MESSAGES


def test_it_streams_with_usage_and_measures_the_time_to_first_token(fake_openai):
    fake_openai.behave("ok", delay=0.05, chunk_delay=0.02)

    completion = ask(fake_openai, stream=True)

    assert fake_openai.requests[-1].json["stream_options"] == {"include_usage": True}
    assert completion.text == fake_openai.reply
    assert (completion.prompt_tokens, completion.completion_tokens) == (13, 8)
    assert completion.finish_reason == "stop"
    assert 50 <= completion.ttft_ms < completion.latency_ms


def test_it_needs_no_key_for_a_compatible_server_without_one(fake_openai, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")

    completion = ask(fake_openai, name="llama", kind="openai_compatible", api_key_env="")

    assert completion.text == fake_openai.reply
    assert "authorization" not in fake_openai.requests[-1].headers


def test_it_refuses_to_call_openai_without_a_key(fake_openai, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")

    with pytest.raises(PermanentError, match=r"^no key \(OPENAI_API_KEY is not set\)$"):
        ask(fake_openai)
    assert fake_openai.requests == []


def test_it_reports_a_wrong_key_as_permanent_without_revealing_it(fake_openai):
    fake_openai.api_key = "sk-the-right-one-000000"

    with pytest.raises(PermanentError) as error:
        ask(fake_openai)

    assert error.value.status_code == 401
    assert error.value.message.startswith("401 invalid_api_key: Incorrect API key provided")
    assert KEY not in str(error.value) and KEY not in repr(error.value.args)


def test_it_reports_an_unknown_model_as_permanent(fake_openai):
    with pytest.raises(PermanentError) as error:
        ask(fake_openai, model="gpt-9")

    assert error.value.status_code == 404
    assert (
        error.value.message == "404 model_not_found: The model `gpt-9` does not exist or you do not have access to it."
    )


@pytest.mark.parametrize(("mode", "status"), [("bad_request", 400), ("forbidden", 403)])
def test_it_reports_refused_requests_as_permanent(fake_openai, mode, status):
    fake_openai.behave(mode)

    with pytest.raises(PermanentError) as error:
        ask(fake_openai)

    assert error.value.status_code == status


@pytest.mark.parametrize(
    ("mode", "status", "message"),
    [
        ("rate_limited", 429, "429 rate_limit_exceeded: Rate limit reached for gpt-4o-mini"),
        ("server_error", 500, "500 server_error: The server had an error"),
        ("overloaded", 503, "503 server_error: The engine is currently overloaded"),
    ],
)
def test_it_reports_rate_limits_and_server_errors_as_transient(fake_openai, mode, status, message):
    fake_openai.behave(mode)

    with pytest.raises(TransientError) as error:
        ask(fake_openai, stream=True)

    assert error.value.status_code == status
    assert error.value.message.startswith(message)


def test_it_reports_a_timeout_as_transient_with_the_seconds(fake_openai):
    fake_openai.behave("ok", delay=2)

    with pytest.raises(TransientError, match=rf"^OpenAI at {fake_openai.base_url} timed out after 0\.3 s$"):
        ask(fake_openai, request_timeout_s=0.3)


def test_it_reports_an_error_event_in_the_middle_of_a_stream_as_transient(fake_openai):
    fake_openai.behave("stream_error")

    with pytest.raises(TransientError, match=r"^stream broke: server_error: The server had an error"):
        ask(fake_openai, stream=True)


def test_it_reports_a_stream_ended_before_its_finish_reason_as_transient(fake_openai):
    # llama-cpp-python's server ends a streaming answer so when another request arrives: the answer
    # is cut short, and was counted a success with the text so far (often none).
    fake_openai.behave("interrupted")

    with pytest.raises(TransientError, match=r"^the stream ended before its final chunk$"):
        ask(fake_openai, stream=True)


@pytest.mark.parametrize("stream", [True, False])
def test_it_reports_a_connection_dropped_mid_reply_as_transient(fake_openai, stream):
    fake_openai.behave("broken_stream")

    with pytest.raises(TransientError, match=r"^the connection broke mid-response$"):
        ask(fake_openai, stream=stream)


def test_it_reports_a_body_that_is_not_json_as_transient(fake_openai):
    fake_openai.behave("invalid_json")

    with pytest.raises(TransientError, match="not valid JSON"):
        ask(fake_openai)


def test_it_lists_the_models_with_or_without_v1_in_the_base_url(fake_openai):
    fake_openai.models = ["gpt-4o-mini", "o4-mini"]

    assert adapter(fake_openai).list_models() == ["gpt-4o-mini", "o4-mini"]
    assert adapter(fake_openai, base_url=fake_openai.base_url + "/v1/").list_models() == ["gpt-4o-mini", "o4-mini"]


@pytest.mark.parametrize("stream", [True, False])
def test_it_reports_json_that_is_not_the_protocol_as_transient(fake_openai, stream):
    fake_openai.behave("wrong_shape")

    with pytest.raises(TransientError):
        ask(fake_openai, stream=stream)
    with pytest.raises(TransientError, match="not in the expected format"):
        adapter(fake_openai).list_models()


def test_it_never_asks_the_server_whether_it_can_serve_a_model(fake_openai):
    assert adapter(fake_openai).can_serve("no-such-model") is None
    assert fake_openai.requests == []


def test_it_passes_top_p_stop_and_seed(fake_openai):
    request = ChatRequest(model="gpt-4o-mini", messages=MESSAGES, top_p=0.5, stop=("\n\n", "END"), seed=7)
    adapter(fake_openai).chat(request)

    body = fake_openai.requests[-1].json
    assert (body["top_p"], body["stop"], body["seed"]) == (0.5, ["\n\n", "END"], 7)
