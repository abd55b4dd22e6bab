"""Monthly cloud budgets (routing.budget): a cloud call that could take its user past the month's
budget is not made, local still is, reservations hold across concurrent callers, and max_tokens
is capped at the model's output limit."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from routing.budget import budget_status
from routing.models import CloudBudget, LedgerEntry, LLMModel, Provider
from routing.router import NoProviderAvailable, route
from tests.factories import user_create
from tests.routing.conftest_router import ask, fresh_routing, make_provider, make_rule, set_policy  # noqa: F401

KEY_ENV = "SWITCHYARD_TEST_ANTHROPIC_KEY"
MODEL = "claude-3-5-haiku-latest"  # one the fake serves
# 1,000 answer tokens at $15 per million is $0.015; the 5-word prompt adds a few hundredths of a cent.
PRICE = ("3", "15")


@pytest.fixture
def cloud(fake_anthropic, monkeypatch: pytest.MonkeyPatch):
    """A cloud provider (the Anthropic fake) that alone offers reasoning, answering with 1,000 tokens."""
    monkeypatch.setenv(KEY_ENV, "sk-ant-test-1234567890")
    fake_anthropic.usage = {
        "input_tokens": 9,
        "output_tokens": 1000,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    make_provider(
        "claude",
        kind="anthropic",
        base_url=fake_anthropic.base_url,
        model=MODEL,
        is_local=False,
        priority=2,
        api_key_env=KEY_ENV,
        price=PRICE,
        capabilities=["reasoning", "code_generation"],
    )
    return fake_anthropic


def spent_before(user, provider_name: str, amount: str) -> LedgerEntry:
    """A completed cloud call earlier this month that cost `amount`."""
    provider = Provider.objects.get(name=provider_name)
    return LedgerEntry.objects.create(
        created_at=timezone.now() - timedelta(seconds=5),
        provider=provider,
        model_name=provider.default_model,
        is_local=False,
        outcome="success",
        cost_usd=Decimal(amount),
        user=user,
    )


def worst_case(max_tokens: int = 1000) -> Decimal:
    prompt = 4 + 7  # "Write a haiku about routers." is 28 characters: 7 tokens, and 4 per message
    return (Decimal(prompt) * 3 + Decimal(max_tokens) * 15) / Decimal(1_000_000)


@pytest.mark.django_db
@pytest.mark.usefixtures("fresh_routing")
class TestOneCaller:
    def test_a_cloud_call_that_could_pass_the_budget_is_not_made_and_local_takes_the_request(
        self, cloud, fake_openai
    ) -> None:
        ana = user_create("ana")
        CloudBudget.objects.create(user=ana, monthly_usd=Decimal("1.00"))
        spent_before(ana, "claude", "0.99")
        make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini", priority=1)
        make_rule("think-in-the-cloud", escalate_capabilities=["reasoning"])  # cloud first

        result = route(ask(user_id=ana.pk, capability="reasoning", max_tokens=1000))

        assert (result.provider, result.is_local) == ("local", True)
        assert cloud.requests == []  # the cloud call was never made
        assert result.reason.startswith(
            "fallback: user ana's cloud budget: $0.0100 of $1.00 left this month, this call could cost $0.0150"
        )
        assert not LedgerEntry.objects.filter(provider__name="claude", user=ana, outcome="started").exists()

    def test_with_no_local_provider_the_request_fails_saying_so(self, cloud) -> None:
        ana = user_create("ana")
        CloudBudget.objects.create(user=ana, monthly_usd=Decimal("1.00"))
        spent_before(ana, "claude", "0.99")

        with pytest.raises(NoProviderAvailable) as refused:
            route(ask(user_id=ana.pk, capability="reasoning", max_tokens=1000))

        assert refused.value.reason == (
            "no provider could take the request: claude: user ana's cloud budget: $0.0100 of $1.00 left this month, "
            "this call could cost $0.0150"
        )
        assert cloud.requests == []

    def test_a_user_without_a_budget_of_their_own_has_the_policy_default(self, cloud) -> None:
        set_policy(monthly_cloud_budget_usd=Decimal("0.01"))
        ana = user_create("ana")

        with pytest.raises(NoProviderAvailable, match=r"user ana's cloud budget: \$0.0100 of \$0.0100 left this month"):
            route(ask(user_id=ana.pk, capability="reasoning", max_tokens=1000))

        assert budget_status(user_id=ana.pk).limit_usd == Decimal("0.01")

    def test_a_call_that_fits_reserves_its_worst_case_and_settles_to_the_real_cost(self, cloud) -> None:
        ana = user_create("ana")
        seen: list = []

        def during_the_call(result) -> None:
            seen.append(budget_status(user_id=ana.pk))

        result = route(ask(user_id=ana.pk, capability="reasoning", max_tokens=2000), on_success=during_the_call)

        # While the call ran its row held the worst case (2,000 answer tokens); now its real cost (1,000).
        assert seen[0].reserved_usd == worst_case(2000)
        real = Decimal(9 * 3 + 1000 * 15) / Decimal(1_000_000)
        assert result.entry.cost_usd == real
        after = budget_status(user_id=ana.pk)
        assert (after.spent_usd, after.reserved_usd, after.limit_usd) == (real, Decimal(0), Decimal("20"))
        assert after.remaining_usd == Decimal("20") - real
        assert LedgerEntry.objects.get(pk=result.entry.pk).reserved_usd is None

    def test_calls_for_no_user_and_local_calls_are_not_limited(self, cloud, fake_openai) -> None:
        set_policy(monthly_cloud_budget_usd=Decimal("0"))
        assert route(ask(capability="reasoning", max_tokens=1000)).provider == "claude"

        make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini", priority=1)
        ana = user_create("ana")
        assert route(ask(user_id=ana.pk, max_tokens=1000)).provider == "local"

    def test_a_failed_cloud_call_gives_its_reservation_back(self, cloud) -> None:
        ana = user_create("ana")
        cloud.behave("forbidden")

        with pytest.raises(NoProviderAvailable):
            route(ask(user_id=ana.pk, capability="reasoning", max_tokens=1000))

        status = budget_status(user_id=ana.pk)
        assert (status.spent_usd, status.reserved_usd) == (Decimal(0), Decimal(0))

    def test_last_months_spend_does_not_count(self, cloud) -> None:
        ana = user_create("ana")
        CloudBudget.objects.create(user=ana, monthly_usd=Decimal("1.00"))
        old = spent_before(ana, "claude", "5.00")
        start = timezone.now().replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        LedgerEntry.objects.filter(pk=old.pk).update(created_at=start - timedelta(seconds=1))

        assert route(ask(user_id=ana.pk, capability="reasoning", max_tokens=1000)).provider == "claude"

    def test_max_tokens_is_capped_at_the_models_output_limit(self, cloud) -> None:
        LLMModel.objects.filter(name=MODEL).update(max_output_tokens=8192)
        set_policy()  # re-read the table

        route(ask(capability="reasoning", max_tokens=1_000_000))

        assert cloud.requests[-1].json["max_tokens"] == 8192


CALLERS = 8
LIMIT = Decimal("1.00")
SPENT = Decimal("0.95")  # room for three calls of $0.0150 at most (worst case), not four


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_routing")
def test_concurrent_callers_against_a_nearly_spent_budget_overspend_by_at_most_one_call(cloud) -> None:
    """A budget race: eight threads, each with its own database connection, ask for a cloud call
    at once for a user with $0.05 left; each call's worst case is $0.0150 and really costs about
    that. Without the lock all eight would see $0.05 left and go."""
    cloud.behave("ok", delay=0.3)  # the calls overlap: none has settled before the others reserve
    ana = user_create("ana")
    CloudBudget.objects.create(user=ana, monthly_usd=LIMIT)
    spent_before(ana, "claude", str(SPENT))
    start = threading.Barrier(CALLERS)
    outcomes: list[str] = []

    def caller() -> None:
        try:
            start.wait()
            outcomes.append(route(ask(user_id=ana.pk, capability="reasoning", max_tokens=1000)).provider)
        except NoProviderAvailable as refused:
            outcomes.append(refused.reason)
        finally:
            connection.close()

    threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    spent = budget_status(user_id=ana.pk)
    assert len(cloud.requests) == 3
    assert outcomes.count("claude") == 3
    assert spent.reserved_usd == Decimal(0)
    assert spent.spent_usd <= LIMIT + worst_case()
    assert spent.spent_usd == SPENT + 3 * Decimal(9 * 3 + 1000 * 15) / Decimal(1_000_000)
