"""Shared fixtures: users and the sprint report's providers (built by tests/factories.py).
App-specific ones live in tests/<app>/conftest.py."""

import os
from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model

from routing.models import Provider, ProviderKind
from tests.factories import provider_create

pytest_plugins = ["tests.fakes.fixtures"]

# The suite's providers live on loopback (the fakes, the local model) and at a LAN address in the
# admin's examples; its key variables are named like SWITCHYARD_TEST_KEY. Allowed in this process
# (the autouse fixture below) and in the worker processes tests start (they inherit the environment).
TEST_PROVIDER_HOSTS = ["127.0.0.1", "localhost", "10.0.0.5"]
TEST_KEY_VARIABLES = ["*_API_KEY", "*_TEST_KEY", "SWITCHYARD_TEST_*", "E2E_*"]
os.environ["SWITCHYARD_ALLOWED_PROVIDER_HOSTS"] = ",".join(TEST_PROVIDER_HOSTS)
os.environ["SWITCHYARD_API_KEY_ENV_ALLOWED"] = ",".join(TEST_KEY_VARIABLES)


def pytest_sessionstart(session):
    from django.conf import settings

    # WhiteNoise warns on every app start when STATIC_ROOT is missing (collectstatic never ran here).
    os.makedirs(settings.STATIC_ROOT, exist_ok=True)


@pytest.fixture(autouse=True)
def test_provider_endpoints(settings):
    settings.SWITCHYARD_ALLOWED_PROVIDER_HOSTS = TEST_PROVIDER_HOSTS
    settings.SWITCHYARD_API_KEY_ENV_ALLOWED = TEST_KEY_VARIABLES


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    """Creating and logging in users is most of some tests; PBKDF2's 1M rounds would dominate them."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def local_model_server():
    """The real local model (llama.cpp server + Gemma 3 270M) on loopback: `.base_url`, `.model`."""
    from tests.localmodel import LocalModelServer, missing_reason

    if reason := missing_reason():
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI must run the real model, never skip it quietly
        pytest.skip(reason)
    server = LocalModelServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fresh_api_throttles():
    """Each test starts with no API request counted: DRF counts per user id and address in the
    shared cache, and ids repeat across tests, so counts left by one test would throttle another."""
    from django.core.cache import cache
    from redis.exceptions import RedisError

    client = getattr(cache, "_cache", None)
    if client is not None and hasattr(client, "get_client"):  # Redis
        try:
            redis = client.get_client(write=True)
            for key in redis.scan_iter(match="*throttle_*", count=1000):
                redis.delete(key)
        except (RedisError, OSError):
            pass  # tests that stop Redis meet it down here
    yield


PASSWORD = "correct-horse-battery-staple"
SERVES = ("code_generation", "testing", "documentation")
SPRINT_PRICES_FROM = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("dana", email="dana@example.org", password=PASSWORD)


@pytest.fixture
def staff_user(db):
    """A staff member with every permission: what an operator uses to run the admin."""
    return get_user_model().objects.create_superuser("olivia", email="olivia@example.org", password=PASSWORD)


@pytest.fixture
def providers(db) -> dict[str, Provider]:
    """The shape a team runs: ollama (local, priority 1, free), then anthropic (2) and openai (3),
    each with one model and one price."""
    return {
        "ollama": provider_create(
            "ollama",
            kind=ProviderKind.OLLAMA,
            base_url="http://127.0.0.1:11434",
            priority=1,
            model="mistral:latest",
            context_window=32768,
            price=("0", "0"),
            price_from=SPRINT_PRICES_FROM,
            capabilities=SERVES,
            model_capabilities=SERVES,
            max_in_flight=2,
        ),
        "anthropic": provider_create(
            "anthropic",
            kind=ProviderKind.ANTHROPIC,
            base_url="https://api.anthropic.com",
            is_local=False,
            priority=2,
            model="claude-sonnet-4-5",
            context_window=200000,
            price=("3", "15"),
            price_from=SPRINT_PRICES_FROM,
            capabilities=SERVES,
            model_capabilities=SERVES,
            api_key_env="ANTHROPIC_API_KEY",
        ),
        "openai": provider_create(
            "openai",
            kind=ProviderKind.OPENAI,
            base_url="https://api.openai.com",
            is_local=False,
            priority=3,
            model="gpt-4o",
            context_window=128000,
            price=("2.5", "10"),
            price_from=SPRINT_PRICES_FROM,
            capabilities=SERVES,
            model_capabilities=SERVES,
            api_key_env="OPENAI_API_KEY",
        ),
    }
