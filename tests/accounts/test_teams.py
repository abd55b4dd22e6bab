"""Teams: a user is in one team at most (their calls' ledger rows carry it: tests/agents/test_run_team.py,
tests/gateway/test_ledger_columns.py)."""

from __future__ import annotations

import pytest
from django.db import IntegrityError

from accounts.models import Membership, Team


def test_a_user_belongs_to_one_team_at_most(db, user):
    Membership.objects.create(user=user, team=Team.objects.create(name="platform"))

    with pytest.raises(IntegrityError):
        Membership.objects.create(user=user, team=Team.objects.create(name="mobile"))
