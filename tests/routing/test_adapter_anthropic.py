"""The Anthropic adapter against a fake speaking the Messages API (/v1/messages)."""

from __future__ import annotations

import pytest

from routing.providers import get_adapter
from routing.providers.anthropic import ANTHROPIC_VERSION
from routing.providers.base import ChatRequest, PermanentError, ProviderConfig, TransientError

KEY = "sk-ant-test-0123456789"
MODEL = "claude-3-5-haiku-latest"
MESSAGES = [{"role": "system", "content": "You are a QA engineer."}, {"role": "user", "content": "Write unit tests"}]


def adapter(server, **overrides):
    settings = {
        "name": "claude",
        "kind": "anthropic",
        "base_url": server.base_url,
        "is_local": False,
        "api_key_env": "ANTHROPIC_API_KEY",
        **overrides,
    }
    return get_adapter(ProviderConfig(**settings))


def ask(server, *, stream=False, model=MODEL, max_tokens=200, **overrides):
    request = ChatRequest(model=model, messages=MESSAGES, stream=stream, max_tokens=max_tokens)
    return adapter(server, **overrides).chat(request)


@pytest.fixture(autouse=True)
def anthropic_key(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)


def test_it_sends_the_key_the_version_and_the_system_prompt_as_its_own_field(fake_anthropic):
    fake_anthropic.api_key = KEY

    ask(fake_anthropic)

    request = fake_anthropic.requests[-1]
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == ANTHROPIC_VERSION
    assert request.json["system"] == "You are a QA engineer."
    assert request.json["messages"] == [{"role": "user", "content": "Write unit tests"}]
    assert request.json["max_tokens"] == 200


def test_it_returns_the_text_and_the_usage_the_api_reports(fake_anthropic):
    completion = ask(fake_anthropic)

    assert completion.text == fake_anthropic.reply
    assert (completion.prompt_tokens, completion.completion_tokens) == (12, 8)
    assert completion.finish_reason == "end_turn"


def test_it_always_sends_the_max_tokens_the_api_requires(fake_anthropic):
    completion = ask(fake_anthropic, max_tokens=None)

    assert completion.text == fake_anthropic.reply
    assert fake_anthropic.requests[-1].json["max_tokens"] > 0


def test_it_streams_with_usage_and_measures_the_time_to_first_token(fake_anthropic):
    fake_anthropic.behave("ok", delay=0.05, chunk_delay=0.02)

    completion = ask(fake_anthropic, stream=True)

    assert completion.text == fake_anthropic.reply
    assert (completion.prompt_tokens, completion.completion_tokens) == (12, 8)
    assert completion.finish_reason == "end_turn"
    assert 50 <= completion.ttft_ms < completion.latency_ms


def test_it_refuses_to_call_without_a_key(fake_anthropic, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")

    with pytest.raises(PermanentError, match=r"^no key \(ANTHROPIC_API_KEY is not set\)$"):
        ask(fake_anthropic)
    assert fake_anthropic.requests == []


def test_it_reports_a_wrong_key_as_permanent_without_revealing_it(fake_anthropic):
    fake_anthropic.api_key = "sk-ant-the-right-one"

    with pytest.raises(PermanentError) as error:
        ask(fake_anthropic)

    assert error.value.status_code == 401
    assert error.value.message == "401 authentication_error: invalid x-api-key"
    assert KEY not in str(error.value)


def test_it_reports_an_unknown_model_as_permanent(fake_anthropic):
    with pytest.raises(PermanentError) as error:
        ask(fake_anthropic, model="claude-9")

    assert error.value.message == "404 not_found_error: model: claude-9"


@pytest.mark.parametrize(("mode", "status"), [("bad_request", 400), ("forbidden", 403)])
def test_it_reports_refused_requests_as_permanent(fake_anthropic, mode, status):
    fake_anthropic.behave(mode)

    with pytest.raises(PermanentError) as error:
        ask(fake_anthropic)

    assert error.value.status_code == status


@pytest.mark.parametrize(
    ("mode", "status", "message"),
    [
        ("overloaded", 529, "529 overloaded_error: Overloaded"),
        ("rate_limited", 429, "429 rate_limit_error: This request would exceed the rate limit"),
        ("server_error", 500, "500 api_error: Internal server error"),
    ],
)
def test_it_reports_overload_rate_limits_and_server_errors_as_transient(fake_anthropic, mode, status, message):
    fake_anthropic.behave(mode)

    with pytest.raises(TransientError) as error:
        ask(fake_anthropic, stream=mode == "overloaded")

    assert error.value.status_code == status
    assert error.value.message.startswith(message)


def test_it_reports_a_timeout_as_transient_with_the_seconds(fake_anthropic):
    fake_anthropic.behave("ok", delay=2)

    with pytest.raises(TransientError, match=rf"^Anthropic at {fake_anthropic.base_url} timed out after 0\.3 s$"):
        ask(fake_anthropic, request_timeout_s=0.3)


def test_it_reports_an_error_event_in_the_middle_of_a_stream_as_transient(fake_anthropic):
    fake_anthropic.behave("stream_error")

    with pytest.raises(TransientError, match=r"^stream broke: overloaded_error: Overloaded$"):
        ask(fake_anthropic, stream=True)


@pytest.mark.parametrize("stream", [True, False])
def test_it_reports_a_connection_dropped_mid_reply_as_transient(fake_anthropic, stream):
    fake_anthropic.behave("broken_stream")

    with pytest.raises(TransientError, match=r"^the connection broke mid-response$"):
        ask(fake_anthropic, stream=stream)


def test_it_reports_a_body_that_is_not_json_as_transient(fake_anthropic):
    fake_anthropic.behave("invalid_json")

    with pytest.raises(TransientError, match="not valid JSON"):
        ask(fake_anthropic)


def test_it_lists_the_models(fake_anthropic):
    assert adapter(fake_anthropic).list_models() == list(fake_anthropic.default_models)


@pytest.mark.parametrize("stream", [True, False])
def test_it_reports_json_that_is_not_the_protocol_as_transient(fake_anthropic, stream):
    fake_anthropic.behave("wrong_shape")

    with pytest.raises(TransientError):
        ask(fake_anthropic, stream=stream)
    with pytest.raises(TransientError, match="not in the expected format"):
        adapter(fake_anthropic).list_models()


def test_it_passes_top_p_and_stop_as_stop_sequences(fake_anthropic):
    request = ChatRequest(model=MODEL, messages=MESSAGES, max_tokens=50, top_p=0.5, stop=("END",), seed=7)
    adapter(fake_anthropic).chat(request)

    body = fake_anthropic.requests[-1].json
    assert (body["top_p"], body["stop_sequences"]) == (0.5, ["END"])
    assert "seed" not in body  # Anthropic's API has none
