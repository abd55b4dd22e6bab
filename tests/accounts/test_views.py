"""The "API keys" page: a user creates (shown once), lists and revokes their own keys, and nobody else's."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import ApiKey
from accounts.services import key_create
from tests.agents.views_helpers import make_user

pytestmark = pytest.mark.django_db
URL = reverse("api_keys")


@pytest.fixture
def ana(client):
    user = make_user("ana")
    client.force_login(user)
    return user


def api_status(key: str) -> int:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return api.get("/api/v1/runs/").status_code


def test_it_sends_anonymous_visitors_to_log_in(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_old_address_and_the_navigation_lead_to_it(client, ana):
    assert client.get("/account/token/")["Location"] == URL
    assert URL.encode() in client.get(reverse("home")).content


def test_it_says_when_the_user_has_no_keys(client, ana):
    response = client.get(URL)
    assert b"You have no API keys yet." in response.content


def test_it_creates_a_key_that_the_api_accepts_and_shows_it_once(client, ana):
    response = client.post(URL, {"name": "laptop", "expires_in": "30", "allowed_models": "gemma, gpt-4o"})

    assert response.status_code == 200
    secret = response.context["new_key"].secret
    assert secret.encode() in response.content
    assert "no-store" in response["Cache-Control"]
    assert api_status(secret) == 200
    key = ApiKey.objects.get(user=ana)
    assert (key.name, key.allowed_models) == ("laptop", ["gemma", "gpt-4o"])
    assert key.expires_at is not None
    again = client.get(URL).content
    assert secret.encode() not in again
    assert key.prefix.encode() in again and b"laptop" in again and b"gemma, gpt-4o" in again


def test_a_key_may_be_created_with_lower_rate_limits_and_the_list_shows_them(client, ana, settings):
    settings.SWITCHYARD_KEY_RPM, settings.SWITCHYARD_KEY_TPM = 120, 200000
    client.post(URL, {"name": "ci", "requests_per_minute": "30", "tokens_per_minute": "5000"})
    client.post(URL, {"name": "laptop"})

    page = client.get(URL).content.decode()

    assert "30 requests, 5000 tokens" in page
    assert "120 requests, 200000 tokens" in page


def test_a_rate_limit_above_the_servers_default_is_a_form_error(client, ana, settings):
    settings.SWITCHYARD_KEY_RPM = 120

    response = client.post(URL, {"name": "ci", "requests_per_minute": "121"})

    assert "At most the server&#x27;s default, 120" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_a_create_without_a_name_is_a_form_error(client, ana):
    response = client.post(URL, {"name": ""})
    assert response.status_code == 200
    assert response.context["form"].errors["name"]
    assert not ApiKey.objects.exists()


def test_it_revokes_a_key_and_it_stops_working(client, ana):
    created = key_create(user=ana, name="laptop")

    response = client.post(reverse("api_key_revoke", args=[created.key.pk]), follow=True)

    assert b"is revoked" in response.content
    assert api_status(created.secret) == 401
    assert b"You have no API keys yet." in response.content


def test_it_cannot_revoke_another_users_key(client, ana):
    bob_key = key_create(user=make_user("bob"), name="bob's")

    response = client.post(reverse("api_key_revoke", args=[bob_key.key.pk]))

    assert response.status_code == 404
    assert api_status(bob_key.secret) == 200
    assert b"bob&#x27;s" not in client.get(URL).content


def test_it_revokes_the_older_token(client, ana):
    token = Token.objects.create(user=ana)
    assert b"older API token" in client.get(URL).content

    client.post(reverse("api_token_revoke"))

    assert api_status(token.key) == 401
    assert not Token.objects.filter(user=ana).exists()


def test_it_refuses_a_post_without_the_csrf_token():
    client = Client(enforce_csrf_checks=True)
    user = make_user("ana")
    client.force_login(user)
    assert client.post(URL, {"name": "laptop"}).status_code == 403
    created = key_create(user=user, name="kept")
    assert client.post(reverse("api_key_revoke", args=[created.key.pk])).status_code == 403
    assert ApiKey.objects.get().revoked_at is None


def test_a_key_made_with_a_monthly_cloud_budget_keeps_it(client, ana):
    client.post(URL, {"name": "ci", "monthly_cloud_budget_usd": "5"})

    assert ApiKey.objects.get(user=ana).monthly_cloud_budget_usd == 5
    assert b"<td>$5.00 a month</td>" in client.get(URL).content


def test_a_negative_budget_is_a_form_error(client, ana):
    response = client.post(URL, {"name": "ci", "monthly_cloud_budget_usd": "-1"})

    assert response.context["form"].errors["monthly_cloud_budget_usd"]
    assert not ApiKey.objects.exists()


def test_a_rate_limit_too_large_to_store_is_a_form_error_when_the_server_sets_no_limit(client, ana, settings):
    settings.SWITCHYARD_KEY_RPM, settings.SWITCHYARD_KEY_TPM = 0, 0

    response = client.post(URL, {"name": "ci", "requests_per_minute": str(2**40)})

    assert response.status_code == 200
    assert "At most 2147483647" in response.content.decode()
    assert not ApiKey.objects.exists()
