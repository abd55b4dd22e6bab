"""The rest of the API: agents, providers (with health, never a key), the schema and its docs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.contrib.staticfiles import finders
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from routing import health
from routing.models import Provider
from tests.routing.conftest_router import forget_health


@pytest.fixture
def api(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.mark.parametrize("path", ["/api/v1/agents/", "/api/v1/providers/"])
def test_it_answers_401_without_a_token(db, path):
    response = APIClient().get(path)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_it_lists_the_agents(api, agents):
    body = api.get("/api/v1/agents/").json()
    assert [agent["slug"] for agent in body] == ["marcus", "emily", "alex", "jordan"]
    assert body[1] == {
        "slug": "emily",
        "name": "Emily",
        "role": "Frontend engineer (React components)",
        "capability": "code_generation",
        "quality_check": "react_component",
        "temperature": 0.3,
        "max_tokens": 1500,
        "enabled": True,
    }


def test_it_lists_providers_by_priority_local_or_cloud_with_health(api, providers, monkeypatch, fake_ollama):
    Provider.objects.filter(name="ollama").update(base_url=fake_ollama.base_url)  # the host answers the probe
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-very-secret-value")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    forget_health(["ollama", "anthropic", "openai"])
    cooldown = health.record_transient_failure("ollama", failures_before_cooldown=1, cooldown_seconds=60)
    monkeypatch.setattr("routing.selectors.time", SimpleNamespace(time=lambda: cooldown.until - 42.44))
    try:
        response = api.get("/api/v1/providers/")
    finally:
        forget_health(["ollama"])
    assert "very-secret" not in response.content.decode()
    ollama, anthropic, openai = response.json()
    assert [(p["name"], p["priority"], p["local"], p["where"]) for p in (ollama, anthropic, openai)] == [
        ("ollama", 1, True, "local"),
        ("anthropic", 2, False, "cloud"),
        ("openai", 3, False, "cloud"),
    ]
    assert ollama["health"] == {
        "status": "cooling",
        "detail": "42 s left after 1 transient failures in a row",
        "fix": "",
        "cooldown_remaining_s": 42.4,
        "failures": 1,
    }
    assert (anthropic["health"]["status"], anthropic["api_key_env"], anthropic["api_key_set"]) == (
        "not yet called",
        "ANTHROPIC_API_KEY",
        True,
    )
    assert (openai["health"]["status"], openai["health"]["detail"], openai["api_key_set"]) == (
        "no key",
        "OPENAI_API_KEY is not set",
        False,
    )
    assert openai["health"]["fix"] == "OPENAI_API_KEY is not set: put it in .env or the environment of the worker"
    assert ollama["models"] == ["mistral:latest"]


def test_it_shows_a_disabled_provider_as_disabled_and_hides_credentials_in_its_url(api, providers):
    provider = providers["openai"]
    provider.enabled = False
    provider.base_url = "https://proxy-user:proxy-pass@llm-proxy.example.org/v1"
    provider.save()
    body = {p["name"]: p for p in api.get("/api/v1/providers/").json()}
    assert body["openai"]["health"]["status"] == "disabled"
    assert body["openai"]["base_url"] == "https://llm-proxy.example.org/v1"


def test_it_serves_the_openapi_schema_with_every_endpoint(client, db):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in [
        "/api/v1/runs/",
        "/api/v1/runs/{id}/",
        "/api/v1/runs/{id}/cancel/",
        "/api/v1/workflows/",
        "/api/v1/workflows/{id}/",
        "/api/v1/agents/",
        "/api/v1/providers/",
    ]:
        assert path in paths
    assert "tokenAuth" in response.json()["components"]["securitySchemes"]


def test_it_serves_the_api_docs_from_its_own_static_files(client, db):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower()
    assert "//unpkg" not in page and "jsdelivr" not in page
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
