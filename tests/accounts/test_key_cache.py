"""The gateway's key check is remembered for a few seconds, and a key that stops being valid stops
working at once in the process that changed it and within a second in the others."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token

from accounts import services
from accounts.models import ApiKey, Membership, Team
from accounts.services import KeyRefused, key_authenticate_cached, key_create, key_revoke, token_revoke
from tests.agents.views_helpers import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_key_cache(monkeypatch):
    """Nothing remembered from another test, and the shared version read on the first check."""
    monkeypatch.setattr(services, "_key_cache", services._KeyCache())
    cache.delete(services.KEYS_VERSION_KEY)


def refused_within(secret: str, seconds: float) -> float:
    """Seconds until the key is refused, asked every 20 ms; fails after `seconds`."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        try:
            key_authenticate_cached(secret)
        except KeyRefused:
            return time.monotonic() - started
        time.sleep(0.02)
    pytest.fail(f"the key still worked after {seconds} s")


def test_a_key_let_in_once_is_checked_again_without_a_query():
    secret = key_create(user=make_user("ana"), name="laptop").secret
    first = key_authenticate_cached(secret)

    with CaptureQueriesContext(connection) as queries:
        again = key_authenticate_cached(secret)

    assert again.user == first.user and again.key == first.key
    assert len(queries) == 0


def test_a_wrong_key_is_refused_every_time_and_never_remembered():
    secret = key_create(user=make_user("ana"), name="laptop").secret
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")

    for _ in range(2):
        with CaptureQueriesContext(connection) as queries, pytest.raises(KeyRefused, match="Invalid API key"):
            key_authenticate_cached(wrong)
        assert len(queries) == 1  # looked up each time


def test_a_key_revoked_in_this_process_is_refused_on_its_next_call(django_capture_on_commit_callbacks):
    created = key_create(user=make_user("ana"), name="laptop")
    key_authenticate_cached(created.secret)

    with django_capture_on_commit_callbacks(execute=True):
        key_revoke(key=created.key)

    with pytest.raises(KeyRefused, match="revoked"):
        key_authenticate_cached(created.secret)


def test_a_key_revoked_in_another_process_is_refused_within_a_second():
    created = key_create(user=make_user("ana"), name="laptop")
    key_authenticate_cached(created.secret)

    # What key_revoke does in another web process: the row, then a new version in the shared cache
    # (this process's memory is not cleared).
    ApiKey.objects.filter(pk=created.key.pk).update(revoked_at=timezone.now())
    cache.set(services.KEYS_VERSION_KEY, uuid.uuid4().hex, timeout=None)

    assert refused_within(created.secret, 3.0) <= services.KEY_VERSION_CHECK_S + 0.3


def test_a_key_changed_behind_the_services_back_is_refused_once_its_entry_expires(monkeypatch):
    monkeypatch.setattr(services, "KEY_CACHE_S", 0.3)
    created = key_create(user=make_user("ana"), name="laptop")
    key_authenticate_cached(created.secret)

    ApiKey.objects.filter(pk=created.key.pk).update(revoked_at=timezone.now())  # no version published

    assert refused_within(created.secret, 3.0) <= 0.3 + 0.3


def test_deactivating_the_user_or_editing_the_key_takes_effect_on_the_next_call(django_capture_on_commit_callbacks):
    ana = make_user("ana")
    created = key_create(user=ana, name="laptop", allowed_models=["auto"])
    assert key_authenticate_cached(created.secret).allowed_models == ("auto",)

    with django_capture_on_commit_callbacks(execute=True):
        created.key.allowed_models = ["auto", "mistral:latest"]
        created.key.save()
    assert key_authenticate_cached(created.secret).allowed_models == ("auto", "mistral:latest")

    with django_capture_on_commit_callbacks(execute=True):
        ana.is_active = False
        ana.save()
    with pytest.raises(KeyRefused, match="inactive"):
        key_authenticate_cached(created.secret)


def test_an_older_token_deleted_is_refused_on_its_next_call(django_capture_on_commit_callbacks):
    ana = make_user("ana")
    token = Token.objects.create(user=ana)
    assert key_authenticate_cached(token.key).user == ana

    with django_capture_on_commit_callbacks(execute=True):
        token_revoke(user=ana)

    with pytest.raises(KeyRefused):
        key_authenticate_cached(token.key)


def test_a_remembered_key_is_refused_once_it_expires():
    created = key_create(user=make_user("ana"), name="brief", expires_at=timezone.now() + timedelta(seconds=1))
    key_authenticate_cached(created.secret)

    time.sleep(1.05)

    with pytest.raises(KeyRefused, match="expired"):
        key_authenticate_cached(created.secret)


def test_a_remembered_key_still_records_its_last_use_once_a_minute():
    created = key_create(user=make_user("ana"), name="laptop")
    holder = key_authenticate_cached(created.secret)
    long_ago = timezone.now() - timedelta(minutes=5)
    ApiKey.objects.update(last_used_at=long_ago)
    holder.key.last_used_at = long_ago  # as if the first use had been five minutes ago

    key_authenticate_cached(created.secret)

    assert timezone.now() - ApiKey.objects.get().last_used_at < timedelta(seconds=5)


def test_joining_a_team_reaches_a_remembered_key_on_its_next_call(django_capture_on_commit_callbacks):
    ana = make_user("ana")
    created = key_create(user=ana, name="laptop")
    assert key_authenticate_cached(created.secret).team_id is None

    with django_capture_on_commit_callbacks(execute=True):
        team = Team.objects.create(name="platform")
        Membership.objects.create(user=ana, team=team)

    assert key_authenticate_cached(created.secret).team_id == team.pk


def test_a_key_brings_its_team_with_it_and_a_teams_new_rate_limits_reach_it_on_its_next_call(
    django_capture_on_commit_callbacks,
):
    ana = make_user("ana")
    team = Team.objects.create(name="platform")
    Membership.objects.create(user=ana, team=team)
    created = key_create(user=ana, name="laptop")
    with CaptureQueriesContext(connection) as queries:
        holder = key_authenticate_cached(created.secret)
        assert (holder.team, holder.team.requests_per_minute) == (team, None)
    assert len(queries) == 2  # the key with its user, membership and team; its last use written

    with django_capture_on_commit_callbacks(execute=True):
        team.requests_per_minute = 30
        team.save()

    assert key_authenticate_cached(created.secret).team.requests_per_minute == 30
