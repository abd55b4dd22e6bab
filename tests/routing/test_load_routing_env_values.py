"""`load_routing` never prints a value it took from the environment: its messages name the variable.

Issue 10 item 10 (second half): a `${VAR}` in the files may hold a secret (a key pasted into the
wrong variable, a URL with a password). When its expanded value fails a check, the message says
which variable and what is wrong with it, never the value.
"""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from tests.routing.configs import LOCAL, ROUTING, load, snapshot, write_configs

pytestmark = pytest.mark.django_db

SECRET = "sk-ant-api03-Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1JkLmNoPqRsTuVwXy"


def refusal(tmp_path, *, routing: str = ROUTING, local: str = LOCAL) -> str:
    before = snapshot()
    with pytest.raises(CommandError) as raised:
        load(*write_configs(tmp_path, routing=routing, local=local))
    assert snapshot() == before
    return str(raised.value)


def assert_no_piece_of_the_secret(message: str) -> None:
    for start in range(len(SECRET) - 7):
        assert SECRET[start : start + 8] not in message, message


def test_a_base_url_from_the_environment_that_is_no_url_is_named_by_its_variable(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", SECRET)

    message = refusal(tmp_path)

    assert_no_piece_of_the_secret(message)
    assert (
        "local_provider.yaml:4: ollama.base_url: must be an http(s) URL like http://localhost:11434, "
        "got the value of ${OLLAMA_HOST}"
    ) in message


def test_a_key_variable_from_the_environment_that_is_no_variable_name_is_named_by_its_variable(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("CLAUDE_KEY_VARIABLE", SECRET)
    routing = ROUTING.replace("  kind: anthropic\n", "  kind: anthropic\n  api_key_env: ${CLAUDE_KEY_VARIABLE}\n", 1)

    message = refusal(tmp_path, routing=routing)

    assert_no_piece_of_the_secret(message)
    assert (
        "claude.api_key_env: An environment variable name like ANTHROPIC_API_KEY. (the value of ${CLAUDE_KEY_VARIABLE})"
    ) in message


def test_a_key_variable_from_the_environment_that_is_not_allowed_is_named_by_its_variable(
    tmp_path, monkeypatch, settings
) -> None:
    settings.SWITCHYARD_API_KEY_ENV_ALLOWED = ["*_API_KEY"]
    monkeypatch.setenv("CLAUDE_KEY_VARIABLE", "DATABASE_URL")
    routing = ROUTING.replace("  kind: anthropic\n", "  kind: anthropic\n  api_key_env: ${CLAUDE_KEY_VARIABLE}\n", 1)

    message = refusal(tmp_path, routing=routing)

    assert "DATABASE_URL" not in message
    assert (
        "claude.api_key_env: Not an allowed API key variable: SWITCHYARD_API_KEY_ENV_ALLOWED allows *_API_KEY. "
        "(the value of ${CLAUDE_KEY_VARIABLE})"
    ) in message


def test_a_default_model_from_the_environment_that_is_not_among_the_models_is_named_by_its_variable(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("OLLAMA_MODEL", SECRET)
    local = LOCAL.replace("default_model: mistral:latest", "default_model: ${OLLAMA_MODEL}")

    message = refusal(tmp_path, local=local)

    assert_no_piece_of_the_secret(message)
    assert (
        "ollama.default_model: The default model the value of ${OLLAMA_MODEL} must be one of this provider's "
        "models (mistral:latest): add it, or choose another default model."
    ) in message


def test_a_pattern_checked_value_from_the_environment_is_named_by_its_variable(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OLLAMA_KEEP_ALIVE", SECRET)
    local = LOCAL.replace("keep_alive: 30m", "keep_alive: ${OLLAMA_KEEP_ALIVE}")

    message = refusal(tmp_path, local=local)

    assert_no_piece_of_the_secret(message)
    assert "ollama.keep_alive: A duration like 30m, 1h, 300 or -1 (forever). (the value of ${OLLAMA_KEEP_ALIVE})" in (
        message
    )


def test_an_OLLAMA_HOST_setting_that_is_no_url_is_not_printed(tmp_path, settings) -> None:
    settings.OLLAMA_HOST = SECRET
    local = LOCAL.replace("  base_url: ${OLLAMA_HOST:-http://localhost:11434}\n", "")

    message = refusal(tmp_path, local=local)

    assert_no_piece_of_the_secret(message)
    assert "ollama.base_url: is not given, and OLLAMA_HOST (its default) is not an http(s) URL" in message


def test_a_value_written_in_the_file_is_still_quoted(tmp_path) -> None:
    local = LOCAL.replace("${OLLAMA_HOST:-http://localhost:11434}", "localhost:11434")

    message = refusal(tmp_path, local=local)

    assert "got 'localhost:11434'" in message
