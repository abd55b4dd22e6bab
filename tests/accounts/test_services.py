"""A key is stored hashed, found by its prefix, and refused once revoked or expired."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from rest_framework.authtoken.models import Token

from accounts.models import ApiKey
from accounts.services import KeyRefused, key_authenticate, key_create, key_revoke
from tests.agents.views_helpers import make_user

pytestmark = pytest.mark.django_db


def test_the_key_is_stored_as_a_hash_never_in_plain_text():
    created = key_create(user=make_user("ana"), name="laptop")

    row = ApiKey.objects.values().get()
    assert created.secret.startswith(row["prefix"] + "_")
    assert row["prefix"].startswith("sy_") and len(row["prefix"]) == 11
    assert row["key_hash"] == hashlib.sha256(created.secret.encode()).hexdigest()
    assert all(created.secret not in str(value) for value in row.values())


def test_a_key_is_found_by_its_prefix_and_checked_whole():
    ana, bob = make_user("ana"), make_user("bob")
    mine, theirs = key_create(user=ana, name="a"), key_create(user=bob, name="b")

    assert key_authenticate(mine.secret).user == ana
    assert key_authenticate(theirs.secret).user == bob
    with pytest.raises(KeyRefused, match="Invalid API key"):
        key_authenticate(mine.secret[:-1] + ("A" if mine.secret[-1] != "A" else "B"))  # right prefix, wrong secret
    with pytest.raises(KeyRefused, match="Invalid API key"):
        key_authenticate("sy_nothere_" + "x" * 40)


def test_a_revoked_or_expired_key_or_an_inactive_user_is_refused():
    ana = make_user("ana")
    revoked = key_create(user=ana, name="old")
    assert key_revoke(key=revoked.key) is True
    assert key_revoke(key=revoked.key) is False
    expired = key_create(user=ana, name="brief", expires_at=timezone.now() + timedelta(minutes=5))
    ApiKey.objects.filter(pk=expired.key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    with pytest.raises(KeyRefused, match="revoked"):
        key_authenticate(revoked.secret)
    with pytest.raises(KeyRefused, match="expired"):
        key_authenticate(expired.secret)
    active = key_create(user=ana, name="fine")
    ana.is_active = False
    ana.save()
    with pytest.raises(KeyRefused, match="inactive"):
        key_authenticate(active.secret)


def test_the_last_use_is_written_at_most_once_a_minute():
    created = key_create(user=make_user("ana"), name="laptop")
    key_authenticate(created.secret)
    first = ApiKey.objects.get().last_used_at
    assert first is not None

    key_authenticate(created.secret)
    assert ApiKey.objects.get().last_used_at == first  # within the minute: no write

    ApiKey.objects.update(last_used_at=first - timedelta(minutes=2))
    key_authenticate(created.secret)
    assert ApiKey.objects.get().last_used_at > first


def test_an_older_drf_token_still_authenticates_until_it_is_deleted():
    ana = make_user("ana")
    token = Token.objects.create(user=ana)
    holder = key_authenticate(token.key)
    assert (holder.user, holder.key, holder.allowed_models) == (ana, None, ())
    key = token.key
    token.delete()
    with pytest.raises(KeyRefused):
        key_authenticate(key)


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"name": "  "}, "name"),
        ({"name": "x", "expires_at": timezone.now() - timedelta(days=1)}, "expires_at"),
        ({"name": "x", "allowed_models": ["ok", " "]}, "allowed_models"),
        ({"name": "x", "requests_per_minute": 0}, "requests_per_minute"),
        ({"name": "x", "tokens_per_minute": 200_001}, "tokens_per_minute"),  # over the server's default
    ],
)
def test_a_bad_key_request_is_refused_naming_the_field_and_nothing_is_stored(given, field):
    with pytest.raises(ValidationError) as raised:
        key_create(user=make_user("ana"), **given)
    assert field in raised.value.message_dict
    assert not ApiKey.objects.exists()


def test_allowed_models_are_kept_once_each_in_order():
    created = key_create(user=make_user("ana"), name="x", allowed_models=[" gemma ", "gpt-4o", "gemma"])
    assert created.key.allowed_models == ["gemma", "gpt-4o"]


def test_a_user_may_hold_a_key_below_the_servers_rate_limits_and_staff_may_set_any(settings):
    settings.SWITCHYARD_KEY_RPM, settings.SWITCHYARD_KEY_TPM = 120, 200_000
    ana = make_user("ana")

    lowered = key_create(user=ana, name="ci", requests_per_minute=10, tokens_per_minute=5000).key
    default = key_create(user=ana, name="laptop").key
    raised = key_create(user=ana, name="batch", requests_per_minute=0, tokens_per_minute=10**7, limits_checked=False)

    assert lowered.rate_limits() == (10, 5000)
    assert default.rate_limits() == (120, 200_000)
    assert raised.key.rate_limits() == (0, 10**7)  # 0: not limited
