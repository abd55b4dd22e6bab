"""Rate limits as the official `openai` package sees them, against Switchyard under uvicorn (a fake
OpenAI-compatible upstream behind it): a 429 it raises as RateLimitError, with Retry-After and
OpenAI's x-ratelimit-* headers, which successful answers carry too."""

from __future__ import annotations

import httpx
import ollama
import openai
import pytest
from django.contrib.auth import get_user_model

from accounts.models import Membership, Team
from accounts.services import key_create
from routing.models import LedgerEntry
from tests.routing.conftest_router import forget_health, make_provider

HELLO = [{"role": "user", "content": "hello"}]  # 6 tokens as routing.tokens estimates them (4 + 2)
USAGE = {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}  # what the upstream reports


@pytest.fixture
def upstream(empty_gateway, fake_openai):
    make_provider("upstream", base_url=fake_openai.base_url, model="gpt-4o-mini")
    fake_openai.usage = USAGE
    yield fake_openai
    forget_health(["upstream"])


def limited_client(gateway, **limits) -> openai.OpenAI:
    """A client with a new key of the gateway's user, limited as given (as staff set it in the admin)."""
    user = get_user_model().objects.get(pk=gateway.user_id)
    secret = key_create(user=user, name="script", limits_checked=False, **limits).secret
    return openai.OpenAI(base_url=gateway.base_url, api_key=secret, max_retries=0, timeout=30)


def ask(client: openai.OpenAI, **given):
    return client.chat.completions.create(**{"model": "gpt-4o-mini", "messages": HELLO, "max_tokens": 10, **given})


def test_a_request_over_the_keys_requests_per_minute_is_a_rate_limit_error_with_retry_after(empty_gateway, upstream):
    client = limited_client(empty_gateway, requests_per_minute=2, tokens_per_minute=0)
    ask(client)
    ask(client)

    with pytest.raises(openai.RateLimitError) as raised:
        ask(client)

    error = raised.value
    assert (error.status_code, error.code, error.body["type"]) == (429, "rate_limit_exceeded", "requests")
    assert error.body["message"].startswith("Rate limit reached for this API key on requests per minute: limit 2.")
    headers = error.response.headers
    assert 29 <= int(headers["retry-after"]) <= 30  # one of 2 requests a minute drains in 30 s
    assert 29_000 <= int(headers["retry-after-ms"]) <= 30_000
    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == ("2", "0")
    assert headers["x-ratelimit-reset-requests"].startswith("59.")  # both drained within a minute of the first
    assert LedgerEntry.objects.count() == 2  # the refused request reached no provider


def test_an_answer_carries_the_rate_limit_headers_with_its_tokens_settled_to_the_usage(empty_gateway, upstream):
    client = limited_client(empty_gateway, requests_per_minute=10, tokens_per_minute=1000)
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO, max_tokens=500)

    headers = raw.headers

    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == ("10", "9")
    assert headers["x-ratelimit-limit-tokens"] == "1000"
    # Held at admission: the prompt's 6 and max_tokens 500; settled: the 25 the upstream reported.
    assert 975 <= int(headers["x-ratelimit-remaining-tokens"]) <= 980  # and 1 a 60 ms drained meanwhile
    assert headers["x-ratelimit-reset-tokens"].endswith("s")


def test_tokens_held_for_max_tokens_are_given_back_after_the_call(empty_gateway, upstream):
    client = limited_client(empty_gateway, requests_per_minute=10, tokens_per_minute=1000)

    # Each holds 6 + 900 while it runs, and uses 25: without the correction the second would not fit.
    ask(client, max_tokens=900)
    ask(client, max_tokens=900)

    assert LedgerEntry.objects.count() == 2


def test_a_request_larger_than_the_keys_tokens_per_minute_is_refused_as_too_large(empty_gateway, upstream):
    client = limited_client(empty_gateway, requests_per_minute=10, tokens_per_minute=1000)

    with pytest.raises(openai.RateLimitError) as raised:
        ask(client, max_tokens=2000)

    assert (raised.value.code, raised.value.body["type"]) == ("rate_limit_exceeded", "tokens")
    assert raised.value.body["message"].startswith(
        "Request too large for this API key's tokens per minute: limit 1000, requested 2006"
    )
    assert "retry-after" not in raised.value.response.headers
    assert raised.value.response.headers["x-should-retry"] == "false"  # the client does not send it again
    assert not LedgerEntry.objects.exists()


def test_a_stream_carries_the_rate_limit_headers(empty_gateway, upstream):
    client = limited_client(empty_gateway, requests_per_minute=3, tokens_per_minute=1000)

    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=HELLO, max_tokens=10, stream=True
    ) as response:
        list(response.iter_lines())

    assert response.headers["x-ratelimit-remaining-requests"] == "2"
    assert response.headers["x-ratelimit-remaining-tokens"] == "984"  # 6 + 10 held while it streams


def test_a_stream_over_the_limit_is_refused_before_any_chunk(empty_gateway, upstream):
    client = limited_client(empty_gateway, requests_per_minute=1, tokens_per_minute=0)
    list(ask(client, stream=True))

    with pytest.raises(openai.RateLimitError) as raised:
        ask(client, stream=True)

    assert raised.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert LedgerEntry.objects.count() == 1


def test_a_streamed_answer_settles_its_tokens_when_it_ends(empty_gateway, upstream):
    client = limited_client(empty_gateway, requests_per_minute=10, tokens_per_minute=1000)

    list(ask(client, max_tokens=900, stream=True, stream_options={"include_usage": True}))
    answered = ask(client, max_tokens=900)  # fits only if the stream's hold was settled to its 25

    assert answered.choices[0].message.content == upstream.reply


def test_the_server_default_applies_to_a_key_without_limits_of_its_own(empty_gateway, upstream, settings):
    settings.SWITCHYARD_KEY_RPM = 1  # the server in the test's thread reads the test's settings
    body = {"model": "gpt-4o-mini", "messages": HELLO, "max_tokens": 4}
    headers = {"Authorization": f"Bearer {empty_gateway.key}"}  # an older DRF token: the defaults
    url = f"{empty_gateway.base_url}/chat/completions"

    statuses = [httpx.post(url, json=body, headers=headers, timeout=30).status_code for _ in range(2)]

    assert statuses == [200, 429]


def test_the_ollama_endpoints_count_against_the_same_limits(empty_gateway, upstream):
    user = get_user_model().objects.get(pk=empty_gateway.user_id)
    secret = key_create(user=user, name="webui", requests_per_minute=2, tokens_per_minute=1000).secret
    auth = {"Authorization": f"Bearer {secret}"}
    root = empty_gateway.base_url.removesuffix("/v1")
    ollama_client = ollama.Client(host=root, headers=auth, timeout=30)
    openai_client = openai.OpenAI(base_url=empty_gateway.base_url, api_key=secret, max_retries=0, timeout=30)
    ask(openai_client)

    answered = httpx.post(
        f"{root}/api/chat",
        json={"model": "gpt-4o-mini", "messages": HELLO, "stream": False, "options": {"num_predict": 10}},
        headers=auth,
        timeout=30,
    )
    with pytest.raises(ollama.ResponseError) as raised:
        ollama_client.chat(model="gpt-4o-mini", messages=HELLO, options={"num_predict": 10})
    generate = {"model": "gpt-4o-mini", "prompt": "hi", "options": {"num_predict": 10}}
    refused = httpx.post(f"{root}/api/generate", json=generate, headers=auth, timeout=30)

    assert answered.status_code == 200
    assert answered.headers["x-ratelimit-remaining-requests"] == "0"
    assert 950 <= int(answered.headers["x-ratelimit-remaining-tokens"]) <= 955  # two calls of 25, settled
    assert raised.value.status_code == 429
    assert raised.value.error.startswith("Rate limit reached for this API key on requests per minute: limit 2.")
    assert refused.status_code == 429
    assert refused.json()["error"].startswith("Rate limit reached")
    assert 1 <= int(refused.headers["retry-after"]) <= 30
    assert LedgerEntry.objects.count() == 2


def test_two_members_keys_share_their_teams_requests_per_minute(empty_gateway, upstream):
    team = Team.objects.create(name="platform", requests_per_minute=2)
    clients = []
    for username in ("ana", "ben"):
        user = get_user_model().objects.create_user(username=username, password="x")
        Membership.objects.create(user=user, team=team)
        secret = key_create(user=user, name="script", requests_per_minute=5, tokens_per_minute=1000).secret
        clients.append(openai.OpenAI(base_url=empty_gateway.base_url, api_key=secret, max_retries=0, timeout=30))
    ana, ben = clients
    ask(ana)
    second = ben.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO, max_tokens=10)

    with pytest.raises(openai.RateLimitError) as raised:
        ask(ana)  # ana's key has used 1 of its 5

    # ben's answer: the team's requests (0 of 2 left) are tighter than his key's (4 of 5); its tokens
    # are his key's (the team has no tokens limit), with the 25 the upstream reported settled.
    headers = second.headers
    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == ("2", "0")
    assert headers["x-ratelimit-limit-tokens"] == "1000"
    assert 975 <= int(headers["x-ratelimit-remaining-tokens"]) <= 980
    error = raised.value
    assert (error.status_code, error.code, error.body["type"]) == (429, "rate_limit_exceeded", "requests")
    assert error.body["message"].startswith(
        "Rate limit reached for team platform on requests per minute: limit 2 (shared by its members' keys)."
    )
    assert 29 <= int(error.response.headers["retry-after"]) <= 30
    assert LedgerEntry.objects.count() == 2
