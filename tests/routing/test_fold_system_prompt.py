"""A model whose chat template has no system role gets the system prompt in its first user turn."""

from __future__ import annotations

import pytest

from routing.providers.base import fold_system_prompt
from routing.router import RouteRequest, route
from routing.table import invalidate_routing_cache
from tests.routing.conftest_router import fresh_routing, make_provider  # noqa: F401

SYSTEM = {"role": "system", "content": "You write Dockerfiles."}


def test_it_puts_the_system_prompt_at_the_start_of_the_first_user_turn():
    messages = [SYSTEM, {"role": "user", "content": "A Django app."}, {"role": "assistant", "content": "FROM"}]

    assert fold_system_prompt(messages) == [
        {"role": "user", "content": "You write Dockerfiles.\n\nA Django app."},
        {"role": "assistant", "content": "FROM"},
    ]


def test_it_joins_several_system_messages_and_keeps_a_conversation_without_one():
    two = [SYSTEM, {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Go."}]

    assert fold_system_prompt(two) == [{"role": "user", "content": "You write Dockerfiles.\n\nBe brief.\n\nGo."}]
    assert fold_system_prompt([{"role": "user", "content": "Go."}]) == [{"role": "user", "content": "Go."}]


def test_a_system_prompt_alone_becomes_the_user_turn():
    assert fold_system_prompt([SYSTEM]) == [{"role": "user", "content": "You write Dockerfiles."}]


@pytest.mark.django_db
@pytest.mark.usefixtures("fresh_routing")
@pytest.mark.parametrize(("system_prompt", "sent"), [(True, ["system", "user"]), (False, ["user"])])
def test_the_router_folds_it_only_for_a_model_marked_as_taking_none(fake_openai, system_prompt, sent):
    provider = make_provider("local", base_url=fake_openai.base_url, model="gpt-4o-mini")
    provider.models.update(system_prompt=system_prompt)
    invalidate_routing_cache()

    route(RouteRequest(messages=[SYSTEM, {"role": "user", "content": "A Django app."}]))

    received = fake_openai.requests[-1].json["messages"]
    assert [m["role"] for m in received] == sent
    assert "You write Dockerfiles." in received[0]["content"]
