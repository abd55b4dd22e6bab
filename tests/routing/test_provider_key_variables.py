"""A provider reads its key only from a variable the operator allowed (SWITCHYARD_API_KEY_ENV_ALLOWED).

Issue 10 item 1: a staff user set `api_key_env` to SECRET_KEY and DATABASE_URL, pointed the base
URL at their own server, and received both on the next cloud call. The rule is one function in
routing/rules.py, used by the model's clean (so the admin and `load_routing`) and at call time.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.test import Client

from routing.models import Provider
from routing.providers import get_adapter
from routing.providers.base import ChatRequest, PermanentError, ProviderConfig, api_key_present
from routing.router import NoProviderAvailable, route
from routing.rules import api_key_env_allowed
from tests.routing.configs import LOCAL, ROUTING, load, snapshot, write_configs
from tests.routing.conftest_router import ask, fresh_routing, make_provider

__all__ = ["fresh_routing"]  # a fixture, used below

pytestmark = pytest.mark.django_db

SECRET = "django-insecure-THE-REAL-SECRET-KEY-4f1c9e0b"
SETTING = "SWITCHYARD_API_KEY_ENV_ALLOWED"


@pytest.fixture(autouse=True)
def shipped_default(settings) -> None:
    """The default a deployment gets: only variables named like the shipped config's *_API_KEY."""
    settings.SWITCHYARD_API_KEY_ENV_ALLOWED = ["*_API_KEY"]


@pytest.fixture
def secret_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_KEY", SECRET)
    monkeypatch.setenv("DATABASE_URL_COPY", "postgres://app:db-password@db/switchyard")


def provider_row(**fields: object) -> Provider:
    values = {
        "name": "claude",
        "kind": "anthropic",
        "base_url": "https://api.anthropic.com",
        "priority": 5,
        "default_model": "claude-sonnet-4-5",
        "api_key_env": "ANTHROPIC_API_KEY",
    }
    return Provider(**{**values, **fields})


# -- the rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("ANTHROPIC_API_KEY", True),
        ("OPENAI_API_KEY", True),
        ("TEAM_PROXY_API_KEY", True),
        ("SECRET_KEY", False),
        ("DATABASE_URL", False),
        ("EMAIL_HOST_PASSWORD", False),
        ("API_KEY", False),  # *_API_KEY wants something before the underscore
    ],
)
def test_only_variables_matching_the_allowed_patterns_may_hold_a_key(name, allowed) -> None:
    assert api_key_env_allowed(name) is allowed


def test_the_operator_lists_names_or_patterns_of_their_own(settings) -> None:
    settings.SWITCHYARD_API_KEY_ENV_ALLOWED = ["LLM_PROXY_TOKEN", "VENDOR_*_KEY"]

    assert [api_key_env_allowed(n) for n in ("LLM_PROXY_TOKEN", "VENDOR_X_KEY", "ANTHROPIC_API_KEY")] == [
        True,
        True,
        False,
    ]


# -- when saved: the model, the admin, the loader ------------------------------------------------


@pytest.mark.parametrize("name", ["SECRET_KEY", "DATABASE_URL"])
def test_a_provider_naming_a_variable_that_is_not_allowed_does_not_validate(name) -> None:
    with pytest.raises(ValidationError) as raised:
        provider_row(api_key_env=name).full_clean()

    assert raised.value.message_dict["api_key_env"] == [f"Not an allowed API key variable: {SETTING} allows *_API_KEY."]


def test_a_provider_with_an_allowed_variable_validates() -> None:
    provider_row(api_key_env="ANTHROPIC_API_KEY").full_clean()


def test_the_admin_refuses_to_save_a_provider_reading_SECRET_KEY(client: Client, staff_user) -> None:
    client.force_login(staff_user)
    data = {
        "name": "evil",
        "kind": "openai",
        "base_url": "https://llm-proxy.example.org",
        "priority": "9",
        "enabled": "on",
        "api_key_env": "SECRET_KEY",
        "default_model": "m",
        "capabilities": "",
        "connect_timeout_s": "5",
        "request_timeout_s": "120",
        "models-TOTAL_FORMS": "1",
        "models-INITIAL_FORMS": "0",
        "models-0-name": "m",
        "models-0-context_window": "8192",
    }

    response = client.post("/admin/routing/provider/add/", data)

    assert response.status_code == 200  # the form again, with the error
    assert response.context["adminform"].form.errors["api_key_env"] == [
        f"Not an allowed API key variable: {SETTING} allows *_API_KEY."
    ]
    assert not Provider.objects.filter(name="evil").exists()


def test_load_routing_refuses_a_provider_reading_a_variable_that_is_not_allowed(tmp_path) -> None:
    routing = ROUTING.replace("  kind: anthropic\n", "  kind: anthropic\n  api_key_env: DATABASE_URL\n", 1)
    before = snapshot()

    with pytest.raises(CommandError) as raised:
        load(*write_configs(tmp_path, routing=routing, local=LOCAL))

    assert f"claude.api_key_env: Not an allowed API key variable: {SETTING} allows *_API_KEY." in str(raised.value)
    assert snapshot() == before


# -- at call time: a row stored before the rule (or under other settings) ------------------------


def test_an_adapter_never_reads_a_variable_that_is_not_allowed(fake_anthropic, secret_in_environment) -> None:
    config = ProviderConfig(
        name="claude", kind="anthropic", base_url=fake_anthropic.base_url, is_local=False, api_key_env="SECRET_KEY"
    )

    with pytest.raises(PermanentError) as raised:
        get_adapter(config).chat(ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}]))

    assert raised.value.message == (
        f"no key (SECRET_KEY is not an allowed API key variable ({SETTING} allows *_API_KEY))"
    )
    assert fake_anthropic.requests == []  # nothing was sent, let alone the secret


def test_a_stored_provider_naming_SECRET_KEY_is_never_called_and_says_why(
    fresh_routing, fake_openai, secret_in_environment
) -> None:
    # Stored before this rule existed: the row bypasses validation.
    make_provider("proxy", kind="openai", base_url=fake_openai.base_url, is_local=False, model="gpt-4o-mini")
    Provider.objects.filter(name="proxy").update(api_key_env="SECRET_KEY")

    with pytest.raises(NoProviderAvailable) as raised:
        route(ask())

    assert raised.value.reason == (
        "no provider could take the request: proxy: no key "
        f"(SECRET_KEY is not an allowed API key variable ({SETTING} allows *_API_KEY))"
    )
    assert fake_openai.requests == []
    assert api_key_present("SECRET_KEY") is False  # set, but not a key variable


def test_the_admin_shows_set_or_not_set_only_for_allowed_variables(
    client: Client, staff_user, providers, secret_in_environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-present")
    Provider.objects.filter(name="openai").update(api_key_env="SECRET_KEY")
    client.force_login(staff_user)

    response = client.get("/admin/routing/provider/")

    admin_view = response.context["cl"].model_admin
    assert admin_view.api_key_set(providers["anthropic"]) is True
    assert admin_view.api_key_set(Provider.objects.get(name="openai")) is None  # not a key variable: not looked at
    assert f"SECRET_KEY is not an allowed API key variable ({SETTING} allows *_API_KEY)" in response.content.decode()
    assert SECRET not in response.content.decode()
