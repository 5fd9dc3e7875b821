import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from genai_prices import types as gp
from genai_prices.data_snapshot import get_snapshot

from providers import catalog
from providers.catalog import CATALOG, CatalogEntry, CatalogError, PriceRef, catalog_load
from providers.models import (
    DEFAULT_BASE_URLS,
    LLMModel,
    ModelPrice,
    ModelTier,
    Provider,
    ProviderKind,
    price_for,
)

pytestmark = pytest.mark.django_db

LOAD_AT = datetime(2026, 11, 20, 12, tzinfo=UTC)


def _model(kind: ProviderKind, model_id: str) -> LLMModel:
    return LLMModel.objects.get(provider__kind=kind, model_id=model_id)


def _genai_model(provider_id: str, ref: str) -> gp.ModelInfo:
    provider = next(p for p in get_snapshot().providers if p.id == provider_id)
    return provider.find_model(ref)


def test_it_creates_every_curated_model_once():
    report = catalog_load(at=LOAD_AT)

    assert LLMModel.objects.count() == len(CATALOG)
    assert len(report.models_created) == len(CATALOG)
    for entry in CATALOG:
        assert _model(entry.kind, entry.model_id).display_name == entry.display_name


def test_it_imports_anthropic_prices_with_cache_rates():
    catalog_load(at=LOAD_AT)

    price = price_for(_model(ProviderKind.ANTHROPIC, "claude-haiku-4-5"), at=LOAD_AT)

    assert price.input_per_mtok == Decimal("1")
    assert price.output_per_mtok == Decimal("5")
    assert price.cached_input_per_mtok == Decimal("0.1")
    assert price.cache_write_per_mtok == Decimal("1.25")
    assert isinstance(price.input_per_mtok, Decimal)
    assert price.tiers == []


def test_it_leaves_cache_write_empty_when_genai_prices_has_none():
    catalog_load(at=LOAD_AT)

    price = price_for(_model(ProviderKind.OPENAI, "gpt-4o-mini"), at=LOAD_AT)

    assert (price.input_per_mtok, price.output_per_mtok) == (Decimal("0.15"), Decimal("0.6"))
    assert price.cached_input_per_mtok == Decimal("0.075")
    assert price.cache_write_per_mtok is None


def test_it_matches_genai_prices_current_base_rates_for_every_model():
    catalog_load(at=LOAD_AT)

    for entry in CATALOG:
        expected = _genai_model(entry.price.provider, entry.price.model).get_prices(LOAD_AT)
        price = price_for(_model(entry.kind, entry.model_id), at=LOAD_AT)
        base = expected.input_mtok.base if isinstance(expected.input_mtok, gp.TieredPrices) else expected.input_mtok
        assert price.input_per_mtok == base.quantize(Decimal("0.000001")), entry.model_id


def test_it_imports_long_prompt_tiers():
    catalog_load(at=LOAD_AT)

    price = price_for(_model(ProviderKind.ANTHROPIC, "claude-sonnet-4-5"), at=LOAD_AT)

    assert price.input_per_mtok == Decimal("3")
    assert price.tiers == [
        {"above_input_tokens": 200_000, "input": "6", "output": "22.5", "cached_input": "0.6", "cache_write": "7.5"}
    ]


def test_it_omits_rates_without_a_tier_from_the_tier_entry(monkeypatch):
    info = _genai_model("anthropic", "claude-haiku-4-5")
    monkeypatch.setattr(info, "prices", gp.ModelPrice(
        input_mtok=gp.TieredPrices(base=Decimal("1"), tiers=[gp.Tier(start=100_000, price=Decimal("2"))]),
        output_mtok=Decimal("5"),
    ))

    catalog_load(at=LOAD_AT)
    price = price_for(_model(ProviderKind.ANTHROPIC, "claude-haiku-4-5"), at=LOAD_AT)

    assert price.tiers == [{"above_input_tokens": 100_000, "input": "2"}]
    assert price.rates_for(100_001)["output"] == Decimal("5")


def test_it_imports_genai_prices_dated_history():
    catalog_load(at=LOAD_AT)
    o3 = _model(ProviderKind.OPENAI, "o3")

    rows = list(o3.prices.order_by("valid_from").values_list("valid_from", "input_per_mtok", "output_per_mtok"))

    assert rows == [
        (catalog.HISTORY_START, Decimal("10"), Decimal("40")),
        (datetime(2025, 6, 10, tzinfo=UTC), Decimal("2"), Decimal("8")),
    ]
    assert price_for(o3, at=datetime(2025, 6, 9, 23, 59, tzinfo=UTC)).input_per_mtok == Decimal("10")
    assert price_for(o3, at=datetime(2025, 6, 10, tzinfo=UTC)).input_per_mtok == Decimal("2")


def test_it_creates_nothing_the_second_time():
    catalog_load(at=LOAD_AT)
    prices_before = ModelPrice.objects.count()

    report = catalog_load(at=LOAD_AT + timedelta(days=1))

    assert report.as_dict()["counts"] == {"providers_created": 0, "models_created": 0, "models_updated": 0, "prices_added": 0}
    assert ModelPrice.objects.count() == prices_before
    assert LLMModel.objects.count() == len(CATALOG)


def test_it_adds_a_changed_package_price_as_a_new_dated_row(monkeypatch):
    catalog_load(at=LOAD_AT)
    haiku = _model(ProviderKind.ANTHROPIC, "claude-haiku-4-5")
    old_row = price_for(haiku, at=LOAD_AT)
    upgrade_at = LOAD_AT + timedelta(days=30)
    # What a package upgrade with a new Haiku price looks like.
    monkeypatch.setattr(_genai_model("anthropic", "claude-haiku-4-5"), "prices", gp.ModelPrice(
        input_mtok=Decimal("2"), output_mtok=Decimal("10"), cache_read_mtok=Decimal("0.2"), cache_write_mtok=Decimal("2.5"),
    ))

    report = catalog_load(at=upgrade_at)

    assert f"anthropic:claude-haiku-4-5 from {upgrade_at.isoformat()}" in report.prices_added
    assert price_for(haiku, at=upgrade_at).input_per_mtok == Decimal("2")
    assert price_for(haiku, at=upgrade_at - timedelta(seconds=1)).pk == old_row.pk
    old_row.refresh_from_db()
    assert old_row.input_per_mtok == Decimal("1")


def test_it_adds_the_package_price_back_after_a_staff_price_change():
    catalog_load(at=LOAD_AT)
    gpt = _model(ProviderKind.OPENAI, "gpt-4o-mini")
    staff_from = LOAD_AT + timedelta(days=1)
    ModelPrice.objects.create(model=gpt, valid_from=staff_from, input_per_mtok=Decimal("9"), output_per_mtok=Decimal("9"))
    reload_at = LOAD_AT + timedelta(days=10)

    catalog_load(at=reload_at)

    assert price_for(gpt, at=staff_from + timedelta(days=1)).input_per_mtok == Decimal("9")
    assert price_for(gpt, at=reload_at).input_per_mtok == Decimal("0.15")
    assert gpt.prices.count() == 3


def test_it_never_backdates_a_new_history_entry_behind_billed_prices():
    # As if an older package (without o3's 2025-06-10 price cut) had been loaded and calls billed at $10 since.
    provider = Provider.objects.create(kind=ProviderKind.OPENAI, base_url=DEFAULT_BASE_URLS[ProviderKind.OPENAI])
    o3 = LLMModel.objects.create(provider=provider, model_id="o3", display_name="o3", context_window=200_000, max_output_tokens=100_000)
    ModelPrice.objects.create(model=o3, valid_from=catalog.HISTORY_START, input_per_mtok=Decimal("10"),
                              output_per_mtok=Decimal("40"), cached_input_per_mtok=Decimal("0.5"))

    catalog_load(at=LOAD_AT)

    assert not o3.prices.filter(valid_from=datetime(2025, 6, 10, tzinfo=UTC)).exists()
    assert price_for(o3, at=datetime(2025, 7, 1, tzinfo=UTC)).input_per_mtok == Decimal("10")
    assert price_for(o3, at=LOAD_AT).input_per_mtok == Decimal("2")
    assert o3.prices.count() == 2


def test_it_adds_future_dated_entries_from_their_start_date():
    load_at = datetime(2026, 11, 5, tzinfo=UTC)  # after the 11-03 llama price, before the 11-09 one
    catalog_load(at=load_at)
    llama = _model(ProviderKind.OPENROUTER, "meta-llama/llama-3.3-70b-instruct")

    assert price_for(llama, at=load_at).input_per_mtok == Decimal("0.45")
    assert price_for(llama, at=datetime(2026, 11, 9, tzinfo=UTC)).input_per_mtok == Decimal("0.59")


def test_it_keeps_a_staff_edited_base_url():
    Provider.objects.create(kind=ProviderKind.OPENAI, base_url="https://proxy.example.com/v1")

    report = catalog_load(at=LOAD_AT)

    assert Provider.objects.get(kind=ProviderKind.OPENAI).base_url == "https://proxy.example.com/v1"
    assert "openai" not in report.providers_created


def test_it_creates_missing_providers_with_default_base_urls():
    catalog_load(at=LOAD_AT)

    for kind in ProviderKind:
        assert Provider.objects.get(kind=kind).base_url == DEFAULT_BASE_URLS[kind]


def test_it_updates_curated_fields_but_not_is_enabled():
    catalog_load(at=LOAD_AT)
    gpt5 = _model(ProviderKind.OPENAI, "gpt-5")
    LLMModel.objects.filter(pk=gpt5.pk).update(display_name="old name", tier=ModelTier.PREMIUM, is_enabled=False)

    report = catalog_load(at=LOAD_AT)
    gpt5.refresh_from_db()

    assert report.models_updated == ["openai:gpt-5"]
    assert (gpt5.display_name, gpt5.tier, gpt5.is_enabled) == ("GPT-5", ModelTier.STANDARD, False)


def test_it_sets_capabilities_and_temperature_support():
    catalog_load(at=LOAD_AT)

    gpt5 = _model(ProviderKind.OPENAI, "gpt-5")
    assert gpt5.supports_temperature is False
    assert gpt5.has_capability("long_context") and gpt5.has_capability("reasoning")
    assert _model(ProviderKind.OPENAI, "gpt-4o").supports_temperature is True
    assert not _model(ProviderKind.OPENAI, "gpt-4o").has_capability("long_context")
    for model_id in ("claude-opus-4-8", "claude-opus-5", "claude-opus-5-5", "claude-sonnet-5-5"):
        assert _model(ProviderKind.ANTHROPIC, model_id).supports_temperature is False
    assert _model(ProviderKind.ANTHROPIC, "claude-haiku-4-5").supports_temperature is True
    assert _model(ProviderKind.OPENAI, "o3").tier == ModelTier.PREMIUM


def test_it_falls_back_to_the_curated_context_window():
    catalog_load(at=LOAD_AT)

    assert _model(ProviderKind.OPENROUTER, "meta-llama/llama-3.3-70b-instruct").context_window == 131_072
    assert _model(ProviderKind.ANTHROPIC, "claude-opus-4-8").context_window == 1_000_000


def test_it_prices_sandbox_models_like_the_models_they_mirror():
    catalog_load(at=LOAD_AT)

    sandbox = price_for(_model(ProviderKind.SANDBOX, "sandbox-economy"), at=LOAD_AT)
    haiku = price_for(_model(ProviderKind.ANTHROPIC, "claude-haiku-4-5"), at=LOAD_AT)

    assert (sandbox.input_per_mtok, sandbox.output_per_mtok, sandbox.cache_write_per_mtok) == (
        haiku.input_per_mtok, haiku.output_per_mtok, haiku.cache_write_per_mtok,
    )
    assert "mirrors anthropic/claude-haiku-4-5" in sandbox.source
    assert price_for(_model(ProviderKind.SANDBOX, "sandbox-standard"), at=LOAD_AT).tiers
    assert price_for(_model(ProviderKind.SANDBOX, "sandbox-premium"), at=LOAD_AT).output_per_mtok == Decimal("25")


def test_it_fails_loudly_and_writes_nothing_when_a_curated_model_is_missing(monkeypatch):
    missing = CatalogEntry(ProviderKind.OPENAI, "gpt-0", "GPT-0", ModelTier.ECONOMY, (), 1, 1, PriceRef("openai", "gpt-0-nonexistent"))
    monkeypatch.setattr(catalog, "CATALOG", (*CATALOG, missing))

    with pytest.raises(CatalogError, match="openai/gpt-0-nonexistent"):
        catalog_load(at=LOAD_AT)

    assert LLMModel.objects.count() == 0
    assert Provider.objects.count() == 0


def test_it_prints_the_report_as_json():
    out = io.StringIO()

    call_command("load_catalog", stdout=out)
    report = json.loads(out.getvalue())

    assert report["counts"]["models_created"] == len(CATALOG)
    assert "anthropic:claude-haiku-4-5" in report["models_created"]
    assert report["genai_prices_version"]


def test_it_turns_a_catalog_error_into_a_command_error(monkeypatch):
    missing = CatalogEntry(ProviderKind.OPENAI, "gpt-0", "GPT-0", ModelTier.ECONOMY, (), 1, 1, PriceRef("openai", "gpt-0-nonexistent"))
    monkeypatch.setattr(catalog, "CATALOG", (missing,))

    with pytest.raises(CommandError, match="gpt-0-nonexistent"):
        call_command("load_catalog", stdout=io.StringIO())
