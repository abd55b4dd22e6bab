"""A model's max_output_tokens caps what a call asks for (the demo model answers in 300 tokens at most)."""

import pytest

from routing.models import LLMModel
from routing.router import route
from routing.table import invalidate_routing_cache
from tests.routing.conftest_router import ask, fresh_routing, make_provider  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_routing")]


@pytest.fixture
def capped(fake_server):
    server = fake_server("openai_compatible")
    make_provider("demo", base_url=server.base_url, model="gpt-4o-mini")
    LLMModel.objects.filter(name="gpt-4o-mini").update(max_output_tokens=300)
    invalidate_routing_cache()
    return server


def sent_max_tokens(server) -> object:
    return server.requests[-1].json.get("max_tokens")


def test_it_caps_a_request_asking_for_more(capped) -> None:
    route(ask(max_tokens=1500))
    assert sent_max_tokens(capped) == 300


def test_it_sends_the_cap_when_the_request_names_no_limit(capped) -> None:
    route(ask())
    assert sent_max_tokens(capped) == 300


def test_it_keeps_a_smaller_request_as_it_is(capped) -> None:
    route(ask(max_tokens=48))
    assert sent_max_tokens(capped) == 48


def test_a_model_without_a_cap_gets_what_the_request_asks(fake_server) -> None:
    server = fake_server("openai_compatible")
    make_provider("ollama", base_url=server.base_url, model="gpt-4o-mini")
    route(ask(max_tokens=1500))
    assert sent_max_tokens(server) == 1500
