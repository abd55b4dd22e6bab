"""The API throttles each user (and anonymous callers per address): over the rate, a 429 with Retry-After."""

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from rest_framework.settings import api_settings
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from agents.models import AgentRun
from routing.health import shared
from tests.factories import agents_create
from tests.redis_server import throwaway_redis

__all__ = ["throwaway_redis"]

# An anonymous caller counts against both scopes, each keyed by the address.
ANON_KEYS = ["throttle_anon_127.0.0.1", "throttle_user_127.0.0.1"]


@pytest.fixture
def low_rates(settings, monkeypatch):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"user": "3/minute", "anon": "2/minute"},
    }
    # DRF copies the rates into a class attribute once, at import; overriding the setting reloads
    # api_settings but not that copy, so point the class at the overridden rates for this test.
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", api_settings.DEFAULT_THROTTLE_RATES)
    cache.delete_many(ANON_KEYS)
    yield
    cache.delete_many(ANON_KEYS)


def client_for(username: str) -> APIClient:
    user = get_user_model().objects.create_user(username)
    cache.delete(f"throttle_user_{user.pk}")  # a fresh test database reuses ids; the cache outlives it
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_a_user_over_the_rate_gets_a_429_with_retry_after(db, low_rates):
    api = client_for("sam")

    statuses = [api.get("/api/v1/runs/").status_code for _ in range(3)]
    response = api.get("/api/v1/runs/")

    assert statuses == [200, 200, 200]
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60


def test_each_user_has_a_rate_of_their_own(db, low_rates):
    sam = client_for("sam")
    for _ in range(4):
        sam.get("/api/v1/runs/")

    assert client_for("kim").get("/api/v1/runs/").status_code == 200


def test_anonymous_callers_are_throttled_too(db, low_rates):
    api = APIClient()  # the schema is the API's one page open to anonymous callers

    statuses = [api.get("/api/schema/").status_code for _ in range(2)]
    response = api.get("/api/schema/")

    assert statuses == [200, 200]
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60


@pytest.mark.django_db(transaction=True)
def test_a_submit_still_answers_201_when_the_throttles_cache_is_down(settings, throwaway_redis):
    agents_create()
    api = client_for("sam")
    throwaway_redis.stop()  # the cache that counts requests is unreachable
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": throwaway_redis.url}}

    try:
        response = api.post("/api/v1/runs/", {"agent": "marcus", "prompt": "A health endpoint."}, format="json")
        again = api.post("/api/v1/runs/", {"agent": "marcus", "prompt": "Another."}, format="json")
    finally:
        shared.down_until = 0.0  # the next test starts with the cache trusted again

    assert (response.status_code, again.status_code) == (201, 201), response.content
    assert set(AgentRun.objects.values_list("status", flat=True)) == {"queued"}


def test_an_anonymous_caller_cannot_reset_the_count_with_x_forwarded_for(db, low_rates):
    # DRF counts per X-Forwarded-For unless NUM_PROXIES is set: a new header value was a new count.
    api = APIClient()
    for _ in range(2):
        api.get("/api/schema/")

    response = api.get("/api/schema/", HTTP_X_FORWARDED_FOR="203.0.113.7")

    assert response.status_code == 429
