"""The rate limiter (gateway.rate_limits) against the real Redis: requests and tokens per minute per
key, held at admission and settled after the call, refilled continuously, and open while Redis is down."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import pytest
from django.test import override_settings

from accounts.services import KeyHolder, key_create
from gateway import rate_limits
from gateway.rate_limits import RateLimited, duration, rate_admit, rate_settle
from tests.agents.views_helpers import make_user
from tests.redis_server import throwaway_redis

__all__ = ["throwaway_redis"]

pytestmark = pytest.mark.django_db


def holder(**limits) -> KeyHolder:
    user = make_user(f"ana-{uuid.uuid4().hex[:8]}")
    return KeyHolder(user=user, key=key_create(user=user, name="script", limits_checked=False, **limits).key)


def admit(who: KeyHolder, *, prompt_tokens: int = 10, max_tokens: int | None = 10):
    return rate_admit(who, prompt_tokens=prompt_tokens, max_tokens=max_tokens)


@pytest.mark.parametrize(
    ("ms", "written"),
    [
        (0, "0s"),
        (12, "12ms"),
        (999, "999ms"),
        (1000, "1s"),
        (1500, "1.5s"),
        (90_500, "1m30.5s"),
        (360_000, "6m0s"),
        (3_723_004, "1h2m3.004s"),
        (7_200_000, "2h0m0s"),
    ],
)
def test_durations_are_written_as_openai_writes_its_reset_headers(ms, written):
    assert duration(ms) == written


def test_a_key_is_admitted_up_to_its_requests_per_minute_then_refused_until_one_drains():
    who = holder(requests_per_minute=3, tokens_per_minute=0)

    states = [admit(who).state for _ in range(3)]
    with pytest.raises(RateLimited) as refused:
        admit(who)

    assert [state.remaining_requests for state in states] == [2, 1, 0]
    assert refused.value.kind == "requests"
    # One request drains every 20 s; the first came a few ms ago.
    assert 19_000 < refused.value.retry_after_ms <= 20_000
    assert refused.value.headers()["Retry-After"] == "20"
    assert refused.value.headers()["x-ratelimit-remaining-requests"] == "0"
    assert "limit 3" in refused.value.message


def test_the_headers_say_the_limit_what_remains_and_when_the_bucket_is_empty_again():
    who = holder(requests_per_minute=60, tokens_per_minute=1000)

    headers = admit(who, prompt_tokens=40, max_tokens=60).headers()

    assert headers["x-ratelimit-limit-requests"] == "60"
    assert headers["x-ratelimit-remaining-requests"] == "59"
    assert headers["x-ratelimit-reset-requests"] == "1s"  # one request of 60 a minute
    assert headers["x-ratelimit-limit-tokens"] == "1000"
    assert headers["x-ratelimit-remaining-tokens"] == "900"
    assert headers["x-ratelimit-reset-tokens"] == "6s"  # 100 of 1000 a minute


def test_a_request_holds_its_prompt_and_max_tokens_and_one_that_does_not_fit_counts_nothing():
    who = holder(requests_per_minute=10, tokens_per_minute=1000)
    admit(who, prompt_tokens=100, max_tokens=700)

    with pytest.raises(RateLimited) as refused:
        admit(who, prompt_tokens=100, max_tokens=200)

    assert refused.value.kind == "tokens"
    assert "requested 300" in refused.value.message
    assert refused.value.state.remaining_requests == 9  # the refused request was not counted
    assert admit(who, prompt_tokens=100, max_tokens=100).state.remaining_tokens == 0


def test_a_request_without_max_tokens_holds_a_stated_share_for_its_answer():
    who = holder(requests_per_minute=10, tokens_per_minute=10_000)

    admission = admit(who, prompt_tokens=50, max_tokens=None)

    assert admission.held_tokens == 50 + rate_limits.UNSTATED_COMPLETION_TOKENS
    assert admission.state.remaining_tokens == 10_000 - 50 - rate_limits.UNSTATED_COMPLETION_TOKENS


def test_settling_gives_back_what_the_call_did_not_use():
    who = holder(requests_per_minute=10, tokens_per_minute=1000)
    admission = admit(who, prompt_tokens=100, max_tokens=800)

    rate_settle(admission, tokens_used=150)

    # 1000 - 150, and what drained meanwhile (1 token per 60 ms).
    assert 850 <= admission.state.remaining_tokens <= 853
    assert admit(who, prompt_tokens=100, max_tokens=600).state.remaining_tokens >= 149


def test_a_call_that_used_more_than_it_held_is_charged_the_difference():
    who = holder(requests_per_minute=10, tokens_per_minute=1000)
    admission = admit(who, prompt_tokens=10, max_tokens=10)

    rate_settle(admission, tokens_used=520)

    assert 480 <= admission.state.remaining_tokens <= 483


def test_a_request_larger_than_the_whole_tokens_per_minute_is_refused_without_a_retry_time():
    who = holder(requests_per_minute=10, tokens_per_minute=1000)

    with pytest.raises(RateLimited) as refused:
        admit(who, prompt_tokens=200, max_tokens=900)

    assert (refused.value.kind, refused.value.retry_after_ms) == ("tokens", None)
    assert "Retry-After" not in refused.value.headers()
    assert refused.value.message.startswith("Request too large")


def test_the_buckets_refill_continuously():
    who = holder(requests_per_minute=10, tokens_per_minute=6000)  # 100 tokens drain every second
    admit(who, prompt_tokens=1000, max_tokens=5000)
    with pytest.raises(RateLimited) as refused:
        admit(who, prompt_tokens=50, max_tokens=50)

    time.sleep(refused.value.retry_after_ms / 1000 + 0.05)

    assert admit(who, prompt_tokens=50, max_tokens=50).state.remaining_tokens < 10


def test_a_key_without_limits_of_its_own_has_the_servers_defaults(settings):
    settings.SWITCHYARD_KEY_RPM, settings.SWITCHYARD_KEY_TPM = 7, 7000
    user = make_user("ana")
    who = KeyHolder(user=user, key=key_create(user=user, name="laptop").key)

    assert admit(who).headers()["x-ratelimit-limit-requests"] == "7"
    assert admit(who).headers()["x-ratelimit-limit-tokens"] == "7000"


def test_an_older_token_has_the_servers_defaults_per_user(settings):
    settings.SWITCHYARD_KEY_RPM, settings.SWITCHYARD_KEY_TPM = 2, 0
    who = KeyHolder(user=make_user("ana"), key=None)
    admit(who)
    admit(who)

    with pytest.raises(RateLimited):
        admit(who)
    assert "x-ratelimit-limit-tokens" not in admit(KeyHolder(user=make_user("bo"), key=None)).headers()


def test_a_key_limited_to_zero_is_not_limited_and_sends_no_headers():
    who = holder(requests_per_minute=0, tokens_per_minute=0)

    admissions = [admit(who) for _ in range(50)]

    assert all(admission.headers() == {} for admission in admissions)


def test_keys_have_buckets_of_their_own():
    first, second = holder(requests_per_minute=1, tokens_per_minute=0), holder(requests_per_minute=1)
    admit(first)

    assert admit(second).state.remaining_requests == 0
    with pytest.raises(RateLimited):
        admit(first)


def test_concurrent_requests_of_one_key_are_admitted_exactly_up_to_its_limit():
    who = holder(requests_per_minute=5, tokens_per_minute=0)
    outcomes: list[bool] = []
    start = threading.Barrier(20)

    def request() -> None:
        start.wait()
        try:
            admit(who)
            outcomes.append(True)
        except RateLimited:
            outcomes.append(False)

    threads = [threading.Thread(target=request) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes.count(True) == 5


@pytest.fixture
def limiter_on_throwaway_redis(throwaway_redis):
    with override_settings(REDIS_URL=throwaway_redis.url):
        yield throwaway_redis
    rate_limits._redis.down_until, rate_limits._redis.down = 0.0, False  # the next test asks Redis at once


def test_while_redis_is_down_requests_are_admitted_without_headers_and_it_is_logged_once(
    limiter_on_throwaway_redis, caplog
):
    who = holder(requests_per_minute=1, tokens_per_minute=100)
    admit(who)
    limiter_on_throwaway_redis.stop()

    with caplog.at_level(logging.WARNING, logger="gateway.rate_limits"):
        admissions = [admit(who) for _ in range(3)]
        rate_limits._redis.down_until = 0.0  # past the pause: Redis is asked again, and is still down
        admissions.append(admit(who))

    assert [admission.state for admission in admissions] == [None] * 4
    assert len(caplog.records) == 1
    assert (
        caplog.records[0]
        .getMessage()
        .startswith("rate limits: not enforced while Redis is unreachable (ConnectionError: ")
    )
