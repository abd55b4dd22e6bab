"""Repeated wrong passwords lock that username out from that address (django-axes), on both login forms."""

import datetime as dt

import pytest
from django.contrib.auth import get_user_model

PASSWORD = "the-right-password-42"


@pytest.fixture
def dana(db):
    return get_user_model().objects.create_user("dana", "dana@example.com", PASSWORD, is_staff=True)


def log_in(client, url: str, password: str, address: str = "203.0.113.7"):
    return client.post(url, {"username": "dana", "password": password}, REMOTE_ADDR=address)


@pytest.mark.parametrize("url", ["/login/", "/admin/login/"])
def test_thirty_wrong_passwords_then_the_right_one_does_not_log_in(client, dana, url):
    for _ in range(30):
        log_in(client, url, "guess")

    response = log_in(client, url, PASSWORD)

    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_the_lock_comes_after_five_failures(client, dana):
    statuses = [log_in(client, "/login/", "guess").status_code for _ in range(6)]

    assert statuses == [200, 200, 200, 200, 429, 429]


def test_four_wrong_passwords_then_the_right_one_logs_in(client, dana):
    for _ in range(4):
        log_in(client, "/login/", "guess")

    response = log_in(client, "/login/", PASSWORD)

    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(dana.pk)


def test_a_lock_holds_that_username_from_that_address_only(client, dana):
    for _ in range(5):
        log_in(client, "/login/", "guess")

    response = log_in(client, "/login/", PASSWORD, address="198.51.100.9")

    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(dana.pk)


def test_the_lock_ends_after_the_cool_off(client, dana, settings):
    for _ in range(5):
        log_in(client, "/login/", "guess")
    assert log_in(client, "/login/", PASSWORD).status_code == 429

    settings.AXES_COOLOFF_TIME = dt.timedelta(0)
    response = log_in(client, "/login/", PASSWORD)

    assert response.status_code == 302
