"""The official `openai` package, unchanged, against Switchyard under uvicorn with the real local model
behind it: what a team's scripts and tools see when they point their base_url at Switchyard."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from routing.models import CallOutcome, LedgerEntry
from tests.gateway.conftest import LOCAL

pytestmark = pytest.mark.local_model

HELLO = [{"role": "user", "content": "def add(a, b):"}]


def client(gateway, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=key or gateway.key, max_retries=0, timeout=120)


def ledger_row(completion_id: str) -> LedgerEntry:
    return LedgerEntry.objects.get(idempotency_key=f"gateway:{completion_id}:attempt:1")


def test_a_chat_completion_is_answered_by_the_local_model_and_metered_for_its_user(gateway):
    raw = client(gateway).chat.completions.with_raw_response.create(model="auto", messages=HELLO, max_tokens=6)
    completion = raw.parse()

    row = ledger_row(completion.id)
    assert (row.user_id, row.agent, row.provider.name, row.outcome) == (
        gateway.user_id,
        "gateway",
        LOCAL,
        CallOutcome.SUCCESS,
    )
    assert completion.object == "chat.completion"
    assert completion.model == "gemma3-270m"
    assert completion.choices[0].message.role == "assistant"
    assert isinstance(completion.choices[0].message.content, str)
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.completion_tokens == row.completion_tokens > 0
    assert completion.usage.prompt_tokens == row.prompt_tokens > 0
    assert raw.headers["x-switchyard-provider"] == LOCAL
    assert raw.headers["x-switchyard-model"] == "gemma3-270m"
    assert raw.headers["x-switchyard-cost-usd"] == "0.0000000000"


def test_a_concrete_model_name_is_served_by_the_provider_that_offers_it(gateway):
    completion = client(gateway).chat.completions.create(
        model="gemma3-270m", messages=HELLO, max_completion_tokens=4, temperature=0, top_p=0.9, seed=7, stop=["\n\n"]
    )

    assert ledger_row(completion.id).provider.name == LOCAL


def test_a_streamed_chat_sends_chunks_then_a_usage_chunk_and_is_metered(gateway):
    stream = client(gateway).chat.completions.create(
        model="auto", messages=HELLO, max_tokens=8, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert pieces, "no content chunk arrived"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish in (["stop"], ["length"])
    last = chunks[-1]
    assert last.choices == []
    row = ledger_row(last.id)
    assert (row.user_id, row.agent, row.outcome) == (gateway.user_id, "gateway", CallOutcome.SUCCESS)
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (row.prompt_tokens, row.completion_tokens)
    assert row.ttft_ms is not None


def test_a_stream_ends_with_done(gateway):
    body = {"model": "auto", "messages": HELLO, "max_tokens": 3, "stream": True}
    headers = {"Authorization": f"Bearer {gateway.key}"}
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", json=body, headers=headers, timeout=120) as r:
        events = [line for line in r.iter_lines() if line]

    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-switchyard-provider"] == LOCAL
    assert events[-1] == "data: [DONE]"
    assert all(event.startswith("data: ") for event in events)


def test_a_wrong_key_is_an_authentication_error(gateway):
    with pytest.raises(openai.AuthenticationError) as raised:
        client(gateway, key="not-a-key").chat.completions.create(model="auto", messages=HELLO, max_tokens=4)

    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"
    assert not LedgerEntry.objects.exists()


def test_an_unknown_model_is_not_found(gateway):
    with pytest.raises(openai.NotFoundError) as raised:
        client(gateway).chat.completions.create(model="gpt-9-imaginary", messages=HELLO, max_tokens=4)

    assert raised.value.code == "model_not_found"
    assert "gpt-9-imaginary" in raised.value.message
    assert not LedgerEntry.objects.exists()


def test_a_streamed_request_for_an_unknown_model_is_not_found_before_any_chunk(gateway):
    with pytest.raises(openai.NotFoundError) as raised:
        client(gateway).chat.completions.create(model="gpt-9-imaginary", messages=HELLO, max_tokens=4, stream=True)

    assert raised.value.code == "model_not_found"


def test_a_malformed_request_is_a_bad_request_naming_the_parameter(gateway):
    with pytest.raises(openai.BadRequestError) as raised:
        client(gateway).chat.completions.create(model="auto", messages=HELLO, temperature=7)

    assert raised.value.param == "temperature"
    assert raised.value.body["type"] == "invalid_request_error"
    assert not LedgerEntry.objects.exists()


def test_a_client_that_disconnects_mid_stream_stops_the_upstream_call_and_what_was_used_is_metered(gateway):
    body = {"model": "auto", "messages": HELLO, "max_tokens": 250, "stream": True}
    headers = {"Authorization": f"Bearer {gateway.key}"}
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", json=body, headers=headers, timeout=120) as r:
        for line in r.iter_lines():
            if '"content"' in line:  # the first piece of the answer: hang up
                completion_id = json.loads(line.removeprefix("data: "))["id"]
                break

    deadline = time.monotonic() + 60
    while (row := ledger_row(completion_id)).outcome == CallOutcome.STARTED and time.monotonic() < deadline:
        time.sleep(0.2)
    assert row.outcome == CallOutcome.CANCELLED
    assert (row.user_id, row.agent) == (gateway.user_id, "gateway")
    assert 0 < row.completion_tokens < 250
