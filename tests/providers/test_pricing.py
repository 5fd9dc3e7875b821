from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from genai_prices import Usage as GenaiUsage
from genai_prices.data_snapshot import get_snapshot

from providers.catalog import catalog_load
from providers.errors import NoPriceError
from providers.models import LLMModel, ModelPrice, Provider, ProviderKind, price_for
from providers.types import Usage

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SONNET_TIERS = [{"above_input_tokens": 200_000, "input": "6", "output": "22.5", "cached_input": "0.6", "cache_write": "7.5"}]


def _price(**rates) -> ModelPrice:
    """An unsaved price: cost() is pure arithmetic and needs no database."""
    defaults = {"input_per_mtok": Decimal("1"), "output_per_mtok": Decimal("5"),
                "cached_input_per_mtok": Decimal("0.1"), "cache_write_per_mtok": Decimal("1.25")}
    return ModelPrice(valid_from=T0, **{**defaults, **rates})


@pytest.fixture
def model(db) -> LLMModel:
    provider = Provider.objects.create(kind=ProviderKind.SANDBOX)
    return LLMModel.objects.create(provider=provider, model_id="priced-model", display_name="Priced", context_window=1000, max_output_tokens=100)


def test_it_raises_no_price_error_naming_the_model_when_it_has_no_prices(model):
    with pytest.raises(NoPriceError, match="sandbox:priced-model"):
        price_for(model, at=T0)


def test_it_raises_no_price_error_before_the_first_valid_from(model):
    ModelPrice.objects.create(model=model, valid_from=T0, input_per_mtok=Decimal("1"), output_per_mtok=Decimal("2"))

    with pytest.raises(NoPriceError, match="priced-model"):
        price_for(model, at=T0 - timedelta(microseconds=1))
    assert price_for(model, at=T0).input_per_mtok == Decimal("1")


def test_it_uses_the_price_in_force_at_the_time_of_the_call(model):
    old = ModelPrice.objects.create(model=model, valid_from=T0, input_per_mtok=Decimal("1"), output_per_mtok=Decimal("2"))
    new = ModelPrice.objects.create(model=model, valid_from=T0 + timedelta(days=10), input_per_mtok=Decimal("3"), output_per_mtok=Decimal("4"))

    assert price_for(model, at=T0 + timedelta(days=9, hours=23)).pk == old.pk
    assert price_for(model, at=T0 + timedelta(days=10)).pk == new.pk
    assert model.price_at(T0 + timedelta(days=30)).pk == new.pk


def test_it_costs_input_output_cache_reads_and_cache_writes_exactly():
    usage = Usage(input_tokens=1_000, output_tokens=500, cached_input_tokens=2_000, cache_write_tokens=300)

    # (1000×1 + 500×5 + 2000×0.1 + 300×1.25) / 1e6
    assert _price().cost(usage) == Decimal("0.004075")
    assert isinstance(_price().cost(usage), Decimal)


def test_one_hour_cache_writes_cost_twice_the_input_rate_or_the_price_s_own_rate():
    usage = Usage(input_tokens=10, output_tokens=10, cache_write_tokens=10_000, cache_write_1h_tokens=8_000)

    # (10×1 + 10×5 + 2000×1.25 + 8000×2) / 1e6: the 5-minute writes at the write rate, the 1-hour ones at 2× input
    assert _price().cost(usage) == Decimal("0.01856")
    assert _price(cache_write_1h_per_mtok=Decimal("3")).cost(usage) == Decimal("0.02656")
    over = Usage(input_tokens=200_001, cache_write_tokens=1_000_000, cache_write_1h_tokens=1_000_000)
    # over the tier's threshold: its input rate (6), doubled
    assert _price(tiers=SONNET_TIERS).rates_for(over.total_input_tokens)["cache_write_1h"] == Decimal("12")


def test_it_keeps_a_single_token_cost_to_the_millionth_of_a_cent():
    assert _price(input_per_mtok=Decimal("0.15")).cost(Usage(input_tokens=1)) == Decimal("0.00000015")


def test_it_does_not_accumulate_float_error_over_many_tokens():
    usage = Usage(input_tokens=3, output_tokens=3)

    assert _price(input_per_mtok=Decimal("0.1"), output_per_mtok=Decimal("0.2")).cost(usage) == Decimal("0.0000009")


def test_it_bills_cache_tokens_as_input_when_there_is_no_cache_rate():
    price = _price(input_per_mtok=Decimal("2"), cached_input_per_mtok=None, cache_write_per_mtok=None)

    assert price.cost(Usage(cached_input_tokens=1_000_000, cache_write_tokens=500_000)) == Decimal("3")


def test_it_bills_every_token_at_the_tier_rate_one_token_over_the_threshold():
    price = _price(input_per_mtok=Decimal("3"), output_per_mtok=Decimal("15"), cached_input_per_mtok=Decimal("0.3"),
                   cache_write_per_mtok=Decimal("3.75"), tiers=SONNET_TIERS)
    at_threshold = Usage(input_tokens=150_000, cached_input_tokens=40_000, cache_write_tokens=10_000, output_tokens=1_000)
    one_over = Usage(input_tokens=150_001, cached_input_tokens=40_000, cache_write_tokens=10_000, output_tokens=1_000)

    # 150000×3 + 40000×0.3 + 10000×3.75 + 1000×15 = 514500 → 0.5145
    assert price.cost(at_threshold) == Decimal("0.5145")
    # 150001×6 + 40000×0.6 + 10000×7.5 + 1000×22.5 = 1021506 → 1.021506: output and cache tokens at tier rates too
    assert price.cost(one_over) == Decimal("1.021506")


def test_it_counts_cached_and_cache_write_tokens_toward_the_tier_threshold():
    price = _price(tiers=[{"above_input_tokens": 100, "input": "2"}])

    assert price.rates_for(Usage(input_tokens=50, cached_input_tokens=51).total_input_tokens)["input"] == Decimal("2")
    assert price.cost(Usage(input_tokens=50, cached_input_tokens=51)) == Decimal("0.0001051")


@pytest.mark.django_db
def test_it_costs_the_same_as_genai_prices_for_loaded_models():
    at = datetime(2026, 11, 20, tzinfo=UTC)
    catalog_load(at=at)
    anthropic = next(p for p in get_snapshot().providers if p.id == "anthropic")
    usage = Usage(input_tokens=180_000, cached_input_tokens=20_000, cache_write_tokens=5_000, output_tokens=2_000)

    for model_id in ("claude-haiku-4-5", "claude-sonnet-4-5", "claude-haiku-5-5"):
        model = LLMModel.objects.get(provider__kind=ProviderKind.ANTHROPIC, model_id=model_id)
        # genai-prices counts input_tokens including cache reads and writes.
        expected = anthropic.find_model(model_id).get_prices(at).calc_price(GenaiUsage(
            input_tokens=usage.total_input_tokens, cache_read_tokens=usage.cached_input_tokens,
            cache_write_tokens=usage.cache_write_tokens, output_tokens=usage.output_tokens,
        ))["total_price"]
        assert price_for(model, at=at).cost(usage) == expected.quantize(Decimal("0.00000001")), model_id
