from datetime import timedelta
from decimal import Decimal

import pytest

from routing.models import LLMModel
from routing.pricing import cost, price_at
from tests.routing.conftest_router import EPOCH, add_price, make_provider

pytestmark = pytest.mark.django_db


@pytest.fixture
def model() -> LLMModel:
    provider = make_provider("claude", base_url="http://127.0.0.1:9", kind="anthropic", is_local=False, price=None)
    return provider.models.get()


def test_it_costs_tokens_at_the_per_million_price_exactly(model: LLMModel) -> None:
    price = add_price(model, EPOCH, "3", "15")

    assert cost(price, prompt_tokens=1000, completion_tokens=500) == Decimal("0.0105")


def test_it_returns_a_decimal_at_the_ledgers_ten_places(model: LLMModel) -> None:
    price = add_price(model, EPOCH, "0.15", "0.6")

    charged = cost(price, prompt_tokens=7, completion_tokens=3)

    assert isinstance(charged, Decimal)
    assert charged == Decimal("0.0000028500")
    assert charged.as_tuple().exponent == -10


def test_it_rounds_half_up_below_the_tenth_place(model: LLMModel) -> None:
    price = add_price(model, EPOCH, "0.00005", "0")

    assert cost(price, prompt_tokens=1, completion_tokens=0) == Decimal("0.0000000001")


def test_it_costs_nothing_known_without_a_price() -> None:
    assert cost(None, prompt_tokens=1000, completion_tokens=1000) is None


def test_it_costs_zero_on_a_zero_price(model: LLMModel) -> None:
    price = add_price(model, EPOCH, "0", "0")

    assert cost(price, prompt_tokens=10_000, completion_tokens=10_000) == Decimal(0)


def test_it_finds_the_price_in_force_at_a_moment(model: LLMModel) -> None:
    old = add_price(model, EPOCH, "3", "15")
    new = add_price(model, EPOCH + timedelta(days=30), "2", "10")

    assert price_at(model, EPOCH + timedelta(days=29)) == old
    assert price_at(model, EPOCH + timedelta(days=30)) == new
    assert price_at(model, EPOCH + timedelta(days=400)) == new


def test_it_has_no_price_before_the_first_one_starts(model: LLMModel) -> None:
    add_price(model, EPOCH, "3", "15")

    assert price_at(model, EPOCH - timedelta(seconds=1)) is None
