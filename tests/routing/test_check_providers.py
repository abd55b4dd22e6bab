"""`manage.py check_providers`: the team's one-command health check of every provider."""

import json
import socket
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from routing.models import LedgerEntry
from tests.routing.conftest_router import fresh_routing, make_provider, set_baseline  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_routing")]


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def team(fake_ollama, fake_openai, monkeypatch):
    """The sprint report's set-up: Ollama first, then Claude (no key here), then OpenAI."""
    monkeypatch.delenv("SWITCHYARD_TEST_ANTHROPIC_KEY", raising=False)
    monkeypatch.setenv("SWITCHYARD_TEST_OPENAI_KEY", "sk-test-1234567890")
    make_provider("ollama", kind="ollama", base_url=fake_ollama.base_url, model="mistral:latest", priority=1)
    make_provider(
        "claude", kind="anthropic", base_url=closed_port_url(), model="claude-sonnet", is_local=False, priority=2,
        api_key_env="SWITCHYARD_TEST_ANTHROPIC_KEY", price=("3", "15"),
    )  # fmt: skip
    openai = make_provider(
        "openai", kind="openai", base_url=fake_openai.base_url, model="gpt-4o-mini", is_local=False, priority=3,
        api_key_env="SWITCHYARD_TEST_OPENAI_KEY", price=("2.5", "10"),
    )  # fmt: skip
    set_baseline(openai, "gpt-4o-mini")


def run(*args: str) -> str:
    out = StringIO()
    call_command("check_providers", *args, stdout=out)
    return out.getvalue()


def line_for(output: str, provider: str) -> str:
    return next(line for line in output.splitlines() if f" {provider} " in line)


@pytest.mark.usefixtures("team")
def test_it_prints_a_row_per_provider_with_models_speed_and_saving() -> None:
    output = run()

    ollama = line_for(output, "ollama")
    assert "local" in ollama and " up " in ollama
    assert "mistral:latest, qwen2.5-coder:7b" in ollama
    assert " ms " in ollama and "100%" in ollama
    assert line_for(output, "openai").endswith(" 0%")  # the baseline saves nothing against itself
    assert "Savings are against the baseline model: gpt-4o-mini." in output


@pytest.mark.usefixtures("team")
def test_it_reports_a_cloud_provider_without_its_key_as_no_key_and_does_not_call_it() -> None:
    claude = line_for(run(), "claude")

    assert "no key" in claude
    assert "SWITCHYARD_TEST_ANTHROPIC_KEY is not set" in claude
    assert not LedgerEntry.objects.filter(provider__name="claude").exists()


@pytest.mark.usefixtures("team")
def test_it_writes_the_same_results_as_json(tmp_path) -> None:
    path = tmp_path / "providers.json"

    run("--json", str(path))

    report = json.loads(path.read_text())
    assert report["baseline_model"] == "gpt-4o-mini"
    by_name = {row["provider"]: row for row in report["providers"]}
    assert [row["provider"] for row in report["providers"]] == ["ollama", "claude", "openai"]
    assert by_name["ollama"]["status"] == "up"
    assert by_name["ollama"]["completion_tokens"] > 0
    assert by_name["ollama"]["tokens_per_s"] > 0
    assert by_name["ollama"]["saving_pct"] == 100.0
    assert by_name["ollama"]["cost_usd"] == "0.0000000000"  # money for machines: core.formatting.money_json
    assert by_name["claude"]["status"] == "no key"
    assert "sk-test-1234567890" not in path.read_text()


@pytest.mark.usefixtures("team")
def test_it_meters_its_test_generations_in_the_ledger() -> None:
    run()

    entries = LedgerEntry.objects.order_by("provider__priority")
    assert [(entry.provider.name, entry.agent, entry.reason) for entry in entries] == [
        ("ollama", "check_providers", "check_providers"),
        ("openai", "check_providers", "check_providers"),
    ]


@pytest.mark.usefixtures("team")
def test_it_fails_when_the_first_provider_is_down(fake_ollama) -> None:
    fake_ollama.behave("server_error")

    with pytest.raises(CommandError, match="ollama, the first provider by priority, is down: 500"):
        run()


def test_it_fails_when_the_first_provider_cannot_be_reached() -> None:
    make_provider("ollama", kind="ollama", base_url=closed_port_url())

    with pytest.raises(CommandError, match=r"is down: Ollama at http://127\.0\.0\.1:\d+ refused the connection: start"):
        run()


@pytest.mark.usefixtures("team")
def test_it_passes_when_only_a_later_provider_is_down(fake_openai) -> None:
    fake_openai.behave("unavailable")

    output = run()

    assert " down " in line_for(output, "openai")


@pytest.mark.usefixtures("team")
def test_it_reports_a_provider_that_lists_its_models_but_fails_the_generation_as_down(fake_ollama) -> None:
    fake_ollama.script("ok", "server_error")  # GET /api/tags answers, POST /api/chat fails

    with pytest.raises(CommandError, match="ollama, the first provider by priority, is down: 500"):
        run()

    assert LedgerEntry.objects.get(provider__name="ollama").outcome == "transient_error"


def test_a_provider_that_only_embeds_is_checked_with_an_embedding(fake_server) -> None:
    embedder = fake_server("openai_compatible")
    make_provider("tei", base_url=embedder.base_url, model="text-embedding-3-small", model_kind="embedding")

    output = run()

    assert " up " in line_for(output, "tei")
    assert [request.path for request in embedder.requests] == ["/v1/models", "/v1/embeddings"]
    [entry] = LedgerEntry.objects.all()
    assert (entry.agent, entry.outcome, entry.completion_tokens) == ("check_providers", "success", 0)
    assert entry.prompt_tokens == 10  # the fake counts the prompt's words
