"""Shared fixtures. App-specific ones live in tests/<app>/conftest.py."""

import os

import pytest

pytest_plugins = ["tests.fakes.fixtures"]


def pytest_sessionstart(session):
    from django.conf import settings

    # WhiteNoise warns on every app start when STATIC_ROOT is missing (collectstatic never ran here).
    os.makedirs(settings.STATIC_ROOT, exist_ok=True)


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
