"""Budgets per team, user and key (routing.budget): the same rule at each scope, a call reserved only
if it fits in every one, the refusal naming its scope; the alert recorded and mailed once a month
per budget, after the commit, to the people it is about."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection
from django.utils import timezone

from accounts.models import ApiKey, Membership, Team
from accounts.services import key_create
from routing.budget import BudgetExceeded, budget_statuses
from routing.models import BudgetAlert, BudgetScope, LedgerEntry, Provider
from routing.router import NoProviderAvailable, route
from tests.factories import user_create
from tests.routing import test_budget
from tests.routing.conftest_router import ask, fresh_routing, make_provider, set_policy  # noqa: F401
from tests.routing.test_budget import MODEL, worst_case

cloud = test_budget.cloud  # the fixture: the Anthropic fake as the one cloud provider, $3 / $15 per million
REAL = Decimal(9 * 3 + 1000 * 15) / Decimal(1_000_000)  # what a call costs (the fake's usage)


def spent(amount: str, **whose) -> None:
    """A completed cloud call earlier this month that cost `amount`, for `whose` (user, team, api_key)."""
    provider = Provider.objects.get(name="claude")
    LedgerEntry.objects.create(
        created_at=timezone.now() - timedelta(seconds=5),
        provider=provider,
        model_name=MODEL,
        is_local=False,
        outcome="success",
        cost_usd=Decimal(amount),
        **whose,
    )


@pytest.fixture
def platform(cloud):
    """Team platform ($1.00 a month) with ana (email ana@example.com) and ben, and ana's key."""
    team = Team.objects.create(name="platform", monthly_cloud_budget_usd=Decimal("1.00"))
    ana = user_create("ana", email="ana@example.com")
    ben = user_create("ben", email="ben@example.com")
    for user in (ana, ben):
        Membership.objects.create(user=user, team=team)
    key = key_create(user=ana, name="ci").key
    return team, ana, ben, key


def ana_asks(team, ana, key=None, **fields):
    return ask(
        user_id=ana.pk,
        team_id=team.pk,
        api_key_id=key.pk if key else None,
        capability="reasoning",
        max_tokens=1000,
        **fields,
    )


@pytest.mark.django_db
@pytest.mark.usefixtures("fresh_routing")
class TestScopes:
    def test_the_teams_budget_refuses_a_call_that_fits_the_users_and_says_so(self, cloud, platform) -> None:
        team, ana, ben, _ = platform
        spent("0.99", user=ben, team=team)  # ben spent the team's budget; ana spent nothing

        with pytest.raises(NoProviderAvailable) as refused:
            route(ana_asks(team, ana))

        assert refused.value.reason == (
            "no provider could take the request: claude: team platform's cloud budget: $0.0100 of $1.00 left "
            "this month, this call could cost $0.0150"
        )
        assert isinstance(refused.value.budget, BudgetExceeded)
        assert (refused.value.budget.status.scope, refused.value.budget.status.name) == (BudgetScope.TEAM, "platform")
        assert cloud.requests == []

    def test_a_keys_budget_refuses_what_its_user_and_team_would_allow(self, cloud, platform) -> None:
        team, ana, _, key = platform
        ApiKey.objects.filter(pk=key.pk).update(monthly_cloud_budget_usd=Decimal("0.01"))

        with pytest.raises(NoProviderAvailable, match=rf"API key {key.prefix}'s cloud budget: \$0.0100 of \$0.0100"):
            route(ana_asks(team, ana, key))

        assert route(ana_asks(team, ana)).provider == "claude"  # the same user without the key

    def test_a_team_or_key_without_a_limit_has_none(self, cloud, platform) -> None:
        team, ana, _, key = platform
        Team.objects.filter(pk=team.pk).update(monthly_cloud_budget_usd=None)
        spent("500", team=team, api_key=key)

        assert route(ana_asks(team, ana, key)).provider == "claude"
        assert [status.scope for status in budget_statuses(user_id=ana.pk, team_id=team.pk, api_key_id=key.pk)] == [
            BudgetScope.USER
        ]

    def test_a_call_reserves_its_worst_case_in_every_scope_and_settles_in_each(self, cloud, platform) -> None:
        team, ana, _, key = platform
        ApiKey.objects.filter(pk=key.pk).update(monthly_cloud_budget_usd=Decimal("5"))
        seen = []

        route(
            ana_asks(team, ana, key),
            on_success=lambda result: seen.append(budget_statuses(user_id=ana.pk, team_id=team.pk, api_key_id=key.pk)),
        )

        assert [(status.scope, status.reserved_usd) for status in seen[0]] == [
            (BudgetScope.TEAM, worst_case()),
            (BudgetScope.USER, worst_case()),
            (BudgetScope.KEY, worst_case()),
        ]
        after = budget_statuses(user_id=ana.pk, team_id=team.pk, api_key_id=key.pk)
        assert [(status.spent_usd, status.reserved_usd) for status in after] == [(REAL, Decimal(0))] * 3
        assert [status.remaining_usd for status in after] == [1 - REAL, 20 - REAL, 5 - REAL]


@pytest.mark.django_db
@pytest.mark.usefixtures("fresh_routing")
class TestAlerts:
    def test_the_call_that_takes_a_team_past_the_share_mails_its_members_once_after_the_commit(
        self, cloud, platform, django_capture_on_commit_callbacks
    ) -> None:
        team, ana, ben, _ = platform
        spent("0.79", user=ben, team=team)

        with django_capture_on_commit_callbacks(execute=True) as first:
            route(ana_asks(team, ana))
        with django_capture_on_commit_callbacks(execute=True):
            route(ana_asks(team, ana))

        assert len(first) == 1
        assert len(mail.outbox) == 1
        assert sorted(mail.outbox[0].to) == ["ana@example.com", "ben@example.com"]
        assert mail.outbox[0].body.startswith(
            "Your team platform's cloud budget is 80.50% used this month: $0.8050 of $1.00, $0.1950 left."
        )
        assert list(BudgetAlert.objects.values_list("scope", "scope_id")) == [("team", team.pk)]

    def test_a_users_and_a_keys_alerts_go_to_the_user(
        self, cloud, platform, django_capture_on_commit_callbacks
    ) -> None:
        team, ana, ben, key = platform
        Team.objects.filter(pk=team.pk).update(monthly_cloud_budget_usd=None)
        ApiKey.objects.filter(pk=key.pk).update(monthly_cloud_budget_usd=Decimal("0.10"))
        set_policy(monthly_cloud_budget_usd=Decimal("0.05"), budget_alert_share=Decimal("0.5"))
        spent("0.02", user=ana)
        spent("0.04", user=ben, api_key=key)  # ben never holds ana's key; it stands for a call made with it

        with django_capture_on_commit_callbacks(execute=True):
            route(ana_asks(team, ana, key))

        assert [(message.to, message.subject) for message in mail.outbox] == [
            (["ana@example.com"], "Switchyard: your cloud budget is 70.07% used this month"),
            (["ana@example.com"], f"Switchyard: your API key {key.prefix}'s cloud budget is 55.03% used this month"),
        ]

    def test_a_refused_call_still_alerts_a_budget_past_the_share(
        self, cloud, platform, django_capture_on_commit_callbacks
    ) -> None:
        team, ana, ben, _ = platform
        spent("0.99", user=ben, team=team)

        with django_capture_on_commit_callbacks(execute=True), pytest.raises(NoProviderAvailable):
            route(ana_asks(team, ana))

        assert [message.subject for message in mail.outbox] == [
            "Switchyard: your team platform's cloud budget is 99.00% used this month"
        ]

    def test_a_zero_budget_means_no_cloud_and_sends_no_alert(
        self, cloud, platform, django_capture_on_commit_callbacks
    ) -> None:
        team, ana, _, key = platform
        ApiKey.objects.filter(pk=key.pk).update(monthly_cloud_budget_usd=Decimal(0))

        with django_capture_on_commit_callbacks(execute=True), pytest.raises(NoProviderAvailable):
            route(ana_asks(team, ana, key))

        assert mail.outbox == []


CALLERS = 8


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("fresh_routing")
def test_two_users_of_a_team_racing_past_its_alert_share_and_limit_get_one_alert_and_overspend_by_one_call_at_most(
    cloud, platform
) -> None:
    """Eight threads, four each for ana and ben, each with its own connection, against the team's
    last $0.05 (so past its 80% share already at the first reservation)."""
    cloud.behave("ok", delay=0.3)
    team, ana, ben, _ = platform
    spent("0.95", user=ben, team=team)
    BudgetAlert.objects.all().delete()
    start = threading.Barrier(CALLERS)
    served: list[str] = []

    def caller(user) -> None:
        try:
            start.wait()
            served.append(route(ana_asks(team, user)).provider)
        except NoProviderAvailable:
            pass
        finally:
            connection.close()

    threads = [threading.Thread(target=caller, args=(user,)) for user in (ana, ben) * (CALLERS // 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    team_budget = budget_statuses(user_id=ana.pk, team_id=team.pk)[0]
    assert (len(cloud.requests), len(served)) == (3, 3)
    assert team_budget.spent_usd == Decimal("0.95") + 3 * REAL <= Decimal("1.00") + worst_case()
    assert len(mail.outbox) == 1
