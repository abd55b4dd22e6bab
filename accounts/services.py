"""Personal API keys: made (the secret returned once), revoked, and checked for every surface that
takes a key (the REST API's authentication class and the gateway), so the rule is in one place.

A key reads `sy_<8 letters or digits>_<40 letters or digits>` (about 238 random bits after the
prefix). Only the SHA-256 of the whole key is stored; the first part (`sy_` and 8 characters) is
the key's visible prefix and how its row is found. DRF tokens made before these keys (or by
`manage.py drf_create_token`, which CI's smoke test uses) keep working until they are revoked.

The gateway checks a key on every call: `key_authenticate_cached` remembers a key it let in for
KEY_CACHE_S in the process's memory (no query per call), and forgets every key of the process as
soon as any key, DRF token, user, team membership or team changes anywhere (`keys_changed`, on commit: a
revocation, an expiry or a model list edited, a user deactivated, deleted or moved to a team, a
team's rate limits edited). The
change is a new version in the shared cache (Redis), which each process reads at most every
KEY_VERSION_CHECK_S: a revoked key
stops working at once in the process that revoked it and within KEY_VERSION_CHECK_S (1 s) in the
others; while Redis is unreachable, within KEY_CACHE_S (5 s).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import string
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework.authtoken.models import Token

from accounts.models import ApiKey, Membership, Team
from core.formatting import timestamp

PREFIX_WORD = "sy_"
PREFIX_LENGTH = len(PREFIX_WORD) + 8
SECRET_LENGTH = 40
ALPHABET = string.ascii_letters + string.digits
# last_used_at is written at most this often per key: not one write per request.
LAST_USED_EVERY = timedelta(minutes=1)
MAX_MODELS = 50
MAX_MODEL_NAME = 200
# The largest rate limit the key's columns hold (PositiveIntegerField: PostgreSQL's integer); a
# larger one would be a 500 where the server's default (0: not limited) caps nothing.
MAX_RATE_LIMIT = 2_147_483_647
KEY_CACHE_S = 5.0  # a key let in is checked against the database again at least this often
KEY_VERSION_CHECK_S = 1.0  # how late a process may learn of a key revoked in another one
KEYS_VERSION_KEY = "accounts:keys:version"

logger = logging.getLogger(__name__)


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
    def team(self) -> Team | None:
        """The user's team (whose budget and rate limits its calls count against); no query when it
        was selected with the user, as key_authenticate does."""
        try:
            return self.user.membership.team
        except Membership.DoesNotExist:
            return None

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
        if value > MAX_RATE_LIMIT:
            raise ValidationError({field: [f"At most {MAX_RATE_LIMIT}; leave it empty for the server's default."]})
        if default and value > default:
            raise ValidationError({field: [f"At most the server's default, {default}; staff can raise a key's limit."]})


def key_create(
    *,
    user: AbstractBaseUser,
    name: str,
    expires_at: datetime | None = None,
    allowed_models: Iterable[str] = (),
    monthly_cloud_budget_usd: Decimal | None = None,
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
    if monthly_cloud_budget_usd is not None and monthly_cloud_budget_usd < 0:
        raise ValidationError({"monthly_cloud_budget_usd": ["A budget is $0 or more."]})
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
        monthly_cloud_budget_usd=monthly_cloud_budget_usd,
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
    )
    return NewKey(key=key, secret=secret)


def key_limits(key: ApiKey) -> list[str]:
    """What a key is held to beyond its user (models, a budget, rate limits of its own, an expiry); empty: nothing."""
    limits = {
        "models": bool(key.allowed_models),
        "a cloud budget": key.monthly_cloud_budget_usd is not None,
        "rate limits": key.requests_per_minute is not None or key.tokens_per_minute is not None,
        "an expiry": key.expires_at is not None,
    }
    return [name for name, held in limits.items() if held]


def key_create_allowed_check(*, by: ApiKey | None) -> None:
    """Raise PermissionDenied when the request creating a key came with a limited key: a new key
    would have none of its limits, so whoever holds a key given to a script (and leaked with it)
    could make themselves an unlimited one. The session (the page) and an unlimited key may."""
    held = key_limits(by) if by is not None else []
    if held:
        raise PermissionDenied(
            f"This API key is limited ({', '.join(held)}), so it cannot create keys: "
            "create them on the API keys page, or with a key that has no limits."
        )


def key_revoke(*, key: ApiKey) -> bool:
    """Stop the key working; False when it was revoked already."""
    revoked = bool(ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()))
    keys_changed()
    return revoked


def _touch(key: ApiKey, now: datetime) -> None:
    if key.last_used_at is not None and now - key.last_used_at < LAST_USED_EVERY:
        return
    # Conditional, so concurrent requests of one key write it once a minute at most.
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_EVERY)
    ApiKey.objects.filter(stale, pk=key.pk).update(last_used_at=now)
    key.last_used_at = now  # a key remembered by key_authenticate_cached is not written again for a minute


def key_authenticate(raw: str) -> KeyHolder:
    """The holder of a key sent by a client: an API key (its last use recorded), else an older DRF
    token. Raises KeyRefused for anything else: unknown, revoked, expired, or an inactive user."""
    if raw.startswith(PREFIX_WORD):
        key = ApiKey.objects.select_related("user__membership__team").filter(prefix=raw[:PREFIX_LENGTH]).first()
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
    token = Token.objects.select_related("user__membership__team").filter(key=raw).first()
    if token is None or not token.user.is_active:
        raise KeyRefused("Invalid API key.")
    return KeyHolder(user=token.user, key=None)


def token_revoke(*, user: AbstractBaseUser) -> bool:
    """Delete the user's older DRF token; False when they had none."""
    deleted, _ = Token.objects.filter(user=user).delete()
    keys_changed()
    return bool(deleted)


class _KeyCache:
    """This process's keys let in lately: SHA-256 of the key -> (when it was read, its holder)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[str, tuple[float, KeyHolder]] = {}
        self.generation = 0  # one more at each clear: a holder read before it is not kept
        self.version: object = None  # the shared cache's KEYS_VERSION_KEY when last read
        self.check_at = float("-inf")  # when to read it again (monotonic)

    def clear(self) -> None:
        with self.lock:
            self.entries = {}
            self.generation += 1

    def current(self) -> int:
        """Forget everything if the keys changed in another process; the generation to keep a holder under."""
        now = time.monotonic()
        if now >= self.check_at:
            try:
                version = cache.get(KEYS_VERSION_KEY)
                self.check_at = now + KEY_VERSION_CHECK_S
            except Exception as error:  # redis-py's errors share no base with the file cache's
                # Remembered keys still expire after KEY_CACHE_S; ask again after that.
                logger.warning("API keys: the shared cache is unreachable (%s: %s)", type(error).__name__, error)
                self.check_at = now + KEY_CACHE_S
            else:
                if version != self.version:
                    self.clear()
                    self.version = version
        return self.generation

    def get(self, digest: str) -> KeyHolder | None:
        found = self.entries.get(digest)
        if found is None or time.monotonic() - found[0] >= KEY_CACHE_S:
            return None
        return found[1]

    def keep(self, digest: str, holder: KeyHolder, *, read_at: float, generation: int) -> None:
        with self.lock:
            if generation == self.generation:
                self.entries[digest] = (read_at, holder)


_key_cache = _KeyCache()


def keys_changed() -> None:
    """Every process forgets the keys it remembers (key_authenticate_cached), once the change is committed."""

    def publish() -> None:
        _key_cache.clear()
        try:
            cache.set(KEYS_VERSION_KEY, uuid.uuid4().hex, timeout=None)
        except Exception as error:  # the others forget within KEY_CACHE_S anyway
            logger.warning("API keys: change not published (%s: %s)", type(error).__name__, error)

    transaction.on_commit(publish)


def key_rows_changed(sender, *, created: bool = False, update_fields=None, **kwargs) -> None:
    """post_save / post_delete of an API key, DRF token, user, team membership or team (accounts.apps):
    keys_changed, unless a new key, token, user or team (nothing remembers it yet) or only a login time
    was written. A new membership counts: it moves a remembered holder's calls to a team; a team edited
    may have new rate limits, which a remembered holder carries."""
    if created and sender is not Membership:
        return
    if update_fields is not None and set(update_fields) <= {"last_login", "last_used_at"}:
        return
    keys_changed()


def key_authenticate_cached(raw: str) -> KeyHolder:
    """key_authenticate, remembered for KEY_CACHE_S (see the module): for the gateway, which checks
    a key on every call. The holder's user and key are shared by the calls that find them here:
    read them, never change them."""
    digest = key_hash(raw)
    generation = _key_cache.current()
    holder = _key_cache.get(digest)
    now = timezone.now()
    if holder is not None and (holder.key is None or holder.key.expires_at is None or holder.key.expires_at > now):
        if holder.key is not None:
            _touch(holder.key, now)
        return holder
    read_at = time.monotonic()
    holder = key_authenticate(raw)
    _key_cache.keep(digest, holder, read_at=read_at, generation=generation)
    return holder
