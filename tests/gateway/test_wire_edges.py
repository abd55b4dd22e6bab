"""What a client of the gateway trips over at the edges of the wire (an outside check of issue 12):
every refusal is JSON in the shape the client reads (OpenAI's under /v1/, Ollama's under /api/),
with the status the client maps to its own exception, never an HTML page or a 500."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from gateway import openai_format as wire
from routing.models import CallOutcome, LedgerEntry
from routing.table import invalidate_routing_cache
from tests.factories import provider_create
from tests.routing.conftest_router import forget_health


def _root(gateway) -> str:
    return gateway.base_url.removesuffix("/v1")


def _auth(gateway) -> dict[str, str]:
    return {"Authorization": f"Bearer {gateway.key}", "Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/chat/completions"), ("GET", "/v1/embeddings"), ("POST", "/v1/models"), ("DELETE", "/v1/models")],
)
def test_a_wrong_method_on_an_openai_route_is_a_json_405_in_openai_s_shape(empty_gateway, method, path):
    response = httpx.request(method, _root(empty_gateway) + path, headers=_auth(empty_gateway), content=b"{}")

    assert response.status_code == 405
    assert response.headers["content-type"] == "application/json"
    assert "Allow" in response.headers
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and method in error["message"] and path in error["message"]


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/chat"), ("GET", "/api/embed"), ("POST", "/api/version")])
def test_a_wrong_method_on_an_ollama_route_is_a_json_405_in_ollama_s_shape(empty_gateway, method, path):
    response = httpx.request(method, _root(empty_gateway) + path, headers=_auth(empty_gateway), content=b"{}")

    assert response.status_code == 405
    assert response.headers["content-type"] == "application/json"
    assert isinstance(response.json()["error"], str)


@pytest.mark.parametrize("path", ["/v1/chat/completions/", "/v1/completions", "/v1/nothing-here"])
def test_an_unknown_path_under_v1_is_a_json_404_the_openai_client_raises_as_not_found(empty_gateway, path):
    response = httpx.post(_root(empty_gateway) + path, headers=_auth(empty_gateway), content=b"{}")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and path in error["message"]


def test_a_completion_on_the_legacy_route_raises_the_openai_client_s_not_found(empty_gateway):
    client = openai.OpenAI(base_url=empty_gateway.base_url, api_key=empty_gateway.key, max_retries=0)

    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="auto", prompt="x")


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings", "/api/chat", "/api/generate", "/api/embed"])
def test_json_nested_too_deep_to_read_is_a_400_not_a_500(empty_gateway, path):
    body = b"[" * 100_000 + b"]" * 100_000

    response = httpx.post(_root(empty_gateway) + path, headers=_auth(empty_gateway), content=body)

    assert response.status_code == 400
    assert "error" in response.json()


SURROGATE_CHAT = b'{"model": "auto", "messages": [{"role": "user", "content": "\\ud800"}], "stream": false}'


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", SURROGATE_CHAT),
        ("/api/chat", SURROGATE_CHAT),
        ("/api/generate", b'{"model": "auto", "prompt": "a\\udfffb", "stream": false}'),
        ("/v1/embeddings", b'{"model": "auto", "input": "\\ud83d"}'),
        ("/api/embed", b'{"model": "auto", "input": ["\\ud83d"]}'),
        ("/v1/chat/completions", b'{"model": "auto", "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}'),
    ],
)
def test_text_with_a_lone_surrogate_no_provider_can_be_sent_is_a_400(empty_gateway, path, body):
    # JSON's \ud800 escape alone is no character: it cannot be encoded for any upstream, so the
    # request is the client's to fix (a 503 would be retried by the official clients, in vain).
    response = httpx.post(_root(empty_gateway) + path, headers=_auth(empty_gateway), content=body)

    assert response.status_code == 400
    assert "error" in response.json()


def test_a_surrogate_pair_is_one_character_and_is_accepted(empty_gateway):
    body = b'{"model": "nope", "messages": [{"role": "user", "content": "\\ud83d\\ude00"}]}'

    response = httpx.post(f"{empty_gateway.base_url}/chat/completions", headers=_auth(empty_gateway), content=body)

    assert response.status_code == 404  # read, then refused for its unknown model only


@pytest.fixture
def small_models(empty_gateway):
    names = ["small-local", "small-cloud"]
    forget_health(names)
    provider_create("small-local", model="tiny", context_window=512, priority=1)
    provider_create("small-cloud", model="tiny", context_window=1024, priority=2, is_local=False)
    provider_create("small-embed", model="tiny-embed", context_window=256, model_kind="embedding", priority=3)
    yield
    forget_health([*names, "small-embed"])


def test_a_prompt_longer_than_every_model_s_context_is_a_400_the_client_does_not_retry(empty_gateway, small_models):
    # OpenAI answers 400 (context_length_exceeded); a 503 is retried by the official clients, in vain.
    client = openai.OpenAI(base_url=empty_gateway.base_url, api_key=empty_gateway.key, max_retries=0)
    long = [{"role": "user", "content": "word " * 5_000}]

    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="auto", messages=long, max_tokens=4)

    assert "context" in raised.value.message and "small-cloud" in raised.value.message
    assert not LedgerEntry.objects.exists()  # no call was made


def test_a_long_prompt_for_ollama_s_chat_is_a_400_too(empty_gateway, small_models):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "word " * 5_000}], "stream": True}

    response = httpx.post(f"{_root(empty_gateway)}/api/chat", headers=_auth(empty_gateway), json=body)

    assert response.status_code == 400 and "context" in response.json()["error"]


def test_a_prompt_a_provider_without_its_key_could_take_is_still_an_outage(empty_gateway, small_models):
    provider_create("big-cloud", model="tiny", context_window=100_000, priority=4, api_key_env="NO_SUCH_KEY_SET")
    client = openai.OpenAI(base_url=empty_gateway.base_url, api_key=empty_gateway.key, max_retries=0)

    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "word " * 5_000}])
    forget_health(["big-cloud"])


def test_an_embedding_input_longer_than_every_embedding_model_s_context_is_a_400(empty_gateway, small_models):
    client = openai.OpenAI(base_url=empty_gateway.base_url, api_key=empty_gateway.key, max_retries=0)

    with pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(model="auto", input="word " * 2_000)

    assert "context" in raised.value.message
    assert not LedgerEntry.objects.exists()


@pytest.mark.parametrize(
    "extra", [{"tool_choice": "none"}, {"tools": [], "tool_choice": "none"}, {"function_call": "none"}]
)
def test_a_request_that_asks_for_no_tools_is_read_as_a_plain_chat(extra):
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], **extra}

    params = wire.chat_params(json.dumps(body).encode())

    assert params.messages == [{"role": "user", "content": "hi"}]


def test_a_request_that_asks_for_a_tool_is_still_refused_by_name():
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "tool_choice": "required"}

    with pytest.raises(wire.OpenAIError) as raised:
        wire.chat_params(json.dumps(body).encode())

    assert raised.value.status == 400 and raised.value.param == "tool_choice"


def test_the_openai_client_retrieves_one_listed_model_and_gets_not_found_for_others(empty_gateway, small_models):
    client = openai.OpenAI(base_url=empty_gateway.base_url, api_key=empty_gateway.key, max_retries=0)

    auto, tiny = client.models.retrieve("auto"), client.models.retrieve("tiny")

    assert (auto.id, auto.object, auto.owned_by) == ("auto", "model", "switchyard")
    assert (tiny.id, tiny.owned_by) == ("tiny", "small-local")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=empty_gateway.base_url, api_key="wrong", max_retries=0).models.retrieve("auto")


@pytest.fixture
def slow_upstream(empty_gateway, fake_server):
    forget_health(["slow"])
    upstream = fake_server("openai")
    upstream.reply = " ".join(["word"] * 5)
    upstream.behave("ok", chunk_delay=2.0)  # the first word 2 s after the headers, the last 12 s after
    provider_create("slow", base_url=upstream.base_url, model="gpt-4o-mini", request_timeout_s=30)
    invalidate_routing_cache()
    yield upstream
    forget_health(["slow"])


def _outcome_after_hang_up(empty_gateway, path: str, body: dict) -> LedgerEntry:
    try:
        httpx.post(f"{_root(empty_gateway)}{path}", json=body, headers=_auth(empty_gateway), timeout=1.0)
    except httpx.ReadTimeout:
        pass  # hung up before the first piece of the answer
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        row = LedgerEntry.objects.order_by("id").last()
        if row is not None and row.outcome != CallOutcome.STARTED:
            return row
        time.sleep(0.1)
    raise AssertionError("the call never ended")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "stream": True}),
        ("/api/chat", {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}),
    ],
)
def test_a_client_that_hangs_up_before_the_first_token_stops_the_upstream_call_too(
    empty_gateway, slow_upstream, path, body
):
    started = time.monotonic()

    row = _outcome_after_hang_up(empty_gateway, path, body)

    assert row.outcome == CallOutcome.CANCELLED  # not the whole answer generated for nobody
    assert time.monotonic() - started < 6
