"""Shared fixtures. App-specific ones live in tests/<app>/conftest.py."""

import os

import pytest

pytest_plugins = ["tests.fakes.fixtures"]


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
