"""The API on a live server for tools that speak HTTP (Schemathesis, a generated client): a staff
user's token, the team's agents, throttles out of the way. Tools missing here fail the test under
CI (CI=true) and skip it elsewhere, like the local model."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import httpx
import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from tests.factories import agents_create


def require(module: str) -> None:
    """Skip (fail under CI) when a test tool from requirements-dev.txt is not installed."""
    if importlib.util.find_spec(module) is None:
        reason = f"{module} is not installed: run bin/setup (pip install -r requirements-dev.txt)"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI must run these tests, never skip them quietly
        pytest.skip(reason)


@dataclass
class LiveAPI:
    url: str
    token: str
    username: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def schema(self) -> dict:
        response = httpx.get(f"{self.url}/api/schema/", params={"format": "json"}, headers=self.headers)
        response.raise_for_status()
        return response.json()


@pytest.fixture
def unthrottled(settings, monkeypatch):
    rates = {"user": "100000/minute", "anon": "100000/minute"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    # DRF copies the rates into a class attribute at import (see tests/project/test_api_throttle.py).
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", api_settings.DEFAULT_THROTTLE_RATES)


@pytest.fixture
def live_api(live_server, transactional_db, unthrottled) -> LiveAPI:
    staff = get_user_model().objects.create_superuser("olivia", email="olivia@example.org", password="x-staff-pw")
    agents_create()
    return LiveAPI(url=live_server.url, token=Token.objects.create(user=staff).key, username=staff.username)
