"""A team's rate limits (gateway.rate_limits) against the real Redis: shared by its members' keys on
top of each key's own, checked and counted with the key's in one script call, settled in both, and
shown in the headers where they are the tighter."""

from __future__ import annotations

import threading

import pytest
import redis
from django.conf import settings

from accounts.models import Membership, Team
from accounts.services import KeyHolder, key_authenticate, key_create
from gateway.rate_limits import KEY_FORMAT, RateLimited, rate_admit, rate_settle
from tests.agents.views_helpers import make_user

pytestmark = pytest.mark.django_db


def team(**limits) -> Team:
    return Team.objects.create(name="platform", **limits)


def member(of: Team | None, username: str, **limits) -> KeyHolder:
    """A user of the team with a key limited as given (as staff set it), as the gateway sees them."""
    user = make_user(username)
    if of is not None:
        Membership.objects.create(user=user, team=of)
    return key_authenticate(key_create(user=user, name="script", limits_checked=False, **limits).secret)


def admit(who: KeyHolder, *, prompt_tokens: int = 10, max_tokens: int | None = 10):
    return rate_admit(who, prompt_tokens=prompt_tokens, max_tokens=max_tokens)


def requests_in(bucket: str) -> float:
    """The requests a bucket pair holds now, as last written (what drained since is not subtracted)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return float(client.hget(KEY_FORMAT.format(bucket), "r") or 0)
    finally:
        client.close()


def test_two_members_keys_share_the_teams_requests_per_minute_while_each_is_under_its_own():
    platform = team(requests_per_minute=2)
    ana = member(platform, "ana", requests_per_minute=5, tokens_per_minute=0)
    ben = member(platform, "ben", requests_per_minute=5, tokens_per_minute=0)
    admit(ana)
    admit(ben)

    with pytest.raises(RateLimited) as refused:
        admit(ana)

    assert (refused.value.scope, refused.value.kind) == ("team", "requests")
    assert refused.value.message.startswith(
        "Rate limit reached for team platform on requests per minute: limit 2 (shared by its members' keys). "
        "Please try again in "
    )
    assert 29_000 < refused.value.retry_after_ms <= 30_000  # one of 2 a minute drains every 30 s
    assert refused.value.headers()["x-ratelimit-limit-requests"] == "2"
    assert refused.value.headers()["x-ratelimit-remaining-requests"] == "0"
    # Nothing was counted for the refused request, in the key's buckets either: ana's key holds 1 of its 5.
    assert requests_in(f"key:{ana.key.pk}") == pytest.approx(1, abs=0.01)


def test_a_request_the_key_refuses_is_not_counted_against_the_team():
    platform = team(requests_per_minute=10)
    ana = member(platform, "ana", requests_per_minute=1, tokens_per_minute=0)
    ben = member(platform, "ben", requests_per_minute=10, tokens_per_minute=0)
    admit(ana)

    with pytest.raises(RateLimited) as refused:
        admit(ana)

    assert refused.value.scope == "key"
    assert refused.value.message.startswith("Rate limit reached for this API key on requests per minute: limit 1.")
    assert admit(ben).states[1].remaining_requests == 8  # ana's one and ben's one of the team's 10


def test_a_team_without_limits_changes_nothing():
    platform = team()
    ana = member(platform, "ana", requests_per_minute=2, tokens_per_minute=1000)
    ben = member(platform, "ben", requests_per_minute=2, tokens_per_minute=1000)
    admissions = [admit(ana), admit(ana), admit(ben)]

    with pytest.raises(RateLimited) as refused:
        admit(ana)

    assert refused.value.scope == "key"
    assert [len(admission.scopes) for admission in admissions] == [1, 1, 1]  # the key's only
    assert [admission.state.remaining_requests for admission in admissions] == [1, 0, 1]
    assert requests_in(f"team:{platform.pk}") == 0  # no bucket for the team at all


def test_a_key_without_limits_of_its_own_is_still_held_to_its_teams():
    platform = team(requests_per_minute=1)
    ana = member(platform, "ana", requests_per_minute=0, tokens_per_minute=0)
    assert admit(ana).headers()["x-ratelimit-limit-requests"] == "1"

    with pytest.raises(RateLimited) as refused:
        admit(ana)

    assert refused.value.scope == "team"


def test_an_older_token_counts_against_its_users_team(settings):
    settings.SWITCHYARD_KEY_RPM, settings.SWITCHYARD_KEY_TPM = 100, 0
    platform = team(requests_per_minute=2)
    ana = member(platform, "ana", requests_per_minute=100, tokens_per_minute=0)
    admit(ana)
    ben = KeyHolder(user=make_user("ben"), key=None)
    Membership.objects.create(user=ben.user, team=platform)
    admit(ben)

    with pytest.raises(RateLimited) as refused:
        admit(ben)

    assert refused.value.scope == "team"


def test_tokens_are_held_and_settled_in_the_keys_buckets_and_the_teams():
    platform = team(tokens_per_minute=1000)
    ana = member(platform, "ana", requests_per_minute=0, tokens_per_minute=5000)
    ben = member(platform, "ben", requests_per_minute=0, tokens_per_minute=5000)
    admission = admit(ana, prompt_tokens=100, max_tokens=800)
    key_held, team_held = admission.states

    with pytest.raises(RateLimited) as refused:
        admit(ben, prompt_tokens=100, max_tokens=600)  # 700 more: over the team's 1000 while ana's 900 are held
    rate_settle(admission, tokens_used=150)
    key_settled, team_settled = admission.states

    assert (key_held.remaining_tokens, team_held.remaining_tokens) == (4100, 100)
    assert (refused.value.scope, refused.value.kind) == ("team", "tokens")
    assert "limit 1000, requested 700" in refused.value.message
    # 150 used, and what drained meanwhile (a token every 12 ms of the key's, 60 ms of the team's).
    assert 4850 <= key_settled.remaining_tokens <= 4870
    assert 850 <= team_settled.remaining_tokens <= 855
    assert admit(ben, prompt_tokens=100, max_tokens=600).states[1].remaining_tokens >= 150


def test_a_request_larger_than_the_teams_whole_tokens_per_minute_is_refused_as_too_large():
    platform = team(tokens_per_minute=500)
    ana = member(platform, "ana", requests_per_minute=10, tokens_per_minute=10_000)

    with pytest.raises(RateLimited) as refused:
        admit(ana, prompt_tokens=100, max_tokens=600)

    assert (refused.value.scope, refused.value.retry_after_ms) == ("team", None)
    assert refused.value.message.startswith(
        "Request too large for team platform's tokens per minute: limit 500, requested 700"
    )
    assert requests_in(f"key:{ana.key.pk}") == 0


def test_the_headers_show_per_kind_the_limit_with_less_remaining():
    platform = team(requests_per_minute=3, tokens_per_minute=100_000)
    ana = member(platform, "ana", requests_per_minute=10, tokens_per_minute=1000)

    headers = admit(ana, prompt_tokens=40, max_tokens=60).headers()

    # Requests: the team's 2 of 3 left are fewer than the key's 9 of 10.
    assert headers["x-ratelimit-limit-requests"] == "3"
    assert headers["x-ratelimit-remaining-requests"] == "2"
    assert headers["x-ratelimit-reset-requests"] == "20s"  # one request of 3 a minute
    # Tokens: the key's 900 of 1000 left are fewer than the team's 99,900.
    assert headers["x-ratelimit-limit-tokens"] == "1000"
    assert headers["x-ratelimit-remaining-tokens"] == "900"
    assert headers["x-ratelimit-reset-tokens"] == "6s"


def test_concurrent_requests_of_two_members_are_admitted_exactly_up_to_the_teams_limit():
    platform = team(requests_per_minute=5)
    members = [member(platform, name, requests_per_minute=20, tokens_per_minute=0) for name in ("ana", "ben")]
    outcomes: list[bool] = []
    start = threading.Barrier(20)

    def request(who: KeyHolder) -> None:
        start.wait()
        try:
            admit(who)
            outcomes.append(True)
        except RateLimited:
            outcomes.append(False)

    threads = [threading.Thread(target=request, args=(members[i % 2],)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes.count(True) == 5
    # The 15 refused were counted in neither key's bucket: the keys hold the 5 admitted between them.
    held = sum(requests_in(f"key:{who.key.pk}") for who in members)
    assert held == pytest.approx(5, abs=0.3)  # minus what drained meanwhile (one every 3 s per key)
