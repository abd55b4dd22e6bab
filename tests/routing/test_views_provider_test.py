"""Issue 11 item 1: the dashboard's "Test" button runs check_providers' check for one provider.

Staff only (the test is a real call, billed by a cloud provider), POST with CSRF, metered in the
ledger like the command's; with script the result comes back as a fragment, without it as a
message on the dashboard.
"""

from __future__ import annotations

import re
import socket

import pytest
from django.test import Client
from django.urls import reverse

from routing.models import LedgerEntry
from tests.factories import user_create
from tests.routing.conftest_router import fresh_routing, make_provider  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_routing")]
FETCH = {"HTTP_X_REQUESTED_WITH": "fetch"}


def url(name: str = "ollama") -> str:
    return reverse("routing:provider_test", args=[name])


@pytest.fixture
def staff(client: Client):
    user = user_create("boss", staff=True)
    client.force_login(user)
    return user


@pytest.fixture
def ollama(fake_ollama):
    make_provider("ollama", kind="ollama", base_url=fake_ollama.base_url, model="mistral:latest")
    return fake_ollama


def test_it_shows_tokens_per_second_in_place(client, staff, ollama) -> None:
    response = client.post(url(), **FETCH)

    assert response.status_code == 200
    html = response.content.decode()
    assert html.startswith('<output class="test-result good" id="test-ollama"')
    assert re.search(r"ollama: up, [\d.]+ tokens/s, \d+ tokens in \d+ ms from mistral:latest", html)


def test_it_meters_the_test_call_in_the_ledger_as_check_providers_does(client, staff, ollama) -> None:
    client.post(url(), **FETCH)

    entry = LedgerEntry.objects.get()
    assert (entry.agent, entry.reason, entry.outcome, entry.user_id) == (
        "check_providers",
        "check_providers",
        "success",
        staff.pk,
    )
    assert [request.path for request in ollama.requests] == ["/api/tags", "/api/chat"]


def test_without_script_it_redirects_to_the_dashboard_with_the_result(client, staff, ollama) -> None:
    response = client.post(url(), follow=True)

    assert response.redirect_chain == [(reverse("home") + "#providers", 302)]
    assert re.search(r"ollama: up, [\d.]+ tokens/s", response.content.decode())


def test_a_host_without_the_model_shows_the_pull_to_run(client, staff, ollama) -> None:
    ollama.models = ["qwen2.5-coder:7b"]

    html = client.post(url(), **FETCH).content.decode()

    assert 'class="test-result bad"' in html
    assert "ollama: down: mistral:latest is not pulled on the host: run `ollama pull mistral:latest` on it" in html


def test_a_closed_port_shows_refused_with_the_url_and_calls_nothing(client, staff) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    make_provider("gemma", base_url=closed)

    html = client.post(url("gemma"), **FETCH).content.decode()

    assert (
        f"gemma: down: the OpenAI-compatible server at {closed} refused the connection: "
        "start it with `bin/run --local-model`"
    ) in html
    assert not LedgerEntry.objects.exists()  # the model list failed: no generation was tried


def test_a_cloud_provider_without_its_key_is_not_called(client, staff, fake_openai, monkeypatch) -> None:
    monkeypatch.delenv("SWITCHYARD_TEST_UNSET_KEY", raising=False)
    make_provider(
        "openai", kind="openai", base_url=fake_openai.base_url, is_local=False, api_key_env="SWITCHYARD_TEST_UNSET_KEY"
    )

    html = client.post(url("openai"), **FETCH).content.decode()

    assert (
        "openai: no key: SWITCHYARD_TEST_UNSET_KEY is not set: put it in .env or the environment of the worker" in html
    )
    assert fake_openai.requests == []


def test_it_is_for_staff_only(client, ollama) -> None:
    client.force_login(user_create("ana"))

    assert client.post(url(), **FETCH).status_code == 403
    assert ollama.requests == []


def test_it_sends_anonymous_visitors_to_log_in(client, ollama) -> None:
    response = client.post(url())

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_it_takes_only_a_post_with_the_csrf_token(staff, ollama) -> None:
    guarded = Client(enforce_csrf_checks=True)
    guarded.force_login(staff)

    assert guarded.get(url()).status_code == 405
    assert guarded.post(url(), **FETCH).status_code == 403
    assert ollama.requests == []


def test_an_unknown_provider_is_a_404(client, staff) -> None:
    assert client.post(url("nope"), **FETCH).status_code == 404
