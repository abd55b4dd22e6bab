from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from accounts.models import ApiKey, Membership


def key_list(*, user: AbstractBaseUser) -> QuerySet[ApiKey]:
    """The user's keys that are not revoked (expired ones included), newest first."""
    return ApiKey.objects.filter(user=user, revoked_at__isnull=True)


def key_get(*, user: AbstractBaseUser, pk: int) -> ApiKey | None:
    """One of the user's unrevoked keys (never another user's, not even for staff), or None."""
    return key_list(user=user).filter(pk=pk).first()


def team_id_of(*, user_id: int | None) -> int | None:
    """The id of the user's team, or None (no user, or a user in no team)."""
    if user_id is None:
        return None
    return Membership.objects.filter(user_id=user_id).values_list("team_id", flat=True).first()
