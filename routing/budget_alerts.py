"""What people are told when a monthly cloud budget passes the policy's alert share
(routing.budget decides when, once a month per budget): the email, and the banner's sentence.

The email goes to the user for their own budget and for their keys', to the team's members for a
team's. It is sent after the reservation's transaction committed (on_commit), so an alert that was
not recorded is never sent; a mail server that fails loses that month's email (logged), not the call.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.core.mail import send_mail

from core import months
from core.formatting import money, percent
from routing.models import BudgetScope

if TYPE_CHECKING:
    from routing.budget import BudgetStatus

logger = logging.getLogger(__name__)


def used_share(status: BudgetStatus) -> str:
    """ "85.00%" of the limit used (spent and held by calls in flight)."""
    return percent(status.used_usd * 100 / status.limit_usd) if status.limit_usd else percent(None)


def whose(status: BudgetStatus, your: str = "Your") -> str:
    """Whose budget, to the people it is about: "Your", "Your team platform's", "Your API key sy_AbCd1234's"."""
    if status.scope == BudgetScope.USER:
        return your
    return f"{your} {status.label}'s"


def banner_sentence(status: BudgetStatus) -> str:
    """The banner on the user's pages while a budget of theirs is past the alert share (and the email's opening)."""
    return (
        f"{whose(status)} cloud budget is {used_share(status)} used this month: "
        f"{money(status.used_usd)} of {money(status.limit_usd)}, {money(status.remaining_usd)} left. "
        "At the limit Switchyard makes no more cloud calls for it until the month ends; local calls go on."
    )


def _recipients(status: BudgetStatus) -> list[str]:
    users = get_user_model().objects.filter(is_active=True).exclude(email="")
    if status.scope == BudgetScope.TEAM:
        users = users.filter(membership__team_id=status.scope_id)
    elif status.scope == BudgetScope.KEY:
        users = users.filter(api_keys__pk=status.scope_id)
    else:
        users = users.filter(pk=status.scope_id)
    return list(users.order_by("email").values_list("email", flat=True).distinct())


def budget_alert_send(*, status: BudgetStatus, share: Decimal) -> None:
    """Email the people of a budget that reached `share` of its limit this month."""
    recipients = _recipients(status)
    if not recipients:
        logger.info("No one to email: %s's cloud budget reached its alert share.", status.label)
        return
    subject = f"Switchyard: {whose(status, 'your')} cloud budget is {used_share(status)} used this month"
    body = (
        f"{banner_sentence(status)}\n\n"
        f"This email is sent once a month per budget, when its use (calls in flight included) reaches "
        f"{percent(share * 100)} of its limit. The month is {months.month_label(status.month)} (UTC).\n"
    )
    send_mail(subject, body, None, recipients)
