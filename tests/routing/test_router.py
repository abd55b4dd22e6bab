"""Which providers a request goes to, in what order and why: the decision, without HTTP."""

import pytest
from django.core.cache import cache

from routing import table as routing_table
from routing.plan import plan_route
from routing.router import NoProviderAvailable, route
from routing.table import current_table, invalidate_routing_cache
from tests.routing.conftest_router import ask, fresh_routing, make_provider, make_rule  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_routing")]
NOWHERE = "http://127.0.0.1:9"  # never called: these tests stop at the decision


def plan(**fields):
    fields.setdefault("prompt_tokens", 100)
    return plan_route(current_table(), has_key=lambda name: name == "ANTHROPIC_API_KEY", **fields)


def names(decision) -> list[str]:
    return [candidate.provider.name for candidate in decision.candidates]


def test_it_tries_local_providers_first_then_cloud_by_priority() -> None:
    make_provider("openai", base_url=NOWHERE, kind="openai", is_local=False, priority=1)
    make_provider(
        "anthropic", base_url=NOWHERE, kind="anthropic", is_local=False, priority=2, api_key_env="ANTHROPIC_API_KEY"
    )
    make_provider("ollama", base_url=NOWHERE, kind="ollama", priority=3)

    decision = plan()

    assert names(decision) == ["ollama", "openai", "anthropic"]
    assert [c.reason for c in decision.candidates] == ["priority 3, local", "priority 1, cloud", "priority 2, cloud"]


def test_it_makes_no_database_query_for_a_decision(django_assert_num_queries) -> None:
    make_provider("ollama", base_url=NOWHERE, kind="ollama")
    make_rule("docs", capability="documentation")
    current_table()  # the first decision in a process loads the table

    with django_assert_num_queries(0):
        decision = plan_route(current_table(), capability="documentation", prompt_tokens=50)

    assert names(decision) == ["ollama"]


def test_it_reloads_the_table_after_an_invalidation() -> None:
    first = make_provider("first", base_url=NOWHERE, priority=1)
    make_provider("second", base_url=NOWHERE, priority=2)
    assert names(plan()) == ["first", "second"]

    first.priority = 3
    first.save()
    invalidate_routing_cache()

    assert names(plan()) == ["second", "first"]


def test_it_checks_the_shared_version_at_most_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    make_provider("first", base_url=NOWHERE)
    monkeypatch.setattr(routing_table, "VERSION_CHECK_INTERVAL_S", 3600.0)
    loaded = current_table()

    cache.set(routing_table.VERSION_KEY, "changed by another worker", timeout=None)

    assert current_table() is loaded
    monkeypatch.setattr(routing_table, "VERSION_CHECK_INTERVAL_S", 0.0)
    assert current_table() is not loaded
    assert current_table().version == "changed by another worker"


def test_it_uses_the_first_matching_rule_in_its_provider_order() -> None:
    a = make_provider("a", base_url=NOWHERE, priority=1)
    b = make_provider("b", base_url=NOWHERE, priority=2)
    make_rule("docs-on-b", capability="documentation", providers=[b, a], position=1)
    make_rule("anything", providers=[a], position=2)

    assert names(plan(capability="documentation")) == ["b", "a"]
    assert plan(capability="documentation").candidates[0].reason == "rule docs-on-b, local"
    assert names(plan(capability="testing")) == ["a"]


def test_it_matches_rules_by_agent_and_prompt_size() -> None:
    a = make_provider("a", base_url=NOWHERE, priority=1)
    b = make_provider("b", base_url=NOWHERE, priority=2)
    make_rule("marcus-big", agent="marcus", min_prompt_tokens=1000, providers=[b])
    make_rule("small", max_prompt_tokens=999, providers=[a], position=1)

    assert plan(agent="marcus", prompt_tokens=2000).rule.name == "marcus-big"
    assert plan(agent="marcus", prompt_tokens=500).rule.name == "small"
    assert plan(agent="emily", prompt_tokens=2000).rule is None


def test_it_ignores_disabled_rules_and_skips_disabled_providers() -> None:
    a = make_provider("a", base_url=NOWHERE, priority=1, enabled=False)
    make_provider("b", base_url=NOWHERE, priority=2)
    make_rule("off", providers=[a], enabled=False)

    decision = plan()

    assert decision.rule is None
    assert names(decision) == ["b"]
    assert "a: disabled" in decision.skipped


def test_it_keeps_only_providers_offering_the_capability_and_picks_the_model_that_has_it() -> None:
    make_provider("coder", base_url=NOWHERE, model="qwen-coder", model_capabilities=["code_generation"], priority=1)
    make_provider("writer", base_url=NOWHERE, capabilities=["documentation"], priority=2)

    decision = plan(capability="code_generation")

    assert names(decision) == ["coder"]
    assert decision.candidates[0].model == "qwen-coder"
    assert "writer: does not offer code_generation" in decision.skipped


def test_it_escalates_a_large_prompt_to_the_cloud_first() -> None:
    make_provider("ollama", base_url=NOWHERE, kind="ollama", priority=1)
    make_provider("openai", base_url=NOWHERE, kind="openai", is_local=False, priority=2)
    make_rule("large-prompts", escalate_above_tokens=4000)

    small, large = plan(prompt_tokens=3000), plan(prompt_tokens=6100)

    assert names(small) == ["ollama", "openai"]
    assert small.candidates[0].reason == "priority 1, local"  # the rule changed nothing here
    assert names(large) == ["openai", "ollama"]
    assert large.candidates[0].reason == (
        "escalated: ~6,100 prompt tokens > 4,000 (rule large-prompts); priority 2, cloud"
    )


def test_it_escalates_a_capability_marked_complex() -> None:
    make_provider("ollama", base_url=NOWHERE, kind="ollama", priority=1)
    make_provider("openai", base_url=NOWHERE, kind="openai", is_local=False, priority=2)
    make_rule("hard", escalate_capabilities=["architecture"])

    decision = plan(capability="architecture")

    assert names(decision) == ["openai", "ollama"]
    assert decision.candidates[0].reason.startswith("escalated: architecture is marked complex")


def test_it_never_offers_a_cloud_provider_when_the_rule_forbids_it() -> None:
    make_provider("ollama", base_url=NOWHERE, kind="ollama", priority=1)
    make_provider("openai", base_url=NOWHERE, kind="openai", is_local=False, priority=2)
    make_rule("private", agent="legal", allow_cloud=False, escalate_above_tokens=10)

    decision = plan(agent="legal", prompt_tokens=5000)

    assert names(decision) == ["ollama"]
    assert "openai: cloud not allowed by rule private" in decision.skipped


def test_it_skips_a_cloud_provider_whose_key_is_not_set() -> None:
    make_provider("openai", base_url=NOWHERE, kind="openai", is_local=False, api_key_env="OPENAI_API_KEY")
    make_provider("anthropic", base_url=NOWHERE, kind="anthropic", is_local=False, api_key_env="ANTHROPIC_API_KEY")

    decision = plan()

    assert names(decision) == ["anthropic"]
    assert "openai: no key (OPENAI_API_KEY not set)" in decision.skipped


def test_it_skips_a_model_whose_context_is_too_small() -> None:
    make_provider("tiny", base_url=NOWHERE, context_window=2048, priority=1)
    make_provider("roomy", base_url=NOWHERE, context_window=32768, priority=2)

    decision = plan(prompt_tokens=6000)

    assert names(decision) == ["roomy"]
    assert "tiny: ~6,000 prompt tokens exceed m1's context of 2,048" in decision.skipped


def test_it_refuses_a_prompt_over_the_requests_own_limit_before_calling_anyone() -> None:
    make_provider("ollama", base_url=NOWHERE, kind="ollama")

    with pytest.raises(NoProviderAvailable) as refused:
        route(ask("x" * 4000, max_prompt_tokens=500))

    assert refused.value.reason == "prompt is ~1,004 tokens, over this request's limit of 500"
    assert refused.value.attempts == []


def test_it_says_why_when_no_provider_fits() -> None:
    make_provider("openai", base_url=NOWHERE, kind="openai", is_local=False, api_key_env="SWITCHYARD_TEST_UNSET_KEY")

    with pytest.raises(NoProviderAvailable) as none:
        route(ask())

    assert "openai: no key (SWITCHYARD_TEST_UNSET_KEY not set)" in none.value.reason


def test_a_request_for_a_concrete_model_goes_only_to_the_providers_serving_it_in_their_order() -> None:
    make_provider("ollama", base_url=NOWHERE, kind="ollama", model="mistral:latest", priority=1)
    make_provider("mac-studio", base_url=NOWHERE, kind="ollama", model="qwen-coder", priority=2)
    make_provider("cloud", base_url=NOWHERE, kind="openai", is_local=False, model="qwen-coder", priority=3)

    decision = plan(model="qwen-coder")

    assert names(decision) == ["mac-studio", "cloud"]
    assert [candidate.model for candidate in decision.candidates] == ["qwen-coder", "qwen-coder"]
