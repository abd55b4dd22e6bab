"""Personal API keys: made (the secret returned once), revoked, and checked for every surface that
takes a key (the REST API's authentication class and the gateway), so the rule is in one place.

A key reads `sy_<8 letters or digits>_<40 letters or digits>` (about 238 random bits after the
prefix). Only the SHA-256 of the whole key is stored; the first part (`sy_` and 8 characters) is
the key's visible prefix and how its row is found. DRF tokens made before these keys (or by
`manage.py drf_create_token`, which CI's smoke test uses) keep working until they are revoked.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone
from rest_framework.authtoken.models import Token

from accounts.models import ApiKey, Membership
from core.formatting import timestamp

PREFIX_WORD = "sy_"
PREFIX_LENGTH = len(PREFIX_WORD) + 8
SECRET_LENGTH = 40
ALPHABET = string.ascii_letters + string.digits
# last_used_at is written at most this often per key: not one write per request.
LAST_USED_EVERY = timedelta(minutes=1)
MAX_MODELS = 50
MAX_MODEL_NAME = 200


class KeyRefused(Exception):
    """A key that does not let its holder in; the message says why, for a 401."""


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    secret: str  # the whole key: shown once, never stored


@dataclass(frozen=True)
class KeyHolder:
    """Who a request's key belongs to, and what the key allows."""

    user: AbstractBaseUser
    key: ApiKey | None  # None for an older DRF token

    @property
    def team_id(self) -> int | None:
        return user_team_id(self.user)

    @property
    def allowed_models(self) -> tuple[str, ...]:
        """The model names this key may ask the gateway for; empty: any."""
        return tuple(self.key.allowed_models) if self.key else ()


def user_team_id(user: AbstractBaseUser) -> int | None:
    """The id of the user's team, or None; no query when the membership was selected with the user."""
    try:
        return user.membership.team_id
    except Membership.DoesNotExist:
        return None


def key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _random(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def models_clean(names: Iterable[str]) -> list[str]:
    """The allowed model names, stripped, each once, in the order given; ValidationError if not names."""
    cleaned: list[str] = []
    for name in names:
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_MODEL_NAME:
            raise ValidationError({"allowed_models": [f"Each model is a name of 1 to {MAX_MODEL_NAME} characters."]})
        if name.strip() not in cleaned:
            cleaned.append(name.strip())
    if len(cleaned) > MAX_MODELS:
        raise ValidationError({"allowed_models": [f"At most {MAX_MODELS} models."]})
    return cleaned


def rate_limits_check(*, requests_per_minute: int | None, tokens_per_minute: int | None) -> None:
    """A key's own rate limits, as its user may set them: empty (the server's default) or from 1 up to
    that default (a key may be held lower, e.g. a CI script's; only staff raise one, in the admin).
    ValidationError naming the field otherwise."""
    for field, value, default in (
        ("requests_per_minute", requests_per_minute, settings.SWITCHYARD_KEY_RPM),
        ("tokens_per_minute", tokens_per_minute, settings.SWITCHYARD_KEY_TPM),
    ):
        if value is None:
            continue
        if value < 1:
            raise ValidationError({field: ["At least 1; leave it empty for the server's default."]})
        if default and value > default:
            raise ValidationError({field: [f"At most the server's default, {default}; staff can raise a key's limit."]})


def key_create(
    *,
    user: AbstractBaseUser,
    name: str,
    expires_at: datetime | None = None,
    allowed_models: Iterable[str] = (),
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
    limits_checked: bool = True,
) -> NewKey:
    """A new key for the user; the returned secret is the only copy there will ever be.

    The rate limits are held to what a user may set (`rate_limits_check`) unless `limits_checked` is
    False: staff in the admin set any limit."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": ["Give the key a name, to tell it from your others."]})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": ["The expiry must be in the future."]})
    models = models_clean(allowed_models)
    if limits_checked:
        rate_limits_check(requests_per_minute=requests_per_minute, tokens_per_minute=tokens_per_minute)
    prefix = PREFIX_WORD + _random(PREFIX_LENGTH - len(PREFIX_WORD))
    secret = f"{prefix}_{_random(SECRET_LENGTH)}"
    key = ApiKey.objects.create(
        user=user,
        name=name,
        prefix=prefix,
        key_hash=key_hash(secret),
        expires_at=expires_at,
        allowed_models=models,
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
    )
    return NewKey(key=key, secret=secret)


def key_revoke(*, key: ApiKey) -> bool:
    """Stop the key working; False when it was revoked already."""
    return bool(ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()))


def _touch(key: ApiKey, now: datetime) -> None:
    if key.last_used_at is not None and now - key.last_used_at < LAST_USED_EVERY:
        return
    # Conditional, so concurrent requests of one key write it once a minute at most.
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_EVERY)
    ApiKey.objects.filter(stale, pk=key.pk).update(last_used_at=now)


def key_authenticate(raw: str) -> KeyHolder:
    """The holder of a key sent by a client: an API key (its last use recorded), else an older DRF
    token. Raises KeyRefused for anything else: unknown, revoked, expired, or an inactive user."""
    if raw.startswith(PREFIX_WORD):
        key = ApiKey.objects.select_related("user__membership").filter(prefix=raw[:PREFIX_LENGTH]).first()
        if key is None or not hmac.compare_digest(key.key_hash, key_hash(raw)):
            raise KeyRefused("Invalid API key.")
        now = timezone.now()
        if key.revoked_at is not None:
            raise KeyRefused("This API key was revoked.")
        if key.expires_at is not None and key.expires_at <= now:
            raise KeyRefused(f"This API key expired at {timestamp(key.expires_at)}.")
        if not key.user.is_active:
            raise KeyRefused("User inactive or deleted.")
        _touch(key, now)
        return KeyHolder(user=key.user, key=key)
    token = Token.objects.select_related("user__membership").filter(key=raw).first()
    if token is None or not token.user.is_active:
        raise KeyRefused("Invalid API key.")
    return KeyHolder(user=token.user, key=None)


def token_revoke(*, user: AbstractBaseUser) -> bool:
    """Delete the user's older DRF token; False when they had none."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return bool(deleted)
