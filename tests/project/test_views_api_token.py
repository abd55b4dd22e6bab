"""The "Your API token" page: a user makes, replaces and revokes their own token, and nobody else's."""

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.agents.views_helpers import make_user

pytestmark = pytest.mark.django_db
URL = reverse("api_token")


@pytest.fixture
def ana(client):
    user = make_user("ana")
    client.force_login(user)
    return user


def api_status(key: str) -> int:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return api.get("/api/v1/runs/").status_code


def test_it_sends_anonymous_visitors_to_log_in(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_it_says_when_the_user_has_no_token(client, ana):
    response = client.get(URL)
    assert response.status_code == 200
    assert b"You have no token yet." in response.content
    assert b"Create a token" in response.content


def test_it_creates_a_token_that_the_api_accepts_and_shows_it_once(client, ana):
    response = client.post(URL, {"action": "create"})
    assert response.status_code == 200
    token = Token.objects.get(user=ana)
    assert token.key.encode() in response.content
    assert "no-store" in response["Cache-Control"]
    assert api_status(token.key) == 200
    again = client.get(URL)
    assert token.key.encode() not in again.content
    assert b"You have a token, created" in again.content


def test_it_replaces_the_token_and_the_old_one_stops_working(client, ana):
    old = Token.objects.create(user=ana).key
    client.post(URL, {"action": "create"})
    new = Token.objects.get(user=ana).key
    assert new != old
    assert (api_status(old), api_status(new)) == (401, 200)


def test_it_revokes_the_token(client, ana):
    key = Token.objects.create(user=ana).key
    response = client.post(URL, {"action": "revoke"}, follow=True)
    assert not Token.objects.filter(user=ana).exists()
    assert b"Your API token is revoked" in response.content
    assert api_status(key) == 401


def test_it_leaves_other_users_tokens_alone(client, ana):
    bob_key = Token.objects.create(user=make_user("bob")).key
    client.post(URL, {"action": "revoke"})
    client.post(URL, {"action": "create"})
    assert Token.objects.get(user__username="bob").key == bob_key


def test_it_refuses_a_post_without_the_csrf_token():
    client = Client(enforce_csrf_checks=True)
    user = make_user("ana")
    client.force_login(user)
    response = client.post(URL, {"action": "create"})
    assert response.status_code == 403
    assert not Token.objects.filter(user=user).exists()


def test_it_answers_an_unknown_action_with_an_error_and_changes_nothing(client, ana):
    key = Token.objects.create(user=ana).key
    response = client.post(URL, {"action": "drop-table"}, follow=True)
    assert response.status_code == 200
    assert b"Choose create or revoke." in response.content
    assert Token.objects.get(user=ana).key == key


def test_the_navigation_links_to_it(client, ana):
    assert URL.encode() in client.get(reverse("home")).content
