"""A gateway call's ledger rows record the key, the caller's team, the endpoint and the client
(its User-Agent), besides the user."""

from __future__ import annotations

import openai
import pytest
from django.contrib.auth import get_user_model

from accounts.models import ApiKey, Membership, Team
from accounts.services import key_create
from routing.models import LedgerEntry
from tests.gateway.test_models_and_outages import HELLO, client, providers  # noqa: F401  (a fixture)


def test_a_gateway_call_records_the_key_team_endpoint_and_client(empty_gateway, providers):  # noqa: F811
    user = get_user_model().objects.get(pk=empty_gateway.user_id)
    team = Team.objects.create(name="platform")
    Membership.objects.create(user=user, team=team)
    secret = key_create(user=user, name="laptop").secret

    with pytest.raises(openai.InternalServerError):  # the providers' hosts are down
        client(empty_gateway, key=secret).chat.completions.create(model="mistral:latest", messages=HELLO, max_tokens=4)

    rows = list(LedgerEntry.objects.order_by("id"))
    key = ApiKey.objects.get()
    assert len(rows) == 2
    for row in rows:
        assert (row.user_id, row.team_id, row.api_key_id) == (user.pk, team.pk, key.pk)
        assert row.endpoint == "/v1/chat/completions"
        assert row.client.startswith("OpenAI/Python ")


def test_a_gateway_call_with_an_older_token_records_no_key_and_no_team(empty_gateway, providers):  # noqa: F811
    with pytest.raises(openai.InternalServerError):
        client(empty_gateway).chat.completions.create(model="mistral:latest", messages=HELLO, max_tokens=4)

    assert {(row.api_key_id, row.team_id) for row in LedgerEntry.objects.all()} == {(None, None)}
