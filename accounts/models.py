"""A person's API keys: stored as a hash, found by their visible prefix."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone


def cloud_budget_field(help_text: str) -> models.DecimalField:
    """A monthly cloud limit in USD (routing.budget reads and enforces it); empty: no limit at this scope.
    Up to $99,999,999.99: what the API's money fields write (8 digits before the point)."""
    return models.DecimalField(
        "monthly cloud budget (USD)",
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text=help_text,
    )


class ApiKey(models.Model):
    """One key of one user. The secret is never stored: `key_hash` is the SHA-256 of the whole key
    (a high-entropy random string, so a fast hash is enough), `prefix` its first characters, shown
    on pages and used to find the row. Revoked keys stay, for the record."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=20, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: it never expires.")
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    allowed_models = models.JSONField(
        default=list, blank=True, help_text="Model names the gateway serves with this key; empty: every model."
    )
    monthly_cloud_budget_usd = cloud_budget_field(
        "What the calls made with this key may cost in the cloud per calendar month (UTC); empty: no limit "
        "of its own (its user's and team's still apply)."
    )
    # Empty: the server's default (SWITCHYARD_KEY_RPM / SWITCHYARD_KEY_TPM); 0: not limited.
    requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Gateway requests per minute; empty: the server's default; 0: not limited."
    )
    tokens_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Gateway tokens per minute (prompt and completion); empty: the server's default; 0: not limited.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    def rate_limits(self) -> tuple[int, int]:
        """(requests, tokens) per minute at the gateway: the key's own, else the server's default; 0: not limited."""
        return (
            settings.SWITCHYARD_KEY_RPM if self.requests_per_minute is None else self.requests_per_minute,
            settings.SWITCHYARD_KEY_TPM if self.tokens_per_minute is None else self.tokens_per_minute,
        )

    def state(self, now=None) -> str:
        """ "active", "expired" or "revoked"."""
        now = now or timezone.now()
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


class Team(models.Model):
    """A group of users whose calls are budgeted, limited and reported together."""

    name = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    monthly_cloud_budget_usd = cloud_budget_field(
        "What the members' calls together may cost in the cloud per calendar month (UTC); empty: no team limit."
    )
    # Shared by every key (and older token) of the members, on top of each key's own (gateway.rate_limits).
    requests_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Gateway requests per minute of all the members' keys together; empty: no team limit.",
    )
    tokens_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Gateway tokens per minute (prompt and completion) of all the members' keys together; "
        "empty: no team limit.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's team. One team per user, so every call (an agent run's or the gateway's) has one
    team to count against without the caller choosing."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    joined_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["team__name", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} in {self.team}"
