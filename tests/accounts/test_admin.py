"""Staff manage anyone's keys in the admin: the secret shown once when made there, never stored or shown again."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import ApiKey, Team
from accounts.services import key_authenticate, key_create
from tests.agents.views_helpers import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(client, admin_user):
    client.force_login(admin_user)
    return client


def test_staff_create_a_key_for_someone_and_see_it_once(admin):
    ana = make_user("ana")

    response = admin.post(
        reverse("admin:accounts_apikey_add"),
        {"user": ana.pk, "name": "for ana", "expires_at_0": "", "expires_at_1": "", "allowed_models": "[]"},
        follow=True,
    )

    key = ApiKey.objects.get()
    shown = [str(message) for message in response.context["messages"] if "shown this once" in str(message)]
    secret = shown[0].rsplit(" ", 1)[1]
    assert key_authenticate(secret).user == ana
    page = admin.get(reverse("admin:accounts_apikey_change", args=[key.pk])).content.decode()
    assert key.prefix in page and secret not in page and key.key_hash not in page


def test_staff_see_and_revoke_anyones_keys(admin):
    created = key_create(user=make_user("bob"), name="bob's laptop")
    listing = admin.get(reverse("admin:accounts_apikey_changelist")).content.decode()
    assert created.key.prefix in listing and created.secret not in listing

    admin.post(
        reverse("admin:accounts_apikey_changelist"),
        {"action": "revoke", "_selected_action": [created.key.pk]},
    )

    assert ApiKey.objects.get().revoked_at is not None


def test_staff_set_a_keys_and_a_teams_monthly_cloud_budget(admin):
    created = key_create(user=make_user("ana"), name="ci")
    admin.post(
        reverse("admin:accounts_apikey_change", args=[created.key.pk]),
        {"name": "ci", "expires_at_0": "", "expires_at_1": "", "allowed_models": "[]", "monthly_cloud_budget_usd": "3"},
    )
    admin.post(
        reverse("admin:accounts_team_add"),
        {
            "name": "platform",
            "monthly_cloud_budget_usd": "50",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )

    assert ApiKey.objects.get().monthly_cloud_budget_usd == 3
    assert Team.objects.get().monthly_cloud_budget_usd == 50
    assert (
        '<td class="field-cloud_budget">$50.00</td>'
        in admin.get(reverse("admin:accounts_team_changelist")).content.decode()
    )
    assert (
        '<td class="field-cloud_budget">$3.00</td>'
        in admin.get(reverse("admin:accounts_apikey_changelist")).content.decode()
    )


def test_staff_set_a_keys_rate_limits_above_the_servers_default(admin, settings):
    settings.SWITCHYARD_KEY_RPM = 120
    created = key_create(user=make_user("bob"), name="batch")
    fields = {"user": created.key.user_id, "name": "batch", "expires_at_0": "", "expires_at_1": ""}

    admin.post(
        reverse("admin:accounts_apikey_change", args=[created.key.pk]),
        {**fields, "allowed_models": "[]", "requests_per_minute": "1000", "tokens_per_minute": ""},
    )

    assert ApiKey.objects.get().rate_limits() == (1000, settings.SWITCHYARD_KEY_TPM)


@pytest.mark.parametrize("given", ['"gpt-4o"', "5", '{"gpt-4o": true}', '[""]'])
def test_staff_are_told_the_model_limit_is_a_list_of_names_and_the_key_keeps_its_own(admin, given):
    """Not a list of names in the JSON field: a string would limit the key to its letters, a number
    would make every gateway call with the key fail."""
    created = key_create(user=make_user("ana"), name="ci", allowed_models=["gemma"])

    response = admin.post(
        reverse("admin:accounts_apikey_change", args=[created.key.pk]),
        {"name": "ci", "expires_at_0": "", "expires_at_1": "", "allowed_models": given},
    )

    assert response.status_code == 200
    assert "Each model is a name" in response.content.decode()
    assert ApiKey.objects.get().allowed_models == ["gemma"]


def test_staff_set_a_teams_rate_limits_and_a_team_limited_to_zero_is_refused(admin):
    team = Team.objects.create(name="platform")
    fields = {"name": "platform", "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"}

    admin.post(
        reverse("admin:accounts_team_change", args=[team.pk]),
        {**fields, "requests_per_minute": "60", "tokens_per_minute": ""},
    )
    refused = admin.post(
        reverse("admin:accounts_team_change", args=[team.pk]),
        {**fields, "requests_per_minute": "0", "tokens_per_minute": ""},
    )

    team.refresh_from_db()
    assert (team.requests_per_minute, team.tokens_per_minute) == (60, None)  # empty: no team limit
    assert refused.status_code == 200 and "greater than or equal to 1" in refused.content.decode()
    listing = admin.get(reverse("admin:accounts_team_changelist")).content.decode()
    assert '<td class="field-requests_per_minute">60</td>' in listing
