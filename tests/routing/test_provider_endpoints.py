"""Where a provider's key is sent: a right of its own, and never an internal address the operator did not allow.

Issue 10 item 2: changing a provider's base URL or key variable needs `change_provider_endpoint`
(superusers have it), not "change provider"; a base URL whose host resolves to a loopback,
private, link-local (cloud metadata), unspecified or multicast address is refused unless listed
in SWITCHYARD_ALLOWED_PROVIDER_HOSTS (OLLAMA_HOST's host always is), when saved and at call time.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.test import Client

from routing.models import Provider
from routing.providers import get_adapter
from routing.providers.base import ChatRequest, PermanentError, ProviderConfig
from routing.router import NoProviderAvailable, route
from routing.rules import provider_endpoint_refusal
from tests.routing.configs import LOCAL, ROUTING, load, snapshot, write_configs
from tests.routing.conftest_router import ask, fresh_routing, make_provider

__all__ = ["fresh_routing"]  # a fixture, used below

pytestmark = pytest.mark.django_db

SETTING = "SWITCHYARD_ALLOWED_PROVIDER_HOSTS"


@pytest.fixture
def allowed(settings) -> list[str]:
    """Nothing internal allowed but the shared Ollama host (the shipped default)."""
    settings.OLLAMA_HOST = "http://localhost:11434"
    settings.SWITCHYARD_ALLOWED_PROVIDER_HOSTS = []
    return settings.SWITCHYARD_ALLOWED_PROVIDER_HOSTS


def refused(address: str, kind: str) -> str:
    return (
        f"the host resolves to {address}, {kind} address: providers on internal addresses are refused "
        f"unless their host is listed in {SETTING}"
    )


# -- the address rule ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "address", "kind"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "a link-local (cloud metadata)"),
        ("http://169.254.10.1", "169.254.10.1", "a link-local"),
        ("http://127.0.0.1:5432", "127.0.0.1", "a loopback"),
        ("http://localhost:6379", "127.0.0.1", "a loopback"),  # resolved, not judged by its name
        ("http://[::1]:8080", "::1", "a loopback"),
        ("http://[::ffff:127.0.0.1]:8080", "127.0.0.1", "a loopback"),  # IPv4 inside IPv6
        ("http://10.1.2.3:11434", "10.1.2.3", "a private"),
        ("http://172.16.0.9", "172.16.0.9", "a private"),
        ("http://192.168.1.20:8080", "192.168.1.20", "a private"),
        ("http://[fd00::5]:11434", "fd00::5", "a private"),
        ("http://[fe80::1]", "fe80::1", "a link-local"),
        ("http://0.0.0.0:8080", "0.0.0.0", "an unspecified"),  # noqa: S104 - an address refused, not bound
        ("http://224.0.0.1", "224.0.0.1", "a multicast"),
        ("http://100.64.0.7:11434", "100.64.0.7", "a non-public"),  # carrier-grade NAT (Tailscale)
    ],
)
def test_internal_addresses_are_refused_with_the_address_and_the_setting(allowed, url, address, kind) -> None:
    assert provider_endpoint_refusal(url) == refused(address, kind)


@pytest.mark.parametrize(
    "url", ["https://api.anthropic.com", "https://8.8.8.8", "http://[2606:4700:4700::1111]", "not a url"]
)
def test_public_addresses_and_hosts_that_do_not_resolve_pass(allowed, url) -> None:
    # api.anthropic.com does not resolve here (no DNS): the call itself fails, and is checked again then.
    assert provider_endpoint_refusal(url) == ""


def test_the_shared_ollama_host_is_allowed_on_its_own_port_only(allowed) -> None:
    assert provider_endpoint_refusal("http://localhost:11434") == ""
    assert provider_endpoint_refusal("http://localhost:5432") == refused("127.0.0.1", "a loopback")


def test_OLLAMA_HOST_wherever_it_points_is_allowed(allowed, settings) -> None:
    settings.OLLAMA_HOST = "http://192.168.1.20:11434"

    assert provider_endpoint_refusal("http://192.168.1.20:11434/") == ""
    assert provider_endpoint_refusal("http://192.168.1.20:22") == refused("192.168.1.20", "a private")


@pytest.mark.parametrize(
    ("entry", "url"),
    [
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),  # bin/run --local-model
        ("127.0.0.1", "http://127.0.0.1:31337"),  # any port
        ("10.0.0.0/8", "http://10.9.8.7:11434"),  # a network
        ("fd00::/8", "http://[fd00::5]:11434"),
        ("[::1]:8080", "http://[::1]:8080"),
        ("local-model:8080", "http://local-model:8080"),  # a name, as docker compose calls a service
        ("GPU-BOX.LAN", "http://gpu-box.lan:8000"),
    ],
)
def test_the_operator_allows_hosts_addresses_and_networks(allowed, entry, url) -> None:
    allowed.append(entry)

    assert provider_endpoint_refusal(url) == ""


def test_an_allowed_port_does_not_open_the_others(allowed) -> None:
    allowed.append("127.0.0.1:8080")

    assert provider_endpoint_refusal("http://127.0.0.1:5432") == refused("127.0.0.1", "a loopback")


# -- when saved: the model (admin, loader) -------------------------------------------------------


def test_a_provider_pointed_at_the_metadata_address_does_not_validate(allowed) -> None:
    provider = Provider(
        name="meta", kind="openai", base_url="http://169.254.169.254", priority=5, default_model="m", api_key_env=""
    )

    with pytest.raises(ValidationError) as raised:
        provider.full_clean()

    assert raised.value.message_dict["base_url"] == [
        f"Refused: {refused('169.254.169.254', 'a link-local (cloud metadata)')}."
    ]


def test_a_stored_internal_url_does_not_block_edits_of_other_fields(allowed) -> None:
    provider = make_provider("lan", base_url="http://10.1.2.3:11434")
    provider.priority = 7

    provider.full_clean()  # the URL is unchanged: checked again at call time, not here


def test_load_routing_refuses_an_internal_base_url(allowed, tmp_path) -> None:
    local = LOCAL.replace("${OLLAMA_HOST:-http://localhost:11434}", "http://127.0.0.1:6379")
    before = snapshot()

    with pytest.raises(CommandError) as raised:
        load(*write_configs(tmp_path, routing=ROUTING, local=local))

    assert f"ollama.base_url: Refused: {refused('127.0.0.1', 'a loopback')}." in str(raised.value)
    assert snapshot() == before


def test_load_routing_takes_the_shipped_ollama_host(allowed, tmp_path) -> None:
    load(*write_configs(tmp_path))

    assert Provider.objects.get(name="ollama").base_url == "http://localhost:11434"


# -- at call time --------------------------------------------------------------------------------


def test_an_adapter_refuses_to_call_an_internal_address_that_is_no_longer_allowed(allowed, fake_openai) -> None:
    config = ProviderConfig(name="lan", kind="openai_compatible", base_url=fake_openai.base_url, is_local=True)

    with pytest.raises(PermanentError) as raised:
        get_adapter(config).chat(ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}]))

    assert raised.value.message == refused("127.0.0.1", "a loopback")
    assert fake_openai.requests == []


def test_the_router_skips_a_stored_provider_on_an_internal_address_and_says_why(
    fresh_routing, fake_openai, settings
) -> None:
    make_provider("lan", base_url=fake_openai.base_url, model="gpt-4o-mini")  # saved while allowed
    settings.SWITCHYARD_ALLOWED_PROVIDER_HOSTS = []  # then the operator took it out

    with pytest.raises(NoProviderAvailable) as raised:
        route(ask())

    assert raised.value.reason == (
        f"no provider could take the request: lan: {refused('127.0.0.1', 'a loopback')} (permanent)"
    )
    assert fake_openai.requests == []


# -- who may change the endpoint -----------------------------------------------------------------


@pytest.fixture
def operator(db) -> Client:
    """Staff with every provider right except the endpoint one: what the issue's user had."""
    user = get_user_model().objects.create_user("sam", password="x", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="routing", content_type__model="provider").exclude(
            codename="change_provider_endpoint"
        )
    )
    client = Client()
    client.force_login(user)
    return client


def change_form(provider: Provider, **fields: str) -> dict[str, str]:
    data = {
        "name": provider.name,
        "kind": provider.kind,
        "base_url": provider.base_url,
        "priority": str(provider.priority),
        "enabled": "on",
        "api_key_env": provider.api_key_env,
        "default_model": provider.default_model,
        "capabilities": "",
        "connect_timeout_s": "5",
        "request_timeout_s": "120",
        "models-TOTAL_FORMS": "1",
        "models-INITIAL_FORMS": "1",
        "models-0-id": str(provider.models.get().pk),
        "models-0-provider": str(provider.pk),
        "models-0-name": provider.default_model,
        "models-0-context_window": "8192",
    }
    return {**data, **fields}


def test_the_endpoint_permission_exists_and_superusers_have_it(staff_user) -> None:
    assert Permission.objects.filter(codename="change_provider_endpoint", content_type__app_label="routing").exists()
    assert staff_user.has_perm("routing.change_provider_endpoint")


def test_change_provider_alone_shows_the_url_and_key_variable_read_only(operator: Client, providers) -> None:
    anthropic = providers["anthropic"]

    response = operator.get(f"/admin/routing/provider/{anthropic.pk}/change/")

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert "base_url" not in form.fields and "api_key_env" not in form.fields
    assert "priority" in form.fields  # the rest stays editable
    assert "https://api.anthropic.com" in response.content.decode()  # shown, read-only


def test_a_crafted_post_cannot_change_the_url_or_key_variable_without_the_permission(
    operator: Client, providers
) -> None:
    anthropic = providers["anthropic"]

    response = operator.post(
        f"/admin/routing/provider/{anthropic.pk}/change/",
        change_form(anthropic, base_url="https://evil.example", api_key_env="OPENAI_API_KEY", priority="8"),
    )

    assert response.status_code == 302
    anthropic.refresh_from_db()
    assert (anthropic.base_url, anthropic.api_key_env, anthropic.priority) == (
        "https://api.anthropic.com",
        "ANTHROPIC_API_KEY",
        8,
    )


def test_adding_a_provider_needs_the_endpoint_permission(operator: Client) -> None:
    assert operator.get("/admin/routing/provider/add/").status_code == 403


def test_with_the_permission_the_url_can_be_changed(client: Client, staff_user, providers) -> None:
    client.force_login(staff_user)
    anthropic = providers["anthropic"]

    response = client.post(
        f"/admin/routing/provider/{anthropic.pk}/change/",
        change_form(anthropic, base_url="https://llm-proxy.example.org"),
    )

    assert response.status_code == 302
    anthropic.refresh_from_db()
    assert anthropic.base_url == "https://llm-proxy.example.org"


def test_with_the_permission_an_internal_url_is_still_refused(client: Client, staff_user, providers, allowed) -> None:
    client.force_login(staff_user)
    anthropic = providers["anthropic"]

    response = client.post(
        f"/admin/routing/provider/{anthropic.pk}/change/",
        change_form(anthropic, base_url="http://169.254.169.254"),
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["base_url"] == [
        f"Refused: {refused('169.254.169.254', 'a link-local (cloud metadata)')}."
    ]
    anthropic.refresh_from_db()
    assert anthropic.base_url == "https://api.anthropic.com"
