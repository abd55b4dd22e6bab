"""Provider status: one vocabulary from routing.selectors, and every surface says the same words.

The dashboard, the providers API, the admin's provider list and `check_providers` all read
`routing.selectors`; these tests take cases where they used to disagree.
"""

from __future__ import annotations

import socket
from dataclasses import replace
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from routing import health
from routing.models import CallOutcome
from routing.providers.base import ProviderConfig
from routing.selectors import LastCall, ProviderState, provider_state, provider_status, provider_statuses
from tests.routing.conftest_router import fresh_routing, make_provider  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_routing")]
UNSET_KEY = "SWITCHYARD_TEST_UNSET_KEY"
CALLED = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def state(*, api_key_env: str = "", **fields: object) -> tuple[ProviderState, str]:
    """The status and detail only: the fix sentences have tests of their own (test_readiness.py)."""
    config = ProviderConfig("claude", "anthropic", "https://api.anthropic.com", is_local=False, api_key_env=api_key_env)
    given = {"config": config, "model": "claude-sonnet", "enabled": True, "key_set": False}
    return provider_state(**{**given, "cooldown_s": None, "failures": None, "last_call": None, **fields})[:2]


def test_the_vocabulary_is_exactly_six_words() -> None:
    assert [str(word) for word in ProviderState] == ["up", "down", "cooling", "no key", "disabled", "not yet called"]


def test_a_provider_never_called_is_not_yet_called() -> None:
    assert state() == (ProviderState.NOT_YET_CALLED, "")


def test_its_last_call_says_up_or_down_with_the_error() -> None:
    assert state(last_call=LastCall(CALLED, CallOutcome.SUCCESS, "")) == (ProviderState.UP, "")
    failed = LastCall(CALLED, CallOutcome.PERMANENT, "401 authentication_error: invalid x-api-key")
    assert state(last_call=failed) == (ProviderState.DOWN, "401 authentication_error: invalid x-api-key")


def test_a_cool_down_outranks_the_last_call_and_says_how_long_is_left() -> None:
    succeeded = LastCall(CALLED, CallOutcome.SUCCESS, "")

    assert state(cooldown_s=41.6, failures=3, last_call=succeeded) == (
        ProviderState.COOLING,
        "42 s left after 3 transient failures in a row",
    )


def test_a_missing_key_outranks_a_cool_down_as_the_router_checks_the_key_first() -> None:
    assert state(api_key_env=UNSET_KEY, key_set=False, cooldown_s=30.0, failures=3) == (
        ProviderState.NO_KEY,
        f"{UNSET_KEY} is not set",
    )


def test_disabled_outranks_everything() -> None:
    assert state(enabled=False, api_key_env=UNSET_KEY, cooldown_s=30.0, failures=3) == (
        ProviderState.DISABLED,
        "the router does not use it",
    )


def test_it_lists_every_provider_by_priority_with_one_query_for_the_list_and_one_per_provider(
    django_assert_num_queries,
) -> None:
    make_provider("second", base_url=closed_port_url(), priority=2)
    make_provider("first", base_url=closed_port_url(), priority=1)

    with django_assert_num_queries(3):
        statuses = provider_statuses()

    # Both local hosts were probed (nothing listens): the probe asks the host, never the database.
    assert [(status.name, status.status) for status in statuses] == [
        ("first", ProviderState.DOWN),
        ("second", ProviderState.DOWN),
    ]


def test_the_dashboard_the_api_and_the_admin_all_say_no_key_for_a_provider_without_its_key(
    client: Client, staff_user, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: the dashboard said "no calls yet", the API "no_key", the admin nothing.
    monkeypatch.delenv(UNSET_KEY, raising=False)
    make_provider("claude", kind="anthropic", base_url=closed_port_url(), is_local=False, api_key_env=UNSET_KEY)
    client.force_login(staff_user)

    dashboard = [(p.name, p.status, p.detail) for p in client.get("/").context["providers"]]
    api = [(p["name"], p["health"]["status"], p["health"]["detail"]) for p in client.get("/api/v1/providers/").json()]
    admin = client.get("/admin/routing/provider/").content.decode()

    assert dashboard == api == [("claude", "no key", f"{UNSET_KEY} is not set")]
    assert f"no key: {UNSET_KEY} is not set" in admin


def test_check_providers_and_the_dashboard_both_say_down_after_a_failed_test_generation(
    client: Client, staff_user, fake_ollama
) -> None:
    # Before: check_providers said "error" and the dashboard "last call failed".
    make_provider("ollama", kind="ollama", base_url=fake_ollama.base_url, model="mistral:latest")
    fake_ollama.script("ok", "server_error")  # the models list answers, the generation fails
    out = StringIO()

    with pytest.raises(CommandError, match="ollama, the first provider by priority, is down: 500"):
        call_command("check_providers", stdout=out)

    client.force_login(staff_user)
    [shown] = client.get("/").context["providers"]
    assert (shown.status, shown.detail) == ("down", "500 llama runner process has terminated: signal: killed")
    row = next(line for line in out.getvalue().splitlines() if " ollama " in line)
    assert " down " in row and row.endswith("500 llama runner process has terminated: signal: killed")


def test_a_provider_cooling_down_reads_cooling_for_one_provider_as_for_all(fake_openai) -> None:
    provider = make_provider("local", base_url=fake_openai.base_url)
    health.record_transient_failure("local", failures_before_cooldown=1, cooldown_seconds=60)

    one = provider_status(provider=provider)

    assert one.status == ProviderState.COOLING
    assert (one.failures, one.last_call_at) == (1, None)
    # The same, but for the seconds left, which run down while the local host is probed.
    [all_] = provider_statuses()
    assert replace(all_, cooldown_s=None) == replace(one, cooldown_s=None)


def test_the_dashboard_the_api_and_the_admin_give_the_same_fix_sentence(
    client: Client, staff_user, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(UNSET_KEY, raising=False)
    url = closed_port_url()
    make_provider("ollama", kind="ollama", base_url=url, model="mistral:latest", priority=1)
    make_provider("claude", kind="anthropic", base_url=url, is_local=False, priority=2, api_key_env=UNSET_KEY)
    client.force_login(staff_user)
    refused = (
        f"Ollama at {url} refused the connection: start `ollama serve`, set OLLAMA_HOST, or run `bin/run --local-model`"
    )
    no_key = f"{UNSET_KEY} is not set: put it in .env or the environment of the worker"

    dashboard = [(p.name, p.status, p.fix) for p in client.get("/").context["providers"]]
    api = [(p["name"], p["health"]["status"], p["health"]["fix"]) for p in client.get("/api/v1/providers/").json()]
    admin = client.get("/admin/routing/provider/").content.decode()

    assert dashboard == api == [("ollama", "down", refused), ("claude", "no key", no_key)]
    assert f"down: {refused}" in admin
    assert f"no key: {no_key}" in admin
