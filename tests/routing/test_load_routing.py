"""`manage.py load_routing`: routing as code in, checked, all or nothing, and idempotent."""

# ruff: noqa: E501 - the table of bad inputs reads best one case per line

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management.base import CommandError

from agents.models import Agent
from routing.models import LLMModel, Price, Provider, RoutingPolicy, RoutingRule
from tests.routing.configs import LOCAL, ROUTING, load, snapshot, write_configs

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_ollama_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_HOST", raising=False)


def _price(provider: str, model: str) -> tuple[Decimal, ...]:
    """The newest price: input and output, then cache write and read where it has them."""
    price = Price.objects.filter(model__provider__name=provider, model__name=model).latest()
    cache = tuple(p for p in (price.cache_write_per_mtok, price.cache_read_per_mtok) if p is not None)
    return price.input_per_mtok, price.output_per_mtok, *cache


# --- out of the box ----------------------------------------------------------------------------


def test_it_loads_the_shipped_providers_in_priority_order_with_their_prices():
    load()

    providers = list(Provider.objects.order_by("priority").values_list("name", "kind", "priority", "is_local"))
    assert providers == [
        ("ollama", "ollama", 1, True),
        ("anthropic", "anthropic", 2, False),
        ("openai", "openai", 3, False),
    ]
    ollama = Provider.objects.get(name="ollama")
    assert ollama.base_url == "http://localhost:11434"
    assert ollama.default_model == "mistral:latest"
    assert ollama.max_in_flight and ollama.max_in_flight >= 1
    assert _price("ollama", "mistral:latest") == (Decimal(0), Decimal(0))  # an explicit zero, not a missing price
    assert Provider.objects.get(name="anthropic").api_key_env == "ANTHROPIC_API_KEY"
    assert Provider.objects.get(name="openai").api_key_env == "OPENAI_API_KEY"
    assert _price("anthropic", "claude-sonnet-4-5") == (Decimal(3), Decimal(15), Decimal("3.75"), Decimal("0.30"))
    assert _price("openai", "gpt-4o-mini") == (Decimal("0.15"), Decimal("0.60"), Decimal("0.075"))  # no write price


def test_it_loads_the_policy_with_85_percent_local_measured_against_a_cloud_model():
    load()

    policy = RoutingPolicy.get()
    assert policy.target_local_share == Decimal(85)
    assert policy.baseline_model is not None and not policy.baseline_model.provider.is_local


def test_it_loads_an_embedding_model_on_the_ollama_host_and_the_cloud_s_at_its_price():
    load()

    embedders = LLMModel.objects.filter(kind="embedding").order_by("name")
    assert [(m.provider.name, m.name, m.context_window) for m in embedders] == [
        ("ollama", "nomic-embed-text:latest", 2048),
        ("openai", "text-embedding-3-small", 8191),
    ]
    assert _price("openai", "text-embedding-3-small") == (Decimal("0.02"), Decimal(0))
    assert LLMModel.objects.get(name="mistral:latest").kind == "generation"


def test_it_loads_the_cloud_budget_the_capabilities_open_to_everyone_and_the_output_limits():
    load()

    policy = RoutingPolicy.get()
    assert (policy.monthly_cloud_budget_usd, policy.user_cloud_capabilities) == (Decimal(20), ["reasoning"])
    assert policy.budget_alert_share == Decimal("0.80")
    limits = dict(LLMModel.objects.filter(kind="generation").values_list("name", "max_output_tokens"))
    assert limits == {
        "mistral:latest": None,  # up to its context window
        "claude-sonnet-4-5": 64000,
        "claude-haiku-4-5": 64000,
        "gpt-4o": 16384,
        "gpt-4o-mini": 16384,
    }


def test_it_loads_the_four_agents_with_real_prompts_for_their_jobs():
    load()

    agents = {agent.slug: agent for agent in Agent.objects.all()}
    assert list(agents) == ["marcus", "emily", "alex", "jordan"]
    for slug, topic, check in [
        ("marcus", "FastAPI", "python_code"),
        ("emily", "React", "react_component"),
        ("alex", "pytest", "python_code"),
        ("jordan", "Dockerfile", "dockerfile"),
    ]:
        agent = agents[slug]
        assert topic in agent.system_prompt and len(agent.system_prompt) > 400
        assert "{feature}" in agent.workflow_prompt
        assert agent.quality_check == check
        assert Provider.objects.filter(capabilities__contains=[agent.capability]).exists()


def test_it_takes_the_ollama_url_from_OLLAMA_HOST(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OLLAMA_HOST", "http://mac-mini.local:11434")

    load()

    assert Provider.objects.get(name="ollama").base_url == "http://mac-mini.local:11434"


def test_it_reads_the_files_in_the_configured_directory(tmp_path: Path, settings):
    write_configs(tmp_path)
    settings.SWITCHYARD_CONFIG_DIR = tmp_path

    load()

    assert LLMModel.objects.filter(provider__name="claude", name="sonnet").exists()


# --- idempotent, and it says what it did ------------------------------------------------------


def test_the_first_load_lists_what_it_created(tmp_path: Path):
    out, _ = load(*write_configs(tmp_path))

    assert "created provider ollama (ollama, priority 1)" in out
    assert "added price for model claude/sonnet from 2025-09-29" in out
    assert "created rule big-prompts" in out
    assert "created agent marcus" in out


def test_a_second_load_changes_nothing_and_says_so(tmp_path: Path):
    paths = write_configs(tmp_path)
    load(*paths)
    before = snapshot()
    stamps = list(Provider.objects.values_list("updated_at", flat=True))

    out, _ = load(*paths)

    assert out.strip() == "routing is up to date: no changes"
    assert snapshot() == before
    assert list(Provider.objects.values_list("updated_at", flat=True)) == stamps


def test_a_second_load_of_the_shipped_files_changes_nothing():
    load()

    out, _ = load()

    assert out.strip() == "routing is up to date: no changes"


def test_it_applies_an_edit_and_reports_just_that(tmp_path: Path):
    load(*write_configs(tmp_path))

    out, _ = load(
        *write_configs(tmp_path, routing=ROUTING.replace("escalate_above_tokens: 4000", "escalate_above_tokens: 3000"))
    )

    assert out.splitlines()[0].strip() == "updated rule big-prompts: escalate_above_tokens 4000 -> 3000"
    assert RoutingRule.objects.get(name="big-prompts").escalate_above_tokens == 3000


def test_it_swaps_two_priorities_in_one_load(tmp_path: Path):
    load(*write_configs(tmp_path))
    swapped = ROUTING.replace("  priority: 1\n", "  priority: 9\n").replace("  priority: 2\n", "  priority: 1\n")

    load(*write_configs(tmp_path, routing=swapped.replace("  priority: 9\n", "  priority: 2\n")))

    assert list(Provider.objects.order_by("priority").values_list("name", flat=True)) == ["claude", "ollama"]


def test_it_invalidates_the_routing_cache_only_when_something_changed(tmp_path: Path, monkeypatch):
    calls = []
    monkeypatch.setattr("agents.config_io.invalidate_routing_cache", lambda: calls.append(1))
    paths = write_configs(tmp_path)

    load(*paths)
    load(*paths)

    assert calls == [1]


def test_a_dry_run_shows_the_changes_and_saves_nothing(tmp_path: Path):
    out, _ = load(*write_configs(tmp_path), "--dry-run")

    assert "created provider claude" in out and "nothing saved" in out
    assert not Provider.objects.exists()


def test_if_empty_leaves_a_configured_database_alone(tmp_path: Path):
    load(*write_configs(tmp_path))
    edited = ROUTING.replace("escalate_above_tokens: 4000", "escalate_above_tokens: 10")

    out, _ = load(*write_configs(tmp_path, routing=edited), "--if-empty")

    assert "nothing loaded" in out
    assert RoutingRule.objects.get().escalate_above_tokens == 4000


# --- what the files no longer mention ----------------------------------------------------------


def test_it_deletes_rules_that_left_the_files(tmp_path: Path):
    load(*write_configs(tmp_path))
    without_rules = ROUTING.replace(
        "rules:\n  - name: big-prompts\n    escalate_above_tokens: 4000\n    providers: [claude]\n", ""
    )

    out, _ = load(*write_configs(tmp_path, routing=without_rules))

    assert "deleted rule big-prompts" in out
    assert not RoutingRule.objects.exists()


def test_it_keeps_providers_and_agents_that_left_the_files_and_warns(tmp_path: Path):
    load(*write_configs(tmp_path))
    Provider.objects.create(
        name="spare", kind="openai_compatible", base_url="http://gpu.local:8080", priority=7, default_model="m"
    )
    Agent.objects.create(slug="retired", name="Retired", role="old", capability="testing", system_prompt="x")

    out, err = load(*write_configs(tmp_path))

    assert out.strip() == "routing is up to date: no changes"
    assert "provider spare is in the database but not in the files: kept (--prune disables it)" in err
    assert "agent retired is in the database but not in the files" in err
    assert Provider.objects.get(name="spare").enabled and Agent.objects.get(slug="retired").enabled


def test_prune_disables_providers_and_agents_that_left_the_files(tmp_path: Path):
    paths = write_configs(tmp_path)
    load(*paths)
    Provider.objects.create(
        name="spare", kind="openai_compatible", base_url="http://gpu.local:8080", priority=7, default_model="m"
    )
    Agent.objects.create(slug="retired", name="Retired", role="old", capability="testing", system_prompt="x")

    out, _ = load(*paths, "--prune")
    again, _ = load(*paths, "--prune")

    assert "disabled provider spare (not in the files)" in out and "disabled agent retired (not in the files)" in out
    assert not Provider.objects.get(name="spare").enabled and not Agent.objects.get(slug="retired").enabled
    assert again.strip() == "routing is up to date: no changes"


def test_prices_are_history_new_ones_are_added_and_old_ones_kept(tmp_path: Path):
    load(*write_configs(tmp_path))
    new_price = (
        "        - {effective_from: 2025-09-29, input_per_mtok: 3, output_per_mtok: 15}\n"
        "        - {effective_from: 2026-01-01, input_per_mtok: 2.5, output_per_mtok: 12.5}\n"
    )
    edited = ROUTING.replace(
        "        - {effective_from: 2025-09-29, input_per_mtok: 3, output_per_mtok: 15}\n", new_price
    )
    load(*write_configs(tmp_path, routing=edited))

    out, _ = load(*write_configs(tmp_path))  # the old file again: the newer price stays

    prices = Price.objects.filter(model__name="sonnet").order_by("effective_from")
    assert [(p.effective_from, p.input_per_mtok) for p in prices] == [
        (datetime(2025, 9, 29, tzinfo=UTC), Decimal(3)),
        (datetime(2026, 1, 1, tzinfo=UTC), Decimal("2.5")),
    ]
    assert out.strip() == "routing is up to date: no changes"


def test_a_local_model_without_a_cost_gets_an_explicit_zero_price(tmp_path: Path):
    load(*write_configs(tmp_path))

    assert _price("ollama", "mistral:latest") == (Decimal(0), Decimal(0))


def test_a_local_model_may_state_what_it_costs(tmp_path: Path):
    local = LOCAL + "      cost: {input_per_mtok: 0.02, output_per_mtok: 0.05}\n"

    load(*write_configs(tmp_path, local=local))

    assert _price("ollama", "mistral:latest") == (Decimal("0.02"), Decimal("0.05"))


# --- shapes the files may take -----------------------------------------------------------------


def test_it_accepts_the_sprint_report_shape(tmp_path: Path):
    sprint = (
        "ollama:\n"
        "  priority: 1  # Highest priority\n"
        "  capabilities: [code_generation, testing, documentation]\n"
        "  \n"
        "cost_optimization:\n"
        "  local_model_target_percentage: 85  # Up from 70%\n"
    )

    load(*write_configs(tmp_path, routing=sprint))

    ollama = Provider.objects.get()
    assert (ollama.name, ollama.kind, ollama.priority) == ("ollama", "ollama", 1)
    assert ollama.capabilities == ["code_generation", "testing", "documentation"]
    assert RoutingPolicy.get().target_local_share == Decimal(85)


def test_it_accepts_providers_under_a_providers_section(tmp_path: Path):
    start, end = ROUTING.index("claude:\n"), ROUTING.index("rules:\n")
    block = "".join("  " + line for line in ROUTING[start:end].splitlines(keepends=True))
    nested = ROUTING[:start] + "providers:\n" + block + ROUTING[end:]

    load(*write_configs(tmp_path, routing=nested))

    assert Provider.objects.get(name="claude").priority == 2


def test_it_accepts_agents_as_a_list_and_keeps_their_order(tmp_path: Path):
    agents = (
        "agents:\n"
        "  - {slug: zed, name: Zed, role: QA, capability: code_generation, system_prompt: You test.}\n"
        "  - {slug: amy, name: Amy, role: Ops, capability: code_generation, system_prompt: You deploy.}\n"
    )
    routing = ROUTING[: ROUTING.index("agents:\n")] + agents

    load(*write_configs(tmp_path, routing=routing))

    assert list(Agent.objects.values_list("slug", "position")) == [("zed", 0), ("amy", 1)]


# --- bad input: a clear message naming file, line and key; the database untouched --------------


def _case(file: str, old: str, new: str, *expected: str, line: bool = True):
    return pytest.param(file, old, new, expected, line, id=expected[0][:40])


BAD = [
    _case("routing", "capabilities: [code_generation]\n", "capabilities: [code_generation\n", "malformed YAML", line=False),
    _case("routing", ROUTING, "- just\n- a list\n", "llm_routing.yaml:1: the file must be a mapping", line=False),
    _case("routing", "  kind: anthropic\n", "  kind: anthropic\n  enabeld: true\n", "claude.enabeld: unknown key (did you mean 'enabled'?)"),
    _case("routing", "cost_optimization:", "cost_optimisation:", "cost_optimisation: unknown section (did you mean 'cost_optimization'?)"),
    _case("routing", "  priority: 1\n", "  priority: first\n", "ollama.priority: must be a whole number, got the text 'first'"),
    _case("routing", "  priority: 1\n", "  priority: -1\n", "ollama.priority: Ensure this value is greater than or equal to 1."),
    _case("routing", "  priority: 1\n", "  priority: 0\n", "ollama.priority: Ensure this value is greater than or equal to 1."),
    _case("routing", "  priority: 2\n", "  priority: 1\n", "claude.priority: Priority 1 is given to more than one provider: claude, ollama."),
    _case("routing", "  priority: 2\n", "  priority: 99999999999\n", "claude.priority: Ensure this value is less than or equal to 2147483647."),
    _case("routing", "  kind: anthropic\n", "  kind: antropic\n", "claude.kind: must be one of", "(did you mean 'anthropic'?)"),
    _case("routing", "    providers: [claude]\n", "    providers: [claud]\n", "rules[0].providers[0]: no provider named 'claud' (did you mean 'claude'?)"),
    _case("routing", "85\n", "101\n", "cost_optimization.local_model_target_percentage: Ensure this value is less than or equal to 100."),
    _case("routing", "85\n", "-5\n", "cost_optimization.local_model_target_percentage: Ensure this value is greater than or equal to 0."),
    _case("routing", "85\n", "85\n  monthly_cloud_budget_usd: -1\n", "cost_optimization.monthly_cloud_budget_usd: Ensure this value is greater than or equal to 0."),
    _case("routing", "85\n", "85\n  budget_alert_share: 1.5\n", "cost_optimization.budget_alert_share: Ensure this value is less than or equal to 1."),
    _case("routing", "85\n", "85\n  user_cloud_capabilities: [Deep Thought]\n", "cost_optimization.user_cloud_capabilities: 'Deep Thought': A capability is a lowercase word"),
    _case("routing", "    - name: sonnet\n", "    - name: sonnet\n      max_output_tokens: 0\n", "claude.models[0].max_output_tokens: Ensure this value is greater than or equal to 1."),
    _case("routing", "    - name: sonnet\n", "    - name: sonnet\n      kind: embedding\n", "claude.models[0].kind: This provider's protocol (anthropic) has no embeddings API"),
    _case("routing", "    - name: sonnet\n", "    - name: sonnet\n      kind: embeddings\n", "claude.models[0].kind: must be one of", "(did you mean 'embedding'?)"),
    _case("routing", "85\n", "eighty\n", "cost_optimization.local_model_target_percentage: must be a number, got the text 'eighty'"),
    _case("local", "  default_model: mistral:latest\n", "  default_model: mistral\n", "ollama.default_model: The default model 'mistral' must be one of this provider's models (mistral:latest)"),
    _case("routing", "baseline_model: claude/sonnet", "baseline_model: claude/opus", "cost_optimization.baseline_model: no model 'claude/opus'"),
    _case("routing", "baseline_model: claude/sonnet", "baseline_model: ollama/mistral:latest", "cost_optimization.baseline_model: must be a cloud model"),
    _case("routing", "  priority: 1\n", "  priority: 1\n  priority: 3\n", "duplicate key 'priority' (first on line 5)", line=False),
    _case("local", "  kind: ollama\n", "  kind: ollama\n  priority: 5\n", "ollama.priority: set differently in llm_routing.yaml (line 5: 1) and local_provider.yaml (line 3: 5)"),
    _case("local", "${OLLAMA_HOST:-http://localhost:11434}", "${SWITCHYARD_TEST_UNSET_HOST}", "ollama.base_url: the environment variable SWITCHYARD_TEST_UNSET_HOST is not set"),
    _case("local", "${OLLAMA_HOST:-http://localhost:11434}", "localhost:11434", "ollama.base_url: must be an http(s) URL"),
    _case("local", "  keep_alive: 30m\n", "  keep_alive: a while\n", "ollama.keep_alive: A duration like 30m, 1h, 300 or -1 (forever)."),
    _case("routing", "  kind: anthropic\n", "  kind: anthropic\n  keep_alive: 5m\n", "claude.keep_alive: Only Ollama providers take keep_alive."),
    _case("routing", "  kind: anthropic\n", "  kind: anthropic\n  max_in_flight: 0\n", "claude.max_in_flight: Ensure this value is greater than or equal to 1."),
    _case("routing", "  kind: anthropic\n", "  kind: anthropic\n  request_timeout_s: fast\n", "claude.request_timeout_s: must be a number"),
    _case("routing", "  kind: anthropic\n", "  kind: anthropic\n  enabled: maybe\n", "claude.enabled: must be true or false, got the text 'maybe'"),
    _case("routing", "  capabilities: [code_generation, testing]\n", "  capabilities: [Code Generation]\n", "claude.capabilities: 'Code Generation': A capability is a lowercase word like code_generation."),
    _case("routing", "input_per_mtok: 3,", "input_per_mtok: -3,", "claude.models[0].prices[0].input_per_mtok: Ensure this value is greater than or equal to 0."),
    _case("routing", "input_per_mtok: 3,", "input_per_mtok: 3.1234567,", "input_per_mtok: Ensure that there are no more than 6 decimal places."),
    _case("routing", "effective_from: 2025-09-29,", "effective_from: soon,", "prices[0].effective_from: must be a date like 2025-09-29"),
    _case("routing", "effective_from: 2025-09-29,", "effective_from: 2025-13-45,", "malformed YAML: not a date: month must be in 1..12"),
    _case("routing", "        - {effective_from: 2025-09-29, input_per_mtok: 3, output_per_mtok: 15}\n", "        - {effective_from: 2025-09-29, input_per_mtok: 3, output_per_mtok: 15}\n        - {effective_from: 2025-09-29, input_per_mtok: 4, output_per_mtok: 16}\n", "prices[1].effective_from: a price from 2025-09-29 is listed twice"),
    _case("routing", "    - name: sonnet\n", "    - name: sonnet\n      cost: {input_per_mtok: 1}\n", "claude.models[0].cost: give either cost (one figure) or prices (with dates), not both"),
    _case("routing", "  models:\n    - name: sonnet\n", "  models: []\n  old_models:\n    - name: sonnet\n", "claude.models: a provider needs at least one model"),
    _case("routing", "  kind: anthropic\n", "  kind: anthropic\n  api_key: sk-ant-secret-123\n", "claude.api_key: unknown key: never put an API key in a file"),
    _case("routing", "  kind: anthropic\n", "  kind: anthropic\n  api_key_env: sk-ant-secret-123\n", "claude.api_key_env: An environment variable name like ANTHROPIC_API_KEY."),
    _case("routing", "    escalate_above_tokens: 4000\n", "    min_prompt_tokens: 500\n    max_prompt_tokens: 100\n", "rules[0].max_prompt_tokens: Must not be below min_prompt_tokens."),
    _case("routing", "    escalate_above_tokens: 4000\n", "    allow_cloud: false\n", "rules[0].providers[0]: claude is a cloud provider, but this rule allows no cloud: remove the provider or allow cloud.", line=False),
    _case("routing", "    escalate_above_tokens: 4000\n", "    agent: marcos\n", "rules[0].agent: no agent 'marcos' in the files or the database"),
    _case("routing", "  - name: big-prompts\n", "  - name: Big Prompts!\n", "rules[0].name: Use lowercase letters, digits and _ . : - only."),
    _case("routing", "    system_prompt: You write FastAPI endpoints.\n", "", "agents.marcus.system_prompt: is required", line=False),
    _case("routing", '    workflow_prompt: "Build the API for {feature}"\n', '    workflow_prompt: "Build the API"\n', "agents.marcus.workflow_prompt: must contain {feature}"),
    _case("routing", "    capability: code_generation\n", "    capability: code_generation\n    quality_check: pyton_code\n", "agents.marcus.quality_check: must be one of", "(did you mean 'python_code'?)"),
    _case("routing", "    capability: code_generation\n", "    capability: code_generation\n    temperature: 3\n", "agents.marcus.temperature: Ensure this value is less than or equal to 2."),
    _case("routing", "  marcus:\n", "  Marcus Aurelius:\n", "agents.Marcus Aurelius.slug: Use lowercase letters, digits and _ . : - only."),
    _case("routing", "  marcus:\n", "  mar.cus:\n", "agents.mar.cus.slug: Enter a valid “slug” consisting of letters, numbers, underscores or hyphens."),
]  # fmt: skip


@pytest.mark.parametrize(("file", "old", "new", "expected", "check_line"), BAD)
def test_bad_input_is_rejected_with_a_clear_message_and_the_database_is_untouched(
    tmp_path: Path, file: str, old: str, new: str, expected: tuple[str, ...], check_line: bool
):
    load(*write_configs(tmp_path / "good"))
    before = snapshot()
    texts = {"routing": ROUTING, "local": LOCAL}
    assert old in texts[file], "the case must change the file"
    texts[file] = texts[file].replace(old, new, 1)
    paths = write_configs(tmp_path / "bad", routing=texts["routing"], local=texts["local"])

    with pytest.raises(CommandError) as raised:
        load(*paths)

    message = str(raised.value)
    assert message.startswith("routing not loaded, the database is unchanged")
    for fragment in expected:
        assert fragment in message
    name = "llm_routing.yaml" if file == "routing" else "local_provider.yaml"
    assert f"{name}:" in message
    if check_line:  # the line of the edit (or of one of its lines)
        start = texts[file][: texts[file].index(new)].count("\n") + 1
        lines = range(start, start + max(new.count("\n"), 1))
        assert any(f"{name}:{number}:" in message for number in lines), message
    assert "sk-ant-secret-123" not in message
    assert snapshot() == before


def test_it_reports_every_problem_at_once(tmp_path: Path):
    bad = ROUTING.replace("  priority: 1\n", "  priority: -1\n").replace("85\n", "101\n")

    with pytest.raises(CommandError) as raised:
        load(*write_configs(tmp_path, routing=bad))

    assert "2 problems" in str(raised.value)
    assert "ollama.priority" in str(raised.value) and "local_model_target_percentage" in str(raised.value)


def test_a_missing_file_is_named(tmp_path: Path):
    with pytest.raises(CommandError, match=r"nowhere\.yaml: no such file"):
        load(tmp_path / "nowhere.yaml")
    assert not Provider.objects.exists()


def test_a_provider_without_a_kind_is_told_to_give_one(tmp_path: Path):
    routing = ROUTING.replace("  kind: anthropic\n", "")

    with pytest.raises(CommandError, match=r"llm_routing\.yaml:7: claude\.kind: is required"):
        load(*write_configs(tmp_path, routing=routing))


def test_it_refuses_yaml_aliases_at_once_so_a_billion_laughs_file_cannot_blow_up(tmp_path: Path):
    laughs = ['lol0: &lol0 ["lol"]'] + [f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = tmp_path / "llm_routing.yaml"
    bomb.write_text("\n".join(laughs) + "\n")
    before = snapshot()

    with pytest.raises(CommandError) as refused:
        load(bomb)

    assert "llm_routing.yaml:2: malformed YAML: aliases (*lol0) are not allowed: write the value out" in str(
        refused.value
    )
    assert snapshot() == before
