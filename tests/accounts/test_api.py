"""/api/v1/keys/: your own keys, listed, created (shown once) and revoked; and the REST API's
authentication by those keys (Bearer or Token), refused with the API's error shape."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import ApiKey
from accounts.services import key_create
from tests.agents.views_helpers import make_user

pytestmark = pytest.mark.django_db
URL = "/api/v1/keys/"


def api(key: str, word: str = "Bearer") -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{word} {key}")
    return client


@pytest.fixture
def ana():
    return make_user("ana")


@pytest.fixture
def ana_key(ana) -> str:
    return key_create(user=ana, name="laptop").secret


def test_a_key_authenticates_the_rest_api_with_bearer_or_token(ana_key):
    assert api(ana_key).get("/api/v1/runs/").status_code == 200
    assert api(ana_key, "Token").get("/api/v1/runs/").status_code == 200


@pytest.mark.parametrize("change", [{"revoked_at": timezone.now()}, {"expires_at": timezone.now()}])
def test_a_revoked_or_expired_key_is_a_401_in_the_apis_error_shape(ana_key, change):
    ApiKey.objects.update(**change)

    response = api(ana_key).get("/api/v1/runs/")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_an_older_drf_token_still_works_on_the_rest_api(ana):
    assert api(Token.objects.create(user=ana).key, "Token").get("/api/v1/runs/").status_code == 200


def test_it_creates_a_key_shown_once_and_lists_it_without_the_secret(ana_key):
    response = api(ana_key).post(
        URL, {"name": "ci", "expires_at": "2099-01-01T00:00:00Z", "allowed_models": ["gemma"]}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert body["key"].startswith(body["prefix"] + "_")
    assert (body["name"], body["allowed_models"]) == ("ci", ["gemma"])
    assert body["expires_at"] == "2099-01-01T00:00:00.000000Z"
    assert api(body["key"]).get("/api/v1/runs/").status_code == 200
    listed = api(ana_key).get(URL)
    assert [key["name"] for key in listed.json()] == ["ci", "laptop"]
    assert body["key"] not in listed.content.decode()
    assert "key" not in listed.json()[0]


def test_a_bad_create_is_a_400_naming_the_field(ana_key):
    response = api(ana_key).post(URL, {"name": "ci", "expires_at": "2001-01-01T00:00:00Z"}, format="json")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["expires_at"]
    assert ApiKey.objects.count() == 1


def test_it_revokes_your_own_key_and_it_stops_working(ana, ana_key):
    other = key_create(user=ana, name="other")

    response = api(ana_key).delete(f"{URL}{other.key.pk}/")

    assert response.status_code == 204
    assert api(other.secret).get("/api/v1/runs/").status_code == 401
    assert [key["name"] for key in api(ana_key).get(URL).json()] == ["laptop"]
    assert api(ana_key).delete(f"{URL}{other.key.pk}/").status_code == 404


def test_nobody_sees_or_revokes_anothers_keys_not_even_staff(ana_key):
    staff = make_user("olivia", staff=True)
    staff_key = key_create(user=staff, name="admin").secret
    ana_row = ApiKey.objects.get(name="laptop")

    assert [key["name"] for key in api(staff_key).get(URL).json()] == ["admin"]
    response = api(staff_key).delete(f"{URL}{ana_row.pk}/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert api(ana_key).get("/api/v1/runs/").status_code == 200


@pytest.mark.parametrize("pk", ["abc", "99999999999999999999999"])
def test_a_bad_id_is_a_404(ana_key, pk):
    assert api(ana_key).delete(f"{URL}{pk}/").status_code == 404


def test_a_key_can_be_made_with_a_monthly_cloud_budget_and_lists_it(ana_key):
    created = api(ana_key).post(URL, {"name": "ci", "monthly_cloud_budget_usd": "2.50"}, format="json")

    assert created.status_code == 201
    assert created.json()["monthly_cloud_budget_usd"] == "2.5000000000"
    listed = {key["name"]: key["monthly_cloud_budget_usd"] for key in api(ana_key).get(URL).json()}
    assert listed == {"ci": "2.5000000000", "laptop": None}


def test_a_negative_budget_is_refused(ana_key):
    response = api(ana_key).post(URL, {"name": "ci", "monthly_cloud_budget_usd": "-1"}, format="json")

    assert response.status_code == 400
    assert "monthly_cloud_budget_usd" in str(response.json())


def test_a_key_is_created_with_rate_limits_up_to_the_servers_default(ana_key, settings):
    settings.SWITCHYARD_KEY_RPM = 120
    created = api(ana_key).post(URL, {"name": "ci", "requests_per_minute": 30}, format="json")
    too_many = api(ana_key).post(URL, {"name": "ci", "requests_per_minute": 121}, format="json")

    assert created.status_code == 201
    assert (created.json()["requests_per_minute"], created.json()["tokens_per_minute"]) == (30, None)
    assert too_many.status_code == 400
    assert list(too_many.json()["error"]["fields"]) == ["requests_per_minute"]
    assert ApiKey.objects.count() == 2


def test_a_budget_above_what_the_api_writes_is_refused(ana_key):
    response = api(ana_key).post(URL, {"name": "ci", "monthly_cloud_budget_usd": "9106618945"}, format="json")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["monthly_cloud_budget_usd"]


def test_a_rate_limit_too_large_to_store_is_a_400_when_the_server_sets_no_limit(ana_key, settings):
    settings.SWITCHYARD_KEY_RPM, settings.SWITCHYARD_KEY_TPM = 0, 0  # 0: not limited, so no default caps a key's

    response = api(ana_key).post(URL, {"name": "ci", "tokens_per_minute": 2**40}, format="json")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["tokens_per_minute"]
    assert ApiKey.objects.count() == 1


@pytest.mark.parametrize(
    "limit",
    [
        {"allowed_models": ["gemma"]},
        {"monthly_cloud_budget_usd": Decimal("5")},
        {"requests_per_minute": 10},
        {"tokens_per_minute": 1000},
        {"expires_at": timezone.now() + timedelta(days=7)},
    ],
)
def test_a_limited_key_cannot_make_a_key_without_its_limits(ana, limit):
    limited = key_create(user=ana, name="ci", **limit).secret

    response = api(limited).post(URL, {"name": "free"}, format="json")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert "API keys page" in response.json()["error"]["message"]
    assert ApiKey.objects.count() == 1
    assert api(limited).get(URL).status_code == 200  # it still lists them
