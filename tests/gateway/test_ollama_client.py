"""The official `ollama` package, unchanged, against Switchyard under uvicorn with the real local model
behind it: what Open WebUI, Continue and a team's scripts see when their Ollama host is Switchyard."""

from __future__ import annotations

import json
import time

import httpx
import ollama
import pytest
from django.contrib.auth import get_user_model

from accounts.services import key_create
from routing.models import CallOutcome, LedgerEntry
from routing.table import invalidate_routing_cache
from tests.factories import provider_create
from tests.gateway.conftest import LOCAL
from tests.gateway.test_models_and_outages import providers  # noqa: F401  (a fixture)
from tests.gateway.test_stream_failure import two_upstreams  # noqa: F401  (a fixture)
from tests.routing.conftest_router import forget_health

pytestmark = pytest.mark.local_model

HELLO = [{"role": "user", "content": "def add(a, b):"}]


def host(gateway) -> str:
    """What the ollama package takes as its host: the server's root, not /v1."""
    return gateway.base_url.removesuffix("/v1")


def client(gateway, key: str | None = None) -> ollama.Client:
    return ollama.Client(host=host(gateway), headers={"Authorization": f"Bearer {key or gateway.key}"}, timeout=120)


def the_row() -> LedgerEntry:
    return LedgerEntry.objects.get()


def test_a_chat_is_answered_by_the_local_model_with_counts_and_metered_for_its_user(gateway):
    answer = client(gateway).chat(model="auto", messages=HELLO, options={"num_predict": 6}, stream=False)

    row = the_row()
    assert (row.user_id, row.agent, row.provider.name, row.outcome) == (
        gateway.user_id,
        "gateway",
        LOCAL,
        CallOutcome.SUCCESS,
    )
    assert row.idempotency_key.startswith("gateway:ollama-chat-")
    assert (row.endpoint, row.client.split("/")[0]) == ("/api/chat", "ollama-python")
    assert answer.model == "gemma3-270m"
    assert answer.message.role == "assistant"
    assert isinstance(answer.message.content, str)
    assert answer.done is True
    assert answer.done_reason in ("stop", "length")
    assert answer.eval_count == row.completion_tokens > 0
    assert answer.prompt_eval_count == row.prompt_tokens > 0
    assert answer.total_duration >= row.latency_ms * 1_000_000 > 0
    assert answer.load_duration == 0
    assert answer.eval_duration > 0


def test_options_reach_the_call_and_num_predict_caps_the_answer(gateway):
    answer = client(gateway).chat(
        model="gemma3-270m",
        messages=HELLO,
        options={"num_predict": 3, "temperature": 0, "top_p": 0.9, "seed": 7, "stop": ["\n\n"], "top_k": 20},
        keep_alive="5m",
        stream=False,
    )

    assert the_row().provider.name == LOCAL
    assert answer.eval_count <= 3


def test_a_streamed_chat_sends_pieces_then_a_last_line_with_counts_and_is_metered(gateway):
    parts = list(client(gateway).chat(model="auto", messages=HELLO, options={"num_predict": 8}, stream=True))

    *pieces, last = parts
    assert len(pieces) >= 2, "the answer did not arrive in pieces"
    assert all(part.done is False and part.message.role == "assistant" for part in pieces)
    assert "".join(part.message.content for part in pieces)
    assert last.done is True and last.message.content == ""
    assert last.done_reason in ("stop", "length")
    row = the_row()
    assert (row.user_id, row.agent, row.outcome) == (gateway.user_id, "gateway", CallOutcome.SUCCESS)
    assert (last.prompt_eval_count, last.eval_count) == (row.prompt_tokens, row.completion_tokens)
    assert row.ttft_ms is not None
    assert last.prompt_eval_duration == row.ttft_ms * 1_000_000


def test_a_stream_is_ndjson_by_default(gateway):
    body = {"model": "auto", "messages": HELLO, "options": {"num_predict": 3}}  # no "stream": Ollama streams
    headers = {"Authorization": f"Bearer {gateway.key}"}
    with httpx.stream("POST", f"{host(gateway)}/api/chat", json=body, headers=headers, timeout=120) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]

    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["x-switchyard-provider"] == LOCAL
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]
    assert set(lines[-1]) >= {"total_duration", "load_duration", "prompt_eval_count", "eval_count", "done_reason"}


def test_generate_answers_a_prompt_with_a_system_message(gateway):
    answer = client(gateway).generate(
        model="auto", prompt="def add(a, b):", system="You write Python.", options={"num_predict": 5}
    )

    row = the_row()
    assert (row.user_id, row.agent, row.outcome) == (gateway.user_id, "gateway", CallOutcome.SUCCESS)
    assert row.idempotency_key.startswith("gateway:ollama-generate-")
    assert row.endpoint == "/api/generate"
    assert answer.done is True and isinstance(answer.response, str)
    assert answer.eval_count == row.completion_tokens


def test_a_streamed_generate_sends_pieces_then_counts(gateway):
    parts = list(
        client(gateway).generate(model="auto", prompt="def add(a, b):", options={"num_predict": 6}, stream=True)
    )

    assert all(part.done is False for part in parts[:-1])
    assert parts[-1].done is True and parts[-1].eval_count == the_row().completion_tokens


def test_a_request_with_nothing_to_answer_loads_the_model_without_a_call(gateway):
    answer = client(gateway).generate(model="auto")

    assert (answer.done, answer.done_reason, answer.response) == (True, "load", "")
    unloaded = client(gateway).chat(model="auto", messages=[], keep_alive=0)
    assert (unloaded.done_reason, unloaded.message.content) == ("unload", "")
    with pytest.raises(ollama.ResponseError) as raised:
        client(gateway).generate(model="llama9:imaginary")
    assert raised.value.status_code == 404
    assert not LedgerEntry.objects.exists()


def test_tags_list_the_gateway_model_names(gateway):
    listed = client(gateway).list()

    assert [model.model for model in listed.models] == ["auto", "gemma3-270m", "gemma3-270m-embed"]
    assert all(model.digest and model.modified_at is not None for model in listed.models)


def test_show_answers_for_a_listed_name_and_404s_for_others(gateway):
    shown = client(gateway).show("gemma3-270m")

    assert shown.capabilities == ["completion"]
    assert shown.modelinfo == {"switchyard.served_by": LOCAL}
    assert client(gateway).show("gemma3-270m-embed").capabilities == ["embedding"]
    with pytest.raises(ollama.ResponseError) as raised:
        client(gateway).show("llama9:imaginary")
    assert (raised.value.status_code, raised.value.error) == (404, "model 'llama9:imaginary' not found")


def test_show_takes_the_older_name_field_continue_sends(gateway):
    response = httpx.post(
        f"{host(gateway)}/api/show", json={"name": "auto"}, headers={"Authorization": f"Bearer {gateway.key}"}
    )

    assert response.status_code == 200
    assert response.json()["model_info"] == {"switchyard.served_by": "switchyard"}


def test_the_version_needs_no_key(empty_gateway):
    response = httpx.get(f"{host(empty_gateway)}/api/version")

    assert response.status_code == 200
    assert response.json() == {"version": "0.32.15"}
    assert httpx.head(f"{host(empty_gateway)}/api/version").status_code == 200  # Ollama answers HEAD too


def test_the_running_models_are_none_and_need_a_key(empty_gateway):
    keyed = ollama.Client(host=host(empty_gateway), headers={"Authorization": f"Bearer {empty_gateway.key}"})

    assert keyed.ps().models == []  # the gateway loads no model; Open WebUI asks for its status panel
    with pytest.raises(ollama.ResponseError) as raised:
        ollama.Client(host=host(empty_gateway)).ps()
    assert raised.value.status_code == 401


def test_a_wrong_key_is_a_401(gateway):
    with pytest.raises(ollama.ResponseError) as raised:
        client(gateway, key="not-a-key").chat(model="auto", messages=HELLO)

    assert raised.value.status_code == 401
    assert not LedgerEntry.objects.exists()


def test_no_key_is_a_401_for_every_endpoint_but_the_version(empty_gateway):
    anonymous = ollama.Client(host=host(empty_gateway))

    for call in (anonymous.list, lambda: anonymous.show("auto"), lambda: anonymous.generate("auto", "hi")):
        with pytest.raises(ollama.ResponseError) as raised:
            call()
        assert raised.value.status_code == 401
        assert "API key" in raised.value.error


def test_an_unknown_model_is_not_found_in_ollamas_words(gateway):
    with pytest.raises(ollama.ResponseError) as raised:
        client(gateway).chat(model="gpt-9-imaginary", messages=HELLO, stream=True).__next__()

    assert (raised.value.status_code, raised.value.error) == (404, "model 'gpt-9-imaginary' not found")
    assert not LedgerEntry.objects.exists()


def test_bad_input_is_a_400_that_says_what_is_wrong(gateway):
    with pytest.raises(ollama.ResponseError) as raised:
        client(gateway).chat(model="auto", messages=HELLO, options={"temperature": 7})
    assert raised.value.status_code == 400
    assert "options.temperature" in raised.value.error
    assert not LedgerEntry.objects.exists()


def test_a_key_limited_to_some_models_is_refused_the_others(gateway):
    user = get_user_model().objects.get(pk=gateway.user_id)
    secret = key_create(user=user, name="laptop", allowed_models=["gemma3-270m"]).secret

    assert [model.model for model in client(gateway, key=secret).list().models] == ["gemma3-270m"]
    with pytest.raises(ollama.ResponseError) as raised:
        client(gateway, key=secret).chat(model="auto", messages=HELLO)
    assert raised.value.status_code == 403
    client(gateway, key=secret).chat(model="gemma3-270m", messages=HELLO, options={"num_predict": 2})
    assert the_row().api_key.name == "laptop"


def test_a_client_that_disconnects_mid_stream_stops_the_upstream_call_and_what_was_used_is_metered(gateway):
    body = {"model": "auto", "messages": HELLO, "options": {"num_predict": 250}}
    headers = {"Authorization": f"Bearer {gateway.key}"}
    with httpx.stream("POST", f"{host(gateway)}/api/chat", json=body, headers=headers, timeout=120) as response:
        for line in response.iter_lines():
            if json.loads(line)["message"]["content"]:  # the first piece of the answer: hang up
                break

    deadline = time.monotonic() + 60
    while (row := the_row()).outcome == CallOutcome.STARTED and time.monotonic() < deadline:
        time.sleep(0.2)
    assert row.outcome == CallOutcome.CANCELLED
    assert (row.user_id, row.agent) == (gateway.user_id, "gateway")
    assert 0 < row.completion_tokens < 250


def test_a_request_no_provider_can_take_is_a_503_that_says_why_streamed_or_not(empty_gateway, providers):  # noqa: F811
    for stream in (False, True):
        with pytest.raises(ollama.ResponseError) as raised:
            answer = client(empty_gateway).chat(model="mistral:latest", messages=HELLO, stream=stream)
            if stream:
                next(answer)
        assert raised.value.status_code == 503
        assert "ollama" in raised.value.error and "spare" in raised.value.error
    assert LedgerEntry.objects.filter(agent="gateway", user_id=empty_gateway.user_id).count() == 4


def test_tags_list_auto_then_each_enabled_model_once(empty_gateway, providers):  # noqa: F811
    assert [model.model for model in client(empty_gateway).list().models] == ["auto", "mistral:latest"]


def test_an_upstream_ollamas_own_durations_pass_through(empty_gateway, fake_ollama):
    forget_health(["team-ollama"])
    provider_create("team-ollama", kind="ollama", base_url=fake_ollama.base_url, model="mistral:latest")
    invalidate_routing_cache()

    for stream in (False, True):
        answer = client(empty_gateway).chat(model="mistral:latest", messages=HELLO, stream=stream)
        last = answer if not stream else list(answer)[-1]
        assert (last.load_duration, last.prompt_eval_duration, last.eval_duration) == (
            50_000_000,
            200_000_000,
            1_000_000_000,
        )
        assert last.eval_count == LedgerEntry.objects.latest("id").completion_tokens
    forget_health(["team-ollama"])


def test_a_failure_mid_stream_ends_the_stream_with_an_error_line_and_calls_no_other_provider(
    empty_gateway,
    two_upstreams,  # noqa: F811
):
    first, second = two_upstreams
    first.behave("stream_error")

    received = ""
    with pytest.raises(ollama.ResponseError) as raised:
        for part in client(empty_gateway).chat(model="auto", messages=HELLO, options={"num_predict": 16}, stream=True):
            received += part.message.content or ""

    assert received  # the part sent before the failure
    assert "failed after part of the answer was sent" in raised.value.error
    assert second.requests == []
