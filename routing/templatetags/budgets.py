"""The user's cloud budgets on their pages (the dashboard, the API keys page): what each has left
this month, and a banner for each past the policy's alert share (routing.budget, routing.budget_alerts)."""

from __future__ import annotations

from django import template
from django.contrib.auth.models import AbstractBaseUser

from routing.budget import alert_share, budget_overview
from routing.budget_alerts import banner_sentence, whose

register = template.Library()


@register.inclusion_tag("routing/_budgets.html")
def budget_panel(user: AbstractBaseUser) -> dict:
    share = alert_share()
    budgets = budget_overview(user_id=user.pk)
    return {
        "banners": [banner_sentence(status) for status in budgets if status.past_share(share)],
        "budgets": [{"status": status, "whose": whose(status)} for status in budgets],
    }
