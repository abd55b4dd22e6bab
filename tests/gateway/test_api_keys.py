"""Personal API keys at the gateway: the same keys as the REST API, refused when revoked or expired,
and held to the models they were limited to."""

from __future__ import annotations

from datetime import timedelta

import openai
import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from accounts.models import ApiKey
from accounts.services import key_create
from tests.gateway.test_models_and_outages import HELLO, client, providers  # noqa: F401  (a fixture)


def new_key(gateway, **given) -> str:
    user = get_user_model().objects.get(pk=gateway.user_id)
    return key_create(user=user, name="laptop", **given).secret


def test_a_personal_key_lists_the_models_and_records_its_use(empty_gateway, providers):  # noqa: F811
    secret = new_key(empty_gateway)

    listed = client(empty_gateway, key=secret).models.list()

    assert [model.id for model in listed] == ["auto", "mistral:latest"]
    assert ApiKey.objects.get().last_used_at is not None


def test_a_revoked_key_is_refused(empty_gateway):
    secret = new_key(empty_gateway)
    ApiKey.objects.update(revoked_at=timezone.now())

    with pytest.raises(openai.AuthenticationError) as raised:
        client(empty_gateway, key=secret).models.list()

    assert (raised.value.code, raised.value.body["message"]) == ("invalid_api_key", "This API key was revoked.")


def test_an_expired_key_is_refused(empty_gateway):
    secret = new_key(empty_gateway, expires_at=timezone.now() + timedelta(days=1))
    ApiKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    with pytest.raises(openai.AuthenticationError) as raised:
        client(empty_gateway, key=secret).chat.completions.create(model="auto", messages=HELLO, max_tokens=4)

    assert raised.value.code == "invalid_api_key"
    assert raised.value.body["message"].startswith("This API key expired at ")


def test_a_key_limited_to_some_models_is_refused_the_others(empty_gateway, providers):  # noqa: F811
    secret = new_key(empty_gateway, allowed_models=["mistral:latest"])

    with pytest.raises(openai.PermissionDeniedError) as raised:
        client(empty_gateway, key=secret).chat.completions.create(model="auto", messages=HELLO, max_tokens=4)

    assert raised.value.code == "model_not_allowed"
    assert "mistral:latest" in raised.value.message
    # The allowed model passes the check and reaches the router (no provider answers: a 503).
    with pytest.raises(openai.InternalServerError):
        client(empty_gateway, key=secret).chat.completions.create(model="mistral:latest", messages=HELLO, max_tokens=4)
    assert [model.id for model in client(empty_gateway, key=secret).models.list()] == ["mistral:latest"]


def test_a_stream_for_a_model_the_key_may_not_use_is_refused_before_any_chunk(empty_gateway, providers):  # noqa: F811
    secret = new_key(empty_gateway, allowed_models=["mistral:latest"])

    with pytest.raises(openai.PermissionDeniedError):
        client(empty_gateway, key=secret).chat.completions.create(
            model="other", messages=HELLO, max_tokens=4, stream=True
        )


def test_an_older_drf_token_still_works(empty_gateway, providers):  # noqa: F811
    assert [model.id for model in client(empty_gateway).models.list()] == ["auto", "mistral:latest"]
