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


def test_it_prices_cache_writes_and_reads_apart_from_the_rest_of_the_prompt(model: LLMModel) -> None:
    price = add_price(model, EPOCH, "3", "15")
    price.cache_write_per_mtok, price.cache_read_per_mtok = Decimal("3.75"), Decimal("0.30")

    charged = cost(price, prompt_tokens=1300, completion_tokens=100, cache_write_tokens=1000, cache_read_tokens=200)

    # 100 uncached x $3 + 1,000 written x $3.75 + 200 read x $0.30 + 100 out x $15, per million.
    assert charged == Decimal("0.0056100000")


def test_a_price_without_cache_prices_charges_cached_tokens_the_input_price(model: LLMModel) -> None:
    price = add_price(model, EPOCH, "3", "15")

    charged = cost(price, prompt_tokens=1300, completion_tokens=100, cache_write_tokens=1000, cache_read_tokens=200)

    assert charged == cost(price, prompt_tokens=1300, completion_tokens=100) == Decimal("0.0054000000")
