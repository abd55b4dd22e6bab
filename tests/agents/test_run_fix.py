"""Issue 11 item 2: a run no provider could serve says how to fix it, in the dashboard's words,
on the run page (under the error) and in the API (`fix`).

The run executes in this process (agents.execution.run_execute) with the team's shipped providers
(tests/conftest.py `providers`): the Ollama host refuses the connection, no cloud key is set.
"""

from __future__ import annotations

import socket

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from agents import execution
from agents.models import RunStatus
from core.templatetags.formatting import code_spans
from routing.models import Provider
from tests.factories import run_create
from tests.routing.conftest_router import fresh_routing

__all__ = ["fresh_routing"]

NO_ANTHROPIC_KEY = "ANTHROPIC_API_KEY is not set: put it in .env or the environment of the worker"
NO_OPENAI_KEY = "OPENAI_API_KEY is not set: put it in .env or the environment of the worker"


@pytest.fixture
def ollama_url(providers, fresh_routing, monkeypatch) -> str:
    """The shipped providers, as a newcomer has them: no Ollama listening, no cloud key set."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    Provider.objects.filter(name="ollama").update(base_url=url)
    return url


@pytest.fixture
def failed_run(ollama_url, agents, user):
    run = run_create(agent=agents["marcus"], user=user, prompt="A health endpoint, please.")
    assert execution.run_execute(run_id=run.pk).outcome == "failed"
    run.refresh_from_db()
    return run


def refused(url: str) -> str:
    return (
        f"Ollama at {url} refused the connection: start `ollama serve`, set OLLAMA_HOST, or run `bin/run --local-model`"
    )


def test_the_failed_run_keeps_one_fix_a_line_local_first(failed_run, ollama_url) -> None:
    assert failed_run.status == RunStatus.FAILED
    assert failed_run.error.startswith("no provider could take the request: ")
    assert failed_run.fix.splitlines() == [refused(ollama_url), NO_ANTHROPIC_KEY, NO_OPENAI_KEY]


def test_the_run_page_shows_the_fix_under_the_error(client, user, failed_run, ollama_url) -> None:
    client.force_login(user)

    page = client.get(reverse("agents:run_detail", args=[failed_run.pk])).content.decode()

    error_at = page.index("<strong>Failed:</strong>")
    assert error_at < page.index("<strong>To fix:</strong>") < page.index(f"<li>{code_spans(refused(ollama_url))}</li>")
    assert "<code>bin/run --local-model</code>" in page  # a command reads as one
    assert f"<li>{NO_ANTHROPIC_KEY}</li>" in page
    assert f"<li>{NO_OPENAI_KEY}</li>" in page


def test_the_api_gives_the_fix_beside_the_error(user, failed_run, ollama_url) -> None:
    api = APIClient()
    api.force_authenticate(user)

    run = api.get(reverse("api-run-detail", args=[failed_run.pk])).json()

    assert run["status"] == "failed"
    assert run["fix"] == "\n".join([refused(ollama_url), NO_ANTHROPIC_KEY, NO_OPENAI_KEY])


def test_the_dashboard_says_the_same_words(client, user, failed_run, ollama_url) -> None:
    client.force_login(user)

    fixes = [provider.fix for provider in client.get(reverse("home")).context["providers"]]

    assert fixes == failed_run.fix.splitlines()
