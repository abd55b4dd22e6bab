"""Cool-downs: a provider that keeps failing transiently is left alone for a while, by every worker."""

import time

import pytest
from django.core.cache import cache

from routing import health
from routing.models import CallOutcome, LedgerEntry
from routing.router import NoProviderAvailable, route
from tests.routing.conftest_router import ask, fresh_routing, make_provider, set_policy  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_routing")]


@pytest.fixture
def flaky_and_spare(fake_server):
    flaky, spare = fake_server("openai_compatible"), fake_server("openai_compatible")
    make_provider("flaky", base_url=flaky.base_url, model="gpt-4o-mini", priority=1)
    make_provider("spare", base_url=spare.base_url, model="gpt-4o-mini", priority=2)
    return flaky, spare


def chats(server) -> int:
    return sum(1 for request in server.requests if request.path.endswith("/chat/completions"))


def test_it_skips_a_provider_after_n_transient_failures_in_a_row(flaky_and_spare) -> None:
    flaky, _ = flaky_and_spare
    set_policy(failures_before_cooldown=2, cooldown_seconds=60)
    flaky.behave("server_error")

    route(ask())
    route(ask())
    third = route(ask())

    assert chats(flaky) == 2
    assert third.provider == "spare"
    assert third.attempts == [third.entry]
    assert third.reason == "priority 2, local"


def test_it_says_a_provider_is_cooling_down_when_nothing_else_is_left(fake_openai) -> None:
    make_provider("only", base_url=fake_openai.base_url, model="gpt-4o-mini")
    set_policy(failures_before_cooldown=1, cooldown_seconds=60)
    fake_openai.behave("unavailable")
    with pytest.raises(NoProviderAvailable):
        route(ask())

    with pytest.raises(NoProviderAvailable) as cooling:
        route(ask())

    assert "only: cooling down for 60 s more after 1 transient failures" in cooling.value.reason
    assert chats(fake_openai) == 1


def test_it_tries_the_provider_again_when_the_cooldown_ends(flaky_and_spare) -> None:
    flaky, _ = flaky_and_spare
    set_policy(failures_before_cooldown=1, cooldown_seconds=1)
    flaky.script("server_error")
    assert route(ask()).provider == "spare"
    assert route(ask()).provider == "spare"

    time.sleep(1.1)

    assert route(ask()).provider == "flaky"


def test_it_forgets_earlier_failures_after_a_success(flaky_and_spare) -> None:
    flaky, _ = flaky_and_spare
    set_policy(failures_before_cooldown=2, cooldown_seconds=60)
    flaky.script("server_error", "ok", "server_error")

    results = [route(ask()).provider for _ in range(4)]

    assert results == ["spare", "flaky", "spare", "flaky"]


def test_it_honours_a_cooldown_started_by_another_worker(flaky_and_spare) -> None:
    flaky, _ = flaky_and_spare
    # Another worker's failures land in the shared cache, not in this process.
    health.record_transient_failure("flaky", failures_before_cooldown=1, cooldown_seconds=60)

    assert route(ask()).provider == "spare"
    assert chats(flaky) == 0


def test_a_wrong_key_never_locks_the_provider_out(fake_server, monkeypatch) -> None:
    keyed, spare = fake_server("openai"), fake_server("openai_compatible")
    keyed.api_key = "sk-right-key-000000"
    monkeypatch.setenv("SWITCHYARD_TEST_KEY", "sk-wrong-key-111111")
    make_provider(
        "keyed", kind="openai", base_url=keyed.base_url, model="gpt-4o-mini", api_key_env="SWITCHYARD_TEST_KEY"
    )
    make_provider("spare", base_url=spare.base_url, model="gpt-4o-mini", priority=2)
    set_policy(failures_before_cooldown=1, cooldown_seconds=3600)

    for _ in range(3):
        assert route(ask()).provider == "spare"
    refused = LedgerEntry.objects.filter(provider__name="keyed")
    assert [entry.outcome for entry in refused] == [CallOutcome.PERMANENT] * 3
    assert all(entry.error.startswith("401") for entry in refused)
    assert "sk-wrong-key-111111" not in "".join(entry.error for entry in refused)

    monkeypatch.setenv("SWITCHYARD_TEST_KEY", "sk-right-key-000000")  # the operator fixes the key

    assert route(ask()).provider == "keyed"


def test_it_sees_another_workers_cooldown_within_the_check_interval(flaky_and_spare, monkeypatch) -> None:
    monkeypatch.setattr(health, "COOLDOWN_CHECK_INTERVAL_S", 0.3)
    assert route(ask()).provider == "flaky"

    until = time.time() + 60  # another worker starts a cool-down: only the shared cache knows
    cache.set(health.COOLDOWN_KEY.format("flaky"), (until, 3), timeout=60)

    assert route(ask()).provider == "flaky"  # no round trip yet
    time.sleep(0.35)
    assert route(ask()).provider == "spare"
