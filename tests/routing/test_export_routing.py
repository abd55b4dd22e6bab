"""`manage.py export_routing`: the database as YAML that loads back to the same state."""

from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from agents.models import Agent
from routing.models import LLMModel, Price, Provider, RoutingPolicy
from tests.routing.configs import load, snapshot, wipe

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_ollama_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_HOST", raising=False)


def export(*args: object) -> str:
    out = StringIO()
    call_command("export_routing", *map(str, args), stdout=out)
    return out.getvalue()


def _round_trip(tmp_path: Path) -> tuple[dict, dict]:
    """Export to files, start from an empty database, load the files: (before, after)."""
    before = snapshot()
    export("--output-dir", tmp_path / "export")
    wipe()
    load(tmp_path / "export" / "llm_routing.yaml", tmp_path / "export" / "local_provider.yaml")
    return before, snapshot()


def test_the_shipped_routing_survives_a_round_trip(tmp_path: Path):
    load()

    before, after = _round_trip(tmp_path)

    assert after == before
    assert len(after["Provider"]) == 3 and len(after["Agent"]) == 4


def test_it_writes_cache_prices_where_a_price_has_them_and_no_key_where_it_has_none():
    load()

    document = yaml.safe_load(export())

    sonnet = next(m for m in document["anthropic"]["models"] if m["name"] == "claude-sonnet-4-5")
    assert sonnet["prices"][-1]["cache_write_per_mtok"] == 3.75
    assert sonnet["prices"][-1]["cache_read_per_mtok"] == 0.30
    assert "cache_write_per_mtok" not in sonnet["prices"][0]  # the older price had none
    gpt_4o = next(m for m in document["openai"]["models"] if m["name"] == "gpt-4o")
    assert "cache_write_per_mtok" not in gpt_4o["prices"][-1]  # OpenAI bills no cache writes
    assert gpt_4o["prices"][-1]["cache_read_per_mtok"] == 1.25


def test_the_single_document_on_stdout_loads_back_the_same(tmp_path: Path):
    load()
    before = snapshot()
    document = tmp_path / "routing.yaml"
    document.write_text(export())

    wipe()
    load(document)

    assert snapshot() == before


def test_a_reload_of_an_export_changes_nothing(tmp_path: Path):
    load()
    export("--output-dir", tmp_path)

    out, _ = load(tmp_path / "llm_routing.yaml", tmp_path / "local_provider.yaml")

    assert out.strip() == "routing is up to date: no changes"


def test_a_policy_without_a_baseline_model_round_trips(tmp_path: Path):
    load()
    RoutingPolicy.objects.update(baseline_model=None)

    before, after = _round_trip(tmp_path)

    assert after == before
    assert RoutingPolicy.get().baseline_model is None


def test_a_change_made_in_the_database_shows_in_the_export(tmp_path: Path):
    load()
    Provider.objects.filter(name="anthropic").update(priority=3)
    Provider.objects.filter(name="openai").update(priority=2)
    Agent.objects.filter(slug="jordan").update(system_prompt="You write Dockerfiles for ARM hosts.")
    sonnet = LLMModel.objects.get(provider__name="anthropic", name="claude-sonnet-4-5")
    Price.objects.create(
        model=sonnet,
        effective_from=datetime(2026, 3, 1, 12, 30, tzinfo=UTC),
        input_per_mtok=Decimal("2.750001"),
        output_per_mtok=Decimal(14),
    )
    policy = RoutingPolicy.get()
    policy.target_local_share = Decimal("92.5")
    policy.save()

    text = export()
    before, after = _round_trip(tmp_path)

    document = yaml.safe_load(text)
    assert document["anthropic"]["priority"] == 3 and document["openai"]["priority"] == 2
    assert document["agents"]["jordan"]["system_prompt"] == "You write Dockerfiles for ARM hosts."
    assert document["cost_optimization"]["local_model_target_percentage"] == 92.5
    assert "input_per_mtok: 2.750001" in text
    assert after == before


def test_local_connection_details_go_to_local_provider_yaml(tmp_path: Path):
    load()

    export("--output-dir", tmp_path)

    routing = yaml.safe_load((tmp_path / "llm_routing.yaml").read_text())
    local = yaml.safe_load((tmp_path / "local_provider.yaml").read_text())
    assert routing["ollama"] == {
        "priority": 1,
        "enabled": True,
        "capabilities": ["code_generation", "testing", "documentation", "devops"],
    }
    assert local["ollama"]["base_url"] == "${OLLAMA_HOST:-http://localhost:11434}"
    assert local["ollama"]["models"][0]["name"] == "mistral:latest"
    assert set(local) == {"ollama"}
    assert routing["anthropic"]["base_url"] == "https://api.anthropic.com"


def test_an_ollama_url_other_than_OLLAMA_HOST_is_written_as_it_is(tmp_path: Path):
    load()
    Provider.objects.filter(name="ollama").update(base_url="http://gpu-box.local:11434")

    before, after = _round_trip(tmp_path)

    assert "base_url: http://gpu-box.local:11434" in (tmp_path / "export" / "local_provider.yaml").read_text()
    assert after == before


def test_it_never_writes_an_api_key(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-do-not-leak")
    load()

    text = export()

    assert "sk-ant-do-not-leak" not in text
    assert "api_key_env: ANTHROPIC_API_KEY" in text


def test_a_provider_named_like_a_section_is_written_under_providers(tmp_path: Path):
    load()
    rules = Provider.objects.create(
        name="rules", kind="openai_compatible", base_url="http://llama.local:8080", priority=9, default_model="tiny"
    )
    LLMModel.objects.create(provider=rules, name="tiny")

    before, after = _round_trip(tmp_path)

    assert "rules" in yaml.safe_load((tmp_path / "export" / "llm_routing.yaml").read_text())["providers"]
    assert after == before


def test_a_disabled_agent_and_a_cloud_model_without_a_price_round_trip(tmp_path: Path):
    load()
    Agent.objects.filter(slug="emily").update(enabled=False, temperature=0.7)
    LLMModel.objects.create(provider=Provider.objects.get(name="openai"), name="gpt-next", context_window=1000)

    before, after = _round_trip(tmp_path)

    assert after == before


def test_it_says_when_the_output_directory_cannot_be_written(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")

    with pytest.raises(CommandError, match="cannot write to"):
        export("--output-dir", blocker / "sub")


def test_exporting_an_empty_database_writes_nothing_to_it(tmp_path: Path):
    text = export()

    assert not RoutingPolicy.objects.exists()
    assert yaml.safe_load(text)["cost_optimization"]["local_model_target_percentage"] == 85
