"""Shared fixtures. App-specific ones live in tests/<app>/conftest.py."""

pytest_plugins = ["tests.fakes.fixtures"]
